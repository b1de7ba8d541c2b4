//! The hub server's admin page, live over SSE from the hub itself.
//!
//! - `GET /admin`: the page, for a token with `"admin": true`. Opened with the token in the
//!   query (`/admin?authorization=…`, the URL the server prints at start), it answers `303` to
//!   `/admin` and moves the token into the cookie `sse_token` (`HttpOnly; SameSite=Strict`), so
//!   the token leaves the address bar and the history.
//! - `GET /admin/events`: an event stream, for the same token: a `snapshot` event at once and
//!   then every second, whose data is JSON: `connections` (the newest [`MAX_CONNECTIONS`] open
//!   streams), `topics` (the [`MAX_TOPICS`] most active, with what they retain and their publish
//!   rate), `disconnects` (why streams ended: stalled readers, slow consumers, …) and
//!   `backend` (its health).
//! - `GET /admin/admin.js`, `GET /admin/admin.css`: the page's script and style, served apart
//!   so the page's `Content-Security-Policy` allows no inline code at all.
//!
//! Every string in a snapshot (peers, topics, labels, user agents) is JSON-escaped by
//! `serde_json`, and the page inserts it with `textContent` only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{Stream, StreamExt};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use tower_sse::auth::{Action, Denied, Identity};
use tower_sse::backend::Health;
use tower_sse::{Event, EventStream, Hub};

/// The most connections a snapshot lists (the newest); it says how many there are in all.
pub const MAX_CONNECTIONS: usize = 500;

/// The most topics a snapshot lists (the most active); it says how many it knows in all.
pub const MAX_TOPICS: usize = 100;

/// The most topics [`Activity`] keeps counts for; past it, the least recently active go.
pub const MAX_TRACKED_TOPICS: usize = 10_000;

/// The window of the publish rate, in seconds.
const RATE_WINDOW: usize = 10;

/// How often a snapshot is sent.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// The `retry:` hint an admin stream ends with when its authorization expires.
const EXPIRED_RETRY: Duration = Duration::from_secs(1);

/// The longest a cookie made from a query token lives, whatever the token's expiry.
const MAX_COOKIE_AGE: Duration = Duration::from_secs(24 * 3600);

/// The longest topic name [`Activity`] counts (the hub's own limit is 200 bytes).
const MAX_TOPIC_LEN: usize = 256;

/// The cookie the hub's policy reads a token from (`tower_sse::auth::jwt::DEFAULT_COOKIE`).
const COOKIE: &str = "sse_token";

/// The query parameter the printed admin URL carries the token in.
const QUERY_PARAMETER: &str = "authorization";

/// The page's policy: its own script and style only, no inline code, no frames, nothing
/// fetched but its own event stream (and the empty `data:` favicon, so the browser asks for no
/// `/favicon.ico`).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = include_str!("admin.html");
const SCRIPT: &str = include_str!("admin.js");
const STYLE: &str = include_str!("admin.css");

/// Publish counts and rates per topic, for the admin page: [`record_publish`] after each
/// publish. Its memory is bounded: it tracks at most [`MAX_TRACKED_TOPICS`] topics, dropping
/// the least recently active. A cheap [`Clone`]; clones share the counts.
///
/// [`record_publish`]: Activity::record_publish
#[derive(Clone, Default)]
pub struct Activity {
    inner: Arc<Mutex<Topics>>,
}

#[derive(Default)]
struct Topics {
    /// When the counting started; seconds are counted from it.
    started: Option<Instant>,
    topics: HashMap<Box<str>, Counts>,
}

/// One topic's counts: the total, and publishes per second over the last [`RATE_WINDOW`]
/// seconds, in a ring indexed by the second.
struct Counts {
    total: u64,
    /// The second of the last publish.
    last: u64,
    per_second: [u32; RATE_WINDOW],
}

impl Counts {
    fn new(now: u64) -> Counts {
        Counts {
            total: 0,
            last: now,
            per_second: [0; RATE_WINDOW],
        }
    }

    fn record(&mut self, now: u64) {
        if now > self.last {
            // Clear the seconds that passed without a publish (all of them, after a while).
            let passed = (now - self.last).min(RATE_WINDOW as u64);
            for second in now + 1 - passed..=now {
                self.per_second[(second % RATE_WINDOW as u64) as usize] = 0;
            }
            self.last = now;
        }
        let slot = &mut self.per_second[(self.last % RATE_WINDOW as u64) as usize];
        *slot = slot.saturating_add(1);
        self.total = self.total.saturating_add(1);
    }

    /// Publishes per second over the window that ends at `now`.
    fn rate(&self, now: u64) -> f64 {
        let window = RATE_WINDOW as u64;
        if now >= self.last + window {
            return 0.0;
        }
        // The seconds of the window up to the last publish: (now - window, last].
        let first = (now + 1).saturating_sub(window);
        let sum: u64 = (first..=self.last)
            .map(|second| u64::from(self.per_second[(second % window) as usize]))
            .sum();
        sum as f64 / RATE_WINDOW as f64
    }
}

/// One topic as [`Activity::read`] saw it.
struct TopicActivity {
    name: String,
    total: u64,
    rate: f64,
    last: u64,
}

impl Activity {
    /// Counts one publish to `topic`. Cheap: a lock and a map lookup (and, once in a while
    /// when the map is full, dropping the least recently active tenth).
    pub fn record_publish(&self, topic: &str) {
        if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
            return;
        }
        let mut inner = self.lock();
        let now = inner.now();
        inner.record(topic, now);
    }

    /// Every tracked topic, with its total and rate now.
    fn read(&self) -> Vec<TopicActivity> {
        let mut inner = self.lock();
        let now = inner.now();
        inner
            .topics
            .iter()
            .map(|(name, counts)| TopicActivity {
                name: name.to_string(),
                total: counts.total,
                rate: counts.rate(now),
                last: counts.last,
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Topics> {
        // The counts stay usable whatever panicked while holding the lock.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Topics {
    /// Seconds since counting started.
    fn now(&mut self) -> u64 {
        self.started
            .get_or_insert_with(Instant::now)
            .elapsed()
            .as_secs()
    }

    fn record(&mut self, topic: &str, now: u64) {
        if let Some(counts) = self.topics.get_mut(topic) {
            counts.record(now);
            return;
        }
        if self.topics.len() >= MAX_TRACKED_TOPICS {
            self.evict();
        }
        let mut counts = Counts::new(now);
        counts.record(now);
        self.topics.insert(topic.into(), counts);
    }

    /// Drops the least recently active tenth of the topics: amortised, one full pass per
    /// `MAX_TRACKED_TOPICS / 10` new topics.
    fn evict(&mut self) {
        let drop = (self.topics.len() / 10).max(1);
        let mut by_age: Vec<(u64, Box<str>)> = self
            .topics
            .iter()
            .map(|(name, counts)| (counts.last, name.clone()))
            .collect();
        by_age.select_nth_unstable_by_key(drop - 1, |(last, _)| *last);
        for (_, name) in &by_age[..drop] {
            self.topics.remove(name);
        }
    }
}

/// What the admin routes share.
#[derive(Clone)]
struct AdminState {
    hub: Hub,
    activity: Activity,
}

impl FromRef<AdminState> for Hub {
    fn from_ref(state: &AdminState) -> Hub {
        state.hub.clone()
    }
}

/// The admin routes: `GET /admin`, `GET /admin/events` (and the page's script and style).
/// Merge it into the app before `SseLayer` is applied, so its stream goes through the layer
/// (keep-alive, shutdown, the registry) like any other.
pub fn router<S>(hub: Hub, activity: Activity) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/admin", get(page))
        .route("/admin/events", get(events))
        .route("/admin/admin.js", get(script))
        .route("/admin/admin.css", get(style))
        .with_state(AdminState { hub, activity })
}

/// `GET /admin`: the page, or a `303` that moves a query token into the cookie.
async fn page(State(state): State<AdminState>, request: Parts) -> Response {
    let response = match query_token(&request) {
        Some(Ok(token)) => {
            // Judge the query's token alone: a stale cookie (say, from before the server
            // made a new secret) must not stand in the way of the fresh URL.
            match admin_from_query(&state.hub, &request) {
                Ok(who) => with_cookie(&token, &who, &request),
                Err(denied) => denied.into_response(),
            }
        }
        Some(Err(denied)) => denied.into_response(),
        None => match admin(&state.hub, &request) {
            Ok(_) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response(),
            Err(denied) => denied.into_response(),
        },
    };
    hardened(response)
}

/// `GET /admin/events`: a `snapshot` at once, then every second, until the client goes away
/// or the admin's authorization expires.
async fn events(
    State(state): State<AdminState>,
    request: Parts,
) -> Result<EventStream<impl Stream<Item = Event> + Send + 'static>, Response> {
    let who = admin(&state.hub, &request).map_err(|denied| hardened(denied.into_response()))?;
    let mut interval = tokio::time::interval(SNAPSHOT_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let snapshots =
        futures_util::stream::unfold((state, interval), |(state, mut interval)| async {
            interval.tick().await;
            let event = snapshot_event(&state.hub, &state.activity).await;
            Some((event, (state, interval)))
        });
    // The authorization ends with the token: the stream ends then, and the page's
    // `EventSource` comes back with whatever cookie it holds by then.
    let expiry = who.expires_at().map(|at| {
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        tokio::time::Instant::now() + left
    });
    let until = async move {
        match expiry {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    Ok(EventStream::new(snapshots.take_until(until)).end_with(expired()))
}

/// The end of an admin stream whose authorization expired: a `retry:` hint, so the page comes
/// back at once (and is refused, unless its cookie holds a fresh token by then).
fn expired() -> Event {
    Event::builder()
        .retry(EXPIRED_RETRY)
        .comment("authorization expired")
        .build()
        .unwrap_or_else(|_| Event::retry(EXPIRED_RETRY))
}

async fn script() -> Response {
    hardened(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            SCRIPT,
        )
            .into_response(),
    )
}

async fn style() -> Response {
    hardened(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response())
}

/// Authenticates `request` with the hub's policy and checks it may operate the hub.
fn admin(hub: &Hub, request: &Parts) -> Result<Identity, Denied> {
    let who = hub.authenticate(request)?;
    hub.authorize(&who, Action::Admin, "*")?;
    Ok(who)
}

/// [`admin`] on the request's query token alone: the same request without its
/// `Authorization` and `Cookie` headers.
fn admin_from_query(hub: &Hub, request: &Parts) -> Result<Identity, Denied> {
    let mut bare = Request::new(());
    *bare.method_mut() = request.method.clone();
    *bare.uri_mut() = request.uri.clone();
    *bare.version_mut() = request.version;
    let mut headers: HeaderMap = request.headers.clone();
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::COOKIE);
    *bare.headers_mut() = headers;
    let (bare, ()) = bare.into_parts();
    admin(hub, &bare)
}

/// The token of the `authorization` query parameter, decoded as the hub's policy decodes it:
/// `None` without one, a `400` when it cannot be a cookie's value.
fn query_token(request: &Parts) -> Option<Result<String, Denied>> {
    let raw = request.uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == QUERY_PARAMETER && !value.is_empty()).then_some(value)
    })?;
    let plus_as_space = raw.replace('+', " ");
    let decoded = percent_decode_str(&plus_as_space).decode_utf8_lossy();
    let token = decoded.trim();
    let token = match token.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => token[7..].trim(),
        _ => token,
    };
    if token.is_empty() {
        return None;
    }
    // A JWT is base64url and dots; anything else cannot be a cookie value as is (RFC 6265
    // cookie-octet), and is no token of ours anyway.
    let cookie_safe = token.len() <= 8 * 1024
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=".contains(&b));
    Some(if cookie_safe {
        Ok(token.to_owned())
    } else {
        Err(Denied::invalid_token("the token is malformed"))
    })
}

/// `303 See Other` to `/admin`, setting the cookie `sse_token` to `token` until it expires
/// (at most a day). The cookie goes with requests under `/admin` only: the admin token is
/// a credential for the whole hub, and the page needs it nowhere else.
fn with_cookie(token: &str, who: &Identity, request: &Parts) -> Response {
    let mut cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/admin");
    if let Some(at) = who.expires_at() {
        let left = at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(MAX_COOKIE_AGE);
        cookie.push_str(&format!("; Max-Age={}", left.as_secs().max(1)));
    }
    if is_https(request) {
        cookie.push_str("; Secure");
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/admin"));
    match HeaderValue::from_str(&cookie) {
        Ok(value) => {
            headers.insert(header::SET_COOKIE, value);
        }
        // `query_token` let only cookie-safe bytes through.
        Err(_) => return Denied::invalid_token("the token is malformed").into_response(),
    }
    response
}

/// Whether the page was asked for over HTTPS (directly, or as a proxy in front says): then
/// the cookie is `Secure` too.
fn is_https(request: &Parts) -> bool {
    let header_says = |name: &str, needle: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.to_ascii_lowercase().contains(needle))
    };
    request.uri.scheme_str() == Some("https")
        || header_says("x-forwarded-proto", "https")
        || header_says("forwarded", "proto=https")
}

/// The headers every admin response carries: never cached, never framed, no inline code, no
/// token in a `Referer`.
fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The `snapshot` event: the hub now, as JSON.
async fn snapshot_event(hub: &Hub, activity: &Activity) -> Event {
    let data = snapshot(hub, activity).await.to_string();
    Event::builder()
        .event("snapshot")
        .data(data.as_str())
        .build()
        // JSON on one line and a constant name always build; this is never reached.
        .unwrap_or_else(|_| Event::data(data))
}

/// The hub now: connections, topics, disconnects and backend health.
async fn snapshot(hub: &Hub, activity: &Activity) -> Value {
    let now = SystemTime::now();
    let mut connections = hub.registry().snapshot();
    let connections_total = connections.len();

    // Subscribers per topic as the registry sees them: a topic with listeners but no
    // publishes yet is still worth a row.
    let mut listened: HashMap<String, usize> = HashMap::new();
    for connection in &connections {
        if let Some(topic) = connection.topic() {
            *listened.entry(topic.to_owned()).or_default() += 1;
        }
    }

    connections.sort_unstable_by(|a, b| {
        b.connected_at()
            .cmp(&a.connected_at())
            .then(b.id().cmp(&a.id()))
    });
    connections.truncate(MAX_CONNECTIONS);
    let connections: Vec<Value> = connections
        .iter()
        .map(|c| {
            let age = now
                .duration_since(c.connected_at())
                .unwrap_or_default()
                .as_secs();
            json!({
                "id": c.id(),
                "peer": c.peer().map(|peer| peer.to_string()),
                "path": c.path(),
                "topic": c.topic(),
                "label": c.label(),
                "user_agent": c.user_agent(),
                "age": age,
                "events_sent": c.events_sent(),
                "bytes_sent": c.bytes_sent(),
                "last_event_id": c.last_event_id(),
            })
        })
        .collect();

    // The topics seen: published to (Activity) or listened to (the registry), the most
    // active first.
    let mut seen: HashMap<String, TopicActivity> = activity
        .read()
        .into_iter()
        .map(|topic| (topic.name.clone(), topic))
        .collect();
    for topic in listened.keys() {
        seen.entry(topic.clone()).or_insert_with(|| TopicActivity {
            name: topic.clone(),
            total: 0,
            rate: 0.0,
            last: 0,
        });
    }
    let topics_total = seen.len();
    let mut ranked: Vec<TopicActivity> = seen.into_values().collect();
    let listeners = |name: &str| listened.get(name).copied().unwrap_or(0);
    ranked.sort_unstable_by(|a, b| {
        b.rate
            .total_cmp(&a.rate)
            .then_with(|| listeners(&b.name).cmp(&listeners(&a.name)))
            .then_with(|| b.last.cmp(&a.last))
            .then_with(|| b.total.cmp(&a.total))
            .then_with(|| a.name.cmp(&b.name))
    });
    ranked.truncate(MAX_TOPICS);
    let infos =
        futures_util::future::join_all(ranked.iter().map(|topic| hub.topic_info(&topic.name)))
            .await;
    let topics: Vec<Value> = ranked
        .iter()
        .zip(infos)
        .map(|(topic, info)| {
            let mut row = json!({
                "name": topic.name,
                "rate": (topic.rate * 10.0).round() / 10.0,
                "published": topic.total,
            });
            let fields = match info {
                Ok(Some(info)) => json!({
                    "exists": true,
                    "subscribers": info.subscribers,
                    "retained_events": info.retained_events,
                    "retained_bytes": info.retained_bytes,
                    "last_id": info.last_id,
                    "closed": info.closed,
                }),
                // Dropped (idle), or never opened on this backend.
                Ok(None) => json!({
                    "exists": false,
                    "subscribers": listeners(&topic.name),
                    "retained_events": 0,
                    "retained_bytes": 0,
                    "closed": false,
                }),
                Err(err) => json!({ "exists": false, "error": err.to_string() }),
            };
            if let (Value::Object(row), Value::Object(fields)) = (&mut row, fields) {
                row.extend(fields);
            }
            row
        })
        .collect();

    let registry = hub.registry().stats();
    let hub_stats = hub.stats();
    let backend = match hub.health() {
        Health::Ok => json!({ "status": "ok" }),
        Health::Unavailable(reason) => json!({ "status": "unavailable", "reason": reason }),
    };
    let millis = now.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    });
    json!({
        "time": millis,
        "connections": connections,
        "connections_total": connections_total,
        "topics": topics,
        "topics_total": topics_total,
        "published": hub_stats.published,
        "disconnects": {
            "open": registry.open,
            "opened": registry.opened,
            "refused": registry.refused,
            "ended": registry.ended,
            "client_gone": registry.client_gone,
            "closed": registry.closed,
            "shutdown": registry.shutdown,
            "max_lifetime": registry.max_lifetime,
            "stalled": registry.stalled,
            "slow_consumers": hub_stats.slow_consumers,
        },
        "backend": backend,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_the_last_ten_seconds() {
        let mut counts = Counts::new(0);
        for _ in 0..20 {
            counts.record(0);
        }
        counts.record(5);
        assert_eq!(counts.total, 21);
        assert_eq!(counts.rate(5), 2.1);
        assert_eq!(counts.rate(9), 2.1);
        assert_eq!(counts.rate(10), 0.1, "second 0 left the window");
        assert_eq!(counts.rate(15), 0.0);
        counts.record(40);
        assert_eq!(counts.rate(40), 0.1, "old seconds were cleared");
    }

    #[test]
    fn activity_tracks_a_bounded_number_of_topics_dropping_the_least_recently_active() {
        let mut topics = Topics::default();
        for n in 0..MAX_TRACKED_TOPICS - 1 {
            topics.record(&format!("old/{n}"), 0);
        }
        topics.record("busy", 0);
        topics.record("busy", 5);
        assert_eq!(topics.topics.len(), MAX_TRACKED_TOPICS);
        topics.record("new", 6);
        assert_eq!(
            topics.topics.len(),
            MAX_TRACKED_TOPICS - MAX_TRACKED_TOPICS / 10 + 1
        );
        assert_eq!(topics.topics["busy"].total, 2, "the recently active stay");
        assert!(topics.topics.contains_key("new"));
        for n in 0..3 * MAX_TRACKED_TOPICS {
            topics.record(&format!("flood/{n}"), 7);
        }
        assert!(topics.topics.len() <= MAX_TRACKED_TOPICS);
    }

    #[test]
    fn activity_ignores_names_no_topic_can_have() {
        let activity = Activity::default();
        activity.record_publish("");
        activity.record_publish(&"x".repeat(MAX_TOPIC_LEN + 1));
        assert!(activity.read().is_empty());
        activity.record_publish("news");
        assert_eq!(activity.read()[0].total, 1);
    }
}
