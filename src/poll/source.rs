//! What a poller polls: a URL, or an async function returning a JSON value.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::http::{self, Validators};

/// A JSON source to poll: a plain-HTTP URL ([`Source::url`]) or any async function
/// ([`Source::from_fn`]), with the interval to poll it at and how to diff it.
///
/// Every subscriber of the same source (same key, interval and array key) shares one poller.
///
/// ```
/// use std::time::Duration;
/// use tower_sse::poll::Source;
///
/// let board = Source::url("http://127.0.0.1:8080/api/departures")
///     .unwrap()
///     .interval(Duration::from_secs(2))
///     .array_key("id");
/// assert_eq!(board.key(), "http://127.0.0.1:8080/api/departures");
///
/// let clock = Source::from_fn("clock", || async {
///     Ok::<_, std::io::Error>(serde_json::json!({ "now": "06:41" }))
/// });
/// # let _ = clock;
/// ```
#[derive(Clone)]
#[must_use]
pub struct Source {
    key: Arc<str>,
    kind: Kind,
    interval: Option<Duration>,
    array_key: Option<Arc<str>>,
}

/// A function source's function, type-erased.
type Fetch = Arc<dyn Fn() -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

#[derive(Clone)]
pub(super) enum Kind {
    Url(reqwest::Url),
    Fn(Fetch),
}

/// What one poll of a source found.
pub(super) enum Fetched {
    /// The same as last time (`304 Not Modified`).
    NotModified,
    /// A value, and the validators to send with the next request.
    Value(Value, Validators),
}

/// Why one poll of a source failed: a message safe to show to clients (never the upstream's
/// body, address or internal detail, which go to the logs) and an optional status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) status: Option<u16>,
}

impl Failure {
    pub(super) fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            status: None,
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("key", &self.key)
            .field("interval", &self.interval)
            .field("array_key", &self.array_key)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// A JSON document at `url`, fetched with `GET` over plain HTTP (`http://`), with
    /// `If-None-Match` and `If-Modified-Since` once the upstream has sent an `ETag` or a
    /// `Last-Modified`, so an unchanged document costs a `304`. Redirects are not followed (a
    /// `3xx` is a failure), proxies from the environment are not used, and the answer must be
    /// JSON of at most [`PollerBuilder::max_body_bytes`](super::PollerBuilder::max_body_bytes).
    ///
    /// For HTTPS, or a request of your own (credentials, another client), use
    /// [`from_fn`](Self::from_fn).
    ///
    /// Whoever chooses `url` chooses where this server sends requests: take it from clients
    /// only through an allowlist (see `examples/proxy.rs`).
    ///
    /// # Errors
    ///
    /// A `url` that does not parse, is not `http://`, or carries a user name or password.
    pub fn url(url: &str) -> Result<Source, InvalidSource> {
        let mut parsed = reqwest::Url::parse(url).map_err(|err| InvalidSource {
            message: format!("not a URL ({err})"),
        })?;
        match parsed.scheme() {
            "http" => {}
            "https" => {
                return Err(InvalidSource::new(
                    "https is not supported by Source::url, which speaks plain HTTP; poll it \
                     with Source::from_fn and an HTTPS client",
                ));
            }
            other => {
                return Err(InvalidSource {
                    message: format!("the scheme {other:?} is not supported: use http://"),
                });
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(InvalidSource::new(
                "a URL with a user name or password is not supported; send credentials from \
                 Source::from_fn",
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(InvalidSource::new("the URL has no host"));
        }
        // The fragment never reaches the server.
        parsed.set_fragment(None);
        Ok(Source {
            key: parsed.as_str().into(),
            kind: Kind::Url(parsed),
            interval: None,
            array_key: None,
        })
    }

    /// A source that calls `fetch` for each poll; `key` names it, so that every subscriber
    /// with the same key shares one poller. An error fails the poll: subscribers get an
    /// `error` event with a generic message (the error itself goes to `tracing`).
    pub fn from_fn<F, Fut, E>(key: impl Into<String>, fetch: F) -> Source
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let key: String = key.into();
        let fetch: Fetch = Arc::new(move || {
            fetch()
                .map(|result| result.map_err(|err| err.to_string()))
                .boxed()
        });
        Source {
            key: key.into(),
            kind: Kind::Fn(fetch),
            interval: None,
            array_key: None,
        }
    }

    /// Polls every `interval` (raised to the poller's
    /// [floor](super::PollerBuilder::min_interval)); default: the poller's
    /// [`default_interval`](super::PollerBuilder::default_interval).
    pub fn interval(mut self, interval: Duration) -> Source {
        self.interval = Some(interval);
        self
    }

    /// Diffs arrays of objects by this field (e.g. `"id"`) rather than by position: see
    /// [`diff`](super::diff()).
    pub fn array_key(mut self, field: impl Into<String>) -> Source {
        self.array_key = Some(field.into().into());
        self
    }

    /// The source's key: the URL (without a fragment), or the key given to
    /// [`from_fn`](Self::from_fn).
    pub fn key(&self) -> &str {
        &self.key
    }

    pub(super) fn interval_or(&self, default: Duration, floor: Duration) -> Duration {
        self.interval.unwrap_or(default).max(floor)
    }

    pub(super) fn array_key_str(&self) -> Option<&str> {
        self.array_key.as_deref()
    }

    /// Polls once.
    pub(super) async fn fetch(
        &self,
        client: &http::Client,
        validators: &Validators,
    ) -> Result<Fetched, Failure> {
        match &self.kind {
            Kind::Url(url) => client.fetch(url, validators).await,
            Kind::Fn(fetch) => match std::panic::AssertUnwindSafe(fetch()).catch_unwind().await {
                Ok(Ok(value)) => Ok(Fetched::Value(value, Validators::default())),
                Ok(Err(err)) => {
                    tracing::warn!(source = %self.key, error = %err, "the poll source failed");
                    Err(Failure::new("the source failed"))
                }
                Err(_) => {
                    tracing::warn!(source = %self.key, "the poll source panicked");
                    Err(Failure::new("the source failed"))
                }
            },
        }
    }
}

/// A [`Source`] that cannot be polled: the message says why. As an axum response, `400 Bad
/// Request` with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSource {
    message: String,
}

impl InvalidSource {
    pub(super) fn new(message: &str) -> InvalidSource {
        InvalidSource {
            message: message.to_owned(),
        }
    }
}

impl fmt::Display for InvalidSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid source: {}", self.message)
    }
}

impl std::error::Error for InvalidSource {}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for InvalidSource {
    fn into_response(self) -> axum::response::Response {
        (::http::StatusCode::BAD_REQUEST, format!("{self}\n")).into_response()
    }
}
