use std::fmt;

use crate::EventError;

/// Why a [`Hub`](crate::Hub) call failed. The message says what was wrong.
///
/// As an axum response: `400 Bad Request` for an invalid topic or event, `413 Payload Too
/// Large` for an event over the hub's cap, `503 Service Unavailable` (with `Retry-After`) when
/// the backend cannot serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubError {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    InvalidTopic {
        topic: String,
        reason: String,
    },
    TooLarge {
        size: usize,
        max: usize,
    },
    Event(EventError),
    Unavailable(String),
    // Only the Redis backend has configuration that can fail at run time.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Config(String),
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

    pub(crate) fn too_large(size: usize, max: usize) -> Self {
        HubError {
            kind: Kind::TooLarge { size, max },
        }
    }

    pub(crate) fn event(err: EventError) -> Self {
        HubError {
            kind: Kind::Event(err),
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn config(why: String) -> Self {
        HubError {
            kind: Kind::Config(why),
        }
    }

    /// An error for a backend that cannot serve now; `why` is shown to the caller.
    pub fn unavailable(why: impl Into<String>) -> Self {
        HubError {
            kind: Kind::Unavailable(why.into()),
        }
    }

    /// Whether the caller's input was at fault (topic name, event size or fields, or the
    /// hub's configuration).
    pub fn is_invalid_input(&self) -> bool {
        !self.is_unavailable()
    }

    /// Whether the backend could not serve; trying again later may work.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.kind, Kind::Unavailable(_))
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::InvalidTopic { topic, reason } => {
                write!(f, "invalid topic {topic:?}: {reason}")
            }
            Kind::TooLarge { size, max } => write!(
                f,
                "event is {size} bytes encoded, more than the hub's limit of {max} bytes"
            ),
            Kind::Event(err) => write!(f, "invalid event: {err}"),
            Kind::Unavailable(why) => write!(f, "the hub's backend is unavailable: {why}"),
            Kind::Config(why) => write!(f, "hub configuration: {why}"),
        }
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Event(err) => Some(err),
            _ => None,
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for HubError {
    fn into_response(self) -> axum::response::Response {
        use http::StatusCode;
        let status = match self.kind {
            Kind::InvalidTopic { .. } | Kind::Event(_) => StatusCode::BAD_REQUEST,
            Kind::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (status, format!("{self}\n")).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
