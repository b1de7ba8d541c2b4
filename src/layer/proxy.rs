//! The client's address behind trusted proxies: `Forwarded` (RFC 7239) and `X-Forwarded-For`.
//!
//! A proxy appends the address it received a request from to the header, so the list reads
//! left to right from the client to the last proxy, and the server's peer is the last proxy.
//! Only the entries the trusted proxies appended can be believed: the client may have sent
//! any list it liked. So the client is the rightmost entry that is not a trusted proxy (the
//! leftmost one when every entry is), and an entry that cannot be read there (`unknown`, an
//! obfuscated name, garbage) stops the walk: the peer address is used instead.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use ipnet::IpNet;

use super::origin::Scheme;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The client's address as [`SseLayer`](crate::SseLayer) resolved it: behind a
/// [trusted proxy](crate::SseLayer::trusted_proxies), the address the proxy forwarded (port 0
/// when it gave none); from any other peer, the peer's own.
///
/// A layer with trusted proxies leaves it in the request's extensions for handlers (as axum's
/// `ConnectInfo` is), and the registry and the per-peer limits count the client by it. Read it
/// with `axum::Extension<ClientAddr>`:
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use tower_sse::SseLayer;
/// use tower_sse::layer::ClientAddr;
///
/// async fn whoami(client: Option<Extension<ClientAddr>>) -> String {
///     client.map_or_else(|| "unknown".to_owned(), |Extension(ClientAddr(addr))| addr.ip().to_string())
/// }
///
/// let app: Router = Router::new()
///     .route("/whoami", get(whoami))
///     .layer(SseLayer::new().trusted_proxies(["10.0.0.0/8"]));
/// # let _ = app;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

/// The proxies whose forwarding headers a layer believes, checked when the layer is configured.
#[derive(Clone, Debug)]
pub(crate) struct TrustedProxies {
    nets: Arc<[IpNet]>,
}

impl TrustedProxies {
    /// The proxies listed as IP addresses (`10.0.0.7`, `::1`) or networks (`10.0.0.0/8`,
    /// `fd00::/8`).
    pub(crate) fn list<I, P>(proxies: I) -> Result<Self, InvalidProxy>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let nets = proxies
            .into_iter()
            .map(|proxy| parse_net(proxy.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { nets: nets.into() })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer` with these headers.
    ///
    /// From an untrusted peer the headers are not read. From a trusted one, `Forwarded` and
    /// `X-Forwarded-For` each name a client; a proxy usually sets one of them and passes the
    /// other on as the client sent it, so when both are present and name different clients,
    /// neither is believed and the peer is the client.
    pub(crate) fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let forwarded = self.walk(
            headers
                .get_all(header::FORWARDED)
                .iter()
                .flat_map(forwarded_elements)
                .map(|element| element.node),
        );
        let forwarded_for = self.walk(
            headers
                .get_all(X_FORWARDED_FOR)
                .iter()
                .flat_map(|value| value.as_bytes().split(|&b| b == b','))
                .filter(|node| !node.trim_ascii().is_empty())
                .map(parse_node),
        );
        match (forwarded, forwarded_for) {
            (Hop::Client(client), Hop::Absent) | (Hop::Absent, Hop::Client(client)) => client,
            (Hop::Client(a), Hop::Client(b)) if a.ip() == b.ip() => {
                if a.port() == 0 {
                    b
                } else {
                    a
                }
            }
            _ => peer,
        }
    }

    /// The scheme the client used, as the proxies say, for a request that came from `peer`:
    /// `None` from an untrusted peer, or when they say nothing readable.
    ///
    /// `Forwarded` gives it in the element the client's address is read from (the `proto` the
    /// first trusted proxy set, see [`client`](Self::client)); `X-Forwarded-Proto` in its
    /// rightmost value (the one the nearest proxy set or appended). When both are present
    /// and disagree, neither is believed.
    pub(crate) fn proto(&self, peer: SocketAddr, headers: &HeaderMap) -> Option<Scheme> {
        if !self.trusts(peer.ip()) {
            return None;
        }
        let forwarded = if headers.contains_key(header::FORWARDED) {
            // The element of the rightmost node that is not a trusted proxy, or the first.
            let mut untrusted = None;
            let mut first = None;
            for element in headers
                .get_all(header::FORWARDED)
                .iter()
                .flat_map(forwarded_elements)
            {
                first.get_or_insert(element.proto);
                if !element.node.is_some_and(|addr| self.trusts(addr.ip())) {
                    untrusted = Some(element.proto);
                }
            }
            untrusted
                .or(first)
                .map(|proto| proto.and_then(Scheme::parse))
        } else {
            None
        };
        let forwarded_proto = headers
            .get_all(X_FORWARDED_PROTO)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .rfind(|proto| !proto.trim_ascii().is_empty())
            .map(Scheme::parse);
        match (forwarded, forwarded_proto) {
            (Some(scheme), None) | (None, Some(scheme)) => scheme,
            (Some(a), Some(b)) if a == b => a,
            _ => None,
        }
    }

    /// Walks one header's list of nodes, left to right, to its rightmost untrusted one.
    fn walk(&self, nodes: impl Iterator<Item = Option<SocketAddr>>) -> Hop {
        // The last node that is not a trusted proxy (`None` inside: it could not be read),
        // and the first node, the client when every node is a trusted proxy.
        let mut untrusted: Option<Option<SocketAddr>> = None;
        let mut first: Option<Option<SocketAddr>> = None;
        for node in nodes {
            first.get_or_insert(node);
            if !node.is_some_and(|addr| self.trusts(addr.ip())) {
                untrusted = Some(node);
            }
        }
        match untrusted.or(first) {
            None => Hop::Absent,
            Some(Some(addr)) => Hop::Client(canonical(addr)),
            Some(None) => Hop::Unreadable,
        }
    }
}

/// What one header says about the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    /// The header is absent (or lists nothing).
    Absent,
    Client(SocketAddr),
    /// The node where the walk stops cannot be read.
    Unreadable,
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Reads one node: an IP address, with or without a port (`192.0.2.7`, `192.0.2.7:4711`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`). An obfuscated port (`_abc`) counts
/// as none (0); `unknown`, an obfuscated name or anything else is unreadable.
fn parse_node(node: &[u8]) -> Option<SocketAddr> {
    let node = std::str::from_utf8(node.trim_ascii()).ok()?;
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    let (ip, rest) = match node.strip_prefix('[') {
        Some(bracketed) => {
            let (ip, rest) = bracketed.split_once(']')?;
            (ip.parse::<std::net::Ipv6Addr>().ok()?.into(), rest)
        }
        None => {
            let (ip, _port) = node.split_once(':')?;
            (
                ip.parse::<std::net::Ipv4Addr>().ok()?.into(),
                &node[ip.len()..],
            )
        }
    };
    let port = match rest {
        "" => 0,
        _ => {
            let port = rest.strip_prefix(':')?;
            if port.starts_with('_') {
                0
            } else if port.bytes().all(|b| b.is_ascii_digit()) {
                port.parse().ok()?
            } else {
                return None;
            }
        }
    };
    Some(SocketAddr::new(ip, port))
}

/// The elements of one `Forwarded` value, in order.
fn forwarded_elements(value: &HeaderValue) -> Elements<'_> {
    Elements {
        rest: value.as_bytes(),
    }
}

/// What one `Forwarded` element says, as far as the layer cares.
#[derive(Debug, Clone, Copy)]
struct Element<'a> {
    /// Its `for` node; `None` without a readable one (`for=unknown`, obfuscated, missing, or a
    /// malformed element).
    node: Option<SocketAddr>,
    /// Its `proto` value; `None` when it has none, or is malformed.
    proto: Option<&'a [u8]>,
}

/// The elements of a `Forwarded` value: `element *( "," element )`, an element being
/// `pair *( ";" pair )` and a pair `token "=" ( token / quoted-string )`; a quoted string may
/// hold commas and semicolons. Empty elements are skipped. No allocation.
struct Elements<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Elements<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let mut node = None;
            let mut proto = None;
            let mut malformed = false;
            let mut empty = true;
            // Each turn takes at least one byte, or ends the element.
            loop {
                let rest = self.rest.trim_ascii_start();
                let name_end = rest
                    .iter()
                    .position(|&b| matches!(b, b'=' | b';' | b','))
                    .unwrap_or(rest.len());
                let name = rest[..name_end].trim_ascii();
                let mut rest = &rest[name_end..];
                if let Some(after) = rest.strip_prefix(b"=") {
                    empty = false;
                    malformed |= name.is_empty();
                    let after = after.trim_ascii_start();
                    let value = match after.strip_prefix(b"\"") {
                        Some(quoted_value) => match quoted(quoted_value) {
                            Some((value, escaped, after_quote)) => {
                                rest = after_quote;
                                // No address needs escaping.
                                (!escaped).then_some(value)
                            }
                            None => {
                                malformed = true;
                                rest = &[];
                                None
                            }
                        },
                        None => {
                            let end = after
                                .iter()
                                .position(|&b| b == b';' || b == b',')
                                .unwrap_or(after.len());
                            rest = &after[end..];
                            Some(after[..end].trim_ascii_end())
                        }
                    };
                    if name.eq_ignore_ascii_case(b"for") {
                        node = value.and_then(parse_node);
                    } else if name.eq_ignore_ascii_case(b"proto") {
                        proto = value;
                    }
                } else if !name.is_empty() {
                    // A pair without `=`.
                    empty = false;
                    malformed = true;
                }
                let rest = rest.trim_ascii_start();
                match rest.first() {
                    None => {
                        self.rest = rest;
                        break;
                    }
                    Some(b';') => self.rest = &rest[1..],
                    Some(b',') => {
                        self.rest = &rest[1..];
                        break;
                    }
                    Some(_) => {
                        // Bytes after a quoted string: skipped up to the next separator.
                        malformed = true;
                        let end = rest
                            .iter()
                            .position(|&b| b == b';' || b == b',')
                            .unwrap_or(rest.len());
                        self.rest = &rest[end..];
                    }
                }
            }
            if !empty || malformed {
                return Some(if malformed {
                    Element {
                        node: None,
                        proto: None,
                    }
                } else {
                    Element { node, proto }
                });
            }
        }
    }
}

/// A quoted string's content (after its opening quote), whether it holds escapes, and what
/// follows its closing quote; `None` when it is not closed.
fn quoted(bytes: &[u8]) -> Option<(&[u8], bool, &[u8])> {
    let mut escaped = false;
    let mut any_escape = false;
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
            any_escape = true;
        } else if b == b'"' {
            return Some((&bytes[..i], any_escape, &bytes[i + 1..]));
        }
    }
    None
}

/// Reads one trusted proxy: an IP address or a network in CIDR notation.
fn parse_net(proxy: &str) -> Result<IpNet, InvalidProxy> {
    let trimmed = proxy.trim();
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    trimmed
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .map_err(|_| InvalidProxy {
            proxy: proxy.to_owned(),
        })
}

/// A trusted proxy that is neither an IP address nor a network in CIDR notation, from
/// [`SseLayer::try_trusted_proxies`](crate::SseLayer::try_trusted_proxies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidProxy {
    proxy: String,
}

impl fmt::Display for InvalidProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trusted proxy {:?} is neither an IP address nor a network: write an address, e.g. \
             \"10.0.0.7\" or \"::1\", or a network in CIDR notation, e.g. \"10.0.0.0/8\" or \
             \"fd00::/8\"",
            self.proxy
        )
    }
}

impl std::error::Error for InvalidProxy {}
