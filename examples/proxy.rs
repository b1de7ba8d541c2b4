//! Stream any JSON API: a proxy that polls an upstream JSON URL once for all its clients and
//! streams a `snapshot`, then JSON Patch (RFC 6902) `patch` events, with a page that applies
//! them and renders the result live.
//!
//! ```text
//! cargo run --example proxy                                   # open http://127.0.0.1:3000
//! curl http://127.0.0.1:3000/demo/departures                  # the demo API: JSON, with an ETag
//! curl -N 'http://127.0.0.1:3000/proxy?url=http://127.0.0.1:3000/demo/departures&interval_ms=1000&key=id'
//! curl -N -H 'Last-Event-ID: <id>' 'http://127.0.0.1:3000/proxy?url=…'   # the patches missed
//! ```
//!
//! - `GET /proxy?url=<upstream>&interval_ms=<n>&key=<field>` streams the upstream:
//!   `snapshot` (the whole JSON), then `patch` (the operations from one answer to the next; a
//!   `snapshot` again where that is no larger, which replaces the page's state), and `error`
//!   (`{"message", "retry_ms"}`) when the upstream fails; the stream stays open and the poller
//!   backs off. `interval_ms` (default 1000) is rounded up to one of a few intervals (see
//!   [`interval`]), never below `MIN_INTERVAL_MS`; `key` (letters, digits, `_` and `-`) diffs
//!   arrays of objects by that field, so a row inserted at the head is one `add`. Every client
//!   of the same upstream (and interval and key) shares one poller: 100 clients cost the
//!   upstream one request per interval, and an unchanged answer costs a `304`. A reconnect gets
//!   the patches it missed, or a fresh snapshot. At most `MAX_SOURCES` upstreams (counting
//!   each interval and key apart) are polled at once, each until a few seconds after its last
//!   client has gone; a client of one more gets a comment and a `retry:` hint, and its
//!   `EventSource` comes back later by itself.
//! - Only upstreams under a prefix that `UPSTREAMS` lists are polled; anything else is refused
//!   with `400`. A URL is parsed (as a browser does) and compared by scheme, host, port and path
//!   segments, so `http://127.0.0.1:3000@evil/`, `http://127.0.0.1:30001/`, `../` and
//!   percent-encoded tricks do not get through; redirects are never followed. A path may have
//!   no `;` and no percent-escape but those the URL parser itself writes (see
//!   [`path_problem`]), so `..;/` and `%252e%252e` do not reach a server that would decode
//!   them. A query string is allowed only where a prefix has that very query (a prefix with a
//!   query names one URL), so `?cachebust=1`, `?cachebust=2`… are not so many pollers. A host
//!   *name* is polled only where it resolves to public addresses: list an upstream on your own
//!   network by its address (`http://10.0.0.5/status/`), or as `localhost`, which are trusted as
//!   written. The default allows only this server's own demo API. A request a browser marks as
//!   from another site (`Sec-Fetch-Site: cross-site` or `same-site`: an `<img>`, a no-cors
//!   `fetch`) is refused with `403` before anything starts.
//! - `GET /demo/departures`: the demo upstream, a departures board whose delays and platforms
//!   change every `DEMO_TICK_MS`; `GET /demo/departures-large` is the same with 500 rows. Both
//!   answer `If-None-Match` with `304`.
//! - `GET /`: the page. It applies the patches with a few lines of plain JavaScript (no CDN,
//!   no inline code: `Content-Security-Policy` allows its own files only) and renders the board.
//!
//! Configuration, from the environment:
//!
//! ```text
//! ADDR            listen address, default 127.0.0.1:3000; prints "listening on http://ADDR" when ready
//! UPSTREAMS       comma-separated URL prefixes that may be polled, e.g.
//!                 http://api.example.com/v1/,http://10.0.0.5/status (default: this
//!                 server's /demo/ on 127.0.0.1, localhost and [::1])
//! MIN_INTERVAL_MS the shortest poll interval a client may ask for (default 500)
//! MAX_SOURCES     the most upstreams polled at once (default 64)
//! DEMO_TICK_MS    how often the demo board changes (default 1000)
//! ALLOW_HOSTS     comma-separated host[:port] names the server answers for, besides
//!                 127.0.0.1, localhost and [::1] on its port (DNS rebinding protection)
//! KEEP_ALIVE      keep-alive interval in seconds (default 15)
//! ```
//!
//! `proxy measure` prints what streaming saves against polling, on the demo board and its
//! large variant (see BENCHMARKS.md). Logs go to stderr (`RUST_LOG=debug` for more).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Value, json};
use tower_sse::poll::{Poller, Source};
use tower_sse::{LastEventId, SseLayer};

/// The poll interval of a client that does not ask for one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);

/// The longest array key a client may name.
const MAX_KEY_LEN: usize = 64;

/// The intervals a client may have, besides the floor (`MIN_INTERVAL_MS`): every distinct
/// interval is a poller of its own, so a client that asks for 500, 501, 502… ms gets the same
/// few.
const INTERVALS: [Duration; 8] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

/// The interval a client that asks for `asked` gets: the shortest of `floor` and
/// [`INTERVALS`] (those above the floor) that is at least `asked`, or the longest of them.
pub fn interval(asked: Duration, floor: Duration) -> Duration {
    let allowed = std::iter::once(floor).chain(INTERVALS.into_iter().filter(|i| *i > floor));
    allowed
        .clone()
        .find(|allowed| *allowed >= asked)
        .or_else(|| allowed.last())
        .unwrap_or(floor)
}

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on; once bound, the address listened on (its port decides the
    /// default upstreams and hosts).
    pub addr: String,
    /// Empty: this server's demo API.
    pub upstreams: Vec<String>,
    pub min_interval: Duration,
    /// The most upstreams polled at once ([`PollerBuilder::max_sources`]).
    ///
    /// [`PollerBuilder::max_sources`]: tower_sse::poll::PollerBuilder::max_sources
    pub max_sources: usize,
    pub demo_tick: Duration,
    pub allow_hosts: Vec<String>,
    pub keep_alive: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:3000".to_owned(),
            upstreams: Vec::new(),
            min_interval: Duration::from_millis(500),
            max_sources: 64,
            demo_tick: Duration::from_millis(1000),
            allow_hosts: Vec::new(),
            keep_alive: Duration::from_secs(15),
        }
    }
}

impl Config {
    /// Reads the settings from the environment; the error says which variable is wrong.
    pub fn from_env() -> Result<Config, String> {
        let mut config = Config::default();
        if let Ok(addr) = std::env::var("ADDR") {
            config.addr = addr;
        }
        if let Ok(upstreams) = std::env::var("UPSTREAMS") {
            config.upstreams = items(&upstreams);
        }
        if let Ok(hosts) = std::env::var("ALLOW_HOSTS") {
            config.allow_hosts = items(&hosts);
        }
        if let Some(ms) = whole("MIN_INTERVAL_MS")? {
            config.min_interval = Duration::from_millis(ms.max(1));
        }
        if let Some(max) = whole("MAX_SOURCES")? {
            config.max_sources = usize::try_from(max).unwrap_or(usize::MAX);
        }
        if let Some(ms) = whole("DEMO_TICK_MS")? {
            config.demo_tick = Duration::from_millis(ms.max(1));
        }
        if let Some(secs) = whole("KEEP_ALIVE")? {
            config.keep_alive = Duration::from_secs(secs.max(1));
        }
        Ok(config)
    }

    /// The port listened on (0 before binding).
    fn port(&self) -> u16 {
        self.addr
            .parse::<SocketAddr>()
            .map_or(0, |addr| addr.port())
    }

    /// `UPSTREAMS`, or this server's demo API on the loopback names.
    pub fn upstream_prefixes(&self) -> Vec<String> {
        if !self.upstreams.is_empty() {
            return self.upstreams.clone();
        }
        let port = self.port();
        ["127.0.0.1", "localhost", "[::1]"]
            .map(|host| format!("http://{host}:{port}/demo/"))
            .to_vec()
    }

    /// The `Host` names the server answers for: the loopback names on its port, the address it
    /// listens on, and `ALLOW_HOSTS`.
    pub fn hosts(&self) -> Vec<String> {
        let port = self.port();
        let mut hosts: Vec<String> = ["127.0.0.1", "localhost", "[::1]"]
            .map(|host| format!("{host}:{port}"))
            .to_vec();
        if let Ok(addr) = self.addr.parse::<SocketAddr>()
            && !addr.ip().is_unspecified()
            && !hosts.contains(&addr.to_string())
        {
            hosts.push(addr.to_string());
        }
        hosts.extend(self.allow_hosts.iter().cloned());
        hosts
    }
}

/// The items of a comma-separated list, trimmed, empty ones left out.
fn items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn whole(name: &str) -> Result<Option<u64>, String> {
    std::env::var(name).ok().map_or(Ok(None), |value| {
        value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} must be a whole number, not {value:?}"))
    })
}

/// The upstreams a client may ask for: URL prefixes, compared by scheme, host, port and whole
/// path segments, never as strings.
#[derive(Debug, Clone)]
pub struct Upstreams {
    prefixes: Vec<Prefix>,
}

#[derive(Debug, Clone, PartialEq)]
struct Prefix {
    scheme: String,
    /// As the URL parser writes it: a lowercase name, an IPv4 address, `[v6]`.
    host: String,
    port: Option<u16>,
    /// Ends with `/` when the prefix is a folder; else it matches itself and what is under it.
    path: String,
    /// A prefix with a query names one URL: that path, with that query.
    query: Option<String>,
}

/// Why an upstream is refused: said to the client as is, so it names no allowed upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream refused: {}", self.0)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, format!("{self}\n")).into_response()
    }
}

/// What is wrong with a URL's path, if anything: a `;` (which some servers read as the start
/// of parameters, so that `..;/` is `..`), or a percent-escape other than those the URL parser
/// itself writes (of a byte outside ASCII, or of a space, `"`, `<`, `>`, `` ` ``, `{` or `}`).
/// Any other escape (`%2e`, `%2f`, `%5c`, `%3b`, `%25` and its double-decoded `%252e`, `%00`,
/// `%41`…) may be decoded by the upstream, or a server behind it, into `.`, `/` or something
/// else the check did not see; no path the parser makes from plain text has one.
pub fn path_problem(path: &str) -> Option<&'static str> {
    if path.contains(';') {
        return Some("a ; in the path is not allowed");
    }
    let bytes = path.as_bytes();
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|&b| b == b'%') {
        at += offset;
        let byte = bytes
            .get(at + 1..at + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match byte {
            Some(b' ' | b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | 0x80..=0xff) => at += 3,
            _ => {
                return Some(
                    "a percent-escape in the path is not allowed, but of a space, \" < > ` { } \
                     or a byte outside ASCII",
                );
            }
        }
    }
    None
}

impl Upstreams {
    /// The allowlist of `prefixes` (`http://host[:port]/path`).
    ///
    /// # Errors
    ///
    /// A prefix that is not an `http://` URL, or has credentials, a query or a fragment.
    pub fn new<I, S>(prefixes: I) -> Result<Upstreams, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        for prefix in prefixes {
            let prefix = prefix.as_ref();
            let url = Url::parse(prefix).map_err(|err| format!("{prefix:?}: {err}"))?;
            if url.scheme() != "http" {
                return Err(format!(
                    "{prefix:?}: only http:// upstreams can be polled (Source::url speaks plain HTTP)"
                ));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(format!("{prefix:?}: credentials are not allowed"));
            }
            if url.fragment().is_some() {
                return Err(format!("{prefix:?}: a prefix has no fragment"));
            }
            if url.query() == Some("") {
                return Err(format!(
                    "{prefix:?}: a prefix with a query names one URL; write the query after ?"
                ));
            }
            if let Some(problem) = path_problem(url.path()) {
                return Err(format!("{prefix:?}: {problem}"));
            }
            let host = url
                .host_str()
                .ok_or_else(|| format!("{prefix:?}: no host"))?
                .to_owned();
            parsed.push(Prefix {
                scheme: url.scheme().to_owned(),
                host,
                port: url.port_or_known_default(),
                path: url.path().to_owned(),
                query: url.query().map(str::to_owned),
            });
        }
        Ok(Upstreams { prefixes: parsed })
    }

    /// `url`, parsed, if a prefix allows it.
    ///
    /// # Errors
    ///
    /// Why not, in words safe to show the client.
    pub fn check(&self, url: &str) -> Result<Url, Refused> {
        let refuse = |why: &str| Err(Refused(why.to_owned()));
        let Ok(mut parsed) = Url::parse(url) else {
            return refuse("not an absolute URL");
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return refuse("a URL with credentials (user@host) is not allowed");
        }
        let Some(host) = parsed.host_str().map(str::to_owned) else {
            return refuse("the URL has no host");
        };
        if let Some(problem) = path_problem(parsed.path()) {
            return refuse(problem);
        }
        // `…/departures?` is `…/departures`.
        if parsed.query() == Some("") {
            parsed.set_query(None);
        }
        let allowed = self.prefixes.iter().any(|prefix| {
            prefix.scheme == parsed.scheme()
                && prefix.host == host
                && prefix.port == parsed.port_or_known_default()
                && match &prefix.query {
                    None => parsed.query().is_none() && under(parsed.path(), &prefix.path),
                    Some(query) => {
                        parsed.path() == prefix.path && parsed.query() == Some(query.as_str())
                    }
                }
        });
        if !allowed {
            return refuse(
                "its scheme, host, port, path or query is not one that UPSTREAMS allows",
            );
        }
        parsed.set_fragment(None);
        Ok(parsed)
    }
}

/// Whether `path` is `prefix` or under it, on whole segments.
fn under(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The demo upstream: two departures boards (12 and 500 rows) that change every tick.
#[derive(Clone)]
pub struct Demo {
    boards: Arc<[Mutex<Board>; 2]>,
    requests: Arc<AtomicU64>,
}

/// A board as the demo API serves it.
struct Board {
    version: u64,
    /// Minutes since midnight on the board's clock.
    now: u32,
    next_flight: u32,
    rows: Vec<Departure>,
    rng: fastrand::Rng,
    /// The answer for `version`, and its `ETag`.
    body: Bytes,
    etag: HeaderValue,
}

#[derive(Debug, Clone)]
struct Departure {
    flight: String,
    destination: &'static str,
    /// Minutes since midnight.
    scheduled: u32,
    delay: u32,
    platform: u32,
}

const DESTINATIONS: [&str; 12] = [
    "Amsterdam",
    "Basel",
    "Berlin",
    "Brussels",
    "Frankfurt",
    "Hamburg",
    "Lyon",
    "Milan",
    "Munich",
    "Paris Nord",
    "Vienna",
    "Zürich",
];

fn clock(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60 % 24, minutes % 60)
}

impl Board {
    fn new(rows: usize, seed: u64) -> Board {
        let mut board = Board {
            version: 0,
            now: 6 * 60,
            next_flight: 100,
            rows: Vec::with_capacity(rows),
            rng: fastrand::Rng::with_seed(seed),
            body: Bytes::new(),
            etag: HeaderValue::from_static("\"0\""),
        };
        for _ in 0..rows {
            board.add_row();
        }
        board.render();
        board
    }

    fn add_row(&mut self) {
        self.next_flight += 1;
        let last = self.rows.last().map_or(self.now, |row| row.scheduled);
        let destination = DESTINATIONS[self.rng.usize(..DESTINATIONS.len())];
        self.rows.push(Departure {
            flight: format!("TS {}", self.next_flight),
            destination,
            scheduled: last + self.rng.u32(1..=4),
            delay: 0,
            platform: self.rng.u32(1..=12),
        });
    }

    /// A minute passes: a delay grows or shrinks, a platform changes, and the trains that have
    /// left make room for new ones at the end.
    fn tick(&mut self) {
        self.now += 1;
        for _ in 0..2 {
            let at = self.rng.usize(..self.rows.len().clamp(1, 8));
            if let Some(row) = self.rows.get_mut(at) {
                if self.rng.bool() {
                    row.delay = row.delay.saturating_add_signed(self.rng.i32(-2..=5));
                } else {
                    row.platform = self.rng.u32(1..=12);
                }
            }
        }
        let now = self.now;
        let before = self.rows.len();
        self.rows.retain(|row| row.scheduled + row.delay > now);
        for _ in self.rows.len()..before {
            self.add_row();
        }
        self.version += 1;
        self.render();
    }

    fn render(&mut self) {
        let now = self.now;
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let expected = row.scheduled + row.delay;
                let status = match (expected.saturating_sub(now), row.delay) {
                    (0..=3, _) => "Boarding",
                    (_, 0) => "On time",
                    _ => "Delayed",
                };
                json!({
                    "id": row.flight,
                    "destination": row.destination,
                    "scheduled": clock(row.scheduled),
                    "expected": clock(expected),
                    "delay_min": row.delay,
                    "platform": row.platform,
                    "status": status,
                })
            })
            .collect();
        let body = json!({ "version": self.version, "now": clock(now), "departures": rows });
        self.body = Bytes::from(body.to_string());
        self.etag = HeaderValue::from_str(&format!("\"{}\"", self.version))
            .unwrap_or_else(|_| HeaderValue::from_static("\"?\""));
    }
}

impl Demo {
    /// The boards, unchanged until [`run`](Self::run) ticks them.
    pub fn new() -> Demo {
        Demo {
            boards: Arc::new([
                Mutex::new(Board::new(12, 7)),
                Mutex::new(Board::new(500, 8)),
            ]),
            requests: Arc::default(),
        }
    }

    /// Ticks the boards every `tick`, for good.
    pub async fn run(self, tick: Duration) {
        let mut interval = tokio::time::interval(tick);
        interval.tick().await;
        loop {
            interval.tick().await;
            for board in self.boards.iter() {
                board.lock().unwrap().tick();
            }
        }
    }

    /// Ticks the boards once.
    pub fn tick(&self) {
        for board in self.boards.iter() {
            board.lock().unwrap().tick();
        }
    }

    /// The requests the demo API has answered (`304`s included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn answer(&self, board: usize, headers: &HeaderMap) -> Response {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (body, etag) = {
            let board = self.boards[board].lock().unwrap();
            (board.body.clone(), board.etag.clone())
        };
        let cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|tag| tag.trim() == etag || tag.trim() == "*")
        {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), cache]).into_response();
        }
        let json = HeaderValue::from_static("application/json");
        (
            [(header::CONTENT_TYPE, json), (header::ETAG, etag), cache],
            body,
        )
            .into_response()
    }
}

impl Default for Demo {
    fn default() -> Self {
        Demo::new()
    }
}

/// The proxy's parts: the router, the layer (whose `shutdown_on` ends every stream at
/// shutdown), the poller and the demo upstream.
pub struct App {
    pub router: Router,
    pub sse: SseLayer,
    pub poller: Poller,
    pub demo: Demo,
}

#[derive(Clone)]
struct AppState {
    poller: Poller,
    upstreams: Arc<Upstreams>,
    min_interval: Duration,
    demo: Demo,
}

/// Builds the app; `config.addr` is the address listened on. The demo boards do not change
/// until [`Demo::run`] (which `main` spawns) or [`Demo::tick`].
pub fn app(config: &Config) -> Result<App, String> {
    let upstreams =
        Upstreams::new(config.upstream_prefixes()).map_err(|err| format!("UPSTREAMS: {err}"))?;
    let hub = tower_sse::Hub::memory();
    let poller = Poller::builder()
        .min_interval(config.min_interval)
        .default_interval(DEFAULT_INTERVAL)
        .max_sources(config.max_sources)
        .build(hub.clone());
    let sse = SseLayer::new()
        .keep_alive(config.keep_alive)
        .registry(hub.registry())
        .max_connections_per_peer(50)
        .try_allow_hosts(config.hosts())
        .map_err(|err| format!("ALLOW_HOSTS: {err}"))?;
    let demo = Demo::new();
    let state = AppState {
        poller: poller.clone(),
        upstreams: Arc::new(upstreams),
        min_interval: config.min_interval,
        demo: demo.clone(),
    };
    let router = Router::new()
        .route(
            "/",
            get(|| async { page(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/proxy.js",
            get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/proxy.css",
            get(|| async { page(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/proxy", get(proxy))
        .route(
            "/demo/departures",
            get(
                |State(state): State<AppState>, headers: HeaderMap| async move {
                    state.demo.answer(0, &headers)
                },
            ),
        )
        .route(
            "/demo/departures-large",
            get(
                |State(state): State<AppState>, headers: HeaderMap| async move {
                    state.demo.answer(1, &headers)
                },
            ),
        )
        .layer(sse.clone())
        .with_state(state);
    Ok(App {
        router,
        sse,
        poller,
        demo,
    })
}

#[derive(Deserialize)]
struct ProxyParams {
    url: Option<String>,
    interval_ms: Option<String>,
    key: Option<String>,
}

/// `GET /proxy?url=…&interval_ms=…&key=…`: the upstream's snapshot, then its patches; `400`
/// for an upstream `UPSTREAMS` does not allow or a parameter that does not parse; a `retry:`
/// hint and the end when `MAX_SOURCES` upstreams are polled already; `403` for a request a
/// browser sent from another site (`Sec-Fetch-Site`).
async fn proxy(
    State(state): State<AppState>,
    Query(params): Query<ProxyParams>,
    headers: HeaderMap,
    last: Option<LastEventId>,
) -> Response {
    // A page of another site cannot read this stream (the layer refuses its `EventSource`),
    // but an `<img>` or a no-cors `fetch` carries no `Origin`, and would start a poller all the
    // same: what a browser says comes from another site is refused before anything starts.
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site != "same-origin" && site != "none")
    {
        return (StatusCode::FORBIDDEN, "cross-site request refused\n").into_response();
    }
    let bad = |message: String| (StatusCode::BAD_REQUEST, message + "\n").into_response();
    let Some(url) = params.url.filter(|url| !url.is_empty()) else {
        return bad("url is required: /proxy?url=<upstream>&interval_ms=<n>".to_owned());
    };
    let url = match state.upstreams.check(&url) {
        Ok(url) => url,
        Err(refused) => {
            tracing::info!(%url, why = %refused.0, "upstream refused");
            return refused.into_response();
        }
    };
    let asked = match params.interval_ms.as_deref().map(str::parse::<u64>) {
        None => DEFAULT_INTERVAL,
        Some(Ok(ms)) => Duration::from_millis(ms),
        Some(Err(_)) => return bad("interval_ms must be a whole number of milliseconds".into()),
    };
    let mut source = match Source::url(url.as_str()) {
        Ok(source) => source.interval(interval(asked, state.min_interval)),
        Err(err) => return bad(err.to_string()),
    };
    match params.key.filter(|key| !key.is_empty()) {
        Some(key) if key.len() > MAX_KEY_LEN => {
            return bad(format!("key is longer than {MAX_KEY_LEN} bytes"));
        }
        Some(key)
            if !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            return bad("key may have only letters, digits, _ and -".to_owned());
        }
        Some(key) => source = source.array_key(key),
        None => {}
    }
    match state.poller.subscribe(source, last).await {
        Ok(subscription) => subscription.into_response(),
        Err(err) => err.into_response(),
    }
}

/// The page's policy: its own script and style only, no inline code, no frames, nothing
/// fetched but its own event stream.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = include_str!("proxy/index.html");
const SCRIPT: &str = include_str!("proxy/proxy.js");
const STYLE: &str = include_str!("proxy/proxy.css");

/// One of the page's files, with its hardening headers.
fn page(body: &'static str, content_type: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, body).into_response()
}

/// Serves `app` until `signal` resolves, then ends every stream and returns once the open
/// connections have finished.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tower_sse::serve(listener, app.router)
        .with_graceful_shutdown(app.sse.shutdown_on(signal))
        .await
}

#[allow(dead_code)] // The tests include this file for `app` and have a main of their own.
#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("proxy: {err}");
        std::process::exit(2);
    }
}

#[allow(dead_code)]
async fn run() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config::from_env()?;
    if std::env::args().nth(1).as_deref() == Some("measure") {
        print!("{}", measure::run().await?);
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(&config.addr)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.addr))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    config.addr = addr.to_string();
    let app = app(&config)?;
    tokio::spawn(app.demo.clone().run(config.demo_tick));
    eprintln!("upstreams: {}", config.upstream_prefixes().join(", "));
    println!("listening on http://{addr}");
    serve(listener, app, tower_sse::shutdown_signal())
        .await
        .map_err(|err| err.to_string())?;
    println!("shut down");
    Ok(())
}

/// `proxy measure`: bytes on the wire and upstream requests, polling against streaming.
#[allow(dead_code)]
mod measure {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// How many times each board changes during a measurement.
    const TICKS: u64 = 60;
    /// The clients of the upstream-requests comparison.
    const CLIENTS: usize = 100;

    pub async fn run() -> Result<String, String> {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| document | polling: received per change | stream: first snapshot | stream: received per change | saved over {TICKS} changes | upstream requests per change, {CLIENTS} clients: polling | shared poller |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for (name, path) in [
            ("demo board, 12 rows", "/demo/departures"),
            ("large board, 500 rows", "/demo/departures-large"),
        ] {
            let row = scenario(path).await?;
            let streamed = row.first + row.changes;
            let _ = writeln!(
                out,
                "| {name} ({} B) | {} B | {} B | {} B | {:.0} % | {:.1} | {:.2} |",
                row.document,
                row.polling / TICKS,
                row.first,
                row.changes / TICKS,
                100.0 * (1.0 - streamed as f64 / row.polling as f64),
                row.polling_requests as f64 / TICKS as f64,
                row.streaming_requests as f64 / TICKS as f64,
            );
        }
        Ok(out)
    }

    struct Row {
        document: usize,
        polling: u64,
        /// The stream's response head and first snapshot.
        first: u64,
        /// What the stream received after them.
        changes: u64,
        polling_requests: u64,
        streaming_requests: u64,
    }

    /// `TICKS` changes of `path`: `CLIENTS` clients polling it once per change against
    /// `CLIENTS` clients streaming it; the bytes the first of each received, and the requests
    /// the upstream answered for each kind.
    async fn scenario(path: &str) -> Result<Row, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|err| err.to_string())?;
        let addr = listener.local_addr().map_err(|err| err.to_string())?;
        let config = Config {
            addr: addr.to_string(),
            min_interval: Duration::from_millis(10),
            ..Config::default()
        };
        let app = app(&config)?;
        let demo = app.demo.clone();
        let router = app.router.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let tick = Duration::from_millis(500);
        let upstream = format!("http://{addr}{path}");
        let stream_path = format!(
            "/proxy?url={upstream}&interval_ms={}&key=id",
            tick.as_millis()
        );

        let document = get(addr, path).await?.1;
        let mut received = Vec::new();
        for _ in 0..CLIENTS {
            received.push(open_stream(addr, &stream_path).await?);
        }
        // Every stream has its head and snapshot before the first change.
        let mut settle = tokio::time::interval(Duration::from_millis(10));
        while received
            .iter()
            .any(|bytes| bytes.load(Ordering::Relaxed) < document as u64)
        {
            settle.tick().await;
        }
        tokio::time::sleep(tick).await;
        let first = received[0].load(Ordering::Relaxed);
        let before = demo.requests();
        let mut polling = 0u64;
        let mut polling_requests = 0u64;
        let mut interval = tokio::time::interval(tick);
        interval.tick().await;
        for _ in 0..TICKS {
            interval.tick().await;
            demo.tick();
            // Half a tick later, as a client polling once per change would: after it.
            tokio::time::sleep(tick / 2).await;
            let polls = (0..CLIENTS).map(|_| get(addr, path));
            let answers = futures_util::future::try_join_all(polls).await?;
            polling += answers[0].0;
            polling_requests += answers.len() as u64;
        }
        tokio::time::sleep(tick).await;
        let streaming_requests = demo.requests() - before - polling_requests;
        Ok(Row {
            document,
            polling,
            first,
            changes: received[0].load(Ordering::Relaxed) - first,
            polling_requests,
            streaming_requests,
        })
    }

    /// `GET path` over a new connection: the bytes received, and the body's length.
    async fn get(addr: SocketAddr, path: &str) -> Result<(u64, usize), String> {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        let body = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |head| answer.len() - head - 4);
        Ok((answer.len() as u64, body))
    }

    /// Opens an event stream at `path` and counts the bytes it receives, for good.
    async fn open_stream(addr: SocketAddr, path: &str) -> Result<Arc<AtomicU64>, String> {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let received = Arc::new(AtomicU64::new(0));
        let count = received.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        Ok(received)
    }
}
