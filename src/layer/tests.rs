//! Tests for [`SseLayer`]: response headers, the first frame, where keep-alive comments go,
//! what passes through untouched, and CORS with credentials.
//!
//! No network: each test sends one request through the layer with `oneshot` and reads the body
//! frame by frame. Time is paused, so intervals are exact and cost nothing.

use std::convert::Infallible;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::sse::{Event as AxumEvent, Sse};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{FutureExt as _, StreamExt as _, stream};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version, header};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt as _, StreamBody};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tower::{ServiceExt as _, service_fn};
use tower_layer::Layer as _;

use super::body::Boundary;
use super::{DEFAULT_KEEP_ALIVE, SseBody, SseLayer};
use crate::{Event, EventStream, TryEventStream};

const INTERVAL: Duration = DEFAULT_KEEP_ALIVE;
pub(super) const MS: Duration = Duration::from_millis(1);
pub(super) const KEEP_ALIVE: &[u8] = b":\n\n";
pub(super) const APP: &str = "https://app.example.com";
pub(super) const HOST: &str = "api.example.com";
/// Longer than any wait in these tests: a body that stalls this long has hung. With paused time
/// it fails the test at once instead of hanging it.
pub(super) const STALL: Duration = Duration::from_secs(24 * 3600);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Sends `request` through `layer` to a service that answers with `response`.
pub(super) async fn serve(
    layer: SseLayer,
    request: Request<Body>,
    response: Response<Body>,
) -> Response<SseBody<Body>> {
    let mut response = Some(response);
    let service = layer.layer(service_fn(move |_: Request<Body>| {
        let response = response.take().expect("the service is called once");
        async move { Ok::<_, Infallible>(response) }
    }));
    service.oneshot(request).await.unwrap()
}

pub(super) fn get_request() -> Request<Body> {
    Request::get("/events").body(Body::empty()).unwrap()
}

/// A GET from a page on `origin` to a server on [`HOST`].
pub(super) fn request_from(origin: &str) -> Request<Body> {
    Request::get("/events")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, origin)
        .body(Body::empty())
        .unwrap()
}

pub(crate) fn event_stream_response(body: Body) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(body)
        .unwrap()
}

/// A body whose frames the test sends one at a time; dropping the sender ends it.
pub(crate) fn channel_body() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(16);
    let frames = ReceiverStream::new(rx).map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    (tx, Body::new(StreamBody::new(frames)))
}

/// Opens an event stream through `layer` whose frames the test sends.
pub(super) async fn open(layer: SseLayer) -> (mpsc::Sender<Bytes>, SseBody<Body>) {
    let (tx, body) = channel_body();
    let response = serve(layer, get_request(), event_stream_response(body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    (tx, response.into_body())
}

pub(super) async fn send(tx: &mpsc::Sender<Bytes>, bytes: &'static [u8]) {
    tx.send(Bytes::from_static(bytes)).await.unwrap();
}

/// The next data frame; panics at the end of the body.
pub(super) async fn next<B>(body: &mut B) -> Bytes
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Debug,
{
    let frame = timeout(STALL, body.frame())
        .await
        .expect("the body stalled");
    let frame = frame.expect("another frame").unwrap();
    frame.into_data().expect("a data frame")
}

/// Every remaining byte of the body.
pub(super) async fn rest<B>(body: &mut B) -> Vec<u8>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Debug,
{
    let mut bytes = Vec::new();
    while let Some(frame) = timeout(STALL, body.frame())
        .await
        .expect("the body stalled")
    {
        bytes.extend_from_slice(&frame.unwrap().into_data().expect("a data frame"));
    }
    bytes
}

/// Asserts that the body yields nothing for `wait` (which, with paused time, passes at once).
pub(super) async fn assert_quiet_for<B>(body: &mut B, wait: Duration)
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Debug,
{
    if let Ok(frame) = timeout(wait, body.frame()).await {
        panic!("expected nothing for {wait:?}, got {frame:?}");
    }
}

/// Whether the comma-separated header `name` lists `item`.
pub(super) fn lists(headers: &HeaderMap, name: header::HeaderName, item: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(item))
}

/// An event-stream response over a stream that records whether it was ever polled.
pub(super) fn watched_stream() -> (Arc<AtomicBool>, Response<Body>) {
    let polled = Arc::new(AtomicBool::new(false));
    let flag = polled.clone();
    let events = stream::poll_fn(move |_| {
        flag.store(true, Ordering::SeqCst);
        Poll::Ready(Some(Event::data("secret")))
    });
    let response = EventStream::new(events).into_http_response().map(Body::new);
    (polled, response)
}

/// What a WHATWG `EventSource` makes of a byte stream: the events it dispatches, as
/// `(type, data)`, and the last `retry:` it accepted.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Parsed {
    pub(super) events: Vec<(String, String)>,
    pub(super) retry: Option<u64>,
}

/// The WHATWG "interpret an event stream" algorithm, minus ids; an unterminated last event is
/// discarded, as a browser does when the stream ends.
pub(super) fn parse(bytes: &[u8]) -> Parsed {
    let mut rest = std::str::from_utf8(bytes).expect("UTF-8");
    let mut parsed = Parsed::default();
    let (mut kind, mut data) = (String::new(), String::new());
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        rest = &rest[end
            + if rest[end..].starts_with("\r\n") {
                2
            } else {
                1
            }..];
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                let kind = if kind.is_empty() { "message" } else { &kind };
                parsed
                    .events
                    .push((kind.to_owned(), std::mem::take(&mut data)));
            }
            kind.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => kind = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                parsed.retry = value.parse().ok();
            }
            _ => {}
        }
    }
    parsed
}

pub(super) fn message(data: &str) -> (String, String) {
    ("message".to_owned(), data.to_owned())
}

/// Asserts that `retries` are the default 2 s shutdown hint jittered by ±50 %, and not all the
/// same.
pub(crate) fn assert_jittered(retries: &[u64]) {
    assert!(
        retries.iter().all(|r| (1000..=3000).contains(r)),
        "{retries:?}"
    );
    assert!(
        retries.iter().any(|&r| r != retries[0]),
        "no jitter: {retries:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn event_stream_gets_anti_buffering_headers() {
    let response = serve(
        SseLayer::new(),
        get_request(),
        event_stream_response(Body::empty()),
    )
    .await;
    let headers = response.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(headers.get(header::CONNECTION).is_none());
}

#[tokio::test]
async fn event_stream_keeps_the_handlers_own_cache_control() {
    let mut response = event_stream_response(Body::empty());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, "private, max-age=0".parse().unwrap());
    let response = serve(SseLayer::new(), get_request(), response).await;
    let values: Vec<_> = response
        .headers()
        .get_all(header::CACHE_CONTROL)
        .iter()
        .collect();
    assert_eq!(values, ["private, max-age=0"]);
}

#[tokio::test]
async fn event_stream_loses_content_length_and_exact_size_hint() {
    let mut response = event_stream_response(Body::from("data: x\n\n"));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, "9".parse().unwrap());
    let response = serve(SseLayer::new(), get_request(), response).await;
    assert!(response.headers().get(header::CONTENT_LENGTH).is_none());
    // An exact size hint would make hyper write `Content-Length` again.
    assert_eq!(response.body().size_hint().exact(), None);
}

/// The connection-specific headers of RFC 9113 §8.2.2, as a handler written for HTTP/1.1 might
/// set them.
const CONNECTION_SPECIFIC: [(&str, &str); 5] = [
    ("connection", "keep-alive"),
    ("keep-alive", "timeout=5"),
    ("proxy-connection", "keep-alive"),
    ("transfer-encoding", "chunked"),
    ("upgrade", "websocket"),
];

/// An event stream whose handler set every connection-specific header.
fn event_stream_with_connection_headers() -> Response<Body> {
    let mut response = event_stream_response(Body::empty());
    for (name, value) in CONNECTION_SPECIFIC {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// The layer's own stripping, before hyper: its h2 server strips these headers too, so an
/// end-to-end test cannot tell whether the layer did. All five, on HTTP/2 and HTTP/3.
#[tokio::test]
async fn http2_event_stream_loses_every_connection_specific_header() {
    for version in [Version::HTTP_2, Version::HTTP_3] {
        let request = Request::get("/events")
            .version(version)
            .body(Body::empty())
            .unwrap();
        let response = serve(
            SseLayer::new(),
            request,
            event_stream_with_connection_headers(),
        )
        .await;
        let headers = response.headers();
        for (name, _) in CONNECTION_SPECIFIC {
            assert!(
                headers.get(name).is_none(),
                "{version:?}: `{name}: {:?}` left on an event stream",
                headers[name]
            );
        }
        assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
        assert_eq!(headers["x-accel-buffering"], "no");
    }
}

// ---------------------------------------------------------------------------------------------
// Which responses are event streams
// ---------------------------------------------------------------------------------------------

async fn is_treated_as_event_stream(content_type: &'static str) -> bool {
    let response = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from("data: x\n\n"))
        .unwrap();
    let response = serve(SseLayer::new(), get_request(), response).await;
    let has_header = response.headers().contains_key("x-accel-buffering");
    let first = next(&mut response.into_body()).await;
    assert_eq!(has_header, first == KEEP_ALIVE, "headers and body disagree");
    has_header
}

#[tokio::test]
async fn content_type_with_parameters_is_an_event_stream() {
    assert!(is_treated_as_event_stream("text/event-stream; charset=utf-8").await);
}

#[tokio::test]
async fn content_type_is_matched_case_insensitively() {
    assert!(is_treated_as_event_stream("Text/Event-Stream").await);
}

#[tokio::test]
async fn text_plain_is_not_an_event_stream() {
    assert!(!is_treated_as_event_stream("text/plain").await);
}

// ---------------------------------------------------------------------------------------------
// The first frame
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn first_frame_is_a_comment_sent_at_once() {
    let (_tx, mut body) = open(SseLayer::new()).await;
    let first = body
        .frame()
        .now_or_never()
        .expect("the first frame is ready at once");
    let first = first.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, ":\n\n");
    assert_eq!(parse(&first), Parsed::default());
}

#[tokio::test(start_paused = true)]
async fn first_frame_carries_the_retry_hint() {
    let (_tx, mut body) = open(SseLayer::new().retry(Duration::from_millis(1500))).await;
    let first = next(&mut body).await;
    assert_eq!(first, ":\nretry: 1500\n\n");
    let parsed = parse(&first);
    assert_eq!(parsed.events, []);
    assert_eq!(parsed.retry, Some(1500));
}

#[tokio::test(start_paused = true)]
async fn no_initial_comment_with_retry_sends_only_the_retry_hint() {
    let layer = SseLayer::new()
        .no_initial_comment()
        .retry(Duration::from_millis(1500));
    let (_tx, mut body) = open(layer).await;
    assert_eq!(next(&mut body).await, "retry: 1500\n\n");
}

#[tokio::test(start_paused = true)]
async fn no_initial_comment_without_retry_sends_no_prelude() {
    let (tx, mut body) = open(SseLayer::new().no_initial_comment()).await;
    assert!(body.frame().now_or_never().is_none());
    send(&tx, b"data: first\n\n").await;
    assert_eq!(next(&mut body).await, "data: first\n\n");
}

#[tokio::test(start_paused = true)]
async fn padding_is_a_comment_line_of_2_kib() {
    let (_tx, mut body) = open(SseLayer::new().padding(true)).await;
    let first = next(&mut body).await;
    let line_end = first.iter().position(|&b| b == b'\n').unwrap();
    let line = &first[..line_end];
    assert!(line.len() > 2048, "{} bytes", line.len());
    assert_eq!(line[0], b':');
    assert!(line[1..].iter().all(|&b| b == b' '));
    assert_eq!(&first[line_end..], b"\n\n");
    assert_eq!(parse(&first), Parsed::default());
}

#[tokio::test(start_paused = true)]
async fn padding_with_retry_still_sets_retry() {
    let layer = SseLayer::new()
        .padding(true)
        .retry(Duration::from_millis(1500));
    let (_tx, mut body) = open(layer).await;
    let first = next(&mut body).await;
    assert!(first.len() > 2048);
    assert!(first.ends_with(b"\nretry: 1500\n\n"));
    let parsed = parse(&first);
    assert_eq!(parsed.events, []);
    assert_eq!(parsed.retry, Some(1500));
}

// ---------------------------------------------------------------------------------------------
// Keep-alive
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn keep_alive_is_not_sent_before_the_interval() {
    let (_tx, mut body) = open(SseLayer::new()).await;
    next(&mut body).await;
    assert_quiet_for(&mut body, INTERVAL - MS).await;
}

#[tokio::test(start_paused = true)]
async fn keep_alive_is_sent_exactly_after_the_interval() {
    let (_tx, mut body) = open(SseLayer::new()).await;
    next(&mut body).await;
    let start = Instant::now();
    assert_quiet_for(&mut body, INTERVAL - MS).await;
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    assert_eq!(start.elapsed(), INTERVAL);
}

#[tokio::test(start_paused = true)]
async fn keep_alive_repeats_every_interval() {
    let (_tx, mut body) = open(SseLayer::new()).await;
    next(&mut body).await;
    let start = Instant::now();
    for n in 1..=4 {
        assert_eq!(next(&mut body).await, KEEP_ALIVE);
        assert_eq!(start.elapsed(), INTERVAL * n);
    }
}

#[tokio::test(start_paused = true)]
async fn keep_alive_is_reset_by_an_event() {
    let (tx, mut body) = open(SseLayer::new()).await;
    next(&mut body).await;
    let start = Instant::now();
    assert_quiet_for(&mut body, Duration::from_secs(10)).await;
    send(&tx, b"data: x\n\n").await;
    assert_eq!(next(&mut body).await, "data: x\n\n");
    // Nothing at 15 s, where the keep-alive would have been without the event.
    assert_quiet_for(&mut body, INTERVAL - MS).await;
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    assert_eq!(start.elapsed(), Duration::from_secs(25));
}

#[tokio::test(start_paused = true)]
async fn keep_alive_never_lands_inside_an_event_split_across_frames() {
    let (tx, mut body) = open(SseLayer::new()).await;
    let mut seen = next(&mut body).await.to_vec();
    send(&tx, b"data: a\n").await;
    seen.extend_from_slice(&next(&mut body).await);
    assert_quiet_for(&mut body, INTERVAL * 4).await;
    send(&tx, b"\n").await;
    seen.extend_from_slice(&next(&mut body).await);
    assert_eq!(seen, b":\n\ndata: a\n\n");
    assert_eq!(parse(&seen).events, [message("a")]);
    // Between events again: keep-alive resumes one interval after the end of the event.
    let end = Instant::now();
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    assert_eq!(end.elapsed(), INTERVAL);
}

#[tokio::test(start_paused = true)]
async fn keep_alive_never_lands_between_a_split_cr_and_lf() {
    let (tx, mut body) = open(SseLayer::new()).await;
    let mut seen = next(&mut body).await.to_vec();
    send(&tx, b"data: a\r").await;
    seen.extend_from_slice(&next(&mut body).await);
    assert_quiet_for(&mut body, INTERVAL * 3).await;
    // The LF belongs to the CR: still one line break, still inside the event.
    send(&tx, b"\n").await;
    seen.extend_from_slice(&next(&mut body).await);
    assert_quiet_for(&mut body, INTERVAL * 3).await;
    send(&tx, b"\r\n").await;
    seen.extend_from_slice(&next(&mut body).await);
    assert_eq!(parse(&seen).events, [message("a")]);
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
}

#[tokio::test(start_paused = true)]
async fn keep_alive_follows_an_event_ended_by_crlf_split_across_frames() {
    let (tx, mut body) = open(SseLayer::new()).await;
    let mut seen = next(&mut body).await.to_vec();
    send(&tx, b"data: a\r").await;
    seen.extend_from_slice(&next(&mut body).await);
    assert_quiet_for(&mut body, INTERVAL * 3).await;
    send(&tx, b"\n\r\n").await;
    seen.extend_from_slice(&next(&mut body).await);
    let end = Instant::now();
    let keep_alive = next(&mut body).await;
    assert_eq!(keep_alive, KEEP_ALIVE);
    assert_eq!(end.elapsed(), INTERVAL);
    seen.extend_from_slice(&keep_alive);
    assert_eq!(parse(&seen).events, [message("a")]);
}

#[tokio::test(start_paused = true)]
async fn keep_alive_stops_when_the_stream_ends() {
    let (tx, mut body) = open(SseLayer::new()).await;
    next(&mut body).await;
    send(&tx, b"data: last\n\n").await;
    drop(tx);
    assert_eq!(next(&mut body).await, "data: last\n\n");
    assert!(body.frame().await.is_none());
    assert!(body.is_end_stream());
    tokio::time::advance(INTERVAL * 4).await;
    assert!(matches!(body.frame().now_or_never(), Some(None)));
}

#[tokio::test(start_paused = true)]
async fn no_keep_alive_sends_nothing_ever() {
    let (tx, mut body) = open(SseLayer::new().no_keep_alive()).await;
    next(&mut body).await;
    assert_quiet_for(&mut body, Duration::from_secs(3600)).await;
    send(&tx, b"data: x\n\n").await;
    assert_eq!(next(&mut body).await, "data: x\n\n");
    assert_quiet_for(&mut body, Duration::from_secs(3600)).await;
}

#[tokio::test(start_paused = true)]
async fn keep_alive_uses_a_custom_interval() {
    let interval = Duration::from_secs(3);
    let (_tx, mut body) = open(SseLayer::new().keep_alive(interval)).await;
    next(&mut body).await;
    let start = Instant::now();
    assert_quiet_for(&mut body, interval - MS).await;
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    assert_eq!(start.elapsed(), interval * 2);
}

// ---------------------------------------------------------------------------------------------
// Everything else passes through
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn non_event_stream_passes_through_byte_for_byte() {
    let response = Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "11")
        .header(header::CACHE_CONTROL, "max-age=60")
        .header(header::CONNECTION, "close")
        .header("x-custom", "1")
        .body(Body::from("{\"ok\":true}"))
        .unwrap();
    let expected = response.headers().clone();
    let response = serve(SseLayer::new(), get_request(), response).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers(), &expected);
    assert_eq!(response.body().size_hint().exact(), Some(11));
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, "{\"ok\":true}");
    assert!(body.frame().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn non_event_stream_never_gets_keep_alive() {
    let (tx, body) = channel_body();
    let response = Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body)
        .unwrap();
    let mut body = serve(SseLayer::new(), get_request(), response)
        .await
        .into_body();
    assert_quiet_for(&mut body, INTERVAL * 4).await;
    send(&tx, b"partial").await;
    drop(tx);
    assert_eq!(rest(&mut body).await, b"partial");
}

#[tokio::test]
async fn options_request_passes_through_untouched_without_configured_origins() {
    let request = Request::builder()
        .method(Method::OPTIONS)
        .uri("/events")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, "https://elsewhere.example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Body::empty())
        .unwrap();
    let response = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ALLOW, "GET, HEAD, OPTIONS")
        .body(Body::empty())
        .unwrap();
    let expected = response.headers().clone();
    let response = serve(SseLayer::new(), request, response).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers(), &expected);
    assert!(response.into_body().frame().await.is_none());
}

// ---------------------------------------------------------------------------------------------
// Stream producers: axum's `Sse`, `EventStream`, `TryEventStream`
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn wraps_axums_own_sse() {
    let app = Router::new()
        .route(
            "/events",
            get(|| async {
                let events = stream::iter([Ok(AxumEvent::default().data("one"))])
                    .chain(stream::pending::<Result<AxumEvent, Infallible>>());
                Sse::new(events)
            }),
        )
        .layer(SseLayer::new());
    let response = app.oneshot(get_request()).await.unwrap();
    let headers = response.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(headers["x-accel-buffering"], "no");
    // axum's own `no-cache` is the handler's choice and stays.
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, ":\n\n");
    assert_eq!(next(&mut body).await, "data: one\n\n");
    let start = Instant::now();
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    assert_eq!(start.elapsed(), INTERVAL);
}

#[tokio::test]
async fn event_stream_is_wrapped() {
    let app = Router::new()
        .route(
            "/events",
            get(|| async {
                EventStream::new(stream::iter([Event::data("one"), Event::data("two")]))
            }),
        )
        .layer(SseLayer::new());
    let response = app.oneshot(get_request()).await.unwrap();
    let headers = response.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(headers.get_all(header::CACHE_CONTROL).iter().count(), 1);
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache, no-transform");
    assert_eq!(headers.get_all("x-accel-buffering").iter().count(), 1);
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, ":\n\n");
    assert_eq!(next(&mut body).await, "data: one\n\n");
    assert_eq!(next(&mut body).await, "data: two\n\n");
    assert!(body.frame().await.is_none());
    assert!(body.is_end_stream());
}

#[tokio::test]
async fn try_event_stream_ends_with_an_error_event_at_the_first_error() {
    let app = Router::new()
        .route(
            "/events",
            get(|| async {
                TryEventStream::new(stream::iter([
                    Ok(Event::data("one")),
                    Ok(Event::data("two")),
                    Err("backend went away"),
                    Ok(Event::data("never")),
                ]))
            }),
        )
        .layer(SseLayer::new());
    let response = app.oneshot(get_request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, ":\n\n");
    assert_eq!(next(&mut body).await, "data: one\n\n");
    assert_eq!(next(&mut body).await, "data: two\n\n");
    assert_eq!(
        next(&mut body).await,
        "event: error\ndata: {\"message\":\"the stream failed\"}\n\n"
    );
    assert!(body.frame().await.is_none());
    assert!(body.is_end_stream());
}

// ---------------------------------------------------------------------------------------------
// CORS with credentials
// ---------------------------------------------------------------------------------------------

fn cors_layer() -> SseLayer {
    SseLayer::new().allow_origins([APP])
}

#[tokio::test]
async fn allowed_origin_is_echoed_with_credentials() {
    let (polled, response) = watched_stream();
    let response = serve(cors_layer(), request_from(APP), response).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert!(lists(headers, header::VARY, "origin"));
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, ":\n\n");
    assert_eq!(next(&mut body).await, "data: secret\n\n");
    assert!(polled.load(Ordering::SeqCst));
}

#[tokio::test]
async fn response_without_origin_still_varies_on_origin_when_cors_is_on() {
    // A cache must not answer a cross-origin request with a response made for a same-origin
    // one, so the layer marks it even though the request has no `Origin`.
    let (_, response) = watched_stream();
    let response = serve(cors_layer(), get_request(), response).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert!(lists(headers, header::VARY, "origin"));
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn response_without_cors_configured_gets_no_vary() {
    let (_, response) = watched_stream();
    let response = serve(SseLayer::new(), get_request(), response).await;
    assert!(response.headers().get(header::VARY).is_none());
}

#[tokio::test]
async fn options_without_origin_is_still_answered_as_a_preflight() {
    // As tower-http's CORS layer answers every `OPTIONS`: the handler is not asked.
    let (_, response) = watched_stream();
    let request = Request::options("/events").body(Body::empty()).unwrap();
    let response = serve(cors_layer(), request, response).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert!(headers.contains_key(header::ACCESS_CONTROL_ALLOW_METHODS));
    // Not the handler's event stream.
    assert!(!super::future::is_event_stream(headers), "{headers:?}");
}

#[test]
fn service_holds_only_the_inner_service_and_one_pointer() {
    // axum clones every layered route for each connection: what the service holds inline is
    // paid per open stream.
    type Inner = tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;
    assert_eq!(
        std::mem::size_of::<crate::layer::SseService<Inner>>(),
        std::mem::size_of::<Inner>() + std::mem::size_of::<usize>()
    );
}

async fn assert_refused(layer: SseLayer, origin: &str) {
    let (polled, response) = watched_stream();
    let response = serve(layer, request_from(origin), response).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let headers = response.headers();
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert!(headers.get("x-accel-buffering").is_none());
    let body = rest(&mut response.into_body()).await;
    assert_eq!(body, b"origin not allowed\n");
    assert!(!polled.load(Ordering::SeqCst), "the stream was polled");
}

#[tokio::test]
async fn unlisted_origin_gets_403_and_no_stream_work() {
    assert_refused(cors_layer(), "https://evil.example.com").await;
}

#[tokio::test]
async fn null_origin_gets_403_and_no_stream_work() {
    assert_refused(cors_layer(), "null").await;
}

#[tokio::test]
async fn cross_origin_stream_without_configured_origins_gets_403() {
    assert_refused(SseLayer::new(), APP).await;
}

#[tokio::test]
async fn same_origin_request_needs_no_listing() {
    for layer in [cors_layer(), SseLayer::new()] {
        let (_, response) = watched_stream();
        // The request says nothing of TLS, so the server's own origin is `http`; the scheme
        // counts (`origin_tests.rs`).
        let origin = format!("http://{HOST}");
        let response = serve(layer, request_from(&origin), response).await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        assert_eq!(next(&mut body).await, ":\n\n");
        assert_eq!(next(&mut body).await, "data: secret\n\n");
    }
}

#[tokio::test]
async fn preflight_for_last_event_id_succeeds() {
    let request = Request::builder()
        .method(Method::OPTIONS)
        .uri("/events")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, APP)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "last-event-id")
        .body(Body::empty())
        .unwrap();
    let response = serve(cors_layer(), request, Response::new(Body::empty())).await;
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert!(lists(headers, header::ACCESS_CONTROL_ALLOW_METHODS, "GET"));
    assert!(lists(
        headers,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        "last-event-id"
    ));
    assert!(lists(
        headers,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        "cache-control"
    ));
}

fn origin_error(origin: &str) -> String {
    let err = SseLayer::new().try_allow_origins([origin]).unwrap_err();
    assert_eq!(err.origin(), origin);
    err.to_string()
}

#[test]
fn try_allow_origins_refuses_a_wildcard_and_says_to_list_origins() {
    let message = origin_error("*");
    assert!(message.contains("list each exact origin"), "{message}");
    assert!(
        message.contains(r#".allow_origins(["https://app.example.com"])"#),
        "{message}"
    );
}

#[test]
fn try_allow_origins_refuses_null_and_says_to_use_a_real_origin() {
    let message = origin_error("null");
    assert!(
        message.contains("serve the page from a real origin"),
        "{message}"
    );
    assert!(message.contains(r#""http://localhost:8080""#), "{message}");
}

#[test]
fn try_allow_origins_refuses_a_trailing_slash_and_says_to_drop_it() {
    let message = origin_error("https://app.example.com/");
    assert!(
        message.contains("no path, query or trailing slash"),
        "{message}"
    );
    assert!(
        message.contains(r#""https://app.example.com""#),
        "{message}"
    );
}

#[test]
fn try_allow_origins_refuses_a_bare_host_and_says_to_add_the_scheme() {
    let message = origin_error("app.example.com");
    assert!(message.contains("scheme://host[:port]"), "{message}");
    assert!(
        message.contains(r#""https://app.example.com""#),
        "{message}"
    );
}

#[test]
#[should_panic(expected = "list each exact origin")]
fn allow_origins_panics_on_a_wildcard() {
    let _ = SseLayer::new().allow_origins(["*"]);
}

#[tokio::test]
async fn allow_origin_predicate_decides_per_request() {
    let layer = || {
        SseLayer::new()
            .allow_origin_predicate(|origin, _| origin.as_bytes().ends_with(b".example.com"))
    };
    let response = serve(
        layer(),
        request_from("https://shop.example.com"),
        event_stream_response(Body::empty()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://shop.example.com"
    );
    assert_refused(layer(), "https://example.org").await;
}

#[tokio::test]
async fn allow_origin_predicate_never_allows_null() {
    let asked_about_null = Arc::new(AtomicBool::new(false));
    let asked = asked_about_null.clone();
    let layer = SseLayer::new().allow_origin_predicate(move |origin, _| {
        if origin == "null" {
            asked.store(true, Ordering::SeqCst);
        }
        true
    });
    assert_refused(layer, "null").await;
    assert!(!asked_about_null.load(Ordering::SeqCst));
}

#[tokio::test]
async fn configured_origin_is_case_normalized() {
    let layer = SseLayer::new().allow_origins(["HTTPS://App.Example.com"]);
    let response = serve(
        layer,
        request_from("https://app.example.com"),
        event_stream_response(Body::empty()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
}

/// CORS cannot refuse a non-stream response (the layer only refuses event streams); the browser
/// keeps the page from reading it, since it carries no `Access-Control-Allow-Origin`.
#[tokio::test]
async fn unlisted_origin_on_a_non_stream_route_is_served_without_allow_origin() {
    let response = Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("hello"))
        .unwrap();
    let response = serve(
        cors_layer(),
        request_from("https://evil.example.com"),
        response,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    assert_eq!(rest(&mut response.into_body()).await, b"hello");
}

// ---------------------------------------------------------------------------------------------
// Boundary: where the bytes written so far end
// ---------------------------------------------------------------------------------------------

fn after(frames: &[&[u8]]) -> Boundary {
    frames
        .iter()
        .fold(Boundary::START, |boundary, frame| boundary.advance(frame))
}

#[test]
fn boundary_starts_between_events() {
    assert!(Boundary::START.at_event_end());
}

#[test]
fn boundary_lf_lf_ends_an_event() {
    assert!(after(&[b"data: a\n\n"]).at_event_end());
}

#[test]
fn boundary_cr_cr_ends_an_event() {
    assert!(after(&[b"data: a\r\r"]).at_event_end());
}

#[test]
fn boundary_crlf_crlf_ends_an_event() {
    assert!(after(&[b"data: a\r\n\r\n"]).at_event_end());
}

#[test]
fn boundary_crlf_split_across_frames_is_one_line_break() {
    assert!(!after(&[b"data: a\r", b"\n"]).at_event_end());
    assert_eq!(after(&[b"data: a\r", b"\n"]), after(&[b"data: a\r\n"]));
    assert!(after(&[b"data: a\r", b"\n", b"\r\n"]).at_event_end());
    assert!(after(&[b"data: a\r", b"\n\r\n"]).at_event_end());
}

#[test]
fn boundary_content_then_one_break_is_inside_an_event() {
    for frame in [
        &b"data: a\n"[..],
        b"data: a\r",
        b"data: a\r\n",
        b"\n\ndata: b\n",
    ] {
        assert!(!after(&[frame]).at_event_end(), "{frame:?}");
    }
}

#[test]
fn boundary_content_without_a_break_is_inside_an_event() {
    assert!(!after(&[b"data: a"]).at_event_end());
    assert!(!after(&[b"data: a\n\n", b"data: b"]).at_event_end());
}

#[test]
fn boundary_all_break_frames_add_to_the_previous_breaks() {
    assert!(after(&[b"data: a", b"\n", b"\n"]).at_event_end());
    assert!(after(&[b"data: a\n", b"\n"]).at_event_end());
    assert!(after(&[b"data: a\n", b"\r"]).at_event_end());
    assert!(after(&[b"data: a\r", b"\r"]).at_event_end());
    assert!(!after(&[b"data: a", b"\r", b"\n"]).at_event_end());
    assert!(after(&[b"data: a", b"\r\n", b"\r\n"]).at_event_end());
    assert!(after(&[b"\n"]).at_event_end());
}

#[test]
fn boundary_empty_frames_change_nothing() {
    for state in [
        Boundary::START,
        after(&[b"data: a"]),
        after(&[b"data: a\r"]),
        after(&[b"data: a\n"]),
    ] {
        assert_eq!(state.advance(b""), state);
    }
    assert!(!after(&[b"data: a\r", b"", b"\n"]).at_event_end());
}
