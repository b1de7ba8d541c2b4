//! Tests for [`SseLayer::allow_hosts`]: which hosts are served, how a request's host is read
//! (`Host`, the target's authority), what an unknown, missing or malformed one is answered,
//! and that the handler never runs for them. The real-socket tests are in
//! `tests/cross_site.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use futures_util::stream;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use proptest::prelude::{ProptestConfig, prop_assert, proptest};
use tower::ServiceExt as _;

use super::SseLayer;
use super::tests::{APP, HOST, rest};
use crate::registry::Registry;
use crate::{Event, EventStream};

/// A router under `layer` whose routes count their handler's runs: `/events` answers an event
/// stream, `/publish` plain text.
struct Fixture {
    router: Router,
    runs: Arc<AtomicUsize>,
    registry: Registry,
}

fn fixture(layer: SseLayer) -> Fixture {
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = Registry::new();
    let (events, publish) = (runs.clone(), runs.clone());
    let router = Router::new()
        .route(
            "/events",
            any(move || {
                events.fetch_add(1, Ordering::SeqCst);
                async { EventStream::new(stream::iter([Event::data("secret")])) }
            }),
        )
        .route(
            "/publish",
            any(move || {
                publish.fetch_add(1, Ordering::SeqCst);
                async { "published" }
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
}

/// A layer serving [`HOST`] on any port and `localhost:8080`.
fn hosts_layer() -> SseLayer {
    SseLayer::new().allow_hosts([HOST, "localhost:8080"])
}

/// A `GET /events` with `Host: host`.
fn for_host(host: &str) -> Request<Body> {
    Request::get("/events")
        .header(header::HOST, host)
        .body(Body::empty())
        .unwrap()
}

/// Asserts that `response` is the refusal `status` with `message`, and that the handler did
/// not run.
async fn assert_refusal(fx: &Fixture, response: Response<Body>, status: StatusCode, message: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert!(response.headers().get("x-accel-buffering").is_none());
    let body = rest(&mut response.into_body()).await;
    assert_eq!(String::from_utf8_lossy(&body), message);
    assert_eq!(fx.runs(), 0, "the handler ran");
    assert!(fx.registry.is_empty());
    assert_eq!(fx.registry.stats().refused, 0);
}

const NOT_SERVED: &str = "this server does not serve the requested host\n";

async fn assert_served(fx: &Fixture, request: Request<Body>) {
    let before = fx.runs();
    let response = fx.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fx.runs(), before + 1, "the handler did not run");
}

async fn assert_not_served(request: Request<Body>) {
    let fx = fixture(hosts_layer());
    let response = fx.send(request).await;
    assert_refusal(&fx, response, StatusCode::MISDIRECTED_REQUEST, NOT_SERVED).await;
}

// ---------------------------------------------------------------------------------------------
// Which hosts are served
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_host_is_answered_421_before_the_handler_runs() {
    assert_not_served(for_host("evil.example")).await;
    assert_not_served(for_host("evil.example:8080")).await;
    // Close to a listed one is not it.
    assert_not_served(for_host("api.example.com.evil.example")).await;
    assert_not_served(for_host("xapi.example.com")).await;
    assert_not_served(for_host("localhost:8081")).await;
    assert_not_served(for_host("127.0.0.1")).await;
}

#[tokio::test]
async fn every_method_is_checked_preflights_included() {
    for method in [Method::GET, Method::POST, Method::OPTIONS, Method::DELETE] {
        let request = Request::builder()
            .method(method.clone())
            .uri("/publish")
            .header(header::HOST, "evil.example")
            .header(header::ORIGIN, "http://evil.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap();
        let fx = fixture(hosts_layer().allow_origins(["http://evil.example"]));
        let response = fx.send(request).await;
        // Not even CORS headers for an allowed origin: the host comes first.
        assert!(
            response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none(),
            "{method}"
        );
        assert_refusal(&fx, response, StatusCode::MISDIRECTED_REQUEST, NOT_SERVED).await;
    }
}

#[tokio::test]
async fn a_listed_host_is_served_in_any_case_and_with_a_trailing_dot() {
    let fx = fixture(hosts_layer());
    for host in [
        HOST,
        "API.Example.COM",
        "api.example.com.",
        "api.example.com:8443",
        // A host without a port, as the URI grammar has it.
        "api.example.com:",
        "localhost:8080",
        "LOCALHOST:8080",
    ] {
        assert_served(&fx, for_host(host)).await;
    }
}

#[tokio::test]
async fn an_entry_with_a_port_takes_a_host_without_one_on_its_schemes_default_port() {
    let fx = fixture(SseLayer::new().allow_hosts(["example.com:443", "example.org:80"]));
    // No scheme known: `http`, port 80.
    assert_served(&fx, for_host("example.org")).await;
    assert_served(&fx, for_host("example.org:80")).await;
    let response = fx.send(for_host("example.com")).await;
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    // HTTP/2 over TLS: the target says `https`.
    let request = Request::get("https://example.com/events")
        .version(Version::HTTP_2)
        .body(Body::empty())
        .unwrap();
    assert_served(&fx, request).await;
    // So does `public_scheme`.
    let fx = fixture(
        SseLayer::new()
            .allow_hosts(["example.com:443"])
            .public_scheme(http::uri::Scheme::HTTPS),
    );
    assert_served(&fx, for_host("example.com")).await;
}

#[tokio::test]
async fn a_wildcard_takes_every_subdomain_but_not_the_name_itself() {
    let fx = fixture(SseLayer::new().allow_hosts(["*.example.com"]));
    for host in ["a.example.com", "A.B.Example.com:8080", "x-1.example.com."] {
        assert_served(&fx, for_host(host)).await;
    }
    for host in [
        "example.com",
        "evilexample.com",
        "example.com.evil",
        "a.example.org",
    ] {
        let response = fx.send(for_host(host)).await;
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
}

#[tokio::test]
async fn addresses_compare_by_value() {
    let fx = fixture(SseLayer::new().allow_hosts(["::1", "[fe80::1]:8080", "127.0.0.1:8080"]));
    for host in [
        "[::1]",
        "[::1]:9000",
        "[0:0:0:0:0:0:0:1]",
        "[FE80::1]:8080",
        "127.0.0.1:8080",
    ] {
        assert_served(&fx, for_host(host)).await;
    }
    for host in [
        "[::2]",
        "[fe80::1]:8081",
        "127.0.0.1:8081",
        "127.0.0.2:8080",
    ] {
        let response = fx.send(for_host(host)).await;
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
}

#[tokio::test]
async fn without_allow_hosts_every_host_is_served() {
    let fx = fixture(SseLayer::new());
    assert_served(&fx, for_host("evil.example")).await;
    assert_served(&fx, Request::get("/events").body(Body::empty()).unwrap()).await;
}

// ---------------------------------------------------------------------------------------------
// The request's host: `Host` and the target's authority
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_http2_authority_is_checked() {
    let h2 = |uri: &str| {
        Request::get(uri)
            .version(Version::HTTP_2)
            .body(Body::empty())
            .unwrap()
    };
    assert_not_served(h2("https://evil.example/events")).await;
    let fx = fixture(hosts_layer());
    assert_served(&fx, h2("https://api.example.com/events")).await;
    // User information in the authority is not part of the host.
    assert_not_served(h2("https://api.example.com@evil.example/events")).await;
}

#[tokio::test]
async fn an_absolute_form_target_and_its_host_header_must_both_be_listed() {
    let absolute = |target: &str, host: &str| {
        Request::get(target)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    };
    assert_not_served(absolute("http://api.example.com/events", "evil.example")).await;
    assert_not_served(absolute("http://evil.example/events", HOST)).await;
    let fx = fixture(hosts_layer());
    assert_served(&fx, absolute("http://api.example.com/events", HOST)).await;
}

#[tokio::test]
async fn a_request_without_a_host_is_answered_400() {
    for version in [Version::HTTP_11, Version::HTTP_10, Version::HTTP_2] {
        let fx = fixture(hosts_layer());
        let request = Request::get("/events")
            .version(version)
            .body(Body::empty())
            .unwrap();
        let response = fx.send(request).await;
        assert_refusal(
            &fx,
            response,
            StatusCode::BAD_REQUEST,
            "the request names no host\n",
        )
        .await;
    }
}

#[tokio::test]
async fn two_host_headers_are_answered_400() {
    let fx = fixture(hosts_layer());
    let request = Request::get("/events")
        .header(header::HOST, HOST)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap();
    let response = fx.send(request).await;
    assert_refusal(
        &fx,
        response,
        StatusCode::BAD_REQUEST,
        "the request has more than one Host header\n",
    )
    .await;
}

#[tokio::test]
async fn a_malformed_host_is_answered_400() {
    let huge = "a".repeat(64 * 1024);
    let malformed: &[&[u8]] = &[
        b"",
        b"api.example.com:99999",
        b"api.example.com:80:80",
        b"api.example.com:8o",
        b"user@api.example.com",
        b"api.example.com/events",
        b"api example.com",
        b"api..example.com",
        b".api.example.com",
        b"::1",
        b"[::1",
        b"[::1]x",
        b"[not-an-address]",
        b"api.\xc3\xa9xample.com",
        b"api.example.com\xff",
        huge.as_bytes(),
    ];
    for host in malformed {
        let fx = fixture(hosts_layer());
        let request = Request::get("/events")
            .header(header::HOST, HeaderValue::from_bytes(host).unwrap())
            .body(Body::empty())
            .unwrap();
        let response = fx.send(request).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(&host[..host.len().min(40)])
        );
        assert_refusal(
            &fx,
            response,
            StatusCode::BAD_REQUEST,
            "the Host header is not host[:port]\n",
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// DNS rebinding
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_rebound_page_is_refused_though_it_is_same_origin_for_its_browser() {
    // evil.example now resolves to the server: its page's requests name it in `Host` and
    // `Origin` alike, and the browser calls them same-origin.
    for (method, uri) in [(Method::GET, "/events"), (Method::POST, "/publish")] {
        let fx = fixture(hosts_layer());
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "evil.example")
            .header(header::ORIGIN, "http://evil.example")
            .header("sec-fetch-site", "same-origin")
            .body(Body::empty())
            .unwrap();
        let response = fx.send(request).await;
        assert_refusal(&fx, response, StatusCode::MISDIRECTED_REQUEST, NOT_SERVED).await;
    }
}

#[tokio::test]
async fn the_same_page_is_served_without_a_host_list() {
    // What `allow_hosts` is for: without it, nothing tells the rebound page apart.
    let fx = fixture(SseLayer::new());
    let request = Request::get("/events")
        .header(header::HOST, "evil.example")
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::empty())
        .unwrap();
    assert_served(&fx, request).await;
}

#[tokio::test]
async fn an_allowed_cross_origin_page_on_a_listed_host_is_served() {
    let fx = fixture(hosts_layer().allow_origins([APP]));
    let request = Request::get("/events")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, APP)
        .body(Body::empty())
        .unwrap();
    let response = fx.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
}

// ---------------------------------------------------------------------------------------------
// The list itself
// ---------------------------------------------------------------------------------------------

fn host_error(host: &str) -> String {
    let err = SseLayer::new().try_allow_hosts([host]).unwrap_err();
    assert_eq!(err.host(), host);
    err.to_string()
}

#[test]
fn try_allow_hosts_takes_names_addresses_wildcards_and_ports() {
    let hosts = [
        "example.com",
        "Example.COM:8080",
        "*.example.com",
        "*.example.com:443",
        "127.0.0.1",
        "127.0.0.1:3000",
        "[::1]",
        "[::1]:3000",
        "::1",
        "xn--bcher-kva.example",
        " localhost ",
        "localhost.",
    ];
    for host in hosts {
        assert!(
            SseLayer::new().try_allow_hosts([host]).is_ok(),
            "{host:?} was refused"
        );
    }
}

#[test]
fn try_allow_hosts_refuses_a_scheme_and_says_to_drop_it() {
    let message = host_error("https://api.example.com");
    assert!(message.contains("a host has no scheme"), "{message}");
    assert!(message.contains(r#""api.example.com""#), "{message}");
}

#[test]
fn try_allow_hosts_refuses_a_path() {
    let message = host_error("api.example.com/");
    assert!(message.contains("no path"), "{message}");
}

#[test]
fn try_allow_hosts_refuses_everything_and_says_what_to_write() {
    for host in ["*", "*:8080"] {
        let message = host_error(host);
        assert!(message.contains("every host"), "{message}");
        assert!(message.contains(".allow_hosts(["), "{message}");
    }
}

#[test]
fn try_allow_hosts_refuses_a_wildcard_that_is_not_the_first_label() {
    for host in [
        "api.*.example.com",
        "*example.com",
        "*.*.example.com",
        "*.127.0.0.1",
    ] {
        let message = host_error(host);
        assert!(message.contains(r#""*.example.com""#), "{host}: {message}");
    }
}

#[test]
fn try_allow_hosts_refuses_what_is_not_a_host() {
    for host in [
        "",
        "api.example.com:",
        "api.example.com:http",
        "api.example.com:65536",
        "user@api.example.com",
        "[::1",
        "api example.com",
        "a..b",
    ] {
        let message = host_error(host);
        assert!(message.contains("[::1]:8080"), "{host:?}: {message}");
    }
}

#[test]
fn try_allow_hosts_refuses_a_name_that_is_not_ascii() {
    let message = host_error("bücher.example");
    assert!(message.contains("xn--"), "{message}");
}

#[test]
#[should_panic(expected = "tower_sse::SseLayer::allow_hosts: host \"*\"")]
fn allow_hosts_panics_on_everything() {
    let _ = SseLayer::new().allow_hosts(["*"]);
}

// ---------------------------------------------------------------------------------------------
// Whatever the host, an answer
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_host_header_gets_an_answer_never_a_panic(
        host in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        listed in "[a-z.:\\[\\]0-9*]{0,30}",
    ) {
        let Ok(value) = HeaderValue::from_bytes(&host) else {
            return Ok(());
        };
        let Ok(layer) = SseLayer::new().try_allow_hosts([listed.as_str(), HOST]) else {
            return Ok(());
        };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let status = runtime.block_on(async {
            let fx = fixture(layer);
            let request = Request::get("/publish")
                .header(header::HOST, value)
                .extension(SocketAddr::from(([127, 0, 0, 1], 4000)))
                .body(Body::empty())
                .unwrap();
            fx.send(request).await.status()
        });
        prop_assert!(
            [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::MISDIRECTED_REQUEST]
                .contains(&status),
            "{status}"
        );
    }
}
