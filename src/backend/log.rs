//! A topic's retained events, which are also its live queue.
//!
//! Readers keep a position in the log and are woken when it grows; nobody holds a queue of its
//! own. A reader more than the lag bound behind the newest event is lagged (a slow consumer),
//! and so is one whose position has left the log. An event leaves the log once it is outside
//! the history bounds and no reader within the lag bound has yet to read it.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use slab::Slab;
use tokio::sync::watch;
use tokio::time::Instant;

use super::HistoryLimits;
use crate::Event;

/// A reader's position once it has been cut off.
const CUT: u64 = u64::MAX;

pub(crate) struct Log {
    entries: VecDeque<Entry>,
    /// The sequence number of `entries[0]` (equal to `next` when the log is empty).
    first: u64,
    /// The sequence number the next event gets.
    next: u64,
    /// Encoded bytes of `entries`.
    bytes: usize,
    readers: Slab<Reader>,
    /// How far behind the newest event a reader may fall.
    lag: u64,
    /// Set once the topic is closed: the final event every reader gets after the rest.
    end: Option<Event>,
    /// The topic and what it retains, as metrics (feature `metrics`).
    metrics: crate::metrics::TopicMetrics,
}

impl Drop for Log {
    fn drop(&mut self) {
        self.metrics.release(self.entries.len(), self.bytes);
    }
}

struct Entry {
    event: Event,
    at: Instant,
}

struct Reader {
    /// The sequence number of the next event this reader gets, or [`CUT`].
    next: u64,
    waker: Option<Waker>,
}

/// What a reader gets next.
pub(crate) enum Read {
    Event(Event),
    /// The reader fell out of the log (or was cut off): its stream must end.
    Lagged,
    /// The topic is closed and the reader has had everything before its final event.
    End(Event),
}

/// What [`Log::evict`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evicted {
    pub(crate) events: usize,
    pub(crate) bytes: usize,
}

impl Log {
    /// An empty log whose first event will get sequence number `next`, whose readers may fall
    /// `lag` events behind the newest.
    pub(crate) fn new(next: u64, lag: usize) -> Log {
        Log {
            entries: VecDeque::new(),
            first: next,
            next,
            bytes: 0,
            readers: Slab::new(),
            lag: u64::try_from(lag).unwrap_or(u64::MAX),
            end: None,
            metrics: crate::metrics::TopicMetrics::new(),
        }
    }

    /// The sequence number of the oldest retained event (`next_seq` when none is).
    pub(crate) fn first_seq(&self) -> u64 {
        self.first
    }

    /// The sequence number the next event gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encoded bytes retained.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn readers(&self) -> usize {
        self.readers.len()
    }

    pub(crate) fn end(&self) -> Option<&Event> {
        self.end.as_ref()
    }

    /// When the oldest retained event was appended.
    pub(crate) fn oldest_at(&self) -> Option<Instant> {
        self.entries.front().map(|entry| entry.at)
    }

    /// Appends `event` as sequence number `next_seq()` and wakes every waiting reader.
    pub(crate) fn push(&mut self, event: Event, at: Instant) -> u64 {
        let seq = self.next;
        self.bytes += event.len();
        self.metrics.added(event.len());
        self.entries.push_back(Entry { event, at });
        self.next += 1;
        self.wake_all();
        seq
    }

    /// Up to `max` retained events from sequence number `from` on, oldest first.
    pub(crate) fn read_from(&self, from: u64, max: usize) -> impl Iterator<Item = Event> + '_ {
        let skip = usize::try_from(from.saturating_sub(self.first)).unwrap_or(usize::MAX);
        self.entries
            .iter()
            .skip(skip)
            .take(max)
            .map(|entry| entry.event.clone())
    }

    /// Drops the oldest events that are outside `limits` at `now`, except those a reader has
    /// not read yet while that reader is within the lag bound.
    pub(crate) fn evict(&mut self, limits: &HistoryLimits, now: Instant) -> Evicted {
        let mut evicted = Evicted::default();
        let mut slowest: Option<Option<u64>> = None;
        while let Some(front) = self.entries.front() {
            let expired = now.saturating_duration_since(front.at) > limits.max_age;
            if !(expired || self.entries.len() > limits.max_events || self.bytes > limits.max_bytes)
            {
                break;
            }
            let seq = self.first;
            // Computed once, and only when something is over its bounds.
            let slowest = *slowest.get_or_insert_with(|| {
                self.readers
                    .iter()
                    .map(|(_, reader)| reader.next)
                    .filter(|&next| next != CUT)
                    .min()
            });
            let unread = slowest.is_some_and(|next| next <= seq);
            if unread && self.next - seq <= self.lag {
                break;
            }
            evicted.events += 1;
            evicted.bytes += self.pop_front();
        }
        // A burst leaves no large buffer behind.
        if evicted.events > 0 && self.entries.capacity() > 4 * self.entries.len() + 64 {
            self.entries.shrink_to_fit();
        }
        evicted
    }

    /// Drops the oldest event whatever reads it; returns its encoded size (0 when empty).
    pub(crate) fn pop_front(&mut self) -> usize {
        match self.entries.pop_front() {
            Some(entry) => {
                self.first += 1;
                self.bytes -= entry.event.len();
                self.metrics.removed(entry.event.len());
                entry.event.len()
            }
            None => 0,
        }
    }

    /// A reader that gets events from sequence number `from` on.
    pub(crate) fn add_reader(&mut self, from: u64) -> usize {
        self.readers.insert(Reader {
            next: from,
            waker: None,
        })
    }

    pub(crate) fn remove_reader(&mut self, key: usize) {
        self.readers.try_remove(key);
    }

    /// The next thing reader `key` gets, or `Pending` (its waker kept) when it has had
    /// everything so far.
    pub(crate) fn poll_read(&mut self, key: usize, cx: &mut Context<'_>) -> Poll<Read> {
        let (first, next) = (self.first, self.next);
        let Some(reader) = self.readers.get_mut(key) else {
            return Poll::Ready(Read::Lagged);
        };
        if reader.next == CUT || reader.next < first || next - reader.next > self.lag {
            reader.next = CUT;
            return Poll::Ready(Read::Lagged);
        }
        if reader.next < next {
            let index = usize::try_from(reader.next - first).unwrap_or(usize::MAX);
            reader.next += 1;
            return Poll::Ready(Read::Event(self.entries[index].event.clone()));
        }
        if let Some(end) = &self.end {
            return Poll::Ready(Read::End(end.clone()));
        }
        match &mut reader.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Closes the log: every reader gets `end` after what it has not read yet.
    pub(crate) fn close(&mut self, end: Event) {
        self.end = Some(end);
        self.wake_all();
    }

    /// Cuts every reader off: each gets `Lagged` next.
    pub(crate) fn cut_all(&mut self) {
        for (_, reader) in &mut self.readers {
            reader.next = CUT;
        }
        self.wake_all();
    }

    fn wake_all(&mut self) {
        for (_, reader) in &mut self.readers {
            if let Some(waker) = reader.waker.take() {
                waker.wake();
            }
        }
    }
}

/// Resolves once the subscriber count that `listener` follows (a `watch` of a topic's
/// readers, as a backend's `wait_idle` keeps one) has stayed at 0 for `grace`, or once its
/// sender is gone. With 0 now, that is after `grace` unless a reader comes meanwhile.
pub(crate) async fn until_idle(listener: &mut watch::Receiver<usize>, grace: Duration) {
    loop {
        let subscribers = *listener.borrow_and_update();
        let changed = if subscribers == 0 {
            match tokio::time::timeout(grace, listener.changed()).await {
                Ok(changed) => changed,
                Err(_) => return,
            }
        } else {
            listener.changed().await
        };
        if changed.is_err() {
            return;
        }
    }
}
