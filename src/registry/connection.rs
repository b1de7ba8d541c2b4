use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Uri};

use super::{Registry, StallSignal};
use crate::{Event, LastEventId};

/// How many events [`Connection::send`] may queue for one client before it reports
/// [`SendError::is_full`].
pub const OUTBOX_CAPACITY: usize = 64;

const PENDING: u8 = 0;
const OPEN: u8 = 1;
const GONE: u8 = 2;

const NOT_CLOSED: u8 = 0;
const CLOSED: u8 = 1;
const SHUTDOWN: u8 = 2;
const STALLED: u8 = 3;

/// What the layer knows about one request that may become a stream, shared between the
/// registry, the response body and [`Connection`] handles.
pub(crate) struct ConnShared {
    id: u64,
    /// Copied, not shared: the request's own bytes live in the connection's read buffer, which a
    /// long-lived reference would pin for as long as the stream is open.
    path: Box<str>,
    peer: Option<SocketAddr>,
    user_agent: Option<Box<str>>,
    last_event_id: Option<LastEventId>,
    connected_at: SystemTime,
    topic: OnceLock<Arc<str>>,
    label: Mutex<Option<Arc<str>>>,
    hot: Hot,
    status: AtomicU8,
    /// The stream's task waker, set by the body whenever it polls with a waker that would
    /// not wake the same task as the one before ([`ConnShared::set_waker`]). Waking leaves
    /// it in place, so the body knows what is registered without asking.
    ///
    /// No wake-up is lost: a writer (`close`, `send`) first stores what it changed (`close`,
    /// `queued`), then locks `waker` to wake it; the body first sets `waker` if its waker
    /// changed, then loads `close` and `queued`. The mutex orders the writer's lock against
    /// the body's last `set_waker`. Writer's lock after it: the writer finds a waker of the
    /// body's task (that one or a later one) and wakes it, and the task's next poll sees the
    /// store. Writer's lock before it: the store happens-before that `set_waker`, so every
    /// load the body makes after it, in that poll and any later one, sees the store. A body
    /// that skips `set_waker` because its waker is unchanged is in the second case's "later
    /// poll" or the first case's "that one".
    waker: Mutex<Option<Waker>>,
    outbox: Mutex<VecDeque<Event>>,
    /// Set when the stream's body cannot take events (it arrived already encoded): `send`
    /// refuses them rather than queue events that would never leave.
    sends_refused: AtomicBool,
    /// Signalled when the watchdog ends the stream as stalled: the server that carries it
    /// closes the connection (see [`StallSignal`]).
    stall_signal: Option<StallSignal>,
    /// The stream's write timeout in nanoseconds, for the socket's view of a stall (zero: none,
    /// or no server reports on its socket).
    socket_write_timeout: AtomicU64,
    /// What the stream records (feature `metrics`; nothing otherwise).
    metrics: crate::metrics::StreamMetrics,
}

/// What the body touches for every event sent, together so it is one cache line, not two: a
/// 32-byte block aligned to 32 bytes never straddles a 64-byte line.
#[repr(align(32))]
struct Hot {
    /// Written only by the stream's body (`ConnShared::record`), read by snapshots.
    events_sent: AtomicU64,
    bytes_sent: AtomicU64,
    /// While the body waits for the server to take its next frame (it has handed one over and
    /// not been polled since): when the stream counts as stalled, on the registry's clock
    /// ([`Registry::clock`]). Zero otherwise. Written only by the body, read by the watchdog.
    stalled_at: AtomicU64,
    /// How many events `outbox` holds (at most [`OUTBOX_CAPACITY`]), so the body's check on
    /// every frame takes no lock.
    queued: AtomicU32,
    close: AtomicU8,
}

impl fmt::Debug for ConnShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnShared")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Why a stream is being ended by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Closed by [`Registry::close`], [`Registry::close_where`] or [`Connection::close`].
    Closed,
    /// The server is shutting down.
    Shutdown,
    /// The client accepted no bytes for the layer's
    /// [`write_timeout`](crate::SseLayer::write_timeout) while the stream had something to send.
    Stalled,
}

impl ConnShared {
    pub(crate) fn new(
        id: u64,
        uri: &Uri,
        peer: Option<SocketAddr>,
        user_agent: Option<&HeaderValue>,
        last_event_id: Option<LastEventId>,
        stall_signal: Option<StallSignal>,
    ) -> Self {
        ConnShared {
            id,
            path: uri.path().into(),
            peer,
            user_agent: user_agent.map(|ua| String::from_utf8_lossy(ua.as_bytes()).into()),
            last_event_id,
            connected_at: SystemTime::now(),
            topic: OnceLock::new(),
            label: Mutex::new(None),
            hot: Hot {
                events_sent: AtomicU64::new(0),
                bytes_sent: AtomicU64::new(0),
                stalled_at: AtomicU64::new(0),
                queued: AtomicU32::new(0),
                close: AtomicU8::new(NOT_CLOSED),
            },
            status: AtomicU8::new(PENDING),
            waker: Mutex::new(None),
            outbox: Mutex::new(VecDeque::new()),
            sends_refused: AtomicBool::new(false),
            stall_signal,
            socket_write_timeout: AtomicU64::new(0),
            metrics: crate::metrics::StreamMetrics::new(),
        }
    }

    /// The stream's write timeout, which also applies to its connection's socket when the
    /// server reports on it (`tower_sse::serve` does).
    pub(crate) fn set_write_timeout(&self, timeout: Duration) {
        if self.stall_signal.is_some() {
            self.socket_write_timeout
                .store(super::watchdog::nanos(timeout).max(1), Ordering::Relaxed);
        }
    }

    /// Whether, at `now`, the connection's socket has taken no byte for the stream's write
    /// timeout while the server had bytes to write.
    pub(crate) fn socket_stalled(&self, now: tokio::time::Instant) -> bool {
        let timeout = self.socket_write_timeout.load(Ordering::Relaxed);
        timeout != 0
            && self
                .stall_signal
                .as_ref()
                .is_some_and(|signal| signal.blocked_for(now) >= Duration::from_nanos(timeout))
    }

    /// Tells the server, if it asked to know, that the stream was ended as stalled.
    pub(crate) fn signal_stall(&self) {
        if let Some(signal) = &self.stall_signal {
            signal.signal();
        }
    }

    /// From now on `send` refuses events: the stream's body cannot take them.
    pub(crate) fn refuse_sends(&self) {
        self.sends_refused.store(true, Ordering::Release);
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn peer_ip(&self) -> Option<IpAddr> {
        peer_ip(self.peer)
    }

    pub(crate) fn set_topic(&self, topic: Arc<str>) {
        let _ = self.topic.set(topic);
    }

    /// Whether the stream is on `topic` (`Registry::count_topic`); copies nothing.
    pub(crate) fn is_on_topic(&self, topic: &str) -> bool {
        self.topic.get().is_some_and(|own| **own == *topic)
    }

    /// Whether the stream carries `label` (`Registry::count_label`); copies nothing.
    pub(crate) fn has_label(&self, label: &str) -> bool {
        self.label
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_deref()
            .is_some_and(|own| own == label)
    }

    pub(crate) fn mark_registered(&self) {
        self.status.store(OPEN, Ordering::Release);
        self.metrics.opened();
    }

    /// What the stream records (feature `metrics`).
    pub(crate) fn metrics(&self) -> &crate::metrics::StreamMetrics {
        &self.metrics
    }

    /// The stream has left the registry, for `departure`: recorded, and said at `debug`.
    pub(crate) fn departed(&self, departure: super::Departure) {
        self.metrics.departed(departure);
        tracing::debug!(
            id = self.id,
            reason = ?departure,
            events_sent = self.hot.events_sent.load(Ordering::Relaxed),
            bytes_sent = self.hot.bytes_sent.load(Ordering::Relaxed),
            "stream ended"
        );
    }

    pub(crate) fn mark_gone(&self) {
        self.status.store(GONE, Ordering::Release);
        let mut outbox = self.outbox_lock();
        outbox.clear();
        self.hot.queued.store(0, Ordering::Release);
    }

    /// Counts bytes (and events) sent. Only the stream's body calls it, so a load and a store
    /// do (no read-modify-write); readers see one value or the next.
    pub(crate) fn record(&self, events: u64, bytes: u64) {
        let hot = &self.hot;
        if events > 0 {
            let sent = hot.events_sent.load(Ordering::Relaxed);
            hot.events_sent.store(sent + events, Ordering::Relaxed);
        }
        let sent = hot.bytes_sent.load(Ordering::Relaxed);
        hot.bytes_sent.store(sent + bytes, Ordering::Relaxed);
        self.metrics.sent(events, bytes);
    }

    pub(crate) fn close(&self, reason: CloseReason) {
        let code = match reason {
            CloseReason::Closed => CLOSED,
            CloseReason::Shutdown => SHUTDOWN,
            CloseReason::Stalled => STALLED,
        };
        if self
            .hot
            .close
            .compare_exchange(NOT_CLOSED, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.wake();
        }
    }

    /// Sets the waker that `close` and `send` wake: the body calls it when its task's waker
    /// changes, before it looks at `close` and the outbox (see the `waker` field).
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let old = self.waker_lock().replace(waker.clone());
        drop(old);
    }

    fn waker_lock(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.waker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes the body, after a change it must see. The waker is woken outside the lock, since
    /// waking may run code (an executor's) that sets it again.
    fn wake(&self) {
        let waker = self.waker_lock().clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the stream has been asked to end. The body must have called
    /// [`set_waker`](ConnShared::set_waker) with its current waker first.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        match self.hot.close.load(Ordering::Acquire) {
            NOT_CLOSED => None,
            CLOSED => Some(CloseReason::Closed),
            STALLED => Some(CloseReason::Stalled),
            _ => Some(CloseReason::Shutdown),
        }
    }

    /// The body has handed a frame over: unless it is polled again before `at` (on the
    /// registry's clock), the stream has stalled.
    pub(crate) fn awaiting_poll(&self, at: u64) {
        self.hot.stalled_at.store(at, Ordering::Relaxed);
    }

    /// The body is being polled: the frame it handed over has been taken.
    pub(crate) fn polled(&self) {
        if self.hot.stalled_at.load(Ordering::Relaxed) != 0 {
            self.hot.stalled_at.store(0, Ordering::Relaxed);
        }
    }

    /// Whether the body has waited for its next poll since before `now` allowed.
    pub(crate) fn is_stalled(&self, now: u64) -> bool {
        let at = self.hot.stalled_at.load(Ordering::Relaxed);
        at != 0 && now >= at
    }

    fn outbox_lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.outbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next event queued by [`Connection::send`], if any.
    pub(crate) fn pop_outbox(&self) -> Option<Event> {
        if self.hot.queued.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut outbox = self.outbox_lock();
        let event = outbox.pop_front();
        self.hot.queued.store(queued(&outbox), Ordering::Release);
        event
    }

    fn send(&self, event: Event) -> Result<(), SendError> {
        if self.status.load(Ordering::Acquire) != OPEN
            || self.hot.close.load(Ordering::Acquire) != NOT_CLOSED
            || self.sends_refused.load(Ordering::Acquire)
        {
            return Err(SendError { event, full: false });
        }
        {
            let mut outbox = self.outbox_lock();
            if outbox.len() >= OUTBOX_CAPACITY {
                return Err(SendError { event, full: true });
            }
            outbox.push_back(event);
            self.hot.queued.store(queued(&outbox), Ordering::Release);
        }
        self.wake();
        Ok(())
    }
}

/// The length of an outbox, which [`OUTBOX_CAPACITY`] bounds.
fn queued(outbox: &VecDeque<Event>) -> u32 {
    u32::try_from(outbox.len()).unwrap_or(u32::MAX)
}

/// The address the connection limits count a peer by: an IPv4 client on a dual-stack socket is
/// the same peer as on an IPv4 one.
pub(crate) fn peer_ip(peer: Option<SocketAddr>) -> Option<IpAddr> {
    peer.map(|peer| peer.ip().to_canonical())
}

/// What the layer keeps for each request: the means to build its registry entry, built only
/// when it is needed (the response is an event stream, or the handler asks for its
/// [`Connection`]), so an ordinary request costs no entry and no parsing.
///
/// The layer shares it, as an `Arc`, between its response future (which registers the entry
/// when the response is an event stream) and the request's extensions, where the handler's
/// `Connection` extractor finds it, the way axum's `MatchedPath` travels: whatever runs the
/// handler (a middleware may spawn it as a task of its own) has the request, and with it the
/// slot.
pub(crate) struct ConnectionSlot {
    registry: Registry,
    peer: Option<SocketAddr>,
    uri: Uri,
    user_agent: Option<HeaderValue>,
    last_event_id: Option<HeaderValue>,
    stall_signal: Option<StallSignal>,
    entry: OnceLock<Arc<ConnShared>>,
}

impl fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionSlot")
            .field("uri", &self.uri)
            .field("entry", &self.entry.get())
            .finish_non_exhaustive()
    }
}

impl ConnectionSlot {
    /// A slot for a request to `uri` with these `User-Agent` and `Last-Event-ID` headers, from
    /// `peer` (the client, behind a trusted proxy).
    pub(crate) fn new(
        registry: Registry,
        peer: Option<SocketAddr>,
        uri: Uri,
        user_agent: Option<HeaderValue>,
        last_event_id: Option<HeaderValue>,
        stall_signal: Option<StallSignal>,
    ) -> Self {
        ConnectionSlot {
            registry,
            peer,
            uri,
            user_agent,
            last_event_id,
            stall_signal,
            entry: OnceLock::new(),
        }
    }

    pub(crate) fn peer_ip(&self) -> Option<IpAddr> {
        peer_ip(self.peer)
    }

    /// The request's entry, built the first time it is asked for (by the `Connection`
    /// extractor, or by the layer when the response is an event stream), on whatever task.
    pub(crate) fn entry(&self) -> Arc<ConnShared> {
        self.entry
            .get_or_init(|| {
                let last_event_id = LastEventId::from_header_or_query(
                    self.last_event_id.as_ref(),
                    self.uri.query(),
                );
                Arc::new(ConnShared::new(
                    self.registry.next_id(),
                    &self.uri,
                    self.peer,
                    self.user_agent.as_ref(),
                    last_event_id,
                    self.stall_signal.clone(),
                ))
            })
            .clone()
    }
}

/// Removes its stream from the registry when the response body is dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) registry: Registry,
    pub(crate) shared: Arc<ConnShared>,
    /// The stream's lifetime, entered whenever its body is polled: closed when it is dropped.
    pub(crate) span: tracing::Span,
}

impl Registration {
    pub(crate) fn new(registry: Registry, shared: Arc<ConnShared>) -> Self {
        let span = tracing::debug_span!(
            "sse_stream",
            id = shared.id,
            path = %shared.path,
            topic = shared.topic.get().map(|topic| &**topic),
        );
        Registration {
            registry,
            shared,
            span,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry
            .unregister(&self.shared, super::Departure::ClientGone);
    }
}

/// A handle to one stream: its own, as an axum extractor in a handler behind
/// [`SseLayer`](crate::SseLayer), or any open one from [`Registry::get`].
///
/// One `Connection` is one event stream: the response to one request, as a browser's
/// `EventSource` sees it, from its headers until its body ends. It is not a TCP connection.
/// Over HTTP/1.1 a stream has its socket to itself while it lasts, but over HTTP/2 (and
/// HTTP/3) many streams, from many tabs of one browser, share one connection; and a client
/// that reconnects gets a new stream, with a new id, on the same or another connection.
/// Closing a `Connection` ends that one stream and leaves the socket and any other stream on
/// it open.
///
/// The layer leaves the request's stream slot in the request's extensions, where the extractor
/// finds it, whatever runs the handler in between: layers that poll the handler's future
/// themselves, `tower::buffer`, or a middleware that spawns it as a task of its own. The
/// registry entry is built the first time it is asked for; it counts as open once the handler
/// has returned an event stream and the layer has registered it.
///
/// ```
/// use axum::{Router, routing::get};
/// use futures_util::stream;
/// use tower_sse::{Event, EventStream, SseLayer, registry::Connection};
///
/// async fn events(conn: Connection) -> EventStream<impl futures_util::Stream<Item = Event>> {
///     let id = conn.id();
///     EventStream::new(stream::iter([Event::data(format!("you are connection {id}"))]))
/// }
///
/// let app: Router = Router::new().route("/events", get(events)).layer(SseLayer::new());
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct Connection {
    shared: Arc<ConnShared>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(shared: Arc<ConnShared>) -> Self {
        Connection { shared }
    }

    /// The stream of the request whose extensions these are, when it went through the layer.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    fn of_request(extensions: &http::Extensions) -> Option<Connection> {
        extensions
            .get::<Arc<ConnectionSlot>>()
            .map(|slot| Connection::new(slot.entry()))
    }

    /// The connection's id in the registry.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// What the registry knows about this connection now.
    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo::of(&self.shared)
    }

    /// Whether the stream is open: registered, and neither ended nor asked to close.
    pub fn is_open(&self) -> bool {
        self.shared.status.load(Ordering::Acquire) == OPEN
            && self.shared.hot.close.load(Ordering::Acquire) == NOT_CLOSED
    }

    /// Sends one event to just this client. It is written between two events of the stream,
    /// never inside one.
    ///
    /// Call it once the stream is open: from a task the handler spawns, or from elsewhere with
    /// [`Registry::get`]. Up to [`OUTBOX_CAPACITY`] events wait for a slow client.
    ///
    /// # Errors
    ///
    /// The event comes back in the error when the stream is not open (not yet started, ended,
    /// or closing), when it cannot take events (its body arrived already compressed by an
    /// inner layer, which the layer writes nothing into), or when [`OUTBOX_CAPACITY`] events
    /// are already waiting.
    pub fn send(&self, event: Event) -> Result<(), SendError> {
        self.shared.send(event)
    }

    /// Attaches an application label to this connection (a user name, a session, a device),
    /// shown in [`ConnectionInfo::label`], in the registry's snapshots and in its presence
    /// notices. Set it in the handler, before the stream opens, so the `Connected` notice
    /// carries it; a later call replaces it.
    ///
    /// It is how a "who is online" list becomes a registry query: the registry drops the
    /// entry, label and all, whenever the stream ends.
    pub fn set_label(&self, label: impl Into<Arc<str>>) {
        *self
            .shared
            .label
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(label.into());
    }

    /// Ends this stream at once (see [`Registry::close`]). The client reconnects.
    pub fn close(&self) {
        self.shared.close(CloseReason::Closed);
    }
}

/// [`Connection::send`] could not queue the event.
#[derive(Debug)]
pub struct SendError {
    event: Event,
    full: bool,
}

impl SendError {
    /// Whether the client's queue was full (it is not reading fast enough), rather than the
    /// stream being closed.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The event that was not sent.
    pub fn into_event(self) -> Event {
        self.event
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.full {
            write!(
                f,
                "the client's queue is full ({OUTBOX_CAPACITY} events are waiting)"
            )
        } else {
            f.write_str("the stream is not open")
        }
    }
}

impl std::error::Error for SendError {}

/// The hub topic an event-stream response carries, in its extensions: the layer copies it into
/// the stream's registry entry ([`ConnectionInfo::topic`]) when it registers the stream, and
/// leaves it there for outer layers (a log line, a metric by topic).
///
/// A [`Subscription`](crate::Subscription) returned as a response sets it. A handler that
/// builds its response some other way (a subscription mapped or merged into a stream of its
/// own, or without the `axum` feature) sets it like any response extension:
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use futures_util::StreamExt as _;
/// use tower_sse::{EventStream, Hub, HubError, registry::StreamTopic};
///
/// async fn events(hub: Hub) -> Result<Response, HubError> {
///     let subscription = hub.subscribe("room", None).await?;
///     let mut response = EventStream::new(subscription.map(|event| event)).into_response();
///     response.extensions_mut().insert(StreamTopic::new("room"));
///     Ok(response)
/// }
/// # let _ = events;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTopic(Arc<str>);

impl StreamTopic {
    /// The topic `topic`.
    pub fn new(topic: impl Into<Arc<str>>) -> Self {
        StreamTopic(topic.into())
    }

    /// The topic, as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn from_shared(topic: Arc<str>) -> Self {
        StreamTopic(topic)
    }

    pub(crate) fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

/// A snapshot of one open stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    id: u64,
    path: String,
    topic: Option<Arc<str>>,
    label: Option<Arc<str>>,
    peer: Option<SocketAddr>,
    user_agent: Option<String>,
    connected_at: SystemTime,
    last_event_id: Option<String>,
    events_sent: u64,
    bytes_sent: u64,
}

impl ConnectionInfo {
    pub(crate) fn of(shared: &ConnShared) -> Self {
        ConnectionInfo {
            id: shared.id,
            path: shared.path.to_string(),
            topic: shared.topic.get().cloned(),
            label: shared
                .label
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
            peer: shared.peer,
            user_agent: shared.user_agent.as_deref().map(str::to_owned),
            connected_at: shared.connected_at,
            last_event_id: shared.last_event_id.as_ref().map(ToString::to_string),
            events_sent: shared.hot.events_sent.load(Ordering::Relaxed),
            bytes_sent: shared.hot.bytes_sent.load(Ordering::Relaxed),
        }
    }

    /// The connection's id, unique within its registry.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The request path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The hub topic the stream is subscribed to: the layer reads it from the response's
    /// [`StreamTopic`] extension when it registers the stream. A handler that returns a
    /// [`Subscription`](crate::Subscription) (as is, or with `prepend`, `expire_at`, in a
    /// `Result` or a tuple) sets it; one that wraps the subscription in a stream of its own
    /// can insert the extension itself.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// The label the application gave the connection ([`Connection::set_label`]).
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The client's address, when the server provides it (axum:
    /// `into_make_service_with_connect_info::<SocketAddr>()`). Behind a
    /// [trusted proxy](crate::SseLayer::trusted_proxies), the address it forwarded (port 0 when
    /// it gave none).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The client's `User-Agent`.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// When the stream was opened.
    pub fn connected_at(&self) -> SystemTime {
        self.connected_at
    }

    /// The `Last-Event-ID` the client presented, or `<unusable: …>` when it was unusable.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Events sent so far (counted as frames that complete an event).
    pub fn events_sent(&self) -> u64 {
        self.events_sent
    }

    /// Bytes sent so far, comments included.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
}

#[cfg(feature = "json")]
impl serde::Serialize for ConnectionInfo {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let connected_at = self
            .connected_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut s = serializer.serialize_struct("ConnectionInfo", 10)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("path", &self.path)?;
        s.serialize_field("topic", &self.topic.as_deref())?;
        s.serialize_field("label", &self.label.as_deref())?;
        s.serialize_field("peer", &self.peer.map(|p| p.to_string()))?;
        s.serialize_field("user_agent", &self.user_agent)?;
        s.serialize_field("connected_at", &connected_at)?;
        s.serialize_field("last_event_id", &self.last_event_id)?;
        s.serialize_field("events_sent", &self.events_sent)?;
        s.serialize_field("bytes_sent", &self.bytes_sent)?;
        s.end()
    }
}

/// Rejection of the [`Connection`] extractor on a route without
/// [`SseLayer`](crate::SseLayer): `500 Internal Server Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingConnection;

impl fmt::Display for MissingConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the `Connection` extractor needs `tower_sse::SseLayer` on this route \
             (`Router::layer(SseLayer::new())`)",
        )
    }
}

impl std::error::Error for MissingConnection {}

#[cfg(feature = "axum")]
mod axum_impls {
    use std::convert::Infallible;

    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    use super::{Connection, MissingConnection};

    impl<S: Send + Sync> FromRequestParts<S> for Connection {
        type Rejection = MissingConnection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            Connection::of_request(&parts.extensions).ok_or(MissingConnection)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for Connection {
        type Rejection = Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(Connection::of_request(&parts.extensions))
        }
    }

    impl IntoResponse for MissingConnection {
        fn into_response(self) -> Response {
            (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
        }
    }
}
