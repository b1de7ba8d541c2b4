//! Same-origin requests, and the cross-origin protection for unsafe methods
//! ([`SseLayer::no_cross_origin_protection`](crate::SseLayer::no_cross_origin_protection)).
//!
//! An origin is a scheme, a host and a port. The server's own is the scheme the client used
//! (see `service::scheme`), and the host and port the request names (its target's authority,
//! or its `Host` header). The protection follows Go's `net/http.CrossOriginProtection`: the
//! browser's `Sec-Fetch-Site` first, then `Origin` for browsers that do not send it.

use http::{HeaderMap, HeaderValue, Method, Uri, header};

use super::host::{RequestHost, parse_authority, parse_uri_authority};

/// The scheme of an origin, as far as same-origin checks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `http` or `https`, in any case, with spaces around; `None` for anything else.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Scheme> {
        let bytes = bytes.trim_ascii();
        if bytes.eq_ignore_ascii_case(b"http") {
            Some(Scheme::Http)
        } else if bytes.eq_ignore_ascii_case(b"https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }

    /// The port a host without one is on.
    pub(crate) fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// What the request's `Sec-Fetch-Site` header says: where, for the browser that sent it, the
/// request comes from. Browsers set it themselves (no page can), since 2023 all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FetchSite {
    /// No `Sec-Fetch-Site`: not a browser, or an old one.
    Absent,
    /// `same-origin`: a page of this very origin.
    SameOrigin,
    /// `none`: the user, typing an address or following a bookmark.
    UserInitiated,
    /// `same-site`, `cross-site`, or anything else: a page of another origin.
    CrossOrigin,
}

impl FetchSite {
    pub(crate) fn of(value: Option<&HeaderValue>) -> FetchSite {
        match value.map(|value| value.as_bytes().trim_ascii()) {
            None => FetchSite::Absent,
            Some(b"same-origin") => FetchSite::SameOrigin,
            Some(b"none") => FetchSite::UserInitiated,
            Some(_) => FetchSite::CrossOrigin,
        }
    }
}

/// The host a request is for: its target's authority (HTTP/2's `:authority`, an absolute-form
/// target), else its `Host` header; `None` when it names none that can be read.
pub(crate) fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<RequestHost<'a>> {
    match uri.authority() {
        Some(authority) => parse_uri_authority(authority),
        None => parse_authority(headers.get(header::HOST)?.as_bytes()),
    }
}

/// Whether `origin` is the server's own origin: the same scheme, host and port, a port left
/// out being the scheme's default one. `null`, and anything that is not
/// `http[s]://host[:port]`, never is.
pub(crate) fn is_own_origin(
    origin: &HeaderValue,
    scheme: Scheme,
    host: Option<RequestHost<'_>>,
) -> bool {
    let Some(host) = host else {
        return false;
    };
    let Some((origin_scheme, authority)) = split_origin(origin.as_bytes()) else {
        return false;
    };
    let Some(origin_host) = parse_authority(authority) else {
        return false;
    };
    origin_scheme == scheme
        && origin_host.name == host.name
        && origin_host.port.unwrap_or(origin_scheme.default_port())
            == host.port.unwrap_or(scheme.default_port())
}

/// An origin's scheme and authority: `http[s]://authority`.
fn split_origin(origin: &[u8]) -> Option<(Scheme, &[u8])> {
    let at = origin.windows(3).position(|w| w == b"://")?;
    let scheme = &origin[..at];
    // `Scheme::parse` trims; an origin has no spaces.
    if scheme.first().is_none_or(|b| b.is_ascii_whitespace()) {
        return None;
    }
    Some((Scheme::parse(scheme)?, &origin[at + 3..]))
}

/// Whether a request's `Origin` is its own for the purpose of CORS: the browser says so
/// (`Sec-Fetch-Site: same-origin`), or, if it says nothing or was not asked by a page
/// (`none`), the origin names the server's scheme, host and port. A browser that says the
/// request comes from another origin is believed.
pub(crate) fn is_same_origin(site: FetchSite, own_origin: impl FnOnce() -> bool) -> bool {
    match site {
        FetchSite::SameOrigin => true,
        FetchSite::CrossOrigin => false,
        FetchSite::Absent | FetchSite::UserInitiated => own_origin(),
    }
}

/// Whether a method is safe: `GET`, `HEAD` and `OPTIONS`, which the cross-origin protection
/// lets through (as Go's does); a handler must not change anything on them.
pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a request with an unsafe method passes the cross-origin protection, as Go's
/// `net/http.CrossOriginProtection` decides. `origin_allowed` is `None` without an `Origin`
/// header, else whether that origin is the request's own ([`is_same_origin`]) or allowed
/// (CORS), the answer the layer needs anyway:
///
/// - `Sec-Fetch-Site: same-origin` or `none`: it passes;
/// - any other `Sec-Fetch-Site`: it passes only from an allowed origin (for which
///   [`is_same_origin`] believes the browser and says no);
/// - no `Sec-Fetch-Site` and no `Origin`: it passes (not a browser, or an old one on a
///   same-origin page, since browsers send `Origin` with every cross-origin `POST`);
/// - no `Sec-Fetch-Site`, an `Origin`: it passes when that is the server's own origin (scheme,
///   host and port, where Go compares only the host) or an allowed one; `null` never is.
pub(crate) fn passes_protection(site: FetchSite, origin_allowed: Option<bool>) -> bool {
    match (site, origin_allowed) {
        (FetchSite::SameOrigin | FetchSite::UserInitiated, _) => true,
        (_, Some(allowed)) => allowed,
        (FetchSite::Absent, None) => true,
        (FetchSite::CrossOrigin, None) => false,
    }
}
