//! Which origins may open a stream with credentials.

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;
use http::request::Parts;

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

    /// Whether `origin` may open a stream with credentials. `null` never may.
    pub(crate) fn allows(&self, origin: &HeaderValue, parts: &Parts) -> bool {
        if origin.as_bytes().eq_ignore_ascii_case(b"null") {
            return false;
        }
        match self {
            AllowedOrigins::List(list) => list.iter().any(|allowed| allowed == origin),
            AllowedOrigins::Predicate(f) => f(origin, parts),
        }
    }

    /// The same rule in the form tower-http's CORS layer takes.
    pub(crate) fn to_tower_http(&self) -> tower_http::cors::AllowOrigin {
        match self {
            AllowedOrigins::List(list) => tower_http::cors::AllowOrigin::list(list.iter().cloned()),
            AllowedOrigins::Predicate(_) => {
                let this = self.clone();
                tower_http::cors::AllowOrigin::predicate(move |origin, parts| {
                    this.allows(origin, parts)
                })
            }
        }
    }
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
