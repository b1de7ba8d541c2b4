//! The embedded backend: topics in memory, each topic's history also its live queue.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::Stream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::log::{Log, Read, until_idle};
use super::{
    Backend, Delivery, END_ID_SUFFIX, EVENT_OVERHEAD, Error, Gap, GapReason, GapResume,
    HistoryLimits, Live, Opened, Publish, Published, ReplayOptions, Rest, Start, TopicInfo,
    TopicLimits, charge_within,
};
use crate::Event;

mod keys;

use keys::{Keys, Seen, fingerprint};

/// Default per-subscriber lag bound: how many events a subscriber may fall behind the newest
/// before it is disconnected.
pub(crate) const DEFAULT_QUEUE: usize = 1024;

/// The largest lag bound.
const MAX_QUEUE: usize = 1 << 20;

/// Deadlines the reaper handles before it lets other tasks run.
const REAP_BATCH: usize = 4096;

/// When an expired event is kept for a subscriber that has not read it, how soon the reaper
/// looks at the topic again.
const RECHECK: Duration = Duration::from_secs(1);

/// Topics in memory; each topic's bounded history is also its live queue, fan-out within this
/// process.
///
/// - Ids are `EPOCH-SEQ`. `EPOCH` (12 hex digits) is drawn for each topic instance, unique
///   within this backend and random across restarts, so an id from another topic, from an
///   instance of this topic that was dropped or closed and opened again, or from before a
///   restart is recognised as foreign (and answered with a `gap` event) instead of being taken
///   as a position. `SEQ` counts up from 1; `EPOCH-0` means "before the first event".
/// - A topic is created on first use. It costs what it retains plus a small constant, and each
///   subscriber a position in it. It is dropped at once when it has no subscriber and retains
///   nothing, whole when idle for [`TopicLimits::idle_ttl`], and (least recently used first)
///   when the hub reaches its [`TopicLimits`]. A background task, started on first use, expires
///   events and idle topics on time.
/// - Idempotency keys are remembered per topic, for [`HistoryLimits::idempotency_window`] and
///   up to [`HistoryLimits::max_idempotency_keys`] (the oldest goes first), each counted
///   towards [`TopicLimits::max_history_bytes`]. A topic is kept while it remembers keys
///   (until they expire, or until it has been idle for [`TopicLimits::idle_ttl`]); a topic
///   dropped (idle, or for the hub's bounds) forgets its keys with its history.
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

struct Shared {
    /// Mixed into instance numbers to make topic epochs.
    key: u64,
    history: HistoryLimits,
    limits: TopicLimits,
    queue: usize,
    /// Lock order: `topics`, then a topic's state, then `deadlines`.
    topics: Mutex<Topics>,
    deadlines: Mutex<BinaryHeap<Deadline>>,
    /// Bytes charged against `max_history_bytes`.
    charged: AtomicUsize,
    reaper: Arc<Notify>,
    reaper_started: AtomicBool,
}

struct Topics {
    map: HashMap<Arc<str>, Arc<Topic>>,
    instances: u64,
}

struct Topic {
    name: Arc<str>,
    state: Mutex<TopicState>,
}

struct TopicState {
    log: Log,
    epoch: u64,
    /// Removed from the map: whoever still holds it must look the topic up again.
    dead: bool,
    /// The last publish, close or departure of the last subscriber.
    last_active: Instant,
    /// The reaper's next visit, if one is scheduled.
    scheduled: Option<Instant>,
    /// Created for `wait_idle`: the subscriber count, as it changes.
    listeners: Option<watch::Sender<usize>>,
    /// The idempotency keys remembered, once there is one.
    keys: Option<Box<Keys>>,
}

/// A reaper visit: a min-heap entry by time.
struct Deadline {
    at: Instant,
    topic: Weak<Topic>,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Deadline {}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.at.cmp(&self.at)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks leaves the state consistent, so a panic elsewhere while
    // one was held does not make it unusable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn id(epoch: u64, seq: u64) -> String {
    format!("{epoch:012x}-{seq}")
}

/// Reads `EPOCH-SEQ`: `Ok(seq)` for `epoch`, `Err(reason)` otherwise.
fn parse(id: &str, epoch: u64) -> Result<u64, GapReason> {
    let (id_epoch, seq) = id.rsplit_once('-').ok_or(GapReason::Malformed)?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GapReason::Malformed);
    }
    let seq: u64 = seq.parse().map_err(|_| GapReason::Malformed)?;
    if id_epoch.len() != 12 || !id_epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GapReason::Malformed);
    }
    match u64::from_str_radix(id_epoch, 16) {
        Ok(e) if e == epoch => Ok(seq),
        _ => Err(GapReason::Foreign),
    }
}

impl TopicState {
    fn id(&self, seq: u64) -> String {
        id(self.epoch, seq)
    }

    fn has_listeners(&self) -> bool {
        self.listeners
            .as_ref()
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// No subscriber and nobody waiting for the topic to go idle.
    fn is_idle(&self) -> bool {
        self.log.readers() == 0 && !self.has_listeners()
    }

    /// Holds nothing anyone could ask for: dropped at once.
    fn is_unused(&self) -> bool {
        self.is_idle() && self.log.is_empty() && self.log.end().is_none() && self.keys.is_none()
    }

    /// The idempotency key `key` was first published with, if it is remembered.
    fn seen(&self, key: &str) -> Option<Seen> {
        self.keys.as_ref()?.get(key)
    }

    fn readers_changed(&mut self, now: Instant) {
        if let Some(tx) = &self.listeners {
            tx.send_replace(self.log.readers());
        }
        if self.log.readers() == 0 {
            self.last_active = now;
        }
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("history", &self.shared.history)
            .field("limits", &self.shared.limits)
            .field("queue", &self.shared.queue)
            .finish_non_exhaustive()
    }
}

impl MemoryBackend {
    /// A backend with these history bounds and the default [`TopicLimits`] and subscriber queue
    /// (1024 events).
    pub fn new(history: HistoryLimits) -> Self {
        Self::with_limits(history, TopicLimits::default(), DEFAULT_QUEUE)
    }

    /// A backend with these history bounds, hub-wide bounds, and subscriber lag bound: how many
    /// events a subscriber may fall behind the newest before it is disconnected (clamped to
    /// 1..=1 048 576; it costs nothing unless a subscriber is behind).
    pub fn with_limits(history: HistoryLimits, limits: TopicLimits, queue: usize) -> Self {
        MemoryBackend {
            shared: Arc::new(Shared {
                key: fastrand::u64(..),
                history,
                limits,
                queue: queue.clamp(1, MAX_QUEUE),
                topics: Mutex::new(Topics {
                    map: HashMap::new(),
                    instances: 0,
                }),
                deadlines: Mutex::new(BinaryHeap::new()),
                charged: AtomicUsize::new(0),
                reaper: Arc::new(Notify::new()),
                reaper_started: AtomicBool::new(false),
            }),
        }
    }

    /// How many topics exist now.
    pub fn topic_count(&self) -> usize {
        lock(&self.shared.topics).map.len()
    }

    /// Bytes of retained events (and remembered idempotency keys) in all topics, as counted
    /// against [`TopicLimits::max_history_bytes`].
    pub fn history_bytes(&self) -> usize {
        self.shared.charged.load(Ordering::Relaxed)
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new(HistoryLimits::default())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The reaper holds only a weak reference: wake it so that it sees it is gone.
        self.reaper.notify_one();
    }
}

/// What a topic look-up may do when the topic does not exist.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Existing,
    Create,
}

impl Shared {
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_started.load(Ordering::Relaxed)
            || self.reaper_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(reap(Arc::downgrade(self), self.reaper.clone()));
            }
            Err(_) => self.reaper_started.store(false, Ordering::Release),
        }
    }

    /// Finds `name`, creating it when asked to, within `max_topics`.
    fn topic(&self, name: &str, lookup: Lookup) -> Result<Option<Arc<Topic>>, Error> {
        let mut topics = lock(&self.topics);
        if let Some(topic) = topics.map.get(name) {
            return Ok(Some(topic.clone()));
        }
        if lookup == Lookup::Existing {
            return Ok(None);
        }
        if topics.map.len() >= self.limits.max_topics {
            let goal = (self.limits.max_topics / 16).max(1);
            self.evict_idle(&mut topics, Goal::Topics(goal), None);
            if topics.map.len() >= self.limits.max_topics {
                return Err(Error::too_many_topics());
            }
        }
        topics.instances += 1;
        // A bijection of the instance number, keyed: unique within this backend for 2^48
        // instances, unpredictable across restarts.
        let epoch =
            (topics.instances.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.key) & ((1 << 48) - 1);
        let name: Arc<str> = name.into();
        let topic = Arc::new(Topic {
            name: name.clone(),
            state: Mutex::new(TopicState {
                log: Log::new(1, self.queue),
                epoch,
                dead: false,
                last_active: Instant::now(),
                scheduled: None,
                listeners: None,
                keys: None,
            }),
        });
        topics.map.insert(name, topic.clone());
        Ok(Some(topic))
    }

    fn charge(&self, bytes: usize) -> bool {
        charge_within(&self.charged, bytes, self.limits.max_history_bytes)
    }

    fn uncharge(&self, bytes: usize) {
        self.charged.fetch_sub(bytes, Ordering::AcqRel);
    }

    fn charged_for(events: usize, bytes: usize) -> usize {
        bytes + events * EVENT_OVERHEAD
    }

    /// What a topic holds, as charged: its retained events, its final event and its keys.
    fn held(state: &TopicState) -> usize {
        Self::charged_for(state.log.len(), state.log.bytes())
            + state
                .log
                .end()
                .map_or(0, |end| Self::charged_for(1, end.len()))
            + state.keys.as_ref().map_or(0, |keys| keys.bytes())
    }

    /// Forgets the oldest of a topic's keys; returns the bytes freed (0 when it has none).
    fn forget_oldest_key(&self, state: &mut TopicState) -> usize {
        let Some(keys) = &mut state.keys else {
            return 0;
        };
        let freed = keys.pop_oldest();
        if keys.len() == 0 {
            state.keys = None;
        }
        self.uncharge(freed);
        freed
    }

    /// Remembers `key` for the event stored with `seq`, within the bound on keys; the caller
    /// has charged its cost.
    fn remember(&self, state: &mut TopicState, key: &str, seen: Seen, now: Instant) {
        if self.history.max_idempotency_keys == 0 {
            self.uncharge(Keys::cost(key));
            return;
        }
        while state
            .keys
            .as_ref()
            .is_some_and(|keys| keys.len() >= self.history.max_idempotency_keys)
        {
            self.forget_oldest_key(state);
        }
        state.keys.get_or_insert_default().insert(key, seen, now);
    }

    /// Charges `charge` bytes for an event of `state`'s topic, evicting its expired events
    /// first. `Ok(false)` asks the caller to evict idle topics and try again; when it already
    /// has (`tried_idle`), the topic's own oldest events make room, whoever still reads them.
    fn reserve(
        &self,
        state: &mut TopicState,
        charge: usize,
        now: Instant,
        tried_idle: bool,
    ) -> Result<bool, Error> {
        if charge > self.limits.max_history_bytes {
            return Err(Error::history_full());
        }
        if self.charge(charge) {
            return Ok(true);
        }
        self.evict(state, now);
        if self.charge(charge) {
            return Ok(true);
        }
        if !tried_idle {
            // This topic is in use now: the least recently used of all.
            state.last_active = now;
            return Ok(false);
        }
        while !self.charge(charge) {
            let freed = state.log.pop_front();
            if freed > 0 {
                self.uncharge(Self::charged_for(1, freed));
            } else if self.forget_oldest_key(state) == 0 {
                return Err(Error::history_full());
            }
        }
        Ok(true)
    }

    /// Evicts idle topics other than `except` to make room for `charge` bytes.
    fn make_room(&self, charge: usize, except: &str) {
        let goal = charge.max(self.limits.max_history_bytes / 16);
        self.evict_idle(&mut lock(&self.topics), Goal::Bytes(goal), Some(except));
    }

    /// Applies the history bounds to a topic, its keys' window included.
    fn evict(&self, state: &mut TopicState, now: Instant) {
        let evicted = state.log.evict(&self.history, now);
        self.uncharge(Self::charged_for(evicted.events, evicted.bytes));
        if let Some(keys) = &mut state.keys {
            self.uncharge(keys.expire(self.history.idempotency_window, now));
            if keys.len() == 0 {
                state.keys = None;
            }
        }
    }

    /// Drops idle topics, least recently active first, until `goal` is met (or none is left).
    fn evict_idle(&self, topics: &mut Topics, goal: Goal, except: Option<&str>) {
        let mut idle: Vec<(Instant, Arc<Topic>)> = topics
            .map
            .values()
            .filter(|topic| except != Some(&*topic.name))
            .filter_map(|topic| {
                let state = lock(&topic.state);
                state.is_idle().then(|| (state.last_active, topic.clone()))
            })
            .collect();
        idle.sort_unstable_by_key(|(at, _)| *at);
        let mut freed_topics = 0;
        let mut freed_bytes = 0;
        for (_, topic) in idle {
            let met = match goal {
                Goal::Topics(n) => freed_topics >= n,
                Goal::Bytes(n) => freed_bytes >= n,
            };
            if met {
                break;
            }
            let mut state = lock(&topic.state);
            // A subscriber or an event may have come since the list was made.
            if state.dead || !state.is_idle() {
                continue;
            }
            freed_bytes += Self::held(&state);
            self.remove(topics, &topic, &mut state);
            freed_topics += 1;
        }
        self.compact_deadlines(topics.map.len());
        if freed_topics > 0 {
            tracing::debug!(
                topics = freed_topics,
                bytes = freed_bytes,
                "evicted idle topics"
            );
        }
    }

    /// Removes `topic` from the map (both locked by the caller) and releases its history.
    fn remove(&self, topics: &mut Topics, topic: &Arc<Topic>, state: &mut TopicState) {
        state.dead = true;
        self.uncharge(Self::held(state));
        while state.log.pop_front() > 0 {}
        state.keys = None;
        state.log.cut_all();
        if topics
            .map
            .get(&topic.name)
            .is_some_and(|current| Arc::ptr_eq(current, topic))
        {
            topics.map.remove(&topic.name);
        }
    }

    /// Drops `topic` if `drop_it` still holds once both locks are taken.
    fn remove_if(&self, topic: &Arc<Topic>, drop_it: impl FnOnce(&TopicState) -> bool) {
        let mut topics = lock(&self.topics);
        let mut state = lock(&topic.state);
        if !state.dead && drop_it(&state) {
            self.remove(&mut topics, topic, &mut state);
        }
        drop(state);
        if topics.map.capacity() > 4 * topics.map.len() + 1024 {
            topics.map.shrink_to_fit();
        }
    }

    /// Schedules the reaper's next visit to `topic`: when its oldest event expires, or when it
    /// has been idle for `idle_ttl`.
    fn schedule(&self, topic: &Arc<Topic>, state: &mut TopicState, now: Instant) {
        // An event is expired once it is *older* than `max_age`; a bound too far away to
        // express is none.
        let expiry = state.log.oldest_at().and_then(|at| {
            let at = at.checked_add(
                self.history
                    .max_age
                    .saturating_add(Duration::from_millis(1)),
            )?;
            // Kept past its age for a subscriber that has not read it: look again soon.
            Some(if at <= now { now + RECHECK } else { at })
        });
        let idle = state
            .is_idle()
            .then(|| state.last_active.checked_add(self.limits.idle_ttl))
            .flatten();
        let forget = state.keys.as_ref().and_then(|keys| {
            keys.oldest_at()?
                .checked_add(self.history.idempotency_window)
        });
        let Some(at) = [expiry, idle, forget].into_iter().flatten().min() else {
            return;
        };
        if state.scheduled.is_some_and(|scheduled| scheduled <= at) {
            return;
        }
        state.scheduled = Some(at);
        let mut deadlines = lock(&self.deadlines);
        let earliest = deadlines.peek().is_none_or(|first| at < first.at);
        deadlines.push(Deadline {
            at,
            topic: Arc::downgrade(topic),
        });
        drop(deadlines);
        if earliest {
            self.reaper.notify_one();
        }
    }

    /// Handles the visits due at `now`; returns when the next one is due, `Some(now)` when
    /// there is more to do at once.
    fn reap_due(&self, now: Instant) -> Option<Instant> {
        let next = self.visit_due(now);
        let topics = lock(&self.topics).map.len();
        self.compact_deadlines(topics);
        next
    }

    fn visit_due(&self, now: Instant) -> Option<Instant> {
        for _ in 0..REAP_BATCH {
            let due = {
                let mut deadlines = lock(&self.deadlines);
                match deadlines.peek() {
                    None => return None,
                    Some(first) if first.at > now => return Some(first.at),
                    Some(_) => deadlines.pop()?,
                }
            };
            let Some(topic) = due.topic.upgrade() else {
                continue;
            };
            let mut state = lock(&topic.state);
            if state.dead || state.scheduled != Some(due.at) {
                continue;
            }
            state.scheduled = None;
            self.evict(&mut state, now);
            let idle_ttl = self.limits.idle_ttl;
            let expired = |state: &TopicState| {
                state.is_unused()
                    || (state.is_idle()
                        && state
                            .last_active
                            .checked_add(idle_ttl)
                            .is_some_and(|at| now >= at))
            };
            if expired(&state) {
                drop(state);
                self.remove_if(&topic, expired);
                continue;
            }
            self.schedule(&topic, &mut state, now);
        }
        Some(now)
    }

    /// Drops stale reaper entries (of topics since removed) once they outnumber the topics.
    fn compact_deadlines(&self, topics: usize) {
        let mut deadlines = lock(&self.deadlines);
        if deadlines.len() > 2 * topics + 1024 {
            deadlines.retain(|deadline| deadline.topic.strong_count() > 0);
            deadlines.shrink_to_fit();
        }
    }

    /// Runs `f` on `name`'s topic (created when missing) under its lock; on a fresh look-up
    /// when the one found was dropped meanwhile.
    fn with_topic<T>(
        &self,
        name: &str,
        mut f: impl FnMut(&Arc<Topic>, &mut TopicState) -> Result<T, Error>,
    ) -> Result<T, Error> {
        loop {
            let topic = self
                .topic(name, Lookup::Create)?
                .expect("created when missing");
            let mut state = lock(&topic.state);
            if state.dead {
                continue;
            }
            let result = f(&topic, &mut state);
            // E.g. a refused publish on a new topic, or an event not retained.
            let unused = state.is_unused();
            drop(state);
            if unused {
                self.remove_if(&topic, TopicState::is_unused);
            }
            return result;
        }
    }

    fn publish(self: &Arc<Self>, name: &str, publish: Publish) -> Result<Published, Error> {
        self.start_reaper();
        let (event, key) = publish.into_parts();
        let print = key.as_ref().map(|_| fingerprint(&event.without_id()));
        let mut tried_idle = false;
        loop {
            let published = self.with_topic(name, |topic, state| {
                let now = Instant::now();
                if let (Some(key), Some(print)) = (key.as_deref(), print) {
                    // Expired keys first: a key remembered for exactly the window is gone.
                    self.evict(state, now);
                    if let Some(seen) = state.seen(key) {
                        if seen.print != print {
                            return Err(Error::key_reused());
                        }
                        let first = event
                            .with_id(&state.id(seen.seq))
                            .map_err(Error::internal)?;
                        return Published::duplicate(first).map(Ok);
                    }
                }
                if state.log.end().is_some() {
                    return Err(Error::closed());
                }
                let seq = state.log.next_seq();
                let event = event.with_id(&state.id(seq)).map_err(Error::internal)?;
                let charge =
                    Self::charged_for(1, event.len()) + key.as_deref().map_or(0, Keys::cost);
                if !self.reserve(state, charge, now, tried_idle)? {
                    return Ok(Err(charge));
                }
                state.log.push(event.clone(), now);
                if let (Some(key), Some(print)) = (key.as_deref(), print) {
                    self.remember(state, key, Seen { seq, print }, now);
                }
                state.last_active = now;
                self.evict(state, now);
                self.schedule(topic, state, now);
                Published::stored(event).map(Ok)
            })?;
            match published {
                Ok(published) => return Ok(published),
                Err(charge) => {
                    self.make_room(charge, name);
                    tried_idle = true;
                }
            }
        }
    }

    fn open(
        self: &Arc<Self>,
        name: &str,
        start: &Start,
        options: &ReplayOptions,
    ) -> Result<Opened, Error> {
        self.start_reaper();
        self.with_topic(name, |topic, state| {
            let now = Instant::now();
            self.evict(state, now);
            let first = state.log.first_seq();
            let next = state.log.next_seq();
            let last = next - 1;

            let mut gap = None;
            let from = match start {
                Start::Live => next,
                Start::Oldest => first,
                Start::After(after) => {
                    let resumed = match after.as_str() {
                        None => Err(GapReason::Malformed),
                        Some(id) => parse(id, state.epoch).and_then(|seq| {
                            if seq > last {
                                Err(GapReason::Unknown)
                            } else if seq + 1 < first {
                                Err(GapReason::Evicted)
                            } else {
                                Ok(seq + 1)
                            }
                        }),
                    };
                    match resumed {
                        Ok(from) => from,
                        Err(reason) => {
                            let from = match options.resume {
                                GapResume::Oldest => first,
                                GapResume::Live => next,
                            };
                            let mut notice =
                                Gap::new(reason, options.resume).resume_after(state.id(from - 1));
                            if last > 0 {
                                notice = notice.last_id(state.id(last));
                            }
                            gap = Some(notice);
                            from
                        }
                    }
                }
            };
            // At least one, so a client far behind always makes progress.
            let replay: Vec<Event> = state
                .log
                .read_from(from, options.max_replay.max(1))
                .collect();
            let rest = if from + (replay.len() as u64) < next {
                Rest::More
            } else if let Some(end) = state.log.end() {
                Rest::End(end.clone())
            } else {
                let key = state.log.add_reader(next);
                state.readers_changed(now);
                Rest::Live(Live::new(Feed {
                    shared: self.clone(),
                    topic: topic.clone(),
                    key,
                    done: false,
                }))
            };
            let opened = Opened::new(replay, rest);
            Ok(match gap {
                Some(gap) => opened.with_gap(gap),
                None => opened,
            })
        })
    }

    fn close(self: &Arc<Self>, name: &str, end: Event) -> Result<Event, Error> {
        self.start_reaper();
        let mut tried_idle = false;
        loop {
            let closed = self.with_topic(name, |topic, state| {
                if let Some(end) = state.log.end() {
                    return Ok(Ok(end.clone()));
                }
                let id = format!("{}{END_ID_SUFFIX}", state.id(state.log.next_seq()));
                let end = end.with_id(&id).map_err(Error::internal)?;
                let now = Instant::now();
                // The final event is kept as long as the topic: it counts like an event.
                let charge = Self::charged_for(1, end.len());
                if !self.reserve(state, charge, now, tried_idle)? {
                    return Ok(Err(charge));
                }
                state.log.close(end.clone());
                state.last_active = now;
                self.schedule(topic, state, now);
                Ok(Ok(end))
            })?;
            match closed {
                Ok(end) => return Ok(end),
                Err(charge) => {
                    self.make_room(charge, name);
                    tried_idle = true;
                }
            }
        }
    }

    fn topic_info(&self, name: &str) -> Option<TopicInfo> {
        let topic = self.topic(name, Lookup::Existing).ok()??;
        let mut state = lock(&topic.state);
        if state.dead {
            return None;
        }
        self.evict(&mut state, Instant::now());
        let log = &state.log;
        let mut info =
            TopicInfo::new(log.readers(), log.len(), log.bytes()).closed(log.end().is_some());
        if log.next_seq() > 1 {
            info = info.last_id(state.id(log.next_seq() - 1));
        }
        Some(info)
    }

    async fn wait_idle(self: &Arc<Self>, name: &str, grace: Duration) -> Result<(), Error> {
        self.start_reaper();
        let mut waiting = self.with_topic(name, |topic, state| {
            let readers = state.log.readers();
            let listener = state
                .listeners
                .get_or_insert_with(|| watch::channel(readers).0)
                .subscribe();
            Ok(Waiting {
                shared: self.clone(),
                topic: topic.clone(),
                listener: Some(listener),
            })
        })?;
        if let Some(listener) = &mut waiting.listener {
            until_idle(listener, grace).await;
        }
        Ok(())
    }
}

/// A `wait_idle` in progress; when it ends or is cancelled, the topic no longer counts it.
struct Waiting {
    shared: Arc<Shared>,
    topic: Arc<Topic>,
    listener: Option<watch::Receiver<usize>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        drop(self.listener.take());
        let mut state = lock(&self.topic.state);
        if state.dead || state.has_listeners() {
            return;
        }
        state.listeners = None;
        if state.is_unused() {
            drop(state);
            self.shared.remove_if(&self.topic, TopicState::is_unused);
        } else {
            self.shared
                .schedule(&self.topic, &mut state, Instant::now());
        }
    }
}

#[derive(Clone, Copy)]
enum Goal {
    Topics(usize),
    Bytes(usize),
}

/// Expires events and idle topics on time, until the backend is gone.
async fn reap(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            shared.reap_due(Instant::now())
        };
        match next {
            Some(at) if at <= Instant::now() => tokio::task::yield_now().await,
            Some(at) => {
                let _ = tokio::time::timeout_at(at, wake.notified()).await;
            }
            None => wake.notified().await,
        }
    }
}

/// A subscriber's position in a topic's log.
struct Feed {
    shared: Arc<Shared>,
    topic: Arc<Topic>,
    key: usize,
    done: bool,
}

impl Stream for Feed {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let read = std::task::ready!(lock(&this.topic.state).log.poll_read(this.key, cx));
        Poll::Ready(Some(match read {
            Read::Event(event) => Delivery::Event(event),
            Read::Lagged => {
                this.done = true;
                Delivery::Lagged
            }
            Read::End(end) => {
                this.done = true;
                Delivery::End(end)
            }
        }))
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut state = lock(&self.topic.state);
        if state.dead {
            return;
        }
        state.log.remove_reader(self.key);
        state.readers_changed(now);
        if state.is_unused() {
            drop(state);
            self.shared.remove_if(&self.topic, TopicState::is_unused);
        } else {
            self.shared.schedule(&self.topic, &mut state, now);
        }
    }
}

impl Backend for MemoryBackend {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        publish: Publish,
    ) -> BoxFuture<'a, Result<Published, Error>> {
        futures_util::future::ready(self.shared.publish(topic, publish)).boxed()
    }

    fn open<'a>(
        &'a self,
        topic: &'a str,
        start: &'a Start,
        options: &'a ReplayOptions,
    ) -> BoxFuture<'a, Result<Opened, Error>> {
        futures_util::future::ready(self.shared.open(topic, start, options)).boxed()
    }

    fn close<'a>(&'a self, topic: &'a str, end: Event) -> BoxFuture<'a, Result<Event, Error>> {
        futures_util::future::ready(self.shared.close(topic, end)).boxed()
    }

    fn topic_info<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<TopicInfo>, Error>> {
        futures_util::future::ready(Ok(self.shared.topic_info(topic))).boxed()
    }

    fn wait_idle<'a>(
        &'a self,
        topic: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.shared.wait_idle(topic, grace).boxed()
    }
}

#[cfg(test)]
mod tests;
