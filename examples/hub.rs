//! The tower-sse hub server: publish to topics over HTTP, subscribe with `EventSource`.
//!
//! Secure by default: publishing needs a token (a JWT whose `sse.publish` selectors match the
//! topic), and so do the admin routes; subscribing is open on the topics of `PUBLIC_TOPICS`
//! (every topic by default) and needs a token elsewhere. Without `JWT_SECRET` or
//! `JWT_PUBLIC_KEY`, the server signs tokens with a random secret made at start and prints a
//! publisher token and the admin page's address:
//!
//! ```text
//! cargo run --release --example hub                          # prints TOKEN=… and the admin URL
//! TOKEN=…                                                    # the line it printed
//! curl -N http://127.0.0.1:3000/events/news                  # subscribe
//! curl -H "Authorization: Bearer $TOKEN" -d hello http://127.0.0.1:3000/publish/news   # {"id":"…"}
//! curl -H "Authorization: Bearer $TOKEN" -d '{"p":1}' 'http://127.0.0.1:3000/publish/news?event=price'
//! curl -H "Authorization: Bearer $TOKEN" -H 'Idempotency-Key: order-42' -d hi http://127.0.0.1:3000/publish/news
//! curl -N -H 'Last-Event-ID: <id>' http://127.0.0.1:3000/events/news   # resume
//! curl -N 'http://127.0.0.1:3000/events/news?from=oldest'    # everything retained, then live
//! curl http://127.0.0.1:3000/topics/news                     # subscribers, retained events
//! curl -H "Authorization: Bearer $TOKEN" -X POST http://127.0.0.1:3000/close/news   # end its streams
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/connections  # admin token
//! curl http://127.0.0.1:3000/health                         # {"backend":"ok"}, or 503
//! curl -H "Authorization: Bearer $ADMIN" http://127.0.0.1:3000/metrics  # Prometheus text
//! ```
//!
//! Tokens carry `{"sse": {"publish": [sel…], "subscribe": [sel…], "admin": true}, "exp": …}`, a
//! selector being an exact topic, a prefix ending in `*`, or `*`; they are read from
//! `Authorization: Bearer`, the cookie `sse_token` (what an `EventSource` sends), or the
//! `authorization` query parameter (a last resort: URLs end up in logs). With `JWT_SECRET` set,
//! `hub token` mints one:
//!
//! ```text
//! export JWT_SECRET=$(openssl rand -base64 32)
//! PUBLIC_TOPICS=news cargo run --release --example hub &
//! TOKEN=$(cargo run -q --release --example hub -- token --subscribe 'user/42/*')
//! curl -N -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/events/user/42/inbox
//! ```
//!
//! - Publishing (`/publish/{topic}`, `/close/{topic}`): `401` without a token, `403` when no
//!   publish selector matches. Event names the hub sends itself (`gap`, `end`, `done`, `error`,
//!   `cancelled`) are refused with `400`.
//! - A publisher that retries sends an `Idempotency-Key` (1 to 128 visible ASCII characters,
//!   as is or as a quoted string, `"order-42"`; one per event, the same on each retry of it):
//!   a publish with a key the topic saw in the last 5 minutes stores nothing and answers the
//!   first one's id, with `Idempotent-Replayed: true`; the same key with another event is
//!   `422`. A failed publish answers `503` when nothing was stored (retry later), and `504`
//!   when the outcome is unknown (Redis did not answer: it may be stored; retry with the same
//!   key, as without one it may be stored twice).
//! - Subscribing (`/events/{topic}`, `/topics/{topic}`): open on `PUBLIC_TOPICS`, else `401`
//!   without a token and `403` when no subscribe selector matches, replay included. A stream
//!   ends when its token expires, with a `retry:` hint.
//! - `/connections` and the admin page (`/admin`) need `"admin": true`, and so does
//!   `/metrics` (Prometheus text: connections, disconnects by reason, events, replays and gaps,
//!   topics, backend errors; see `tower_sse::metrics`), which the `METRICS_TOKEN` bearer also
//!   reads, unless `METRICS_PUBLIC=1`.
//! - A token that does not hold (expired, another key, malformed) is `401`, with why in
//!   `WWW-Authenticate`, even on a public topic.
//! - A browser page of another origin cannot publish through its visitors (`403` before the
//!   handler, unless `ALLOW_ORIGINS` lists it), and a `Host` the server does not answer for
//!   (DNS rebinding) is `421`.
//!
//! Configuration, from the environment:
//!
//! ```text
//! ADDR            listen address, default 127.0.0.1:3000; prints "listening on http://ADDR" when ready
//! JWT_SECRET      HS256 secret that tokens are signed with, 32 bytes or more
//!                 (openssl rand -base64 32)
//! JWT_PUBLIC_KEY  path of a PEM public key (RS256, ES256, ES384, EdDSA) instead: tokens are
//!                 signed elsewhere, with its private key; this server cannot mint any
//!                 (with neither: a random secret for this run, and a token printed at start)
//! PUBLIC_TOPICS   comma-separated selectors of the topics anyone may subscribe to without a
//!                 token (default *: every topic; empty: none)
//! ALLOW_HOSTS     comma-separated host[:port] names the server answers for (default: the
//!                 listen address, localhost, 127.0.0.1 and [::1], with its port); list the
//!                 public name when clients reach it by one
//! ALLOW_ORIGINS   comma-separated origins allowed with credentials (default none: same origin only)
//! KEEP_ALIVE      keep-alive interval in seconds (default 15)
//! HISTORY         events kept per topic (default 1000)
//! MAX_TOPICS      topics at once in the whole hub (default 100000)
//! MAX_HISTORY_BYTES  bytes of retained events in all topics together (default 67108864)
//! TOPIC_IDLE_TTL  seconds after which a topic without subscribers or publishes is dropped
//!                 (default 3600)
//! MAX_CONNECTIONS global cap on open streams (default none)
//! MAX_CONNECTIONS_PER_PEER  cap on open streams from one client address (default 50; 0: none),
//!                 so one client cannot take every slot; behind a proxy, set TRUSTED_PROXIES
//!                 too, or every client counts as the proxy
//! TRUSTED_PROXIES comma-separated addresses or CIDR networks of the reverse proxies in front
//!                 (e.g. 127.0.0.1,10.0.0.0/8): their Forwarded / X-Forwarded-For headers name
//!                 the client (default none: those headers are ignored)
//! WRITE_TIMEOUT   seconds a client may accept no bytes while its stream has something to send
//!                 before the stream is ended (default 30; 0: never)
//! SEND_BUFFER     socket send buffer per connection, in bytes (default 65536; 0: the kernel's
//!                 automatic sizing)
//! SHUTDOWN_DEADLINE  seconds a graceful shutdown may take before open connections are reset
//!                 (default 10)
//! HTTP1_FAST_PATH 0: serve every request with hyper, without `tower_sse::serve`'s HTTP/1 fast
//!                 path for event streams (default 1)
//! REDIS_URL       e.g. redis://127.0.0.1:6379: keep history in Redis Streams, so several hub
//!                 servers share it (default: in memory); give them the same JWT_SECRET
//! METRICS_TOKEN   a secret of 32 characters or more that reads /metrics, and nothing else, as
//!                 `Authorization: Bearer …` (what to give Prometheus: `authorization:
//!                 { credentials_file: … }` in its scrape config); admin tokens read it too
//! METRICS_PUBLIC  1: anyone may read /metrics (default 0)
//! ```
//!
//! SIGINT or SIGTERM shuts it down gracefully: every stream ends with a `retry:` hint, then the
//! process exits.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use axum::extract::{FromRef, Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tower_sse::auth::jwt::{Claims, Jwt};
use tower_sse::auth::{Action, Identity};
use tower_sse::backend::{Health, Start};
use tower_sse::{Event, Hub, HubError, LastEventId, Publish, SseLayer, Subscription};

#[path = "hub/admin.rs"]
mod admin;
#[path = "hub/metrics.rs"]
pub mod metrics;

/// The clock skew allowed on a token's `exp`: short, so a stream ends soon after its token.
pub const JWT_LEEWAY: Duration = Duration::from_secs(5);

/// How long the tokens printed at start (with a random secret) are valid.
pub const PRINTED_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a token minted by `hub token` is valid unless `--ttl` says otherwise.
pub const MINTED_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// An HS256 secret. Its `Debug` does not show it.
#[derive(Clone)]
pub struct JwtSecret(String);

impl JwtSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        JwtSecret(secret.into())
    }
}

impl From<&str> for JwtSecret {
    fn from(secret: &str) -> Self {
        JwtSecret::new(secret)
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(…)")
    }
}

/// The hub server's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on; once bound, the address listened on (its port decides the
    /// default [allowed hosts](Self::allowed_hosts)).
    pub addr: String,
    /// `None` with no `jwt_public_key` either: a random secret for this run.
    pub jwt_secret: Option<JwtSecret>,
    /// A PEM public key file: tokens are signed elsewhere.
    pub jwt_public_key: Option<PathBuf>,
    /// Selectors of the topics anyone may subscribe to without a token.
    pub public_topics: Vec<String>,
    /// Empty: the default of [`allowed_hosts`](Self::allowed_hosts).
    pub allow_hosts: Vec<String>,
    pub allow_origins: Vec<String>,
    pub keep_alive: Duration,
    pub history: usize,
    pub max_topics: Option<usize>,
    pub max_history_bytes: Option<usize>,
    pub topic_idle_ttl: Option<Duration>,
    pub max_connections: Option<usize>,
    /// `None`: no per-peer cap.
    pub max_connections_per_peer: Option<usize>,
    pub trusted_proxies: Vec<String>,
    /// `None`: no write timeout.
    pub write_timeout: Option<Duration>,
    /// `None`: `tower_sse::serve`'s default; `Some(0)`: the kernel's automatic sizing.
    pub send_buffer: Option<usize>,
    /// `None`: `tower_sse::serve`'s default.
    pub shutdown_deadline: Option<Duration>,
    /// `Serve::http1_fast_path`.
    pub http1_fast_path: bool,
    pub redis_url: Option<String>,
    /// Whether anyone may read `/metrics` (else an admin token or `metrics_token`).
    pub metrics_public: bool,
    /// A bearer secret that reads `/metrics` and nothing else (`METRICS_TOKEN`).
    pub metrics_token: Option<String>,
}

/// The default cap on open streams from one client address.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 50;

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:3000".to_owned(),
            jwt_secret: None,
            jwt_public_key: None,
            public_topics: vec!["*".to_owned()],
            allow_hosts: Vec::new(),
            allow_origins: Vec::new(),
            keep_alive: Duration::from_secs(15),
            history: 1000,
            max_topics: None,
            max_history_bytes: None,
            topic_idle_ttl: None,
            max_connections: None,
            max_connections_per_peer: Some(DEFAULT_MAX_CONNECTIONS_PER_PEER),
            trusted_proxies: Vec::new(),
            write_timeout: Some(tower_sse::layer::DEFAULT_WRITE_TIMEOUT),
            send_buffer: None,
            shutdown_deadline: None,
            http1_fast_path: true,
            redis_url: None,
            metrics_public: false,
            metrics_token: None,
        }
    }
}

impl Config {
    /// Reads the settings from the environment; the error says which variable is wrong (and
    /// never shows a secret).
    pub fn from_env() -> Result<Config, String> {
        let mut config = Config::default();
        if let Ok(addr) = std::env::var("ADDR") {
            config.addr = addr;
        }
        config.jwt_secret = text("JWT_SECRET")?.map(JwtSecret::new);
        config.jwt_public_key = text("JWT_PUBLIC_KEY")?.map(PathBuf::from);
        if let Ok(topics) = std::env::var("PUBLIC_TOPICS") {
            config.public_topics = list(&topics);
        }
        if let Ok(hosts) = std::env::var("ALLOW_HOSTS") {
            config.allow_hosts = list(&hosts);
        }
        if let Ok(origins) = std::env::var("ALLOW_ORIGINS") {
            config.allow_origins = list(&origins);
        }
        if let Some(secs) = number("KEEP_ALIVE")? {
            config.keep_alive = Duration::from_secs(secs as u64);
        }
        if let Some(history) = number("HISTORY")? {
            config.history = history;
        }
        config.max_topics = number("MAX_TOPICS")?;
        config.max_history_bytes = number("MAX_HISTORY_BYTES")?;
        config.topic_idle_ttl =
            number("TOPIC_IDLE_TTL")?.map(|secs| Duration::from_secs(secs as u64));
        config.max_connections = number("MAX_CONNECTIONS")?;
        if let Some(max) = number("MAX_CONNECTIONS_PER_PEER")? {
            config.max_connections_per_peer = (max > 0).then_some(max);
        }
        if let Ok(proxies) = std::env::var("TRUSTED_PROXIES") {
            config.trusted_proxies = list(&proxies);
        }
        if let Some(secs) = number("WRITE_TIMEOUT")? {
            config.write_timeout = (secs > 0).then(|| Duration::from_secs(secs as u64));
        }
        config.send_buffer = number("SEND_BUFFER")?;
        config.shutdown_deadline =
            number("SHUTDOWN_DEADLINE")?.map(|secs| Duration::from_secs(secs as u64));
        if text("HTTP1_FAST_PATH")?.is_some() {
            config.http1_fast_path = switch("HTTP1_FAST_PATH")?;
        }
        config.redis_url = std::env::var("REDIS_URL")
            .ok()
            .filter(|url| !url.is_empty());
        config.metrics_public = switch("METRICS_PUBLIC")?;
        config.metrics_token = text("METRICS_TOKEN")?;
        if config
            .metrics_token
            .as_ref()
            .is_some_and(|token| token.len() < 32 || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err("METRICS_TOKEN must be 32 visible ASCII characters or more".to_owned());
        }
        Ok(config)
    }

    /// The `Host` names the server answers for: `allow_hosts` when set; by default the address
    /// it listens on (unless that is `0.0.0.0` or `::`, which no client names), `localhost`,
    /// `127.0.0.1` and `[::1]`, each with the port listened on (with any port while that is 0,
    /// not bound yet).
    pub fn allowed_hosts(&self) -> Vec<String> {
        if !self.allow_hosts.is_empty() {
            return self.allow_hosts.clone();
        }
        let (host, port) = split_host_port(&self.addr);
        let port = port
            .filter(|&port| port != 0)
            .map_or_else(String::new, |port| format!(":{port}"));
        let listened = host.filter(|host| !is_unspecified(host));
        let mut hosts: Vec<String> = Vec::new();
        for name in listened
            .as_deref()
            .into_iter()
            .chain(["localhost", "127.0.0.1", "[::1]"])
        {
            let entry = format!("{name}{port}");
            if !hosts.contains(&entry) {
                hosts.push(entry);
            }
        }
        hosts
    }

    /// Whether the server listens on every address (`0.0.0.0`, `::`): clients then reach it by
    /// names only `ALLOW_HOSTS` can list.
    pub fn listens_on_every_address(&self) -> bool {
        split_host_port(&self.addr)
            .0
            .is_some_and(|host| is_unspecified(&host))
    }

    /// The server's own URL, for the lines it prints: the address listened on, or the loopback
    /// one when that is every address.
    pub fn base_url(&self) -> String {
        match self.addr.parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_unspecified() => {
                let loopback = match addr.ip() {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                };
                format!("http://{}", SocketAddr::new(loopback, addr.port()))
            }
            _ => format!("http://{}", self.addr),
        }
    }
}

/// The host (`[…]` around an IPv6 address) and port of `host:port`.
fn split_host_port(addr: &str) -> (Option<String>, Option<u16>) {
    if let Ok(addr) = addr.parse::<SocketAddr>() {
        let host = match addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        return (Some(host), Some(addr.port()));
    }
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            Some(host.to_owned()).filter(|host| !host.is_empty()),
            port.parse().ok(),
        ),
        None => (Some(addr.to_owned()).filter(|host| !host.is_empty()), None),
    }
}

fn is_unspecified(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// The items of a comma-separated list, trimmed, empty ones left out.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number(name: &str) -> Result<Option<usize>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} must be a whole number, not {value:?}")),
    }
}

/// A yes-or-no variable: `1`, `true` or `yes`; `0`, `false`, `no`, empty or unset.
fn switch(name: &str) -> Result<bool, String> {
    match text(name)?
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(_) => Err(format!("{name} must be 1 or 0")),
    }
}

/// A variable's value; `None` when unset or empty. The error does not show the value.
fn text(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}

/// How the server verifies tokens, and signs them when it holds a secret.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The hub's policy.
    pub jwt: Jwt,
    pub source: KeySource,
}

/// Where the server's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Neither `JWT_SECRET` nor `JWT_PUBLIC_KEY`: a random secret made for this run.
    Random,
    /// `JWT_SECRET`.
    Secret,
    /// `JWT_PUBLIC_KEY`, this file.
    PublicKey(PathBuf),
}

impl Keys {
    /// The keys `config` names, or a random secret; the policy with the server's leeway
    /// ([`JWT_LEEWAY`]) and public topics.
    pub fn from_config(config: &Config) -> Result<Keys, String> {
        let (jwt, source) = match (&config.jwt_secret, &config.jwt_public_key) {
            (Some(_), Some(_)) => {
                return Err("set JWT_SECRET or JWT_PUBLIC_KEY, not both".to_owned());
            }
            (Some(secret), None) => (
                Jwt::hs256(secret.0.as_bytes()).map_err(|err| format!("JWT_SECRET: {err}"))?,
                KeySource::Secret,
            ),
            (None, Some(path)) => (
                Jwt::from_pem_file(path).map_err(|err| format!("JWT_PUBLIC_KEY: {err}"))?,
                KeySource::PublicKey(path.clone()),
            ),
            (None, None) => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|err| {
                    format!("cannot make a random secret ({err}): set JWT_SECRET")
                })?;
                let jwt = Jwt::hs256(secret).map_err(|err| err.to_string())?;
                (jwt, KeySource::Random)
            }
        };
        let jwt = jwt
            .leeway(JWT_LEEWAY)
            .public_topics(config.public_topics.iter().map(String::as_str));
        Ok(Keys { jwt, source })
    }

    /// A token carrying `claims`.
    ///
    /// # Errors
    ///
    /// Keys from `JWT_PUBLIC_KEY`, which cannot sign; claims without an expiry.
    pub fn mint(&self, claims: &Claims) -> Result<String, String> {
        self.jwt.sign(claims).map_err(|err| err.to_string())
    }
}

/// What the server prints before `listening on`: how it verifies tokens (with a random secret:
/// a publisher token, the admin page's address with an admin token, both valid for
/// [`PRINTED_TOKEN_TTL`]), which topics are public and which hosts it answers for.
/// `config.addr` is the address it listens on. A secret is never printed.
pub fn startup_message(config: &Config, keys: &Keys) -> Result<String, String> {
    let mut out = String::new();
    let base = config.base_url();
    let hours = PRINTED_TOKEN_TTL.as_secs() / 3600;
    match &keys.source {
        KeySource::Random => {
            let everything = Claims::new()
                .publish(["*"])
                .subscribe(["*"])
                .expires_in(PRINTED_TOKEN_TTL);
            let publisher = keys.mint(&everything)?;
            let admin = keys.mint(&everything.admin(true))?;
            let _ = writeln!(
                out,
                "tokens: no JWT_SECRET or JWT_PUBLIC_KEY, so they are signed with a random \
                 secret made for this run (set JWT_SECRET to keep them valid across restarts)"
            );
            let _ = writeln!(
                out,
                "publisher token, to publish and subscribe on every topic, for {hours} h:"
            );
            let _ = writeln!(out, "  TOKEN={publisher}");
            let _ = writeln!(
                out,
                "  curl -H \"Authorization: Bearer $TOKEN\" -d hello {base}/publish/news"
            );
            let _ = writeln!(
                out,
                "admin page, for {hours} h: {base}/admin?authorization={admin}"
            );
        }
        KeySource::Secret => {
            let _ = writeln!(
                out,
                "tokens: HS256, signed with JWT_SECRET; mint one with \
                 `cargo run --example hub -- token --publish '*'`"
            );
        }
        KeySource::PublicKey(path) => {
            let _ = writeln!(
                out,
                "tokens: {}, verified with the public key in {}; this server cannot mint \
                 tokens: sign them with the private key",
                keys.jwt.algorithm(),
                path.display()
            );
        }
    }
    let _ = match config.public_topics.as_slice() {
        [] => writeln!(
            out,
            "public topics: none, subscribing needs a token (PUBLIC_TOPICS)"
        ),
        topics if topics.iter().any(|t| t == "*") => writeln!(
            out,
            "public topics: all, anyone may subscribe to any topic without a token \
             (PUBLIC_TOPICS lists the public ones, the others need a token)"
        ),
        topics => writeln!(
            out,
            "public topics: {} (PUBLIC_TOPICS); the others need a token",
            topics.join(", ")
        ),
    };
    let hosts = config.allowed_hosts().join(", ");
    if config.listens_on_every_address() && config.allow_hosts.is_empty() {
        let _ = writeln!(
            out,
            "listening on every address: set ALLOW_HOSTS to the names clients reach this \
             server by (e.g. ALLOW_HOSTS=push.example.com); until then it answers for {hosts} \
             only"
        );
    } else {
        let _ = writeln!(out, "hosts: {hosts} (ALLOW_HOSTS)");
    }
    Ok(out)
}

/// Usage of `hub token`.
pub const TOKEN_USAGE: &str = "usage: hub token [--publish SELECTOR]... [--subscribe SELECTOR]... \
[--admin] [--subject SUB] [--ttl SECONDS]
  prints a token signed with JWT_SECRET, valid for --ttl seconds (default 3600); a selector is
  a topic, a prefix ending in *, or * (quote it in the shell: '*')";

/// `hub token …`: a token signed with `JWT_SECRET`, for the hub servers that share it. `args`
/// are those after `token`.
///
/// # Errors
///
/// No `JWT_SECRET` (each server would make a random secret of its own), a public key (which
/// cannot sign), or arguments [`TOKEN_USAGE`] does not describe.
pub fn token_command(config: &Config, args: &[String]) -> Result<String, String> {
    if config.jwt_secret.is_none() && config.jwt_public_key.is_none() {
        return Err(
            "JWT_SECRET is not set: without it, each hub server makes a random secret \
                    of its own, which no token minted here matches; export JWT_SECRET \
                    (openssl rand -base64 32) for both"
                .to_owned(),
        );
    }
    let keys = Keys::from_config(config)?;
    let mut claims = Claims::new();
    let mut ttl = MINTED_TOKEN_TTL;
    let mut rights = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{arg} needs a value\n{TOKEN_USAGE}"))
        };
        match arg.as_str() {
            "--publish" => {
                claims = claims.publish([value()?]);
                rights = true;
            }
            "--subscribe" => {
                claims = claims.subscribe([value()?]);
                rights = true;
            }
            "--admin" => {
                claims = claims.admin(true);
                rights = true;
            }
            "--subject" => claims = claims.subject(value()?),
            "--ttl" => {
                let secs = value()?;
                ttl = secs
                    .parse()
                    .ok()
                    .filter(|&secs| secs > 0)
                    .map(Duration::from_secs)
                    .ok_or_else(|| format!("--ttl takes whole seconds, not {secs:?}"))?;
            }
            "-h" | "--help" => return Err(TOKEN_USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{TOKEN_USAGE}")),
        }
    }
    if !rights {
        return Err(format!(
            "a token needs --publish, --subscribe or --admin\n{TOKEN_USAGE}"
        ));
    }
    keys.mint(&claims.expires_in(ttl))
}

/// The hub server's parts: the router, the layer (whose `shutdown_on` ends every stream at
/// shutdown), the hub, its keys and how to serve it.
pub struct App {
    pub router: Router,
    pub sse: SseLayer,
    pub hub: Hub,
    /// `None` for an app built without the hub server's policy ([`App::new`]).
    pub keys: Option<Keys>,
    /// As [`Config::send_buffer`].
    pub send_buffer: Option<usize>,
    /// As [`Config::shutdown_deadline`].
    pub shutdown_deadline: Option<Duration>,
    /// As [`Config::http1_fast_path`].
    pub http1_fast_path: bool,
}

impl App {
    /// Routes built elsewhere, served as the hub server serves its own.
    pub fn new(router: Router, sse: SseLayer, hub: Hub) -> App {
        App {
            router,
            sse,
            hub,
            keys: None,
            send_buffer: None,
            shutdown_deadline: None,
            http1_fast_path: true,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    hub: Hub,
    activity: admin::Activity,
}

impl FromRef<AppState> for Hub {
    fn from_ref(state: &AppState) -> Hub {
        state.hub.clone()
    }
}

impl FromRef<AppState> for admin::Activity {
    fn from_ref(state: &AppState) -> admin::Activity {
        state.activity.clone()
    }
}

/// Builds the app; the error says which setting is wrong. `config.addr` is the address the
/// server listens on (see [`Config::allowed_hosts`]).
pub async fn app(config: &Config) -> Result<App, String> {
    let keys = Keys::from_config(config)?;
    let mut builder = Hub::builder()
        .history_events(config.history)
        .policy(keys.jwt.clone());
    if let Some(max) = config.max_topics {
        builder = builder.max_topics(max);
    }
    if let Some(max) = config.max_history_bytes {
        builder = builder.max_history_bytes(max);
    }
    if let Some(ttl) = config.topic_idle_ttl {
        builder = builder.topic_idle_ttl(ttl);
    }
    let hub = match &config.redis_url {
        Some(url) => builder
            .redis(url)
            .await
            .map_err(|err| format!("REDIS_URL: {err}"))?,
        None => builder.memory(),
    };
    let mut sse = SseLayer::new()
        .keep_alive(config.keep_alive)
        .registry(hub.registry())
        // Pages of allowed origins publish with a token in a header, which `fetch` preflights.
        .allow_methods([Method::POST])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE])
        .try_allow_hosts(config.allowed_hosts())
        .map_err(|err| format!("ALLOW_HOSTS: {err}"))?;
    if !config.allow_origins.is_empty() {
        sse = sse
            .try_allow_origins(&config.allow_origins)
            .map_err(|err| format!("ALLOW_ORIGINS: {err}"))?;
    }
    if let Some(max) = config.max_connections {
        sse = sse.max_connections(max);
    }
    if let Some(max) = config.max_connections_per_peer {
        sse = sse.max_connections_per_peer(max);
    }
    sse = sse
        .try_trusted_proxies(&config.trusted_proxies)
        .map_err(|err| format!("TRUSTED_PROXIES: {err}"))?;
    sse = match config.write_timeout {
        Some(timeout) => sse.write_timeout(timeout),
        None => sse.no_write_timeout(),
    };
    let activity = admin::Activity::default();
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/events/{*topic}", get(subscribe))
        .route("/publish/{*topic}", post(publish))
        .route("/close/{*topic}", post(close))
        .route("/topics/{*topic}", get(topic_info))
        .route("/connections", get(connections))
        .route("/health", get(health))
        .merge(admin::router(hub.clone(), activity.clone()))
        .merge(metrics::router(
            hub.clone(),
            metrics::handle()?,
            match (&config.metrics_token, config.metrics_public) {
                (_, true) => metrics::Readers::Anyone,
                (Some(token), false) => metrics::Readers::Token(token.clone()),
                (None, false) => metrics::Readers::Admins,
            },
        ))
        .layer(sse.clone())
        .with_state(AppState {
            hub: hub.clone(),
            activity,
        });
    Ok(App {
        router,
        sse,
        hub,
        keys: Some(keys),
        send_buffer: config.send_buffer,
        shutdown_deadline: config.shutdown_deadline,
        http1_fast_path: config.http1_fast_path,
    })
}

/// Serves `app` until `signal` resolves, then ends every stream and returns once the open
/// connections have finished, or at the shutdown deadline.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Timeouts, a send buffer cap, peer addresses (for the layer's per-peer limits and
    // registry) and a shutdown that returns within its deadline whatever clients do.
    let mut server = tower_sse::serve(listener, app.router);
    server = match app.send_buffer {
        Some(0) => server.no_send_buffer_size(),
        Some(bytes) => server.send_buffer_size(bytes),
        None => server,
    };
    if let Some(deadline) = app.shutdown_deadline {
        server = server.shutdown_deadline(deadline);
    }
    server
        .http1_fast_path(app.http1_fast_path)
        .with_graceful_shutdown(app.sse.shutdown_on(signal))
        .await
}

#[derive(Deserialize)]
struct SubscribeParams {
    /// `oldest`: a first connection gets everything retained, then live events.
    from: Option<String>,
}

/// Open on public topics; elsewhere the token's subscribe selectors decide, before any replay
/// is read. The stream ends when the token expires.
async fn subscribe(
    State(hub): State<Hub>,
    who: Identity,
    Path(topic): Path<String>,
    Query(params): Query<SubscribeParams>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    let first = match params.from.as_deref() {
        Some("oldest") => Start::Oldest,
        _ => Start::Live,
    };
    hub.subscribe_as(&who, &topic, Start::resume_or(last, first))
        .await
}

/// Ends every stream of the topic with an `end` event; reconnects then get `204`. Ending a
/// topic is publishing its last event: it needs a publish selector that matches.
async fn close(
    State(hub): State<Hub>,
    who: Identity,
    Path(topic): Path<String>,
) -> Result<Response, HubError> {
    hub.authorize(&who, Action::Publish, &topic)?;
    let end = hub.close(&topic).await?;
    Ok(Json(json!({ "id": end.id() })).into_response())
}

/// What a topic holds, for whoever may subscribe to it.
async fn topic_info(
    State(hub): State<Hub>,
    who: Identity,
    Path(topic): Path<String>,
) -> Result<Response, HubError> {
    hub.authorize(&who, Action::Subscribe, &topic)?;
    Ok(match hub.topic_info(&topic).await? {
        Some(info) => Json(json!({
            "subscribers": info.subscribers,
            "retained_events": info.retained_events,
            "retained_bytes": info.retained_bytes,
            "last_id": info.last_id,
            "closed": info.closed,
        }))
        .into_response(),
        None => (StatusCode::NOT_FOUND, "no such topic\n").into_response(),
    })
}

#[derive(Deserialize)]
struct PublishParams {
    event: Option<String>,
}

async fn publish(
    State(hub): State<Hub>,
    State(activity): State<admin::Activity>,
    who: Identity,
    Path(topic): Path<String>,
    Query(params): Query<PublishParams>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, HubError> {
    // Refused before the body is read: without the right, nothing more is taken in.
    hub.authorize(&who, Action::Publish, &topic)?;
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(message) => return Ok((StatusCode::BAD_REQUEST, message).into_response()),
    };
    let limit = tower_sse::hub::DEFAULT_MAX_EVENT_BYTES;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        let message = format!("the body is larger than {limit} bytes, or was cut off\n");
        return Ok((StatusCode::PAYLOAD_TOO_LARGE, message).into_response());
    };
    let Ok(data) = std::str::from_utf8(&body) else {
        return Ok((StatusCode::BAD_REQUEST, "the body must be UTF-8 text\n").into_response());
    };
    let mut event = Event::builder().data(data);
    if let Some(name) = params.event {
        // `publish_as` refuses the names the hub sends itself (`RESERVED_EVENT_NAMES`).
        event = event.event(name);
    }
    let event = match event.build() {
        Ok(event) => event,
        Err(err) => return Ok((StatusCode::BAD_REQUEST, format!("{err}\n")).into_response()),
    };
    let publish = match key {
        Some(key) => Publish::new(event).idempotency_key(key),
        None => Publish::new(event),
    };
    // A `503` stored nothing; a `504` may have: retried with the same key, it stores once.
    let published = hub.publish_as(&who, &topic, publish).await?;
    let body = Json(json!({ "id": published.id() }));
    if published.is_duplicate() {
        // The first publish's id: nothing was stored again.
        return Ok(([(IDEMPOTENT_REPLAYED, "true")], body).into_response());
    }
    activity.record_publish(&topic);
    Ok(body.into_response())
}

/// The header that tells a publisher its publish repeated an earlier one's `Idempotency-Key`:
/// the id is the first one's, and nothing was stored again.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The publish's `Idempotency-Key`, if it sent one: as is (`order-42`) or as a structured
/// field string (`"order-42"`). The hub checks what a key may be (`400` otherwise).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, String> {
    let mut keys = headers.get_all("idempotency-key").iter();
    let Some(key) = keys.next() else {
        return Ok(None);
    };
    if keys.next().is_some() {
        return Err("send one Idempotency-Key header, not several\n".to_owned());
    }
    let key = key.to_str().map_err(|_| {
        "invalid Idempotency-Key: use 1 to 128 visible ASCII characters\n".to_owned()
    })?;
    match key.strip_prefix('"') {
        Some(quoted) => sf_string(quoted).map(Some).ok_or_else(|| {
            "invalid Idempotency-Key: a quoted key needs its closing quote, and only \\\\ and \\\" \
                 escaped\n"
                .to_owned()
        }),
        None => Ok(Some(key.to_owned())),
    }
}

/// The content of a structured field string (RFC 8941) after its opening quote: up to the
/// closing quote, which must end `rest`, with `\\` and `\"` unescaped. `None` when malformed.
fn sf_string(rest: &str) -> Option<String> {
    let mut key = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                escaped @ ('\\' | '"') => key.push(escaped),
                _ => return None,
            },
            '"' => return chars.next().is_none().then_some(key),
            c => key.push(c),
        }
    }
    None
}

/// Every open stream, with its peer's address: for admin tokens only.
async fn connections(State(hub): State<Hub>, who: Identity) -> Result<Response, HubError> {
    hub.authorize(&who, Action::Admin, "*")?;
    let list: Vec<_> = hub
        .registry()
        .snapshot()
        .iter()
        .map(|c| {
            let connected_at = c
                .connected_at()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            json!({
                "id": c.id(),
                "topic": c.topic(),
                "peer": c.peer().map(|p| p.to_string()),
                "connected_at": connected_at,
                "last_event_id": c.last_event_id(),
                "events_sent": c.events_sent(),
            })
        })
        .collect();
    Ok(Json(json!(list)).into_response())
}

async fn health(State(hub): State<Hub>) -> Response {
    match hub.health() {
        Health::Ok => Json(json!({ "backend": "ok" })).into_response(),
        Health::Unavailable(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            Json(json!({ "backend": "unavailable", "error": why })),
        )
            .into_response(),
    }
}

#[allow(dead_code)] // The end-to-end tests include this file for `app` and have a main of their own.
#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("hub: {err}");
        std::process::exit(2);
    }
}

#[allow(dead_code)]
async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("token") => {
            let config = Config::from_env()?;
            println!("{}", token_command(&config, &args[1..])?);
            return Ok(());
        }
        Some(other) => {
            return Err(format!(
                "unknown command {other:?}: run `hub` to serve, `hub token --help` to mint a token"
            ));
        }
    }
    // Logs to stderr; RUST_LOG=debug shows more (e.g. refused streams).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(&config.addr)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.addr))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    config.addr = addr.to_string();
    let app = app(&config).await?;
    if let Some(keys) = &app.keys {
        print!("{}", startup_message(&config, keys)?);
    }
    println!("listening on http://{addr}");
    serve(listener, app, tower_sse::shutdown_signal())
        .await
        .map_err(|err| err.to_string())?;
    println!("shut down");
    Ok(())
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tower-sse hub</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; }
  form { display: flex; gap: .5rem; margin: .75rem 0; }
  input { font: inherit; padding: .3rem .5rem; }
  input[name=data], input[name=token] { flex: 1; }
  label { display: flex; gap: .5rem; align-items: center; }
  #token label { flex: 1; }
  #state { font-weight: 600; }
  #state.open { color: #137333; } #state.reconnecting { color: #b06000; } #state.closed { color: #b3261e; }
  .hint { color: #666; font-size: 13px; margin: -.4rem 0 .75rem; }
  ol { font-family: ui-monospace, monospace; padding-left: 0; list-style: none; }
  li { padding: .15rem .4rem; border-bottom: 1px solid #eee; }
  li.gap { background: #fff4e5; } li.note { color: #666; font-style: italic; }
  .id { color: #888; margin-right: .75rem; }
</style>
<h1>tower-sse hub</h1>
<form id="token"><label>Token <input name="token" type="password" autocomplete="off" spellcheck="false" placeholder="the token the hub printed: needed to publish and for private topics"></label><button>Use</button></form>
<p class="hint">Kept for this tab, and sent as the <code>sse_token</code> cookie when watching; public topics need none.</p>
<form id="watch"><label>Topic <input name="topic" value="news" required></label><button>Watch</button></form>
<p>Connection: <span id="state">idle</span> · reconnects: <span id="reconnects">0</span></p>
<form id="publish"><input name="data" placeholder="event data" required><input name="event" placeholder="event name (optional)" size="14"><button>Publish</button></form>
<ol id="log"></ol>
<script>
  const $ = (s) => document.querySelector(s);
  const log = $("#log");
  let source = null, topic = null, reconnects = 0;
  let token = sessionStorage.getItem("sse_token") || "";
  function add(text, cls, id) {
    const li = document.createElement("li");
    if (cls) li.className = cls;
    if (id) { const s = document.createElement("span"); s.className = "id"; s.textContent = id; li.append(s); }
    li.append(document.createTextNode(text));
    log.prepend(li);
    while (log.children.length > 200) log.lastChild.remove();
  }
  function setState(text) { $("#state").textContent = text; $("#state").className = text; }
  // The token: for this tab (sessionStorage), as the Authorization header of a publish, and as
  // the cookie an EventSource sends (SameSite=Strict: never on another site's requests).
  function useToken(value) {
    token = value.trim();
    const secure = location.protocol === "https:" ? "; Secure" : "";
    if (token) {
      sessionStorage.setItem("sse_token", token);
      document.cookie = `sse_token=${token}; Path=/; SameSite=Strict${secure}`;
    } else {
      sessionStorage.removeItem("sse_token");
      document.cookie = `sse_token=; Path=/; Max-Age=0; SameSite=Strict${secure}`;
    }
  }
  function watch(name) {
    if (source) source.close();
    const again = name === topic;
    topic = name; reconnects = 0; $("#reconnects").textContent = "0";
    if (!again) log.replaceChildren();
    add(again ? `watching "${name}" again` : `watching "${name}"`, "note");
    source = new EventSource(`/events/${encodeURIComponent(name)}`);
    let opened = false;
    source.onopen = () => {
      if (opened) { reconnects++; $("#reconnects").textContent = reconnects; add("reconnected", "note"); }
      opened = true; setState("open");
    };
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) return setState("reconnecting");
      setState("closed");
      if (!opened) add("refused: a private topic needs a token whose subscribe selectors match, and a token must be valid", "note");
    };
    source.onmessage = (e) => add(e.data, "", e.lastEventId);
    source.addEventListener("end", () => {
      add("the topic was closed", "note");
      // The browser reconnects with the end's id, gets 204 and stops.
    });
    source.addEventListener("gap", (e) => {
      const gap = JSON.parse(e.data);
      add(`gap: ${gap.reason} (asked for ${gap.requested ?? "an unusable id"}; resuming ${gap.resume})`, "gap");
    });
    for (const name of ["price", "alert", "chat"]) source.addEventListener(name, (e) => add(`${name}: ${e.data}`, "", e.lastEventId));
  }
  $("#token").onsubmit = (e) => {
    e.preventDefault();
    const value = e.target.token.value.trim();
    if (value && !/^[A-Za-z0-9_.-]+$/.test(value)) { add("that is not a token: a JWT is three base64url parts joined by dots", "note"); return; }
    useToken(value);
    add(token ? "token set" : "token cleared", "note");
    watch(topic); // again, with the cookie as it is now: the list stays
  };
  $("#watch").onsubmit = (e) => { e.preventDefault(); watch(e.target.topic.value); };
  $("#publish").onsubmit = async (e) => {
    e.preventDefault();
    const f = e.target;
    const q = f.event.value ? `?event=${encodeURIComponent(f.event.value)}` : "";
    const headers = { "content-type": "text/plain; charset=utf-8" };
    if (token) headers.authorization = `Bearer ${token}`;
    const r = await fetch(`/publish/${encodeURIComponent(topic)}${q}`, { method: "POST", body: f.data.value, headers });
    if (r.status === 401 && !token) add("publishing needs a token: paste the one the hub printed above", "note");
    else if (!r.ok) add(`publish failed (${r.status}): ${await r.text()}`, "note");
    else f.data.value = "";
  };
  $("#token").token.value = token;
  if (token) useToken(token);
  watch($("#watch").topic.value);
</script>
</html>
"##;
