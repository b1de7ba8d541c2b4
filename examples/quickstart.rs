//! The smallest useful tower-sse server: numbered clock ticks that resume where a client left off.
//!
//! ```text
//! cargo run --example quickstart
//! # open http://127.0.0.1:3000, or:
//! curl -N http://127.0.0.1:3000/events
//! curl -N -H 'Last-Event-ID: 5' http://127.0.0.1:3000/events
//! ```
//!
//! Tick `n` happens `n` seconds after the server started. A client that reconnects with
//! `Last-Event-ID: 5` first gets every tick after 5 that it missed, at once, then the live ones.
//! Set `ADDR` to listen elsewhere (default `127.0.0.1:3000`).

use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use futures_util::stream::{self, Stream, StreamExt};
use tokio::time::Instant;
use tower_sse::{Event, EventStream, LastEventId, SseLayer};

/// How many missed ticks a reconnecting client may catch up on.
const MAX_CATCH_UP: u64 = 1000;

/// The app: the page at `/`, the ticks at `/events`, one tick every `period`.
pub fn app(period: Duration) -> Router {
    let started = Instant::now();
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/events",
            get(move |last: Option<LastEventId>| async move { ticks(started, period, last) }),
        )
        .layer(SseLayer::new().retry(Duration::from_secs(1)))
}

/// Ticks after the client's last one (or from now), each sent when its time has come.
fn ticks(
    started: Instant,
    period: Duration,
    last: Option<LastEventId>,
) -> EventStream<impl Stream<Item = Event>> {
    let now = tick_at(started, period, Instant::now());
    let first = match last
        .as_ref()
        .and_then(|last| last.as_str()?.parse::<u64>().ok())
    {
        // Resume right after the last tick seen, catching up on at most MAX_CATCH_UP ticks.
        Some(last) if last < now => (last + 1).max(now.saturating_sub(MAX_CATCH_UP)),
        // No id, an id from the future, or one that is not a tick: start live.
        _ => now + 1,
    };
    EventStream::new(stream::iter(first..).then(move |n| async move {
        tokio::time::sleep_until(started + period * u32::try_from(n).unwrap_or(u32::MAX)).await;
        Event::builder()
            .event("tick")
            .id(n.to_string())
            .data(format!("tick {n}"))
            .build()
            .expect("a number is a valid id")
    }))
}

fn tick_at(started: Instant, period: Duration, at: Instant) -> u64 {
    let elapsed = at.duration_since(started).as_nanos();
    u64::try_from(elapsed / period.as_nanos().max(1)).unwrap_or(u64::MAX)
}

#[allow(dead_code)] // The end-to-end tests include this file for `app` and have a main of their own.
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    tower_sse::serve(listener, app(Duration::from_secs(1))).await
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>tower-sse quickstart</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
  #state { font-weight: bold; }
  #log { font-family: ui-monospace, monospace; white-space: pre-line; }
</style>
<h1>Clock ticks</h1>
<p>Connection: <span id="state">connecting…</span>. Stop the server and start it again: the
browser reconnects by itself and sends the id of the last tick it saw.</p>
<div id="log"></div>
<script>
  const state = document.getElementById("state");
  const log = document.getElementById("log");
  const source = new EventSource("/events");
  source.onopen = () => { state.textContent = "open"; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  source.addEventListener("tick", (e) => {
    log.textContent = `#${e.lastEventId} ${e.data}\n` + log.textContent.split("\n").slice(0, 20).join("\n");
  });
</script>
</html>
"#;
