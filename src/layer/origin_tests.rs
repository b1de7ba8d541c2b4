//! Tests for the cross-origin protection (requests with unsafe methods from other origins are
//! refused before the handler runs) and for the same-origin check it shares with CORS, which
//! compares scheme, host and port. The real-socket tests are in `tests/cross_site.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::any;
use bytes::Bytes;
use futures_util::stream;
use http::uri::Scheme as UriScheme;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use tower::ServiceExt as _;

use super::SseLayer;
use super::origin::{FetchSite, Scheme, passes_protection};
use super::proxy::TrustedProxies;
use super::tests::{APP, HOST, rest};
use crate::registry::Registry;
use crate::{Event, EventStream};

const EVIL: &str = "https://evil.example";
const REFUSED: &str = "cross-origin request refused\n";
/// The server's own origin, for a request that says nothing of TLS.
const OWN: &str = "http://api.example.com";

/// A router under `layer` whose handlers count their runs: `/publish` reads its body and
/// answers plain text, `/answer` answers an event stream (a stream read with `fetch` after a
/// `POST`).
struct Fixture {
    router: Router,
    runs: Arc<AtomicUsize>,
    registry: Registry,
}

fn fixture(layer: SseLayer) -> Fixture {
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = Registry::new();
    let (publish, answer) = (runs.clone(), runs.clone());
    let router = Router::new()
        .route(
            "/publish",
            any(move |body: String| {
                publish.fetch_add(1, Ordering::SeqCst);
                async move { format!("published {body}") }
            }),
        )
        .route(
            "/answer",
            any(move || {
                answer.fetch_add(1, Ordering::SeqCst);
                async { EventStream::new(stream::iter([Event::data("answer")])) }
            }),
        )
        .layer(layer.registry(registry.clone()));
    Fixture {
        router,
        runs,
        registry,
    }
}

impl Fixture {
    async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(request).await.unwrap()
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    /// Sends `request` and asserts it was refused by the protection, without its handler.
    async fn assert_refused(&self, request: Request<Body>) {
        let runs = self.runs();
        let response = self.send(request).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert!(
            response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
        assert_eq!(rest(&mut response.into_body()).await, REFUSED.as_bytes());
        assert_eq!(self.runs(), runs, "the handler ran");
        assert!(self.registry.is_empty());
    }

    /// Sends `request` and asserts its handler ran and answered.
    async fn assert_passes(&self, request: Request<Body>) -> Response<Body> {
        let runs = self.runs();
        let response = self.send(request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(self.runs(), runs + 1, "the handler did not run");
        response
    }
}

/// A simple `POST` to `/publish` on [`HOST`] with a `text/plain` body, and these headers.
fn post(headers: &[(&str, &str)]) -> Request<Body> {
    request(Method::POST, "/publish", headers)
}

fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "text/plain");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::from("hello")).unwrap()
}

fn with_peer(mut request: Request<Body>, peer: &str) -> Request<Body> {
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

// ---------------------------------------------------------------------------------------------
// What is refused
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_cross_origin_simple_post_is_refused_before_the_handler_runs() {
    let fx = fixture(SseLayer::new());
    fx.assert_refused(post(&[("origin", EVIL)])).await;
    fx.assert_refused(post(&[("origin", EVIL), ("sec-fetch-site", "cross-site")]))
        .await;
    // A sibling subdomain is same-site, still another origin.
    fx.assert_refused(post(&[
        ("origin", "https://www.example.com"),
        ("sec-fetch-site", "same-site"),
    ]))
    .await;
}

#[tokio::test]
async fn a_null_origin_is_refused() {
    let fx = fixture(SseLayer::new().allow_origins([APP]));
    fx.assert_refused(post(&[("origin", "null")])).await;
    fx.assert_refused(post(&[
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ]))
    .await;
}

#[tokio::test]
async fn sec_fetch_site_cross_site_without_origin_is_refused() {
    let fx = fixture(SseLayer::new().allow_origins([APP]));
    for site in ["cross-site", "same-site", "something-new", "Same-Origin"] {
        fx.assert_refused(post(&[("sec-fetch-site", site)])).await;
    }
}

#[tokio::test]
async fn every_unsafe_method_is_protected() {
    let fx = fixture(SseLayer::new());
    for method in ["POST", "PUT", "PATCH", "DELETE", "TRACE", "PURGE"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        fx.assert_refused(request(method, "/publish", &[("origin", EVIL)]))
            .await;
    }
}

#[tokio::test]
async fn a_cross_origin_post_stream_is_refused_before_its_handler_runs() {
    let fx = fixture(SseLayer::new());
    fx.assert_refused(request(
        Method::POST,
        "/answer",
        &[("origin", EVIL), ("accept", "*/*")],
    ))
    .await;
}

#[tokio::test]
async fn a_refused_request_body_is_never_read() {
    let fx = fixture(SseLayer::new());
    let read = Arc::new(AtomicBool::new(false));
    let flag = read.clone();
    let body = Body::from_stream(stream::once(async move {
        flag.store(true, Ordering::SeqCst);
        Ok::<_, Infallible>(Bytes::from_static(b"payload"))
    }));
    let request = Request::post("/publish")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, EVIL)
        .body(body)
        .unwrap();
    fx.assert_refused(request).await;
    assert!(!read.load(Ordering::SeqCst), "the body was read");
}

#[tokio::test]
async fn an_origin_that_is_not_an_origin_is_refused_never_a_panic() {
    let fx = fixture(SseLayer::new());
    let huge = format!("http://{}", "a".repeat(64 * 1024));
    let origins: &[&[u8]] = &[
        b"",
        b"api.example.com",
        b"://api.example.com",
        b"http://",
        b"http://api.example.com/",
        b"http://api.example.com:99999",
        b"http://user@api.example.com",
        b"ftp://api.example.com",
        b" http://api.example.com",
        b"http://api.\xffexample.com",
        b"\xff\xfe",
        huge.as_bytes(),
    ];
    for origin in origins {
        let request = Request::post("/publish")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, HeaderValue::from_bytes(origin).unwrap())
            .body(Body::empty())
            .unwrap();
        fx.assert_refused(request).await;
    }
}

// ---------------------------------------------------------------------------------------------
// What passes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_post_without_origin_or_sec_fetch_site_passes() {
    // `curl`, a server, or an old browser on a same-origin page.
    let fx = fixture(SseLayer::new());
    let response = fx.assert_passes(post(&[])).await;
    assert_eq!(rest(&mut response.into_body()).await, b"published hello");
}

#[tokio::test]
async fn what_the_browser_calls_same_origin_or_user_initiated_passes() {
    let fx = fixture(SseLayer::new());
    fx.assert_passes(post(&[("sec-fetch-site", "same-origin")]))
        .await;
    fx.assert_passes(post(&[("sec-fetch-site", "none")])).await;
    fx.assert_passes(post(&[("sec-fetch-site", "same-origin"), ("origin", OWN)]))
        .await;
    // HTTPS over HTTP/1.1, which the layer cannot see: the browser's word decides.
    fx.assert_passes(post(&[
        ("sec-fetch-site", "same-origin"),
        ("origin", "https://api.example.com"),
    ]))
    .await;
    // A same-origin page with `Referrer-Policy: no-referrer` sends `Origin: null`.
    fx.assert_passes(post(&[
        ("sec-fetch-site", "same-origin"),
        ("origin", "null"),
    ]))
    .await;
}

#[tokio::test]
async fn the_servers_own_origin_passes_with_its_scheme_host_and_port() {
    let fx = fixture(SseLayer::new());
    for origin in [OWN, "HTTP://API.Example.com", "http://api.example.com:80"] {
        fx.assert_passes(post(&[("origin", origin)])).await;
    }
    let on_port = |origin: &str| {
        Request::post("/publish")
            .header(header::HOST, "api.example.com:8080")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap()
    };
    fx.assert_passes(on_port("http://api.example.com:8080"))
        .await;
    fx.assert_refused(on_port(OWN)).await;
    fx.assert_refused(on_port("http://api.example.com:8081"))
        .await;
}

#[tokio::test]
async fn a_scheme_mismatch_is_another_origin() {
    // Before, only hosts were compared: `https://api.example.com` passed as the server's own.
    let fx = fixture(SseLayer::new());
    fx.assert_refused(post(&[("origin", "https://api.example.com")]))
        .await;
    fx.assert_refused(post(&[("origin", "http://api.example.com:443")]))
        .await;
}

#[tokio::test]
async fn a_target_with_a_scheme_gives_the_servers_own() {
    // HTTP/2 over TLS: the request's target has `https` and the authority.
    let fx = fixture(SseLayer::new());
    let h2 = |origin: &str| {
        Request::post("https://api.example.com/publish")
            .version(Version::HTTP_2)
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap()
    };
    fx.assert_passes(h2("https://api.example.com")).await;
    fx.assert_passes(h2("https://api.example.com:443")).await;
    fx.assert_refused(h2(OWN)).await;
}

#[tokio::test]
async fn ipv6_hosts_compare_by_address() {
    let fx = fixture(SseLayer::new());
    let request = Request::post("/publish")
        .header(header::HOST, "[::1]:8080")
        .header(header::ORIGIN, "http://[0:0::1]:8080")
        .body(Body::empty())
        .unwrap();
    fx.assert_passes(request).await;
}

#[tokio::test]
async fn an_allowed_origin_passes() {
    let fx = fixture(SseLayer::new().allow_origins([APP]));
    fx.assert_passes(post(&[("origin", APP)])).await;
    fx.assert_passes(post(&[("origin", APP), ("sec-fetch-site", "cross-site")]))
        .await;
    fx.assert_passes(post(&[("origin", APP), ("sec-fetch-site", "same-site")]))
        .await;
    fx.assert_refused(post(&[("origin", EVIL)])).await;

    let fx = fixture(
        SseLayer::new()
            .allow_origin_predicate(|origin, _| origin.as_bytes().ends_with(b".example.com")),
    );
    fx.assert_passes(post(&[("origin", "https://shop.example.com")]))
        .await;
    fx.assert_refused(post(&[("origin", EVIL)])).await;
}

#[tokio::test]
async fn an_allowed_origins_post_stream_keeps_working() {
    let fx = fixture(
        SseLayer::new()
            .allow_origins([APP])
            .allow_methods([Method::POST]),
    );
    let response = fx
        .assert_passes(request(
            Method::POST,
            "/answer",
            &[("origin", APP), ("sec-fetch-site", "cross-site")],
        ))
        .await;
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
}

#[tokio::test]
async fn safe_methods_and_preflights_are_never_refused() {
    let fx = fixture(SseLayer::new());
    for method in [Method::GET, Method::HEAD] {
        // Not refused by the protection: the handler runs (a CORS-less answer the page cannot
        // read, as before).
        fx.assert_passes(request(method, "/publish", &[("origin", EVIL)]))
            .await;
    }
    // A preflight goes to the handler when no origin is allowed (no CORS), or is answered by
    // CORS; never refused by the protection.
    let preflight = request(
        Method::OPTIONS,
        "/publish",
        &[
            ("origin", EVIL),
            ("access-control-request-method", "POST"),
            ("sec-fetch-site", "cross-site"),
        ],
    );
    fx.assert_passes(preflight).await;
    let fx = fixture(SseLayer::new().allow_origins([APP]));
    let preflight = request(
        Method::OPTIONS,
        "/publish",
        &[("origin", EVIL), ("access-control-request-method", "POST")],
    );
    let response = fx.send(preflight).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert!(
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
}

#[tokio::test]
async fn no_cross_origin_protection_lets_everything_through() {
    let fx = fixture(SseLayer::new().no_cross_origin_protection());
    fx.assert_passes(post(&[("origin", EVIL)])).await;
    fx.assert_passes(post(&[("origin", "null")])).await;
    fx.assert_passes(post(&[("sec-fetch-site", "cross-site")]))
        .await;
}

// ---------------------------------------------------------------------------------------------
// The server's own scheme
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn x_forwarded_proto_from_a_trusted_proxy_gives_the_scheme() {
    let fx = fixture(SseLayer::new().trusted_proxies(["10.0.0.0/8"]));
    let https = |headers: &[(&str, &str)], peer: &str| {
        let mut all = vec![("origin", "https://api.example.com")];
        all.extend_from_slice(headers);
        with_peer(post(&all), peer)
    };
    let proxy = "10.0.0.1:50000";
    fx.assert_passes(https(&[("x-forwarded-proto", "https")], proxy))
        .await;
    fx.assert_passes(https(&[("x-forwarded-proto", "HTTPS")], proxy))
        .await;
    fx.assert_passes(https(
        &[("forwarded", "for=203.0.113.7;proto=https")],
        proxy,
    ))
    .await;
    fx.assert_passes(https(
        &[("forwarded", "for=203.0.113.7;proto=\"https\"")],
        proxy,
    ))
    .await;
    // The proxy says `http`: the page on `https` is another origin.
    fx.assert_refused(https(&[("x-forwarded-proto", "http")], proxy))
        .await;
    // From anyone else, the headers are not read.
    let peer = "198.51.100.9:4000";
    fx.assert_refused(https(&[("x-forwarded-proto", "https")], peer))
        .await;
    fx.assert_refused(https(&[("forwarded", "proto=https")], peer))
        .await;
    // And an `http` page on the same host is then the server's own.
    fx.assert_passes(with_peer(
        post(&[("origin", OWN), ("x-forwarded-proto", "https")]),
        peer,
    ))
    .await;
}

#[tokio::test]
async fn public_scheme_gives_the_scheme_when_no_trusted_proxy_says() {
    let fx = fixture(SseLayer::new().public_scheme(UriScheme::HTTPS));
    fx.assert_passes(post(&[("origin", "https://api.example.com")]))
        .await;
    fx.assert_refused(post(&[("origin", OWN)])).await;
    // A trusted proxy's word comes first.
    let fx = fixture(
        SseLayer::new()
            .public_scheme(UriScheme::HTTPS)
            .trusted_proxies(["10.0.0.0/8"]),
    );
    fx.assert_passes(with_peer(
        post(&[("origin", OWN), ("x-forwarded-proto", "http")]),
        "10.0.0.1:1",
    ))
    .await;
}

#[test]
#[should_panic(expected = "is neither `http` nor `https`")]
fn public_scheme_panics_on_another_scheme() {
    let _ = SseLayer::new().public_scheme("ftp".parse::<UriScheme>().unwrap());
}

#[tokio::test]
async fn streams_with_an_origin_use_the_same_check() {
    // A GET stream whose `Origin` is not the server's own is the existing 403; the scheme
    // counts there too.
    let fx = fixture(SseLayer::new());
    let get = |origin: &str| request(Method::GET, "/answer", &[("origin", origin)]);
    let response = fx.send(get("https://api.example.com")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = fx.send(get(OWN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
}

/// The scheme `TrustedProxies::proto` reads for a request from `peer` with these headers.
fn proto_of(peer: &str, headers: &[(&str, &str)]) -> Option<Scheme> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    TrustedProxies::list(["10.0.0.0/8"])
        .unwrap()
        .proto(peer.parse().unwrap(), &map)
}

#[test]
fn forwarded_proto_is_read_where_the_client_is() {
    let proxy = "10.0.0.1:1";
    let proto = |forwarded: &str| proto_of(proxy, &[("forwarded", forwarded)]);
    assert_eq!(proto("proto=https"), Some(Scheme::Https));
    assert_eq!(
        proto("for=203.0.113.7;proto=https;host=x"),
        Some(Scheme::Https)
    );
    // What the client wrote before the proxy's element is not believed.
    assert_eq!(
        proto("for=198.51.100.1;proto=https, for=203.0.113.7;proto=http"),
        Some(Scheme::Http)
    );
    // Behind two trusted proxies: the first one's element, where the client is.
    assert_eq!(
        proto("for=203.0.113.7;proto=https, for=10.0.0.2;proto=http"),
        Some(Scheme::Https)
    );
    assert_eq!(proto("for=203.0.113.7"), None);
    assert_eq!(proto("for=203.0.113.7;proto=gopher"), None);
    assert_eq!(proto("for=203.0.113.7;proto=\"https"), None);
}

#[test]
fn x_forwarded_proto_is_read_from_its_rightmost_value() {
    let proxy = "10.0.0.1:1";
    let proto = |value: &str| proto_of(proxy, &[("x-forwarded-proto", value)]);
    assert_eq!(proto("https"), Some(Scheme::Https));
    assert_eq!(proto(" https "), Some(Scheme::Https));
    assert_eq!(proto("http, https"), Some(Scheme::Https));
    assert_eq!(proto("https, http"), Some(Scheme::Http));
    assert_eq!(proto("https,"), Some(Scheme::Https));
    assert_eq!(proto(""), None);
    assert_eq!(proto("wss"), None);
}

#[test]
fn forwarded_and_x_forwarded_proto_must_agree() {
    let proxy = "10.0.0.1:1";
    let both = |forwarded: &str, xfp: &str| {
        proto_of(
            proxy,
            &[("forwarded", forwarded), ("x-forwarded-proto", xfp)],
        )
    };
    assert_eq!(both("proto=https", "https"), Some(Scheme::Https));
    assert_eq!(both("proto=https", "http"), None);
    assert_eq!(both("for=203.0.113.7", "https"), None);
}

#[test]
fn an_untrusted_peers_proto_is_not_read() {
    assert_eq!(
        proto_of("198.51.100.9:1", &[("x-forwarded-proto", "https")]),
        None
    );
    assert_eq!(
        proto_of("198.51.100.9:1", &[("forwarded", "proto=https")]),
        None
    );
}

#[test]
fn the_protection_is_gos_cross_origin_protection() {
    use FetchSite::*;
    // (Sec-Fetch-Site, Origin: none / own-or-allowed / other) → passes
    let table = [
        (SameOrigin, None, true),
        (SameOrigin, Some(false), true),
        (UserInitiated, Some(false), true),
        (CrossOrigin, None, false),
        (CrossOrigin, Some(true), true),
        (CrossOrigin, Some(false), false),
        (Absent, None, true),
        (Absent, Some(true), true),
        (Absent, Some(false), false),
    ];
    for (site, origin, passes) in table {
        assert_eq!(
            passes_protection(site, origin),
            passes,
            "{site:?} {origin:?}"
        );
    }
    assert_eq!(FetchSite::of(None), Absent);
    let site = |value: &'static str| FetchSite::of(Some(&HeaderValue::from_static(value)));
    assert_eq!(site("same-origin"), SameOrigin);
    assert_eq!(site("none"), UserInitiated);
    assert_eq!(site("same-site"), CrossOrigin);
    assert_eq!(site("cross-site"), CrossOrigin);
    assert_eq!(site(""), CrossOrigin);
}
