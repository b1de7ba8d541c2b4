//! Compressed event streams for many subscribers: an order feed whose JSON events the layer
//! compresses once each, for every watcher at once (`Compression::shared`).
//!
//! ```text
//! cargo run --example compression --features compression           # open http://127.0.0.1:3000
//! curl -N --compressed http://127.0.0.1:3000/events                 # decoded by curl
//! curl -N -H 'Accept-Encoding: gzip' http://127.0.0.1:3000/events | gunzip   # as sent
//! curl -d '{"order":"ord_1","total":12.5}' http://127.0.0.1:3000/orders      # {"id":"…"}
//! ```
//!
//! Routes:
//!
//! - `GET /events`: the hub topic `orders`, each event an order as JSON (with an id; a
//!   returning client gets what it missed after its `Last-Event-ID`). Compressed with Brotli,
//!   gzip or zstd for a client that accepts one, each event decodable as soon as it arrives.
//! - `POST /orders` with a JSON body publishes it and answers `{"id": "…"}`; a body that is
//!   not JSON gets `400`. Anyone who can reach the server can publish: put your login in front.
//! - `GET /`: a page that shows the latest orders as they come.
//!
//! The compression to copy: `Compression::new()` (shared, the default) compresses each event
//! once and sends the same bytes to every subscriber of its topic, so a topic's thousand
//! watchers cost about what one costs; `Compression::new().per_stream()` keeps one context per
//! stream, which compresses better what repeats from event to event (a page re-rendered with
//! small changes), for a compression per subscriber and event. See
//! `tower_sse::layer::Compression` for the measured trade-off.
//!
//! Configuration, from the environment:
//!
//! ```text
//! ADDR         listen address, default 127.0.0.1:3000; prints "listening on http://ADDR" when ready
//! COMPRESSION  shared (default) or per-stream
//! ENCODINGS    the encodings offered, of zstd, gzip and br (default all three: "zstd,gzip,br")
//! FEED_MS      a simulated order every this many milliseconds (default 1000; 0: none)
//! ```
//!
//! SIGINT or SIGTERM shuts it down gracefully.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_sse::layer::Compression;
use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};

/// The hub topic the orders are published to.
const TOPIC: &str = "orders";

/// The compression the environment asks for; the error says which variable is wrong.
fn compression_from_env() -> Result<Compression, String> {
    let mut compression = match std::env::var("COMPRESSION").as_deref() {
        Err(_) | Ok("shared") => Compression::new(),
        Ok("per-stream") => Compression::new().per_stream(),
        Ok(other) => {
            return Err(format!(
                "COMPRESSION must be shared or per-stream, not {other:?}"
            ));
        }
    };
    if let Ok(encodings) = std::env::var("ENCODINGS") {
        let offered: Vec<&str> = encodings.split(',').map(str::trim).collect();
        if let Some(unknown) = offered.iter().find(|e| !["zstd", "gzip", "br"].contains(e)) {
            return Err(format!("ENCODINGS: {unknown:?} is none of zstd, gzip, br"));
        }
        if !offered.contains(&"zstd") {
            compression = compression.no_zstd();
        }
        if !offered.contains(&"gzip") {
            compression = compression.no_gzip();
        }
        if !offered.contains(&"br") {
            compression = compression.no_br();
        }
    }
    Ok(compression)
}

/// The app: its router and the layer (whose `shutdown_on` ends every stream at shutdown).
fn app(hub: Hub, compression: Compression) -> (Router, SseLayer) {
    let sse = SseLayer::new()
        .registry(hub.registry())
        .compression(compression);
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/events", get(events))
        .route("/orders", axum::routing::post(publish))
        .layer(sse.clone())
        .with_state(hub);
    (router, sse)
}

/// `GET /events`: the orders, from after the client's last one.
async fn events(
    State(hub): State<Hub>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    hub.subscribe(TOPIC, last).await
}

/// `POST /orders`: publishes the JSON body as it is.
async fn publish(State(hub): State<Hub>, body: String) -> Response {
    if serde_json::from_str::<serde_json::Value>(&body).is_err() {
        let error = json!({ "error": "the body must be JSON" });
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    match hub.publish(TOPIC, Event::data(body)).await {
        Ok(published) => Json(json!({ "id": published.id() })).into_response(),
        Err(err) => err.into_response(),
    }
}

/// Publishes a made-up order of some line items every `period`.
async fn feed(hub: Hub, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    for seq in 0u64.. {
        ticks.tick().await;
        let items: Vec<_> = (0..1 + fastrand::usize(..12))
            .map(|_| {
                json!({
                    "sku": format!("SKU-{:05}", fastrand::u32(..100_000)),
                    "qty": 1 + fastrand::u8(..9),
                    "price": f64::from(fastrand::u32(..50_000)) / 100.0,
                })
            })
            .collect();
        let order = json!({ "seq": seq, "order": format!("ord_{:012x}", fastrand::u64(..1 << 48)), "items": items });
        if let Err(err) = hub.publish(TOPIC, Event::data(order.to_string())).await {
            eprintln!("feed: {err}");
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let compression = compression_from_env()?;
    let feed_ms: u64 = match std::env::var("FEED_MS") {
        Ok(ms) => ms
            .trim()
            .parse()
            .map_err(|_| format!("FEED_MS must be a whole number, not {ms:?}"))?,
        Err(_) => 1000,
    };
    let hub = Hub::memory();
    if feed_ms > 0 {
        tokio::spawn(feed(hub.clone(), Duration::from_millis(feed_ms)));
    }
    let (router, sse) = app(hub, compression);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    tower_sse::serve(listener, router)
        .with_graceful_shutdown(sse.shutdown_on(tower_sse::shutdown_signal()))
        .await?;
    Ok(())
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>tower-sse: compressed orders</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; }
  #log { font-family: ui-monospace, monospace; font-size: 13px; white-space: pre; overflow-x: auto; }
</style>
<h1>Orders</h1>
<p>Each order reaches this page compressed (see the response's <code>Content-Encoding</code> in
the developer tools), and shows as soon as it is published.</p>
<div id="log"></div>
<script>
  const log = document.getElementById("log");
  const orders = new EventSource("/events");
  orders.onmessage = (e) => {
    log.textContent = `#${e.lastEventId} ${e.data}\n` + log.textContent.split("\n").slice(0, 30).join("\n");
  };
</script>
</html>
"#;
