//! The same interface as `baseline`, on tower-sse: `Hub::memory()` behind `SseLayer` (registry,
//! keep-alive), or with `REDIS_URL` (e.g. `redis://127.0.0.1:6379/`) the hub on the Redis Streams
//! backend (`HubBuilder::redis`, as `examples/hub.rs` builds it; streams named `tower-sse:` +
//! topic, so servers on the same Redis share topics), for the multi-node scenario. The server
//! prints a `backend: …` line saying which it uses. `GET /events/{topic}` (with `Last-Event-ID` replay), `POST /publish/{topic}`
//! (answers the event's id), `GET /plain`. Env: `ADDR`, `WORKERS`, `HISTORY` (events kept per
//! topic, default 2000), `NO_LAYER=1` (the same router without `SseLayer`) and `NOOP_LAYER=1`
//! (with a layer that does nothing instead, which shows what axum's routing charges for any
//! layer) and `OUTER_LAYER=1` (`SseLayer` around the whole router rather than on its routes),
//! for the overhead scenario on `/plain`. `HISTORY_AGE_MS` (how long events are kept,
//! `HubBuilder::history_age`) and `TOPIC_IDLE_TTL_MS` (how long a topic without subscribers
//! outlives its last event, `HubBuilder::topic_idle_ttl`) are for the many-topics scenario; when
//! either is set, the server prints an `expiry: …` line saying how it applied them.
//! `COMPRESSION=shared` (or `1`) lets the layer compress event streams for clients that accept
//! it (`SseLayer::compression`), each event once for all the streams that send it
//! (`Compression::new()`, the default); `COMPRESSION=per-stream` with one context per stream
//! (`Compression::new().per_stream()`). For the compression scenario; the server prints a
//! `compression: …` line saying which it applied, and refuses any other value.
//!
//! For the stalled and shutdown scenarios, named as in `examples/hub.rs`: `WRITE_TIMEOUT` and
//! `KEEP_ALIVE` (whole seconds; `SseLayer::write_timeout`, 0: none, and
//! `SseLayer::keep_alive`); `SERVE=1` serves with `tower_sse::serve` instead of `axum::serve`,
//! with `SEND_BUFFER` (bytes, `Serve::send_buffer_size`; 0: the kernel's automatic sizing) and
//! `SHUTDOWN_DEADLINE` (whole seconds, `Serve::shutdown_deadline`), each left at `serve`'s
//! default when unset, and `HTTP1_FAST_PATH=0` (`Serve::http1_fast_path(false)`: every request
//! through hyper). The server prints a `serve: …` line saying what it applied.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};

async fn subscribe(
    State(hub): State<Hub>,
    Path(topic): Path<String>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    hub.subscribe(&topic, last).await
}

async fn publish(
    State(hub): State<Hub>,
    Path(topic): Path<String>,
    body: String,
) -> Result<String, HubError> {
    let published = hub.publish(&topic, Event::data(body)).await?;
    Ok(published.id().to_owned())
}

fn main() -> std::io::Result<()> {
    tower_sse_bench::run_server(async {
        let history = std::env::var("HISTORY")
            .ok()
            .and_then(|h| h.parse().ok())
            .unwrap_or(2000);
        let ms = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
        };
        let mut builder = Hub::builder().history_events(history);
        let mut expiry = Vec::new();
        if let Some(age) = ms("HISTORY_AGE_MS") {
            builder = builder.history_age(age);
            expiry.push(format!("history_age {age:?}"));
        }
        if let Some(ttl) = ms("TOPIC_IDLE_TTL_MS") {
            builder = builder.topic_idle_ttl(ttl);
            expiry.push(format!("topic_idle_ttl {ttl:?}"));
        }
        if !expiry.is_empty() {
            println!("expiry: {}", expiry.join(", "));
        }
        let hub = match std::env::var("REDIS_URL")
            .ok()
            .filter(|url| !url.is_empty())
        {
            Some(url) => {
                let hub = builder
                    .redis(&url)
                    .await
                    .map_err(|err| std::io::Error::other(format!("REDIS_URL: {err}")))?;
                println!(
                    "backend: redis at {url}, key prefix {}",
                    tower_sse::backend::DEFAULT_KEY_PREFIX
                );
                hub
            }
            None => {
                println!("backend: memory");
                builder.memory()
            }
        };
        let mut sse = SseLayer::new().registry(hub.registry());
        if let Ok(mode) = std::env::var("COMPRESSION") {
            use tower_sse::layer::Compression;
            let compression = match mode.trim() {
                "per-stream" => Compression::new().per_stream(),
                "1" | "shared" => Compression::new(),
                other => {
                    return Err(std::io::Error::other(format!(
                        "COMPRESSION={other:?}: expected 1, per-stream or shared"
                    )));
                }
            };
            println!("compression: {compression:?}");
            sse = sse.compression(compression);
        }
        let secs = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(s) = secs("WRITE_TIMEOUT") {
            sse = sse.write_timeout(Duration::from_secs(s));
        }
        if let Some(s) = secs("KEEP_ALIVE") {
            sse = sse.keep_alive(Duration::from_secs(s));
        }
        let app = Router::new()
            .route("/events/{topic}", get(subscribe))
            .route("/publish/{topic}", post(publish))
            .route("/plain", get(|| async { "hello\n" }));
        let set = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
        let app = if set("NO_LAYER") || set("OUTER_LAYER") {
            app.with_state(hub)
        } else if set("NOOP_LAYER") {
            app.layer(tower_layer::layer_fn(|route| route))
                .with_state(hub)
        } else {
            app.layer(sse.clone()).with_state(hub)
        };
        let listener = tower_sse_bench::listen().await?;
        let stop = sse.shutdown_on(tower_sse_bench::stop_signal());
        if set("OUTER_LAYER") {
            use tower_layer::Layer as _;
            let outer = tower::ServiceExt::<axum::extract::Request>::map_response(
                sse.layer(app),
                |r: http::Response<tower_sse::layer::SseBody<axum::body::Body>>| {
                    r.map(axum::body::Body::new)
                },
            );
            let outer = axum::ServiceExt::<axum::extract::Request>::into_make_service(outer);
            return axum::serve(listener, outer)
                .with_graceful_shutdown(stop)
                .await;
        }
        if set("SERVE") {
            let server = tower_sse::serve(listener, app);
            let server = match secs("SEND_BUFFER") {
                Some(0) => server.no_send_buffer_size(),
                Some(bytes) => server.send_buffer_size(bytes as usize),
                None => server,
            };
            let fast_path = std::env::var("HTTP1_FAST_PATH").map_or(true, |v| v.trim() != "0");
            let server = server.http1_fast_path(fast_path);
            let mut server = server.with_graceful_shutdown(stop);
            if let Some(s) = secs("SHUTDOWN_DEADLINE") {
                server = server.shutdown_deadline(Duration::from_secs(s));
            }
            let shown = |name: &str| secs(name).map_or("default".to_owned(), |v| v.to_string());
            println!(
                "serve: tower_sse::serve, HTTP1_FAST_PATH {}, WRITE_TIMEOUT {}, KEEP_ALIVE {}, SEND_BUFFER {}, SHUTDOWN_DEADLINE {}",
                u8::from(fast_path),
                shown("WRITE_TIMEOUT"),
                shown("KEEP_ALIVE"),
                shown("SEND_BUFFER"),
                shown("SHUTDOWN_DEADLINE")
            );
            return server.await;
        }
        // As the examples serve (and the baseline, so both are served alike): a router whose
        // state is set, served with `into_make_service`, is not rebuilt for every connection.
        axum::serve(listener, app.into_make_service())
            .with_graceful_shutdown(stop)
            .await
    })
}
