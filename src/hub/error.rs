use std::fmt;

use crate::EventError;
use crate::auth::Denied;
use crate::backend;

/// Why a [`Hub`](crate::Hub) call failed. The message says what was wrong, and never carries
/// the backend's internals (the backend's own error is the [`source`](std::error::Error::source),
/// for logs).
///
/// A failed publish is one of two outcomes, and they call for different retries:
///
/// - **Not stored** ([`is_unavailable`](Self::is_unavailable)): the backend could not take it
///   (Redis unreachable, the command never sent) or a bound of the hub refused it. Nothing was
///   stored; retrying later is safe, with or without an idempotency key.
/// - **Outcome unknown** ([`is_outcome_unknown`](Self::is_outcome_unknown)): the publish may
///   have reached the backend, and no answer came (a timeout; a connection that dropped once
///   the publish was handed to it, when nothing tells whether it was written first). It may
///   have been stored, or may be stored once the backend runs again. Retry with the same
///   [idempotency key](crate::Publish::idempotency_key): the retry then returns the first id if
///   it was stored, and stores it once if not. A retry without a key may store it twice.
///
/// As an axum response: `400 Bad Request` for an invalid topic, event or idempotency key,
/// `413 Payload Too Large` for an event over the hub's cap, `409 Conflict` for a publish to a
/// closed topic, `422 Unprocessable Content` for an idempotency key used for a different event,
/// `503 Service Unavailable` (with `Retry-After`) when the backend cannot serve or a bound of
/// the hub refuses the call (not stored), `504 Gateway Timeout` (with `Retry-After`) when the
/// outcome is unknown (chosen so a client can tell it from `503` by the status alone; the
/// message says to retry with the same idempotency key), `500` for a misconfigured or failing
/// backend; a call the hub's [policy](crate::auth::Policy) refused answers as its [`Denied`]
/// (`401` with `WWW-Authenticate`, or `403`).
///
/// ```
/// use tower_sse::{Event, Hub, Publish};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hub = Hub::memory();
/// let err = hub
///     .publish("news", Publish::new(Event::data("x")).idempotency_key("has space"))
///     .await
///     .unwrap_err();
/// assert!(err.is_invalid_input() && !err.is_outcome_unknown());
/// # }
/// ```
#[derive(Debug)]
pub struct HubError {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    InvalidTopic { topic: String, reason: String },
    InvalidIdempotencyKey { key: String, reason: String },
    TooLarge { size: usize, max: usize },
    Event(EventError),
    InvalidStreamId(String),
    ReservedName(String),
    StreamExists(String),
    Denied(Denied),
    Backend(backend::Error),
}

impl HubError {
    pub(crate) fn invalid_topic(topic: &str, reason: &str) -> Self {
        let mut shown: String = topic.chars().take(64).collect();
        if shown.len() < topic.len() {
            shown.push('…');
        }
        HubError {
            kind: Kind::InvalidTopic {
                topic: shown,
                reason: reason.to_owned(),
            },
        }
    }

    pub(crate) fn invalid_idempotency_key(key: &str, reason: &str) -> Self {
        let mut shown: String = key.chars().take(64).collect();
        if shown.len() < key.len() {
            shown.push('…');
        }
        HubError {
            kind: Kind::InvalidIdempotencyKey {
                key: shown,
                reason: reason.to_owned(),
            },
        }
    }

    pub(crate) fn too_large(size: usize, max: usize) -> Self {
        HubError {
            kind: Kind::TooLarge { size, max },
        }
    }

    pub(crate) fn invalid_stream_id(id: &str) -> Self {
        HubError {
            kind: Kind::InvalidStreamId(id.chars().take(80).collect()),
        }
    }

    pub(crate) fn reserved_name(name: &str) -> Self {
        HubError {
            kind: Kind::ReservedName(name.chars().take(80).collect()),
        }
    }

    pub(crate) fn stream_exists(id: &str) -> Self {
        HubError {
            kind: Kind::StreamExists(id.to_owned()),
        }
    }

    pub(crate) fn event(err: EventError) -> Self {
        HubError {
            kind: Kind::Event(err),
        }
    }

    /// Whether the caller's input was at fault (topic name, idempotency key, event size or
    /// fields).
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self.kind, Kind::Backend(_) | Kind::Denied(_))
    }

    /// The policy's refusal, when the hub's [policy](crate::auth::Policy) refused the call.
    pub fn denied(&self) -> Option<&Denied> {
        match &self.kind {
            Kind::Denied(denied) => Some(denied),
            _ => None,
        }
    }

    /// Whether the backend could not serve, or a bound of the hub refused the call: nothing was
    /// done (a publish stored nothing), and trying again later may work (`503`).
    pub fn is_unavailable(&self) -> bool {
        self.backend()
            .is_some_and(|err| err.is_unavailable() || err.is_full())
    }

    /// Whether the call may have reached the backend and no answer came: a publish may or may
    /// not have been stored. Retry it with the same idempotency key; a retry without one may
    /// store the event twice (`504`).
    pub fn is_outcome_unknown(&self) -> bool {
        self.backend()
            .is_some_and(backend::Error::is_outcome_unknown)
    }

    /// Whether the publish's idempotency key was used within its window for a different event
    /// on the topic: nothing was stored (`422`).
    pub fn is_key_reused(&self) -> bool {
        self.backend().is_some_and(backend::Error::is_key_reused)
    }

    /// Whether a response stream with that id already exists.
    pub fn is_stream_exists(&self) -> bool {
        matches!(self.kind, Kind::StreamExists(_))
    }

    /// Whether the topic is closed.
    pub fn is_closed(&self) -> bool {
        self.backend().is_some_and(backend::Error::is_closed)
    }

    /// The backend's error, when the backend failed the call.
    pub fn backend(&self) -> Option<&backend::Error> {
        match &self.kind {
            Kind::Backend(err) => Some(err),
            _ => None,
        }
    }
}

impl From<Denied> for HubError {
    fn from(denied: Denied) -> Self {
        HubError {
            kind: Kind::Denied(denied),
        }
    }
}

impl From<backend::Error> for HubError {
    fn from(err: backend::Error) -> Self {
        HubError {
            kind: Kind::Backend(err),
        }
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::InvalidTopic { topic, reason } => {
                write!(f, "invalid topic {topic:?}: {reason}")
            }
            Kind::InvalidIdempotencyKey { key, reason } => {
                write!(f, "invalid idempotency key {key:?}: {reason}")
            }
            Kind::TooLarge { size, max } => write!(
                f,
                "event is {size} bytes encoded, more than the hub's limit of {max} bytes"
            ),
            Kind::Event(err) => write!(f, "invalid event: {err}"),
            Kind::InvalidStreamId(id) => write!(
                f,
                "invalid stream id {id:?}: use 1 to 64 ASCII letters, digits, - and _"
            ),
            Kind::ReservedName(name) => write!(
                f,
                "event name {name:?} is reserved: the hub sends {} itself, and a browser \
                 fires `open` and `error` for the connection; choose another name",
                super::RESERVED_EVENT_NAMES.join(", ")
            ),
            Kind::StreamExists(id) => write!(f, "a stream with id {id:?} already exists"),
            Kind::Denied(denied) => fmt::Display::fmt(denied, f),
            Kind::Backend(err) => fmt::Display::fmt(err, f),
        }
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Event(err) => Some(err),
            Kind::Backend(err) => Some(err),
            _ => None,
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for HubError {
    fn into_response(self) -> axum::response::Response {
        use http::StatusCode;
        if let Kind::Denied(denied) = self.kind {
            return denied.into_response();
        }
        let status = match &self.kind {
            Kind::InvalidTopic { .. }
            | Kind::InvalidIdempotencyKey { .. }
            | Kind::Event(_)
            | Kind::InvalidStreamId(_)
            | Kind::ReservedName(_) => StatusCode::BAD_REQUEST,
            Kind::StreamExists(_) => StatusCode::CONFLICT,
            Kind::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::Backend(err) if err.is_closed() => StatusCode::CONFLICT,
            Kind::Backend(err) if err.is_key_reused() => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::Backend(err) if err.is_unavailable() || err.is_full() => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Kind::Backend(err) if err.is_outcome_unknown() => StatusCode::GATEWAY_TIMEOUT,
            Kind::Backend(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Kind::Denied(denied) => denied.status(),
        };
        let mut response = (status, format!("{self}\n")).into_response();
        if matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        ) {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
