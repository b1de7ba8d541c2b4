//! CORS with credentials, in one place: which origins may open a stream, and the headers their
//! requests and preflights are answered with.
//!
//! The model is tower-http's `cors` module, cut down to what a credentialed event stream needs:
//! an allowed origin is echoed exactly (never `*`) with `Access-Control-Allow-Credentials: true`;
//! every response of a layer with allowed origins varies on `Origin` and the two preflight
//! request headers (appended to the handler's `Vary`, never overwriting it); every `OPTIONS`
//! request is answered as a preflight, without the handler, with the allowed methods and request
//! headers. The origin rule (a list, or the user's predicate) is checked once per request, by the
//! service, and its answer carried to the response.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

type Predicate = dyn Fn(&HeaderValue, &Parts) -> bool + Send + Sync;

/// The origins a layer allows, checked once when the layer is configured.
#[derive(Clone)]
pub(crate) enum AllowedOrigins {
    List(Arc<[HeaderValue]>),
    Predicate(Arc<Predicate>),
}

impl AllowedOrigins {
    pub(crate) fn list<I, O>(origins: I) -> Result<Self, InvalidOrigin>
    where
        I: IntoIterator<Item = O>,
        O: AsRef<str>,
    {
        let list = origins
            .into_iter()
            .map(|origin| parse_origin(origin.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedOrigins::List(list.into()))
    }

    pub(crate) fn predicate<F>(f: F) -> Self
    where
        F: Fn(&HeaderValue, &Parts) -> bool + Send + Sync + 'static,
    {
        AllowedOrigins::Predicate(Arc::new(f))
    }

    /// Whether `origin` may open a stream with credentials. What is not one serialized origin
    /// never may, and the predicate is not asked: `null`, `*`, a list (`a, b`), anything with
    /// whitespace or bytes outside visible ASCII (see [`is_one_origin`]).
    pub(crate) fn allows(&self, origin: &HeaderValue, parts: &Parts) -> bool {
        if !is_one_origin(origin) {
            return false;
        }
        match self {
            AllowedOrigins::List(list) => list.iter().any(|allowed| allowed == origin),
            AllowedOrigins::Predicate(f) => f(origin, parts),
        }
    }
}

/// Whether `origin` can be one origin as a browser serializes it (`scheme://host[:port]`, in
/// ASCII): not empty, not `null` (sandboxed frames, local files: no one to trust), and only
/// visible ASCII without `*` or `,`. A wildcard echoed with credentials, or a list echoed as
/// is, would be a header no browser accepts and a predicate may not expect (one that checks
/// `ends_with(".example.com")` lets `https://evil.net, https://a.example.com` through); no
/// browser sends either, so they are refused before a predicate sees them.
fn is_one_origin(origin: &HeaderValue) -> bool {
    let bytes = origin.as_bytes();
    !bytes.is_empty()
        && !bytes.eq_ignore_ascii_case(b"null")
        && bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'*' && b != b',')
}

/// The `Vary` value of every response of a layer with allowed origins (tower-http's default):
/// a cache must not answer a request from one origin with a response made for another, nor a
/// preflight with another preflight's answer.
const VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

/// `Access-Control-Allow-Credentials: true`.
const TRUE: HeaderValue = HeaderValue::from_static("true");

/// The CORS rules of a layer with allowed origins, with the preflight's header values built
/// once, when the layer is configured.
#[derive(Debug, Clone)]
pub(crate) struct Cors {
    origins: AllowedOrigins,
    /// `Access-Control-Allow-Methods`: the allowed methods, comma-separated.
    allow_methods: Option<HeaderValue>,
    /// `Access-Control-Allow-Headers`: the allowed request headers, comma-separated.
    allow_headers: Option<HeaderValue>,
}

impl Cors {
    pub(crate) fn new(origins: AllowedOrigins, methods: &[Method], headers: &[HeaderName]) -> Self {
        Cors {
            origins,
            allow_methods: comma_separated(methods.iter().map(Method::as_str)),
            allow_headers: comma_separated(headers.iter().map(HeaderName::as_str)),
        }
    }

    /// Whether `origin` may open a stream with credentials. The service asks once per request
    /// and carries the answer, so a user's predicate runs once per request.
    pub(crate) fn allows(&self, origin: &HeaderValue, parts: &Parts) -> bool {
        self.origins.allows(origin, parts)
    }

    /// The headers of the answer to a preflight (any `OPTIONS` request): the allowed methods
    /// and request headers, and, for an allowed origin, the origin echoed with credentials.
    pub(crate) fn preflight(&self, allowed_origin: Option<HeaderValue>) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(5);
        Self::decorate(&mut headers, allowed_origin);
        for (name, value) in [
            (header::ACCESS_CONTROL_ALLOW_METHODS, &self.allow_methods),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, &self.allow_headers),
        ] {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
        headers
    }

    /// Adds what every response of a layer with allowed origins carries: `Vary` (appended to
    /// the handler's own), and, for an allowed origin, `Access-Control-Allow-Origin` with that
    /// origin and `Access-Control-Allow-Credentials: true` (replacing any the handler set).
    pub(crate) fn decorate(headers: &mut HeaderMap, allowed_origin: Option<HeaderValue>) {
        if let Some(origin) = allowed_origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        headers.append(header::VARY, VARY);
    }
}

/// `items` joined by commas, as tower-http writes lists; `None` for none.
fn comma_separated<'a>(items: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let joined = items.collect::<Vec<_>>().join(",");
    if joined.is_empty() {
        return None;
    }
    // Method and header names are tokens, which are valid header values.
    HeaderValue::from_str(&joined).ok()
}

impl fmt::Debug for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedOrigins::List(list) => f.debug_tuple("List").field(list).finish(),
            AllowedOrigins::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

/// Checks one configured origin and returns it in the exact form browsers send.
fn parse_origin(origin: &str) -> Result<HeaderValue, InvalidOrigin> {
    let fail = |reason| {
        Err(InvalidOrigin {
            origin: origin.to_owned(),
            reason,
        })
    };
    let trimmed = origin.trim();
    if trimmed == "*" {
        return fail(Reason::Wildcard);
    }
    if trimmed.eq_ignore_ascii_case("null") {
        return fail(Reason::Null);
    }
    let Some((scheme, authority)) = trimmed.split_once("://") else {
        return fail(Reason::NoScheme);
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return fail(Reason::NoScheme);
    }
    if authority.contains('*') {
        return fail(Reason::Wildcard);
    }
    if authority.contains(['/', '?', '#']) {
        return fail(Reason::Path);
    }
    if authority.is_empty() || authority.contains('@') || !authority.is_ascii() {
        return fail(Reason::Host);
    }
    let normalized = format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    );
    match HeaderValue::from_str(&normalized) {
        Ok(value) => Ok(value),
        Err(_) => fail(Reason::Host),
    }
}

/// An allowed origin that cannot be used with credentials, reported when the layer is built.
///
/// Its message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOrigin {
    origin: String,
    reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Wildcard,
    Null,
    NoScheme,
    Path,
    Host,
}

impl InvalidOrigin {
    /// The origin as it was given.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = &self.origin;
        match self.reason {
            Reason::Wildcard => write!(
                f,
                "origin {origin:?}: a wildcard cannot be allowed with credentials (browsers refuse \
                 `Access-Control-Allow-Origin: *` on credentialed requests); list each exact \
                 origin, e.g. `.allow_origins([\"https://app.example.com\"])`, or decide per request \
                 with `.allow_origin_predicate(|origin, _| ...)`"
            ),
            Reason::Null => write!(
                f,
                "origin {origin:?}: `null` is sent by sandboxed frames and local files and cannot be \
                 trusted with credentials; serve the page from a real origin and list that, e.g. \
                 `\"http://localhost:8080\"`"
            ),
            Reason::NoScheme => write!(
                f,
                "origin {origin:?}: an origin is `scheme://host[:port]`; write e.g. \
                 `\"https://app.example.com\"`"
            ),
            Reason::Path => write!(
                f,
                "origin {origin:?}: an origin has no path, query or trailing slash; write only \
                 `scheme://host[:port]`, e.g. `\"https://app.example.com\"`"
            ),
            Reason::Host => write!(
                f,
                "origin {origin:?}: the host is empty or not ASCII; write e.g. \
                 `\"https://app.example.com\"` (internationalized names in their `xn--` form)"
            ),
        }
    }
}

impl std::error::Error for InvalidOrigin {}
