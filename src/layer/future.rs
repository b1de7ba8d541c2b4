use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderName, HeaderValue, Response, StatusCode, Version, header};
use pin_project_lite::pin_project;

use super::SseBody;
use super::config::Config;
use super::cors::Cors;
use crate::registry::{ConnectionSlot, Refused, StreamTopic};

/// What the response future needs to know about the request.
pub(crate) struct RequestInfo {
    pub(crate) version: Version,
    /// `false` when the request carries an `Origin` that is neither the server's own (scheme,
    /// host and port, or as `Sec-Fetch-Site` says) nor allowed.
    pub(crate) origin_allowed: bool,
    /// The request's `Origin`, when the layer's CORS rules allow it: echoed in the response.
    pub(crate) cors_origin: Option<HeaderValue>,
    pub(crate) config: Arc<Config>,
    /// Builds the stream's registry entry, should the response be an event stream; shared with
    /// the request's extensions (the `Connection` extractor).
    pub(crate) slot: Arc<ConnectionSlot>,
    /// The encoding the layer would compress an event stream with (feature `compression`).
    pub(crate) accepted: super::compression::Accepted,
}

pin_project! {
    /// Response future of [`SseService`](super::SseService).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Inner<F>,
        info: Option<RequestInfo>,
    }
}

pin_project! {
    #[project = InnerProj]
    pub(crate) enum Inner<F> {
        Plain { #[pin] future: F },
        // The rarer variants are boxed: axum moves this future a few times per request, and
        // every ordinary request would pay for copying their size.
        // A CORS preflight, answered by the layer with these headers.
        Preflight { headers: Box<http::HeaderMap> },
        // Refused before the handler ran; `cors` holds the headers an allowed origin needs.
        Refused {
            refused: Refused,
            cors: Box<http::HeaderMap>,
            version: Version,
            config: Arc<Config>,
        },
        // Answered with `status` and a plain-text `message` before anything else was done: an
        // unknown host, a cross-origin request with an unsafe method, an event stream for an
        // origin that may not open one. `vary`: the layer's CORS `Vary` is added.
        Rejected { status: StatusCode, message: &'static str, vary: bool },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: Inner<F>, info: RequestInfo) -> Self {
        ResponseFuture {
            inner,
            info: Some(info),
        }
    }

    /// A stream refused (by a connection limit or a shutdown) before the handler ran and before
    /// anything was built for it; `cors` holds the headers an allowed origin needs.
    pub(crate) fn refused(
        refused: Refused,
        cors: Box<http::HeaderMap>,
        version: Version,
        config: Arc<Config>,
    ) -> Self {
        ResponseFuture {
            inner: Inner::Refused {
                refused,
                cors,
                version,
                config,
            },
            info: None,
        }
    }

    /// A preflight (an `OPTIONS` request under a layer with allowed origins), answered with
    /// `headers` and no body, without the handler.
    pub(crate) fn preflight(headers: http::HeaderMap) -> Self {
        ResponseFuture {
            inner: Inner::Preflight {
                headers: Box::new(headers),
            },
            info: None,
        }
    }

    /// A request answered with `status` and a plain-text `message`, before the handler ran and
    /// before anything was built for it.
    pub(crate) fn rejected(status: StatusCode, message: &'static str) -> Self {
        ResponseFuture {
            inner: Inner::Rejected {
                status,
                message,
                vary: false,
            },
            info: None,
        }
    }

    /// An event stream refused to an origin that may not open one, before the handler ran:
    /// the same answer as [`finish`] gives a handler's stream for it. `cors`: the layer has
    /// allowed origins, so the answer varies on `Origin`.
    pub(crate) fn refused_origin(cors: bool) -> Self {
        tracing::debug!("refused an event stream to a cross-origin request that is not allowed");
        crate::metrics::refused_origin();
        ResponseFuture {
            inner: Inner::Rejected {
                status: StatusCode::FORBIDDEN,
                message: ORIGIN_REFUSED,
                vary: cors,
            },
            info: None,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<SseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.project() {
            InnerProj::Plain { future } => ready!(future.poll(cx))?,
            InnerProj::Preflight { headers } => {
                let mut response = Response::new(SseBody::full(bytes::Bytes::new()));
                *response.headers_mut() = std::mem::take(&mut **headers);
                return Poll::Ready(Ok(response));
            }
            InnerProj::Refused {
                refused,
                cors,
                version,
                config,
            } => {
                let mut response = Response::new(SseBody::full(refusal(*refused, config)));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                headers.extend(std::mem::take(&mut **cors));
                set_stream_headers(headers, *version);
                return Poll::Ready(Ok(response));
            }
            InnerProj::Rejected {
                status,
                message,
                vary,
            } => {
                let body = bytes::Bytes::from_static(message.as_bytes());
                let mut response = Response::new(SseBody::full(body));
                *response.status_mut() = *status;
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                if *vary {
                    Cors::decorate(response.headers_mut(), None);
                }
                return Poll::Ready(Ok(response));
            }
        };
        let info = this
            .info
            .take()
            .expect("tower_sse::ResponseFuture polled after completion");
        Poll::Ready(Ok(finish(response, info)))
    }
}

/// The body of an event stream refused to an origin that may not open one.
const ORIGIN_REFUSED: &str = "origin not allowed\n";

/// Whether a response is an event stream (`text/event-stream`, any parameters, any case).
/// Runs on every response, so it compares bytes rather than building strings.
pub(crate) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    const ESSENCE: &[u8] = b"text/event-stream";
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes().trim_ascii_start();
    let Some((essence, rest)) = value.split_at_checked(ESSENCE.len()) else {
        return false;
    };
    essence.eq_ignore_ascii_case(ESSENCE)
        && rest
            .iter()
            .find(|&&b| b != b' ' && b != b'\t')
            .is_none_or(|&b| b == b';')
}

/// `Cache-Control` for event streams: never cached, never transformed (compressed, re-chunked)
/// by proxies.
pub(crate) const CACHE_CONTROL: HeaderValue = HeaderValue::from_static("no-cache, no-transform");

fn finish<B: http_body::Body>(
    mut response: Response<B>,
    info: RequestInfo,
) -> Response<SseBody<B>> {
    if info.config.cors.is_some() {
        // Every response, the handler's or the layer's, an event stream or not.
        Cors::decorate(response.headers_mut(), info.cors_origin);
    }
    if !is_event_stream(response.headers()) {
        return response.map(SseBody::passthrough);
    }
    if !info.origin_allowed {
        // The stream body is dropped unpolled: no stream work for a refused origin.
        tracing::debug!("refused an event stream to a cross-origin request that is not allowed");
        crate::metrics::refused_origin();
        let mut refused = Response::new(SseBody::full(ORIGIN_REFUSED.into()));
        *refused.status_mut() = StatusCode::FORBIDDEN;
        refused.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        for vary in response.headers().get_all(header::VARY) {
            refused.headers_mut().append(header::VARY, vary.clone());
        }
        return refused;
    }
    let (mut parts, body) = response.into_parts();
    set_stream_headers(&mut parts.headers, info.version);
    let config = &info.config;
    // A stream the registry would refuse is refused before its entry is built: a refusal
    // allocates nothing but its answer. (Checked again, under the registry's lock, when the
    // entry registers.)
    let registered = config
        .registry
        .admits(config.limits, info.slot.peer_ip())
        .and_then(|()| {
            let entry = info.slot.entry();
            // The topic comes up in the response's extensions (a hub `Subscription` sets it),
            // before the entry registers, so the `Connected` notice carries it.
            if let Some(topic) = parts.extensions.get::<StreamTopic>() {
                entry.set_topic(topic.shared());
            }
            entry.metrics().adopt_end(&parts.extensions);
            config.registry.register(entry, config.limits)
        });
    match registered {
        Ok(registration) => {
            let body = super::compression::stream_body(
                &mut parts.headers,
                body,
                config,
                registration,
                info.accepted,
            );
            Response::from_parts(parts, body)
        }
        Err(refused) => {
            // The handler's body is dropped unpolled.
            super::compression::refused(&mut parts.headers);
            Response::from_parts(parts, SseBody::full(refusal(refused, config)))
        }
    }
}

/// The whole body of a refused stream: a comment saying why and a jittered `retry:` hint. It
/// is sent with `200 OK`, not 429 or 503: an `EventSource` never reconnects after a status
/// other than 200, and this way it comes back later by itself.
fn refusal(refused: Refused, config: &Config) -> bytes::Bytes {
    let (why, retry) = match refused {
        Refused::ShuttingDown => ("shutting down", config.shutdown_retry),
        Refused::GlobalLimit => ("too many connections", config.over_limit_retry),
        Refused::PeerLimit => (
            "too many connections from this address",
            config.over_limit_retry,
        ),
    };
    tracing::debug!(reason = why, "refused an event stream");
    config.registry.count_refused();
    crate::metrics::refused(refused);
    let retry = crate::Event::retry(jitter(retry));
    let mut bytes = bytes::BytesMut::with_capacity(64);
    bytes.extend_from_slice(b": ");
    bytes.extend_from_slice(why.as_bytes());
    bytes.extend_from_slice(b"\n");
    bytes.extend_from_slice(retry.as_bytes());
    bytes.freeze()
}

/// The headers every event stream gets.
fn set_stream_headers(headers: &mut http::HeaderMap, version: Version) {
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(CACHE_CONTROL);
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    headers.remove(header::CONTENT_LENGTH);
    if version >= Version::HTTP_2 {
        // Connection-specific headers are forbidden on HTTP/2 and HTTP/3.
        for name in [
            header::CONNECTION,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
        ] {
            headers.remove(name);
        }
        headers.remove("keep-alive");
        headers.remove("proxy-connection");
    }
}

/// `retry` spread by ±50 %, so clients told the same thing do not all come back at once.
pub(crate) fn jitter(retry: std::time::Duration) -> std::time::Duration {
    retry.mul_f64(0.5 + fastrand::f64())
}
