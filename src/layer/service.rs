use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, header};
use tower_http::cors::Cors;
use tower_layer::Layer;
use tower_service::Service;

use super::cors::is_same_origin;
use super::future::{Inner as InnerFuture, RequestInfo, ResponseFuture};
use super::layer::Config;
use crate::extract::LAST_EVENT_ID;
use crate::registry::ConnectionSlot;

/// The service produced by [`SseLayer`](crate::SseLayer); see the
/// [module documentation](crate::layer).
#[derive(Debug, Clone)]
pub struct SseService<S> {
    inner: Inner<S>,
    config: Arc<Config>,
}

#[derive(Debug, Clone)]
// Not boxed: axum clones the service for every request, and a box would allocate each time.
#[allow(clippy::large_enum_variant)]
enum Inner<S> {
    Plain(S),
    Cors(Cors<S>),
}

impl<S> SseService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        let inner = match &config.cors {
            Some(cors) => Inner::Cors(cors.layer(inner)),
            None => Inner::Plain(inner),
        };
        SseService { inner, config }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SseService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body + Default,
{
    type Response = Response<super::SseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.inner {
            Inner::Plain(s) => s.poll_ready(cx),
            Inner::Cors(s) => s.poll_ready(cx),
        }
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The origin predicate takes the request's parts; only a request with an `Origin`
        // header pays for taking the request apart.
        let origin_allowed = match req.headers().get(header::ORIGIN).cloned() {
            None => true,
            Some(origin) => {
                let (parts, body) = req.into_parts();
                let allowed = is_same_origin(&origin, &parts)
                    || self
                        .config
                        .origins
                        .as_ref()
                        .is_some_and(|allowed| allowed.allows(&origin, &parts));
                req = Request::from_parts(parts, body);
                allowed
            }
        };
        let slot = ConnectionSlot::new(self.config.registry.clone(), peer_addr(req.extensions()));
        req.extensions_mut().insert(slot.clone());
        // A stream the registry would refuse anyway is refused before the handler runs, so a
        // reconnect storm against a full or stopping server costs no handler work (a replay
        // read, say). Only requests that ask for an event stream, as `EventSource` does.
        let early = if origin_allowed && accepts_event_stream(req.headers()) {
            self.config
                .registry
                .admits(self.config.limits, slot.peer_ip())
                .err()
        } else {
            None
        };
        let info = RequestInfo {
            version: req.version(),
            origin_allowed,
            config: self.config.clone(),
            slot,
            uri: req.uri().clone(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            last_event_id: req.headers().get(LAST_EVENT_ID).cloned(),
        };
        if let Some(refused) = early {
            let (parts, _body) = req.into_parts();
            let cors = allowed_origin_headers(&parts, &self.config);
            return ResponseFuture::new(InnerFuture::Refused { refused, cors }, info);
        }
        let inner = match &mut self.inner {
            Inner::Plain(s) => InnerFuture::Plain {
                future: s.call(req),
            },
            Inner::Cors(s) => InnerFuture::Cors {
                future: s.call(req),
            },
        };
        ResponseFuture::new(inner, info)
    }
}

/// The client's address, as the server left it in the request's extensions.
fn peer_addr(extensions: &http::Extensions) -> Option<std::net::SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(*addr);
    }
    extensions.get::<std::net::SocketAddr>().copied()
}

/// Whether the request's `Accept` names `text/event-stream`, as `EventSource` always does.
fn accepts_event_stream(headers: &http::HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|accept| {
        accept
            .as_bytes()
            .windows(b"text/event-stream".len())
            .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"))
    })
}

/// The CORS headers an allowed cross-origin request gets on a response that does not go
/// through tower-http's CORS service (an early refusal); none for any other request.
fn allowed_origin_headers(parts: &http::request::Parts, config: &Config) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if let (Some(origin), Some(allowed)) = (parts.headers.get(header::ORIGIN), &config.origins)
        && allowed.allows(origin, parts)
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            http::HeaderValue::from_static("true"),
        );
        headers.insert(header::VARY, http::HeaderValue::from_static("origin"));
    }
    headers
}
