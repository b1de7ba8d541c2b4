//! Polling a URL: conditional `GET` over plain HTTP, with a cap on the answer.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::header::{ACCEPT, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderValue, StatusCode};

use super::source::{Failure, Fetched};

/// What makes the next request conditional: the last answer's `ETag` and `Last-Modified`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Validators {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

impl Validators {
    fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// The HTTP client URL sources share (one connection pool per poller).
pub(super) struct Client {
    client: Result<reqwest::Client, String>,
    max_body_bytes: usize,
}

/// Looks a host name up: its addresses, in the resolver's order.
pub(super) type Lookup =
    Arc<dyn Fn(String) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> + Send + Sync>;

impl Client {
    /// A client whose names resolve through the system's resolver (`getaddrinfo`, on a
    /// blocking thread, as reqwest's own resolver does).
    pub(super) fn new(timeout: Duration, max_body_bytes: usize, private_names: bool) -> Client {
        let lookup: Lookup = Arc::new(|host: String| {
            async move {
                let addrs = tokio::task::spawn_blocking(move || {
                    (host.as_str(), 0)
                        .to_socket_addrs()
                        .map(|addrs| addrs.map(|addr| addr.ip()).collect::<Vec<_>>())
                })
                .await
                .map_err(io::Error::other)??;
                Ok(addrs)
            }
            .boxed()
        });
        Client::with_lookup(timeout, max_body_bytes, private_names, lookup)
    }

    /// A client whose names resolve with `lookup`; unless `private_names`, only to public
    /// addresses (see [`Resolver`]).
    pub(super) fn with_lookup(
        timeout: Duration,
        max_body_bytes: usize,
        private_names: bool,
        lookup: Lookup,
    ) -> Client {
        let client = reqwest::Client::builder()
            // A redirect could lead anywhere, an allowlist's checks included.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            // The answer as the upstream sends it, whatever features another crate enables:
            // `max_body_bytes` caps the bytes received, never what they inflate to.
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .dns_resolver(resolver(lookup, private_names))
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tower-sse-poll/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| err.to_string());
        Client {
            client,
            max_body_bytes,
        }
    }

    /// One `GET` of `url`, conditional on `validators`.
    pub(super) async fn fetch(
        &self,
        url: &reqwest::Url,
        validators: &Validators,
    ) -> Result<Fetched, Failure> {
        let client = self.client.as_ref().map_err(|err| {
            tracing::warn!(error = %err, "the poller's HTTP client could not be built");
            Failure::new("the poller cannot make requests")
        })?;
        let mut request = client
            .get(url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(etag) = &validators.etag {
            request = request.header(IF_NONE_MATCH, etag.clone());
        }
        if let Some(modified) = &validators.last_modified {
            request = request.header(IF_MODIFIED_SINCE, modified.clone());
        }
        let mut response = request.send().await.map_err(|err| {
            tracing::warn!(url = %url, error = %err, "poll request failed");
            if refused_name(&err) {
                Failure::new("the upstream's name does not resolve to a public address")
            } else if err.is_timeout() {
                Failure::new("the upstream did not answer in time")
            } else if err.is_connect() {
                Failure::new("the upstream cannot be reached")
            } else {
                Failure::new("the upstream request failed")
            }
        })?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && !validators.is_empty() {
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            tracing::warn!(url = %url, %status, "poll answered with an error status");
            let why = if status == StatusCode::NOT_MODIFIED {
                // To a request without `If-None-Match` or `If-Modified-Since`.
                " to a request that was not conditional"
            } else if status.is_redirection() {
                " (redirects are not followed)"
            } else {
                ""
            };
            return Err(Failure {
                message: format!("the upstream answered {}{why}", status.as_u16()),
                status: Some(status.as_u16()),
            });
        }
        let next = Validators {
            etag: response.headers().get(ETAG).cloned(),
            last_modified: response.headers().get(LAST_MODIFIED).cloned(),
        };
        let too_large = || {
            tracing::warn!(url = %url, max = self.max_body_bytes, "poll answer too large");
            Failure {
                message: format!(
                    "the upstream's answer is larger than {} bytes",
                    self.max_body_bytes
                ),
                status: None,
            }
        };
        if response
            .content_length()
            .is_some_and(|length| length > self.max_body_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_body_bytes {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(url = %url, error = %err, "poll answer cut off");
                    return Err(if err.is_timeout() {
                        Failure::new("the upstream did not answer in time")
                    } else {
                        Failure::new("the upstream's answer was cut off")
                    });
                }
            }
        }
        match serde_json::from_slice(&body) {
            Ok(value) => Ok(Fetched::Value(value, next)),
            Err(err) => {
                tracing::warn!(url = %url, error = %err, "poll answer is not JSON");
                Err(Failure::new("the upstream's answer is not JSON"))
            }
        }
    }
}

/// Resolves the host names of URL sources, for reqwest (which connects to an IP literal as
/// written, without asking it). Unless `private_names`, a name may lead only to public
/// addresses: whoever controls a name's DNS (or rebinds it between two polls) must not reach
/// this server's loopback, its private network or a cloud's metadata service through it. The
/// addresses that are not public are left out, and a name with none left fails the poll.
/// `localhost` and the names under `.localhost` are loopback by definition (RFC 6761): they
/// resolve to `127.0.0.1` and `::1` without a lookup, and are allowed, since whoever wrote
/// `http://localhost…` meant this host.
struct Resolver {
    lookup: Lookup,
    private_names: bool,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let lookup = self.lookup.clone();
        let private_names = self.private_names;
        Box::pin(async move {
            let to_addrs = |ips: Vec<IpAddr>| -> reqwest::dns::Addrs {
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)))
            };
            if is_localhost(&host) {
                return Ok(to_addrs(vec![
                    Ipv4Addr::LOCALHOST.into(),
                    Ipv6Addr::LOCALHOST.into(),
                ]));
            }
            let mut ips = lookup(host.clone()).await?;
            if !private_names {
                ips.retain(|ip| is_public(*ip));
                if ips.is_empty() {
                    return Err(Box::new(NotPublic { host }) as Box<_>);
                }
            }
            Ok(to_addrs(ips))
        })
    }
}

/// The resolver of a client: see [`Resolver`].
pub(super) fn resolver(lookup: Lookup, private_names: bool) -> Arc<impl reqwest::dns::Resolve> {
    Arc::new(Resolver {
        lookup,
        private_names,
    })
}

/// Whether `host` is `localhost` or a name under it (a trailing dot aside).
fn is_localhost(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// Whether `ip` is a public unicast address: not loopback, private (`10/8`, `172.16/12`,
/// `192.168/16`), shared (`100.64/10`), link-local (`169.254/16`, `fe80::/10`), unique-local
/// (`fc00::/7`), site-local (`fec0::/10`), unspecified, `0/8`, benchmarking (`198.18/15`),
/// reserved (`240/4`), broadcast or multicast; IPv4 inside IPv6 (`::ffff:a.b.c.d`,
/// `::a.b.c.d`, NAT64 `64:ff9b::/96`) as that IPv4 address.
pub(super) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(ip) => {
            if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
                return false;
            }
            let segments = ip.segments();
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., high, low] = segments;
                let v4 = (u32::from(high) << 16) | u32::from(low);
                return is_public(IpAddr::V4(v4.into()));
            }
            if let Some(v4) = ip.to_ipv4() {
                return is_public(IpAddr::V4(v4));
            }
            let first = segments[0];
            !((first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0)
        }
    }
}

/// A host name that resolves to no public address.
#[derive(Debug)]
struct NotPublic {
    host: String,
}

impl fmt::Display for NotPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves to no public address (the poller's allow_private_names is off)",
            self.host
        )
    }
}

impl std::error::Error for NotPublic {}

/// Whether a request failed because its host's name resolves to no public address.
fn refused_name(err: &reqwest::Error) -> bool {
    let mut source = err.source();
    while let Some(err) = source {
        if err.is::<NotPublic>() {
            return true;
        }
        source = err.source();
    }
    false
}
