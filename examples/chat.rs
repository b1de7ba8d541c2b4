//! A chat room: post with `fetch`, receive with `EventSource`, see who is online.
//!
//! ```text
//! cargo run --example chat                                          # open http://127.0.0.1:3000
//! curl -N 'http://127.0.0.1:3000/events?name=ann'                   # join as "ann" and listen
//! curl -H 'Content-Type: application/json' -d '{"name":"bob","text":"hi"}' \
//!      http://127.0.0.1:3000/send                                   # post: {"id":"…"}
//! curl -N -H 'Last-Event-ID: <id>' 'http://127.0.0.1:3000/events?name=ann'   # resume
//! curl http://127.0.0.1:3000/online                                 # ["ann","bob"]
//! ```
//!
//! Routes:
//!
//! - `POST /send` with JSON `{"name": "…", "text": "…"}` publishes a message and answers
//!   `{"id": "…"}`; an empty or too long (over 500 characters) name or text gets `400` and
//!   `{"error": "…"}` saying which.
//! - `GET /events?name=NAME` is the event stream of the hub topic `chat`; `name` puts you on
//!   the online list (leave it out to only watch). A new client first gets the latest 50
//!   messages; a returning one (`Last-Event-ID` header or `lastEventId` query parameter) gets
//!   exactly what it missed, from a history of 200 events. Events, all with JSON data:
//!   - `message` (with an id): `{"name": "…", "text": "…", "at": 1700000000000}` (`at` in
//!     milliseconds since the Unix epoch);
//!   - `online`: the sorted list of the names connected now, `["ann", "bob"]`; sent to each
//!     client when it connects and to everyone whenever the list changes;
//!   - `gap`: the client's `Last-Event-ID` is no longer in the history (or predates a restart),
//!     so some messages cannot be replayed.
//! - `GET /online`: the names connected now, as in the `online` event.
//!
//! Who is online comes from the registry: the `/events` handler labels its connection with the
//! name (`Connection::set_label`), the registry drops the entry when the connection closes
//! (the browser tab was closed, the network dropped, or the server is shutting down), and a
//! task that watches the registry's presence notices tells everyone when the list changes. Names are not authenticated: put your login in front and
//! take the name from the session instead.
//!
//! Configuration, from the environment:
//!
//! ```text
//! ADDR        listen address, default 127.0.0.1:3000; prints "listening on http://ADDR" when ready
//! KEEP_ALIVE  keep-alive interval in seconds (default 15); also how soon a vanished client is noticed
//! ```
//!
//! SIGINT or SIGTERM shuts it down gracefully: every stream ends with a `retry:` hint, so the
//! browsers reconnect when it is back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_sse::registry::{Connection, PresenceStream};
use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer};

/// The hub topic of the chat room.
pub const TOPIC: &str = "chat";

/// The longest name or message, in characters.
pub const MAX_LEN: usize = 500;

/// Events the hub keeps for clients that reconnect.
const HISTORY: usize = 200;

/// Messages a new client is shown.
const RECENT: usize = 50;

/// The chat's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: String,
    pub keep_alive: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:3000".to_owned(),
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
        if let Ok(value) = std::env::var("KEEP_ALIVE") {
            let secs: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("KEEP_ALIVE must be a whole number, not {value:?}"))?;
            config.keep_alive = Duration::from_secs(secs);
        }
        Ok(config)
    }
}

/// The chat's parts: the router, the layer (whose `shutdown_on` ends every stream at shutdown)
/// and the hub.
pub struct App {
    pub router: Router,
    pub sse: SseLayer,
    #[allow(dead_code)] // For tests that include this file; `serve` does not need it.
    pub hub: Hub,
}

/// The handlers' state; a cheap clone.
#[derive(Clone)]
struct Chat {
    hub: Hub,
    shared: Arc<Shared>,
}

struct Shared {
    /// Held while publishing and while subscribing a new client, so that what a new client is
    /// shown and where its subscription starts meet exactly.
    log: tokio::sync::Mutex<Log>,
}

#[derive(Default)]
struct Log {
    /// The latest messages, as published (with their ids): what a new client is shown.
    recent: VecDeque<Event>,
    /// The id of the latest event of the topic, message or `online`.
    last_id: Option<String>,
}

impl Chat {
    /// Publishes to the topic. Everything is published through here, which keeps the log exact.
    async fn publish(&self, event: Event, is_message: bool) -> Result<Event, HubError> {
        let mut log = self.shared.log.lock().await;
        let event = self.hub.publish(TOPIC, event).await?.into_event();
        log.last_id = event.id().map(str::to_owned);
        if is_message {
            log.recent.push_back(event.clone());
            if log.recent.len() > RECENT {
                log.recent.pop_front();
            }
        }
        Ok(event)
    }

    /// The names connected now, sorted, each once (a name may have several tabs open), plus
    /// `joining`: a stream whose handler is still running is not in the registry yet. Each
    /// stream carries its name as its registry label, so the registry alone answers this.
    fn online(&self, joining: Option<&str>) -> Vec<String> {
        let mut list: Vec<String> = self
            .hub
            .registry()
            .snapshot()
            .iter()
            .filter_map(|conn| conn.label().map(str::to_owned))
            .chain(joining.map(str::to_owned))
            .collect();
        list.sort();
        list.dedup();
        list
    }
}

/// Builds the app and starts the task that announces who is online.
pub async fn app(config: &Config) -> Result<App, String> {
    let hub = Hub::builder().history_events(HISTORY).memory();
    let sse = SseLayer::new()
        .keep_alive(config.keep_alive)
        .registry(hub.registry());
    let chat = Chat {
        hub: hub.clone(),
        shared: Arc::new(Shared {
            log: Default::default(),
        }),
    };
    // Subscribed to before the first request, so no connect or disconnect goes unseen.
    tokio::spawn(announce_online(chat.clone(), hub.registry().presence()));
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/events", get(events))
        .route("/send", post(send))
        .route("/online", get(online))
        .layer(sse.clone())
        .with_state(chat);
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
struct Who {
    #[serde(default)]
    name: String,
}

/// `GET /events?name=NAME`: the room's event stream.
async fn events(
    State(chat): State<Chat>,
    conn: Connection,
    Query(who): Query<Who>,
    last: Option<LastEventId>,
) -> Response {
    let name = who.name.trim();
    if name.chars().count() > MAX_LEN {
        return bad_request(format!("name is longer than {MAX_LEN} characters"));
    }
    let resuming = last.is_some();
    let log = chat.shared.log.lock().await;
    let (subscription, mut first) = if resuming {
        // Replay exactly what the client missed (or tell it, with a `gap` event, that it can't).
        (chat.hub.subscribe(TOPIC, last).await, Vec::new())
    } else {
        // Show the latest messages, then everything published after the latest event. Nothing
        // is published while the lock is held, so nothing falls in between.
        let after = log
            .last_id
            .as_deref()
            .and_then(|id| LastEventId::new(id).ok());
        let recent: Vec<Event> = log.recent.iter().cloned().collect();
        (chat.hub.subscribe(TOPIC, after).await, recent)
    };
    let latest = log.last_id.clone();
    drop(log);
    let subscription = match subscription {
        Ok(subscription) => subscription,
        Err(err) => return err.into_response(),
    };
    let joining = (!name.is_empty()).then_some(name);
    if let Some(name) = joining {
        // The registry drops the label with the connection when it closes.
        conn.set_label(name);
    }
    // The list as it is now, this client included. For a new client it carries the latest id,
    // since its subscription starts there: should it reconnect before anything else arrives,
    // it resumes from there. A returning client's id must not move before its replay.
    let mut online = online_event(&chat.online(joining));
    if let (false, Some(id)) = (resuming, latest) {
        online = online.with_id(&id).unwrap_or(online);
    }
    first.push(online);
    subscription.prepend(first).into_response()
}

/// `GET /online`: the names connected now.
async fn online(State(chat): State<Chat>) -> Json<Vec<String>> {
    Json(chat.online(None))
}

#[derive(Deserialize)]
struct Post {
    #[serde(default)]
    name: String,
    #[serde(default)]
    text: String,
}

#[derive(Serialize)]
struct Message<'a> {
    name: &'a str,
    text: &'a str,
    /// Milliseconds since the Unix epoch.
    at: u64,
}

/// `POST /send` with `{"name": "…", "text": "…"}`: publishes a message, answers its id.
async fn send(State(chat): State<Chat>, body: Result<Json<Post>, JsonRejection>) -> Response {
    let post = match body {
        Ok(Json(post)) => post,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    let (name, text) = match (checked("name", &post.name), checked("text", &post.text)) {
        (Ok(name), Ok(text)) => (name, text),
        (Err(why), _) | (_, Err(why)) => return bad_request(why),
    };
    let at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let message = named_json("message", &Message { name, text, at });
    match chat.publish(message, true).await {
        Ok(event) => Json(json!({ "id": event.id() })).into_response(),
        Err(err) => err.into_response(),
    }
}

/// `value` trimmed, or why it is refused.
fn checked<'a>(field: &str, value: &'a str) -> Result<&'a str, String> {
    let value = value.trim();
    let len = value.chars().count();
    if len == 0 {
        return Err(format!("{field} is empty"));
    }
    if len > MAX_LEN {
        return Err(format!(
            "{field} is {len} characters long; the limit is {MAX_LEN}"
        ));
    }
    Ok(value)
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

/// Watches the registry's connect and disconnect notices and, whenever the list of names
/// changes, tells everyone with an `online` event.
async fn announce_online(chat: Chat, mut presence: PresenceStream) {
    let mut announced: Vec<String> = Vec::new();
    while presence.next().await.is_some() {
        let online = chat.online(None);
        if online == announced {
            continue; // e.g. a second tab of someone already online
        }
        match chat.publish(online_event(&online), false).await {
            Ok(_) => announced = online,
            Err(err) => tracing::warn!(%err, "could not publish who is online"),
        }
    }
}

fn online_event(names: &[String]) -> Event {
    named_json("online", &names)
}

/// An event named `name` with `data` as JSON.
fn named_json(name: &'static str, data: &impl Serialize) -> Event {
    Event::builder()
        .event(name)
        .json_data(data)
        .build()
        .expect("a constant name and plain data always make a valid JSON event")
}

#[allow(dead_code)] // Tests include this file for `app` and have a main of their own.
#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("chat: {err}");
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

/// The page: plain HTML, CSS and JavaScript, no build step and nothing loaded from elsewhere.
/// Messages are rendered with `textContent`, never `innerHTML`: names and texts are untrusted.
const PAGE: &str = r##"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chat · tower-sse</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24'%3E%3Cpath fill='%234f46e5' d='M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z'/%3E%3C/svg%3E">
<style>
  :root { --bg: #f3f4f8; --panel: #fff; --line: #e4e6ee; --text: #1c2033; --muted: #6b7285;
          --accent: #4f46e5; --accent-soft: #eef0ff; --green: #16a34a; --orange: #d97706; }
  * { box-sizing: border-box; }
  html, body { height: 100%; }
  body { margin: 0; background: var(--bg); color: var(--text);
         font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  .app { height: 100%; max-width: 68rem; margin: 0 auto; padding: 1rem; display: flex; flex-direction: column; gap: .75rem; }
  header { display: flex; align-items: center; gap: 1rem; flex-wrap: wrap; }
  h1 { margin: 0; font-size: 1.35rem; display: flex; align-items: center; gap: .5rem; }
  h1 svg { width: 1.6rem; height: 1.6rem; fill: var(--accent); }
  .who { margin-left: auto; display: flex; align-items: center; gap: .5rem; color: var(--muted); }
  input, button { font: inherit; }
  input { border: 1px solid var(--line); border-radius: .5rem; padding: .45rem .7rem; background: #fff; color: var(--text); }
  input:focus { outline: 2px solid var(--accent); outline-offset: -1px; border-color: transparent; }
  #name { width: 11rem; font-weight: 600; }
  #state { display: inline-flex; align-items: center; gap: .4rem; padding: .15rem .65rem; border-radius: 999px;
           background: #e9ebf2; color: var(--muted); font-weight: 600; font-size: .85rem; }
  #state::before { content: ""; width: .5rem; height: .5rem; border-radius: 50%; background: currentColor; }
  #state.live { color: var(--green); background: #e3f6e9; }
  #state.reconnecting { color: var(--orange); background: #fdf0dc; }
  #state.connecting::before, #state.reconnecting::before { animation: pulse 1s ease-in-out infinite; }
  @keyframes pulse { 50% { opacity: .3; } }
  .layout { flex: 1; min-height: 0; display: grid; grid-template-columns: 1fr 15rem; gap: .75rem; }
  .room, aside { background: var(--panel); border: 1px solid var(--line); border-radius: .75rem;
                 box-shadow: 0 1px 3px rgba(20,24,40,.06); min-height: 0; }
  .room { display: flex; flex-direction: column; }
  #messages { flex: 1; overflow-y: auto; margin: 0; padding: 1rem; list-style: none; display: flex; flex-direction: column; gap: .6rem; }
  #messages:empty::before { content: "No messages yet. Say hello!"; color: var(--muted); margin: auto; }
  #messages li { max-width: 75%; align-self: flex-start; background: #f4f5fa; border-radius: .2rem .9rem .9rem .9rem;
                 padding: .45rem .8rem .55rem; }
  #messages li.mine { align-self: flex-end; background: var(--accent-soft); border-radius: .9rem .2rem .9rem .9rem; }
  #messages .meta { display: flex; gap: .6rem; align-items: baseline; font-size: .8rem; }
  #messages .author { font-weight: 700; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 20rem; }
  #messages time { color: var(--muted); }
  #messages .text { margin: .1rem 0 0; white-space: pre-wrap; overflow-wrap: anywhere; }
  #send { display: flex; gap: .5rem; padding: .75rem; border-top: 1px solid var(--line); }
  #text { flex: 1; }
  button { border: 0; border-radius: .5rem; padding: .45rem 1.1rem; background: var(--accent); color: #fff; font-weight: 600; cursor: pointer; }
  button:hover { filter: brightness(1.1); }
  #notice { margin: 0; padding: 0 .9rem .6rem; color: #b42318; font-size: .85rem; }
  #notice:empty { display: none; }
  aside { padding: 1rem; overflow-y: auto; }
  aside h2 { margin: 0 0 .6rem; font-size: .8rem; text-transform: uppercase; letter-spacing: .1em; color: var(--muted); }
  #online { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: .35rem; }
  #online li { display: flex; align-items: center; gap: .5rem; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  #online li::before { content: ""; flex: none; width: .55rem; height: .55rem; border-radius: 50%; background: var(--green); }
  #online li.me::after { content: "(you)"; color: var(--muted); font-size: .85rem; }
  @media (max-width: 640px) { .layout { grid-template-columns: 1fr; grid-template-rows: 1fr auto; } aside { max-height: 8rem; } }
  body:not([data-state="live"]) #online { opacity: .45; }
</style>
<div class="app">
  <header>
    <h1><svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"/></svg>Chat</h1>
    <label class="who">Your name <input id="name" maxlength="500" autocomplete="nickname" required></label>
    <span id="state" class="connecting">connecting</span>
  </header>
  <div class="layout">
    <section class="room">
      <ul id="messages" aria-live="polite"></ul>
      <form id="send">
        <input id="text" placeholder="Write a message…" maxlength="500" autocomplete="off" required>
        <button>Send</button>
      </form>
      <p id="notice" role="status"></p>
    </section>
    <aside>
      <h2>Online · <span id="count">0</span></h2>
      <ul id="online"></ul>
    </aside>
  </div>
</div>
<script>
  const $ = (s) => document.querySelector(s);
  const messages = $("#messages");
  const nameInput = $("#name");
  const NAME_KEY = "tower-sse-chat-name";
  nameInput.value = localStorage.getItem(NAME_KEY) || `guest-${Math.floor(1000 + Math.random() * 9000)}`;
  localStorage.setItem(NAME_KEY, nameInput.value);
  let me = nameInput.value.trim();
  let source = null, retryTimer = null;
  // The id of the last event seen: a new EventSource (after a name change, or after the server
  // refused a connection) resumes from it with the `lastEventId` query parameter.
  let lastId = "";

  function setState(text) {
    $("#state").textContent = text;
    $("#state").className = text;
    document.body.dataset.state = text; // dims what may be out of date while not live
  }
  function notice(text) { $("#notice").textContent = text; }
  const COLOURS = ["#c2410c", "#b91c1c", "#be185d", "#7e22ce", "#4338ca", "#0369a1", "#0f766e", "#15803d"];
  function colour(name) {
    let h = 0;
    for (const c of name) h = (h * 31 + c.codePointAt(0)) % 1000003;
    return COLOURS[h % COLOURS.length];
  }

  function addMessage(id, m) {
    // Replayed after a gap: already on the page.
    if (id && messages.querySelector(`li[data-id="${CSS.escape(id)}"]`)) return;
    const atBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 60;
    const li = document.createElement("li");
    if (id) li.dataset.id = id;
    li.dataset.name = m.name;
    li.classList.toggle("mine", m.name === me);
    const meta = document.createElement("div");
    meta.className = "meta";
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = m.name;
    author.style.color = colour(m.name);
    const time = document.createElement("time");
    time.dateTime = new Date(m.at).toISOString();
    time.textContent = new Date(m.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    meta.append(author, time);
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = m.text;
    li.append(meta, text);
    messages.append(li);
    while (messages.children.length > 500) messages.firstElementChild.remove();
    if (atBottom || m.name === me) messages.scrollTop = messages.scrollHeight;
  }

  function showOnline(names) {
    $("#online").replaceChildren(...names.map((name) => {
      const li = document.createElement("li");
      li.textContent = name;
      li.classList.toggle("me", name === me);
      return li;
    }));
    $("#count").textContent = names.length;
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    const params = new URLSearchParams();
    if (me) params.set("name", me);
    if (lastId) params.set("lastEventId", lastId);
    const es = source = new EventSource(`/events?${params}`);
    es.onopen = () => setState("live");
    es.onerror = () => {
      if (es !== source) return;
      setState("reconnecting");
      // The browser retries by itself unless the server answered with an error status.
      if (es.readyState === EventSource.CLOSED) retryTimer = setTimeout(connect, 3000);
    };
    es.addEventListener("message", (e) => {
      lastId = e.lastEventId;
      addMessage(e.lastEventId, JSON.parse(e.data));
    });
    es.addEventListener("online", (e) => {
      lastId = e.lastEventId;
      showOnline(JSON.parse(e.data));
    });
    es.addEventListener("gap", (e) => {
      lastId = e.lastEventId;
      notice("Some messages could not be recovered: the server restarted, or they are too old.");
    });
  }

  nameInput.addEventListener("change", () => {
    me = nameInput.value.trim();
    localStorage.setItem(NAME_KEY, me);
    for (const li of messages.children) li.classList.toggle("mine", li.dataset.name === me);
    setState("connecting");
    connect(); // under the new name, resuming after lastId
  });

  $("#send").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("#text");
    if (!input.value.trim()) return;
    try {
      const response = await fetch("/send", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: me, text: input.value }),
      });
      if (response.ok) {
        input.value = ""; // the message shows up when it comes back on the stream
        notice("");
      } else {
        const body = await response.json().catch(() => ({}));
        notice(`Not sent: ${body.error || response.statusText}`);
      }
    } catch {
      notice("Not sent: the server cannot be reached.");
    }
    input.focus();
  });

  connect();
</script>
</html>
"##;
