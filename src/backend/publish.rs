//! What a publish takes ([`Publish`]: an event and, optionally, an idempotency key) and what it
//! gives back ([`Published`]: the id, the event as stored, and whether it was a duplicate).

use std::fmt;

use super::Error;
use crate::Event;

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// How long a backend remembers an idempotency key by default: 5 minutes (as Centrifugo's
/// publish idempotency keys).
pub const DEFAULT_IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// A publish: an event and, optionally, an idempotency key. An [`Event`] converts into one
/// without a key, so `hub.publish(topic, event)` stays the simple call.
///
/// With an idempotency key, a publish that is repeated within the backend's window (a retry
/// after a timeout, a `503`, or a crash of the publisher) is not stored again: it returns the
/// id and event of the first one, marked as a [duplicate](Published::is_duplicate). A key is
/// per topic. The same key with a different event within the window is refused
/// ([`Error::is_key_reused`]). See [`HubBuilder::idempotency_window`](crate::HubBuilder::idempotency_window).
///
/// ```
/// use tower_sse::{Event, Hub, Publish};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_sse::HubError> {
/// let hub = Hub::memory();
/// let order = || Publish::new(Event::data("order 42 shipped")).idempotency_key("order-42-shipped");
/// let first = hub.publish("orders", order()).await?;
/// let retry = hub.publish("orders", order()).await?; // e.g. after a timeout
/// assert_eq!(retry.id(), first.id());
/// assert!(retry.is_duplicate());
/// assert_eq!(hub.topic_info("orders").await?.unwrap().retained_events, 1);
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct Publish {
    event: Event,
    key: Option<String>,
}

impl Publish {
    /// A publish of `event`, without an idempotency key.
    pub fn new(event: Event) -> Publish {
        Publish { event, key: None }
    }

    /// Sets the idempotency key: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] visible ASCII characters (no
    /// space, no control character), e.g. a UUID the publisher made for this event and sends
    /// again with every retry of it. A hub refuses another key with
    /// [`HubError::is_invalid_input`](crate::HubError::is_invalid_input) (`400`).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Publish {
        self.key = Some(key.into());
        self
    }

    /// The event to publish.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The idempotency key, if one is set.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The event and the idempotency key.
    pub fn into_parts(self) -> (Event, Option<String>) {
        (self.event, self.key)
    }
}

impl From<Event> for Publish {
    fn from(event: Event) -> Publish {
        Publish::new(event)
    }
}

impl fmt::Debug for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publish")
            .field("event", &self.event)
            .field("key", &self.key)
            .finish()
    }
}

/// Why an idempotency key is unusable, as a hub's `400` says; `None` when it is fine.
pub(crate) fn key_problem(key: &str) -> Option<String> {
    const RULE: &str = "use 1 to 128 visible ASCII characters (no space or control character)";
    if key.is_empty() {
        return Some(format!("it is empty; {RULE}"));
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Some(format!("it is longer than 128 bytes; {RULE}"));
    }
    key.chars()
        .find(|c| !c.is_ascii_graphic())
        .map(|c| format!("it contains {c:?}; {RULE}"))
}

/// What a publish gave: the event as stored, with its id, and whether it was a duplicate of an
/// earlier publish with the same idempotency key (then nothing was stored, and the id and event
/// are the first publish's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    event: Event,
    duplicate: bool,
}

impl Published {
    /// A publish that stored `event` (with the id the backend gave it).
    ///
    /// # Errors
    ///
    /// [`Error::internal`] when `event` has no id, or an empty one.
    pub fn stored(event: Event) -> Result<Published, Error> {
        Published::with_id(event, false)
    }

    /// A publish whose idempotency key was seen within the window: nothing was stored, and
    /// `event` is the first publish's, with its id.
    ///
    /// # Errors
    ///
    /// [`Error::internal`] when `event` has no id, or an empty one.
    pub fn duplicate(event: Event) -> Result<Published, Error> {
        Published::with_id(event, true)
    }

    fn with_id(event: Event, duplicate: bool) -> Result<Published, Error> {
        if event.id().is_none_or(str::is_empty) {
            return Err(Error::internal("a published event has no id"));
        }
        Ok(Published { event, duplicate })
    }

    /// The id the event was stored with: what a client sends back as `Last-Event-ID`.
    pub fn id(&self) -> &str {
        // Checked by the constructors.
        self.event.id().unwrap_or_default()
    }

    /// The event as stored, with its id.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The event as stored, with its id.
    pub fn into_event(self) -> Event {
        self.event
    }

    /// Whether the publish repeated an earlier one's idempotency key within the window: nothing
    /// was stored, and [`id`](Self::id) and [`event`](Self::event) are the first publish's.
    ///
    /// A backend may send a keyed publish again itself when it cannot tell whether the first
    /// attempt was stored (the Redis backend does, once, after a dropped connection); should
    /// that attempt have been stored, the answer is a duplicate of it. Either way the event is
    /// stored once, under [`id`](Self::id).
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }
}

impl From<Published> for Event {
    fn from(published: Published) -> Event {
        published.event
    }
}
