//! A live departures board: a simulated airport publishes every change to a hub topic, and
//! browsers watch the board update, resuming where they left off when they reconnect.
//!
//! ```text
//! cargo run --example dashboard                                     # open http://127.0.0.1:3000
//! curl -N http://127.0.0.1:3000/events                              # snapshot, then live changes
//! curl -N -H 'Last-Event-ID: <id>' http://127.0.0.1:3000/events     # missed changes, then live
//! curl http://127.0.0.1:3000/board                                  # the whole board as JSON
//! ```
//!
//! The events on `/events`, all with JSON data:
//!
//! - `snapshot` (no id): `{"now": "06:41", "departures": [row, …]}`, sent first to a client
//!   that connects without `Last-Event-ID`. `GET /board` answers the same JSON.
//! - `departure` (with an id): one changed row, `{"id", "flight", "destination", "scheduled",
//!   "expected", "gate", "status", "updated", "removed"}`. Times are `HH:MM` of the simulated
//!   clock; `status` is one of `On time`, `Delayed`, `Boarding`, `Final call`, `Gate closed`,
//!   `Departed`, `Cancelled`; `removed: true` means the row leaves the board.
//! - `gap`: sent instead of a replay when the client's `Last-Event-ID` is no longer in the
//!   history (or comes from before a restart); the client re-reads `GET /board` to resync.
//!
//! The pattern to copy: keep the state (the board) and publish its changes under one lock, and
//! take the same lock to subscribe and read the snapshot. Then a new client's snapshot and its
//! live changes meet exactly, with nothing missing and nothing applied twice.
//!
//! Configuration, from the environment:
//!
//! ```text
//! ADDR        listen address, default 127.0.0.1:3000; prints "listening on http://ADDR" when ready
//! TICK_MS     milliseconds per simulated minute (default 1000)
//! KEEP_ALIVE  keep-alive interval in seconds (default 15)
//! ```
//!
//! SIGINT or SIGTERM shuts it down gracefully: every stream ends with a `retry:` hint, so the
//! browsers reconnect (and resync) when it is back.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::Mutex;
use tower_sse::backend::GapResume;
use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};

/// The hub topic the board's changes are published to.
pub const TOPIC: &str = "departures";

/// The dashboard's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: String,
    /// How often the simulated clock moves on by one minute.
    pub tick: Duration,
    pub keep_alive: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:3000".to_owned(),
            tick: Duration::from_millis(1000),
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
        if let Some(ms) = number("TICK_MS")? {
            config.tick = Duration::from_millis(ms.max(1));
        }
        if let Some(secs) = number("KEEP_ALIVE")? {
            config.keep_alive = Duration::from_secs(secs);
        }
        Ok(config)
    }
}

fn number(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} must be a whole number, not {value:?}")),
    }
}

/// The dashboard's parts: the router, the layer (whose `shutdown_on` ends every stream at
/// shutdown) and the hub the simulated airport publishes to.
pub struct App {
    pub router: Router,
    pub sse: SseLayer,
    #[allow(dead_code)] // For tests that include this file; `serve` does not need it.
    pub hub: Hub,
}

#[derive(Clone)]
struct AppState {
    hub: Hub,
    /// The board; held while publishing its changes and while taking a snapshot.
    board: Arc<Mutex<Board>>,
}

/// Builds the app and starts the simulated airport (a task that lives as long as the runtime).
pub async fn app(config: &Config) -> Result<App, String> {
    let hub = Hub::builder()
        // After a gap the client re-reads the whole board, so old changes replayed on top of
        // it would only roll rows back: continue with live changes instead.
        .gap_resume(GapResume::Live)
        .memory();
    let sse = SseLayer::new()
        .keep_alive(config.keep_alive)
        .registry(hub.registry());
    let state = AppState {
        hub: hub.clone(),
        board: Arc::new(Mutex::new(Board::new(6 * 60, fastrand::Rng::new()))),
    };
    tokio::spawn(simulate(state.clone(), config.tick));
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/events", get(events))
        .route("/board", get(board))
        .layer(sse.clone())
        .with_state(state);
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

/// `GET /events`: a snapshot then live changes for a new client; for a returning one, the
/// changes it missed (or a `gap` event) then live changes.
async fn events(
    State(state): State<AppState>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    // While the lock is held the board cannot change, so the snapshot below shows exactly the
    // changes published before this subscription, and the subscription delivers the rest.
    let board = state.board.lock().await;
    let first_visit = last.is_none();
    let subscription = state.hub.subscribe(TOPIC, last).await?;
    if !first_visit {
        return Ok(subscription);
    }
    // No id on the snapshot: it must not move the client's last event id.
    Ok(subscription.prepend([named_json("snapshot", &board.snapshot())]))
}

/// `GET /board`: the whole board, as in the `snapshot` event.
async fn board(State(state): State<AppState>) -> Json<Snapshot> {
    Json(state.board.lock().await.snapshot())
}

/// The simulated airport: every `tick`, the board clock moves on by a minute and each change
/// is published as a `departure` event.
async fn simulate(state: AppState, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await; // The first tick is immediate; the board starts as it is.
    loop {
        interval.tick().await;
        let mut board = state.board.lock().await;
        for row in board.tick() {
            if let Err(err) = state
                .hub
                .publish(TOPIC, named_json("departure", &row))
                .await
            {
                tracing::warn!(%err, "could not publish a departure");
            }
        }
    }
}

/// An event named `name` with `data` as JSON.
fn named_json(name: &'static str, data: &impl Serialize) -> Event {
    Event::builder()
        .event(name)
        .json_data(data)
        .build()
        .expect("a constant name and plain data always make a valid JSON event")
}

// ---------------------------------------------------------------------------------------------
// The simulation. Nothing below is specific to SSE: replace it with your own data source.
// ---------------------------------------------------------------------------------------------

/// How many departures the board shows.
const BOARD_SIZE: usize = 14;

const AIRLINES: &[&str] = &[
    "BA", "LH", "AF", "KL", "IB", "AZ", "SK", "LX", "OS", "TP", "EI", "AY", "SN", "LO",
];

const DESTINATIONS: &[&str] = &[
    "London Heathrow",
    "Frankfurt",
    "Paris CDG",
    "Amsterdam",
    "Madrid",
    "Rome Fiumicino",
    "Copenhagen",
    "Zurich",
    "Vienna",
    "Lisbon",
    "Dublin",
    "Barcelona",
    "Stockholm Arlanda",
    "Oslo",
    "Athens",
    "Prague",
    "Warsaw",
    "Helsinki",
    "Brussels",
    "Milan Linate",
    "Munich",
    "Edinburgh",
    "Reykjavik",
    "Istanbul",
    "New York JFK",
    "Montreal",
    "Dubai",
    "Tokyo Haneda",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    OnTime,
    Delayed,
    Boarding,
    FinalCall,
    GateClosed,
    Departed,
    Cancelled,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::OnTime => "On time",
            Status::Delayed => "Delayed",
            Status::Boarding => "Boarding",
            Status::FinalCall => "Final call",
            Status::GateClosed => "Gate closed",
            Status::Departed => "Departed",
            Status::Cancelled => "Cancelled",
        }
    }

    /// Whether the flight is still waiting for boarding: the only time it may be delayed,
    /// change gate or be cancelled.
    fn is_waiting(self) -> bool {
        matches!(self, Status::OnTime | Status::Delayed)
    }
}

/// One departure. Times are minutes of the simulated clock since it started at midnight.
#[derive(Debug, Clone)]
struct Flight {
    id: u64,
    flight: String,
    destination: &'static str,
    scheduled: u32,
    expected: u32,
    gate: String,
    status: Status,
    /// When it departed or was cancelled: it leaves the board a while later.
    done_at: Option<u32>,
    /// When it last changed.
    updated: u32,
}

impl Flight {
    /// The row as clients see it.
    fn row(&self, removed: bool) -> Row {
        Row {
            id: format!("d{}", self.id),
            flight: self.flight.clone(),
            destination: self.destination,
            scheduled: clock(self.scheduled),
            expected: clock(self.expected),
            gate: self.gate.clone(),
            status: self.status.label(),
            updated: clock(self.updated),
            removed,
        }
    }

    /// The status the clock gives a flight that is neither cancelled nor gone.
    fn status_at(&self, now: u32) -> Status {
        let left = i64::from(self.expected) - i64::from(now);
        match left {
            ..=0 => Status::Departed,
            1..=5 => Status::GateClosed,
            6..=15 => Status::FinalCall,
            16..=35 => Status::Boarding,
            _ if self.expected > self.scheduled => Status::Delayed,
            _ => Status::OnTime,
        }
    }
}

/// One departure as clients see it: the data of a `departure` event.
#[derive(Debug, Clone, Serialize)]
struct Row {
    id: String,
    flight: String,
    destination: &'static str,
    scheduled: String,
    expected: String,
    gate: String,
    status: &'static str,
    /// When the row last changed.
    updated: String,
    /// Whether the row leaves the board.
    removed: bool,
}

/// The whole board: the data of a `snapshot` event and of `GET /board`.
#[derive(Debug, Clone, Serialize)]
struct Snapshot {
    now: String,
    departures: Vec<Row>,
}

/// `HH:MM` for a minute of the simulated clock.
fn clock(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60 % 24, minutes % 60)
}

struct Board {
    now: u32,
    /// In scheduled order: new flights are scheduled after every other one.
    flights: Vec<Flight>,
    next_id: u64,
    rng: fastrand::Rng,
}

impl Board {
    /// A full board at `now`, some flights already boarding, a few delayed.
    fn new(now: u32, rng: fastrand::Rng) -> Board {
        let mut board = Board {
            now,
            flights: Vec::new(),
            next_id: 1,
            rng,
        };
        board.fill(now + 12);
        for i in 0..board.flights.len() {
            let flight = &mut board.flights[i];
            if flight.status.is_waiting() && board.rng.u8(..100) < 20 {
                flight.expected += 5 * board.rng.u32(2..=8);
                flight.status = Status::Delayed;
            }
        }
        board
    }

    /// Appends flights until the board is full, the first one no earlier than `earliest`.
    fn fill(&mut self, earliest: u32) -> Vec<u64> {
        let mut added = Vec::new();
        while self.flights.len() < BOARD_SIZE {
            let after = self.flights.last().map_or(earliest, |f| f.scheduled);
            let scheduled = (after + self.rng.u32(3..=9)).max(earliest);
            let mut flight = Flight {
                id: self.next_id,
                flight: format!(
                    "{} {}",
                    AIRLINES[self.rng.usize(..AIRLINES.len())],
                    self.rng.u32(100..=2999)
                ),
                destination: self.random_destination(),
                scheduled,
                expected: scheduled,
                gate: self.random_gate(),
                status: Status::OnTime,
                done_at: None,
                updated: self.now,
            };
            flight.status = flight.status_at(self.now);
            self.next_id += 1;
            added.push(flight.id);
            self.flights.push(flight);
        }
        added
    }

    /// A destination not on the board yet.
    fn random_destination(&mut self) -> &'static str {
        let free: Vec<&'static str> = DESTINATIONS
            .iter()
            .copied()
            .filter(|d| self.flights.iter().all(|f| f.destination != *d))
            .collect();
        let from = if free.is_empty() { DESTINATIONS } else { &free };
        from[self.rng.usize(..from.len())]
    }

    fn random_gate(&mut self) -> String {
        let pier = ['A', 'B', 'C', 'D'][self.rng.usize(..4)];
        format!("{pier}{}", self.rng.u8(1..=30))
    }

    /// A random flight still waiting for boarding at least `margin` minutes before it leaves.
    fn pick_waiting(&mut self, margin: u32) -> Option<usize> {
        let now = self.now;
        let candidates: Vec<usize> = (0..self.flights.len())
            .filter(|&i| {
                let f = &self.flights[i];
                f.status.is_waiting() && f.expected > now + margin
            })
            .collect();
        (!candidates.is_empty()).then(|| candidates[self.rng.usize(..candidates.len())])
    }

    /// Moves the clock on by one minute; returns the rows that changed, in board order, then
    /// the rows that left the board (`removed: true`).
    fn tick(&mut self) -> Vec<Row> {
        self.now += 1;
        let now = self.now;
        let mut changed: Vec<u64> = Vec::new();

        // Disruptions, now and then: a delay, a better estimate, a gate change, rarely a
        // cancellation.
        if self.rng.u8(..100) < 12
            && let Some(i) = self.pick_waiting(40)
            && self.flights[i].expected < self.flights[i].scheduled + 45
        {
            self.flights[i].expected += 5 * self.rng.u32(1..=4);
            changed.push(self.flights[i].id);
        }
        if self.rng.u8(..100) < 6
            && let Some(i) = self.pick_waiting(40)
            && self.flights[i].expected > self.flights[i].scheduled
        {
            let flight = &mut self.flights[i];
            flight.expected = (flight.expected - 5).max(flight.scheduled);
            changed.push(flight.id);
        }
        if self.rng.u8(..100) < 12
            && let Some(i) = self.pick_waiting(20)
        {
            let gate = self.random_gate();
            self.flights[i].gate = gate;
            changed.push(self.flights[i].id);
        }
        if self.rng.u8(..100) < 2
            && let Some(i) = self.pick_waiting(30)
        {
            self.flights[i].status = Status::Cancelled;
            self.flights[i].done_at = Some(now);
            changed.push(self.flights[i].id);
        }

        // The clock moves every other flight along: boarding, final call, departed.
        for flight in &mut self.flights {
            if flight.status == Status::Cancelled || flight.status == Status::Departed {
                continue;
            }
            let status = flight.status_at(now);
            if status != flight.status {
                flight.status = status;
                if status == Status::Departed {
                    flight.done_at = Some(now);
                }
                changed.push(flight.id);
            }
        }

        let mut rows = Vec::new();
        for flight in &mut self.flights {
            if changed.contains(&flight.id) {
                flight.updated = now;
                rows.push(flight.row(false));
            }
        }

        // Departed flights leave the board after 8 minutes, cancelled ones after 20.
        let (gone, stay): (Vec<Flight>, Vec<Flight>) =
            self.flights
                .drain(..)
                .partition(|f| match (f.status, f.done_at) {
                    (Status::Departed, Some(at)) => now >= at + 8,
                    (Status::Cancelled, Some(at)) => now >= at + 20,
                    _ => false,
                });
        self.flights = stay;
        for mut flight in gone {
            flight.updated = now;
            rows.push(flight.row(true));
        }

        // New flights keep the board full, scheduled at least an hour ahead.
        let added = self.fill(now + 60);
        for flight in self.flights.iter().filter(|f| added.contains(&f.id)) {
            rows.push(flight.row(false));
        }
        rows
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            now: clock(self.now),
            departures: self.flights.iter().map(|f| f.row(false)).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[allow(dead_code)] // Tests include this file for `app` and have a main of their own.
#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("dashboard: {err}");
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
const PAGE: &str = r##"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Departures · tower-sse</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24'%3E%3Cpath fill='%23ffcc33' d='M21 16v-2l-8-5V3.5a1.5 1.5 0 0 0-3 0V9l-8 5v2l8-2.5V19l-2 1.5V22l3.5-1 3.5 1v-1.5L13 19v-5.5z'/%3E%3C/svg%3E">
<style>
  :root {
    --bg: #0a0f1e; --panel: #111a33; --row: #121c38; --row-alt: #0f1830; --line: #1e2a4d;
    --text: #e8ecf5; --muted: #8a96b5; --amber: #ffcc33;
    --green: #4ade80; --blue: #5ab8ff; --orange: #ff8a3d; --red: #ff5c5c; --grey: #8b93a7;
  }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text);
         font: 16px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  main { max-width: 72rem; margin: 0 auto; padding: 1.25rem 1.25rem 2rem; }
  header { display: flex; align-items: center; gap: 1rem; flex-wrap: wrap; margin-bottom: 1rem; }
  h1 { margin: 0; font-size: 2rem; letter-spacing: .04em; display: flex; align-items: center; gap: .6rem; }
  h1 svg { width: 2rem; height: 2rem; fill: var(--amber); }
  .clock { font: 600 2rem/1 ui-monospace, "SF Mono", Menlo, Consolas, monospace; color: var(--amber);
           margin-left: auto; font-variant-numeric: tabular-nums; }
  .meta { display: flex; gap: .75rem; align-items: center; color: var(--muted); font-size: .9rem; width: 100%; }
  #state { display: inline-flex; align-items: center; gap: .4rem; padding: .15rem .65rem; border-radius: 999px;
           background: #1f2940; color: var(--muted); font-weight: 600; }
  #state::before { content: ""; width: .55rem; height: .55rem; border-radius: 50%; background: currentColor; }
  #state.live { color: var(--green); background: #12301f; }
  #state.reconnecting { color: var(--orange); background: #3a2312; }
  #state.reconnecting::before, #state.connecting::before { animation: pulse 1s ease-in-out infinite; }
  #updates { font-variant-numeric: tabular-nums; color: var(--text); }
  .note { margin-left: auto; }
  table { width: 100%; border-collapse: collapse; background: var(--panel); border-radius: .75rem; overflow: hidden;
          box-shadow: 0 10px 30px rgba(0,0,0,.35); }
  th { text-align: left; font-size: .75rem; text-transform: uppercase; letter-spacing: .12em; color: var(--muted);
       padding: .8rem 1rem; background: #0d1530; border-bottom: 1px solid var(--line); }
  td { padding: .55rem 1rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
  tbody tr:nth-child(odd) { background: var(--row); }
  tbody tr:nth-child(even) { background: var(--row-alt); }
  tbody tr:last-child td { border-bottom: 0; }
  td.time, td.expected, td.gate, td.flight { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace;
       font-variant-numeric: tabular-nums; }
  td.time { color: var(--amber); font-weight: 700; font-size: 1.1rem; }
  td.destination { font-weight: 600; font-size: 1.1rem; }
  td.flight { color: #c7d0e6; }
  td.gate { font-weight: 700; }
  td.expected { color: var(--muted); }
  tr.late td.expected { color: var(--amber); font-weight: 700; }
  .badge { display: inline-block; min-width: 7.5rem; text-align: center; padding: .2rem .6rem; border-radius: .4rem;
            font-weight: 700; font-size: .85rem; letter-spacing: .03em; }
  .badge.on-time { color: var(--green); background: rgba(74,222,128,.12); }
  .badge.delayed { color: var(--amber); background: rgba(255,204,51,.12); }
  .badge.boarding { color: var(--blue); background: rgba(90,184,255,.14); }
  .badge.final-call { color: var(--orange); background: rgba(255,138,61,.16); animation: pulse 1.2s ease-in-out infinite; }
  .badge.gate-closed { color: var(--grey); background: rgba(139,147,167,.14); }
  .badge.departed { color: #6b7591; background: transparent; }
  .badge.cancelled { color: var(--red); background: rgba(255,92,92,.14); }
  tr.gone td { color: #6b7591; }
  tr.gone td.time { color: #8d7a3d; }
  tr.flash { animation: flash 2s ease-out; }
  td.changed { animation: changed 2.5s ease-out; }
  @keyframes flash { from { background: rgba(255,204,51,.2); } to { background: transparent; } }
  @keyframes changed { 0%, 40% { color: #fff; text-shadow: 0 0 .6rem rgba(255,204,51,.9); } }
  @keyframes pulse { 50% { opacity: .35; } }
  footer { color: var(--muted); font-size: .85rem; margin-top: 1rem; }
  @media (max-width: 700px) {
    main { padding: 1rem .5rem; }
    h1, .clock { font-size: 1.5rem; }
    th, td { padding: .5rem .45rem; }
    td.destination { white-space: normal; font-size: 1rem; }
    td.time { font-size: 1rem; }
    .badge { min-width: 0; font-size: .75rem; }
    td.flight, th.flight, td.expected, th.expected { display: none; }
  }
  body:not([data-state="live"]) #board tbody { opacity: .55; transition: opacity .3s; }
</style>
<main>
  <header>
    <h1><svg viewBox="0 0 24 24" aria-hidden="true"><path d="M21 16v-2l-8-5V3.5a1.5 1.5 0 0 0-3 0V9l-8 5v2l8-2.5V19l-2 1.5V22l3.5-1 3.5 1v-1.5L13 19v-5.5z"/></svg>Departures</h1>
    <div class="clock" id="clock" title="simulated time">--:--</div>
    <div class="meta">
      <span id="state" class="connecting">connecting</span>
      <span>updates received: <span id="updates">0</span></span>
      <span class="note" id="note"></span>
    </div>
  </header>
  <table id="board">
    <thead><tr><th>Time</th><th>Destination</th><th class="flight">Flight</th><th>Gate</th><th class="expected">Expected</th><th>Status</th></tr></thead>
    <tbody></tbody>
  </table>
  <footer>Simulated airport: one minute of board time per tick. Live over Server-Sent Events; after a
    disconnect the browser resumes with the changes it missed.</footer>
</main>
<script>
  const $ = (s) => document.querySelector(s);
  const tbody = $("#board tbody");
  const COLUMNS = ["time", "destination", "flight", "gate", "expected", "status"];
  let source = null, updates = 0;
  // While the board is re-read after a gap, live changes wait here, then apply on top of it.
  let pending = null;

  function setState(text) {
    $("#state").textContent = text;
    $("#state").className = text;
    document.body.dataset.state = text; // dims what may be out of date while not live
  }
  // Changes arrive in order, so the latest one tells the board time.
  function setClock(time) { if (time) $("#clock").textContent = time; }

  // The text each cell shows for a row.
  function cells(d) {
    return { time: d.scheduled, destination: d.destination, flight: d.flight, gate: d.gate,
             expected: d.expected === d.scheduled ? "" : d.expected, status: d.status };
  }

  function fillRow(tr, d, highlight) {
    const text = cells(d);
    for (const name of COLUMNS) {
      const td = tr.querySelector(`td.${name}`);
      const target = name === "status" ? td.firstChild : td;
      if (target.textContent === text[name]) continue;
      target.textContent = text[name];
      if (highlight) { td.classList.remove("changed"); void td.offsetWidth; td.classList.add("changed"); }
    }
    tr.querySelector(".badge").className = "badge " + d.status.toLowerCase().replace(/\s+/g, "-");
    tr.classList.toggle("late", d.expected !== d.scheduled);
    tr.classList.toggle("gone", d.status === "Departed" || d.status === "Cancelled");
    if (highlight) { tr.classList.remove("flash"); void tr.offsetWidth; tr.classList.add("flash"); }
  }

  function newRow(d) {
    const tr = document.createElement("tr");
    tr.dataset.id = d.id;
    for (const name of COLUMNS) {
      const td = document.createElement("td");
      td.className = name;
      if (name === "status") td.append(Object.assign(document.createElement("span"), { className: "badge" }));
      tr.append(td);
    }
    return tr;
  }

  // Applies one `departure` change: update the row, add it, or remove it.
  function apply(d, highlight) {
    let tr = tbody.querySelector(`tr[data-id="${CSS.escape(d.id)}"]`);
    if (d.removed) { if (tr) tr.remove(); return; }
    if (!tr) { tr = newRow(d); tbody.append(tr); }
    fillRow(tr, d, highlight);
    setClock(d.updated);
  }

  // Replaces the whole board (a `snapshot` event, or `GET /board` after a gap).
  function render(board) {
    tbody.replaceChildren();
    for (const d of board.departures) apply(d, false);
    setClock(board.now);
  }

  async function resync() {
    if (pending) return;
    pending = [];
    $("#note").textContent = "resynchronising…";
    for (;;) {
      try {
        const response = await fetch("/board", { cache: "no-store" });
        if (!response.ok) throw new Error(response.statusText);
        render(await response.json());
        break;
      } catch (err) {
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
    for (const d of pending) apply(d, true);
    pending = null;
    $("#note").textContent = "";
  }

  function connect() {
    source = new EventSource("/events");
    source.onopen = () => setState("live");
    source.onerror = () => {
      setState("reconnecting");
      // The browser retries by itself unless the server answered with an error status.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
    };
    source.addEventListener("snapshot", (e) => render(JSON.parse(e.data)));
    source.addEventListener("departure", (e) => {
      $("#updates").textContent = ++updates;
      const d = JSON.parse(e.data);
      if (pending) pending.push(d); else apply(d, true);
    });
    // Our last event id is no longer in the server's history (or the server restarted):
    // the changes we missed cannot be replayed, so read the whole board again.
    source.addEventListener("gap", resync);
  }

  connect();
</script>
</html>
"##;
