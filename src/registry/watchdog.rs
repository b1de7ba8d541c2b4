//! Ends the streams of clients that have stopped reading
//! ([`SseLayer::write_timeout`](crate::SseLayer::write_timeout)).
//!
//! The server asks a body for its next frame only once it has written the previous one (hyper
//! buffers a few frames, then waits for the socket). So a body that has handed a frame over
//! and has not been asked for another within the write timeout belongs to a client whose
//! socket has accepted nothing for that long, while the stream had something to send: an
//! event or a keep-alive. The body notes when that would be ([`ConnShared::awaiting_poll`]),
//! but cannot act on it, as nobody polls it; one task per registry looks over the open streams
//! a few times per write timeout and ends those that have stalled: closed, out of the
//! registry (their slot under the connection limits freed) and counted. A server that left a
//! [`StallSignal`] in the request's extensions (`tower_sse::serve`) is told, and resets the
//! connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{CloseReason, ConnShared, Departure, Inner, Registry};

/// How many looks per write timeout: a stream that stalls is ended within its write timeout
/// and a quarter more.
const LOOKS_PER_TIMEOUT: u32 = 4;

/// How the watchdog tells the server that a stream it ended has stalled: the layer cannot
/// close the socket of a body nobody polls, but a server can. `tower_sse::serve` puts one per
/// connection in each request's extensions and resets the connection once it is signalled;
/// the layer hands it to the stream's registry entry.
#[derive(Clone, Default)]
pub(crate) struct StallSignal(Arc<StallFlag>);

struct StallFlag {
    stalled: AtomicBool,
    waker: AtomicWaker,
    /// What `blocked_since` counts from.
    clock: Instant,
    /// Since when (nanoseconds after `clock`, plus one) the socket has refused every byte the
    /// server tried to write; zero while it takes them. The server's write buffers can hide a
    /// stalled socket from the body for a long time (hyper keeps polling a body until it has
    /// queued 16 frames, and one keep-alive is a frame), so the socket's own view counts too.
    blocked_since: AtomicU64,
}

impl Default for StallFlag {
    fn default() -> Self {
        StallFlag {
            stalled: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            clock: Instant::now(),
            blocked_since: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for StallSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StallSignal")
            .field("stalled", &self.0.stalled.load(Ordering::Relaxed))
            .finish()
    }
}

impl StallSignal {
    /// A stream of the connection has stalled and was ended.
    pub(crate) fn signal(&self) {
        self.0.stalled.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    /// The server tried to write and the socket took nothing: its send buffer is full.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn write_blocked(&self) {
        if self.0.blocked_since.load(Ordering::Relaxed) == 0 {
            let since = Instant::now().saturating_duration_since(self.0.clock);
            self.0
                .blocked_since
                .store(nanos(since).saturating_add(1), Ordering::Relaxed);
        }
    }

    /// The socket took bytes.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn wrote(&self) {
        if self.0.blocked_since.load(Ordering::Relaxed) != 0 {
            self.0.blocked_since.store(0, Ordering::Relaxed);
        }
    }

    /// How long, at `now`, the socket has refused every byte the server tried to write.
    pub(crate) fn blocked_for(&self, now: Instant) -> Duration {
        match self.0.blocked_since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => now
                .saturating_duration_since(self.0.clock)
                .saturating_sub(Duration::from_nanos(since - 1)),
        }
    }

    /// Ready once [`signal`](Self::signal) was called.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn poll_stalled(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Register before loading, so that a signal in between wakes us.
        self.0.waker.register(cx.waker());
        if self.0.stalled.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A registry's clock and its watchdog task.
#[derive(Debug)]
pub(super) struct Watchdog {
    /// Stall deadlines are nanoseconds since this instant, so that they fit an atomic.
    epoch: Instant,
    started: AtomicBool,
    /// The shortest write timeout of the streams registered so far, in nanoseconds: how often
    /// the task looks follows from it.
    shortest: AtomicU64,
    /// Wakes the task when streams come (it sleeps while none is open) or the registry goes.
    wake: Arc<Notify>,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            epoch: Instant::now(),
            started: AtomicBool::new(false),
            shortest: AtomicU64::new(u64::MAX),
            wake: Arc::new(Notify::new()),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // The registry is gone: the task finds so and ends.
        self.wake.notify_one();
    }
}

pub(super) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Registry {
    /// When a stream that hands a frame over at `now` has stalled if it is not polled again
    /// within `timeout`, on the registry's clock. Never zero (which means "not waiting").
    pub(crate) fn stall_deadline(&self, now: Instant, timeout: Duration) -> u64 {
        let since = now.saturating_duration_since(self.inner.watchdog.epoch);
        nanos(since).saturating_add(nanos(timeout)).max(1)
    }

    /// Makes sure the watchdog runs, often enough for a stream with this write timeout. Called
    /// for each stream that has one, once it is registered. Outside a tokio runtime there is
    /// no watchdog (logged at `warn` level once).
    pub(crate) fn watch_stalls(&self, timeout: Duration) {
        let watchdog = &self.inner.watchdog;
        watchdog
            .shortest
            .fetch_min(nanos(timeout).max(1), Ordering::Relaxed);
        if !watchdog.started.load(Ordering::Relaxed)
            && !watchdog.started.swap(true, Ordering::AcqRel)
        {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(run(Arc::downgrade(&self.inner), watchdog.wake.clone()));
                }
                Err(_) => tracing::warn!(
                    "a stream opened outside a tokio runtime: clients that stop reading are \
                     not ended by the write timeout"
                ),
            }
        }
        watchdog.wake.notify_one();
    }

    /// Ends every stream that has stalled by `now`: its body has waited too long to be polled,
    /// or its connection's socket has taken nothing for its write timeout.
    fn end_stalled(&self, now: Instant) {
        let at = self.stall_deadline(now, Duration::ZERO);
        // Allocates only when some stream has stalled.
        let stalled: Vec<Arc<ConnShared>> = self
            .state()
            .open
            .values()
            .filter(|shared| shared.is_stalled(at) || shared.socket_stalled(now))
            .cloned()
            .collect();
        for shared in stalled {
            tracing::debug!(
                id = shared.id(),
                "client accepted nothing within the write timeout; ending its stream"
            );
            shared.close(CloseReason::Stalled);
            self.unregister(&shared, Departure::Stalled);
            // Nobody polls its body, so only the server can free the socket and its buffers.
            shared.signal_stall();
        }
    }
}

/// The watchdog task: looks over the open streams a few times per write timeout while any is
/// open, sleeps while none is, and ends with its registry.
async fn run(registry: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let period = {
            let Some(inner) = registry.upgrade() else {
                return;
            };
            let registry = Registry { inner };
            if registry.is_empty() {
                None
            } else {
                registry.end_stalled(Instant::now());
                let shortest = registry.inner.watchdog.shortest.load(Ordering::Relaxed);
                let period = Duration::from_nanos(shortest) / LOOKS_PER_TIMEOUT;
                Some(period.max(Duration::from_millis(1)))
            }
        };
        match period {
            Some(period) => tokio::time::sleep(period).await,
            None => wake.notified().await,
        }
    }
}
