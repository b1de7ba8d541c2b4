//! [`Poller`]: one shared poller per source, started by its first subscriber and stopped once
//! its last has gone.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::time::Instant;

use super::diff::diff;
use super::http::{self, Validators};
use super::source::{Failure, Fetched, Source};
use crate::backend::Start;
use crate::hub::DEFAULT_MAX_EVENT_BYTES;
use crate::{Event, Hub, HubError, LastEventId, Subscription};

/// The name of the event with a source's whole value.
pub const SNAPSHOT: &str = "snapshot";

/// The name of the event with the JSON Patch (RFC 6902) from one value to the next.
pub const PATCH: &str = "patch";

/// The name of the event that says a poll failed.
pub const ERROR: &str = crate::hub::stream::ERROR;

/// The prefix of the hub topics pollers publish to.
const TOPIC_PREFIX: &str = "poll:";

/// The shortest interval a poller may be given, whatever its floor says.
const SHORTEST_INTERVAL: Duration = Duration::from_millis(1);

/// Streams JSON sources to subscribers: one poller per source, shared by all its subscribers,
/// publishing to a topic of the [`Hub`]. A cheap [`Clone`] handle.
///
/// See the [module documentation](super).
#[derive(Clone)]
pub struct Poller {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    options: Options,
    client: http::Client,
    /// The running pollers, by [`identity`].
    sources: Mutex<HashMap<Arc<str>, Arc<Entry>>>,
    /// Keys for topic names no one can predict or make collide (see [`Poller::topic`]).
    hashers: [RandomState; 2],
}

#[derive(Debug, Clone)]
struct Options {
    min_interval: Duration,
    default_interval: Duration,
    max_backoff: Duration,
    idle_grace: Duration,
    timeout: Duration,
    max_body_bytes: usize,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("options", &self.inner.options)
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Poller`]; see [`Poller::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PollerBuilder {
    options: Options,
}

impl Default for PollerBuilder {
    fn default() -> Self {
        PollerBuilder {
            options: Options {
                min_interval: Duration::from_secs(1),
                default_interval: Duration::from_secs(5),
                max_backoff: Duration::from_secs(60),
                idle_grace: Duration::from_secs(5),
                timeout: Duration::from_secs(10),
                max_body_bytes: DEFAULT_MAX_EVENT_BYTES,
            },
        }
    }
}

impl PollerBuilder {
    /// The floor of every source's interval: a source asking for less is polled this often.
    /// Default 1 s (at least 1 ms).
    pub fn min_interval(mut self, floor: Duration) -> Self {
        self.options.min_interval = floor.max(SHORTEST_INTERVAL);
        self
    }

    /// The interval of a source that does not set one ([`Source::interval`]). Default 5 s.
    pub fn default_interval(mut self, interval: Duration) -> Self {
        self.options.default_interval = interval;
        self
    }

    /// The longest wait between two polls of a failing source: after the `n`th failure in a
    /// row, the next poll comes after `interval × 2ⁿ`, at most this. Default 60 s.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.options.max_backoff = max;
        self
    }

    /// How long a poller goes on once its last subscriber has gone, so a page reload or a
    /// reconnect finds it running. Default 5 s.
    pub fn idle_grace(mut self, grace: Duration) -> Self {
        self.options.idle_grace = grace;
        self
    }

    /// How long one poll may take (a request to a URL, or a call of a function source) before
    /// it fails. Default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// The largest answer a URL source may give, in bytes. Default 1 MiB, the hub's
    /// default [`max_event_bytes`](crate::HubBuilder::max_event_bytes): a value that does
    /// not fit in one event cannot be streamed.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.options.max_body_bytes = max;
        self
    }

    /// The poller, publishing to topics of `hub`.
    pub fn build(self, hub: Hub) -> Poller {
        let client = http::Client::new(self.options.timeout, self.options.max_body_bytes);
        Poller {
            inner: Arc::new(Inner {
                hub,
                options: self.options,
                client,
                sources: Mutex::default(),
                hashers: [RandomState::new(), RandomState::new()],
            }),
        }
    }
}

/// One running poller.
struct Entry {
    identity: Arc<str>,
    topic: String,
    source: Source,
    interval: Duration,
    state: tokio::sync::Mutex<State>,
    /// Subscribers between finding this entry and having their subscription open.
    joining: AtomicUsize,
}

/// What a new subscriber is sent first; changed only together with a publish, under the lock.
#[derive(Default)]
struct State {
    /// The value as of the newest event published, with that event's id.
    snapshot: Option<Event>,
    /// The `error` event of a failure not yet recovered from, without an id.
    failing: Option<Event>,
}

/// Holds a subscriber's place from finding a poller to having its subscription open, so the
/// poller does not stop in between.
struct Joining {
    entry: Arc<Entry>,
}

impl Drop for Joining {
    fn drop(&mut self) {
        self.entry.joining.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What tells pollers apart: the key, the interval and the array key, unambiguously.
fn identity(source: &Source, interval: Duration) -> Arc<str> {
    let array_key = source
        .array_key_str()
        .map_or_else(|| "-".to_owned(), |key| format!("{}:{key}", key.len()));
    format!("{}:{array_key}:{}", interval.as_nanos(), source.key()).into()
}

impl Poller {
    /// A poller with the defaults of [`PollerBuilder`], publishing to topics of `hub`.
    pub fn new(hub: Hub) -> Poller {
        Poller::builder().build(hub)
    }

    /// Configures a poller.
    pub fn builder() -> PollerBuilder {
        PollerBuilder::default()
    }

    /// The subscription to `source` for a client that last saw `last`:
    ///
    /// - A first connection gets an event `snapshot` with the current value (once the first
    ///   poll has answered), then a `patch` event for each change.
    /// - A reconnect (`last` is a `Last-Event-ID`) gets the events it missed, exactly; or, when
    ///   they are no longer retained (or `last` is not one of this poller's ids), a fresh
    ///   `snapshot` and then live events. Never a `gap` event.
    /// - While the source is failing, an `error` event follows the snapshot.
    ///
    /// The first subscriber of a source starts its poller; the poller stops
    /// [`idle_grace`](PollerBuilder::idle_grace) after the last has gone.
    ///
    /// # Errors
    ///
    /// A backend that cannot serve (as [`Hub::subscribe_from`]).
    pub async fn subscribe(
        &self,
        source: Source,
        last: Option<LastEventId>,
    ) -> Result<Subscription, HubError> {
        let joining = self.join(source);
        let entry = &joining.entry;
        let hub = &self.inner.hub;
        // Publishes take this lock too: the snapshot and the live events meet exactly.
        let state = entry.state.lock().await;
        if let Some(last) = last {
            let mut resumed = hub.subscribe_from(&entry.topic, Start::After(last)).await?;
            if !resumed.is_ended() {
                match resumed.next().now_or_never() {
                    // Nothing yet: the reconnect is exact, and live.
                    None => return Ok(resumed),
                    Some(Some(first)) if first.name() != Some("gap") => {
                        return Ok(resumed.prepend([first]));
                    }
                    // The missed events are gone: start afresh, below.
                    Some(_) => {}
                }
            }
        }
        let live = hub.subscribe_from(&entry.topic, Start::Live).await?;
        let head: Vec<Event> = state
            .snapshot
            .iter()
            .chain(state.failing.iter())
            .cloned()
            .collect();
        Ok(live.prepend(head))
    }

    /// The hub topic the events of `source` are published to: `poll:` and 32 hex digits,
    /// hashed from the source with keys random to this poller, so that no client can predict
    /// it or make two sources share one, and pollers of other processes on a shared backend
    /// never publish to the same topic.
    pub fn topic(&self, source: &Source) -> String {
        self.topic_of(&self.identity(source))
    }

    /// How many sources are being polled now.
    pub fn running(&self) -> usize {
        lock(&self.inner.sources).len()
    }

    /// The hub the pollers publish to.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    fn identity(&self, source: &Source) -> Arc<str> {
        let options = &self.inner.options;
        identity(
            source,
            source.interval_or(options.default_interval, options.min_interval),
        )
    }

    fn topic_of(&self, identity: &str) -> String {
        let [a, b] = &self.inner.hashers;
        format!(
            "{TOPIC_PREFIX}{:016x}{:016x}",
            a.hash_one(identity),
            b.hash_one(identity)
        )
    }

    /// The poller of `source`, started if it is not running.
    fn join(&self, source: Source) -> Joining {
        let options = &self.inner.options;
        let interval = source.interval_or(options.default_interval, options.min_interval);
        let identity = identity(&source, interval);
        let mut sources = lock(&self.inner.sources);
        let entry = match sources.get(&identity) {
            Some(entry) => entry.clone(),
            None => {
                let entry = Arc::new(Entry {
                    topic: self.topic_of(&identity),
                    identity: identity.clone(),
                    source,
                    interval,
                    state: tokio::sync::Mutex::default(),
                    joining: AtomicUsize::new(0),
                });
                sources.insert(identity, entry.clone());
                tokio::spawn(run(self.inner.clone(), entry.clone()));
                entry
            }
        };
        entry.joining.fetch_add(1, Ordering::SeqCst);
        Joining { entry }
    }
}

/// Polls until nobody listens.
async fn run(inner: Arc<Inner>, entry: Arc<Entry>) {
    tracing::debug!(source = %entry.source.key(), topic = %entry.topic, "poller started");
    tokio::select! {
        biased;
        () = abandoned(&inner, &entry) => {}
        never = poll(&inner, &entry) => match never {},
    }
    tracing::debug!(source = %entry.source.key(), topic = %entry.topic, "poller stopped");
}

/// Resolves once the poller has had no subscriber for the idle grace and none is joining,
/// having taken it out of the running ones.
async fn abandoned(inner: &Inner, entry: &Arc<Entry>) {
    loop {
        if let Err(err) = inner
            .hub
            .wait_idle(&entry.topic, inner.options.idle_grace)
            .await
        {
            tracing::warn!(topic = %entry.topic, error = %err, "cannot tell whether anyone listens");
            tokio::time::sleep(inner.options.idle_grace).await;
            continue;
        }
        {
            let mut sources = lock(&inner.sources);
            // A subscriber that found this poller but has no subscription yet keeps it.
            if entry.joining.load(Ordering::SeqCst) > 0 {
                continue;
            }
            if sources
                .get(&entry.identity)
                .is_some_and(|running| Arc::ptr_eq(running, entry))
            {
                sources.remove(&entry.identity);
            }
        }
        // One that opened its subscription after the hub last looked, and before this poller
        // was taken out, is listening now: it keeps the poller, unless a new one runs already
        // (on the same topic) for a subscriber that came later still.
        let listening = match inner.hub.topic_info(&entry.topic).await {
            Ok(info) => info.is_some_and(|info| info.subscribers > 0),
            Err(_) => false,
        };
        if !listening {
            return;
        }
        let mut sources = lock(&inner.sources);
        if sources.contains_key(&entry.identity) {
            return;
        }
        sources.insert(entry.identity.clone(), entry.clone());
    }
}

/// The wait before the next poll after `failures` failures in a row.
fn backoff(interval: Duration, failures: u32, max: Duration) -> Duration {
    interval
        .saturating_mul(2u32.saturating_pow(failures.min(31)))
        .min(max)
        .max(interval)
}

/// Polls forever: publishes each change, reports failures and backs off.
async fn poll(inner: &Inner, entry: &Entry) -> Infallible {
    let options = &inner.options;
    // The value as of the newest event published, and the validators of the answer it came in.
    let mut published: Option<Value> = None;
    let mut validators = Validators::default();
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let fetched = match tokio::time::timeout(
            options.timeout,
            entry.source.fetch(&inner.client, &validators),
        )
        .await
        {
            Ok(fetched) => fetched,
            Err(_) => Err(Failure::new("the upstream did not answer in time")),
        };
        let recovering = failures > 0;
        let outcome = match fetched {
            Err(failure) => Err(failure),
            Ok(Fetched::NotModified) if recovering => entry.publish_recovery(inner).await,
            Ok(Fetched::NotModified) => Ok(()),
            Ok(Fetched::Value(value, next)) => {
                let outcome = entry
                    .publish_change(inner, published.as_ref(), &value, recovering)
                    .await;
                if outcome.is_ok() {
                    published = Some(value);
                    validators = next;
                }
                outcome
            }
        };
        match outcome {
            Ok(()) => {
                failures = 0;
                tokio::time::sleep_until(started + entry.interval).await;
            }
            Err(failure) => {
                failures = failures.saturating_add(1);
                let delay = backoff(entry.interval, failures, options.max_backoff);
                if failures == 1 {
                    entry.report(inner, &failure, delay).await;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

impl Entry {
    /// Publishes what changed from `old` to `new`: the first value as a `snapshot`, then a
    /// `patch`; nothing when nothing changed, unless the source is `recovering` from a failure
    /// (then an empty `patch` says it answers again).
    async fn publish_change(
        &self,
        inner: &Inner,
        old: Option<&Value>,
        new: &Value,
        recovering: bool,
    ) -> Result<(), Failure> {
        if old == Some(new) {
            return if recovering {
                self.publish_recovery(inner).await
            } else {
                Ok(())
            };
        }
        let snapshot = serde_json::to_string(new).map_err(unserializable)?;
        let patch = match old {
            Some(old) => Some(
                serde_json::to_string(&diff(old, new, self.source.array_key_str()))
                    .map_err(unserializable)?,
            ),
            None => None,
        };
        let mut state = self.state.lock().await;
        state.snapshot = Some(match patch {
            Some(patch) => {
                let id = self.publish(inner, PATCH, patch).await?;
                named(SNAPSHOT, snapshot).with_id(&id).map_err(invalid)?
            }
            None => inner
                .hub
                .publish(&self.topic, named(SNAPSHOT, snapshot))
                .await
                .map_err(unpublished)?
                .into(),
        });
        state.failing = None;
        Ok(())
    }

    /// Tells subscribers the source answers again, unchanged: an empty `patch`.
    async fn publish_recovery(&self, inner: &Inner) -> Result<(), Failure> {
        let mut state = self.state.lock().await;
        let id = self.publish(inner, PATCH, "[]".to_owned()).await?;
        if let Some(snapshot) = &state.snapshot {
            state.snapshot = Some(snapshot.with_id(&id).map_err(invalid)?);
        }
        state.failing = None;
        Ok(())
    }

    /// Publishes an event named `name` with `data`; returns its id.
    async fn publish(&self, inner: &Inner, name: &str, data: String) -> Result<String, Failure> {
        let published = inner
            .hub
            .publish(&self.topic, named(name, data))
            .await
            .map_err(unpublished)?;
        let published: Event = published.into();
        Ok(published.id().unwrap_or_default().to_owned())
    }

    /// Publishes the `error` event of a failure; new subscribers get it too until the source
    /// recovers.
    async fn report(&self, inner: &Inner, failure: &Failure, retry: Duration) {
        let mut data = serde_json::json!({
            "message": failure.message,
            "retry_ms": u64::try_from(retry.as_millis()).unwrap_or(u64::MAX),
        });
        if let Some(status) = failure.status {
            data["status"] = status.into();
        }
        let error = named(ERROR, data.to_string());
        let mut state = self.state.lock().await;
        if let Err(err) = inner.hub.publish(&self.topic, error.clone()).await {
            tracing::warn!(topic = %self.topic, error = %err, "cannot publish a poll failure");
        }
        state.failing = Some(error);
    }
}

/// An event named `name` with `data` (JSON on one line).
fn named(name: &str, data: String) -> Event {
    Event::builder()
        .event(name)
        .data(data)
        .build()
        // A constant name and any data always build.
        .unwrap_or_else(|_| Event::data("null"))
}

fn unserializable(err: serde_json::Error) -> Failure {
    tracing::warn!(error = %err, "a polled value cannot be serialized");
    Failure::new("the value cannot be serialized")
}

fn invalid(err: crate::EventError) -> Failure {
    tracing::warn!(error = %err, "the hub gave an unusable id");
    Failure::new("the update could not be published")
}

fn unpublished(err: HubError) -> Failure {
    tracing::warn!(error = %err, "cannot publish a poll's change");
    Failure::new(if err.is_unavailable() {
        "the hub cannot store events now"
    } else if err.is_invalid_input() {
        "the value is larger than the hub accepts in one event"
    } else {
        "the update could not be published"
    })
}
