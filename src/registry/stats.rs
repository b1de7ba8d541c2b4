use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a [`Registry`](super::Registry) since it was created: streams opened and
/// refused, and why each one ended.
///
/// ```
/// use tower_sse::registry::Registry;
///
/// let stats = Registry::new().stats();
/// assert_eq!(stats.opened, 0);
/// assert_eq!(stats.stalled, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RegistryStats {
    /// Streams open now.
    pub open: usize,
    /// Streams registered.
    pub opened: u64,
    /// Streams refused by a connection limit or a shutdown (answered with a `retry:` hint).
    pub refused: u64,
    /// Streams whose handler's body ended by itself (its last event sent, or an error).
    pub ended: u64,
    /// Streams dropped before they ended: the client went away (or the server dropped the
    /// connection).
    pub client_gone: u64,
    /// Streams ended by [`Registry::close`](super::Registry::close) or
    /// [`Connection::close`](super::Connection::close).
    pub closed: u64,
    /// Streams ended by a shutdown ([`SseLayer::shutdown`](crate::SseLayer::shutdown)).
    pub shutdown: u64,
    /// Streams ended at their [`max_lifetime`](crate::SseLayer::max_lifetime).
    pub max_lifetime: u64,
    /// Streams ended because their client accepted no bytes for the
    /// [`write_timeout`](crate::SseLayer::write_timeout) while they had something to send: a
    /// reader that stopped reading.
    pub stalled: u64,
}

/// Why a stream left the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    Ended,
    ClientGone,
    Closed,
    Shutdown,
    MaxLifetime,
    Stalled,
}

impl From<super::CloseReason> for Departure {
    fn from(reason: super::CloseReason) -> Departure {
        match reason {
            super::CloseReason::Closed => Departure::Closed,
            super::CloseReason::Shutdown => Departure::Shutdown,
            super::CloseReason::Stalled => Departure::Stalled,
        }
    }
}

/// The counters behind [`RegistryStats`]: each is touched once per stream, not per event.
#[derive(Debug, Default)]
pub(super) struct Counters {
    opened: AtomicU64,
    refused: AtomicU64,
    ended: AtomicU64,
    client_gone: AtomicU64,
    closed: AtomicU64,
    shutdown: AtomicU64,
    max_lifetime: AtomicU64,
    stalled: AtomicU64,
}

impl Counters {
    pub(super) fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn departed(&self, departure: Departure) {
        let counter = match departure {
            Departure::Ended => &self.ended,
            Departure::ClientGone => &self.client_gone,
            Departure::Closed => &self.closed,
            Departure::Shutdown => &self.shutdown,
            Departure::MaxLifetime => &self.max_lifetime,
            Departure::Stalled => &self.stalled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn read(&self, open: usize) -> RegistryStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RegistryStats {
            open,
            opened: get(&self.opened),
            refused: get(&self.refused),
            ended: get(&self.ended),
            client_gone: get(&self.client_gone),
            closed: get(&self.closed),
            shutdown: get(&self.shutdown),
            max_lifetime: get(&self.max_lifetime),
            stalled: get(&self.stalled),
        }
    }
}
