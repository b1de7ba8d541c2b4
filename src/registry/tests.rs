//! Tests for the [`Registry`] and the layer features built on it: registration and removal,
//! [`ConnectionInfo`](super::ConnectionInfo), presence, closing one stream, the [`Connection`]
//! extractor and its `send`, connection limits and shutdown.
//!
//! No network except the one graceful-shutdown test: requests go through axum routers with
//! `oneshot` and bodies are read frame by frame. Where time matters it is paused, so keep-alive
//! intervals are exact and cost nothing, and a body that fails to wake shows up as a keep-alive
//! comment or as time that passed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{FutureExt as _, StreamExt as _, poll, stream};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt as _, StreamBody};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};
use tower::ServiceExt as _;

use super::{Connection, OUTBOX_CAPACITY, Presence, PresenceStream, Registry, SendError};
use crate::layer::tests::{assert_jittered, channel_body, event_stream_response};
use crate::{Event, EventStream, Hub, HubError, LastEventId, SseLayer, Subscription};

const PRELUDE: &[u8] = b":\n\n";
const KEEP_ALIVE: &[u8] = b":\n\n";
const KEEP_ALIVE_INTERVAL: Duration = crate::layer::DEFAULT_KEEP_ALIVE;
/// Longer than any wait in these tests: a body that stalls this long has hung. With paused time
/// it fails the test at once instead of hanging it.
const STALL: Duration = Duration::from_secs(24 * 3600);
/// The failure guard of the test over a real socket; it normally takes milliseconds.
const SOCKET_GUARD: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One stream's registry handle and the sender of the frames its handler's body yields,
/// handed to the test by the `/channel` handler.
type Handle = (Connection, mpsc::Sender<Bytes>);

/// A router with a layer on `registry`, and what its handlers tell the test.
///
/// - `/channel`: an event stream whose frames the test sends; its [`Handle`] goes to `handles`.
/// - `/idle`: an event stream that never sends anything and never ends.
/// - `/watched`: an event stream that records in `polled` whether it was ever polled.
/// - `/events/{topic}`: a [`Hub`] subscription (the hub shares `registry`).
/// - `/plain`: a `text/plain` response, whose handler also hands its [`Connection`] over.
struct Fixture {
    router: Router,
    registry: Registry,
    hub: Hub,
    polled: Arc<AtomicBool>,
    handles: mpsc::UnboundedReceiver<Handle>,
    plain_conns: mpsc::UnboundedReceiver<Connection>,
}

/// A stream opened on `/channel`.
struct Opened {
    body: Body,
    conn: Connection,
    tx: mpsc::Sender<Bytes>,
}

fn fixture(layer: SseLayer) -> Fixture {
    let registry = Registry::new();
    let hub = Hub::builder().registry(registry.clone()).memory();
    let polled = Arc::new(AtomicBool::new(false));
    let (handles_tx, handles) = mpsc::unbounded_channel();
    let (plain_tx, plain_conns) = mpsc::unbounded_channel();
    let watched_flag = polled.clone();
    let router = Router::new()
        .route(
            "/channel",
            get(move |conn: Connection| {
                let (tx, body) = channel_body();
                handles_tx.send((conn, tx)).unwrap();
                async move { event_stream_response(body) }
            }),
        )
        .route("/idle", get(|| async { idle_stream() }))
        .route(
            "/watched",
            get(move || {
                let flag = watched_flag.clone();
                async move { watched_stream(flag) }
            }),
        )
        .route("/events/{topic}", get(subscribe))
        .route(
            "/plain",
            get(move |conn: Connection| {
                plain_tx.send(conn).unwrap();
                async { "hello" }
            }),
        )
        .layer(layer.registry(registry.clone()))
        .with_state(hub.clone());
    Fixture {
        router,
        registry,
        hub,
        polled,
        handles,
        plain_conns,
    }
}

impl Fixture {
    async fn get(&self, request: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(request).await.unwrap()
    }

    /// Opens a stream that must be accepted, and returns its body.
    async fn open(&self, request: Request<Body>) -> Body {
        let response = self.get(request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        response.into_body()
    }

    /// Opens a stream on `/channel` (any query string) that must be accepted.
    async fn open_channel(&mut self, request: Request<Body>) -> Opened {
        let body = self.open(request).await;
        let (conn, tx) = self.handles.try_recv().expect("the handler ran");
        Opened { body, conn, tx }
    }
}

async fn subscribe(
    State(hub): State<Hub>,
    Path(topic): Path<String>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    hub.subscribe(&topic, last).await
}

fn idle_stream() -> EventStream<stream::Pending<Event>> {
    EventStream::new(stream::pending())
}

/// An event stream that records in `polled` whether it was ever polled.
fn watched_stream(polled: Arc<AtomicBool>) -> EventStream<impl futures_util::Stream<Item = Event>> {
    EventStream::new(stream::poll_fn(move |_| {
        polled.store(true, Ordering::SeqCst);
        Poll::Ready(Some(Event::data("secret")))
    }))
}

async fn send(tx: &mpsc::Sender<Bytes>, bytes: &'static [u8]) {
    tx.send(Bytes::from_static(bytes)).await.unwrap();
}

fn req(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// A request as axum's `into_make_service_with_connect_info` delivers it from `peer`.
fn req_from(uri: &str, peer: SocketAddr) -> Request<Body> {
    Request::get(uri)
        .extension(ConnectInfo(peer))
        .body(Body::empty())
        .unwrap()
}

fn peer(last_octet: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)), port)
}

/// The next data frame; panics at the end of the body.
async fn next(body: &mut Body) -> Bytes {
    let frame = timeout(STALL, body.frame())
        .await
        .expect("the body stalled");
    let frame = frame.expect("another frame").unwrap();
    frame.into_data().expect("a data frame")
}

/// Every remaining byte of the body.
async fn rest(body: &mut Body) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(frame) = timeout(STALL, body.frame())
        .await
        .expect("the body stalled")
    {
        bytes.extend_from_slice(&frame.unwrap().into_data().expect("a data frame"));
    }
    bytes
}

/// The body's next frame, which must be ready on the first poll: `None` at the end.
fn ready_frame(body: &mut Body) -> Option<Bytes> {
    body.frame()
        .now_or_never()
        .expect("the body is ready on the first poll")
        .map(|frame| frame.unwrap().into_data().expect("a data frame"))
}

/// Asserts that the body yields nothing for `wait` (which, with paused time, passes at once).
async fn assert_quiet_for(body: &mut Body, wait: Duration) {
    if let Ok(frame) = timeout(wait, body.frame()).await {
        panic!("expected nothing for {wait:?}, got {frame:?}");
    }
}

/// The value of a frame that is exactly one `retry:` hint.
fn retry_ms(frame: &[u8]) -> u64 {
    let text = std::str::from_utf8(frame).expect("UTF-8");
    let value = text
        .strip_prefix("retry: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not exactly a retry hint: {text:?}"));
    assert!(
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
        "{text:?}"
    );
    value.parse().unwrap()
}

/// The `retry:` value of a refusal body, which must be exactly a comment saying `why`, a
/// `retry:` line and a blank line.
fn refusal_retry(body: &[u8], why: &str) -> u64 {
    let comment = format!(": {why}\n");
    let rest = body.strip_prefix(comment.as_bytes()).unwrap_or_else(|| {
        panic!(
            "expected a body starting with {comment:?}, got {:?}",
            String::from_utf8_lossy(body)
        )
    });
    retry_ms(rest)
}

/// The presence notice that is already waiting.
fn notice(presence: &mut PresenceStream) -> Presence {
    presence
        .next()
        .now_or_never()
        .expect("a presence notice is waiting")
        .expect("the presence stream is open")
}

fn assert_no_notice(presence: &mut PresenceStream) {
    if let Some(notice) = presence.next().now_or_never() {
        panic!("expected no presence notice, got {notice:?}");
    }
}

fn assert_send_fails_not_full(conn: &Connection) {
    let err = conn.send(Event::data("late")).unwrap_err();
    assert!(!err.is_full(), "{err}");
    assert_eq!(err.into_event().as_bytes(), "data: late\n\n");
}

// ---------------------------------------------------------------------------------------------
// Registration and removal
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stream_is_registered_when_its_response_is_produced_not_while_the_handler_runs() {
    let registry = Registry::new();
    let seen = Arc::new(Mutex::new(None));
    let router = Router::new()
        .route(
            "/events",
            get({
                let registry = registry.clone();
                let seen = seen.clone();
                move |conn: Connection| {
                    let in_handler = (registry.len(), conn.is_open(), conn.send(Event::data("x")));
                    *seen.lock().unwrap() = Some((in_handler, conn));
                    async { idle_stream() }
                }
            }),
        )
        .layer(SseLayer::new().registry(registry.clone()));
    let body = router.oneshot(req("/events")).await.unwrap().into_body();
    let ((len, open, sent), conn) = seen.lock().unwrap().take().unwrap();
    assert_eq!(len, 0);
    assert!(!open);
    assert!(!sent.unwrap_err().is_full());
    assert_eq!(registry.len(), 1);
    assert!(conn.is_open());
    assert_eq!(registry.snapshot()[0].id(), conn.id());
    drop(body);
}

#[tokio::test]
async fn stream_is_removed_when_its_body_is_dropped() {
    let mut fx = fixture(SseLayer::new());
    let opened = fx.open_channel(req("/channel")).await;
    let id = opened.conn.id();
    assert_eq!(fx.registry.len(), 1);
    assert!(fx.registry.get(id).is_some());
    drop(opened.body);
    assert_eq!(fx.registry.len(), 0);
    assert!(fx.registry.is_empty());
    assert!(fx.registry.get(id).is_none());
    assert!(!opened.conn.is_open());
}

#[tokio::test]
async fn stream_that_ends_by_itself_is_removed_when_it_ends() {
    let mut fx = fixture(SseLayer::new());
    let mut presence = fx.registry.presence();
    let Opened {
        mut body, conn, tx, ..
    } = fx.open_channel(req("/channel")).await;
    assert!(matches!(notice(&mut presence), Presence::Connected(_)));
    send(&tx, b"data: last\n\n").await;
    drop(tx);
    assert_eq!(rest(&mut body).await, b":\n\ndata: last\n\n");
    // The body has ended but is still held: the stream is no longer open.
    assert!(fx.registry.is_empty());
    assert!(!conn.is_open());
    assert_send_fails_not_full(&conn);
    assert!(matches!(notice(&mut presence), Presence::Disconnected(_)));
    drop(body);
    assert!(fx.registry.is_empty());
    // Dropping the ended body announces nothing more.
    assert_no_notice(&mut presence);
}

#[tokio::test]
async fn stream_whose_body_fails_is_removed_when_it_fails() {
    let registry = Registry::new();
    let router = Router::new()
        .route(
            "/events",
            get(|| async {
                let frames = stream::iter([
                    Ok(Frame::data(Bytes::from_static(b"data: one\n\n"))),
                    Err(std::io::Error::other("the source went away")),
                ]);
                event_stream_response(Body::new(StreamBody::new(frames)))
            }),
        )
        .layer(SseLayer::new().registry(registry.clone()));
    let mut body = router.oneshot(req("/events")).await.unwrap().into_body();
    assert_eq!(next(&mut body).await, PRELUDE);
    assert_eq!(next(&mut body).await, "data: one\n\n");
    assert_eq!(registry.len(), 1);
    let failed = body.frame().await.expect("the error");
    assert!(failed.is_err());
    assert!(registry.is_empty());
}

#[tokio::test]
async fn non_stream_response_is_never_registered() {
    let mut fx = fixture(SseLayer::new());
    let mut presence = fx.registry.presence();
    let response = fx.get(req("/plain")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(fx.registry.is_empty());
    let conn = fx.plain_conns.try_recv().unwrap();
    assert!(!conn.is_open());
    assert_send_fails_not_full(&conn);
    let mut body = response.into_body();
    assert_eq!(rest(&mut body).await, b"hello");
    assert!(fx.registry.is_empty());
    assert!(fx.registry.get(conn.id()).is_none());
    assert_no_notice(&mut presence);
}

#[tokio::test]
async fn refused_origin_403_is_never_registered() {
    let fx = fixture(SseLayer::new().allow_origins(["https://app.example.com"]));
    let mut presence = fx.registry.presence();
    let request = Request::get("/watched")
        .header(header::HOST, "api.example.com")
        .header(header::ORIGIN, "https://evil.example.com")
        .body(Body::empty())
        .unwrap();
    let response = fx.get(request).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(fx.registry.is_empty());
    drop(response);
    assert!(!fx.polled.load(Ordering::SeqCst));
    assert_no_notice(&mut presence);
}

// ---------------------------------------------------------------------------------------------
// ConnectionInfo
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn info_has_id_path_peer_user_agent_and_last_event_id() {
    let mut fx = fixture(SseLayer::new());
    let request = Request::get("/channel?since=now")
        .extension(ConnectInfo(peer(7, 4321)))
        .header(header::USER_AGENT, "Mozilla/5.0 test")
        .header("last-event-id", "42")
        .body(Body::empty())
        .unwrap();
    let opened = fx.open_channel(request).await;
    let snapshot = fx.registry.snapshot();
    assert_eq!(snapshot.len(), 1);
    let info = &snapshot[0];
    assert_eq!(info.id(), opened.conn.id());
    assert_eq!(info.path(), "/channel");
    assert_eq!(info.topic(), None);
    assert_eq!(info.peer(), Some(peer(7, 4321)));
    assert_eq!(info.user_agent(), Some("Mozilla/5.0 test"));
    assert_eq!(info.last_event_id(), Some("42"));
    assert_eq!(info.events_sent(), 0);
    assert_eq!(info.bytes_sent(), 0);
    assert_eq!(&opened.conn.info(), info);
}

#[tokio::test]
async fn info_without_peer_user_agent_or_last_event_id_has_none() {
    let mut fx = fixture(SseLayer::new());
    let opened = fx.open_channel(req("/channel")).await;
    let info = opened.conn.info();
    assert_eq!(info.peer(), None);
    assert_eq!(info.user_agent(), None);
    assert_eq!(info.last_event_id(), None);
}

#[tokio::test]
async fn info_takes_last_event_id_from_the_query_when_there_is_no_header() {
    let mut fx = fixture(SseLayer::new());
    let opened = fx.open_channel(req("/channel?lastEventId=7")).await;
    assert_eq!(opened.conn.info().last_event_id(), Some("7"));
}

#[tokio::test]
async fn info_marks_an_unusable_last_event_id_as_unusable() {
    let mut fx = fixture(SseLayer::new());
    let not_utf8 = Request::get("/channel")
        .header(
            "last-event-id",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        )
        .body(Body::empty())
        .unwrap();
    let opened = fx.open_channel(not_utf8).await;
    assert_eq!(
        opened.conn.info().last_event_id(),
        Some("<unusable: the last event id is not UTF-8>")
    );
    let too_long = Request::get("/channel")
        .header("last-event-id", "a".repeat(5000))
        .body(Body::empty())
        .unwrap();
    let opened = fx.open_channel(too_long).await;
    let info = opened.conn.info();
    let last = info.last_event_id().unwrap();
    assert!(last.starts_with("<unusable: "), "{last}");
    assert!(last.contains("longer than 1024 bytes"), "{last}");
}

#[tokio::test]
async fn hub_subscription_info_has_its_topic_and_path() {
    let fx = fixture(SseLayer::new());
    let _body = fx.open(req("/events/news")).await;
    let snapshot = fx.registry.snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].topic(), Some("news"));
    assert_eq!(snapshot[0].path(), "/events/news");
    assert_eq!(fx.hub.registry().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn events_sent_counts_handler_events_not_layer_comments_and_bytes_sent_counts_all() {
    let mut fx = fixture(SseLayer::new());
    let Opened {
        mut body, conn, tx, ..
    } = fx.open_channel(req("/channel")).await;
    let counters = || {
        let info = conn.info();
        (info.events_sent(), info.bytes_sent())
    };
    assert_eq!(next(&mut body).await, PRELUDE);
    assert_eq!(counters(), (0, 3));
    send(&tx, b"data: a\n\n").await;
    assert_eq!(next(&mut body).await, "data: a\n\n");
    assert_eq!(counters(), (1, 3 + 9));
    // One event in two frames counts once, when its last frame goes out.
    send(&tx, b"data: b\n").await;
    assert_eq!(next(&mut body).await, "data: b\n");
    assert_eq!(counters(), (1, 3 + 9 + 8));
    send(&tx, b"\n").await;
    assert_eq!(next(&mut body).await, "\n");
    assert_eq!(counters(), (2, 3 + 9 + 8 + 1));
    let start = Instant::now();
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    assert_eq!(start.elapsed(), KEEP_ALIVE_INTERVAL);
    assert_eq!(counters(), (2, 3 + 9 + 8 + 1 + 3));
    let info = &fx.registry.snapshot()[0];
    assert_eq!((info.events_sent(), info.bytes_sent()), (2, 24));
}

#[tokio::test]
async fn snapshot_is_sorted_by_id() {
    let mut fx = fixture(SseLayer::new());
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(fx.open_channel(req("/channel")).await);
    }
    // Drop every third, so the open ids are not a contiguous range.
    let mut n = 0;
    open.retain(|_| {
        n += 1;
        n % 3 != 0
    });
    let mut expected: Vec<u64> = open.iter().map(|o| o.conn.id()).collect();
    expected.sort_unstable();
    let ids: Vec<u64> = fx.registry.snapshot().iter().map(|c| c.id()).collect();
    assert_eq!(ids, expected);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(fx.registry.len(), expected.len());
}

#[tokio::test]
async fn len_and_count_for_follow_opens_and_drops() {
    let fx = fixture(SseLayer::new());
    let (a, b) = (peer(1, 1000), peer(2, 1000));
    let a1 = fx.open(req_from("/idle", a)).await;
    let a2 = fx
        .open(req_from("/idle", SocketAddr::new(a.ip(), 2000)))
        .await;
    let b1 = fx.open(req_from("/idle", b)).await;
    let anonymous = fx.open(req("/idle")).await;
    assert_eq!(fx.registry.len(), 4);
    assert_eq!(fx.registry.count_for(a.ip()), 2);
    assert_eq!(fx.registry.count_for(b.ip()), 1);
    assert_eq!(fx.registry.count_for(peer(3, 1000).ip()), 0);
    drop(a1);
    assert_eq!(fx.registry.len(), 3);
    assert_eq!(fx.registry.count_for(a.ip()), 1);
    drop((a2, b1));
    assert_eq!(fx.registry.count_for(a.ip()), 0);
    assert_eq!(fx.registry.count_for(b.ip()), 0);
    assert_eq!(fx.registry.len(), 1);
    drop(anonymous);
    assert!(fx.registry.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Presence
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn presence_yields_connected_then_disconnected_with_final_counters() {
    let mut fx = fixture(SseLayer::new());
    let mut presence = fx.registry.presence();
    let request = Request::get("/channel")
        .extension(ConnectInfo(peer(9, 999)))
        .body(Body::empty())
        .unwrap();
    let Opened {
        mut body, conn, tx, ..
    } = fx.open_channel(request).await;
    let Presence::Connected(connected) = notice(&mut presence) else {
        panic!("expected Connected first");
    };
    assert_eq!(connected.id(), conn.id());
    assert_eq!(connected.path(), "/channel");
    assert_eq!(connected.peer(), Some(peer(9, 999)));
    assert_eq!((connected.events_sent(), connected.bytes_sent()), (0, 0));
    assert_no_notice(&mut presence);

    assert_eq!(next(&mut body).await, PRELUDE);
    send(&tx, b"data: one\n\n").await;
    assert_eq!(next(&mut body).await, "data: one\n\n");
    assert_no_notice(&mut presence);
    drop(body);

    let disconnected = notice(&mut presence);
    assert_eq!(disconnected.info().id(), conn.id());
    let Presence::Disconnected(disconnected) = disconnected else {
        panic!("expected Disconnected, got {disconnected:?}");
    };
    assert_eq!(disconnected.peer(), Some(peer(9, 999)));
    assert_eq!(disconnected.events_sent(), 1);
    assert_eq!(disconnected.bytes_sent(), 3 + 11);
    assert_no_notice(&mut presence);
}

#[tokio::test]
async fn presence_after_shutdown_counts_the_final_retry_hint() {
    let (layer, fx) = shutdown_fixture(SseLayer::new());
    let mut presence = fx.registry.presence();
    let mut body = fx.open(req("/idle")).await;
    assert!(matches!(notice(&mut presence), Presence::Connected(_)));
    assert_eq!(ready_frame(&mut body).as_deref(), Some(PRELUDE));
    layer.shutdown();
    let retry = ready_frame(&mut body).expect("a retry hint");
    assert_eq!(ready_frame(&mut body), None);
    let Presence::Disconnected(info) = notice(&mut presence) else {
        panic!("expected Disconnected");
    };
    assert_eq!(info.bytes_sent(), (PRELUDE.len() + retry.len()) as u64);
    assert_eq!(info.events_sent(), 0);
}

// ---------------------------------------------------------------------------------------------
// Closing one stream
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn registry_close_ends_that_stream_only() {
    let mut fx = fixture(SseLayer::new());
    let mut a = fx.open_channel(req("/channel")).await;
    let mut b = fx.open_channel(req("/channel")).await;
    assert_eq!(next(&mut a.body).await, PRELUDE);
    assert_eq!(next(&mut b.body).await, PRELUDE);

    assert!(fx.registry.close(a.conn.id()));
    assert!(!a.conn.is_open());
    assert_eq!(ready_frame(&mut a.body), None);
    assert_eq!(ready_frame(&mut a.body), None);

    assert!(b.conn.is_open());
    send(&b.tx, b"data: still here\n\n").await;
    assert_eq!(next(&mut b.body).await, "data: still here\n\n");
    drop(a.body);
    let ids: Vec<u64> = fx.registry.snapshot().iter().map(|c| c.id()).collect();
    assert_eq!(ids, [b.conn.id()]);
    assert!(!fx.registry.close(a.conn.id()), "a is no longer open");
}

#[tokio::test]
async fn registry_close_of_an_unknown_id_returns_false_and_closes_nothing() {
    let mut fx = fixture(SseLayer::new());
    let mut opened = fx.open_channel(req("/channel")).await;
    assert!(!fx.registry.close(opened.conn.id() + 1000));
    assert!(!fx.registry.close(0));
    assert!(opened.conn.is_open());
    assert_eq!(next(&mut opened.body).await, PRELUDE);
    send(&opened.tx, b"data: x\n\n").await;
    assert_eq!(next(&mut opened.body).await, "data: x\n\n");
    assert_eq!(fx.registry.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn registry_close_wakes_a_reader_that_is_waiting() {
    let mut fx = fixture(SseLayer::new());
    let Opened {
        mut body, conn, tx, ..
    } = fx.open_channel(req("/channel")).await;
    assert_eq!(next(&mut body).await, PRELUDE);
    let start = Instant::now();
    let reader = tokio::spawn(async move { rest(&mut body).await });
    // Let the reader park on the idle body.
    tokio::task::yield_now().await;
    assert!(!reader.is_finished());
    assert!(fx.registry.close(conn.id()));
    let after_close = reader.await.unwrap();
    // Woken at once: no keep-alive came first (that would take 15 s of paused time).
    assert_eq!(after_close, b"");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(fx.registry.is_empty());
    drop(tx);
}

#[tokio::test]
async fn close_where_closes_the_matching_streams_and_returns_how_many() {
    let mut fx = fixture(SseLayer::new());
    let mut a = fx.open_channel(req("/channel")).await;
    let mut b = fx.open_channel(req("/channel")).await;
    let mut c = fx.open_channel(req("/channel")).await;
    a.conn.set_label("alice");
    b.conn.set_label("bob");
    c.conn.set_label("alice");
    for body in [&mut a.body, &mut b.body, &mut c.body] {
        assert_eq!(next(body).await, PRELUDE);
    }
    let before = fx.registry.stats();

    let closed = fx
        .registry
        .close_where(|info| info.label() == Some("alice"));
    assert_eq!(closed, 2);
    assert!(!a.conn.is_open());
    assert!(!c.conn.is_open());
    assert_eq!(ready_frame(&mut a.body), None);
    assert_eq!(ready_frame(&mut c.body), None);
    assert!(b.conn.is_open());
    send(&b.tx, b"data: still here\n\n").await;
    assert_eq!(next(&mut b.body).await, "data: still here\n\n");

    // Closed as `Registry::close` closes: counted under `closed`.
    drop((a.body, c.body));
    assert_eq!(fx.registry.stats().closed, before.closed + 2);
    let ids: Vec<u64> = fx.registry.snapshot().iter().map(|c| c.id()).collect();
    assert_eq!(ids, [b.conn.id()]);
    assert_eq!(
        fx.registry
            .close_where(|info| info.label() == Some("alice")),
        0
    );
}

#[tokio::test]
async fn close_where_by_topic_ends_those_hub_subscriptions() {
    let fx = fixture(SseLayer::new());
    let mut room_a = fx.open(req("/events/room")).await;
    let mut room_b = fx.open(req("/events/room")).await;
    let mut lobby = fx.open(req("/events/lobby")).await;
    let closed = fx.registry.close_where(|info| info.topic() == Some("room"));
    assert_eq!(closed, 2);
    for body in [&mut room_a, &mut room_b] {
        assert_eq!(next(body).await, PRELUDE);
        assert_eq!(ready_frame(body), None);
    }
    assert_eq!(next(&mut lobby).await, PRELUDE);
    fx.hub.publish("lobby", Event::data("hi")).await.unwrap();
    assert!(next(&mut lobby).await.ends_with(b"data: hi\n\n"));
}

#[tokio::test]
async fn close_where_skips_streams_already_closing() {
    let mut fx = fixture(SseLayer::new());
    let a = fx.open_channel(req("/channel")).await;
    let b = fx.open_channel(req("/channel")).await;
    assert!(fx.registry.close(a.conn.id()));
    // `a` stays registered until its body ends, but it is already on its way out.
    assert_eq!(fx.registry.len(), 2);
    assert_eq!(fx.registry.close_where(|_| true), 1);
    assert!(!b.conn.is_open());
}

#[tokio::test]
async fn close_where_predicate_may_use_the_registry() {
    // The predicate runs outside the registry's lock: this would deadlock otherwise.
    let mut fx = fixture(SseLayer::new());
    let opened = fx.open_channel(req("/channel")).await;
    opened.conn.set_label("alice");
    let registry = fx.registry.clone();
    let closed = fx.registry.close_where(|info| {
        registry.get(info.id()).is_some() && registry.count_label("alice") == 1
    });
    assert_eq!(closed, 1);
    assert!(!opened.conn.is_open());
}

#[tokio::test]
async fn count_topic_and_count_label_follow_opens_labels_and_drops() {
    let mut fx = fixture(SseLayer::new());
    let room_a = fx.open(req("/events/room")).await;
    let _room_b = fx.open(req("/events/room")).await;
    let _lobby = fx.open(req("/events/lobby")).await;
    let a = fx.open_channel(req("/channel")).await;
    let b = fx.open_channel(req("/channel")).await;
    assert_eq!(fx.registry.count_topic("room"), 2);
    assert_eq!(fx.registry.count_topic("lobby"), 1);
    assert_eq!(fx.registry.count_topic("nowhere"), 0);
    assert_eq!(fx.registry.count_label("alice"), 0);

    a.conn.set_label("alice");
    b.conn.set_label("alice");
    assert_eq!(fx.registry.count_label("alice"), 2);
    b.conn.set_label("bob");
    assert_eq!(fx.registry.count_label("alice"), 1);
    assert_eq!(fx.registry.count_label("bob"), 1);
    // A label is not a topic, nor a topic a label.
    assert_eq!(fx.registry.count_topic("alice"), 0);
    assert_eq!(fx.registry.count_label("room"), 0);

    drop((room_a, a.body));
    assert_eq!(fx.registry.count_topic("room"), 1);
    assert_eq!(fx.registry.count_label("alice"), 0);
    assert_eq!(fx.registry.count_label("bob"), 1);
}

#[tokio::test]
async fn connection_close_ends_that_stream_only() {
    let mut fx = fixture(SseLayer::new());
    let mut a = fx.open_channel(req("/channel")).await;
    let mut b = fx.open_channel(req("/channel")).await;
    assert_eq!(next(&mut a.body).await, PRELUDE);
    a.conn.close();
    assert!(!a.conn.is_open());
    assert_eq!(ready_frame(&mut a.body), None);
    assert_eq!(next(&mut b.body).await, PRELUDE);
    send(&b.tx, b"data: b\n\n").await;
    assert_eq!(next(&mut b.body).await, "data: b\n\n");
    assert!(b.conn.is_open());
    drop(a.body);
    assert_eq!(fx.registry.len(), 1);
}

#[tokio::test]
async fn close_before_the_first_poll_still_sends_the_prelude_then_ends() {
    let mut fx = fixture(SseLayer::new());
    let mut opened = fx.open_channel(req("/channel")).await;
    opened.conn.close();
    assert_eq!(ready_frame(&mut opened.body).as_deref(), Some(PRELUDE));
    assert_eq!(ready_frame(&mut opened.body), None);
}

#[tokio::test(start_paused = true)]
async fn close_in_the_middle_of_an_event_writes_nothing_more() {
    let mut fx = fixture(SseLayer::new());
    let Opened {
        mut body, conn, tx, ..
    } = fx.open_channel(req("/channel")).await;
    assert_eq!(next(&mut body).await, PRELUDE);
    send(&tx, b"data: a\n").await;
    assert_eq!(next(&mut body).await, "data: a\n");
    // Past the keep-alive interval, still inside the event.
    assert_quiet_for(&mut body, KEEP_ALIVE_INTERVAL * 2).await;
    assert!(fx.registry.close(conn.id()));
    // The rest of the event is ready in the handler's body, and must not be sent either.
    send(&tx, b"data: b\n\n").await;
    assert_eq!(ready_frame(&mut body), None);
    assert_eq!(conn.info().bytes_sent(), 3 + 8);
}

#[tokio::test(start_paused = true)]
async fn shutdown_in_the_middle_of_an_event_ends_without_a_retry_hint() {
    let (layer, mut fx) = shutdown_fixture(SseLayer::new());
    let Opened {
        mut body, conn, tx, ..
    } = fx.open_channel(req("/channel")).await;
    assert_eq!(next(&mut body).await, PRELUDE);
    send(&tx, b"data: a\n").await;
    assert_eq!(next(&mut body).await, "data: a\n");
    assert_quiet_for(&mut body, KEEP_ALIVE_INTERVAL * 2).await;
    layer.shutdown();
    assert_eq!(ready_frame(&mut body), None);
    assert_eq!(conn.info().bytes_sent(), 3 + 8);
}

// ---------------------------------------------------------------------------------------------
// The Connection extractor and Connection::send
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn connection_extractor_has_the_id_of_the_registry_entry() {
    let mut fx = fixture(SseLayer::new());
    let first = fx.open_channel(req("/channel")).await;
    let second = fx.open_channel(req("/channel")).await;
    assert_ne!(first.conn.id(), second.conn.id());
    let ids: Vec<u64> = fx.registry.snapshot().iter().map(|c| c.id()).collect();
    assert_eq!(ids, [first.conn.id(), second.conn.id()]);
    assert_eq!(
        fx.registry.get(second.conn.id()).unwrap().id(),
        second.conn.id()
    );
}

#[tokio::test(start_paused = true)]
async fn send_from_a_task_spawned_by_the_handler_lands_between_two_handler_events() {
    let registry = Registry::new();
    // The test gives the spawned task events to send and learns each `send` result.
    let (events_tx, events_rx) = mpsc::unbounded_channel::<Event>();
    let (results_tx, mut results_rx) = mpsc::unbounded_channel::<Result<(), SendError>>();
    let (frames_tx, frames) = channel_body();
    let once = Arc::new(Mutex::new(Some((events_rx, results_tx, frames))));
    let router = Router::new()
        .route(
            "/events",
            get(move |conn: Connection| {
                let (mut events_rx, results_tx, frames) =
                    once.lock().unwrap().take().expect("one request");
                tokio::spawn(async move {
                    while let Some(event) = events_rx.recv().await {
                        results_tx.send(conn.send(event)).unwrap();
                    }
                });
                async move { event_stream_response(frames) }
            }),
        )
        .layer(SseLayer::new().registry(registry.clone()));
    let mut body = router.oneshot(req("/events")).await.unwrap().into_body();
    assert_eq!(next(&mut body).await, PRELUDE);

    // The handler's body is in the middle of an event.
    send(&frames_tx, b"data: a\n").await;
    assert_eq!(next(&mut body).await, "data: a\n");
    events_tx.send(Event::data("private")).unwrap();
    results_rx.recv().await.unwrap().unwrap();
    assert_quiet_for(&mut body, Duration::from_secs(1)).await;
    send(&frames_tx, b"\n").await;
    assert_eq!(next(&mut body).await, "\n");
    assert_eq!(next(&mut body).await, "data: private\n\n");
    send(&frames_tx, b"data: b\n\n").await;
    assert_eq!(next(&mut body).await, "data: b\n\n");

    // Sent while a reader waits on the idle stream: it is woken and gets the event at once,
    // not a keep-alive comment 15 s (of paused time) later.
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let frame = next(&mut body).await;
        (frame, body)
    });
    tokio::task::yield_now().await;
    assert!(!reader.is_finished());
    events_tx.send(Event::data("again")).unwrap();
    results_rx.recv().await.unwrap().unwrap();
    let (frame, _body) = reader.await.unwrap();
    assert_eq!(frame, "data: again\n\n");
    assert_eq!(start.elapsed(), Duration::ZERO);
    // Sent events count as events, like the handler's.
    assert_eq!(registry.snapshot()[0].events_sent(), 4);
}

#[tokio::test(start_paused = true)]
async fn send_through_registry_get_reaches_just_that_client() {
    let mut fx = fixture(SseLayer::new());
    let mut a = fx.open_channel(req("/channel")).await;
    let mut b = fx.open_channel(req("/channel")).await;
    assert_eq!(next(&mut a.body).await, PRELUDE);
    assert_eq!(next(&mut b.body).await, PRELUDE);
    let handle = fx.registry.get(a.conn.id()).unwrap();
    handle.send(Event::data("for a")).unwrap();
    assert_eq!(next(&mut a.body).await, "data: for a\n\n");
    assert_quiet_for(&mut b.body, KEEP_ALIVE_INTERVAL - Duration::from_millis(1)).await;
    send(&b.tx, b"data: b\n\n").await;
    assert_eq!(next(&mut b.body).await, "data: b\n\n");
    assert_eq!(a.conn.info().events_sent(), 1);
    assert_eq!(b.conn.info().events_sent(), 1);
}

#[tokio::test]
async fn send_on_a_closed_connection_fails_and_is_not_full() {
    let mut fx = fixture(SseLayer::new());
    let opened = fx.open_channel(req("/channel")).await;
    opened.conn.close();
    assert_send_fails_not_full(&opened.conn);
}

#[tokio::test]
async fn send_on_an_ended_connection_fails_and_is_not_full() {
    let mut fx = fixture(SseLayer::new());
    let opened = fx.open_channel(req("/channel")).await;
    let handle = fx.registry.get(opened.conn.id()).unwrap();
    drop(opened.body);
    assert_send_fails_not_full(&opened.conn);
    assert_send_fails_not_full(&handle);
    assert!(!handle.is_open());
}

#[tokio::test]
async fn send_beyond_outbox_capacity_unsent_events_is_full() {
    let mut fx = fixture(SseLayer::new());
    let Opened { mut body, conn, .. } = fx.open_channel(req("/channel")).await;
    for n in 0..OUTBOX_CAPACITY {
        conn.send(Event::data(n.to_string())).unwrap();
    }
    let err = conn.send(Event::data("one too many")).unwrap_err();
    assert!(err.is_full(), "{err}");
    assert!(err.to_string().contains("64"), "{err}");
    assert_eq!(err.into_event().as_bytes(), "data: one too many\n\n");
    assert!(conn.is_open());

    assert_eq!(next(&mut body).await, PRELUDE);
    for n in 0..OUTBOX_CAPACITY {
        assert_eq!(next(&mut body).await, format!("data: {n}\n\n"));
    }
    // Drained: there is room again.
    conn.send(Event::data("fits")).unwrap();
    assert_eq!(next(&mut body).await, "data: fits\n\n");
}

#[tokio::test]
async fn connection_extractor_without_the_layer_is_a_500_naming_sse_layer() {
    let router = Router::new().route("/events", get(|_: Connection| async { idle_stream() }));
    let response = router.oneshot(req("/events")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = response.into_body();
    let message = String::from_utf8(rest(&mut body).await).unwrap();
    assert!(message.contains("SseLayer"), "{message}");
}

#[tokio::test]
async fn connection_extractor_works_behind_a_middleware_between_it_and_the_layer() {
    let registry = Registry::new();
    let router = Router::new()
        .route(
            "/events",
            get(|conn: Connection| async move { format!("{}", conn.id()) }),
        )
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| next.run(req),
        ))
        .layer(SseLayer::new().registry(registry));
    let response = router.oneshot(req("/events")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id: u64 = String::from_utf8(rest(&mut response.into_body()).await)
        .unwrap()
        .parse()
        .unwrap();
    assert!(id > 0);
}

#[tokio::test]
async fn connection_extractor_works_behind_a_buffer() {
    // The buffer calls the handler on its worker task: the request, and with it the stream's
    // slot in its extensions, goes along.
    let router = Router::new()
        .route(
            "/events",
            get(|conn: Connection| async move { format!("{}", conn.id()) }),
        )
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async { StatusCode::SERVICE_UNAVAILABLE },
                ))
                .buffer(8),
        )
        .layer(SseLayer::new());
    let response = router.oneshot(req("/events")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = String::from_utf8(rest(&mut response.into_body()).await).unwrap();
    assert!(id.parse::<u64>().is_ok(), "{id}");
}

#[tokio::test]
async fn connection_and_topic_reach_the_registry_when_a_middleware_spawns_the_handler() {
    let hub = Hub::memory();
    let registry = hub.registry();
    let (conns, mut handler_conns) = mpsc::unbounded_channel();
    let router = Router::new()
        .route(
            "/events/{topic}",
            get(
                move |State(hub): State<Hub>, Path(topic): Path<String>, conn: Connection| {
                    let conns = conns.clone();
                    async move {
                        conns.send((conn, tokio::task::try_id())).unwrap();
                        hub.subscribe(&topic, None).await
                    }
                },
            ),
        )
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| async move {
                // The handler runs on a task of its own, away from the layer's response future.
                tokio::spawn(next.run(req)).await.unwrap()
            },
        ))
        .layer(SseLayer::new().registry(registry.clone()))
        .with_state(hub.clone());
    let mut body = router
        .oneshot(req("/events/room"))
        .await
        .unwrap()
        .into_body();
    let (conn, handler_task) = handler_conns.try_recv().unwrap();
    assert!(
        handler_task.is_some() && handler_task != tokio::task::try_id(),
        "the handler ran on a task of its own"
    );
    assert_eq!(next(&mut body).await, PRELUDE);

    // The handler's `Connection` is the stream's registry entry, and the entry has the topic
    // the handler's subscription carried up in the response's extensions.
    let open = registry.snapshot();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id(), conn.id());
    assert_eq!(open[0].topic(), Some("room"));
    assert_eq!(conn.info().topic(), Some("room"));
    assert!(conn.is_open());
    conn.send(Event::data("to you")).unwrap();
    assert_eq!(next(&mut body).await, "data: to you\n\n");
    hub.publish("room", Event::data("to all")).await.unwrap();
    assert!(next(&mut body).await.ends_with(b"data: to all\n\n"));
}

#[tokio::test]
async fn cross_origin_stream_has_its_connection_and_its_topic_in_the_registry() {
    // The path of a request with an allowed `Origin` carries the request's extensions down and
    // the response's up too.
    let hub = crate::Hub::memory();
    let registry = hub.registry();
    let (ids, mut handler_ids) = mpsc::unbounded_channel();
    let router = Router::new()
        .route(
            "/events",
            get(move |conn: Connection| {
                let (hub, ids) = (hub.clone(), ids.clone());
                async move {
                    ids.send(conn.id()).unwrap();
                    hub.subscribe("room", None).await.unwrap()
                }
            }),
        )
        .layer(
            SseLayer::new()
                .registry(registry.clone())
                .allow_origins(["https://app.example.com"]),
        );
    let request = Request::get("/events")
        .header(header::HOST, "api.example.com")
        .header(header::ORIGIN, "https://app.example.com")
        .header(header::ACCEPT, "text/event-stream")
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    let id = handler_ids.try_recv().unwrap();
    let open = registry.snapshot();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id(), id);
    assert_eq!(open[0].topic(), Some("room"));
    drop(response);
}

#[tokio::test]
async fn optional_connection_extractor_without_the_layer_is_none() {
    let router = Router::new().route(
        "/events",
        get(|conn: Option<Connection>| async move { format!("{}", conn.is_some()) }),
    );
    let response = router.oneshot(req("/events")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(rest(&mut response.into_body()).await, b"false");
}

// ---------------------------------------------------------------------------------------------
// Connection limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn max_connections_answers_one_over_with_200_a_comment_and_a_retry_hint_then_ends() {
    let fx = fixture(SseLayer::new().max_connections(2));
    let mut presence = fx.registry.presence();
    let _first = fx.open(req("/idle")).await;
    let _second = fx.open(req("/idle")).await;
    assert!(matches!(notice(&mut presence), Presence::Connected(_)));
    assert!(matches!(notice(&mut presence), Presence::Connected(_)));

    let response = fx.get(req("/watched")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let bytes = ready_frame(&mut body).expect("the refusal");
    assert_eq!(ready_frame(&mut body), None);
    let retry = refusal_retry(&bytes, "too many connections");
    assert!((5000..=15000).contains(&retry), "{retry}");
    assert!(
        !fx.polled.load(Ordering::SeqCst),
        "the handler's stream was polled"
    );
    assert_eq!(fx.registry.len(), 2);
    assert_no_notice(&mut presence);
}

#[tokio::test]
async fn max_connections_accepts_a_new_stream_after_one_is_dropped() {
    let fx = fixture(SseLayer::new().max_connections(2));
    let first = fx.open(req("/idle")).await;
    let _second = fx.open(req("/idle")).await;
    let mut refused = fx.open(req("/idle")).await;
    refusal_retry(&rest(&mut refused).await, "too many connections");
    drop(first);
    assert_eq!(fx.registry.len(), 1);
    let mut third = fx.open(req("/watched")).await;
    assert_eq!(fx.registry.len(), 2);
    assert_eq!(next(&mut third).await, PRELUDE);
    assert_eq!(next(&mut third).await, "data: secret\n\n");
    assert!(fx.polled.load(Ordering::SeqCst));
}

#[tokio::test]
async fn over_limit_retry_sets_the_refusal_hint() {
    let fx = fixture(
        SseLayer::new()
            .max_connections(0)
            .over_limit_retry(Duration::from_secs(60)),
    );
    let mut refused = fx.open(req("/idle")).await;
    let retry = refusal_retry(&rest(&mut refused).await, "too many connections");
    assert!((30_000..=90_000).contains(&retry), "{retry}");
    assert!(fx.registry.is_empty());
}

#[tokio::test]
async fn max_connections_per_peer_limits_each_address_separately() {
    let fx = fixture(SseLayer::new().max_connections_per_peer(1));
    let (a, b) = (peer(1, 1000), peer(2, 1000));
    let from_a = fx.open(req_from("/idle", a)).await;
    let _from_b = fx.open(req_from("/idle", b)).await;
    assert_eq!(fx.registry.len(), 2);

    // Another port of the same address is the same peer.
    let mut refused = fx
        .open(req_from("/watched", SocketAddr::new(a.ip(), 2000)))
        .await;
    let retry = refusal_retry(
        &rest(&mut refused).await,
        "too many connections from this address",
    );
    assert!((5000..=15000).contains(&retry), "{retry}");
    assert!(!fx.polled.load(Ordering::SeqCst));
    assert_eq!(fx.registry.len(), 2);
    assert_eq!(fx.registry.count_for(a.ip()), 1);
    assert_eq!(fx.registry.count_for(b.ip()), 1);

    drop(from_a);
    assert_eq!(fx.registry.count_for(a.ip()), 0);
    let _again = fx.open(req_from("/idle", a)).await;
    assert_eq!(fx.registry.count_for(a.ip()), 1);
    assert_eq!(fx.registry.len(), 2);
}

#[tokio::test]
async fn requests_without_a_peer_address_are_not_limited_per_peer() {
    let fx = fixture(SseLayer::new().max_connections_per_peer(1));
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let mut body = fx.open(req("/idle")).await;
        assert_eq!(next(&mut body).await, PRELUDE);
        bodies.push(body);
    }
    assert_eq!(fx.registry.len(), 3);
    assert!(fx.registry.snapshot().iter().all(|c| c.peer().is_none()));
}

#[tokio::test]
async fn per_peer_limit_of_zero_refuses_every_peer_and_counts_nothing() {
    let fx = fixture(SseLayer::new().max_connections_per_peer(0));
    let mut refused = fx.open(req_from("/idle", peer(1, 1000))).await;
    refusal_retry(
        &rest(&mut refused).await,
        "too many connections from this address",
    );
    assert_eq!(fx.registry.count_for(peer(1, 1000).ip()), 0);
    assert!(fx.registry.is_empty());
}

#[tokio::test]
async fn global_limit_refusal_does_not_count_against_the_peer() {
    let fx = fixture(
        SseLayer::new()
            .max_connections(1)
            .max_connections_per_peer(5),
    );
    let _held = fx.open(req_from("/idle", peer(1, 1000))).await;
    for port in 0..3 {
        let mut refused = fx.open(req_from("/idle", peer(2, port))).await;
        refusal_retry(&rest(&mut refused).await, "too many connections");
    }
    assert_eq!(fx.registry.count_for(peer(1, 1000).ip()), 1);
    assert_eq!(fx.registry.count_for(peer(2, 0).ip()), 0);
}

// ---------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------

/// A fixture whose layer is returned too, sharing the fixture's registry, for `shutdown`.
fn shutdown_fixture(layer: SseLayer) -> (SseLayer, Fixture) {
    let fx = fixture(layer.clone());
    (layer.registry(fx.registry.clone()), fx)
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_100_open_streams_each_with_a_jittered_retry_hint() {
    let (layer, fx) = shutdown_fixture(SseLayer::new());
    let mut bodies = Vec::new();
    for n in 0..100 {
        let uri = if n % 2 == 0 {
            format!("/events/topic-{}", n % 7)
        } else {
            "/idle".to_owned()
        };
        let mut body = fx.open(req(&uri)).await;
        assert_eq!(ready_frame(&mut body).as_deref(), Some(PRELUDE));
        bodies.push(body);
    }
    assert_eq!(fx.registry.len(), 100);
    fx.hub
        .publish("topic-0", Event::data("before"))
        .await
        .unwrap();

    layer.shutdown();
    assert!(fx.registry.is_closing());
    let mut retries = Vec::new();
    for body in &mut bodies {
        // Exactly two polls each, both ready at once: the hint, then the end.
        let frame = ready_frame(body).expect("a retry hint");
        retries.push(retry_ms(&frame));
        assert_eq!(ready_frame(body), None);
    }
    assert_jittered(&retries);
    assert!(fx.registry.is_empty());
    drop(bodies);
    assert!(fx.registry.is_empty());
}

#[tokio::test]
async fn shutdown_retry_sets_the_final_hint() {
    let (layer, fx) = shutdown_fixture(SseLayer::new().shutdown_retry(Duration::from_secs(10)));
    let mut bodies = Vec::new();
    for _ in 0..10 {
        bodies.push(fx.open(req("/idle")).await);
    }
    layer.shutdown();
    for body in &mut bodies {
        assert_eq!(ready_frame(body).as_deref(), Some(PRELUDE));
        let retry = retry_ms(&ready_frame(body).expect("a retry hint"));
        assert!((5000..=15000).contains(&retry), "{retry}");
        assert_eq!(ready_frame(body), None);
    }
}

#[tokio::test]
async fn stream_opened_after_shutdown_gets_the_refusal_and_is_never_registered() {
    let (layer, fx) = shutdown_fixture(SseLayer::new());
    let mut presence = fx.registry.presence();
    layer.shutdown();
    let response = fx.get(req("/watched")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    assert!(fx.registry.is_empty());
    let mut body = response.into_body();
    let retry = refusal_retry(&rest(&mut body).await, "shutting down");
    assert!((1000..=3000).contains(&retry), "{retry}");
    assert!(!fx.polled.load(Ordering::SeqCst));
    assert_no_notice(&mut presence);
}

#[tokio::test]
async fn stream_whose_handler_returns_after_shutdown_is_refused() {
    let registry = Registry::new();
    let layer = SseLayer::new().registry(registry.clone());
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = Arc::new(Mutex::new(Some(release_rx)));
    let router = Router::new()
        .route(
            "/slow",
            get(move || {
                let release = release.lock().unwrap().take().unwrap();
                async move {
                    release.await.unwrap();
                    idle_stream()
                }
            }),
        )
        .layer(layer.clone());
    let mut response = pin!(router.oneshot(req("/slow")));
    assert!(poll!(response.as_mut()).is_pending(), "the handler waits");
    layer.shutdown();
    release_tx.send(()).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(registry.is_empty());
    let mut body = response.into_body();
    refusal_retry(&rest(&mut body).await, "shutting down");
}

#[tokio::test]
async fn shutdown_on_ends_the_streams_only_when_its_future_resolves() {
    let (layer, mut fx) = shutdown_fixture(SseLayer::new());
    let mut opened = fx.open_channel(req("/channel")).await;
    assert_eq!(ready_frame(&mut opened.body).as_deref(), Some(PRELUDE));
    let (signal_tx, signal_rx) = oneshot::channel::<()>();
    let mut shutdown = pin!(layer.shutdown_on(async move {
        signal_rx.await.ok();
    }));

    assert!(poll!(shutdown.as_mut()).is_pending());
    assert!(!fx.registry.is_closing());
    assert!(opened.conn.is_open());
    assert!(opened.body.frame().now_or_never().is_none(), "still open");
    send(&opened.tx, b"data: live\n\n").await;
    assert_eq!(next(&mut opened.body).await, "data: live\n\n");
    assert!(poll!(shutdown.as_mut()).is_pending());

    signal_tx.send(()).unwrap();
    assert!(poll!(shutdown.as_mut()).is_ready());
    assert!(fx.registry.is_closing());
    let retry = retry_ms(&ready_frame(&mut opened.body).expect("a retry hint"));
    assert!((1000..=3000).contains(&retry), "{retry}");
    assert_eq!(ready_frame(&mut opened.body), None);
}

#[tokio::test]
async fn graceful_shutdown_over_a_socket_ends_every_stream_and_serve_returns() {
    let registry = Registry::new();
    let layer = SseLayer::new().registry(registry.clone());
    let hub = Hub::builder().registry(registry.clone()).memory();
    let app = Router::new()
        .route("/events/{topic}", get(subscribe))
        .layer(layer.clone())
        .with_state(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal_tx, signal_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(layer.shutdown_on(async move {
                signal_rx.await.ok();
            }))
            .into_future(),
    );

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut readers = Vec::new();
    for n in 0..10 {
        let mut response = client
            .get(format!("http://{addr}/events/room-{}", n % 3))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        // The prelude has arrived, so the stream is registered.
        let first = response.chunk().await.unwrap().expect("the prelude");
        assert_eq!(first, PRELUDE);
        readers.push(tokio::spawn(async move {
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.unwrap() {
                bytes.extend_from_slice(&chunk);
            }
            bytes
        }));
    }
    assert_eq!(registry.len(), 10);
    hub.publish("room-0", Event::data("hello")).await.unwrap();

    signal_tx.send(()).unwrap();
    timeout(SOCKET_GUARD, server)
        .await
        .expect("serve returned after the shutdown signal")
        .unwrap()
        .unwrap();
    for (n, reader) in readers.into_iter().enumerate() {
        let bytes = timeout(SOCKET_GUARD, reader)
            .await
            .expect("the client's body ended")
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let start = text.rfind("retry: ").expect("a retry hint");
        let retry = retry_ms(&text.as_bytes()[start..]);
        assert!((1000..=3000).contains(&retry), "{retry}");
        let before = &text[..start];
        if n % 3 == 0 {
            assert!(before.contains("data: hello\n\n"), "{text:?}");
        }
    }
    assert!(registry.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Refused before the handler runs
// ---------------------------------------------------------------------------------------------

/// An `EventSource`-like request: it asks for an event stream.
fn event_source_req(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::ACCEPT, "text/event-stream")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn event_source_request_over_the_limit_is_refused_before_the_handler_runs() {
    let mut fx = fixture(SseLayer::new().max_connections(1));
    let _open = fx.open(event_source_req("/channel")).await;
    fx.handles.try_recv().expect("the first handler ran");

    let response = fx.get(event_source_req("/channel")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut body = response.into_body();
    let retry = refusal_retry(&rest(&mut body).await, "too many connections");
    assert!((5000..=15000).contains(&retry), "retry {retry} ms");
    assert!(
        fx.handles.try_recv().is_err(),
        "the second handler never ran"
    );
    assert_eq!(fx.registry.len(), 1);
}

#[tokio::test]
async fn event_source_request_after_shutdown_is_refused_before_the_handler_runs() {
    let mut fx = fixture(SseLayer::new());
    let layer = SseLayer::new().registry(fx.registry.clone());
    layer.shutdown();
    let mut body = fx.get(event_source_req("/channel")).await.into_body();
    refusal_retry(&rest(&mut body).await, "shutting down");
    assert!(fx.handles.try_recv().is_err(), "the handler never ran");
}

#[tokio::test]
async fn early_refusal_to_an_allowed_origin_carries_its_cors_headers() {
    let fx = fixture(
        SseLayer::new()
            .max_connections(0)
            .allow_origins(["https://app.example.com"]),
    );
    let request = Request::get("/idle")
        .header(header::ACCEPT, "text/event-stream")
        .header(header::ORIGIN, "https://app.example.com")
        .body(Body::empty())
        .unwrap();
    let response = fx.get(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert!(headers[header::VARY].to_str().unwrap().contains("origin"));
}

#[tokio::test]
async fn per_peer_limit_treats_an_ipv4_mapped_address_as_the_same_peer() {
    let fx = fixture(SseLayer::new().max_connections_per_peer(1));
    let v4 = SocketAddr::from(([127, 0, 0, 9], 1000));
    let mapped = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 9).to_ipv6_mapped(), 2000));
    let _first = fx.open(req_from("/idle", v4)).await;
    let mut body = fx.get(req_from("/idle", mapped)).await.into_body();
    refusal_retry(
        &rest(&mut body).await,
        "too many connections from this address",
    );
}

/// Counts the wake-ups of the wakers made from it.
#[derive(Default)]
struct WakeCount(std::sync::atomic::AtomicUsize);

impl WakeCount {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl futures_util::task::ArcWake for WakeCount {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `body` once with a waker that counts into `count`.
fn poll_with(body: &mut Body, count: &Arc<WakeCount>) -> Poll<Option<Bytes>> {
    let waker = futures_util::task::waker(count.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    std::pin::Pin::new(body)
        .poll_frame(&mut cx)
        .map(|frame| frame.map(|frame| frame.unwrap().into_data().expect("a data frame")))
}

#[tokio::test]
async fn every_send_wakes_the_stream_not_just_the_first() {
    // The body registers its waker only when it changes; a wake-up must leave it registered.
    let mut fx = fixture(SseLayer::new());
    let mut opened = fx.open_channel(req("/channel")).await;
    assert_eq!(ready_frame(&mut opened.body).as_deref(), Some(PRELUDE));
    let count = Arc::new(WakeCount::default());
    for n in 1..=3 {
        assert!(poll_with(&mut opened.body, &count).is_pending());
        opened.conn.send(Event::data(format!("{n}"))).unwrap();
        assert_eq!(count.get(), n);
        let sent = poll_with(&mut opened.body, &count);
        assert_eq!(
            sent,
            Poll::Ready(Some(Bytes::from(format!("data: {n}\n\n"))))
        );
    }
}

#[tokio::test]
async fn close_wakes_the_waker_of_the_latest_poll() {
    let mut fx = fixture(SseLayer::new());
    let mut opened = fx.open_channel(req("/channel")).await;
    assert_eq!(ready_frame(&mut opened.body).as_deref(), Some(PRELUDE));
    let (first, second) = (Arc::default(), Arc::default());
    assert!(poll_with(&mut opened.body, &first).is_pending());
    // Polled from elsewhere now (a body can move to another task).
    assert!(poll_with(&mut opened.body, &second).is_pending());
    assert!(poll_with(&mut opened.body, &second).is_pending());
    opened.conn.close();
    assert_eq!((first.get(), second.get()), (0, 1));
    assert_eq!(poll_with(&mut opened.body, &second), Poll::Ready(None));
}
