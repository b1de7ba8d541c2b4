use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use tower_service::Service;

use super::config::Config;
use super::cors::Cors;
use super::future::{Inner as InnerFuture, RequestInfo, ResponseFuture};
use super::origin::{
    FetchSite, Scheme, is_own_origin, is_safe, is_same_origin, passes_protection, request_host,
};
use super::proxy::ClientAddr;
use crate::extract::LAST_EVENT_ID;
use crate::registry::{ConnectionSlot, StallSignal, peer_ip};

/// The service produced by [`SseLayer`](crate::SseLayer); see the
/// [module documentation](crate::layer).
//
// Kept to the inner service and one `Arc`: axum clones every route's service for each
// connection (and again for each request), so whatever this holds inline is paid per
// connection.
#[derive(Debug, Clone)]
pub struct SseService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> SseService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        SseService { inner, config }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SseService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<super::SseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let Scanned {
            origin,
            accept,
            user_agent,
            last_event_id,
            fetch_site,
        } = scan(req.headers());
        let config = &*self.config;
        // Refusals come first and keep nothing: the request (its body unread) is dropped.
        if let Some(hosts) = &config.hosts
            && let Err(refused) = hosts.check(req.uri(), req.headers(), || {
                scheme(req.uri(), req.headers(), req.extensions(), config)
            })
        {
            tracing::debug!(
                host = ?req.headers().get(header::HOST),
                authority = ?req.uri().authority(),
                status = refused.status().as_u16(),
                "refused a request for a host this server does not serve"
            );
            return ResponseFuture::rejected(refused.status(), refused.message());
        }
        let protect = config.cross_origin_protection && !is_safe(req.method());
        let fetch_site = FetchSite::of(fetch_site.as_ref());
        // The origin predicate takes the request's parts; only a request with an `Origin`
        // header pays for taking the request apart. It runs here, once per request, and its
        // answer goes to whatever answers the request (the CORS headers, the protection below,
        // a refusal, the response future).
        // `origin_allowed` is `None` without an `Origin`; else whether it is the server's own
        // or an allowed one. `cors_origin` is the origin to echo: an allowed one.
        let (origin_allowed, cors_origin) = match origin {
            None => (None, None),
            Some(origin) => {
                let (parts, body) = req.into_parts();
                let allowed = config
                    .cors
                    .as_ref()
                    .is_some_and(|cors| cors.allows(&origin, &parts));
                let own_origin = || {
                    let scheme = scheme(&parts.uri, &parts.headers, &parts.extensions, config);
                    is_own_origin(&origin, scheme, request_host(&parts.uri, &parts.headers))
                };
                let same_or_allowed = allowed || is_same_origin(fetch_site, own_origin);
                req = Request::from_parts(parts, body);
                (Some(same_or_allowed), allowed.then_some(origin))
            }
        };
        if protect && !passes_protection(fetch_site, origin_allowed) {
            tracing::debug!(
                method = %req.method(),
                origin = ?req.headers().get(header::ORIGIN),
                sec_fetch_site = ?req.headers().get(SEC_FETCH_SITE),
                "refused a cross-origin request with an unsafe method"
            );
            return ResponseFuture::rejected(StatusCode::FORBIDDEN, CROSS_ORIGIN_REFUSED);
        }
        // As tower-http's CORS layer does, every `OPTIONS` is answered as a preflight, with or
        // without an `Origin`, and the handler is not asked.
        if let Some(cors) = &config.cors
            && req.method() == http::Method::OPTIONS
        {
            return ResponseFuture::preflight(cors.preflight(cors_origin));
        }
        // A request that takes nothing but an event stream, as `EventSource`'s do, from an
        // origin that may not open one is refused before the handler runs: the response future
        // would refuse its stream anyway, and whatever the handler did for it (a subscription
        // opened, a poller started) would be for nothing, at the cross-origin page's bidding.
        if origin_allowed == Some(false) && accept == Accept::OnlyEventStream {
            return ResponseFuture::refused_origin(config.cors.is_some());
        }
        let peer = client_addr(&mut req, &self.config);
        // A request that takes nothing but an event stream, as `EventSource`'s do, and the
        // registry would refuse anyway is refused before the handler runs, so a reconnect storm
        // against a full or stopping server costs no handler work (a replay read, say) and
        // allocates nothing but its answer. Any other request runs its handler: one that may
        // be answered otherwise (`Accept: */*` from `fetch`, `application/json,
        // text/event-stream` from an MCP client) must be, and if its answer is an event stream
        // the limits apply to it when it is registered.
        let origin_allowed = origin_allowed.unwrap_or(true);
        if origin_allowed
            && accept == Accept::OnlyEventStream
            && let Err(refused) = config.registry.admits(config.limits, peer_ip(peer))
        {
            let mut cors = Box::new(http::HeaderMap::new());
            if config.cors.is_some() {
                Cors::decorate(&mut cors, cors_origin);
            }
            return ResponseFuture::refused(refused, cors, req.version(), self.config.clone());
        }
        // The stream's slot goes down in the request's extensions, where the handler's
        // `Connection` extractor finds it whatever runs the handler (the way axum's
        // `MatchedPath` does), and stays in the response future, which registers its entry if
        // the response is an event stream.
        let slot = Arc::new(ConnectionSlot::new(
            config.registry.clone(),
            peer,
            req.uri().clone(),
            user_agent,
            last_event_id,
            // Left by `tower_sse::serve`: how a stalled stream's connection gets closed.
            req.extensions().get::<StallSignal>().cloned(),
        ));
        req.extensions_mut().insert(slot.clone());
        let info = RequestInfo {
            version: req.version(),
            origin_allowed,
            cors_origin,
            config: self.config.clone(),
            slot,
            accepted: super::compression::accepted(req.headers(), &self.config),
        };
        let inner = InnerFuture::Plain {
            future: self.inner.call(req),
        };
        ResponseFuture::new(inner, info)
    }
}

/// `Sec-Fetch-Site`, which browsers set on every request (since 2023, all of them).
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The body of a request refused by the cross-origin protection.
const CROSS_ORIGIN_REFUSED: &str = "cross-origin request refused\n";

/// The scheme the client used to reach the server, which its own origin has: the one the
/// [trusted proxies](crate::SseLayer::trusted_proxies) forwarded (`Forwarded: proto=`,
/// `X-Forwarded-Proto`), else the [public scheme](crate::SseLayer::public_scheme), else the
/// request target's (HTTP/2 always has one), else `http`: a layer cannot see whether its
/// connection is TLS.
fn scheme(
    uri: &http::Uri,
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
    config: &Config,
) -> Scheme {
    if let Some(trusted) = &config.trusted_proxies
        && let Some(peer) = peer_addr(extensions)
        && let Some(scheme) = trusted.proto(peer, headers)
    {
        return scheme;
    }
    if let Some(scheme) = config.public_scheme {
        return scheme;
    }
    match uri.scheme() {
        Some(scheme) if *scheme == http::uri::Scheme::HTTPS => Scheme::Https,
        _ => Scheme::Http,
    }
}

/// The client's address: behind a trusted proxy, the one it forwarded, left in the request's
/// extensions as a [`ClientAddr`] for handlers; else the one the server (or an outer layer)
/// left there.
fn client_addr<B>(req: &mut Request<B>, config: &Config) -> Option<std::net::SocketAddr> {
    let Some(trusted) = &config.trusted_proxies else {
        return match req.extensions().get::<ClientAddr>() {
            Some(ClientAddr(client)) => Some(*client),
            None => peer_addr(req.extensions()),
        };
    };
    let client = trusted.client(peer_addr(req.extensions())?, req.headers());
    req.extensions_mut().insert(ClientAddr(client));
    Some(client)
}

/// The peer's address, as the server left it in the request's extensions.
fn peer_addr(extensions: &http::Extensions) -> Option<std::net::SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(*addr);
    }
    extensions.get::<std::net::SocketAddr>().copied()
}

/// The request headers the layer reads.
struct Scanned {
    origin: Option<HeaderValue>,
    accept: Accept,
    user_agent: Option<HeaderValue>,
    last_event_id: Option<HeaderValue>,
    fetch_site: Option<HeaderValue>,
}

/// Finds the headers the layer reads in one pass over the request's: on every request that is
/// cheaper than five lookups, two of them by non-standard names. The first value of each
/// counts, as with `HeaderMap::get`.
fn scan(headers: &http::HeaderMap) -> Scanned {
    let mut scanned = Scanned {
        origin: None,
        accept: Accept::Unsaid,
        user_agent: None,
        last_event_id: None,
        fetch_site: None,
    };
    for (name, value) in headers {
        let first = |slot: &mut Option<HeaderValue>| {
            slot.get_or_insert_with(|| value.clone());
        };
        if name == header::ORIGIN {
            first(&mut scanned.origin);
        } else if name == header::ACCEPT {
            scanned.accept = scanned.accept.and(value.as_bytes());
        } else if name == header::USER_AGENT {
            first(&mut scanned.user_agent);
        } else if name == LAST_EVENT_ID {
            first(&mut scanned.last_event_id);
        } else if name == SEC_FETCH_SITE {
            first(&mut scanned.fetch_site);
        }
    }
    scanned
}

/// What the `Accept` headers of a request take, as far as the layer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// No media range yet.
    Unsaid,
    /// `text/event-stream` and nothing else (parameters aside), as `EventSource` sends.
    OnlyEventStream,
    /// Some other media range (`*/*` among them).
    Other,
}

impl Accept {
    /// Adds the media ranges of one `Accept` value.
    fn and(self, value: &[u8]) -> Accept {
        value.split(|&b| b == b',').fold(self, |accept, range| {
            let essence = range
                .split(|&b| b == b';')
                .next()
                .unwrap_or(range)
                .trim_ascii();
            match accept {
                _ if essence.is_empty() => accept,
                Accept::Other => Accept::Other,
                _ if essence.eq_ignore_ascii_case(b"text/event-stream") => Accept::OnlyEventStream,
                _ => Accept::Other,
            }
        })
    }
}
