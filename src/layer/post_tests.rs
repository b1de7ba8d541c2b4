//! Tests for streams that answer a `POST` read with `fetch`: the CORS preflight for a JSON body
//! and `Last-Event-ID`, the header read on a `POST`, and connection limits for streams whatever
//! the request's `Accept` header, without refusing ordinary requests.
//!
//! No network: requests go through an axum router with `oneshot` and bodies are read frame by
//! frame.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::post;
use futures_util::stream;
use http::{Method, Request, Response, StatusCode, header};

use super::SseLayer;
use super::tests::{APP, HOST, lists, next, parse, rest, serve};
use crate::registry::Registry;
use crate::{Event, EventStream, LastEventId};

const PRELUDE: &[u8] = b":\n\n";
const JSON: &str = r#"{"prompt":"hi"}"#;

/// A layer that lets pages on [`APP`] `POST` JSON with `fetch`.
fn fetch_layer() -> SseLayer {
    SseLayer::new()
        .allow_origins([APP])
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE])
}

/// A `POST` of [`JSON`] as `fetch` sends it: `Accept: */*`.
fn fetch_post(uri: &str) -> Request<Body> {
    fetch_post_accepting(uri, "*/*")
}

/// A `POST` of [`JSON`] with this `Accept` header and whatever else `more` adds.
fn fetch_post_with(
    uri: &str,
    accept: &str,
    more: impl FnOnce(http::request::Builder) -> http::request::Builder,
) -> Request<Body> {
    let request = Request::post(uri)
        .header(header::HOST, HOST)
        .header(header::ACCEPT, accept)
        .header(header::CONTENT_TYPE, "application/json");
    more(request).body(Body::from(JSON)).unwrap()
}

fn fetch_post_accepting(uri: &str, accept: &str) -> Request<Body> {
    fetch_post_with(uri, accept, |request| request)
}

/// A router under `layer` (on a registry the test watches).
///
/// - `POST /answer`: an event stream saying which `Last-Event-ID` and body it got; counts its
///   handler's runs in `runs` and records in `polled` whether its stream was ever polled.
/// - `POST /json`: an ordinary JSON answer.
struct Fixture {
    router: Router,
    registry: Registry,
    runs: Arc<AtomicUsize>,
    polled: Arc<AtomicBool>,
}

fn fixture(layer: SseLayer) -> Fixture {
    let registry = Registry::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let polled = Arc::new(AtomicBool::new(false));
    let (count, flag) = (runs.clone(), polled.clone());
    let router = Router::new()
        .route(
            "/answer",
            post(move |last: Option<LastEventId>, body: String| {
                count.fetch_add(1, Ordering::SeqCst);
                let flag = flag.clone();
                async move {
                    let last = last
                        .as_ref()
                        .and_then(LastEventId::as_str)
                        .map(str::to_owned);
                    let mut first = Some(Event::data(format!("after {last:?}, prompt {body}")));
                    EventStream::new(stream::poll_fn(move |_| {
                        flag.store(true, Ordering::SeqCst);
                        match first.take() {
                            Some(event) => Poll::Ready(Some(event)),
                            None => Poll::Pending,
                        }
                    }))
                }
            }),
        )
        .route(
            "/json",
            post(|| async { axum::Json(serde_json::json!({"ok": true})) }),
        )
        .layer(layer.registry(registry.clone()));
    Fixture {
        router,
        registry,
        runs,
        polled,
    }
}

impl Fixture {
    async fn send(&self, request: Request<Body>) -> Response<Body> {
        use tower::ServiceExt as _;
        self.router.clone().oneshot(request).await.unwrap()
    }
}

/// Asserts that `response` is the layer's refusal of a stream: `200 OK`, an event stream made
/// of a comment saying `why` and a `retry:` hint of 10 s ± 50 %.
async fn assert_refused(response: Response<Body>, why: &str) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let bytes = rest(&mut response.into_body()).await;
    let comment = format!(": {why}\n");
    assert!(
        bytes.starts_with(comment.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    let parsed = parse(&bytes);
    assert!(parsed.events.is_empty());
    let retry = parsed.retry.expect("a retry hint");
    assert!((5000..=15000).contains(&retry), "{retry}");
}

// ---------------------------------------------------------------------------------------------
// CORS preflight
// ---------------------------------------------------------------------------------------------

fn preflight(method: &str, headers: &str) -> Request<Body> {
    Request::options("/answer")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, APP)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn preflight_for_a_json_post_with_last_event_id_succeeds() {
    let response = serve(
        fetch_layer(),
        preflight("POST", "content-type,last-event-id"),
        Response::new(Body::empty()),
    )
    .await;
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert!(lists(headers, header::ACCESS_CONTROL_ALLOW_METHODS, "POST"));
    for name in ["content-type", "last-event-id"] {
        assert!(
            lists(headers, header::ACCESS_CONTROL_ALLOW_HEADERS, name),
            "{name}: {headers:?}"
        );
    }
}

#[tokio::test]
async fn preflight_for_a_json_post_is_not_granted_until_post_and_content_type_are_allowed() {
    let layer = SseLayer::new().allow_origins([APP]);
    let response = serve(
        layer,
        preflight("POST", "content-type,last-event-id"),
        Response::new(Body::empty()),
    )
    .await;
    let headers = response.headers();
    assert!(!lists(
        headers,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        "POST"
    ));
    assert!(!lists(
        headers,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        "content-type"
    ));
}

#[tokio::test]
async fn preflight_from_an_unlisted_origin_is_not_granted() {
    let request = Request::options("/answer")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .body(Body::empty())
        .unwrap();
    let response = serve(fetch_layer(), request, Response::new(Body::empty())).await;
    let headers = response.headers();
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert!(
        headers
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// The stream
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cross_origin_post_stream_reads_last_event_id_from_its_header() {
    let fx = fixture(fetch_layer());
    let request = fetch_post_with("/answer", "*/*", |request| {
        request
            .header(header::ORIGIN, APP)
            .header("last-event-id", "7")
    });
    let response = fx.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert_eq!(headers["x-accel-buffering"], "no");
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, PRELUDE);
    assert_eq!(
        next(&mut body).await,
        format!("data: after Some(\"7\"), prompt {JSON}\n\n")
    );
    let open = fx.registry.snapshot();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].path(), "/answer");
    assert_eq!(open[0].last_event_id(), Some("7"));
}

#[tokio::test]
async fn post_stream_without_last_event_id_is_a_first_connection() {
    let fx = fixture(SseLayer::new());
    let request = fetch_post("/answer");
    let mut body = fx.send(request).await.into_body();
    assert_eq!(next(&mut body).await, PRELUDE);
    assert_eq!(
        next(&mut body).await,
        format!("data: after None, prompt {JSON}\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Connection limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn post_stream_with_accept_any_counts_against_max_connections() {
    let fx = fixture(SseLayer::new().max_connections(1));
    let first = fetch_post("/answer");
    let mut first = fx.send(first).await.into_body();
    assert_eq!(next(&mut first).await, PRELUDE);
    assert_eq!(fx.registry.len(), 1);

    let second = fetch_post("/answer");
    fx.polled.store(false, Ordering::SeqCst);
    assert_refused(fx.send(second).await, "too many connections").await;
    assert!(
        !fx.polled.load(Ordering::SeqCst),
        "the refused stream was polled"
    );
    assert_eq!(fx.registry.len(), 1);
}

#[tokio::test]
async fn post_stream_with_accept_any_counts_against_max_connections_per_peer() {
    let fx = fixture(SseLayer::new().max_connections_per_peer(1));
    let from = |port| {
        fetch_post_with("/answer", "*/*", |request| {
            request.extension(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], port))))
        })
    };
    let mut first = fx.send(from(1000)).await.into_body();
    assert_eq!(next(&mut first).await, PRELUDE);
    assert_refused(
        fx.send(from(2000)).await,
        "too many connections from this address",
    )
    .await;
    assert_eq!(fx.registry.len(), 1);
}

#[tokio::test]
async fn request_that_takes_only_an_event_stream_is_refused_before_its_handler_runs() {
    let fx = fixture(SseLayer::new().max_connections(0));
    for accept in [
        "text/event-stream",
        "Text/Event-Stream; charset=utf-8",
        "text/event-stream, text/event-stream;q=0.5",
    ] {
        let request = fetch_post_accepting("/answer", accept);
        assert_refused(fx.send(request).await, "too many connections").await;
        assert_eq!(
            fx.runs.load(Ordering::SeqCst),
            0,
            "the handler ran: {accept}"
        );
    }
}

#[tokio::test]
async fn request_that_takes_an_event_stream_or_more_runs_its_handler() {
    let fx = fixture(SseLayer::new().max_connections(0));
    for accept in [
        "*/*",
        "application/json, text/event-stream",
        "text/event-stream, */*;q=0.1",
    ] {
        // The answer can be JSON: the handler decides.
        let request = fetch_post_accepting("/json", accept);
        let response = fx.send(request).await;
        assert_eq!(response.status(), StatusCode::OK, "{accept}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json",
            "{accept}"
        );
        assert_eq!(rest(&mut response.into_body()).await, br#"{"ok":true}"#);

        // And if it is an event stream, the limit refuses it then.
        let runs = fx.runs.load(Ordering::SeqCst);
        let request = fetch_post_accepting("/answer", accept);
        assert_refused(fx.send(request).await, "too many connections").await;
        assert_eq!(fx.runs.load(Ordering::SeqCst), runs + 1, "{accept}");
    }
    assert!(fx.registry.is_empty());
}

#[tokio::test]
async fn ordinary_requests_are_served_during_shutdown() {
    let layer = SseLayer::new();
    let fx = fixture(layer.clone());
    SseLayer::new().registry(fx.registry.clone()).shutdown();
    let request = fetch_post_accepting("/json", "application/json, text/event-stream");
    let response = fx.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(rest(&mut response.into_body()).await, br#"{"ok":true}"#);

    let request = fetch_post("/answer");
    let bytes = rest(&mut fx.send(request).await.into_body()).await;
    assert!(bytes.starts_with(b": shutting down\n"), "{bytes:?}");
}
