//! Who is connected now: every event stream that passes through an [`SseLayer`](crate::SseLayer).
//!
//! A [`Registry`] holds one entry per open stream, added when the response starts and removed
//! when the body ends or is dropped: when the stream ends, when the client goes away (noticed
//! at the latest by the next keep-alive write), or when it is closed with [`Registry::close`]
//! or [`Registry::close_where`] or by shutdown, or when its client has stopped reading
//! ([`SseLayer::write_timeout`](crate::SseLayer::write_timeout)). It counts ([`Registry::stats`]:
//! streams opened, refused, and why each ended; [`Registry::count_topic`] and
//! [`Registry::count_label`]: open streams on a topic or with a label), lists
//! ([`Registry::snapshot`]), announces
//! connects and disconnects ([`Registry::presence`]), and enforces the layer's connection limits.
//!
//! Handlers get their own entry with the [`Connection`] extractor, e.g. to send one event to
//! just that client: the layer leaves the means to build it in the request's extensions. An
//! entry's topic comes back up in the response's extensions ([`StreamTopic`]), which a hub
//! [`Subscription`](crate::Subscription) sets.
//!
//! # Example
//!
//! ```
//! use axum::{Json, Router, extract::State, routing::get};
//! use tower_sse::{SseLayer, registry::Registry};
//!
//! let registry = Registry::new();
//! let app: Router = Router::new()
//!     .route(
//!         "/connections",
//!         get(|State(registry): State<Registry>| async move {
//!             Json(registry.snapshot().iter().map(|c| c.id()).collect::<Vec<_>>())
//!         }),
//!     )
//!     .layer(SseLayer::new().registry(registry.clone()))
//!     .with_state(registry.clone());
//! assert_eq!(registry.len(), 0);
//! # let _ = app;
//! ```

mod connection;
mod presence;
mod stats;
mod watchdog;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

pub use connection::{
    CloseReason, Connection, ConnectionInfo, MissingConnection, OUTBOX_CAPACITY, SendError,
    StreamTopic,
};
pub(crate) use connection::{ConnShared, ConnectionSlot, Registration, peer_ip};
pub use presence::{Presence, PresenceStream};
pub(crate) use stats::Departure;
pub use stats::RegistryStats;
pub(crate) use watchdog::StallSignal;

/// How many presence notices a slow [`PresenceStream`] may fall behind before it skips some.
const PRESENCE_CAPACITY: usize = 1024;

/// The open event streams; a cheap [`Clone`] handle.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    next_id: AtomicU64,
    state: Mutex<State>,
    presence: broadcast::Sender<Presence>,
    closing: AtomicBool,
    counters: stats::Counters,
    watchdog: watchdog::Watchdog,
}

#[derive(Debug, Default)]
struct State {
    open: HashMap<u64, Arc<ConnShared>>,
    per_peer: HashMap<IpAddr, usize>,
}

/// Caps on open streams, checked atomically when a stream is registered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) global: Option<usize>,
    pub(crate) per_peer: Option<usize>,
}

/// Why a stream was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    ShuttingDown,
    GlobalLimit,
    PeerLimit,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry {
            inner: Arc::new(Inner {
                next_id: AtomicU64::new(1),
                state: Mutex::new(State::default()),
                presence: broadcast::channel(PRESENCE_CAPACITY).0,
                closing: AtomicBool::new(false),
                counters: stats::Counters::default(),
                watchdog: watchdog::Watchdog::default(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while the lock was held leaves the maps consistent (every update is
        // a single insert or remove), so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// How many streams are open.
    pub fn len(&self) -> usize {
        self.state().open.len()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters since the registry was created: streams opened and refused, and why each one
    /// ended (a client that stopped reading counts as [`stalled`](RegistryStats::stalled)).
    pub fn stats(&self) -> RegistryStats {
        self.inner.counters.read(self.len())
    }

    /// Counts a stream refused by a limit or a shutdown.
    pub(crate) fn count_refused(&self) {
        self.inner.counters.refused();
    }

    /// How many streams are open from one peer address.
    pub fn count_for(&self, peer: IpAddr) -> usize {
        self.state().per_peer.get(&peer).copied().unwrap_or(0)
    }

    /// The open streams, oldest first.
    pub fn snapshot(&self) -> Vec<ConnectionInfo> {
        let mut list: Vec<ConnectionInfo> = self
            .state()
            .open
            .values()
            .map(|shared| ConnectionInfo::of(shared))
            .collect();
        list.sort_by_key(ConnectionInfo::id);
        list
    }

    /// The open stream with this id, as a handle that can send to it or close it.
    pub fn get(&self, id: u64) -> Option<Connection> {
        self.state().open.get(&id).cloned().map(Connection::new)
    }

    /// Closes the stream with this id: it ends at once (between two events, or mid-event, in
    /// which case the client drops the partial event and resumes after the last complete one
    /// when it reconnects). Returns whether such a stream was open.
    pub fn close(&self, id: u64) -> bool {
        match self.state().open.get(&id) {
            Some(shared) => {
                shared.close(CloseReason::Closed);
                true
            }
            None => false,
        }
    }

    /// Closes every open stream for which `matches` says yes, as [`close`](Self::close) closes
    /// one (their reason is [`CloseReason::Closed`]), and returns how many it closed. A stream
    /// already ending (closed, stalled, or shut down) is not asked again and not counted.
    ///
    /// `matches` sees each open stream's [`ConnectionInfo`], built for it (a few small
    /// strings): this is an administrative operation, O(n) in the open streams. It runs outside
    /// the registry's lock, so it may use the registry itself.
    ///
    /// ```
    /// use tower_sse::Registry;
    ///
    /// let registry = Registry::new();
    /// // Log a user out everywhere: end each of their streams.
    /// let closed = registry.close_where(|info| info.label() == Some("user-42"));
    /// assert_eq!(closed, 0);
    /// ```
    pub fn close_where(&self, mut matches: impl FnMut(&ConnectionInfo) -> bool) -> usize {
        let open: Vec<Arc<ConnShared>> = self.state().open.values().cloned().collect();
        let mut closed = 0;
        for shared in open {
            if shared.close_reason().is_none() && matches(&ConnectionInfo::of(&shared)) {
                shared.close(CloseReason::Closed);
                closed += 1;
            }
        }
        closed
    }

    /// How many streams are open on the hub topic `topic` ([`ConnectionInfo::topic`]). A scan
    /// of the open streams under the registry's lock, O(n), that copies nothing.
    pub fn count_topic(&self, topic: &str) -> usize {
        let state = self.state();
        state.open.values().filter(|s| s.is_on_topic(topic)).count()
    }

    /// How many open streams carry the label `label` ([`Connection::set_label`]). A scan of
    /// the open streams under the registry's lock, O(n), that copies nothing.
    pub fn count_label(&self, label: &str) -> usize {
        let state = self.state();
        state.open.values().filter(|s| s.has_label(label)).count()
    }

    /// A stream of connect and disconnect notices from now on.
    pub fn presence(&self) -> PresenceStream {
        PresenceStream::new(self.inner.presence.subscribe())
    }

    /// Ends every open stream, each with a final `retry:` hint, and answers every new one with
    /// a `retry:` hint and an immediate end, so clients come back after the restart. Used by
    /// [`SseLayer::shutdown`](crate::SseLayer::shutdown).
    pub(crate) fn close_all(&self) {
        self.stop_admitting();
        let open: Vec<Arc<ConnShared>> = self.state().open.values().cloned().collect();
        for shared in open {
            shared.close(CloseReason::Shutdown);
        }
    }

    /// Refuses every new stream from now on and leaves the open ones be: a shutdown with a
    /// grace period ([`SseLayer::shutdown_grace`](crate::SseLayer::shutdown_grace)) starts so.
    pub(crate) fn stop_admitting(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
    }

    /// Whether the registry is shutting down ([`SseLayer::shutdown`](crate::SseLayer::shutdown)).
    pub fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::SeqCst)
    }

    /// Whether a new stream from `peer` would be refused now (checked again when it registers).
    pub(crate) fn admits(&self, limits: Limits, peer: Option<IpAddr>) -> Result<(), Refused> {
        self.check(&self.state(), limits, peer)
    }

    fn check(&self, state: &State, limits: Limits, peer: Option<IpAddr>) -> Result<(), Refused> {
        if self.is_closing() {
            return Err(Refused::ShuttingDown);
        }
        if limits.global.is_some_and(|max| state.open.len() >= max) {
            return Err(Refused::GlobalLimit);
        }
        if let (Some(max), Some(ip)) = (limits.per_peer, peer)
            && state.per_peer.get(&ip).copied().unwrap_or(0) >= max
        {
            return Err(Refused::PeerLimit);
        }
        Ok(())
    }

    /// Adds a stream, unless the registry is closing or a limit is reached.
    pub(crate) fn register(
        &self,
        shared: Arc<ConnShared>,
        limits: Limits,
    ) -> Result<Registration, Refused> {
        {
            let mut state = self.state();
            // Checked under the lock, so a shutdown that has collected the open streams cannot
            // miss one registered concurrently.
            self.check(&state, limits, shared.peer_ip())?;
            if let Some(ip) = shared.peer_ip() {
                *state.per_peer.entry(ip).or_insert(0) += 1;
            }
            state.open.insert(shared.id(), shared.clone());
        }
        shared.mark_registered();
        self.inner.counters.opened();
        self.notify(|| Presence::Connected(ConnectionInfo::of(&shared)));
        Ok(Registration::new(self.clone(), shared))
    }

    /// Removes a stream, counting why it left; nothing when it was removed already.
    pub(crate) fn unregister(&self, shared: &Arc<ConnShared>, departure: Departure) {
        {
            let mut state = self.state();
            if state.open.remove(&shared.id()).is_none() {
                return;
            }
            if let Some(ip) = shared.peer_ip()
                && let Some(count) = state.per_peer.get_mut(&ip)
            {
                *count -= 1;
                if *count == 0 {
                    state.per_peer.remove(&ip);
                }
            }
        }
        shared.mark_gone();
        self.inner.counters.departed(departure);
        shared.departed(departure);
        self.notify(|| Presence::Disconnected(ConnectionInfo::of(shared)));
    }

    /// Sends a presence notice, built only when someone listens (it copies the entry's strings).
    fn notify(&self, notice: impl FnOnce() -> Presence) {
        if self.inner.presence.receiver_count() > 0 {
            let _ = self.inner.presence.send(notice());
        }
    }
}

#[cfg(test)]
mod tests;
