//! The branch of `Shared::open` that depends on where the topic's reader is when a
//! subscription's snapshot comes back from Redis: already past it, because entries published
//! after the snapshot were read (by an earlier subscription's reader) before the new
//! subscription looked. From outside that is a race no test can win on purpose; here a hook
//! ([`after_snapshot`], which `open` calls at that point) publishes and waits for the reader
//! there.
//!
//! They need `redis-server` (started by `tests/support/redis_server.rs`), so they are ignored
//! unless run with `--include-ignored`, as `.ci/run` does.

use std::cell::RefCell;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{BoxFuture, FutureExt};

use super::{DEFAULT_KEY_PREFIX, RedisBackend, Shared, StreamId, lock};
use crate::Event;
use crate::backend::TopicLimits;
use crate::backend::{Backend, Delivery, HistoryLimits, Live, Opened, ReplayOptions, Rest, Start};

#[allow(dead_code)]
#[path = "../../../tests/support/redis_server.rs"]
mod redis_server;

use redis_server::RedisServer;

/// How long any one wait may take before the test fails (a failure guard, never a wait).
const GUARD: Duration = Duration::from_secs(20);

const TOPIC: &str = "snap";

tokio::task_local! {
    /// What [`after_snapshot`] runs, once, in the task that set it.
    static AFTER_SNAPSHOT: RefCell<Option<BoxFuture<'static, ()>>>;
}

/// Called by `open` between its snapshot and its look at the reader's position: runs the hook
/// the current task set, if any.
pub(super) async fn after_snapshot() {
    let hook = AFTER_SNAPSHOT
        .try_with(|hook| hook.borrow_mut().take())
        .ok()
        .flatten();
    if let Some(hook) = hook {
        hook.await;
    }
}

/// Opens a subscription with `hook` run between its snapshot and its look at the reader.
async fn open_with_hook(
    backend: &RedisBackend,
    start: Start,
    hook: impl Future<Output = ()> + Send + 'static,
) -> Opened {
    let options = ReplayOptions::default();
    let open = backend.open(TOPIC, &start, &options);
    let opened = AFTER_SNAPSHOT.scope(RefCell::new(Some(hook.boxed())), open);
    tokio::time::timeout(GUARD, opened)
        .await
        .expect("open returns within the guard time")
        .unwrap()
}

fn backend(redis: &RedisServer, limits: HistoryLimits) -> RedisBackend {
    RedisBackend::new(
        &redis.url(),
        DEFAULT_KEY_PREFIX,
        limits,
        TopicLimits::default(),
        1024,
    )
    .unwrap()
}

fn live(opened: Opened) -> Live {
    match opened.rest {
        Rest::Live(live) => live,
        other => panic!("expected a live part, got {other:?}"),
    }
}

async fn next_event(live: &mut Live) -> Event {
    match tokio::time::timeout(GUARD, live.next()).await {
        Ok(Some(Delivery::Event(event))) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn id(event: &Event) -> String {
    event.id().unwrap().to_owned()
}

/// Waits until the topic's reader has read up to `id`, looking at its position (the reader is
/// a task of its own, fed by Redis).
async fn until_read(shared: &Shared, id: &str) {
    let wanted = StreamId::parse(id).unwrap();
    let read = async {
        loop {
            let position = lock(&shared.feeds)
                .get(TOPIC)
                .and_then(|topic| lock(&topic.state).position);
            if position.is_some_and(|position| position >= wanted) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(GUARD, read)
        .await
        .expect("the reader reads the entry within the guard time");
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_reader_already_past_the_snapshot_gives_the_entries_in_between_once() {
    let redis = RedisServer::start();
    let backend = backend(&redis, HistoryLimits::default());
    let before = backend
        .publish(TOPIC, Event::data("before").into())
        .await
        .unwrap()
        .into_event();
    // A first subscription: the topic's reader is positioned and reading.
    let mut first = live(
        backend
            .open(TOPIC, &Start::Live, &ReplayOptions::default())
            .await
            .unwrap(),
    );

    // After the second subscription's snapshot (which ends at `before`), an event is published
    // and the reader reads it: the reader is past the snapshot when the subscription looks.
    let shared = backend.shared.clone();
    let (between_tx, between_rx) = tokio::sync::oneshot::channel();
    let hook = async move {
        let between = shared
            .publish(TOPIC, Event::data("between").into())
            .await
            .unwrap()
            .into_event();
        assert_eq!(id(&next_event(&mut first).await), id(&between));
        between_tx.send(between).unwrap();
    };
    let second = open_with_hook(&backend, Start::Live, hook).await;
    let between = between_rx.await.unwrap();
    assert!(StreamId::parse(&id(&between)) > StreamId::parse(&id(&before)));

    // The entry in between comes once, in the replay; then live events, without a repeat.
    assert!(second.gap.is_none(), "{:?}", second.gap);
    let replayed: Vec<String> = second.replay.iter().map(id).collect();
    assert_eq!(replayed, [id(&between)]);
    let mut second = live(second);
    let after = backend
        .publish(TOPIC, Event::data("after").into())
        .await
        .unwrap()
        .into_event();
    assert_eq!(id(&next_event(&mut second).await), id(&after));
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn entries_trimmed_between_the_snapshot_and_the_reader_end_the_subscription_for_a_replay() {
    let redis = RedisServer::start();
    // One event kept: each publish trims the one before.
    let limits = HistoryLimits {
        max_events: 1,
        ..HistoryLimits::default()
    };
    let backend = backend(&redis, limits);
    backend
        .publish(TOPIC, Event::data("before").into())
        .await
        .unwrap()
        .into_event();
    let first = backend
        .open(TOPIC, &Start::Live, &ReplayOptions::default())
        .await
        .unwrap();

    // After the snapshot, three events: the first two are trimmed by the time the reader has
    // read the last, so the entries right after the snapshot are gone.
    let shared = backend.shared.clone();
    let hook = async move {
        let mut last = None;
        for n in 0..3 {
            let event = shared
                .publish(TOPIC, Event::data(format!("between {n}")).into())
                .await;
            last = Some(event.unwrap());
        }
        until_read(&shared, last.unwrap().id()).await;
        drop(first);
    };
    let second = open_with_hook(&backend, Start::Live, hook).await;
    // Not live from a position it cannot reach without a hole: the client comes back and is
    // told of the gap by replay.
    assert!(second.replay.is_empty(), "{:?}", second.replay);
    assert!(matches!(second.rest, Rest::More), "{:?}", second.rest);
}
