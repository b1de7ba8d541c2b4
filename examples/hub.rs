//! The tower-sse hub server: publish to topics over HTTP, subscribe with `EventSource`.
//!
//! ```text
//! cargo run --release --example hub
//! curl -N http://127.0.0.1:3000/events/news                  # subscribe
//! curl -d 'hello' http://127.0.0.1:3000/publish/news          # publish: {"id":"…"}
//! curl -d '{"p":1}' 'http://127.0.0.1:3000/publish/news?event=price'
//! curl -N -H 'Last-Event-ID: <id>' http://127.0.0.1:3000/events/news   # resume
//! curl -N 'http://127.0.0.1:3000/events/news?from=oldest'    # everything retained, then live
//! curl http://127.0.0.1:3000/topics/news                     # subscribers, retained events
//! curl -X POST http://127.0.0.1:3000/close/news              # end the topic's streams
//! curl http://127.0.0.1:3000/connections
//! curl http://127.0.0.1:3000/health                         # {"backend":"ok"}, or 503
//! ```
//!
//! Configuration, from the environment:
//!
//! ```text
//! ADDR            listen address, default 127.0.0.1:3000; prints "listening on http://ADDR" when ready
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
//! REDIS_URL       e.g. redis://127.0.0.1:6379: keep history in Redis Streams, so several hub
//!                 servers share it (default: in memory)
//! ```
//!
//! SIGINT or SIGTERM shuts it down gracefully: every stream ends with a `retry:` hint, then the
//! process exits.

use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tower_sse::backend::{Health, Start};
use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};

/// The hub server's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: String,
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
    pub redis_url: Option<String>,
}

/// The default cap on open streams from one client address.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 50;

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:3000".to_owned(),
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
            redis_url: None,
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
        config.redis_url = std::env::var("REDIS_URL")
            .ok()
            .filter(|url| !url.is_empty());
        Ok(config)
    }
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

/// The hub server's parts: the router, the layer (whose `shutdown_on` ends every stream at
/// shutdown) and the hub.
pub struct App {
    pub router: Router,
    pub sse: SseLayer,
    pub hub: Hub,
}

/// Builds the app; the error says which setting is wrong.
pub async fn app(config: &Config) -> Result<App, String> {
    let mut builder = Hub::builder().history_events(config.history);
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
        .registry(hub.registry());
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
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/events/{topic}", get(subscribe))
        .route("/publish/{topic}", post(publish))
        .route("/close/{topic}", post(close))
        .route("/topics/{topic}", get(topic_info))
        .route("/connections", get(connections))
        .route("/health", get(health))
        .layer(sse.clone())
        .with_state(hub.clone());
    Ok(App { router, sse, hub })
}

/// Serves `app` until `signal` resolves, then ends every stream and returns once the open
/// connections have finished.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Timeouts, a send buffer cap, peer addresses (for the layer's per-peer limits and
    // registry) and a shutdown that returns within its deadline whatever clients do.
    tower_sse::serve(listener, app.router)
        .with_graceful_shutdown(app.sse.shutdown_on(signal))
        .await
}

#[derive(Deserialize)]
struct SubscribeParams {
    /// `oldest`: a first connection gets everything retained, then live events.
    from: Option<String>,
}

async fn subscribe(
    State(hub): State<Hub>,
    Path(topic): Path<String>,
    Query(params): Query<SubscribeParams>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    let first = match params.from.as_deref() {
        Some("oldest") => Start::Oldest,
        _ => Start::Live,
    };
    hub.subscribe_from(&topic, Start::resume_or(last, first))
        .await
}

/// Ends every stream of the topic with an `end` event; reconnects then get `204`.
async fn close(State(hub): State<Hub>, Path(topic): Path<String>) -> Response {
    match hub.close(&topic).await {
        Ok(end) => Json(json!({ "id": end.id() })).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn topic_info(State(hub): State<Hub>, Path(topic): Path<String>) -> Response {
    match hub.topic_info(&topic).await {
        Ok(Some(info)) => Json(json!({
            "subscribers": info.subscribers,
            "retained_events": info.retained_events,
            "retained_bytes": info.retained_bytes,
            "last_id": info.last_id,
            "closed": info.closed,
        }))
        .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such topic\n").into_response(),
        Err(err) => err.into_response(),
    }
}

#[derive(Deserialize)]
struct PublishParams {
    event: Option<String>,
}

async fn publish(
    State(hub): State<Hub>,
    Path(topic): Path<String>,
    Query(params): Query<PublishParams>,
    data: String,
) -> Response {
    let mut event = Event::builder().data(data);
    if let Some(name) = params.event {
        event = event.event(name);
    }
    let event = match event.build() {
        Ok(event) => event,
        Err(err) => return (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response(),
    };
    match hub.publish(&topic, event).await {
        Ok(event) => Json(json!({ "id": event.id() })).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn connections(State(hub): State<Hub>) -> Json<serde_json::Value> {
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
    Json(json!(list))
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

async fn run() -> Result<(), String> {
    // Logs to stderr; RUST_LOG=debug shows more (e.g. refused streams).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Config::from_env()?;
    let app = app(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.addr)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.addr))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
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
  input[name=data] { flex: 1; }
  #state { font-weight: 600; }
  #state.open { color: #137333; } #state.reconnecting { color: #b06000; }
  ol { font-family: ui-monospace, monospace; padding-left: 0; list-style: none; }
  li { padding: .15rem .4rem; border-bottom: 1px solid #eee; }
  li.gap { background: #fff4e5; } li.note { color: #666; font-style: italic; }
  .id { color: #888; margin-right: .75rem; }
</style>
<h1>tower-sse hub</h1>
<form id="watch"><label>Topic <input name="topic" value="news" required></label><button>Watch</button></form>
<p>Connection: <span id="state">idle</span> · reconnects: <span id="reconnects">0</span></p>
<form id="publish"><input name="data" placeholder="event data" required><input name="event" placeholder="event name (optional)" size="14"><button>Publish</button></form>
<ol id="log"></ol>
<script>
  const $ = (s) => document.querySelector(s);
  const log = $("#log");
  let source = null, topic = null, reconnects = 0;
  function add(text, cls, id) {
    const li = document.createElement("li");
    if (cls) li.className = cls;
    if (id) { const s = document.createElement("span"); s.className = "id"; s.textContent = id; li.append(s); }
    li.append(document.createTextNode(text));
    log.prepend(li);
    while (log.children.length > 200) log.lastChild.remove();
  }
  function setState(text) { $("#state").textContent = text; $("#state").className = text; }
  function watch(name) {
    if (source) source.close();
    topic = name; reconnects = 0; $("#reconnects").textContent = "0";
    log.replaceChildren();
    add(`watching "${name}"`, "note");
    source = new EventSource(`/events/${encodeURIComponent(name)}`);
    let opened = false;
    source.onopen = () => {
      if (opened) { reconnects++; $("#reconnects").textContent = reconnects; add("reconnected", "note"); }
      opened = true; setState("open");
    };
    source.onerror = () => setState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
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
  $("#watch").onsubmit = (e) => { e.preventDefault(); watch(e.target.topic.value); };
  $("#publish").onsubmit = async (e) => {
    e.preventDefault();
    const f = e.target;
    const q = f.event.value ? `?event=${encodeURIComponent(f.event.value)}` : "";
    const r = await fetch(`/publish/${encodeURIComponent(topic)}${q}`, { method: "POST", body: f.data.value });
    if (!r.ok) add(`publish failed: ${await r.text()}`, "note"); else f.data.value = "";
  };
  watch($("#watch").topic.value);
</script>
</html>
"##;
