//! Polling a URL: conditional `GET` over plain HTTP, with a cap on the answer.

use std::time::Duration;

use http::header::{ACCEPT, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderValue, StatusCode};

use super::source::{Failure, Fetched};

/// What makes the next request conditional: the last answer's `ETag` and `Last-Modified`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Validators {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

impl Validators {
    fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// The HTTP client URL sources share (one connection pool per poller).
pub(super) struct Client {
    client: Result<reqwest::Client, String>,
    max_body_bytes: usize,
}

impl Client {
    pub(super) fn new(timeout: Duration, max_body_bytes: usize) -> Client {
        let client = reqwest::Client::builder()
            // A redirect could lead anywhere, an allowlist's checks included.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tower-sse-poll/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| err.to_string());
        Client {
            client,
            max_body_bytes,
        }
    }

    /// One `GET` of `url`, conditional on `validators`.
    pub(super) async fn fetch(
        &self,
        url: &reqwest::Url,
        validators: &Validators,
    ) -> Result<Fetched, Failure> {
        let client = self.client.as_ref().map_err(|err| {
            tracing::warn!(error = %err, "the poller's HTTP client could not be built");
            Failure::new("the poller cannot make requests")
        })?;
        let mut request = client
            .get(url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(etag) = &validators.etag {
            request = request.header(IF_NONE_MATCH, etag.clone());
        }
        if let Some(modified) = &validators.last_modified {
            request = request.header(IF_MODIFIED_SINCE, modified.clone());
        }
        let mut response = request.send().await.map_err(|err| {
            tracing::warn!(url = %url, error = %err, "poll request failed");
            if err.is_timeout() {
                Failure::new("the upstream did not answer in time")
            } else if err.is_connect() {
                Failure::new("the upstream cannot be reached")
            } else {
                Failure::new("the upstream request failed")
            }
        })?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && !validators.is_empty() {
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            tracing::warn!(url = %url, %status, "poll answered with an error status");
            let redirect = if status.is_redirection() {
                " (redirects are not followed)"
            } else {
                ""
            };
            return Err(Failure {
                message: format!("the upstream answered {}{redirect}", status.as_u16()),
                status: Some(status.as_u16()),
            });
        }
        let next = Validators {
            etag: response.headers().get(ETAG).cloned(),
            last_modified: response.headers().get(LAST_MODIFIED).cloned(),
        };
        let too_large = || {
            tracing::warn!(url = %url, max = self.max_body_bytes, "poll answer too large");
            Failure {
                message: format!(
                    "the upstream's answer is larger than {} bytes",
                    self.max_body_bytes
                ),
                status: None,
            }
        };
        if response
            .content_length()
            .is_some_and(|length| length > self.max_body_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_body_bytes {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(url = %url, error = %err, "poll answer cut off");
                    return Err(if err.is_timeout() {
                        Failure::new("the upstream did not answer in time")
                    } else {
                        Failure::new("the upstream's answer was cut off")
                    });
                }
            }
        }
        match serde_json::from_slice(&body) {
            Ok(value) => Ok(Fetched::Value(value, next)),
            Err(err) => {
                tracing::warn!(url = %url, error = %err, "poll answer is not JSON");
                Err(Failure::new("the upstream's answer is not JSON"))
            }
        }
    }
}
