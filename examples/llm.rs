//! A resumable LLM-style answer: `POST` a prompt, read the answer's tokens as Server-Sent
//! Events, reload the page mid-answer and pick it up exactly where it was, or stop it.
//!
//! ```text
//! cargo run --example llm          # then open http://127.0.0.1:3000
//! curl -d '{"prompt":"hi","tokens":50}' -H 'content-type: application/json' http://127.0.0.1:3000/chat
//! # → 201 {"id":"…"}
//! curl -N http://127.0.0.1:3000/chat/<id>/stream                      # token…, done
//! curl -N -H 'Last-Event-ID: <id of a token>' http://127.0.0.1:3000/chat/<id>/stream   # resume
//! curl -X POST http://127.0.0.1:3000/chat/<id>/cancel                  # 202; the stream ends with `cancelled`
//! ```
//!
//! - `POST /chat` with JSON `{"prompt": "...", "tokens": N?, "interval_ms": M?}` answers `201`
//!   `{"id": "..."}` and starts a simulated answer: `N` tokens (default 200, at most 10 000),
//!   one every `M` ms (default 20, at most 10 000).
//! - `GET /chat/{id}/stream` sends events named `token` (data: the token's text), then `done`
//!   with data `{"tokens": N}`, and ends. It resumes exactly after `Last-Event-ID` (header or
//!   `lastEventId` query parameter); after the answer it sends the rest, `done`, and ends; for an
//!   unknown or expired id it answers `204`, which stops an `EventSource`.
//! - `POST /chat/{id}/cancel` answers `202`; the stream then ends with an event named
//!   `cancelled`. An answer nobody has listened to for 30 s is cancelled too.
//!
//! Configuration, from the environment: `ADDR` (default `127.0.0.1:3000`), `REDIS_URL` (keep
//! answers in Redis Streams, so a client can resume on another server; default in memory),
//! `STREAM_TTL` (seconds a finished answer is kept, default 300), `MAX_STREAMS` (answers being
//! produced at once on this server, default 1000; more get `503`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tower_sse::hub::StreamOptions;
use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};

/// The most tokens one answer may ask for.
pub const MAX_TOKENS: u64 = 10_000;
/// The longest interval between two tokens one answer may ask for.
pub const MAX_INTERVAL_MS: u64 = 10_000;
/// The longest prompt, in bytes.
pub const MAX_PROMPT: usize = 4096;
/// An answer nobody has listened to for this long is cancelled.
pub const ABANDON_AFTER: Duration = Duration::from_secs(30);

/// The server's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: String,
    pub redis_url: Option<String>,
    pub stream_ttl: Duration,
    pub max_streams: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:3000".to_owned(),
            redis_url: None,
            stream_ttl: Duration::from_secs(300),
            max_streams: 1000,
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
        config.redis_url = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
        let number = |name: &str| -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Err(_) => Ok(None),
                Ok(value) => value
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name} must be a whole number, not {value:?}")),
            }
        };
        if let Some(secs) = number("STREAM_TTL")? {
            config.stream_ttl = Duration::from_secs(secs);
        }
        if let Some(max) = number("MAX_STREAMS")? {
            config.max_streams = usize::try_from(max).unwrap_or(usize::MAX);
        }
        Ok(config)
    }
}

/// The app's parts: the router, the layer (for `shutdown_on`) and the hub.
pub struct App {
    pub router: Router,
    pub sse: SseLayer,
    pub hub: Hub,
}

#[derive(Clone)]
struct AppState {
    hub: Hub,
    max_streams: usize,
}

/// Builds the app; the error says which setting is wrong.
pub async fn app(config: &Config) -> Result<App, String> {
    let builder = Hub::builder()
        // A whole answer is kept, its opening marker and its end included.
        .history_events(usize::try_from(MAX_TOKENS).unwrap_or(usize::MAX) + 2)
        .topic_idle_ttl(config.stream_ttl);
    let hub = match &config.redis_url {
        Some(url) => builder
            .redis(url)
            .await
            .map_err(|err| format!("REDIS_URL: {err}"))?,
        None => builder.memory(),
    };
    let sse = SseLayer::new().registry(hub.registry());
    let state = AppState {
        hub: hub.clone(),
        max_streams: config.max_streams,
    };
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/chat", post(start))
        .route("/chat/{id}/stream", get(stream_answer))
        .route("/chat/{id}/cancel", post(cancel))
        .layer(sse.clone())
        .with_state(state);
    Ok(App { router, sse, hub })
}

/// Serves `app` until `signal` resolves, then ends every stream and returns.
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
#[serde(deny_unknown_fields)]
struct Ask {
    prompt: String,
    tokens: Option<u64>,
    interval_ms: Option<u64>,
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

/// The `n`th token (from 1) of the simulated answer to `prompt`.
pub fn token_text(prompt: &str, n: u64) -> String {
    const WORDS: &[&str] = &[
        "Server-Sent",
        "Events",
        "carry",
        "this",
        "answer",
        "one",
        "token",
        "at",
        "a",
        "time,",
        "and",
        "a",
        "reload",
        "picks",
        "it",
        "up",
        "where",
        "it",
        "was.",
    ];
    let words: Vec<&str> = prompt.split_whitespace().take(8).collect();
    let index = usize::try_from(n - 1).unwrap_or(usize::MAX);
    let word = if index < words.len() {
        words[index]
    } else {
        WORDS[(index - words.len()) % WORDS.len()]
    };
    format!("{word} ")
}

/// `POST /chat`: starts a simulated answer and answers `201 {"id": ...}`.
async fn start(
    State(state): State<AppState>,
    ask: Result<Json<Ask>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(ask) = match ask {
        Ok(ask) => ask,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    let tokens = ask.tokens.unwrap_or(200);
    let interval = ask.interval_ms.unwrap_or(20);
    if !(1..=MAX_TOKENS).contains(&tokens) {
        return bad_request(format!("tokens must be 1 to {MAX_TOKENS}"));
    }
    if interval > MAX_INTERVAL_MS {
        return bad_request(format!("interval_ms must be at most {MAX_INTERVAL_MS}"));
    }
    if ask.prompt.len() > MAX_PROMPT {
        return bad_request(format!("prompt must be at most {MAX_PROMPT} bytes"));
    }
    if state.hub.running_streams() >= state.max_streams {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            Json(json!({ "error": "too many answers in progress; try again shortly" })),
        )
            .into_response();
    }
    let prompt = ask.prompt;
    let interval = Duration::from_millis(interval);
    let answer = stream::iter(1..=tokens)
        .then(move |n| {
            let text = token_text(&prompt, n);
            async move {
                tokio::time::sleep(interval).await;
                Event::builder().event("token").data(text).build()
            }
        })
        // Tokens never hold a line break or a bad name: they always build.
        .filter_map(|event| async move { event.ok() })
        .chain(stream::once(async move {
            Event::builder()
                .event("done")
                .data(json!({ "tokens": tokens }).to_string())
                .build()
                .unwrap_or_else(|_| Event::data("{}"))
        }));
    match state
        .hub
        .spawn_stream(StreamOptions::new().abandon_after(ABANDON_AFTER), answer)
        .await
    {
        Ok(spawned) => (StatusCode::CREATED, Json(json!({ "id": spawned.id() }))).into_response(),
        Err(err) => err.into_response(),
    }
}

/// `GET /chat/{id}/stream`: the answer from its start, or after `Last-Event-ID`.
async fn stream_answer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    state.hub.resume(&id, last).await
}

/// `POST /chat/{id}/cancel`: `202`, or `404` when there is no answer in progress under `id`.
async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.hub.cancel(&id).await {
        Ok(true) => StatusCode::ACCEPTED.into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            "no answer in progress under that id\n",
        )
            .into_response(),
        Err(err) => err.into_response(),
    }
}

#[allow(dead_code)] // The tests include this file for `app` and have a main of their own.
#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("llm: {err}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
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
<title>tower-sse: a resumable answer</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
  form { display: flex; gap: .5rem; }
  input[name=prompt] { flex: 1; font: inherit; padding: .35rem .5rem; }
  #answer { white-space: pre-wrap; min-height: 6rem; padding: .75rem; background: #f6f6f6; border-radius: 6px; margin-top: 1rem; }
  #status { color: #666; font-size: .9rem; }
</style>
<h1>A resumable answer</h1>
<form id="ask"><input name="prompt" placeholder="Ask something" value="Tell me about Server-Sent Events" required><button>Ask</button><button type="button" id="stop" disabled>Stop</button></form>
<p id="status">idle</p>
<div id="answer"></div>
<script>
  const $ = (s) => document.querySelector(s);
  let source = null;
  // A reload cuts the stream before the page goes: that is not the answer going away.
  let leaving = false;
  addEventListener("beforeunload", () => { leaving = true; });
  function setStatus(text) { $("#status").textContent = text; }
  function watch(id) {
    if (source) source.close();
    sessionStorage.setItem("answer", id);
    $("#answer").textContent = "";
    $("#stop").disabled = false;
    // A first connection gets the answer from its start: a reload renders it all again.
    source = new EventSource(`/chat/${encodeURIComponent(id)}/stream`);
    source.onopen = () => setStatus("streaming");
    source.addEventListener("token", (e) => { $("#answer").textContent += e.data; });
    const finish = (text) => {
      setStatus(text); $("#stop").disabled = true; source.close(); sessionStorage.removeItem("answer");
    };
    source.addEventListener("done", (e) => finish(`done (${JSON.parse(e.data).tokens} tokens)`));
    source.addEventListener("cancelled", () => finish("stopped"));
    // An `error` event from the server carries data; a connection error does not.
    source.addEventListener("error", (e) => {
      if (leaving) return;
      if (e.data) finish("the answer failed");
      else if (source.readyState === EventSource.CLOSED) finish("gone");
      else setStatus("reconnecting");
    });
  }
  $("#ask").onsubmit = async (e) => {
    e.preventDefault();
    const r = await fetch("/chat", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: e.target.prompt.value }) });
    if (!r.ok) { setStatus(`refused: ${await r.text()}`); return; }
    watch((await r.json()).id);
  };
  $("#stop").onclick = async () => {
    const id = sessionStorage.getItem("answer");
    if (id) await fetch(`/chat/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  };
  const pending = sessionStorage.getItem("answer");
  if (pending) watch(pending);
</script>
</html>
"##;
