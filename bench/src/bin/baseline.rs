//! The baseline a user hand-rolls: axum's `Sse` over one `tokio::sync::broadcast` channel per
//! topic, in a map. `GET /events/{topic}`, `POST /publish/{topic}`, `GET /plain`. Env: `ADDR`,
//! `WORKERS`.
//!
//! What a careful user writes so that per-user topics do not pile up: a topic's channel is
//! created by its first subscriber and dropped from the map when its last subscriber leaves; a
//! publish to a topic without subscribers finds no channel and is dropped (a broadcast channel
//! keeps no history, so nobody could have received it anyway). So it has nothing to expire: the
//! history age and idle TTL of the many-topics scenario do not apply. Each channel holds 1024
//! slots from its creation.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

type Topics = Arc<Mutex<HashMap<String, broadcast::Sender<String>>>>;

/// A subscriber's receiver; when the stream ends, it drops its topic's channel from the map if
/// it was the last subscriber. Subscribing and leaving both hold the map's lock, so no one can
/// subscribe to a channel as it is being dropped.
struct Subscriber {
    rx: BroadcastStream<String>,
    topics: Topics,
    topic: String,
}

impl Stream for Subscriber {
    type Item = Result<String, tokio_stream::wrappers::errors::BroadcastStreamRecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_next_unpin(cx)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let mut map = self.topics.lock().unwrap();
        // This subscriber's receiver is still alive: it is the last one if it is the only one.
        if map
            .get(&self.topic)
            .is_some_and(|tx| tx.receiver_count() == 1)
        {
            map.remove(&self.topic);
        }
    }
}

async fn events(
    State(topics): State<Topics>,
    Path(topic): Path<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = topics
        .lock()
        .unwrap()
        .entry(topic.clone())
        .or_insert_with(|| broadcast::channel(1024).0)
        .subscribe();
    let stream = Subscriber {
        rx: BroadcastStream::new(rx),
        topics,
        topic,
    }
    .filter_map(|msg| async move { msg.ok().map(|data| Ok(Event::default().data(data))) });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn publish(State(topics): State<Topics>, Path(topic): Path<String>, body: String) {
    if let Some(tx) = topics.lock().unwrap().get(&topic) {
        let _ = tx.send(body);
    }
}

fn main() -> std::io::Result<()> {
    if std::env::var_os("HISTORY_AGE_MS").is_some()
        || std::env::var_os("TOPIC_IDLE_TTL_MS").is_some()
    {
        println!(
            "expiry: nothing to expire: no history, and a topic exists only while it has subscribers"
        );
    }
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
