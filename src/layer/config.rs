//! The layer's runtime configuration, shared by its service, response future and body: what
//! [`SseLayer`](super::SseLayer)'s setters build, behind one `Arc`.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderName, Method};

use super::cors::{AllowedOrigins, Cors};
use super::host::AllowedHosts;
use super::origin::Scheme;
use super::proxy::TrustedProxies;
use crate::registry::{Limits, Registry};

/// Size of the optional padding comment for old polyfills.
const PADDING: usize = 2048;

/// The settings of one [`SseLayer`](super::SseLayer), and what is derived from them.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) retry: Option<Duration>,
    pub(crate) initial_comment: bool,
    pub(crate) padding: bool,
    /// The bytes a stream starts with (initial comment, padding, retry hint), if any.
    pub(crate) prelude: Option<Bytes>,
    pub(crate) origins: Option<AllowedOrigins>,
    pub(crate) allow_methods: Vec<Method>,
    pub(crate) allow_headers: Vec<HeaderName>,
    /// The CORS rules derived from the settings above; `None` without allowed origins.
    pub(crate) cors: Option<Cors>,
    pub(crate) registry: Registry,
    pub(crate) limits: Limits,
    pub(crate) shutdown_retry: Duration,
    pub(crate) over_limit_retry: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    /// Whose `Forwarded` and `X-Forwarded-For` headers are believed; `None`: nobody's.
    pub(crate) trusted_proxies: Option<TrustedProxies>,
    pub(crate) shutdown_grace: Duration,
    /// The hosts served ([`SseLayer::allow_hosts`](super::SseLayer::allow_hosts)); `None`: every host.
    pub(crate) hosts: Option<AllowedHosts>,
    /// [`SseLayer::public_scheme`](super::SseLayer::public_scheme).
    pub(crate) public_scheme: Option<Scheme>,
    /// Whether cross-origin requests with unsafe methods are refused (on by default).
    pub(crate) cross_origin_protection: bool,
    /// [`SseLayer::compression`](super::SseLayer::compression) (feature `compression`); see `super::compression`.
    pub(crate) compression: super::compression::Settings,
}

impl Config {
    /// Recomputes what is derived from the settings.
    pub(crate) fn refresh(&mut self) {
        self.prelude = self.build_prelude();
        self.cors = self
            .origins
            .as_ref()
            .map(|origins| Cors::new(origins.clone(), &self.allow_methods, &self.allow_headers));
    }

    fn build_prelude(&self) -> Option<Bytes> {
        if !self.initial_comment && !self.padding && self.retry.is_none() {
            return None;
        }
        let mut buf = BytesMut::with_capacity(if self.padding { PADDING + 32 } else { 32 });
        if self.initial_comment || self.padding {
            buf.put_u8(b':');
            if self.padding {
                buf.put_bytes(b' ', PADDING);
            }
            buf.put_u8(b'\n');
        }
        if let Some(retry) = self.retry {
            let retry = crate::Event::retry(retry);
            // `retry: N\n\n` without its blank line: the prelude ends with one below.
            buf.put_slice(&retry.as_bytes()[..retry.len() - 1]);
        }
        buf.put_u8(b'\n');
        Some(buf.freeze())
    }
}
