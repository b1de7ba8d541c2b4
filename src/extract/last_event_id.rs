use std::fmt;

use http::HeaderValue;
use http::request::Parts;
use percent_encoding::percent_decode;

/// The longest `Last-Event-ID` accepted, in bytes. Longer values are kept as unusable.
pub const MAX_LAST_EVENT_ID_LEN: usize = 1024;

/// The name of the request header a reconnecting `EventSource` sends.
pub const LAST_EVENT_ID: http::HeaderName = http::HeaderName::from_static("last-event-id");

/// The query parameter that `EventSource` polyfills and hand-made reconnects use instead of the
/// header.
pub const LAST_EVENT_ID_QUERY: &str = "lastEventId";

/// The id of the last event a reconnecting client saw: the `Last-Event-ID` header, else the
/// `lastEventId` query parameter.
///
/// | request                                   | `Option<LastEventId>`                 |
/// |-------------------------------------------|---------------------------------------|
/// | neither header nor parameter, or empty    | `None` (a first connection)           |
/// | header `Last-Event-ID: 42`                | `Some`, [`as_str`](Self::as_str) = `Some("42")` |
/// | `?lastEventId=42` and no header           | `Some`, `as_str` = `Some("42")`       |
/// | both                                      | the header's value wins               |
/// | over 1 KiB, not UTF-8, or CR, LF or NUL in it | `Some`, `as_str` = `None`, [`error`](Self::error) says why |
///
/// A value that is present but unusable is *not* turned into "absent": the client did ask to
/// resume, and a replay can tell it in-band that it could not. Nothing here ever panics.
///
/// As an axum extractor, `Option<LastEventId>` never rejects; a bare `LastEventId` rejects a
/// request that has none with `400 Bad Request` ([`MissingLastEventId`]).
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_sse::LastEventId;
///
/// async fn events(last: Option<LastEventId>) -> String {
///     match last {
///         None => "first connection".to_owned(),
///         Some(last) => match last.as_str() {
///             Some(id) => format!("resume after {id}"),
///             None => format!("cannot resume: {}", last.error().unwrap()),
///         },
///     }
/// }
///
/// let app: Router = Router::new().route("/events", get(events));
/// # let _ = app;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LastEventId {
    inner: Result<String, InvalidLastEventId>,
}

impl LastEventId {
    /// A usable id.
    ///
    /// # Errors
    ///
    /// When `id` is empty, longer than [`MAX_LAST_EVENT_ID_LEN`], or contains CR, LF or NUL.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidLastEventId> {
        let id = id.into();
        match check(id.as_bytes()) {
            Ok(()) if id.is_empty() => Err(InvalidLastEventId(Kind::Empty)),
            Ok(()) => Ok(LastEventId { inner: Ok(id) }),
            Err(err) => Err(err),
        }
    }

    /// Reads a raw value as a client sent it. `None` for an empty value, which is what a client
    /// with no last event id would send; an unusable value is kept, marked unusable.
    pub fn from_bytes(raw: &[u8]) -> Option<Self> {
        if raw.is_empty() {
            return None;
        }
        let inner = check(raw).map(|()| {
            // `check` has verified UTF-8.
            String::from_utf8_lossy(raw).into_owned()
        });
        Some(LastEventId { inner })
    }

    /// Reads the id from a request: the `Last-Event-ID` header, else the `lastEventId` query
    /// parameter. `None` when neither is there (or the value is empty).
    pub fn from_parts(parts: &Parts) -> Option<Self> {
        Self::from_header_or_query(parts.headers.get(LAST_EVENT_ID), parts.uri.query())
    }

    pub(crate) fn from_header_or_query(
        header: Option<&HeaderValue>,
        query: Option<&str>,
    ) -> Option<Self> {
        if let Some(header) = header {
            return Self::from_bytes(header.as_bytes());
        }
        let query = query?;
        let raw = query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == LAST_EVENT_ID_QUERY).then_some(value)
        })?;
        // Each decoded byte takes at most three encoded ones: refuse to decode what cannot fit.
        if raw.len() > 3 * MAX_LAST_EVENT_ID_LEN {
            return Some(LastEventId {
                inner: Err(InvalidLastEventId(Kind::TooLong)),
            });
        }
        let plus_as_space = raw.replace('+', " ");
        let decoded: Vec<u8> = percent_decode(plus_as_space.as_bytes()).collect();
        Self::from_bytes(&decoded)
    }

    /// The id, when it is usable.
    pub fn as_str(&self) -> Option<&str> {
        self.inner.as_deref().ok()
    }

    /// Whether the id is usable.
    pub fn is_valid(&self) -> bool {
        self.inner.is_ok()
    }

    /// Why the id is unusable, when it is.
    pub fn error(&self) -> Option<&InvalidLastEventId> {
        self.inner.as_ref().err()
    }
}

impl fmt::Display for LastEventId {
    /// The id, or `<unusable: reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Ok(id) => f.write_str(id),
            Err(err) => write!(f, "<unusable: {err}>"),
        }
    }
}

fn check(raw: &[u8]) -> Result<(), InvalidLastEventId> {
    if raw.len() > MAX_LAST_EVENT_ID_LEN {
        return Err(InvalidLastEventId(Kind::TooLong));
    }
    if raw.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(InvalidLastEventId(Kind::ForbiddenChar));
    }
    if std::str::from_utf8(raw).is_err() {
        return Err(InvalidLastEventId(Kind::NotUtf8));
    }
    Ok(())
}

/// Why a `Last-Event-ID` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvalidLastEventId(Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Empty,
    TooLong,
    NotUtf8,
    ForbiddenChar,
}

impl InvalidLastEventId {
    /// A short machine-readable reason: `"empty"`, `"too_long"`, `"not_utf8"` or
    /// `"forbidden_char"`.
    pub fn reason(&self) -> &'static str {
        match self.0 {
            Kind::Empty => "empty",
            Kind::TooLong => "too_long",
            Kind::NotUtf8 => "not_utf8",
            Kind::ForbiddenChar => "forbidden_char",
        }
    }
}

impl fmt::Display for InvalidLastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Kind::Empty => f.write_str("the last event id is empty"),
            Kind::TooLong => write!(
                f,
                "the last event id is longer than {MAX_LAST_EVENT_ID_LEN} bytes"
            ),
            Kind::NotUtf8 => f.write_str("the last event id is not UTF-8"),
            Kind::ForbiddenChar => f.write_str("the last event id contains CR, LF or NUL"),
        }
    }
}

impl std::error::Error for InvalidLastEventId {}

/// Rejection of a bare [`LastEventId`] extractor when the request has none: `400 Bad Request`.
/// Extract `Option<LastEventId>` to accept first connections too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingLastEventId;

impl fmt::Display for MissingLastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the request has no `Last-Event-ID` header and no `lastEventId` query parameter",
        )
    }
}

impl std::error::Error for MissingLastEventId {}

#[cfg(feature = "axum")]
mod axum_impls {
    use std::convert::Infallible;

    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    use super::{LastEventId, MissingLastEventId};

    impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
        type Rejection = MissingLastEventId;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            LastEventId::from_parts(parts).ok_or(MissingLastEventId)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for LastEventId {
        type Rejection = Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(LastEventId::from_parts(parts))
        }
    }

    impl IntoResponse for MissingLastEventId {
        fn into_response(self) -> Response {
            (StatusCode::BAD_REQUEST, self.to_string()).into_response()
        }
    }
}
