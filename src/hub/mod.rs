//! [`Hub`]: topics, ids, bounded history, exact replay with gap events, and live fan-out.
//!
//! `publish(topic, event)` gives the event its id, keeps it in the topic's history and sends it
//! to every live subscriber, sharing its encoded bytes. `subscribe(topic, last_event_id)`
//! returns a [`Subscription`], a `Stream<Item = Event>` that a handler returns as is: first
//! every retained event after the client's id, then live events, with no gap and no
//! duplicate. When the id cannot be resumed from (evicted, from before a restart, never
//! issued, malformed), the client is told first, by an event named `gap`:
//!
//! ```text
//! event: gap
//! id: 6f1c2a9b03de-41
//! data: {"reason":"foreign","requested":"0b1d9e7a21c4-17","resume":"oldest","resume_after":"6f1c2a9b03de-41","last_id":"6f1c2a9b03de-60"}
//! ```
//!
//! `reason` is `evicted`, `foreign`, `unknown` or `malformed`; `requested` is the id the client
//! sent (`null` when it was unusable); `resume` says whether the stream continues with the
//! oldest retained event or live only ([`HubBuilder::gap_resume`]); `resume_after` is the
//! gap event's own id, after which the stream continues exactly; `last_id` is the topic's
//! newest id. A browser sees it with `source.addEventListener("gap", …)`.
//!
//! A subscriber that falls more than its queue behind (it reads slower than events are
//! published) gets a `retry:` hint and its stream ends; it reconnects with its `Last-Event-ID`
//! and catches up from history. Replay per reconnect is capped ([`HubBuilder::max_replay`]); a
//! client further behind gets one batch per connection.
//!
//! Topics are cheap and mortal: a topic per user, per document or per job costs what it
//! retains plus a small constant. A topic is created by its first publish or subscriber, and
//! dropped when it holds nothing, when idle ([`HubBuilder::topic_idle_ttl`]), or when the
//! hub's bounds need room ([`HubBuilder::max_topics`], [`HubBuilder::max_history_bytes`]).
//! [`Hub::close`] ends a topic with a final event; [`Hub::subscribe_from`] chooses where a
//! first connection starts; [`Hub::topic_info`] and [`Hub::wait_idle`] tell who listens.
//!
//! Who may publish and subscribe is the hub's [policy](crate::auth) ([`HubBuilder::policy`]),
//! consulted by [`Hub::publish_as`], [`Hub::subscribe_as`] and [`Hub::resume_as`]. The example
//! below has none, and is safe only because nothing in it is private: see
//! [private topics](crate::auth#private-topics).
//!
//! # Example
//!
//! ```
//! use axum::{Router, extract::{Path, State}, routing::{get, post}};
//! use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};
//!
//! async fn subscribe(
//!     State(hub): State<Hub>,
//!     Path(topic): Path<String>,
//!     last: Option<LastEventId>,
//! ) -> Result<Subscription, HubError> {
//!     hub.subscribe(&topic, last).await
//! }
//!
//! async fn publish(State(hub): State<Hub>, Path(topic): Path<String>, body: String)
//!     -> Result<String, HubError>
//! {
//!     let published = hub.publish(&topic, Event::data(body)).await?;
//!     Ok(published.id().to_owned())
//! }
//!
//! let hub = Hub::memory();
//! let app: Router = Router::new()
//!     .route("/events/{topic}", get(subscribe))
//!     .route("/publish/{topic}", post(publish))
//!     .layer(SseLayer::new().registry(hub.registry()))
//!     .with_state(hub);
//! # let _ = app;
//! ```

mod error;
mod observed;
pub mod stream;
mod subscription;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::request::Parts;

pub use crate::backend::{Publish, Published};
pub use error::HubError;
pub use stream::{Spawned, StreamOptions};
pub use subscription::Subscription;

use crate::auth::{Action, Denied, Identity, Policy, SharedPolicy};
use crate::backend::{
    Backend, GapResume, Health, HistoryLimits, MemoryBackend, ReplayOptions, Start, TopicInfo,
    TopicLimits, is_end_id, key_problem, memory,
};
use crate::registry::Registry;
use crate::{Event, LastEventId};

/// Event names that [`Hub::publish_as`] refuses to a request: those the hub sends itself
/// (`gap`, a replay that cannot be complete; `end`, a closed topic's final event; the ends of
/// [response streams](stream): `done`, `error`, `cancelled`), and `open`, which a browser's
/// `EventSource` dispatches to its `onopen` handlers as if the connection had opened again
/// (`error` likewise reaches `onerror`). A subscriber can then trust an event of one of these
/// names. Trusted server-side code ([`Hub::publish`]) may use them.
pub const RESERVED_EVENT_NAMES: [&str; 6] = [
    "gap",
    "end",
    stream::DONE,
    stream::ERROR,
    stream::CANCELLED,
    "open",
];

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 200;

/// The default cap on one published event's encoded size: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Topics, history, replay and fan-out over a [`Backend`]; a cheap [`Clone`] handle.
///
/// See the [module documentation](self).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Box<dyn Backend>,
    registry: Registry,
    replay: ReplayOptions,
    max_event_bytes: usize,
    retry_after_lag: Duration,
    published: AtomicU64,
    slow_consumers: Arc<AtomicU64>,
    producers: stream::Producers,
    policy: Option<SharedPolicy>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("replay", &self.inner.replay)
            .field("max_event_bytes", &self.inner.max_event_bytes)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub on the embedded in-memory backend, with the defaults of [`HubBuilder`].
    pub fn memory() -> Hub {
        Hub::builder().memory()
    }

    /// Configures a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// Publishes an event to `topic` and returns it as stored, with the id the hub gave it
    /// (any id the event had is replaced). A topic is created by its first publish or
    /// subscriber.
    ///
    /// `publish` is an [`Event`], or a [`Publish`] with an idempotency key: a publish repeated
    /// with the same key within the [window](HubBuilder::idempotency_window) stores nothing
    /// and returns the first one's id and event, [marked](Published::is_duplicate) as a
    /// duplicate. A publisher that retries should send one.
    ///
    /// ```
    /// use tower_sse::{Event, Hub, Publish};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_sse::HubError> {
    /// let hub = Hub::memory();
    /// let published = hub.publish("news", Event::data("hello")).await?;
    /// println!("stored as {}", published.id());
    ///
    /// let keyed = || Publish::new(Event::data("payment 7 settled")).idempotency_key("pay-7");
    /// let first = hub.publish("payments", keyed()).await?;
    /// let again = hub.publish("payments", keyed()).await?;
    /// assert_eq!((again.id(), again.is_duplicate()), (first.id(), true));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// An invalid topic name or idempotency key, an event larger than the hub's cap, a key used
    /// for a different event within its window ([`HubError::is_key_reused`]), a closed topic, a
    /// hub at its bounds ([`HubBuilder::max_topics`], [`HubBuilder::max_history_bytes`]) with
    /// nothing idle to evict, a backend that could not store it
    /// ([`HubError::is_unavailable`]: nothing was stored), or a backend that did not answer
    /// ([`HubError::is_outcome_unknown`]: it may have been stored; retry with the same key).
    pub async fn publish(
        &self,
        topic: &str,
        publish: impl Into<Publish>,
    ) -> Result<Published, HubError> {
        let publish = publish.into();
        validate_topic(topic)?;
        if let Some(problem) = publish.key().and_then(key_problem) {
            return Err(HubError::invalid_idempotency_key(
                publish.key().unwrap_or_default(),
                &problem,
            ));
        }
        let size = publish.event().len();
        if size > self.inner.max_event_bytes {
            return Err(HubError::too_large(size, self.inner.max_event_bytes));
        }
        let published = self.inner.backend.publish(topic, publish).await?;
        if !published.is_duplicate() {
            self.inner.published.fetch_add(1, Ordering::Relaxed);
        }
        Ok(published)
    }

    /// Authenticates a request with the hub's [policy](HubBuilder::policy): who sent it. Without
    /// a policy, every request is [anonymous](Identity::anonymous). As an axum extractor,
    /// [`Identity`] calls this.
    ///
    /// # Errors
    ///
    /// Credentials that do not hold (`401`), as the policy says.
    pub fn authenticate(&self, request: &Parts) -> Result<Identity, Denied> {
        match &self.inner.policy {
            Some(policy) => policy.0.authenticate(request),
            None => Ok(Identity::anonymous()),
        }
    }

    /// Whether `who` may do `action` on `topic`, as the hub's [policy](HubBuilder::policy)
    /// says; e.g. `hub.authorize(&who, Action::Admin, "*")?` before listing connections.
    /// Without a policy, everything is allowed, to anyone: safety then rests on the handlers
    /// (see [private topics](crate::auth#private-topics)).
    ///
    /// # Errors
    ///
    /// An identity whose [expiry](Identity::expires_at) has passed (`401`), or the policy's
    /// refusal.
    pub fn authorize(&self, who: &Identity, action: Action, topic: &str) -> Result<(), Denied> {
        if who.is_expired_at(SystemTime::now()) {
            return Err(Denied::invalid_token("the authorization has expired"));
        }
        match &self.inner.policy {
            Some(policy) => policy.0.authorize(who, action, topic),
            None => Ok(()),
        }
    }

    /// [`publish`](Self::publish) for a request: authorized first, by the hub's
    /// [policy](HubBuilder::policy), as [`Action::Publish`] on `topic`; nothing is stored when
    /// it is refused.
    ///
    /// ```
    /// use axum::extract::{Path, State};
    /// use tower_sse::auth::Identity;
    /// use tower_sse::{Event, Hub, HubError};
    ///
    /// async fn publish(State(hub): State<Hub>, who: Identity, Path(topic): Path<String>, body: String)
    ///     -> Result<String, HubError>
    /// {
    ///     let published = hub.publish_as(&who, &topic, Event::data(body)).await?;
    ///     Ok(published.id().to_owned())
    /// }
    /// # let _: axum::Router<Hub> = axum::Router::new().route("/publish/{topic}", axum::routing::post(publish));
    /// ```
    ///
    /// # Errors
    ///
    /// The policy's refusal ([`HubError::denied`]: `401` or `403`), an event named as one of
    /// [`RESERVED_EVENT_NAMES`] (`400`), else as [`publish`](Self::publish).
    pub async fn publish_as(
        &self,
        who: &Identity,
        topic: &str,
        publish: impl Into<Publish>,
    ) -> Result<Published, HubError> {
        let publish = publish.into();
        validate_topic(topic)?;
        self.authorize(who, Action::Publish, topic)?;
        if let Some(name) = publish.event().name()
            && RESERVED_EVENT_NAMES.contains(&name)
        {
            return Err(HubError::reserved_name(name));
        }
        self.publish(topic, publish).await
    }

    /// [`subscribe_from`](Self::subscribe_from) for a request: authorized first, by the hub's
    /// [policy](HubBuilder::policy), as [`Action::Subscribe`] on `topic`, before any replay is
    /// read or the topic opened. `start` is a client's `Option<LastEventId>` or a
    /// [`Start`]. When `who` expires, the subscription ends then, with a `retry:` hint
    /// ([`Subscription::expire_at`]), so the client comes back with fresh credentials.
    ///
    /// ```
    /// use axum::extract::{Path, State};
    /// use tower_sse::auth::Identity;
    /// use tower_sse::{Hub, HubError, LastEventId, Subscription};
    ///
    /// async fn events(State(hub): State<Hub>, who: Identity, Path(topic): Path<String>, last: Option<LastEventId>)
    ///     -> Result<Subscription, HubError>
    /// {
    ///     hub.subscribe_as(&who, &topic, last).await
    /// }
    /// # let _: axum::Router<Hub> = axum::Router::new().route("/events/{topic}", axum::routing::get(events));
    /// ```
    ///
    /// # Errors
    ///
    /// The policy's refusal ([`HubError::denied`]: `401` or `403`), else as
    /// [`subscribe_from`](Self::subscribe_from).
    pub async fn subscribe_as(
        &self,
        who: &Identity,
        topic: &str,
        start: impl Into<Start>,
    ) -> Result<Subscription, HubError> {
        validate_topic(topic)?;
        self.authorize(who, Action::Subscribe, topic)
            .inspect_err(|_| crate::metrics::denied())?;
        let subscription = self.subscribe_from(topic, start.into()).await?;
        Ok(match who.expires_at() {
            Some(at) => subscription.expire_at(at),
            None => subscription,
        })
    }

    /// Subscribes to `topic` for a client that last saw `last` (`None` on a first connection,
    /// which gets live events only). The same as
    /// [`subscribe_from`](Self::subscribe_from)`(topic, Start::from(last))`; see the
    /// [module documentation](self).
    ///
    /// # Errors
    ///
    /// As [`subscribe_from`](Self::subscribe_from).
    pub async fn subscribe(
        &self,
        topic: &str,
        last: Option<LastEventId>,
    ) -> Result<Subscription, HubError> {
        self.subscribe_from(topic, Start::from(last)).await
    }

    /// Subscribes to `topic` from `start`: live events only, the oldest retained event on, or
    /// right after a client's last event id.
    ///
    /// ```
    /// use tower_sse::backend::Start;
    /// # async fn handler(hub: tower_sse::Hub, last: Option<tower_sse::LastEventId>)
    /// #     -> Result<tower_sse::Subscription, tower_sse::HubError> {
    /// // A first connection gets everything retained; a reconnect resumes after its id.
    /// hub.subscribe_from("job-42", Start::resume_or(last, Start::Oldest)).await
    /// # }
    /// ```
    ///
    /// - A client whose id is a closed topic's final event has seen the end: the subscription
    ///   is [ended](Subscription::is_ended), a `204 No Content` that tells `EventSource` to
    ///   stop reconnecting.
    /// - On a closed topic, the subscription is what is retained after `start`, then the
    ///   topic's final event, then its end.
    /// - Once the hub's [registry](Hub::registry) is shutting down
    ///   ([`SseLayer::shutdown`](crate::SseLayer::shutdown) on a layer given that registry), it
    ///   opens nothing in the backend (no topic, no position, no replay read, no round trip)
    ///   and returns a subscription that is a `retry:` hint and its end: the layer answers
    ///   with its refusal instead, and drops the subscription unpolled.
    /// - Called by a handler whose stream the layer then refuses for a connection limit (a
    ///   request that does not take only `text/event-stream`: `EventSource`'s are refused
    ///   before the handler runs), the subscription is opened, and dropped unpolled by the
    ///   layer: it keeps nothing. The hub cannot see the request, so it cannot tell.
    /// - When the backend cannot serve (Redis unreachable), or the hub is at
    ///   [`max_topics`](HubBuilder::max_topics) with no idle topic to evict, the
    ///   subscription is a comment saying so and a `retry:` hint, then its end: an
    ///   `EventSource` comes back by itself, where an error status would make it give up for
    ///   good.
    ///
    /// # Errors
    ///
    /// An invalid topic name, or a backend failure that retrying will not mend (a
    /// misconfigured or corrupt store: `500`, which an `EventSource` takes as final).
    pub async fn subscribe_from(
        &self,
        topic: &str,
        start: Start,
    ) -> Result<Subscription, HubError> {
        validate_topic(topic)?;
        if let Start::After(last) = &start
            && last.as_str().is_some_and(is_end_id)
        {
            return Ok(Subscription::ended(topic.into()));
        }
        if self.inner.registry.is_closing() {
            // The hub's registry is shutting down: the layer on it refuses every new stream and
            // drops its subscription unpolled, so open nothing.
            return Ok(Subscription::refused(
                topic.into(),
                self.inner.retry_after_lag,
            ));
        }
        let opened = match self
            .inner
            .backend
            .open(topic, &start, &self.inner.replay)
            .await
        {
            Ok(opened) => opened,
            Err(err) if err.is_unavailable() || err.is_outcome_unknown() || err.is_full() => {
                tracing::debug!(topic, error = %err, "subscription refused for now");
                return Ok(Subscription::unavailable(
                    topic.into(),
                    &err,
                    self.inner.retry_after_lag,
                ));
            }
            Err(err) => return Err(err.into()),
        };
        let last = match start {
            Start::After(last) => Some(last),
            _ => None,
        };
        Ok(Subscription::new(
            topic.into(),
            last,
            opened,
            self.inner.retry_after_lag,
            self.inner.slow_consumers.clone(),
        ))
    }

    /// Closes `topic`: every live subscription gets a final event named `end` (data
    /// `{"reason":"closed"}`) and ends. Subscribers that come later get what is retained, then
    /// that event; a client that has seen it gets `204 No Content`, which tells `EventSource`
    /// to stop reconnecting. Publishing to a closed topic fails until the topic is gone (idle
    /// for [`HubBuilder::topic_idle_ttl`], or evicted); a publish after that opens a new
    /// instance of the topic, whose ids the old ones never match. Closing a closed topic
    /// changes nothing. Returns the final event, with its id.
    ///
    /// # Errors
    ///
    /// An invalid topic name, or a backend that cannot serve.
    pub async fn close(&self, topic: &str) -> Result<Event, HubError> {
        let end = Event::builder()
            .event("end")
            .data(r#"{"reason":"closed"}"#)
            .build()
            .map_err(HubError::event)?;
        self.close_with(topic, end).await
    }

    /// Closes `topic` with `end` as its final event (e.g. an event named `done` carrying a
    /// result); the hub gives it its id. See [`close`](Self::close).
    ///
    /// # Errors
    ///
    /// An invalid topic name, an event larger than the hub's cap, or a backend that cannot
    /// serve.
    pub async fn close_with(&self, topic: &str, end: Event) -> Result<Event, HubError> {
        validate_topic(topic)?;
        if end.len() > self.inner.max_event_bytes {
            return Err(HubError::too_large(end.len(), self.inner.max_event_bytes));
        }
        Ok(self.inner.backend.close(topic, end).await?)
    }

    /// What `topic` holds and who listens; `None` when it does not exist (never used, or
    /// dropped). On a backend shared by several servers (Redis), `subscribers` counts this
    /// server's.
    ///
    /// # Errors
    ///
    /// An invalid topic name, or a backend that cannot serve.
    pub async fn topic_info(&self, topic: &str) -> Result<Option<TopicInfo>, HubError> {
        validate_topic(topic)?;
        Ok(self.inner.backend.topic_info(topic).await?)
    }

    /// Resolves once `topic` has had no subscriber for `grace`: a producer (an LLM answer, a
    /// job) stops working for nobody. With subscribers now, it waits until the last has left
    /// and none came back within `grace`; with none, it resolves after `grace` unless one
    /// comes. While it waits, the topic counts as in use: it is not dropped as idle. On a
    /// backend shared by several servers (Redis), it watches this server's subscribers: run
    /// the producer where its clients connect (e.g. with sticky sessions) or give it a grace
    /// period that covers a reconnect to another server.
    ///
    /// ```
    /// # async fn producer(hub: tower_sse::Hub) -> Result<(), tower_sse::HubError> {
    /// use std::time::Duration;
    /// let nobody = hub.wait_idle("answer-7", Duration::from_secs(30));
    /// tokio::pin!(nobody);
    /// loop {
    ///     tokio::select! {
    ///         _ = &mut nobody => break, // cancel the work
    ///         token = next_token() => { hub.publish("answer-7", tower_sse::Event::data(token)).await?; }
    ///     }
    /// }
    /// # Ok(()) }
    /// # async fn next_token() -> String { String::new() }
    /// ```
    ///
    /// # Errors
    ///
    /// An invalid topic name, or a backend that cannot serve.
    pub async fn wait_idle(&self, topic: &str, grace: Duration) -> Result<(), HubError> {
        validate_topic(topic)?;
        Ok(self.inner.backend.wait_idle(topic, grace).await?)
    }

    /// The registry to give the layer (`SseLayer::new().registry(hub.registry())`), so the
    /// hub's streams are listed, limited and shut down together.
    pub fn registry(&self) -> Registry {
        self.inner.registry.clone()
    }

    /// Whether the backend can serve now.
    pub fn health(&self) -> Health {
        self.inner.backend.health()
    }

    /// Counters since the hub was created. The registry's own counters (streams opened,
    /// refused, and why each ended) are in [`Registry::stats`].
    pub fn stats(&self) -> HubStats {
        HubStats {
            published: self.inner.published.load(Ordering::Relaxed),
            slow_consumers: self.inner.slow_consumers.load(Ordering::Relaxed),
            stalled_readers: self.inner.registry.stats().stalled,
        }
    }
}

/// Counters of a [`Hub`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HubStats {
    /// Events published.
    pub published: u64,
    /// Subscriptions ended because they fell more than their queue behind.
    pub slow_consumers: u64,
    /// Streams of the hub's [registry](Hub::registry) ended because their client accepted no
    /// bytes for the layer's [`write_timeout`](crate::SseLayer::write_timeout) while they had
    /// something to send ([`RegistryStats::stalled`](crate::registry::RegistryStats::stalled)).
    pub stalled_readers: u64,
}

/// What a topic name may be, as every invalid-topic message says.
const TOPIC_RULE: &str = "use 1 to 200 bytes of ASCII letters, digits and - _ . : ~ @ /";

/// Checks a topic name: 1 to 200 bytes of ASCII letters, digits and `-_.:~@/`.
fn validate_topic(topic: &str) -> Result<(), HubError> {
    if topic.is_empty() {
        return Err(HubError::invalid_topic(
            topic,
            &format!("it is empty; {TOPIC_RULE}"),
        ));
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(HubError::invalid_topic(
            topic,
            &format!("it is longer than 200 bytes; {TOPIC_RULE}"),
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "-_.:~@/".contains(c)))
    {
        return Err(HubError::invalid_topic(
            topic,
            &format!("it contains {c:?}; {TOPIC_RULE}"),
        ));
    }
    Ok(())
}

/// Configures a [`Hub`]; see [`Hub::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct HubBuilder {
    history: HistoryLimits,
    limits: TopicLimits,
    replay: ReplayOptions,
    queue: usize,
    max_event_bytes: usize,
    retry_after_lag: Duration,
    registry: Option<Registry>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    redis_prefix: Option<String>,
    policy: Option<SharedPolicy>,
}

impl Default for HubBuilder {
    fn default() -> Self {
        HubBuilder {
            history: HistoryLimits::default(),
            limits: TopicLimits::default(),
            replay: ReplayOptions::default(),
            queue: memory::DEFAULT_QUEUE,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            retry_after_lag: Duration::from_secs(1),
            registry: None,
            redis_prefix: None,
            policy: None,
        }
    }
}

impl HubBuilder {
    /// The most events kept per topic. Default 1000.
    pub fn history_events(mut self, max: usize) -> Self {
        self.history.max_events = max;
        self
    }

    /// The most encoded bytes kept per topic. Default 16 MiB.
    pub fn history_bytes(mut self, max: usize) -> Self {
        self.history.max_bytes = max;
        self
    }

    /// How long events are kept. Default 1 hour.
    pub fn history_age(mut self, max: Duration) -> Self {
        self.history.max_age = max;
        self
    }

    /// The most topics at once in the whole hub. Default 100 000. When a new topic would
    /// exceed it, idle topics (no subscriber) are dropped, least recently used first; if none
    /// is idle, the new topic is refused (a publish fails with `503`, a subscriber gets a
    /// `retry:` hint).
    pub fn max_topics(mut self, max: usize) -> Self {
        self.limits.max_topics = max.max(1);
        self
    }

    /// The most bytes of retained events in all topics together (each event counts its
    /// encoded size plus [`EVENT_OVERHEAD`](crate::backend::EVENT_OVERHEAD)). Default 64 MiB.
    /// An event that would exceed it first evicts idle topics, least recently used first, then
    /// its own topic's oldest events; if that is not enough, the publish fails with `503`.
    pub fn max_history_bytes(mut self, max: usize) -> Self {
        self.limits.max_history_bytes = max;
        self
    }

    /// A topic without subscribers that nobody published to for this long is dropped whole,
    /// with its history. Default 1 hour. (A topic with no subscriber and nothing retained is
    /// dropped at once.)
    pub fn topic_idle_ttl(mut self, ttl: Duration) -> Self {
        self.limits.idle_ttl = ttl;
        self
    }

    /// How long a publish's idempotency key ([`Publish::idempotency_key`]) is remembered: a
    /// publish with the same key on the same topic within it stores nothing and returns the
    /// first one's id. Default 5 minutes. On Redis, every server sharing it sees the keys; in
    /// memory, a topic's keys go with it when it is dropped (idle for
    /// [`topic_idle_ttl`](Self::topic_idle_ttl), or for the hub's bounds), so keep that TTL
    /// above the window.
    pub fn idempotency_window(mut self, window: Duration) -> Self {
        self.history.idempotency_window = window;
        self
    }

    /// The most idempotency keys remembered per topic in memory: beyond it, the oldest is
    /// forgotten before its window ends. Default 10 000; 0 remembers none. Each key counts
    /// its length plus [`IDEMPOTENCY_KEY_OVERHEAD`](crate::backend::IDEMPOTENCY_KEY_OVERHEAD)
    /// bytes towards [`max_history_bytes`](Self::max_history_bytes). (Redis: not bounded by
    /// count, each key expires with the window.)
    pub fn idempotency_keys(mut self, max: usize) -> Self {
        self.history.max_idempotency_keys = max;
        self
    }

    /// The most events one reconnect replays. Default 1000.
    pub fn max_replay(mut self, max: usize) -> Self {
        self.replay.max_replay = max.max(1);
        self
    }

    /// Where a client whose id cannot be resumed continues: [`GapResume::Oldest`] (default)
    /// or [`GapResume::Live`].
    pub fn gap_resume(mut self, resume: GapResume) -> Self {
        self.replay.resume = resume;
        self
    }

    /// How many events a subscriber may fall behind the newest before it is disconnected (and
    /// catches up by replay when it reconnects). Default 1024. A topic's history is also its
    /// live queue: a subscriber holds a position in it, and events it has not read yet are kept
    /// past the history bounds for it, up to this many (within
    /// [`max_history_bytes`](Self::max_history_bytes)). Clamped to 1..=1 048 576.
    pub fn subscriber_queue(mut self, events: usize) -> Self {
        self.queue = events;
        self
    }

    /// The largest encoded event `publish` accepts. Default 1 MiB.
    pub fn max_event_bytes(mut self, max: usize) -> Self {
        self.max_event_bytes = max;
        self
    }

    /// The `retry:` hint sent to a subscriber that is disconnected for falling behind, whose
    /// replay was cut at `max_replay`, or whose authorization expired. Default 1 s.
    pub fn retry_after_lag(mut self, retry: Duration) -> Self {
        self.retry_after_lag = retry;
        self
    }

    /// Who may publish and subscribe to which topic: consulted by [`Hub::publish_as`],
    /// [`Hub::subscribe_as`], [`Hub::resume_as`] and [`Hub::authorize`], and used by the
    /// [`Identity`] extractor. Default: none, which allows everything to anyone (see
    /// [private topics](crate::auth#private-topics)). Calls without `_as` consult no policy:
    /// they are for trusted server-side code.
    ///
    /// ```
    /// # #[cfg(feature = "jwt")] {
    /// use tower_sse::Hub;
    /// use tower_sse::auth::jwt::Jwt;
    ///
    /// let jwt = Jwt::hs256(b"a secret of at least thirty-two bytes").unwrap().public_topics(["news"]);
    /// let hub = Hub::builder().policy(jwt).memory();
    /// # let _ = hub; }
    /// ```
    pub fn policy(mut self, policy: impl Policy) -> Self {
        self.policy = Some(SharedPolicy(Arc::new(policy)));
        self
    }

    /// Uses this registry instead of a new one.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The hub on the embedded in-memory backend.
    pub fn memory(self) -> Hub {
        let backend = MemoryBackend::with_limits(self.history, self.limits, self.queue);
        self.backend(backend)
    }

    /// The hub on a Redis Streams backend at `url` (`redis://host:port/db`), so several hub
    /// servers share history, ids and fan-out. Takes this builder's history count and age
    /// bounds, topic idle TTL and queue size, and applies [`max_topics`](Self::max_topics) to
    /// the topics this server reads and [`max_history_bytes`](Self::max_history_bytes) to the
    /// events it holds until its subscribers have read them, cutting off the ones furthest
    /// behind (the per-topic byte bound does not apply: Redis bounds history by count and age);
    /// streams are named `tower-sse:` + topic (see [`redis_key_prefix`](Self::redis_key_prefix)).
    /// It connects lazily: Redis need not be up.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_sse::HubError> {
    /// let hub = tower_sse::Hub::builder().history_events(10_000).redis("redis://127.0.0.1/").await?;
    /// # let _ = hub; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// When `url` is not a Redis URL.
    #[cfg(feature = "redis")]
    pub async fn redis(self, url: &str) -> Result<Hub, HubError> {
        let prefix = self
            .redis_prefix
            .clone()
            .unwrap_or_else(|| crate::backend::DEFAULT_KEY_PREFIX.to_owned());
        let backend =
            crate::backend::RedisBackend::new(url, &prefix, self.history, self.limits, self.queue)?;
        Ok(self.backend(backend))
    }

    /// The prefix of the Redis stream keys (default `tower-sse:`), e.g. to share one Redis
    /// between applications.
    #[cfg(feature = "redis")]
    pub fn redis_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.redis_prefix = Some(prefix.into());
        self
    }

    /// The hub on another backend. The history bounds and queue size of this builder are the
    /// in-memory backend's; other backends take their own.
    pub fn backend(self, backend: impl Backend) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                backend: Box::new(observed::Observed(backend)),
                registry: self.registry.unwrap_or_default(),
                replay: self.replay,
                max_event_bytes: self.max_event_bytes,
                retry_after_lag: self.retry_after_lag,
                published: AtomicU64::new(0),
                slow_consumers: Arc::new(AtomicU64::new(0)),
                producers: stream::Producers::default(),
                policy: self.policy,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
