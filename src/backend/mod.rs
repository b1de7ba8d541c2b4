//! Where a [`Hub`](crate::Hub) keeps topics, ids and history, and how it fans events out.
//!
//! [`Backend`] is the one trait; [`MemoryBackend`] is the embedded default, and (feature
//! `redis`) `RedisBackend` shares history and fan-out between servers. Anyone can implement it
//! for their own store. A backend assigns each published event its id, keeps a bounded history
//! per topic, and opens subscriptions that are exact: the events it replays and the live events
//! it delivers after them never overlap and never leave a hole. How it fans out is its own
//! business: a [`Live`] feed is any `Stream` of [`Delivery`] items.
//!
//! In the embedded backend a topic's retained history is also its live queue: a subscriber
//! keeps a position in it, so a topic costs what it retains plus a small constant, and a
//! subscriber that stops reading holds nothing of its own. Topics are created on first use and
//! dropped when they hold nothing, when idle for [`TopicLimits::idle_ttl`], or (oldest idle
//! first) when the hub reaches its [`TopicLimits`].
//!
//! # Example
//!
//! ```
//! use tower_sse::backend::{Backend, MemoryBackend, ReplayOptions, Start};
//! use tower_sse::{Event, LastEventId};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let backend = MemoryBackend::default();
//! let first = backend.publish("news", Event::data("one").into()).await.unwrap();
//! backend.publish("news", Event::data("two").into()).await.unwrap();
//!
//! let after = Start::After(LastEventId::new(first.id()).unwrap());
//! let opened = backend.open("news", &after, &ReplayOptions::default()).await.unwrap();
//! assert!(opened.gap.is_none());
//! assert_eq!(opened.replay.len(), 1); // "two"
//! # }
//! ```

mod error;
pub(crate) mod log;
pub(crate) mod memory;
mod publish;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::Stream;

pub use error::Error;
pub use memory::MemoryBackend;
pub(crate) use publish::key_problem;
pub use publish::{DEFAULT_IDEMPOTENCY_WINDOW, MAX_IDEMPOTENCY_KEY_LEN, Publish, Published};
#[cfg(feature = "redis")]
pub use redis::{DEFAULT_KEY_PREFIX, RedisBackend};

use crate::{Event, LastEventId};

/// The suffix of a terminal event's id: the id of the event that [`Backend::close`] appends
/// ends with it. A client that presents such an id has seen its topic end; the hub answers it
/// `204 No Content` without asking the backend, so the rule holds once the topic is gone too.
pub const END_ID_SUFFIX: &str = ":end";

/// Whether `id` is a terminal event's id (see [`END_ID_SUFFIX`]).
pub fn is_end_id(id: &str) -> bool {
    id.ends_with(END_ID_SUFFIX)
}

/// Storage and fan-out for a [`Hub`](crate::Hub).
///
/// Implementations must make [`open`](Backend::open) exact (see the
/// [module documentation](self)) and must be cheap to call concurrently. Topic names have
/// been validated by the hub. Every method but [`health`](Backend::health) and
/// [`wait_idle`](Backend::wait_idle) must be implemented.
pub trait Backend: Send + Sync + 'static {
    /// Appends the event of `publish` to `topic`, assigning its id, and fans it out to live
    /// subscribers. Returns the event as stored, with its id ([`Published::stored`]).
    ///
    /// With an [idempotency key](Publish::key) (validated by the hub) that this topic saw
    /// within the backend's window for the same event, nothing is stored and the first
    /// publish's id and event come back ([`Published::duplicate`]), even once the topic is
    /// closed; for a different event, [`Error::key_reused`]. Checking and recording the key
    /// must be atomic with the append, so that two publishes with one key (on two servers)
    /// store once.
    ///
    /// Fails with [`Error::closed`] on a closed topic, with an error that says so when a bound
    /// of the backend refuses it ([`Error::too_many_topics`], [`Error::history_full`]),
    /// [`Error::unavailable`] when nothing was stored, and [`Error::outcome_unknown`] when the
    /// event may have been stored (sent to a store that did not answer).
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        publish: Publish,
    ) -> BoxFuture<'a, Result<Published, Error>>;

    /// Opens a subscription to `topic` starting at `start`.
    fn open<'a>(
        &'a self,
        topic: &'a str,
        start: &'a Start,
        options: &'a ReplayOptions,
    ) -> BoxFuture<'a, Result<Opened, Error>>;

    /// Closes `topic`: appends `end` as its final event (its id ending with
    /// [`END_ID_SUFFIX`]), ends every live subscription with it, and refuses further publishes
    /// until the topic is gone. Subscribers that come later get what is retained, then `end`.
    /// Closing a closed topic changes nothing. Returns the final event as stored.
    fn close<'a>(&'a self, topic: &'a str, end: Event) -> BoxFuture<'a, Result<Event, Error>>;

    /// What `topic` holds now and who listens; `None` when the topic does not exist.
    fn topic_info<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<TopicInfo>, Error>>;

    /// Resolves once `topic` has had no subscriber for `grace` (after `grace` when nobody
    /// subscribes in the meantime). The default asks [`topic_info`](Backend::topic_info) four
    /// times per `grace` and resolves once every answer for `grace` said none, so a subscriber
    /// that comes and goes between two questions is missed; backends that know when
    /// subscribers come and go do better.
    fn wait_idle<'a>(
        &'a self,
        topic: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let step = (grace / 4).max(Duration::from_millis(10));
            let mut idle_since = None;
            loop {
                let info = self.topic_info(topic).await?;
                if info.is_none_or(|info| info.subscribers == 0) {
                    let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= grace {
                        return Ok(());
                    }
                } else {
                    idle_since = None;
                }
                tokio::time::sleep(step).await;
            }
        })
    }

    /// Whether the backend can serve requests now.
    fn health(&self) -> Health {
        Health::Ok
    }
}

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Start {
    /// With the events published from now on.
    #[default]
    Live,
    /// With the oldest event the topic still retains.
    Oldest,
    /// Right after this id: a reconnecting client's `Last-Event-ID`.
    After(LastEventId),
}

impl Start {
    /// After `last` when the client sent one (a reconnect), else `first`.
    ///
    /// ```
    /// use tower_sse::backend::Start;
    /// assert_eq!(Start::resume_or(None, Start::Oldest), Start::Oldest);
    /// ```
    pub fn resume_or(last: Option<LastEventId>, first: Start) -> Start {
        last.map_or(first, Start::After)
    }
}

impl From<Option<LastEventId>> for Start {
    /// After the id, or live for a first connection.
    fn from(last: Option<LastEventId>) -> Start {
        Start::resume_or(last, Start::Live)
    }
}

/// How much history one reconnect may replay, and where a client resumes after a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// The most events one reconnect replays. A client further behind gets this many, then its
    /// stream ends with a `retry:` hint and it comes back for the next batch, so a reconnect
    /// storm reads at most this much per client and connection.
    pub max_replay: usize,
    /// Where a client whose id cannot be resumed from continues.
    pub resume: GapResume,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            max_replay: 1000,
            resume: GapResume::Oldest,
        }
    }
}

/// Where a client continues after a [`Gap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GapResume {
    /// From the oldest event still retained: everything the server still has.
    #[default]
    Oldest,
    /// With live events only.
    Live,
}

impl GapResume {
    /// `"oldest"` or `"live"`.
    pub fn as_str(self) -> &'static str {
        match self {
            GapResume::Oldest => "oldest",
            GapResume::Live => "live",
        }
    }
}

/// Why a client's last event id cannot be resumed from exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GapReason {
    /// The events after the id are no longer retained (evicted by the history bounds, or
    /// trimmed).
    Evicted,
    /// The id was issued by another topic, by an earlier instance of this topic (dropped, or
    /// closed and opened again), or by an in-memory hub that has restarted since.
    Foreign,
    /// The id has the right form but was never issued (it is ahead of the topic).
    Unknown,
    /// The id is unusable (too long, not UTF-8, CR/LF/NUL) or not of the backend's form.
    Malformed,
}

impl GapReason {
    /// `"evicted"`, `"foreign"`, `"unknown"` or `"malformed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Evicted => "evicted",
            GapReason::Foreign => "foreign",
            GapReason::Unknown => "unknown",
            GapReason::Malformed => "malformed",
        }
    }
}

/// A reconnect that could not be resumed exactly; the hub tells the client with a `gap` event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    /// Why.
    pub reason: GapReason,
    /// Where the stream continues.
    pub resume: GapResume,
    /// An id that, presented on a later reconnect, resumes exactly where this stream
    /// continues (so the `gap` event carries it as its id). `None` if there is none.
    pub resume_after: Option<String>,
    /// The newest id in the topic when the subscription opened, if any.
    pub last_id: Option<String>,
}

impl Gap {
    /// A gap for `reason`, continuing as `resume` says.
    pub fn new(reason: GapReason, resume: GapResume) -> Gap {
        Gap {
            reason,
            resume,
            resume_after: None,
            last_id: None,
        }
    }

    /// Sets [`resume_after`](Gap::resume_after).
    pub fn resume_after(mut self, id: impl Into<String>) -> Gap {
        self.resume_after = Some(id.into());
        self
    }

    /// Sets [`last_id`](Gap::last_id).
    pub fn last_id(mut self, id: impl Into<String>) -> Gap {
        self.last_id = Some(id.into());
        self
    }
}

/// What [`Backend::open`] returns.
#[derive(Debug)]
#[non_exhaustive]
pub struct Opened {
    /// Set when the client's id could not be resumed from exactly.
    pub gap: Option<Gap>,
    /// The events to send first, oldest first, at most [`ReplayOptions::max_replay`].
    pub replay: Vec<Event>,
    /// What follows the replay.
    pub rest: Rest,
}

impl Opened {
    /// A subscription that sends `replay`, then `rest`.
    pub fn new(replay: Vec<Event>, rest: Rest) -> Opened {
        Opened {
            gap: None,
            replay,
            rest,
        }
    }

    /// Announces `gap` before the replay.
    pub fn with_gap(mut self, gap: Gap) -> Opened {
        self.gap = Some(gap);
        self
    }
}

/// What follows a subscription's replay.
#[derive(Debug)]
#[non_exhaustive]
pub enum Rest {
    /// Live events, exactly after the replay.
    Live(Live),
    /// Nothing now: the replay was cut at [`ReplayOptions::max_replay`], and the client comes
    /// back (after a `retry:` hint) for the rest.
    More,
    /// The topic is closed: this final event, then the stream's end.
    End(Event),
}

/// The live part of a subscription: a feed of [`Delivery`] items from the backend, in order.
///
/// The stream ending means the backend lost the feed: the hub ends the client's stream with a
/// `retry:` hint, and the client resumes by replay.
pub struct Live {
    feed: Pin<Box<dyn Stream<Item = Delivery> + Send + 'static>>,
}

impl Live {
    /// A live part fed by `feed`.
    pub fn new(feed: impl Stream<Item = Delivery> + Send + 'static) -> Live {
        Live {
            feed: Box::pin(feed),
        }
    }
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Stream for Live {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.feed.as_mut().poll_next(cx)
    }
}

/// One item of a [`Live`] feed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Delivery {
    /// The next event.
    Event(Event),
    /// The subscriber fell further behind than the backend keeps for it: its stream ends with
    /// a `retry:` hint, and it catches up by replay when it reconnects.
    Lagged,
    /// The topic was closed: this final event, then the end.
    End(Event),
}

/// What a topic holds now and who listens, from [`Backend::topic_info`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TopicInfo {
    /// Live subscribers (of this process, for a backend shared by several).
    pub subscribers: usize,
    /// Events retained for replay.
    pub retained_events: usize,
    /// Encoded bytes of those events.
    pub retained_bytes: usize,
    /// The id of the newest event published, if it is known.
    pub last_id: Option<String>,
    /// Whether the topic is closed.
    pub closed: bool,
}

impl TopicInfo {
    /// A topic with this many subscribers, retained events and retained bytes.
    pub fn new(subscribers: usize, retained_events: usize, retained_bytes: usize) -> TopicInfo {
        TopicInfo {
            subscribers,
            retained_events,
            retained_bytes,
            ..TopicInfo::default()
        }
    }

    /// Sets [`last_id`](TopicInfo::last_id).
    pub fn last_id(mut self, id: impl Into<String>) -> TopicInfo {
        self.last_id = Some(id.into());
        self
    }

    /// Sets [`closed`](TopicInfo::closed).
    pub fn closed(mut self, closed: bool) -> TopicInfo {
        self.closed = closed;
        self
    }
}

/// Whether a backend can serve requests now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Serving.
    Ok,
    /// Not serving; the message says why (e.g. the Redis server is unreachable).
    Unavailable(String),
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Ok => f.write_str("ok"),
            Health::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

/// Bounds on the history a backend keeps per topic, for replay. An event leaves the history
/// as soon as any bound is exceeded, unless a live subscriber has not read it yet and is at
/// most its queue behind (so a live subscriber that keeps up never misses an event to a short
/// history). What the whole hub keeps is bounded by [`TopicLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// The most events kept per topic. Default 1000.
    pub max_events: usize,
    /// The most encoded bytes kept per topic. Default 16 MiB.
    pub max_bytes: usize,
    /// How long an event is kept. Default 1 hour.
    pub max_age: Duration,
    /// How long a publish's [idempotency key](Publish::idempotency_key) is remembered: a
    /// publish with the same key within it is a [duplicate](Published::is_duplicate), not
    /// stored again. Default 5 minutes ([`DEFAULT_IDEMPOTENCY_WINDOW`]). Independent of the
    /// event's own retention: a retry is recognised after its event has left the history.
    pub idempotency_window: Duration,
    /// The most idempotency keys remembered per topic (in-memory backend): beyond it, the
    /// oldest is forgotten before its window ends. Default 10 000. Each key also counts
    /// towards [`TopicLimits::max_history_bytes`] (its length plus
    /// [`IDEMPOTENCY_KEY_OVERHEAD`]). Redis keeps each key as a key of its own, expiring with
    /// the window, bounded by Redis's `maxmemory`.
    pub max_idempotency_keys: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_events: 1000,
            max_bytes: 16 * 1024 * 1024,
            max_age: Duration::from_secs(3600),
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            max_idempotency_keys: 10_000,
        }
    }
}

/// Bounds on the topics of a whole hub, and when an idle topic goes away.
///
/// When a new topic would exceed `max_topics`, or an event would take the retained history past
/// `max_history_bytes`, the hub first drops idle topics (no subscriber), least recently used
/// first; then, for an event, the oldest events of its own topic. If that is not enough, the
/// call is refused ([`Error::too_many_topics`], [`Error::history_full`]): a publisher gets `503`
/// with `Retry-After`, a subscriber a `retry:` hint (never a status an `EventSource` takes as
/// final).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicLimits {
    /// The most topics at once. Default 100 000.
    pub max_topics: usize,
    /// The most bytes of events held in all topics together, counting each event's encoded
    /// size plus [`EVENT_OVERHEAD`] for its bookkeeping (retained history, final events and
    /// remembered idempotency keys in memory, each key its length plus
    /// [`IDEMPOTENCY_KEY_OVERHEAD`]; with Redis, the events this process holds for its own
    /// subscribers). Default 64 MiB.
    pub max_history_bytes: usize,
    /// A topic without subscribers that nobody published to for this long is dropped whole,
    /// with its history. Default 1 hour.
    pub idle_ttl: Duration,
}

/// What the hub counts per retained event besides its encoded bytes, towards
/// [`TopicLimits::max_history_bytes`].
pub const EVENT_OVERHEAD: usize = 128;

/// What the in-memory backend counts per remembered idempotency key besides the key's length,
/// towards [`TopicLimits::max_history_bytes`].
pub const IDEMPOTENCY_KEY_OVERHEAD: usize = 96;

/// Adds `bytes` to `counter` if the total stays within `max`: the hot path of the byte bound,
/// one atomic update.
pub(crate) fn charge_within(
    counter: &std::sync::atomic::AtomicUsize,
    bytes: usize,
    max: usize,
) -> bool {
    use std::sync::atomic::Ordering;
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(bytes).filter(|&total| total <= max)
        })
        .is_ok()
}

impl Default for TopicLimits {
    fn default() -> Self {
        TopicLimits {
            max_topics: 100_000,
            max_history_bytes: 64 * 1024 * 1024,
            idle_ttl: Duration::from_secs(3600),
        }
    }
}
