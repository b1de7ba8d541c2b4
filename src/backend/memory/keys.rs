//! The idempotency keys a topic remembers: each key's event (its sequence number and a
//! fingerprint of its content), oldest first, for a window and up to a count.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::IDEMPOTENCY_KEY_OVERHEAD;

/// What a key was first published with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    /// The sequence number its event was stored with.
    pub(super) seq: u64,
    /// The fingerprint of its event (without the id).
    pub(super) print: u64,
}

/// A topic's remembered keys. Keys are recorded in time order and all live the same window,
/// so the oldest is always first to go.
#[derive(Debug, Default)]
pub(super) struct Keys {
    seen: HashMap<Arc<str>, Seen>,
    order: VecDeque<(Instant, Arc<str>)>,
    /// The bytes charged for them ([`Keys::cost`] each).
    bytes: usize,
}

/// A fingerprint of an event's encoded content without its id: a retry with the same key must
/// carry the same event.
pub(super) fn fingerprint(body: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(body);
    hasher.finish()
}

impl Keys {
    /// What remembering `key` counts towards the hub's byte bound.
    pub(super) fn cost(key: &str) -> usize {
        key.len() + IDEMPOTENCY_KEY_OVERHEAD
    }

    pub(super) fn get(&self, key: &str) -> Option<Seen> {
        self.seen.get(key).copied()
    }

    /// Remembers `key` (not remembered yet), whose [cost](Self::cost) the caller has charged.
    pub(super) fn insert(&mut self, key: &str, seen: Seen, now: Instant) {
        let key: Arc<str> = key.into();
        self.bytes += Self::cost(&key);
        self.order.push_back((now, key.clone()));
        self.seen.insert(key, seen);
    }

    /// Forgets the oldest key; returns the bytes freed (0 when there was none).
    pub(super) fn pop_oldest(&mut self) -> usize {
        let Some((_, key)) = self.order.pop_front() else {
            return 0;
        };
        self.seen.remove(&key);
        let cost = Self::cost(&key);
        self.bytes -= cost;
        if self.order.capacity() > 4 * self.order.len() + 64 {
            self.order.shrink_to_fit();
            self.seen.shrink_to_fit();
        }
        cost
    }

    /// Forgets the keys older than `window`; returns the bytes freed.
    pub(super) fn expire(&mut self, window: Duration, now: Instant) -> usize {
        let mut freed = 0;
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= window)
        {
            freed += self.pop_oldest();
        }
        freed
    }

    /// When the oldest key was remembered.
    pub(super) fn oldest_at(&self) -> Option<Instant> {
        self.order.front().map(|(at, _)| *at)
    }

    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}
