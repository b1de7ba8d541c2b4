//! The baseline a user hand-rolls: axum's `Sse` over one `tokio::sync::broadcast` channel per
//! topic. `GET /events/{topic}`, `POST /publish/{topic}`, `GET /plain`. Env: `ADDR`, `WORKERS`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

type Topics = Arc<Mutex<HashMap<String, broadcast::Sender<String>>>>;

fn sender(topics: &Topics, topic: &str) -> broadcast::Sender<String> {
    topics
        .lock()
        .unwrap()
        .entry(topic.to_owned())
        .or_insert_with(|| broadcast::channel(1024).0)
        .clone()
}

async fn events(
    State(topics): State<Topics>,
    Path(topic): Path<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = sender(&topics, &topic).subscribe();
    let stream = BroadcastStream::new(rx)
        .filter_map(|msg| async move { msg.ok().map(|data| Ok(Event::default().data(data))) });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn publish(State(topics): State<Topics>, Path(topic): Path<String>, body: String) {
    let _ = sender(&topics, &topic).send(body);
}

fn main() -> std::io::Result<()> {
    tower_sse_bench::run_server(async {
        let app = Router::new()
            .route("/events/{topic}", get(events))
            .route("/publish/{topic}", post(publish))
            .route("/plain", get(|| async { "hello\n" }))
            .with_state(Topics::default());
        let listener = tower_sse_bench::listen().await?;
        // No graceful shutdown: a broadcast stream never ends by itself, so waiting for the
        // open streams would hang; a signal just ends the process.
        tokio::select! {
            // `into_make_service`: the router (its state set) is not rebuilt per connection,
            // as `axum::serve(listener, app)` does; tower-sse-server is served the same way.
            served = axum::serve(listener, app.into_make_service()).into_future() => served,
            () = tower_sse_bench::stop_signal() => Ok(()),
        }
    })
}
