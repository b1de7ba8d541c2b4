use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, header};
use tower_http::cors::Cors;
use tower_layer::Layer;
use tower_service::Service;

use super::cors::is_same_origin;
use super::future::{Inner as InnerFuture, RequestInfo, ResponseFuture};
use super::layer::Config;
use crate::LastEventId;
use crate::registry::{ConnShared, Connection};

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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let origin_allowed = match parts.headers.get(header::ORIGIN) {
            None => true,
            Some(origin) => {
                is_same_origin(origin, &parts)
                    || self
                        .config
                        .origins
                        .as_ref()
                        .is_some_and(|allowed| allowed.allows(origin, &parts))
            }
        };
        let conn = Arc::new(ConnShared::new(
            self.config.registry.next_id(),
            parts.uri.clone(),
            peer_addr(&parts.extensions),
            parts.headers.get(header::USER_AGENT).cloned(),
            LastEventId::from_parts(&parts),
        ));
        parts.extensions.insert(Connection::new(conn.clone()));
        let info = RequestInfo {
            version: parts.version,
            origin_allowed,
            config: self.config.clone(),
            conn,
        };
        let req = Request::from_parts(parts, body);
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
