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

/// The default of [`PollerBuilder::max_sources`].
const DEFAULT_MAX_SOURCES: usize = 1024;

/// A value whose JSON is larger than this is diffed on a blocking thread: a diff of a large
/// document takes milliseconds, too long for an async worker.
const BLOCKING_DIFF_BYTES: usize = 64 * 1024;

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
    max_sources: usize,
    private_names: bool,
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
                max_sources: DEFAULT_MAX_SOURCES,
                private_names: false,
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

    /// The most sources polled at once. Default 1024. A subscriber of one more source is not
    /// refused with an error: as the hub does at its
    /// [`max_topics`](crate::HubBuilder::max_topics), its subscription is a comment saying
    /// so, a `retry:` hint (the [`idle_grace`](Self::idle_grace), jittered; at least 1 s) and
    /// the end, so an `EventSource` comes back by itself once a poller has stopped. Every
    /// distinct source (key, interval, array key) is one poller that lives the idle grace
    /// after its last subscriber: where clients choose sources, this bounds what they can
    /// make the server poll.
    pub fn max_sources(mut self, max: usize) -> Self {
        self.options.max_sources = max;
        self
    }

    /// Whether a [`Source::url`]'s host *name* may resolve to an address that is not public:
    /// loopback, private, shared, link-local, unique-local, unspecified, multicast. Default
    /// `false`: the addresses that are not public are left out, and a name with none left
    /// fails the poll (`"the upstream's name does not resolve to a public address"`), so
    /// that whoever controls a name's DNS cannot point this server at its own network or a
    /// cloud's metadata service (`169.254.169.254`). An IP literal (`http://10.0.0.5/`) is
    /// connected to as written, and `localhost` (and names under `.localhost`) is loopback
    /// without a lookup: an upstream on the local network is named by its address. Set it
    /// to `true` to poll internal APIs by name (`http://api.internal/`), when the URLs are
    /// yours and not a client's.
    pub fn allow_private_names(mut self, allow: bool) -> Self {
        self.options.private_names = allow;
        self
    }

    /// The poller, publishing to topics of `hub`.
    pub fn build(self, hub: Hub) -> Poller {
        let client = http::Client::new(
            self.options.timeout,
            self.options.max_body_bytes,
            self.options.private_names,
        );
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
    /// Set while the poller is being stopped: nothing more is published (see [`abandoned`]).
    stopped: bool,
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
    ///   poll has answered), then a `patch` event for each change, or a `snapshot` where the
    ///   value whole is no larger, or after a publish the hub did not confirm (see the
    ///   [module documentation](super)).
    /// - A reconnect (`last` is a `Last-Event-ID`) gets the events it missed, exactly; or, when
    ///   they are no longer retained (or `last` is not one of this poller's ids), a fresh
    ///   `snapshot` and then live events. Never a `gap` event.
    /// - While the source is failing, an `error` event follows the snapshot.
    ///
    /// The first subscriber of a source starts its poller; the poller stops
    /// [`idle_grace`](PollerBuilder::idle_grace) after the last has gone. When
    /// [`max_sources`](PollerBuilder::max_sources) other sources are being polled, the
    /// subscription is a comment saying so and a `retry:` hint, then its end.
    ///
    /// # Errors
    ///
    /// A backend that cannot serve (as [`Hub::subscribe_from`]).
    pub async fn subscribe(
        &self,
        source: Source,
        last: Option<LastEventId>,
    ) -> Result<Subscription, HubError> {
        let joining = match self.join(source) {
            Ok(joining) => joining,
            Err(topic) => return Ok(self.full(topic)),
        };
        let entry = &joining.entry;
        let hub = &self.inner.hub;
        if let Some(last) = last {
            // Without the state lock: a resume is the hub's replay after `last` and then its
            // live events, exact by the hub's own guarantee (no event lost or repeated between
            // the two), whatever the poller publishes meanwhile; the state (the snapshot) plays
            // no part in it. The lock would make every publish wait for this replay's round
            // trip to the backend.
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
        // Publishes take this lock too, and change the snapshot only together with a publish:
        // the live subscription opened under it gets every event after the snapshot's, and
        // none before.
        let state = entry.state.lock().await;
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

    /// The poller of `source`, started if it is not running; or, when as many sources as
    /// [`max_sources`](PollerBuilder::max_sources) are being polled already, its topic.
    fn join(&self, source: Source) -> Result<Joining, String> {
        let options = &self.inner.options;
        let interval = source.interval_or(options.default_interval, options.min_interval);
        let identity = identity(&source, interval);
        let mut sources = lock(&self.inner.sources);
        let entry = match sources.get(&identity) {
            Some(entry) => entry.clone(),
            None if sources.len() >= options.max_sources => {
                tracing::debug!(
                    source = %source.key(),
                    max_sources = options.max_sources,
                    "refused a subscription: as many sources are polled as may be"
                );
                return Err(self.topic_of(&identity));
            }
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
        Ok(Joining { entry })
    }

    /// The subscription of a source refused at [`max_sources`](PollerBuilder::max_sources):
    /// a comment saying why and a `retry:` hint, then the end, as the hub answers at its own
    /// bounds.
    fn full(&self, topic: String) -> Subscription {
        let base = self.inner.options.idle_grace.max(Duration::from_secs(1));
        // Jittered, so that the clients refused together do not all come back together.
        let retry = base.mul_f64(1.0 + fastrand::f64() / 2.0);
        let notice = Event::builder()
            .comment("as many sources are polled as may be; try again later")
            .build()
            // A constant comment always builds.
            .unwrap_or_else(|_| Event::retry(retry));
        Subscription::refused(topic.into(), retry).prepend([notice])
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
///
/// It is stopped (its state's `stopped` set, under the lock publishes take) before it is taken
/// out: a subscriber that comes after that starts a new poller on the same topic, and the two
/// must never both publish. Should a subscriber have opened its subscription in between, this
/// one takes it up again (its value, as of its last publish, still what its topic says) unless a
/// new one runs already.
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
            let mut state = entry.state.lock().await;
            let mut sources = lock(&inner.sources);
            // A subscriber that found this poller but has no subscription yet keeps it.
            if entry.joining.load(Ordering::SeqCst) > 0 {
                continue;
            }
            state.stopped = true;
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
        let mut state = entry.state.lock().await;
        let mut sources = lock(&inner.sources);
        if sources.contains_key(&entry.identity) {
            return;
        }
        sources.insert(entry.identity.clone(), entry.clone());
        state.stopped = false;
    }
}

/// The wait before the next poll after `failures` failures in a row.
fn backoff(interval: Duration, failures: u32, max: Duration) -> Duration {
    interval
        .saturating_mul(2u32.saturating_pow(failures.min(31)))
        .min(max)
        .max(interval)
}

/// Why a poll published nothing.
enum Missed {
    /// The source failed: nothing changed for subscribers.
    Fetch(Failure),
    /// The hub refused the event, or may or may not have stored it.
    Publish(Failure),
    /// The poller is being stopped (see [`abandoned`]): nothing was published.
    Stopped,
}

/// Polls forever: publishes each change, reports failures and backs off.
async fn poll(inner: &Inner, entry: &Entry) -> Infallible {
    let options = &inner.options;
    // The value as of the newest event published, and the validators of the answer it came in.
    let mut published: Option<Arc<Value>> = None;
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
            Err(failure) => Err(Missed::Fetch(failure)),
            Ok(Fetched::NotModified) if recovering => entry.publish_recovery(inner).await,
            Ok(Fetched::NotModified) => Ok(()),
            Ok(Fetched::Value(value, next)) => {
                let value = Arc::new(value);
                let outcome = entry
                    .publish_change(inner, published.clone(), value.clone(), recovering)
                    .await;
                if outcome.is_ok() {
                    published = Some(value);
                    validators = next;
                }
                outcome
            }
        };
        let failure = match outcome {
            Ok(()) => {
                failures = 0;
                tokio::time::sleep_until(started + entry.interval).await;
                continue;
            }
            Err(Missed::Stopped) => {
                tokio::time::sleep_until(started + entry.interval).await;
                continue;
            }
            Err(Missed::Fetch(failure)) => failure,
            Err(Missed::Publish(failure)) => {
                // What the subscribers hold is unknown now: the event may have been stored and
                // sent (a backend that timed out after writing it), so the next change cannot be
                // a patch from `published`, which they might apply twice. The next value is
                // published whole, as a `snapshot`, which replaces whatever they hold; it is
                // fetched afresh, without validators, so a `304` cannot stand in for it.
                //
                // (Retrying the same event under an idempotency key would work only while the
                // backend keeps the key and the source keeps that value; a snapshot is right
                // whatever was stored, and costs one event.)
                published = None;
                validators = Validators::default();
                failure
            }
        };
        failures = failures.saturating_add(1);
        let delay = backoff(entry.interval, failures, options.max_backoff);
        if failures == 1 {
            entry.report(inner, &failure, delay).await;
        }
        tokio::time::sleep(delay).await;
    }
}

/// The JSON of a new value and, when there is an old one, of the patch from it.
struct Change {
    snapshot: String,
    patch: Option<String>,
}

impl Change {
    /// Serializes `new`, and diffs it from `old` (on a blocking thread, for a large value).
    async fn of(
        old: Option<Arc<Value>>,
        new: Arc<Value>,
        array_key: Option<&str>,
    ) -> Result<Change, Failure> {
        let snapshot = serde_json::to_string(&*new).map_err(unserializable)?;
        let Some(old) = old else {
            return Ok(Change {
                snapshot,
                patch: None,
            });
        };
        let array_key = array_key.map(str::to_owned);
        let patch = move || serde_json::to_string(&diff(&old, &new, array_key.as_deref()));
        let patch = if snapshot.len() > BLOCKING_DIFF_BYTES {
            tokio::task::spawn_blocking(patch).await.map_err(|err| {
                tracing::warn!(error = %err, "the diff of a polled value failed");
                Failure::new("the update could not be published")
            })?
        } else {
            patch()
        };
        Ok(Change {
            snapshot,
            patch: Some(patch.map_err(unserializable)?),
        })
    }
}

impl Entry {
    /// Publishes what changed from `old` to `new`: a `patch`, or the whole value as a
    /// `snapshot` (the first value; one after a failed publish, `old` being `None`; and one
    /// whose patch would be no smaller, or too large for the hub); nothing when nothing
    /// changed, unless the source is `recovering` from a failure (then an empty `patch` says
    /// it answers again).
    async fn publish_change(
        &self,
        inner: &Inner,
        old: Option<Arc<Value>>,
        new: Arc<Value>,
        recovering: bool,
    ) -> Result<(), Missed> {
        if old.as_deref() == Some(&*new) {
            return if recovering {
                self.publish_recovery(inner).await
            } else {
                Ok(())
            };
        }
        let Change { snapshot, patch } = Change::of(old, new, self.source.array_key_str())
            .await
            .map_err(Missed::Publish)?;
        let mut state = self.state.lock().await;
        if state.stopped {
            return Err(Missed::Stopped);
        }
        let published = match patch {
            Some(patch) if patch.len() < snapshot.len() => {
                match inner.hub.publish(&self.topic, named(PATCH, patch)).await {
                    Ok(published) => Some(published),
                    // Too large for one event (or else unfit): the value whole may fit.
                    Err(err) if err.is_invalid_input() => {
                        tracing::debug!(
                            topic = %self.topic,
                            error = %err,
                            "a patch was refused; publishing a snapshot"
                        );
                        None
                    }
                    Err(err) => return Err(Missed::Publish(unpublished(err))),
                }
            }
            _ => None,
        };
        state.snapshot = Some(match published {
            Some(published) => {
                let id = Event::from(published).id().unwrap_or_default().to_owned();
                named(SNAPSHOT, snapshot)
                    .with_id(&id)
                    .map_err(|err| Missed::Publish(invalid(err)))?
            }
            None => inner
                .hub
                .publish(&self.topic, named(SNAPSHOT, snapshot))
                .await
                .map_err(|err| Missed::Publish(unpublished(err)))?
                .into(),
        });
        state.failing = None;
        Ok(())
    }

    /// Tells subscribers the source answers again, unchanged: an empty `patch`.
    async fn publish_recovery(&self, inner: &Inner) -> Result<(), Missed> {
        let mut state = self.state.lock().await;
        if state.stopped {
            return Err(Missed::Stopped);
        }
        let published: Event = inner
            .hub
            .publish(&self.topic, named(PATCH, "[]".to_owned()))
            .await
            .map_err(|err| Missed::Publish(unpublished(err)))?
            .into();
        let id = published.id().unwrap_or_default();
        if let Some(snapshot) = &state.snapshot {
            state.snapshot = Some(
                snapshot
                    .with_id(id)
                    .map_err(|err| Missed::Publish(invalid(err)))?,
            );
        }
        state.failing = None;
        Ok(())
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
        if !state.stopped
            && let Err(err) = inner.hub.publish(&self.topic, error.clone()).await
        {
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
