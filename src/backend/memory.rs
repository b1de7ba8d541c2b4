//! The embedded backend: history in memory, fan-out in process.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{
    Backend, Gap, GapReason, GapResume, HistoryLimits, Live, Opened, Position, Published,
    ReplayOptions,
};
use crate::hub::HubError;
use crate::{Event, LastEventId};

/// Default per-subscriber queue: how many events a subscriber may fall behind before it is
/// disconnected.
pub(crate) const DEFAULT_QUEUE: usize = 1024;

/// The largest per-subscriber queue.
const MAX_QUEUE: usize = 1 << 20;

/// Topics without history or subscribers are swept once the map grows past this.
const FIRST_SWEEP: usize = 1024;

/// History in memory, bounded by count, bytes and age; fan-out within this process.
///
/// Ids are `EPOCH-SEQ`: `EPOCH` is random per backend instance, so an id issued before a
/// restart is recognised as foreign (and answered with a `gap` event) instead of being matched
/// against the new sequence; `SEQ` counts up from 1 per topic. `EPOCH-0` means "before the
/// first event".
pub struct MemoryBackend {
    epoch: String,
    limits: HistoryLimits,
    queue: usize,
    topics: Mutex<Topics>,
}

struct Topics {
    map: HashMap<Arc<str>, Arc<Mutex<Topic>>>,
    next_sweep: usize,
}

#[derive(Default)]
struct Topic {
    history: VecDeque<Stored>,
    bytes: usize,
    last_seq: u64,
    /// Created for the first subscriber, dropped once a publish finds none left.
    live: Option<broadcast::Sender<Published>>,
}

struct Stored {
    event: Event,
    at: Instant,
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("epoch", &self.epoch)
            .field("limits", &self.limits)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks leaves the state consistent, so a panic elsewhere while
    // one was held does not make it unusable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryBackend {
    /// A backend with these history bounds and the default subscriber queue (1024 events).
    pub fn new(limits: HistoryLimits) -> Self {
        Self::with_queue(limits, DEFAULT_QUEUE)
    }

    /// A backend whose subscribers may each fall `queue` events behind before they are
    /// disconnected (clamped to 1..=1 048 576; the ring is allocated per topic with
    /// subscribers).
    pub fn with_queue(limits: HistoryLimits, queue: usize) -> Self {
        MemoryBackend {
            epoch: format!("{:012x}", fastrand::u64(..) >> 16),
            limits,
            queue: queue.clamp(1, MAX_QUEUE),
            topics: Mutex::new(Topics {
                map: HashMap::new(),
                next_sweep: FIRST_SWEEP,
            }),
        }
    }

    /// This instance's epoch, the first part of every id it issues.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn topic(&self, name: &str) -> Arc<Mutex<Topic>> {
        let mut topics = lock(&self.topics);
        if let Some(topic) = topics.map.get(name) {
            return topic.clone();
        }
        if topics.map.len() >= topics.next_sweep {
            self.sweep(&mut topics);
        }
        let topic = Arc::new(Mutex::new(Topic::default()));
        topics.map.insert(name.into(), topic.clone());
        topic
    }

    /// Drops topics that hold nothing: no retained event and no subscriber. Amortised: runs
    /// when the map has doubled since the last sweep.
    fn sweep(&self, topics: &mut Topics) {
        let now = Instant::now();
        topics.map.retain(|_, topic| {
            // A topic someone else holds right now is in use.
            if Arc::strong_count(topic) > 1 {
                return true;
            }
            let mut topic = lock(topic);
            topic.evict(&self.limits, now);
            if topic
                .live
                .as_ref()
                .is_some_and(|live| live.receiver_count() == 0)
            {
                topic.live = None;
            }
            !topic.history.is_empty() || topic.live.is_some() || topic.last_seq > 0
        });
        topics.next_sweep = (topics.map.len() * 2).max(FIRST_SWEEP);
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }

    /// Reads `EPOCH-SEQ`: `Ok(seq)` for this epoch, `Err(reason)` otherwise.
    fn parse(&self, id: &str) -> Result<u64, GapReason> {
        let (epoch, seq) = id.rsplit_once('-').ok_or(GapReason::Malformed)?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GapReason::Malformed);
        }
        let seq: u64 = seq.parse().map_err(|_| GapReason::Malformed)?;
        if epoch.len() != self.epoch.len() || !epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GapReason::Malformed);
        }
        if epoch != self.epoch {
            return Err(GapReason::Foreign);
        }
        Ok(seq)
    }

    fn publish_now(&self, topic: &str, event: Event) -> Result<Event, HubError> {
        let topic = self.topic(topic);
        let mut topic = lock(&topic);
        let seq = topic.last_seq + 1;
        let event = event.with_id(&self.id(seq)).map_err(HubError::event)?;
        topic.last_seq = seq;
        let now = Instant::now();
        topic.bytes += event.len();
        topic.history.push_back(Stored {
            event: event.clone(),
            at: now,
        });
        topic.evict(&self.limits, now);
        if let Some(live) = &topic.live {
            // Sent under the topic lock, so live order is id order.
            let published = Published {
                position: Position::from(seq),
                event: event.clone(),
            };
            if live.send(published).is_err() {
                // No subscriber left: free the channel's ring.
                topic.live = None;
            }
        }
        Ok(event)
    }

    fn open_now(
        &self,
        topic: &str,
        after: Option<&LastEventId>,
        options: &ReplayOptions,
    ) -> Opened {
        let topic = self.topic(topic);
        let mut topic = lock(&topic);
        topic.evict(&self.limits, Instant::now());
        let last_seq = topic.last_seq;
        // The first sequence number still retained (last_seq + 1 when nothing is).
        let first_seq = last_seq + 1 - topic.history.len() as u64;

        let mut gap = None;
        let from = match after {
            None => None,
            Some(after) => {
                let resumed = match after.as_str() {
                    None => Err(GapReason::Malformed),
                    Some(id) => self.parse(id).and_then(|seq| {
                        if seq > last_seq {
                            Err(GapReason::Unknown)
                        } else if seq + 1 < first_seq {
                            Err(GapReason::Evicted)
                        } else {
                            Ok(seq + 1)
                        }
                    }),
                };
                match resumed {
                    Ok(from) => Some(from),
                    Err(reason) => {
                        let from = match options.resume {
                            GapResume::Oldest => first_seq,
                            GapResume::Live => last_seq + 1,
                        };
                        gap = Some(Gap {
                            reason,
                            resume: options.resume,
                            resume_after: Some(self.id(from - 1)),
                            last_id: (last_seq > 0).then(|| self.id(last_seq)),
                        });
                        Some(from)
                    }
                }
            }
        };

        let mut replay = Vec::new();
        let mut after_seq = last_seq;
        if let Some(from) = from {
            let skip = usize::try_from(from - first_seq).unwrap_or(usize::MAX);
            replay.extend(
                topic
                    .history
                    .iter()
                    .skip(skip)
                    // At least one, so a client far behind always makes progress.
                    .take(options.max_replay.max(1))
                    .map(|stored| stored.event.clone()),
            );
            let replayed_to = from - 1 + replay.len() as u64;
            if replayed_to < last_seq {
                // Cut at max_replay: the client comes back for the rest.
                return Opened {
                    gap,
                    replay,
                    live: None,
                };
            }
            after_seq = replayed_to;
        }
        let queue = self.queue;
        let receiver = topic
            .live
            .get_or_insert_with(|| broadcast::channel(queue).0)
            .subscribe();
        Opened {
            gap,
            replay,
            live: Some(Live {
                receiver,
                after: Position::from(after_seq),
            }),
        }
    }
}

impl Topic {
    fn evict(&mut self, limits: &HistoryLimits, now: Instant) {
        while let Some(oldest) = self.history.front() {
            let expired = now.saturating_duration_since(oldest.at) > limits.max_age;
            if !(self.history.len() > limits.max_events || self.bytes > limits.max_bytes || expired)
            {
                break;
            }
            self.bytes -= oldest.event.len();
            self.history.pop_front();
        }
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new(HistoryLimits::default())
    }
}

impl Backend for MemoryBackend {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<Event, HubError>> {
        futures_util::future::ready(self.publish_now(topic, event)).boxed()
    }

    fn open<'a>(
        &'a self,
        topic: &'a str,
        after: Option<&'a LastEventId>,
        options: &'a ReplayOptions,
    ) -> BoxFuture<'a, Result<Opened, HubError>> {
        futures_util::future::ready(Ok(self.open_now(topic, after, options))).boxed()
    }
}

#[cfg(test)]
mod tests;
