use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use futures_util::stream::Stream;
use tokio::time::{Instant, Sleep};

use crate::backend::{self, Delivery, Gap, Live, Opened, Rest};
use crate::metrics::{End, EndCell};
use crate::{Event, LastEventId};

/// A client's subscription to a hub topic: the `gap` event if its id could not be resumed,
/// the replay of what it missed, then live events.
///
/// It is a `Stream<Item = Event>` and an axum response (a `text/event-stream` through
/// [`EventStream`](crate::EventStream)), so a handler returns it as is. Created by
/// [`Hub::subscribe`](crate::Hub::subscribe).
pub struct Subscription {
    topic: Arc<str>,
    /// Sent first, in order: prepended events, the `gap` event, the replay.
    head: VecDeque<Event>,
    /// What comes after `head`.
    tail: Tail,
    /// The `retry:` hint of an ending the subscription chooses (expiry).
    retry: Duration,
    /// When the authorization the subscription was opened with ends.
    expiry: Option<Expiry>,
    /// Why it ended, when not by itself, for the layer's metrics (feature `metrics`).
    end: EndCell,
}

/// The end of a subscription's authorization: a deadline on tokio's clock, and its timer, made
/// on the first poll (inside the runtime).
struct Expiry {
    at: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Expiry {
    fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(self.at)))
            .as_mut()
            .poll(cx)
            .is_ready()
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The part of a subscription after its queued head events.
enum Tail {
    /// Live events from the backend.
    Live {
        live: Live,
        retry: Duration,
        slow_consumers: Arc<AtomicU64>,
    },
    /// A `retry:` hint with this delay, then the end: the replay was cut at its cap. (A live
    /// feed that ends sends its own `retry:` and goes to `Done`.)
    Retry(Duration),
    /// The topic's final event, then the end.
    End(Event),
    /// Nothing more.
    Done,
    /// Nothing at all: the client has seen the topic end (`204 No Content`).
    Ended,
}

impl Subscription {
    pub(crate) fn new(
        topic: Arc<str>,
        last: Option<LastEventId>,
        opened: Opened,
        retry: Duration,
        slow_consumers: Arc<AtomicU64>,
    ) -> Self {
        // Reuses the replay's buffer.
        let mut head = VecDeque::from(opened.replay);
        if let Some(gap) = opened.gap {
            head.push_front(gap_event(&gap, last.as_ref()));
        }
        let tail = match opened.rest {
            Rest::Live(live) => Tail::Live {
                live,
                retry,
                slow_consumers,
            },
            // The replay was cut at its cap: come back for the rest.
            Rest::More => Tail::Retry(retry),
            Rest::End(end) => Tail::End(end),
        };
        Subscription {
            topic,
            head,
            tail,
            retry,
            expiry: None,
            end: EndCell::new(),
        }
    }

    /// A subscription the backend could not open now: a comment saying why and a `retry:`
    /// hint.
    pub(crate) fn unavailable(topic: Arc<str>, err: &backend::Error, retry: Duration) -> Self {
        let why = err.to_string().replace(['\r', '\n'], " ");
        let notice = Event::builder()
            .comment(why)
            .retry(retry)
            .build()
            .unwrap_or_else(|_| Event::retry(retry));
        Subscription {
            topic,
            head: VecDeque::from([notice]),
            tail: Tail::Done,
            retry,
            expiry: None,
            end: EndCell::with(End::Unavailable),
        }
    }

    /// A subscription on a hub whose registry is shutting down, whose stream the layer refuses:
    /// nothing opened in the backend; a `retry:` hint, should it be sent after all.
    pub(crate) fn refused(topic: Arc<str>, retry: Duration) -> Self {
        Subscription {
            topic,
            head: VecDeque::new(),
            tail: Tail::Retry(retry),
            retry,
            expiry: None,
            end: EndCell::new(),
        }
    }

    /// A subscription for a client that has seen its topic's final event.
    pub(crate) fn ended(topic: Arc<str>) -> Self {
        Subscription {
            topic,
            head: VecDeque::new(),
            tail: Tail::Ended,
            retry: DEFAULT_RETRY,
            expiry: None,
            end: EndCell::new(),
        }
    }

    /// Sends `events` first, before anything else of the subscription (its `gap` event
    /// included): e.g. a snapshot of the current state for a client that connects for the
    /// first time. Give such events no id, so they do not move the client's last event id.
    ///
    /// ```
    /// # async fn handler(hub: tower_sse::Hub) -> Result<tower_sse::Subscription, tower_sse::HubError> {
    /// use tower_sse::Event;
    /// let snapshot = Event::builder().event("snapshot").data("{\"rows\":[]}").build().unwrap();
    /// Ok(hub.subscribe("board", None).await?.prepend([snapshot]))
    /// # }
    /// ```
    pub fn prepend(mut self, events: impl IntoIterator<Item = Event>) -> Subscription {
        if matches!(self.tail, Tail::Ended) {
            return self;
        }
        // Pushed in front one by one, so a long replay already queued is not moved.
        let events: Vec<Event> = events.into_iter().collect();
        self.head.reserve(events.len());
        for event in events.into_iter().rev() {
            self.head.push_front(event);
        }
        self
    }

    /// Ends the subscription at `at` (an authorization's end: a token's `exp`, a session's
    /// expiry), between two events, with a comment and a `retry:` hint: the client reconnects
    /// with fresh credentials and resumes after its `Last-Event-ID`, or is refused. Events not
    /// sent by then (the rest of a replay included) are not sent. An earlier end already set
    /// is kept; a time already past ends the subscription at its first poll.
    /// [`Hub::subscribe_as`](crate::Hub::subscribe_as) sets it from the [`Identity`]'s expiry.
    ///
    /// [`Identity`]: crate::auth::Identity
    ///
    /// ```
    /// # async fn handler(hub: tower_sse::Hub) -> Result<tower_sse::Subscription, tower_sse::HubError> {
    /// use std::time::{Duration, SystemTime};
    /// // The session this stream was opened with ends in an hour.
    /// let session_end = SystemTime::now() + Duration::from_secs(3600);
    /// Ok(hub.subscribe("user/ann", None).await?.expire_at(session_end))
    /// # }
    /// ```
    pub fn expire_at(mut self, at: SystemTime) -> Subscription {
        if matches!(self.tail, Tail::Ended) {
            return self;
        }
        // The wall clock's deadline on tokio's clock, which the timer runs on (and which tests
        // can pause). A deadline too far to represent is no deadline.
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        let Some(at) = Instant::now().checked_add(left) else {
            return self;
        };
        match &mut self.expiry {
            Some(expiry) if expiry.at <= at => {}
            _ => self.expiry = Some(Expiry { at, timer: None }),
        }
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether the client has already seen the topic's final event: the subscription yields
    /// nothing, and as a response it is `204 No Content`, which tells `EventSource` to stop
    /// reconnecting.
    pub fn is_ended(&self) -> bool {
        matches!(self.tail, Tail::Ended)
    }
}

/// The `retry:` hint of a subscription that has no hub's to take.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// A comment saying the authorization ended, and a `retry:` hint.
fn expired_event(retry: Duration) -> Event {
    Event::builder()
        .comment("authorization expired")
        .retry(retry)
        .build()
        // A constant comment always builds.
        .unwrap_or_else(|_| Event::retry(retry))
}

/// The in-band notice that a replay is incomplete.
fn gap_event(gap: &Gap, requested: Option<&LastEventId>) -> Event {
    let mut json = String::with_capacity(160);
    json.push_str("{\"reason\":");
    push_json_str(&mut json, Some(gap.reason.as_str()));
    json.push_str(",\"requested\":");
    push_json_str(&mut json, requested.and_then(LastEventId::as_str));
    if let Some(err) = requested.and_then(LastEventId::error) {
        json.push_str(",\"detail\":");
        push_json_str(&mut json, Some(&err.to_string()));
    }
    json.push_str(",\"resume\":");
    push_json_str(&mut json, Some(gap.resume.as_str()));
    json.push_str(",\"resume_after\":");
    push_json_str(&mut json, gap.resume_after.as_deref());
    json.push_str(",\"last_id\":");
    push_json_str(&mut json, gap.last_id.as_deref());
    json.push('}');
    // A constant name and any data always build.
    let event = Event::builder()
        .event("gap")
        .data(json)
        .build()
        .unwrap_or_else(|_| Event::data("{}"));
    match &gap.resume_after {
        // The id comes from the backend; should it be unusable, the notice goes without it.
        Some(id) => event.with_id(id).unwrap_or(event),
        None => event,
    }
}

/// Appends `value` as a JSON string (or `null`).
fn push_json_str(out: &mut String, value: Option<&str>) {
    let Some(value) = value else {
        out.push_str("null");
        return;
    };
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        let finished = this.head.is_empty() && matches!(this.tail, Tail::Done | Tail::Ended);
        if !finished
            && let Some(expiry) = &mut this.expiry
            && expiry.poll_elapsed(cx)
        {
            // The authorization this subscription was opened with has ended: nothing more may
            // be sent on it, replay included. The check sits between two events (an `Event`
            // is whole), so it never cuts one; the `retry:` hint brings the client back to
            // authenticate again and resume after its last event id.
            tracing::debug!(topic = %this.topic, "authorization expired; ending the subscription");
            this.expiry = None;
            this.head.clear();
            this.tail = Tail::Done;
            this.end.set(End::Auth);
            return Poll::Ready(Some(expired_event(this.retry)));
        }
        if let Some(event) = this.head.pop_front() {
            return Poll::Ready(Some(event));
        }
        let last = match &mut this.tail {
            Tail::Live {
                live,
                retry,
                slow_consumers,
            } => match ready!(Pin::new(live).poll_next(cx)) {
                Some(Delivery::Event(event)) => return Poll::Ready(Some(event)),
                Some(Delivery::End(end)) => Some(end),
                Some(Delivery::Lagged) => {
                    slow_consumers.fetch_add(1, Ordering::Relaxed);
                    this.end.set(End::Slow);
                    tracing::debug!(topic = %this.topic, "subscriber fell behind; ending its stream");
                    Some(Event::retry(*retry))
                }
                // The backend lost the topic's feed: come back and replay.
                None => {
                    this.end.set(End::Backend);
                    Some(Event::retry(*retry))
                }
            },
            Tail::Retry(retry) => {
                this.end.set(End::ReplayLimit);
                Some(Event::retry(*retry))
            }
            Tail::End(end) => Some(end.clone()),
            Tail::Done | Tail::Ended => None,
        };
        if !matches!(this.tail, Tail::Ended) {
            this.tail = Tail::Done;
        }
        Poll::Ready(last)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let head = self.head.len();
        let (low, high) = match self.tail {
            Tail::Live { .. } => (head, None),
            Tail::Retry(_) | Tail::End(_) => (head + 1, Some(head + 1)),
            Tail::Done | Tail::Ended => (head, Some(head)),
        };
        match self.expiry {
            // An expiry may replace what is left with its one notice.
            Some(_) if low > 0 => (1, high.map(|high| high.max(1))),
            _ => (low, high),
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Subscription {
    /// A `text/event-stream`, or `204 No Content` when [ended](Subscription::is_ended). The
    /// stream carries its topic in its extensions ([`StreamTopic`](crate::registry::StreamTopic)),
    /// for [`SseLayer`](crate::SseLayer)'s registry.
    fn into_response(self) -> axum::response::Response {
        if self.is_ended() {
            return http::StatusCode::NO_CONTENT.into_response();
        }
        let topic = crate::registry::StreamTopic::from_shared(self.topic.clone());
        let end = self.end.clone();
        let mut response = crate::EventStream::new(self).into_response();
        end.attach(response.extensions_mut());
        response.extensions_mut().insert(topic);
        response
    }
}
