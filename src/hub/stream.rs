//! Resumable response streams: the answer to one request (an LLM's tokens, a job's progress)
//! produced once, under an id, and readable from its start by whoever has the id, across
//! dropped connections, page reloads and servers.
//!
//! [`Hub::spawn_stream`] drives a producer in a task of its own and keeps its events in a
//! topic of their own; [`Hub::resume`] reads them back, [`Hub::cancel`] stops them. A stream
//! always ends with an event the client can see: `done`, `error` or `cancelled`.
//!
//! ```
//! use axum::{Json, Router, extract::{Path, State}, routing::{get, post}};
//! use futures_util::{StreamExt, stream};
//! use tower_sse::hub::StreamOptions;
//! use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};
//!
//! /// `POST /jobs`: starts the work, answers its id.
//! async fn start(State(hub): State<Hub>) -> Result<Json<String>, HubError> {
//!     let progress = stream::iter(1..=100).map(|pct| Event::builder().event("progress").data(pct.to_string()).build().unwrap());
//!     let spawned = hub.spawn_stream(StreamOptions::new(), progress).await?;
//!     Ok(Json(spawned.id().to_owned()))
//! }
//!
//! /// `GET /jobs/{id}`: from the start, or after the client's last event; 204 once gone.
//! async fn watch(State(hub): State<Hub>, Path(id): Path<String>, last: Option<LastEventId>)
//!     -> Result<Subscription, HubError>
//! {
//!     hub.resume(&id, last).await
//! }
//!
//! let hub = Hub::memory();
//! let app: Router = Router::new()
//!     .route("/jobs", post(start))
//!     .route("/jobs/{id}", get(watch))
//!     .layer(SseLayer::new().registry(hub.registry()))
//!     .with_state(hub);
//! # let _ = app;
//! ```

use std::collections::HashMap;
use std::fmt;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt, TryStream, TryStreamExt};
use tokio::sync::Notify;

use super::{Hub, HubError, Subscription};
use crate::auth::{Action, Identity};
use crate::backend::Start;
use crate::{Event, LastEventId};

/// The longest stream id, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 64;

/// The name of the event that ends a stream whose producer finished.
pub const DONE: &str = "done";

/// The name of the event that ends a stream whose producer failed.
pub const ERROR: &str = "error";

/// The name of the event that ends a cancelled stream.
pub const CANCELLED: &str = "cancelled";

/// The topics of response streams are named this followed by the stream id.
const TOPIC_PREFIX: &str = "stream:";

/// How a response stream runs; see [`Hub::spawn_stream`].
///
/// ```
/// use std::time::Duration;
/// use tower_sse::hub::StreamOptions;
///
/// // Cancelled once nobody has listened for 30 s; the hub makes the id.
/// let options = StreamOptions::new().abandon_after(Duration::from_secs(30));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct StreamOptions {
    id: Option<String>,
    abandon_after: Option<Duration>,
}

impl StreamOptions {
    /// A detached stream with an id the hub makes.
    pub fn new() -> Self {
        StreamOptions::default()
    }

    /// Runs under this id (1 to 64 ASCII letters, digits, `-` and `_`) instead of one the hub
    /// makes. Anyone with the id can read the stream: make it unguessable, or authorize
    /// readers yourself.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Runs to the end whoever listens (the default).
    pub fn detached(mut self) -> Self {
        self.abandon_after = None;
        self
    }

    /// Cancels the stream once it has had no subscriber for `grace` (counted from its start
    /// too, so the client that asked for it has `grace` to connect).
    pub fn abandon_after(mut self, grace: Duration) -> Self {
        self.abandon_after = Some(grace);
        self
    }
}

/// A response stream the hub has started: its id, and a subscription from its start for the
/// client that asked for it.
#[derive(Debug)]
pub struct Spawned {
    id: String,
    subscription: Subscription,
}

impl Spawned {
    /// The stream's id: what a client presents to [`Hub::resume`] and [`Hub::cancel`].
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The subscription from the stream's start, e.g. to answer the request that started it.
    pub fn into_subscription(self) -> Subscription {
        self.subscription
    }

    /// The id and the subscription.
    pub fn into_parts(self) -> (String, Subscription) {
        (self.id, self.subscription)
    }
}

/// The response streams this process drives: to refuse a second producer under a live id, and
/// to drop a cancelled producer at once.
#[derive(Default)]
pub(super) struct Producers {
    running: Mutex<HashMap<Arc<str>, Arc<Notify>>>,
}

impl Producers {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Notify>>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running producer's entry; removed when its task ends, however it ends.
struct Running {
    hub: Hub,
    id: Arc<str>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.hub.inner.producers.lock().remove(&self.id);
    }
}

/// A stream whose opening marker may be published but whose producer is not running yet: if
/// the `spawn_stream` call is dropped then, the stream ends with an `error` event rather than
/// hang until it expires.
struct Unstarted {
    hub: Option<Hub>,
    topic: String,
}

impl Drop for Unstarted {
    fn drop(&mut self) {
        let Some(hub) = self.hub.take() else {
            return;
        };
        let topic = std::mem::take(&mut self.topic);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if hub.topic_info(&topic).await.ok().flatten().is_some() {
                    let _ = hub.close_with(&topic, failed()).await;
                }
            });
        }
    }
}

fn topic_of(id: &str) -> String {
    format!("{TOPIC_PREFIX}{id}")
}

fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_STREAM_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 128 random bits from the operating system, as 32 hex digits.
fn new_id() -> Result<String, HubError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|err| HubError::from(crate::backend::Error::internal(err.to_string())))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn end_event(name: &str, data: &str) -> Event {
    Event::builder()
        .event(name)
        .data(data)
        .build()
        // A constant name and data always build.
        .unwrap_or_else(|_| Event::data(data))
}

/// `event: done`, `data: {}`: a producer that ended without a `done` event of its own.
fn done() -> Event {
    end_event(DONE, "{}")
}

/// `event: error`: the producer failed; what failed is for the logs, not the client. The
/// same event a failing [`TryEventStream`](crate::TryEventStream) ends with.
fn failed() -> Event {
    crate::response::default_error_event()
}

/// `event: cancelled`, with why: `cancelled` (asked to) or `abandoned` (nobody listened).
fn cancelled(reason: &str) -> Event {
    end_event(CANCELLED, &format!(r#"{{"reason":"{reason}"}}"#))
}

impl Hub {
    /// Starts a response stream: the hub drives `producer` in a task of its own and keeps its
    /// events under a stream id, so the answer survives dropped connections and reloads.
    ///
    /// - A first connection ([`resume`](Self::resume) without a last event id, or the
    ///   returned [`Spawned::into_subscription`]) gets everything from the start, then live
    ///   events; a reconnect resumes exactly after its `Last-Event-ID`.
    /// - The stream ends with an event: `done` when the producer ends (the producer's own event
    ///   named `done`, which can carry a result, or `data: {}`), `error` when it fails
    ///   (`data: {"message":"the stream failed"}`; the error goes to `tracing`), or `cancelled`
    ///   (`data: {"reason":"cancelled"}`, or `"abandoned"` under
    ///   [`StreamOptions::abandon_after`]). A client that has seen it gets `204 No Content`
    ///   when it reconnects, as does anyone with an unknown id or once the stream is gone:
    ///   finished streams are kept as long as [`HubBuilder::topic_idle_ttl`](super::HubBuilder::topic_idle_ttl)
    ///   and, like every topic, up to [`history_events`](super::HubBuilder::history_events)
    ///   events: set it above your longest answer.
    /// - Cancelling ([`cancel`](Self::cancel), or the abandon policy) drops the producer.
    ///
    /// The stream's first event is an id with a comment (`: stream opened`): it fires nothing
    /// in a browser, and it makes the stream known to every server of a shared backend at once.
    ///
    /// ```
    /// use futures_util::stream;
    /// use tower_sse::{Event, Hub};
    /// use tower_sse::hub::StreamOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_sse::HubError> {
    /// let hub = Hub::memory();
    /// let tokens = stream::iter(["Hel", "lo"]).map(|t| Event::builder().event("token").data(t).build().unwrap());
    /// # use futures_util::StreamExt;
    /// let spawned = hub.spawn_stream(StreamOptions::new(), tokens).await?;
    /// let id = spawned.id().to_owned(); // hand it to the client, e.g. as {"id": "..."}
    /// // Later, from any request with that id:
    /// let subscription = hub.resume(&id, None).await?;
    /// # let _ = subscription; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// An id already in use (running, or finished and still kept), an invalid id, or a backend
    /// that cannot serve.
    pub async fn spawn_stream<S>(
        &self,
        options: StreamOptions,
        producer: S,
    ) -> Result<Spawned, HubError>
    where
        S: Stream<Item = Event> + Send + 'static,
    {
        self.spawn_try_stream(options, producer.map(Ok::<_, std::convert::Infallible>))
            .await
    }

    /// [`spawn_stream`](Self::spawn_stream) for a producer that can fail: its first error ends
    /// the stream with an `error` event (the error itself goes to `tracing`, not to clients).
    ///
    /// # Errors
    ///
    /// As [`spawn_stream`](Self::spawn_stream).
    pub async fn spawn_try_stream<S, E>(
        &self,
        options: StreamOptions,
        producer: S,
    ) -> Result<Spawned, HubError>
    where
        S: TryStream<Ok = Event, Error = E> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let id = match options.id {
            Some(id) if is_valid_id(&id) => id,
            Some(id) => return Err(HubError::invalid_stream_id(&id)),
            None => new_id()?,
        };
        let topic = topic_of(&id);
        let id: Arc<str> = id.into();
        let cancel = Arc::new(Notify::new());
        {
            let mut running = self.inner.producers.lock();
            if running.contains_key(&id) {
                return Err(HubError::stream_exists(&id));
            }
            running.insert(id.clone(), cancel.clone());
        }
        // Removes the entry again on every way out, the task's end included.
        let entry = Running {
            hub: self.clone(),
            id: id.clone(),
        };
        if self.topic_info(&topic).await?.is_some() {
            return Err(HubError::stream_exists(&id));
        }
        let opened = Event::builder()
            .comment("stream opened")
            .build()
            .map_err(HubError::event)?;
        // Should this call be dropped before the producer runs, the stream still ends.
        let mut unstarted = Unstarted {
            hub: Some(self.clone()),
            topic: topic.clone(),
        };
        self.publish(&topic, opened).await?;
        tokio::spawn(drive(
            entry,
            topic.clone(),
            producer.into_stream(),
            cancel,
            options.abandon_after,
        ));
        unstarted.hub = None;
        let subscription = self.subscribe_from(&topic, Start::Oldest).await?;
        Ok(Spawned {
            id: id.to_string(),
            subscription,
        })
    }

    /// The subscription to response stream `id` for a client that last saw `last`: everything
    /// from the start on a first connection, exactly what follows `last` on a reconnect, then
    /// live events and the stream's end event. [Ended](Subscription::is_ended) (`204 No
    /// Content`, which stops an `EventSource`) for an unknown, malformed or expired id, and for
    /// a client that has seen the end.
    ///
    /// # Errors
    ///
    /// A backend failure that retrying will not mend.
    pub async fn resume(
        &self,
        id: &str,
        last: Option<LastEventId>,
    ) -> Result<Subscription, HubError> {
        self.resume_checked(None, id, last).await
    }

    /// [`resume`](Self::resume) for a request: authorized first, by the hub's
    /// [policy](super::HubBuilder::policy), as [`Action::Subscribe`] on the stream's topic,
    /// `stream:` followed by `id` (so a selector `stream:*` covers every response stream),
    /// before anything is read; whether the stream exists is not told to whoever is refused.
    /// When `who` expires, the subscription ends then with a `retry:` hint.
    ///
    /// # Errors
    ///
    /// The policy's refusal ([`HubError::denied`]: `401` or `403`), else as
    /// [`resume`](Self::resume).
    pub async fn resume_as(
        &self,
        who: &Identity,
        id: &str,
        last: Option<LastEventId>,
    ) -> Result<Subscription, HubError> {
        self.resume_checked(Some(who), id, last).await
    }

    async fn resume_checked(
        &self,
        who: Option<&Identity>,
        id: &str,
        last: Option<LastEventId>,
    ) -> Result<Subscription, HubError> {
        if !is_valid_id(id) {
            // No such stream can exist: nothing to protect.
            return Ok(Subscription::ended(id.into()));
        }
        let topic = topic_of(id);
        if let Some(who) = who {
            self.authorize(who, Action::Subscribe, &topic)?;
        }
        let running_here = self.inner.producers.lock().contains_key(id);
        if !running_here && self.topic_info(&topic).await?.is_none() {
            return Ok(Subscription::ended(topic.into()));
        }
        let subscription = self
            .subscribe_from(&topic, Start::resume_or(last, Start::Oldest))
            .await?;
        Ok(match who.and_then(Identity::expires_at) {
            Some(at) => subscription.expire_at(at),
            None => subscription,
        })
    }

    /// How many response streams this server is producing now (started here, not yet ended):
    /// e.g. to refuse new work past a bound.
    pub fn running_streams(&self) -> usize {
        self.inner.producers.lock().len()
    }

    /// Cancels response stream `id`: it ends with a `cancelled` event (`data:
    /// {"reason":"cancelled"}`) and its producer is dropped: at once on this server, at its
    /// next event on another server of a shared backend. `Ok(false)` when there is no such
    /// stream or it has already ended.
    ///
    /// # Errors
    ///
    /// A backend that cannot serve.
    pub async fn cancel(&self, id: &str) -> Result<bool, HubError> {
        if !is_valid_id(id) {
            return Ok(false);
        }
        let topic = topic_of(id);
        match self.topic_info(&topic).await? {
            Some(info) if !info.closed => {}
            _ => return Ok(false),
        }
        let end = self.close_with(&topic, cancelled("cancelled")).await?;
        if let Some(cancel) = self.inner.producers.lock().get(id) {
            cancel.notify_one();
        }
        Ok(end.without_id() == cancelled("cancelled").without_id())
    }
}

/// Drives a producer until it ends, fails or is cancelled, then ends its topic.
async fn drive<S, E>(
    entry: Running,
    topic: String,
    producer: S,
    cancel: Arc<Notify>,
    abandon_after: Option<Duration>,
) where
    S: Stream<Item = Result<Event, E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let hub = entry.hub.clone();
    let id = entry.id.clone();
    let mut producer = Box::pin(producer);
    let abandoned = async {
        match abandon_after {
            Some(grace) => {
                if let Err(err) = hub.wait_idle(&topic, grace).await {
                    tracing::warn!(stream = %id, error = %err, "cannot tell whether anyone listens");
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    };
    let mut abandoned = pin!(abandoned);
    let end = loop {
        tokio::select! {
            biased;
            () = cancel.notified() => break Some(cancelled("cancelled")),
            () = &mut abandoned => break Some(cancelled("abandoned")),
            // A producer that panics fails like one that returns an error.
            item = std::panic::AssertUnwindSafe(producer.next()).catch_unwind() => match item {
                Err(_) => {
                    tracing::warn!(stream = %id, "the stream's producer panicked");
                    break Some(failed());
                }
                Ok(None) => break Some(done()),
                Ok(Some(Ok(event))) if event.name() == Some(DONE) => break Some(event),
                Ok(Some(Ok(event))) => match hub.publish(&topic, event).await {
                    Ok(_) => {}
                    // Cancelled from another server: the topic already has its end.
                    Err(err) if err.is_closed() => break None,
                    Err(err) => {
                        tracing::warn!(stream = %id, error = %err, "cannot publish the stream's event");
                        break Some(failed());
                    }
                },
                Ok(Some(Err(err))) => {
                    tracing::warn!(stream = %id, error = %err, "the stream's producer failed");
                    break Some(failed());
                }
            },
        }
    };
    // Dropped before the end is published: a cancelled producer stops at once.
    drop(producer);
    if let Some(end) = end
        && let Err(err) = hub.close_with(&topic, end).await
    {
        tracing::warn!(stream = %id, error = %err, "cannot end the stream");
    }
    drop(entry);
}

#[cfg(test)]
mod tests;
