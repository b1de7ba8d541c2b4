//! Where a [`Hub`](crate::Hub) keeps topics, ids and history, and how it fans events out.
//!
//! [`Backend`] is the one trait; [`MemoryBackend`] is the embedded default. A backend assigns
//! each published event its id, keeps a bounded history per topic, and opens subscriptions
//! that are exact: the events it replays and the live events it delivers after them never
//! overlap and never leave a hole, because it subscribes to live events *before* it reads
//! history and hands the hub the position that separates the two ([`Live::after`]).
//!
//! Live fan-out goes through a [`tokio::sync::broadcast`] channel per topic and process: the
//! encoded bytes are shared by every subscriber, and a subscriber that falls behind by more
//! than the channel's capacity is noticed (`Lagged`) and disconnected by the hub, so no
//! subscriber can hold more than that shared ring in memory.
//!
//! # Example
//!
//! ```
//! use tower_sse::backend::{Backend, MemoryBackend, ReplayOptions};
//! use tower_sse::{Event, LastEventId};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let backend = MemoryBackend::new(Default::default());
//! let first = backend.publish("news", Event::data("one")).await.unwrap();
//! backend.publish("news", Event::data("two")).await.unwrap();
//!
//! let after = LastEventId::new(first.id().unwrap()).unwrap();
//! let opened = backend.open("news", Some(&after), &ReplayOptions::default()).await.unwrap();
//! assert!(opened.gap.is_none());
//! assert_eq!(opened.replay.len(), 1); // "two"
//! # }
//! ```

pub(crate) mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

pub use memory::MemoryBackend;
#[cfg(feature = "redis")]
pub use redis::{DEFAULT_KEY_PREFIX, RedisBackend};

use crate::hub::HubError;
use crate::{Event, LastEventId};

/// A position in a topic's order: later events have larger positions.
pub type Position = u128;

/// Storage and fan-out for a [`Hub`](crate::Hub).
///
/// Implementations must make [`open`](Backend::open) exact (see the
/// [module documentation](self)) and must be cheap to call concurrently.
pub trait Backend: Send + Sync + 'static {
    /// Appends `event` to `topic`, assigning its id, and fans it out to live subscribers.
    /// Returns the event as stored, with its id. `topic` has been validated by the hub.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<Event, HubError>>;

    /// Opens a subscription to `topic` for a client that last saw `after` (`None` for a first
    /// connection, which gets live events only).
    fn open<'a>(
        &'a self,
        topic: &'a str,
        after: Option<&'a LastEventId>,
        options: &'a ReplayOptions,
    ) -> BoxFuture<'a, Result<Opened, HubError>>;

    /// Whether the backend can serve requests now.
    fn health(&self) -> Health {
        Health::Ok
    }
}

/// How much history one reconnect may replay, and where a client resumes after a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The id comes from another epoch: an in-memory hub that has restarted since, or another
    /// server.
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

/// An event as a backend fans it out: its position and its encoded form.
#[derive(Debug, Clone)]
pub struct Published {
    /// Its position in the topic.
    pub position: Position,
    /// The event, with its id.
    pub event: Event,
}

/// The live part of a subscription.
#[derive(Debug)]
pub struct Live {
    /// Receives every event published to the topic from before the history was read.
    pub receiver: broadcast::Receiver<Published>,
    /// The position of the last event in the replay (or of the topic's newest event when
    /// nothing was replayed): live events at or below it are dropped as duplicates.
    pub after: Position,
}

/// What [`Backend::open`] returns.
#[derive(Debug)]
pub struct Opened {
    /// Set when the client's id could not be resumed from exactly.
    pub gap: Option<Gap>,
    /// The events to send first, oldest first, at most [`ReplayOptions::max_replay`].
    pub replay: Vec<Event>,
    /// The live events after the replay; `None` when the replay was cut at
    /// [`ReplayOptions::max_replay`] and the client must reconnect for the rest.
    pub live: Option<Live>,
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

/// Bounds on the history a backend keeps per topic. An event is evicted as soon as any bound
/// is exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// The most events kept per topic. Default 1000.
    pub max_events: usize,
    /// The most encoded bytes kept per topic. Default 16 MiB.
    pub max_bytes: usize,
    /// How long an event is kept. Default 1 hour.
    pub max_age: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_events: 1000,
            max_bytes: 16 * 1024 * 1024,
            max_age: Duration::from_secs(3600),
        }
    }
}
