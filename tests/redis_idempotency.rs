//! Exactly-once publishing on Redis (issue 18): idempotency keys across nodes and their window,
//! honest answers when Redis does not answer (`504`, outcome unknown) or cannot take a publish
//! (`503`, not stored), the first commands after Redis restarted, and three nodes with a
//! publisher that retries with keys through Redis being killed and restarted.
//!
//! Each test starts its own `redis-server` (`support::redis_server`: append-only with `fsync`
//! on every write, so what Redis acknowledged survives a `kill -9`), and the hub servers of
//! `examples/hub.rs` on `127.0.0.1:0` (`support::hub`) or backends on it. They need
//! `redis-server`, so they are ignored unless run with `--include-ignored` (as `.ci/run` does).
//!
//! Nothing sleeps to synchronise: waits are on the streams, on counts the tasks publish, or
//! polls of Redis under a guard. The real-time spans are Redis's own: the 2 s response timeout
//! of a command on a frozen Redis, and the `PX` of an idempotency key's record.
//!
//! Where the rest is tested: `/health` agreeing with the next command after an outage is
//! `tests/redis.rs` (`once_health_is_ok_after_an_outage_…`,
//! `as_soon_as_redis_answers_again_…`, `health_tells_whether_redis_is_reachable_…`), as are a
//! publish on a frozen Redis and one whose connection dropped at the backend level; the memory
//! backend's key window and bound are in `src/backend/memory/tests.rs`.
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::client::{EventReader, GUARD, POLL};
use support::hub::{Answer, Server, redis_config};
use support::redis_server::RedisServer;
use tokio::sync::watch;
use tokio::time::Instant;
use tower_sse::backend::{
    Backend, DEFAULT_KEY_PREFIX, Health, HistoryLimits, RedisBackend, ReplayOptions, Start,
    TopicLimits,
};
use tower_sse::{Event, Hub, Publish};

/// How long the backend's command connection may be idle before a `PING` checks it ahead of
/// a command (`IDLE_CHECK` in `src/backend/redis.rs`).
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// `data` as the stream stores it.
fn body(data: &str) -> String {
    format!("data: {data}\n\n")
}

/// The id of a `200`; fails on any other answer.
fn accepted(answer: &Answer) -> &str {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.id.as_deref().expect("a 200 carries the id")
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_publish_on_a_frozen_redis_is_outcome_unknown_and_its_retry_with_the_key_is_stored_and_delivered_once()
 {
    let redis = RedisServer::start();
    let a = Server::start(redis_config(&redis)).await;
    let b = Server::start(redis_config(&redis)).await;
    let first = a.publish("orders", "before").await;
    let mut subscriber = a.subscribe("orders", Some(&first)).await;

    // Redis is frozen (`kill -STOP`): the publish reaches it and no answer comes. It will run
    // once Redis runs again, so the hub cannot say it failed: `504`, outcome unknown.
    redis.freeze();
    let unknown = a
        .publish_keyed("orders", "order 42 shipped", "order-42")
        .await;
    assert_eq!(unknown.status, 504, "{unknown:?}");
    assert_eq!(unknown.retry_after.as_deref(), Some("1"));
    for says in [
        "may or may not have been stored",
        "same idempotency key",
        "without one may store the event twice",
    ] {
        assert!(
            unknown.body.contains(says),
            "{says:?} in {:?}",
            unknown.body
        );
    }
    // The failure is on record now: the next publish is not sent until Redis answers, and it
    // does not: `503`, not stored.
    let refused = a
        .publish_keyed("orders", "order 43 shipped", "order-43")
        .await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert!(refused.body.contains("nothing was done"), "{refused:?}");
    redis.thaw();

    // The publisher retries with the same key, on the same node and on another: the first
    // publish was stored when Redis ran it, and each retry answers its id, storing nothing.
    let retry = a
        .publish_keyed("orders", "order 42 shipped", "order-42")
        .await;
    let id = accepted(&retry).to_owned();
    assert!(retry.replayed, "{retry:?}");
    let elsewhere = b
        .publish_keyed("orders", "order 42 shipped", "order-42")
        .await;
    assert_eq!(
        (accepted(&elsewhere), elsewhere.replayed),
        (id.as_str(), true)
    );
    let last = b.publish("orders", "after").await;

    // The stream holds it once (the `503` one not at all), under the id the retries answered.
    let mut raw = redis.raw().await;
    let entries = raw.entries("orders").await;
    let expected = [
        (first.clone(), body("before")),
        (id.clone(), body("order 42 shipped")),
        (last.clone(), body("after")),
    ];
    assert_eq!(entries, expected);

    // The subscriber that was there all along gets it once, then what follows; so does one
    // that resumes on the other node.
    let mut resumed = b.subscribe("orders", Some(&first)).await;
    for reader in [&mut subscriber, &mut resumed] {
        let events = reader.take(2).await;
        let got: Vec<(&str, &str)> = events
            .iter()
            .map(|event| (event.last_event_id.as_str(), event.data.as_str()))
            .collect();
        assert_eq!(
            got,
            [(id.as_str(), "order 42 shipped"), (last.as_str(), "after")]
        );
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_key_answers_the_first_id_on_every_node_within_its_window_and_is_new_again_after_it() {
    let redis = RedisServer::start();
    let window = Duration::from_secs(1);
    let node = || async {
        Hub::builder()
            .idempotency_window(window)
            .redis(&redis.url())
            .await
            .unwrap()
    };
    let (a, b) = (node().await, node().await);
    let publish = || Publish::new(Event::data("invoice 7 paid")).idempotency_key("invoice-7");

    let first = a.publish("invoices", publish()).await.unwrap();
    assert!(!first.is_duplicate());
    // Within the window, on the other node: the first id, nothing stored.
    let again = b.publish("invoices", publish()).await.unwrap();
    assert_eq!((again.id(), again.is_duplicate()), (first.id(), true));
    assert_eq!(again.event(), first.event());

    // The key's record lives for the window, set by the publish that stored the event.
    let mut raw = redis.raw().await;
    let record = RedisServer::key_record("invoices", "invoice-7");
    let ttl = raw.pttl(&record).await;
    assert!(
        (1..=window.as_millis() as i64).contains(&ttl),
        "PTTL {ttl} ms"
    );
    // Once Redis has dropped it, the key is new again: the same publish is stored anew.
    tokio::time::timeout(GUARD, async {
        while raw.exists(std::slice::from_ref(&record)).await > 0 {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .expect("the record expires with its window");
    let later = b.publish("invoices", publish()).await.unwrap();
    assert!(!later.is_duplicate());
    assert_ne!(later.id(), first.id());
    assert_eq!(raw.ids("invoices").await, [first.id(), later.id()]);
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_key_reused_for_another_event_is_refused_with_422_on_every_node_and_stores_nothing() {
    let redis = RedisServer::start();
    let a = Server::start(redis_config(&redis)).await;
    let b = Server::start(redis_config(&redis)).await;
    let first = a
        .publish_keyed("orders", "order 42 shipped", "order-42")
        .await;
    let id = accepted(&first).to_owned();

    // The same key with another event, on either node: refused, as a publisher's bug (a key
    // is one event), never answered with the first event's id as if it were this one.
    for node in [&a, &b] {
        let reused = node
            .publish_keyed("orders", "order 42 lost", "order-42")
            .await;
        assert_eq!(reused.status, 422, "{reused:?}");
        assert!(
            reused.body.contains("different event") && reused.body.contains("new key"),
            "{:?}",
            reused.body
        );
    }
    // The same event is still a duplicate; and a key is per topic.
    let retry = b
        .publish_keyed("orders", "order 42 shipped", "order-42")
        .await;
    assert_eq!((accepted(&retry), retry.replayed), (id.as_str(), true));
    let other = b
        .publish_keyed("returns", "order 42 lost", "order-42")
        .await;
    assert!(!other.replayed);
    accepted(&other);

    let mut raw = redis.raw().await;
    assert_eq!(raw.bodies("orders").await, [body("order 42 shipped")]);
    assert_eq!(raw.bodies("returns").await, [body("order 42 lost")]);

    // Through the library: `is_key_reused`.
    let err = a
        .hub
        .publish(
            "orders",
            Publish::new(Event::data("order 42 lost")).idempotency_key("order-42"),
        )
        .await
        .unwrap_err();
    assert!(err.is_key_reused() && !err.is_outcome_unknown(), "{err:?}");
}

/// A backend on `redis` that has published once, so its command connection is up; returns it
/// and that event.
async fn warm_node(redis: &RedisServer) -> (RedisBackend, Event) {
    let node = RedisBackend::new(
        &redis.url(),
        DEFAULT_KEY_PREFIX,
        HistoryLimits::default(),
        TopicLimits::default(),
        1024,
    )
    .unwrap();
    let published = node
        .publish("news", Event::data("warm").into())
        .await
        .unwrap();
    (node, published.into_event())
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_node_that_missed_a_restart_of_redis_serves_its_next_commands_on_the_first_try() {
    // Each time, Redis is killed and started again before the node can look (this thread runs
    // the node's tasks, and it is busy restarting Redis): the node's health is still ok, and
    // its command connection is the one Redis closed. Each node is new, so that nothing it
    // saw of an earlier restart is on record.
    let mut redis = RedisServer::start();
    let options = ReplayOptions::default();

    // A subscribe is sent again, on a new connection: it succeeds.
    let (node, warm) = warm_node(&redis).await;
    redis.restart();
    assert_eq!(node.health(), Health::Ok);
    let opened = node.open("news", &Start::Oldest, &options).await.unwrap();
    assert_eq!(opened.replay, [warm]);

    // So is a publish with a key: stored once, on the first try.
    let (node, _) = warm_node(&redis).await;
    redis.restart();
    assert_eq!(node.health(), Health::Ok);
    let keyed = Publish::new(Event::data("keyed")).idempotency_key("keyed-1");
    let published = node.publish("news", keyed).await.unwrap();
    assert!(!published.is_duplicate());

    // A publish without a key cannot be sent again: had it been written before Redis went, it
    // would be stored twice. Nothing tells, so its outcome is unknown (it was not stored);
    // then the failure is on record, and the next command checks the connection first.
    // Unless the restart took longer than the backend's idle check (half a second): then a
    // `PING` finds the connection closed before the publish is sent, and it is stored on a new
    // one on the first try. Which one happens depends on how long the restart took.
    let (node, _) = warm_node(&redis).await;
    let warmed = Instant::now();
    redis.restart();
    assert_eq!(node.health(), Health::Ok);
    let idle = warmed.elapsed();
    let mut expected = vec![body("warm"), body("warm"), body("keyed"), body("warm")];
    match node.publish("news", Event::data("unkeyed").into()).await {
        Err(err) => {
            assert!(err.is_outcome_unknown(), "{err:?}");
            assert!(idle < IDLE_CHECK + Duration::from_millis(100), "{idle:?}");
        }
        Ok(published) => {
            assert!(!published.is_duplicate());
            assert!(idle + Duration::from_millis(100) > IDLE_CHECK, "{idle:?}");
            expected.push(body("unkeyed"));
        }
    }
    node.publish("news", Event::data("next").into())
        .await
        .unwrap();
    expected.push(body("next"));

    let mut raw = redis.raw().await;
    assert_eq!(raw.bodies("news").await, expected);
}

// ---- Three nodes, a publisher retrying with keys, Redis killed and restarted ----

/// The hub servers, on one Redis.
const NODES: usize = 3;
/// Subscribers that start on each node.
const SUBSCRIBERS_PER_NODE: usize = 2;
/// The events published, each with its own key; then a last one, `end`.
const EVENTS: usize = 300;
/// A subscriber leaves after so many events on one connection and comes back on the next node
/// with `Last-Event-ID`, as a browser behind a load balancer does.
const RECONNECT_EVERY: usize = 45;
/// Redis is killed (`kill -9`) once so many events are accepted, and started again (same port,
/// same data) once the publisher has had a publish fail on every node.
const KILL_AT: [usize; 2] = [100, 200];

/// What the publisher has done so far.
#[derive(Debug, Default, Clone)]
struct Tally {
    /// The id each event was accepted with, in order.
    ids: Vec<String>,
    /// Accepted with `Idempotent-Replayed`: an earlier attempt had stored it.
    replayed: usize,
    /// `503` answers: not stored.
    not_stored: usize,
    /// `504` answers: outcome unknown.
    unknown: usize,
}

impl Tally {
    fn failures(&self) -> usize {
        self.not_stored + self.unknown
    }
}

/// The data of event `n` (`EVENTS` is the last, `end`).
fn data_of(n: usize) -> String {
    if n == EVENTS {
        "end".to_owned()
    } else {
        format!("event {n}")
    }
}

/// Publishes every event with its own key, each on the next node, retrying on the next node
/// after a `503` or `504` until it is accepted (each within the guard time).
async fn publisher(nodes: Arc<Vec<Server>>, progress: watch::Sender<Tally>) {
    let mut attempt = 0;
    for n in 0..=EVENTS {
        let (data, key) = (data_of(n), format!("load-{n}"));
        let deadline = Instant::now() + GUARD;
        loop {
            let answer = nodes[attempt % NODES]
                .publish_keyed("load", &data, &key)
                .await;
            attempt += 1;
            match answer.status {
                200 => {
                    let id = answer.id.expect("a 200 carries the id");
                    progress.send_modify(|tally| {
                        tally.ids.push(id);
                        tally.replayed += usize::from(answer.replayed);
                    });
                    break;
                }
                503 => progress.send_modify(|tally| tally.not_stored += 1),
                504 => progress.send_modify(|tally| tally.unknown += 1),
                _ => panic!("publish of {data} answered {answer:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "{data} is not accepted within the guard time: {answer:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A browser: subscribes on node `first` (everything retained on a first connection), and
/// whenever its stream ends, or after [`RECONNECT_EVERY`] events, comes back on the next node
/// with `Last-Event-ID`. Returns each event's id and data, up to `end`.
async fn browser(nodes: Arc<Vec<Server>>, first: usize) -> Vec<(String, String)> {
    let mut received: Vec<(String, String)> = Vec::new();
    let mut node = first;
    let mut deadline = Instant::now() + GUARD;
    loop {
        let server = &nodes[node % NODES];
        let mut request = server.client.get(server.url("/events/load?from=oldest"));
        if let Some((last, _)) = received.last() {
            request = request.header("Last-Event-ID", last);
        }
        // The hub answers `200` even while Redis is down (a `retry:` hint, then the end).
        let mut stream = EventReader::new(request.send().await.unwrap());
        let mut on_this = 0;
        while let Some(event) = stream.next().await {
            received.push((event.last_event_id, event.data));
            deadline = Instant::now() + GUARD;
            if received.last().is_some_and(|(_, data)| data == "end") {
                return received;
            }
            on_this += 1;
            if on_this == RECONNECT_EVERY {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "subscriber {first}: nothing received within the guard time after {} events",
            received.len()
        );
        node += 1;
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn three_nodes_and_a_publisher_retrying_with_keys_through_redis_kills_deliver_each_event_exactly_once()
 {
    let mut redis = RedisServer::start();
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(Server::start(redis_config(&redis)).await);
    }
    let nodes = Arc::new(nodes);
    let browsers: Vec<_> = (0..NODES * SUBSCRIBERS_PER_NODE)
        .map(|n| tokio::spawn(browser(nodes.clone(), n % NODES)))
        .collect();
    for node in nodes.iter() {
        node.until_open(SUBSCRIBERS_PER_NODE).await;
    }

    let (progress, mut watched) = watch::channel(Tally::default());
    let publishing = tokio::spawn(publisher(nodes.clone(), progress));
    for kill_at in KILL_AT {
        let tally =
            tokio::time::timeout(GUARD, watched.wait_for(|tally| tally.ids.len() >= kill_at))
                .await
                .expect("the publisher gets there within the guard time")
                .unwrap()
                .clone();
        // `kill -9` while publishes are in flight: one may be stored and not answered.
        redis = tokio::task::spawn_blocking(move || {
            redis.stop();
            redis
        })
        .await
        .unwrap();
        tokio::time::timeout(
            GUARD,
            watched.wait_for(|now| now.failures() >= tally.failures() + NODES),
        )
        .await
        .expect("publishes fail while Redis is down")
        .unwrap();
        redis = tokio::task::spawn_blocking(move || {
            redis.restart();
            redis
        })
        .await
        .unwrap();
    }
    tokio::time::timeout(GUARD, publishing)
        .await
        .expect("the publisher finishes within the guard time")
        .unwrap();
    let tally = watched.borrow().clone();

    // Redis holds each event once, in the order published: what it acknowledged survived
    // each kill, and what a retry found stored was not stored again.
    let mut raw = redis.raw().await;
    let entries = raw.entries("load").await;
    let expected: Vec<String> = (0..=EVENTS).map(|n| body(&data_of(n))).collect();
    let bodies: Vec<&String> = entries.iter().map(|(_, body)| body).collect();
    assert_eq!(bodies, expected.iter().collect::<Vec<_>>());
    // Every publish was answered with the id it is stored under, a retry's too.
    let ids: Vec<&String> = entries.iter().map(|(id, _)| id).collect();
    assert_eq!(ids, tally.ids.iter().collect::<Vec<_>>());
    assert!(tally.failures() >= KILL_AT.len() * NODES, "{tally:?}");

    // Every subscriber gets each event exactly once, in order, with no gap.
    let due: Vec<(String, String)> = entries
        .iter()
        .zip(0..=EVENTS)
        .map(|((id, _), n)| (id.clone(), data_of(n)))
        .collect();
    for (n, browser) in browsers.into_iter().enumerate() {
        let received = tokio::time::timeout(GUARD, browser)
            .await
            .expect("each subscriber gets to the end within the guard time")
            .unwrap();
        assert_eq!(received, due, "subscriber {n}");
    }
    eprintln!(
        "{} events, {} publishes refused (503), {} outcomes unknown (504), {} accepted as replays",
        EVENTS + 1,
        tally.not_stored,
        tally.unknown,
        tally.replayed
    );
}

#[tokio::test]
async fn idempotency_key_headers_are_taken_as_is_or_as_structured_field_strings() {
    // The memory backend: this is the hub server's reading of the header.
    let server = Server::start(support::hub::config()).await;
    // A bare key and its structured-field string name the same key.
    let bare = server.publish_keyed("news", "one", "order-1").await;
    let quoted = server.publish_keyed("news", "one", "\"order-1\"").await;
    assert_eq!(
        (accepted(&quoted), quoted.replayed),
        (accepted(&bare), true)
    );
    // `\"` and `\\` are unescaped: `"a\"b"` is the key `a"b`.
    let escaped = server.publish_keyed("news", "two", r#""a\"b""#).await;
    let literal = server.publish_keyed("news", "two", r#"a"b"#).await;
    assert_eq!(
        (accepted(&literal), literal.replayed),
        (accepted(&escaped), true)
    );
    let backslash = server.publish_keyed("news", "three", r#""a\\b""#).await;
    let literal = server.publish_keyed("news", "three", r"a\b").await;
    assert_eq!(
        (accepted(&literal), literal.replayed),
        (accepted(&backslash), true)
    );
    // Malformed strings are refused, never taken as a literal key.
    for malformed in [
        "\"",
        "\"abc",
        r#""a\"#,
        r#""a\nb""#,
        r#""a"b""#,
        r#""abc"x"#,
        "\"\"",
    ] {
        let answer = server.publish_keyed("news", "bad", malformed).await;
        assert_eq!(answer.status, 400, "{malformed:?}: {answer:?}");
    }
    let info = server.hub.topic_info("news").await.unwrap().unwrap();
    assert_eq!(
        info.retained_events, 3,
        "only the three well-formed events stored"
    );
}
