//! Which hosts a layer serves ([`SseLayer::allow_hosts`](crate::SseLayer::allow_hosts)), and
//! how a request's host is read.
//!
//! A DNS rebinding attack points a name the attacker owns at the server's address: the
//! victim's browser then sends requests for the attacker's name, with `Host` (a header no page
//! can set) naming it. Refusing every host the server does not serve stops it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use http::{HeaderMap, StatusCode, Uri, header};

use super::origin::Scheme;

/// The hosts a layer serves, checked once when the layer is configured.
#[derive(Clone, Debug)]
pub(crate) struct AllowedHosts {
    entries: Arc<[Entry]>,
}

/// One allowed host: a name or address, or every subdomain of a name, with an optional port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    pattern: Pattern,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// An IP address (IPv4, or IPv6 written in brackets).
    Ip(IpAddr),
    /// A name, in lower case, without a trailing dot.
    Name(Box<str>),
    /// `*.example.com`: every name ending in `.example.com` (held as `.example.com`), but not
    /// `example.com` itself.
    Subdomains(Box<str>),
}

/// Why a request's host was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostRefusal {
    /// No `Host` header and no authority in the request target.
    Missing,
    /// More than one `Host` header.
    Several,
    /// A `Host` that is not `host[:port]`.
    Malformed,
    /// A well-formed host that is not listed.
    NotServed,
}

impl HostRefusal {
    /// The status a refusal is answered with: `400 Bad Request` for a request that names no
    /// host, or names it in a way no client should (RFC 9112 §3.2 asks for 400 there), and
    /// `421 Misdirected Request` for a host this server is "not configured to produce
    /// responses for" (RFC 9110 §15.5.20).
    pub(crate) fn status(self) -> StatusCode {
        match self {
            HostRefusal::NotServed => StatusCode::MISDIRECTED_REQUEST,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The plain-text body of the answer.
    pub(crate) fn message(self) -> &'static str {
        match self {
            HostRefusal::Missing => "the request names no host\n",
            HostRefusal::Several => "the request has more than one Host header\n",
            HostRefusal::Malformed => "the Host header is not host[:port]\n",
            HostRefusal::NotServed => "this server does not serve the requested host\n",
        }
    }
}

impl AllowedHosts {
    /// The hosts listed as `name`, `name:port`, `*.name`, `*.name:port`, IPv4 addresses and
    /// bracketed IPv6 addresses (with or without a port; a bare IPv6 address is taken too).
    pub(crate) fn list<I, H>(hosts: I) -> Result<Self, InvalidHost>
    where
        I: IntoIterator<Item = H>,
        H: AsRef<str>,
    {
        let entries = hosts
            .into_iter()
            .map(|host| parse_entry(host.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedHosts {
            entries: entries.into(),
        })
    }

    /// Checks every host the request names: the authority of its target (HTTP/2's
    /// `:authority`, or an absolute-form target) and its `Host` header. Each one it has must
    /// be listed, and it must have one. `scheme` gives the port a host without one is on; it is
    /// asked only when an entry with a port has to be compared with such a host.
    pub(crate) fn check(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        scheme: impl Fn() -> Scheme,
    ) -> Result<(), HostRefusal> {
        let mut named = false;
        if let Some(authority) = uri.authority() {
            named = true;
            let host = parse_uri_authority(authority).ok_or(HostRefusal::Malformed)?;
            if !self.allows(&host, &scheme) {
                return Err(HostRefusal::NotServed);
            }
        }
        let mut values = headers.get_all(header::HOST).iter();
        if let Some(value) = values.next() {
            if values.next().is_some() {
                return Err(HostRefusal::Several);
            }
            named = true;
            let host = parse_authority(value.as_bytes()).ok_or(HostRefusal::Malformed)?;
            if !self.allows(&host, &scheme) {
                return Err(HostRefusal::NotServed);
            }
        }
        if named {
            Ok(())
        } else {
            Err(HostRefusal::Missing)
        }
    }

    fn allows(&self, host: &RequestHost<'_>, scheme: &impl Fn() -> Scheme) -> bool {
        self.entries.iter().any(|entry| {
            let name = match (&entry.pattern, host.name) {
                (Pattern::Ip(allowed), HostName::Ip(ip)) => *allowed == ip,
                (Pattern::Name(allowed), HostName::Name(name)) => {
                    allowed.as_bytes().eq_ignore_ascii_case(name.as_bytes())
                }
                (Pattern::Subdomains(suffix), HostName::Name(name)) => {
                    name.len() > suffix.len()
                        && name.as_bytes()[name.len() - suffix.len()..]
                            .eq_ignore_ascii_case(suffix.as_bytes())
                }
                _ => false,
            };
            name && entry
                .port
                .is_none_or(|port| port == host.port.unwrap_or_else(|| scheme().default_port()))
        })
    }
}

/// A host as a request names it, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestHost<'a> {
    pub(crate) name: HostName<'a>,
    /// The port, when the request gives one.
    pub(crate) port: Option<u16>,
}

/// A host's name or address.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HostName<'a> {
    /// An IPv4 address, or an IPv6 address written in brackets.
    Ip(IpAddr),
    /// A name, as written (any case), without a trailing dot.
    Name(&'a str),
}

impl PartialEq for HostName<'_> {
    /// Names compare case-insensitively, addresses by value (`[::1]` is `[0:0::1]`).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HostName::Ip(a), HostName::Ip(b)) => a == b,
            (HostName::Name(a), HostName::Name(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
    }
}

impl Eq for HostName<'_> {}

/// Reads `host[:port]` as a `Host` header or an origin carries it: a name, an IPv4 address or
/// a bracketed IPv6 address, then an optional `:port` (`host:` is a host without one). `None`
/// for anything else: user information, a path, spaces, a port over 65535, a bare IPv6
/// address, bytes that are not ASCII. Never allocates.
pub(crate) fn parse_authority(bytes: &[u8]) -> Option<RequestHost<'_>> {
    let (host, port) = match bytes.strip_prefix(b"[") {
        Some(bracketed) => {
            let end = bracketed.iter().position(|&b| b == b']')?;
            let host = &bytes[..end + 2];
            match &bracketed[end + 1..] {
                [] => (host, None),
                [b':', port @ ..] => (host, Some(port)),
                _ => return None,
            }
        }
        None => match bytes.iter().position(|&b| b == b':') {
            Some(colon) => (&bytes[..colon], Some(&bytes[colon + 1..])),
            None => (bytes, None),
        },
    };
    let port = match port {
        None | Some([]) => None,
        Some(digits) => Some(parse_port(digits)?),
    };
    Some(RequestHost {
        port,
        ..parse_host(host)?
    })
}

/// Reads the authority of a request's target as [`parse_authority`] does, without its user
/// information.
pub(crate) fn parse_uri_authority(authority: &http::uri::Authority) -> Option<RequestHost<'_>> {
    let host = authority.as_str();
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    parse_authority(host.as_bytes())
}

/// A port: one to five ASCII digits, at most 65535.
fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Reads a host without its port: a bracketed IPv6 address, an IPv4 address, or a name: labels
/// of letters, digits, `-` and `_` joined by dots (one trailing dot allowed, and dropped).
fn parse_host(bytes: &[u8]) -> Option<RequestHost<'_>> {
    let name = if let Some(bracketed) = bytes.strip_prefix(b"[") {
        let inside = bracketed.strip_suffix(b"]")?;
        let ip = std::str::from_utf8(inside).ok()?.parse::<Ipv6Addr>().ok()?;
        HostName::Ip(IpAddr::V6(ip))
    } else {
        let bytes = bytes.strip_suffix(b".").unwrap_or(bytes);
        let valid = bytes.len() <= 253
            && bytes.split(|&b| b == b'.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            });
        if !valid {
            return None;
        }
        // Only ASCII: cannot fail.
        let name = std::str::from_utf8(bytes).ok()?;
        match name.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => HostName::Ip(IpAddr::V4(ip)),
            Err(_) => HostName::Name(name),
        }
    };
    Some(RequestHost { name, port: None })
}

/// Checks one configured host.
fn parse_entry(entry: &str) -> Result<Entry, InvalidHost> {
    let fail = |reason| {
        Err(InvalidHost {
            host: entry.to_owned(),
            reason,
        })
    };
    let trimmed = entry.trim();
    if trimmed.contains("://") {
        return fail(HostReason::Scheme);
    }
    if trimmed.contains(['/', '?', '#']) {
        return fail(HostReason::Path);
    }
    if trimmed.contains('@') {
        return fail(HostReason::Malformed);
    }
    if !trimmed.is_ascii() {
        return fail(HostReason::NotAscii);
    }
    if trimmed == "*" || trimmed.starts_with("*:") {
        return fail(HostReason::Everything);
    }
    // A bare IPv6 address, as `::1`, is taken as `[::1]`.
    if let Ok(ip) = trimmed.parse::<Ipv6Addr>() {
        return Ok(Entry {
            pattern: Pattern::Ip(IpAddr::V6(ip)),
            port: None,
        });
    }
    let (subdomains, rest) = match trimmed.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    if rest.contains('*') {
        return fail(HostReason::Wildcard);
    }
    let Some(host) = parse_authority(rest.as_bytes()) else {
        return fail(HostReason::Malformed);
    };
    if rest.ends_with(':') {
        return fail(HostReason::Malformed);
    }
    let pattern = match (host.name, subdomains) {
        (HostName::Ip(_), true) => return fail(HostReason::Wildcard),
        (HostName::Ip(ip), false) => Pattern::Ip(ip),
        (HostName::Name(name), false) => Pattern::Name(name.to_ascii_lowercase().into()),
        (HostName::Name(name), true) => {
            Pattern::Subdomains(format!(".{}", name.to_ascii_lowercase()).into())
        }
    };
    Ok(Entry {
        pattern,
        port: host.port,
    })
}

/// A host given to [`SseLayer::try_allow_hosts`](crate::SseLayer::try_allow_hosts) that cannot
/// be used, reported when the layer is built.
///
/// Its message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHost {
    host: String,
    reason: HostReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostReason {
    Scheme,
    Path,
    NotAscii,
    Everything,
    Wildcard,
    Malformed,
}

impl InvalidHost {
    /// The host as it was given.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Display for InvalidHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = &self.host;
        match self.reason {
            HostReason::Scheme => write!(
                f,
                "host {host:?}: a host has no scheme; write only `host[:port]`, e.g. \
                 `\"api.example.com\"` or `\"localhost:8080\"`"
            ),
            HostReason::Path => write!(
                f,
                "host {host:?}: a host has no path, query or trailing slash; write only \
                 `host[:port]`, e.g. `\"api.example.com\"`"
            ),
            HostReason::NotAscii => write!(
                f,
                "host {host:?}: write an internationalized name in its `xn--` form, as browsers \
                 send it in `Host`"
            ),
            HostReason::Everything => write!(
                f,
                "host {host:?}: `*` would allow every host, which is what a layer without \
                 `allow_hosts` does; list the names the server is reached by, e.g. \
                 `.allow_hosts([\"api.example.com\", \"localhost:8080\"])`"
            ),
            HostReason::Wildcard => write!(
                f,
                "host {host:?}: a wildcard may only stand for subdomains, as the first label of \
                 a name: write e.g. `\"*.example.com\"` (and `\"example.com\"` for the name \
                 itself)"
            ),
            HostReason::Malformed => write!(
                f,
                "host {host:?}: a host is a name, an IPv4 address or a bracketed IPv6 address, \
                 with an optional port: write e.g. `\"api.example.com\"`, `\"127.0.0.1:8080\"` or \
                 `\"[::1]:8080\"`"
            ),
        }
    }
}

impl std::error::Error for InvalidHost {}
