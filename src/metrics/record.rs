//! The recording calls, one per fact, where the facts already are. `metrics/off.rs` has the
//! same items, doing nothing, for builds without the feature.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, counter, gauge, histogram};
use tokio::time::Instant;

use super::{
    BACKEND_ERRORS_TOTAL, BACKEND_LAG_SECONDS, BYTES_SENT_TOTAL, CONNECTIONS_ACTIVE,
    CONNECTIONS_TOTAL, DISCONNECTS_TOTAL, EVENTS_PUBLISHED_TOTAL, EVENTS_SENT_TOTAL,
    REPLAYED_EVENTS_TOTAL, REPLAYS_TOTAL, RETAINED_BYTES, RETAINED_EVENTS, STREAM_DURATION_SECONDS,
    TOPICS_ACTIVE,
};
use crate::backend::{Error, GapReason, Opened, Start};
use crate::registry::{Departure, Refused};

/// The handles one stream records through, taken when its entry is built, so that the
/// counters it moves for every frame cost an atomic add, not a look-up; and so that the gauge
/// it raises when it opens is the one it lowers when it ends, whatever recorder is installed
/// in between.
pub(crate) struct StreamMetrics {
    active: Gauge,
    events: Counter,
    bytes: Counter,
    opened_at: OnceLock<Instant>,
    /// Why the handler's stream ended, when it says (a hub subscription does).
    end: OnceLock<EndCell>,
}

impl fmt::Debug for StreamMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamMetrics").finish_non_exhaustive()
    }
}

impl StreamMetrics {
    pub(crate) fn new() -> Self {
        StreamMetrics {
            active: gauge!(CONNECTIONS_ACTIVE),
            events: counter!(EVENTS_SENT_TOTAL),
            bytes: counter!(BYTES_SENT_TOTAL),
            opened_at: OnceLock::new(),
            end: OnceLock::new(),
        }
    }

    /// The stream is registered.
    pub(crate) fn opened(&self) {
        let _ = self.opened_at.set(Instant::now());
        self.active.increment(1.0);
        counter!(CONNECTIONS_TOTAL, "outcome" => "accepted").increment(1);
    }

    /// Bytes written, `events` of them completing events.
    pub(crate) fn sent(&self, events: u64, bytes: u64) {
        if events > 0 {
            self.events.increment(events);
        }
        self.bytes.increment(bytes);
    }

    /// Takes the end cell a hub subscription left in its response's extensions.
    pub(crate) fn adopt_end(&self, extensions: &http::Extensions) {
        if let Some(end) = extensions.get::<EndCell>() {
            let _ = self.end.set(end.clone());
        }
    }

    /// The stream left the registry (once, after [`opened`](Self::opened)).
    pub(crate) fn departed(&self, departure: Departure) {
        let reason = match departure {
            Departure::Ended => self.end.get().and_then(EndCell::reason).unwrap_or("ended"),
            Departure::ClientGone => "client_closed",
            Departure::Closed => "closed",
            Departure::Shutdown => "shutdown",
            Departure::MaxLifetime => "lifetime",
            Departure::Stalled => "stalled",
        };
        self.active.decrement(1.0);
        counter!(DISCONNECTS_TOTAL, "reason" => reason).increment(1);
        if let Some(opened_at) = self.opened_at.get() {
            histogram!(STREAM_DURATION_SECONDS).record(opened_at.elapsed().as_secs_f64());
        }
    }
}

/// Why a hub subscription ended, for `sse_disconnects_total`, when it was not by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum End {
    Slow = 1,
    Auth,
    ReplayLimit,
    Backend,
    Unavailable,
}

impl End {
    const ALL: [End; 5] = [
        End::Slow,
        End::Auth,
        End::ReplayLimit,
        End::Backend,
        End::Unavailable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            End::Slow => "slow",
            End::Auth => "auth",
            End::ReplayLimit => "replay_limit",
            End::Backend => "backend",
            End::Unavailable => "unavailable",
        }
    }
}

/// Where a subscription writes why it ended; its response carries a clone up to the layer,
/// which reads it when the stream leaves the registry.
#[derive(Debug, Clone, Default)]
pub(crate) struct EndCell(Arc<AtomicU8>);

impl EndCell {
    /// A cell that says nothing yet: the subscription ends by itself, unless told otherwise.
    pub(crate) fn new() -> Self {
        EndCell::default()
    }

    /// A cell that says `end` already.
    pub(crate) fn with(end: End) -> Self {
        let cell = EndCell::new();
        cell.set(end);
        cell
    }

    pub(crate) fn set(&self, end: End) {
        self.0.store(end as u8, Ordering::Relaxed);
    }

    /// Leaves a clone in a response's extensions, for the layer.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn attach(&self, extensions: &mut http::Extensions) {
        extensions.insert(self.clone());
    }

    fn reason(&self) -> Option<&'static str> {
        let code = self.0.load(Ordering::Relaxed);
        End::ALL
            .into_iter()
            .find(|end| *end as u8 == code)
            .map(End::as_str)
    }
}

/// The handles of one topic's history (a backend's log), so that what it counts comes off
/// again when it goes, through the same handles.
pub(crate) struct TopicMetrics {
    topics: Gauge,
    events: Gauge,
    bytes: Gauge,
}

impl fmt::Debug for TopicMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicMetrics").finish_non_exhaustive()
    }
}

impl TopicMetrics {
    /// A topic is held from now on.
    pub(crate) fn new() -> Self {
        let metrics = TopicMetrics {
            topics: gauge!(TOPICS_ACTIVE),
            events: gauge!(RETAINED_EVENTS),
            bytes: gauge!(RETAINED_BYTES),
        };
        metrics.topics.increment(1.0);
        metrics
    }

    /// An event of `bytes` is retained.
    pub(crate) fn added(&self, bytes: usize) {
        self.events.increment(1.0);
        self.bytes.increment(bytes as f64);
    }

    /// An event of `bytes` is no longer retained.
    pub(crate) fn removed(&self, bytes: usize) {
        self.events.decrement(1.0);
        self.bytes.decrement(bytes as f64);
    }

    /// The topic goes, with the `events` (of `bytes`) it still retained.
    pub(crate) fn release(&self, events: usize, bytes: usize) {
        self.topics.decrement(1.0);
        self.events.decrement(events as f64);
        self.bytes.decrement(bytes as f64);
    }
}

/// A stream refused by a connection limit or a shutdown.
pub(crate) fn refused(refused: Refused) {
    let outcome = match refused {
        Refused::ShuttingDown => "refused_shutdown",
        Refused::GlobalLimit => "refused_limit",
        Refused::PeerLimit => "refused_peer_limit",
    };
    counter!(CONNECTIONS_TOTAL, "outcome" => outcome).increment(1);
}

/// A stream refused to a cross-origin request whose origin is not allowed.
pub(crate) fn refused_origin() {
    counter!(CONNECTIONS_TOTAL, "outcome" => "refused_origin").increment(1);
}

/// A subscription the hub's policy refused.
pub(crate) fn denied() {
    counter!(CONNECTIONS_TOTAL, "outcome" => "denied").increment(1);
}

/// An event stored (not a duplicate).
pub(crate) fn published() {
    counter!(EVENTS_PUBLISHED_TOTAL).increment(1);
}

/// A backend call that failed.
pub(crate) fn backend_error(operation: &'static str, err: &Error) {
    let kind = if err.is_unavailable() {
        "unavailable"
    } else if err.is_outcome_unknown() {
        "outcome_unknown"
    } else if err.is_full() {
        "full"
    } else if err.is_closed() {
        "closed"
    } else if err.is_key_reused() {
        "key_reused"
    } else if err.is_config() {
        "config"
    } else {
        "internal"
    };
    counter!(BACKEND_ERRORS_TOTAL, "operation" => operation, "kind" => kind).increment(1);
}

/// A subscription opened from `start`: what it replays, and for a resume, how it resumed.
pub(crate) fn replayed(start: &Start, opened: &Opened) {
    if !opened.replay.is_empty() {
        counter!(REPLAYED_EVENTS_TOTAL).increment(opened.replay.len() as u64);
    }
    if !matches!(start, Start::After(_)) {
        return;
    }
    let outcome = match opened.gap.as_ref().map(|gap| gap.reason) {
        None => "exact",
        Some(GapReason::Evicted) => "gap_evicted",
        Some(GapReason::Foreign) => "gap_foreign",
        Some(GapReason::Unknown) => "gap_unknown",
        Some(GapReason::Malformed) => "gap_malformed",
    };
    counter!(REPLAYS_TOTAL, "outcome" => outcome).increment(1);
}

/// Redis: an entry added at `added_ms` (milliseconds since the epoch, on the Redis server's
/// clock) read now. A clock behind Redis's counts as no lag.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn backend_lag(added_ms: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let lag = now.saturating_sub(Duration::from_millis(added_ms));
    histogram!(BACKEND_LAG_SECONDS).record(lag.as_secs_f64());
}
