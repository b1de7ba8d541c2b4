//! Tests for how an event stream ends: the terminal and error events of [`EventStream`] and
//! [`TryEventStream`], a client that goes away, [`SseLayer::max_lifetime`] and
//! [`SseLayer::shutdown_grace`].
//!
//! No network: each test sends requests through the layer with `oneshot` and reads the body
//! frame by frame. Time is paused, so lifetimes and grace periods are exact and cost nothing.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use futures_util::{FutureExt as _, Stream, poll, stream};
use http::StatusCode;
use http_body::Body as _;
use http_body_util::BodyExt as _;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::SseLayer;
use super::tests::{
    assert_jittered, assert_quiet_for, get_request, message, next, open, parse, rest, send, serve,
};
use crate::registry::Registry;
use crate::{Event, EventStream, TryEventStream};

const PRELUDE: &[u8] = b":\n\n";
const LIFETIME: Duration = Duration::from_secs(600);
const GRACE: Duration = Duration::from_secs(10);
/// The default error event, as it goes on the wire.
const ERROR_EVENT: &str = "event: error\ndata: {\"message\":\"the stream failed\"}\n\n";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The value of a frame that is exactly one `retry:` hint.
fn retry_hint(frame: &[u8]) -> u64 {
    let parsed = parse(frame);
    assert!(
        frame.starts_with(b"retry: ") && frame.ends_with(b"\n\n") && parsed.events.is_empty(),
        "not a retry hint: {:?}",
        String::from_utf8_lossy(frame)
    );
    parsed.retry.expect("a valid retry value")
}

/// What the client receives, through the layer, from a handler that returns `response`.
async fn received<B>(response: http::Response<B>) -> Vec<u8>
where
    B: http_body::Body<Data = bytes::Bytes, Error = std::convert::Infallible> + Send + 'static,
{
    let response = serve(SseLayer::new(), get_request(), response.map(Body::new)).await;
    assert_eq!(response.status(), StatusCode::OK);
    rest(&mut response.into_body()).await
}

fn named(name: &str, data: &str) -> Event {
    Event::builder().event(name).data(data).build().unwrap()
}

/// Sets its flag when it is dropped.
struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A producer that never ends by itself (an event a second), and the flag its drop sets.
fn endless_producer() -> (Arc<AtomicBool>, impl Stream<Item = Event> + Send + 'static) {
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropGuard(dropped.clone());
    let events = stream::unfold((guard, 0u64), |(guard, n)| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some((Event::data(format!("token {n}")), (guard, n + 1)))
    });
    (dropped, events)
}

/// Opens a stream through `layer` whose frames the test sends, and reads its prelude.
async fn started(
    layer: SseLayer,
) -> (
    tokio::sync::mpsc::Sender<bytes::Bytes>,
    super::SseBody<Body>,
) {
    let (tx, mut body) = open(layer).await;
    assert_eq!(next(&mut body).await, PRELUDE);
    (tx, body)
}

/// A `layer` on a registry of its own, which the test watches.
fn on_registry(layer: SseLayer) -> (SseLayer, Registry) {
    let registry = Registry::new();
    (layer.registry(registry.clone()), registry)
}

// ---------------------------------------------------------------------------------------------
// Terminal and error events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn end_with_sends_the_terminal_event_after_the_last_one() {
    let events = stream::iter([Event::data("one"), Event::data("two")]);
    let body = EventStream::new(events).end_with(named("done", r#"{"tokens":2}"#));
    let bytes = received(body.into_http_response()).await;
    assert_eq!(
        bytes,
        b":\n\ndata: one\n\ndata: two\n\nevent: done\ndata: {\"tokens\":2}\n\n"
    );
}

#[tokio::test]
async fn end_with_on_an_empty_stream_sends_only_the_terminal_event() {
    let body = EventStream::new(stream::empty()).end_with(named("done", "{}"));
    let bytes = received(body.into_http_response()).await;
    assert_eq!(bytes, b":\n\nevent: done\ndata: {}\n\n");
}

#[tokio::test]
async fn end_with_twice_keeps_the_last_event() {
    let body = EventStream::new(stream::empty())
        .end_with(named("done", "first"))
        .end_with(named("done", "second"));
    let parsed = parse(&received(body.into_http_response()).await);
    assert_eq!(parsed.events, [("done".to_owned(), "second".to_owned())]);
}

#[tokio::test(start_paused = true)]
async fn terminal_event_waits_for_the_end_and_ends_the_body() {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut body = EventStream::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .end_with(named("done", "{}"));
    tx.send(Event::data("one")).await.unwrap();
    assert_eq!(next(&mut body).await, "data: one\n\n");
    assert_quiet_for(&mut body, LIFETIME).await;
    assert!(!body.is_end_stream());
    drop(tx);
    assert_eq!(next(&mut body).await, "event: done\ndata: {}\n\n");
    assert!(body.is_end_stream());
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn try_event_stream_error_event_is_the_last_event_and_replaces_the_terminal_one() {
    let events = stream::iter([Ok(Event::data("one")), Err("backend went away")]);
    let body = TryEventStream::new(events).end_with(named("done", "{}"));
    let bytes = received(body.into_http_response()).await;
    assert_eq!(bytes, format!(":\n\ndata: one\n\n{ERROR_EVENT}").as_bytes());
}

#[tokio::test]
async fn try_event_stream_without_an_error_ends_with_the_terminal_event() {
    let events = stream::iter([Ok::<_, &str>(Event::data("one"))]);
    let body = TryEventStream::new(events).end_with(named("done", "{}"));
    let parsed = parse(&received(body.into_http_response()).await);
    assert_eq!(
        parsed.events,
        [message("one"), ("done".to_owned(), "{}".to_owned())]
    );
}

#[tokio::test]
async fn try_event_stream_error_event_replaces_the_default() {
    let events = stream::iter([Err::<Event, _>("timeout")]);
    let body = TryEventStream::new(events).error_event(named("failed", "try again later"));
    let parsed = parse(&received(body.into_http_response()).await);
    assert_eq!(
        parsed.events,
        [("failed".to_owned(), "try again later".to_owned())]
    );
}

#[tokio::test]
async fn try_event_stream_error_event_with_builds_the_event_from_the_error() {
    let events = stream::iter([Ok(Event::data("one")), Err(429u16), Err(500)]);
    let body = TryEventStream::new(events)
        .error_event_with(|status: &u16| named("error", &format!(r#"{{"status":{status}}}"#)));
    let parsed = parse(&received(body.into_http_response()).await);
    assert_eq!(
        parsed.events,
        [
            message("one"),
            ("error".to_owned(), r#"{"status":429}"#.to_owned())
        ]
    );
}

/// Collects what `tracing` writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn try_event_stream_error_goes_to_the_log_not_to_the_client() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let events = stream::iter([Err::<Event, _>("password=hunter2 rejected")]);
    let mut body = TryEventStream::new(events);
    let frame = tracing::subscriber::with_default(subscriber, || {
        body.frame()
            .now_or_never()
            .expect("ready")
            .expect("the error event")
            .unwrap()
    });
    assert_eq!(frame.into_data().unwrap(), ERROR_EVENT);
    assert!(body.frame().now_or_never().expect("ready").is_none());
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("password=hunter2 rejected"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// A client that goes away
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_away_drops_the_producer() {
    let (layer, registry) = on_registry(SseLayer::new());
    let (dropped, events) = endless_producer();
    let events = Arc::new(Mutex::new(Some(events)));
    let app = Router::new()
        .route(
            "/answer",
            get(move || {
                let events = events.lock().unwrap().take().unwrap();
                async move { EventStream::new(events).end_with(named("done", "{}")) }
            }),
        )
        .layer(layer);
    let response = app
        .oneshot(http::Request::get("/answer").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, PRELUDE);
    assert_eq!(next(&mut body).await, "data: token 0\n\n");
    assert_eq!(next(&mut body).await, "data: token 1\n\n");
    assert!(!dropped.load(Ordering::SeqCst));
    assert_eq!(registry.len(), 1);

    // What the server does when the connection closes: it drops the response body.
    drop(body);
    assert!(dropped.load(Ordering::SeqCst), "the producer is dropped");
    assert!(registry.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Maximum lifetime
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn max_lifetime_ends_each_stream_at_its_lifetime_with_a_jittered_retry_hint() {
    let (layer, registry) = on_registry(SseLayer::new().no_keep_alive().max_lifetime(LIFETIME));
    let mut retries = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let (tx, mut body) = started(layer.clone()).await;
        send(&tx, b"data: one\n\n").await;
        assert_eq!(next(&mut body).await, "data: one\n\n");
        let hint = next(&mut body).await;
        assert_eq!(start.elapsed(), LIFETIME);
        retries.push(retry_hint(&hint));
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
        assert!(registry.is_empty());
    }
    assert_jittered(&retries);
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_counts_from_the_start_while_keep_alives_go_on() {
    let lifetime = Duration::from_secs(40);
    let (_tx, mut body) = open(SseLayer::new().max_lifetime(lifetime)).await;
    let start = Instant::now();
    assert_eq!(next(&mut body).await, PRELUDE);
    for n in 1..=2 {
        assert_eq!(next(&mut body).await, ":\n\n");
        assert_eq!(start.elapsed(), n * super::DEFAULT_KEEP_ALIVE);
    }
    let hint = next(&mut body).await;
    assert_eq!(start.elapsed(), lifetime);
    retry_hint(&hint);
    assert!(body.frame().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_ends_a_busy_stream_at_the_first_event_end_after_it() {
    // The body is not asked for a frame while the clock jumps: without a write timeout, or
    // the stream would count as stalled.
    let layer = SseLayer::new()
        .no_keep_alive()
        .no_write_timeout()
        .max_lifetime(LIFETIME);
    let body = EventStream::new(stream::repeat_with(|| Event::data("x")));
    let response = serve(
        layer,
        get_request(),
        body.into_http_response().map(Body::new),
    )
    .await;
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, PRELUDE);
    assert_eq!(next(&mut body).await, "data: x\n\n");
    tokio::time::advance(LIFETIME).await;
    retry_hint(&next(&mut body).await);
    assert!(body.frame().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_inside_an_event_ends_the_stream_once_that_event_is_complete() {
    let (tx, mut body) = started(SseLayer::new().no_keep_alive().max_lifetime(LIFETIME)).await;
    send(&tx, b"data: half").await;
    assert_eq!(next(&mut body).await, "data: half");
    assert_quiet_for(&mut body, 2 * LIFETIME).await;
    send(&tx, b"\n\n").await;
    assert_eq!(next(&mut body).await, "\n\n");
    retry_hint(&next(&mut body).await);
    assert!(body.frame().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_is_off_by_default_and_when_zero() {
    for layer in [
        SseLayer::new(),
        SseLayer::new().max_lifetime(Duration::ZERO),
    ] {
        let (_tx, mut body) = started(layer.no_keep_alive()).await;
        assert_quiet_for(&mut body, 100 * LIFETIME).await;
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_retry_sets_the_hint_at_the_end_of_the_lifetime() {
    let layer = SseLayer::new()
        .no_keep_alive()
        .max_lifetime(LIFETIME)
        .shutdown_retry(Duration::from_secs(10));
    let (_tx, mut body) = started(layer).await;
    let retry = retry_hint(&next(&mut body).await);
    assert!((5000..=15000).contains(&retry), "{retry}");
}

// ---------------------------------------------------------------------------------------------
// Shutdown grace period
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn shutdown_grace_lets_a_stream_that_ends_in_time_end_normally() {
    let (layer, registry) = on_registry(SseLayer::new().shutdown_grace(GRACE));
    let (tx, mut body) = started(layer.clone()).await;

    layer.shutdown();
    assert!(registry.is_closing());
    assert_eq!(registry.len(), 1, "the open stream stays open");
    tokio::time::sleep(GRACE / 2).await;
    send(&tx, b"data: last\n\n").await;
    assert_eq!(next(&mut body).await, "data: last\n\n");
    drop(tx);
    assert!(body.frame().await.is_none(), "an end with no retry hint");
    assert!(registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_grace_refuses_new_streams_at_once() {
    let (layer, registry) = on_registry(SseLayer::new().shutdown_grace(GRACE));
    let (_tx, _open) = open(layer.clone()).await;
    layer.shutdown();
    let (_tx, mut refused) = open(layer.clone()).await;
    let bytes = rest(&mut refused).await;
    assert!(bytes.starts_with(b": shutting down\n"), "{bytes:?}");
    let retry = parse(&bytes).retry.expect("a retry hint");
    assert!((1000..=3000).contains(&retry), "{retry}");
    assert_eq!(registry.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_grace_ends_the_other_streams_at_its_end_with_a_jittered_retry_hint() {
    let (layer, registry) = on_registry(SseLayer::new().shutdown_grace(GRACE));
    let mut streams = Vec::new();
    for _ in 0..20 {
        let (tx, body) = started(layer.clone()).await;
        streams.push((tx, body));
    }
    let start = Instant::now();
    layer.shutdown();

    // Streams keep flowing during the grace.
    let (tx, body) = &mut streams[0];
    tokio::time::sleep(GRACE / 2).await;
    send(tx, b"data: during the grace\n\n").await;
    assert_eq!(next(body).await, "data: during the grace\n\n");

    let mut retries = Vec::new();
    for (_tx, body) in &mut streams {
        retries.push(retry_hint(&next(body).await));
        assert_eq!(start.elapsed(), GRACE);
        assert!(body.frame().await.is_none());
    }
    assert_jittered(&retries);
    assert!(registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_grace_ends_a_stream_inside_an_event_at_its_end_without_a_hint() {
    let (layer, registry) = on_registry(SseLayer::new().shutdown_grace(GRACE));
    let (tx, mut body) = started(layer.clone()).await;
    send(&tx, b"data: half").await;
    assert_eq!(next(&mut body).await, "data: half");
    let start = Instant::now();
    layer.shutdown();
    assert!(body.frame().await.is_none());
    assert_eq!(start.elapsed(), GRACE);
    assert!(registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_on_with_a_grace_resolves_at_the_signal_and_streams_end_within_the_grace() {
    let (layer, registry) = on_registry(SseLayer::new().shutdown_grace(GRACE));
    let (_tx, mut body) = started(layer.clone()).await;
    let (signal_tx, signal_rx) = oneshot::channel::<()>();
    let mut shutdown = pin!(layer.shutdown_on(async move {
        signal_rx.await.ok();
    }));
    assert!(poll!(shutdown.as_mut()).is_pending());
    assert!(!registry.is_closing());

    signal_tx.send(()).unwrap();
    let start = Instant::now();
    // Resolves at once, so the server stops accepting connections while the streams finish.
    assert!(poll!(shutdown.as_mut()).is_ready());
    assert!(registry.is_closing());
    assert_quiet_for(&mut body, GRACE - Duration::from_millis(1)).await;
    retry_hint(&next(&mut body).await);
    assert_eq!(start.elapsed(), GRACE);
    assert!(body.frame().await.is_none());
    assert!(registry.is_empty());
}

#[test]
fn shutdown_with_a_grace_outside_a_runtime_ends_every_stream_at_once() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (layer, registry) = on_registry(SseLayer::new().shutdown_grace(GRACE));
    let (_tx, mut body) = runtime.block_on(open(layer.clone()));
    assert_eq!(runtime.block_on(next(&mut body)), PRELUDE);

    std::thread::spawn(move || layer.shutdown()).join().unwrap();
    assert!(registry.is_closing());
    let hint = runtime.block_on(next(&mut body));
    retry_hint(&hint);
    assert!(runtime.block_on(body.frame()).is_none());
}
