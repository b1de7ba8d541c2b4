//! The Redis Streams backend end to end: hub servers of `examples/hub.rs` on `127.0.0.1:0`
//! sharing a real `redis-server` that each test starts on a free port with a temporary
//! directory (`support::redis_server`), driven by a real HTTP client and read with the WHATWG
//! parser. They need `redis-server`, so they are ignored unless run with `--include-ignored` (as
//! `.ci/run` does); then a missing `redis-server` fails them.
//!
//! Nothing here sleeps to synchronise: tests wait on the streams themselves, on presence
//! notices, or poll `hub.health()`, `EXISTS`, `PTTL` or Redis's clock between short pauses
//! under a guard while another process (Redis, whose clock is real) gets there. The real-time
//! sleeps are the age bound's second, in the `wait_idle` case a bound a few grace periods long
//! during which something must *not* happen, and an outage held past the connection manager's
//! own reconnect attempts ([`OUTAGE`]).
#![cfg(feature = "redis")]

mod support;

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use support::client::{EventReader, GUARD, POLL};
use support::hub::{App, Config, Server, redis_config as config};
use support::redis_server::RedisServer;
use support::whatwg::{Item, ParsedEvent, Parser};
use tower_sse::backend::{
    Backend, DEFAULT_KEY_PREFIX, Delivery, EVENT_OVERHEAD, GapReason, Health, HistoryLimits, Live,
    Opened, RedisBackend, ReplayOptions, Rest, Start, TopicLimits,
};
use tower_sse::{Event, Hub, HubError, LastEventId, Publish, SseLayer, Subscription};

/// What the Redis cases add to the shared hub server harness.
impl Server {
    /// Publishes `data` as soon as the hub can (503 answers while it reconnects to Redis are
    /// retried, under the guard) and returns its id.
    async fn publish_when_up(&self, topic: &str, data: &str) -> String {
        tokio::time::timeout(GUARD, async {
            loop {
                match self.try_publish(topic, data).await {
                    Ok(id) => return id,
                    Err((503, _)) => tokio::time::sleep(POLL).await,
                    Err((status, body)) => panic!("publish answered {status}: {body}"),
                }
            }
        })
        .await
        .expect("the hub accepts a publish again within the guard time")
    }
}

/// Splits a Redis stream id, `MS-SEQ`.
fn stream_id(id: &str) -> (u64, u64) {
    let parsed = id
        .split_once('-')
        .and_then(|(ms, seq)| Some((ms.parse().ok()?, seq.parse().ok()?)));
    parsed.unwrap_or_else(|| panic!("{id:?} is not a Redis stream id"))
}

fn ids(events: &[ParsedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.last_event_id.as_str()).collect()
}

/// The JSON of a `gap` event.
fn gap_notice(event: &ParsedEvent) -> Value {
    assert_eq!(event.event_type, "gap", "a gap event first: {event:?}");
    serde_json::from_str(&event.data).unwrap()
}

/// An event stream read item by item, comments included: what a stream that must stay up
/// through a Redis outage needs, since only keep-alive comments flow then.
struct ItemReader {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    parser: Parser,
    pending: VecDeque<Item>,
}

impl ItemReader {
    fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "an event stream answers 200");
        ItemReader {
            body: Box::pin(response.bytes_stream()),
            parser: Parser::new(),
            pending: VecDeque::new(),
        }
    }

    async fn next_item(&mut self) -> Item {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return item;
            }
            let chunk = tokio::time::timeout(GUARD, self.body.next())
                .await
                .expect("the server sends something within the guard time");
            match chunk {
                Some(Ok(chunk)) => self.pending.extend(self.parser.feed_items(&chunk)),
                Some(Err(err)) => panic!("transport error: {err}"),
                None => panic!("the server ended the stream"),
            }
        }
    }

    /// The next `count` events, past any comments.
    async fn take(&mut self, count: usize) -> Vec<ParsedEvent> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            if let Item::Event(event) = self.next_item().await {
                events.push(event);
            }
        }
        events
    }

    /// Reads until `count` comments have come, and returns the events that came meanwhile.
    async fn comments(&mut self, count: usize) -> Vec<ParsedEvent> {
        let mut comments = 0;
        let mut events = Vec::new();
        while comments < count {
            match self.next_item().await {
                Item::Comment { .. } => comments += 1,
                Item::Event(event) => events.push(event),
            }
        }
        events
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn event_published_on_either_server_reaches_subscribers_on_both_once_in_the_same_order() {
    let redis = RedisServer::start();
    let a = Server::start(config(&redis)).await;
    let b = Server::start(config(&redis)).await;
    let mut readers = Vec::new();
    for server in [&a, &b] {
        for _ in 0..2 {
            readers.push(server.subscribe("shared", None).await);
        }
        server.until_open(2).await;
    }

    let mut published = Vec::new();
    for n in 0..40 {
        let (server, name) = if n % 2 == 0 { (&a, "a") } else { (&b, "b") };
        let data = format!("event {n} from {name}");
        published.push((server.publish("shared", &data).await, data));
    }
    let published_ids: Vec<&str> = published.iter().map(|(id, _)| id.as_str()).collect();

    // The ids are Redis's: stream entry ids, in publish order, as stored.
    let mut raw = redis.raw().await;
    assert_eq!(raw.ids("shared").await, published_ids);
    for pair in published_ids.windows(2) {
        assert!(stream_id(pair[0]) < stream_id(pair[1]), "{pair:?}");
    }

    for reader in &mut readers {
        let events = reader.take(40).await;
        assert_eq!(ids(&events), published_ids);
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        let sent: Vec<&str> = published.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(data, sent);
    }
    // Nothing twice: the next event each subscriber gets is the next one published.
    let last = b.publish("shared", "last").await;
    for reader in &mut readers {
        assert_eq!(reader.next().await.unwrap().last_event_id, last);
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn client_that_read_up_to_an_id_on_one_server_resumes_on_the_other_with_exactly_the_rest() {
    let redis = RedisServer::start();
    let a = Server::start(config(&redis)).await;
    let b = Server::start(config(&redis)).await;

    let mut on_a = a.subscribe("feed", None).await;
    a.until_open(1).await;
    let mut published = Vec::new();
    for n in 1..=10 {
        published.push(a.publish("feed", &format!("event {n}")).await);
    }
    let seen = on_a.take(4).await;
    assert_eq!(ids(&seen), published[..4]);
    drop(on_a);

    // It lands on the other server with the last id it saw.
    let mut on_b = b.subscribe("feed", Some(&published[3])).await;
    let rest = on_b.take(6).await;
    assert_eq!(ids(&rest), published[4..], "no gap, no repeat: {rest:?}");
    assert_eq!(rest[0].data, "event 5");
    // Then live, wherever it is published.
    let live = a.publish("feed", "event 11").await;
    assert_eq!(on_b.next().await.unwrap().last_event_id, live);
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn replay_after_an_old_id_is_exact_after_both_servers_restart() {
    let redis = RedisServer::start();
    let a = Server::start(config(&redis)).await;
    let b = Server::start(config(&redis)).await;
    let mut published = Vec::new();
    for n in 0..10 {
        let server = if n % 2 == 0 { &a } else { &b };
        published.push(server.publish("feed", &format!("event {n}")).await);
    }
    a.stop().await;
    b.stop().await;

    let a = Server::start(config(&redis)).await;
    let b = Server::start(config(&redis)).await;
    let mut on_a = a.subscribe("feed", Some(&published[2])).await;
    let replayed = on_a.take(7).await;
    assert_eq!(ids(&replayed), published[3..], "{replayed:?}");
    assert_eq!(replayed[0].data, "event 3");
    let mut on_b = b.subscribe("feed", Some(&published[6])).await;
    let replayed = on_b.take(3).await;
    assert_eq!(ids(&replayed), published[7..], "{replayed:?}");

    // And live after the replay, on both.
    let live = b.publish("feed", "after the restart").await;
    for reader in [&mut on_a, &mut on_b] {
        let event = reader.next().await.unwrap();
        assert_eq!(
            (event.last_event_id.as_str(), event.data.as_str()),
            (live.as_str(), "after the restart")
        );
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn redis_outage_gives_clear_publish_errors_keeps_streams_up_and_loses_nothing() {
    let mut redis = RedisServer::start();
    let config = Config {
        keep_alive: Duration::from_secs(1),
        ..config(&redis)
    };
    let a = Server::start(config.clone()).await;
    let b = Server::start(config).await;
    let mut readers = Vec::new();
    for server in [&a, &a, &b] {
        readers.push(ItemReader::new(server.request("news", None).await));
    }
    a.until_open(2).await;
    b.until_open(1).await;

    let mut before = Vec::new();
    for n in 0..6 {
        let server = if n % 2 == 0 { &a } else { &b };
        before.push(server.publish("news", &format!("before {n}")).await);
    }
    for reader in &mut readers {
        assert_eq!(ids(&reader.take(6).await), before);
    }
    assert_eq!(a.hub.health(), Health::Ok);

    // Two more are accepted while neither server is reading (their readers' connections are
    // cut, and they wait before reconnecting), then Redis goes down: both servers must deliver
    // them from the stream once it is back.
    let mut raw = redis.raw().await;
    assert_eq!(
        raw.kill_clients_running("xread").await,
        2,
        "one reader each"
    );
    let mut unread = Vec::new();
    unread.push(a.publish("news", "unread 0").await);
    unread.push(b.publish("news", "unread 1").await);
    redis.stop();

    // Publishing fails, clearly, on either server and through the hub itself. A server that
    // has not yet seen Redis go hands its first publish to the connection Redis closed, and
    // cannot tell whether it was written before: `504`, outcome unknown (it was not stored, as
    // the stream shows below). Once the failure is on record, a publish is not sent until
    // Redis answers: `503`, nothing stored.
    for server in [&a, &b] {
        let (status, body) = server
            .try_publish("news", "while down")
            .await
            .expect_err("no publish while Redis is down");
        match status {
            503 => assert!(body.contains("unavailable"), "{body:?}"),
            504 => assert!(body.contains("may or may not have been stored"), "{body:?}"),
            _ => panic!("publish answered {status}: {body}"),
        }
        let (status, body) = server
            .try_publish("news", "while down")
            .await
            .expect_err("no publish while Redis is down");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("unavailable"), "{body:?}");
    }
    let err: HubError = a
        .hub
        .publish("news", Event::data("while down"))
        .await
        .expect_err("no publish while Redis is down");
    assert!(err.is_unavailable(), "{err}");
    for server in [&a, &b] {
        match server.until_health(false).await {
            Health::Unavailable(why) => assert!(!why.is_empty()),
            Health::Ok => unreachable!(),
        }
    }
    // The streams stay up: keep-alive comments flow (and no event but those accepted, should a
    // reader have got them before Redis went down).
    let mut early = Vec::new();
    for reader in &mut readers {
        early.push(reader.comments(2).await);
    }

    redis.restart();

    // Published as soon as each server can, so the first may be accepted while the other
    // server still waits to reconnect: its subscribers get it from the stream afterwards.
    let mut after = Vec::new();
    after.push(b.publish_when_up("news", "after 0").await);
    after.push(a.publish_when_up("news", "after 1").await);
    for n in 2..6 {
        let server = if n % 2 == 0 { &b } else { &a };
        after.push(server.publish("news", &format!("after {n}")).await);
    }
    a.until_health(true).await;
    b.until_health(true).await;

    // What Redis accepted is exactly what was acknowledged: the refused publishes left nothing.
    let mut raw = redis.raw().await;
    let accepted = raw.ids("news").await;
    assert_eq!(accepted, [&before[..], &unread, &after].concat());

    // Every subscriber gets every event accepted since it last read, once, in order.
    let due = [&unread[..], &after].concat();
    for (reader, early) in readers.iter_mut().zip(early) {
        let mut events = early;
        events.extend(reader.take(due.len() - events.len()).await);
        assert_eq!(ids(&events), due, "{events:?}");
        assert_eq!(events[0].data, "unread 0");
    }
    let last = a.publish("news", "last").await;
    for reader in &mut readers {
        assert_eq!(reader.take(1).await[0].last_event_id, last);
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn subscribe_while_redis_is_down_ends_with_a_retry_hint_and_resumes_once_it_is_back() {
    let mut redis = RedisServer::start();
    let server = Server::start(config(&redis)).await;
    let first = server.publish("news", "before").await;
    redis.stop();

    for last in [None, Some(first.as_str())] {
        let mut refused = server.subscribe("news", last).await;
        assert!(
            refused.until_end().await.is_empty(),
            "no event, and it ends"
        );
        let retry = refused.retry().expect("told when to come back");
        assert!((1..=30_000).contains(&retry), "retry {retry} ms");
    }

    redis.restart();
    let second = server.publish_when_up("news", "after").await;
    // The browser comes back with its id and gets what it missed.
    let mut reader = server.subscribe("news", Some(&first)).await;
    let event = reader.next().await.unwrap();
    assert_eq!(
        (event.last_event_id.as_str(), event.data.as_str()),
        (second.as_str(), "after")
    );
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn health_tells_whether_redis_is_reachable_even_on_an_idle_hub() {
    let mut redis = RedisServer::start();
    // No stream open, nothing published while it is watched: a load balancer's health check
    // is all that asks.
    let server = Server::start(config(&redis)).await;
    server.publish("news", "connected").await;
    assert_eq!(server.hub.health(), Health::Ok);

    redis.stop();
    server.until_health(false).await;
    // A publish fails meanwhile; that must not leave the hub reporting an outage once it is
    // over.
    let (status, _) = server.try_publish("news", "refused").await.unwrap_err();
    assert_eq!(status, 503);

    redis.restart();
    server.until_health(true).await;
    server.publish("news", "back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn subscribers_opening_while_events_are_published_get_each_event_once_in_order() {
    let redis = RedisServer::start();
    let a = std::sync::Arc::new(Server::start(config(&redis)).await);
    let b = std::sync::Arc::new(Server::start(config(&redis)).await);
    let mut first = Vec::new();
    for n in 0..10 {
        first.push(a.publish("busy", &format!("first {n}")).await);
    }

    // One publisher, alternating servers, tells how far it has got.
    let (progress, mut published) = tokio::sync::watch::channel(0usize);
    let publisher = {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..200 {
                let server = if n % 2 == 0 { &a } else { &b };
                ids.push(server.publish("busy", &format!("event {n}")).await);
                progress.send_replace(n + 1);
            }
            ids
        })
    };

    // Subscribers open on both servers all along the way, resuming from an old id or live.
    let mut subscribers = Vec::new();
    for k in 0..20usize {
        published.wait_for(|&n| n >= k * 10).await.unwrap();
        let server = if k % 2 == 0 { a.clone() } else { b.clone() };
        let last = (k % 3 != 0).then(|| first[k % 10].clone());
        let progress = published.clone();
        subscribers.push(tokio::spawn(async move {
            let mut reader = server.subscribe("busy", last.as_deref()).await;
            // Open: every event published from here on must reach it.
            let open_at = *progress.borrow();
            let mut received = Vec::new();
            loop {
                let event = reader.next().await.expect("the stream stays open");
                assert_eq!(event.event_type, "message", "{event:?}");
                if event.data == "end" {
                    return (last, open_at, received);
                }
                received.push(event.last_event_id);
            }
        }));
    }
    let rest = publisher.await.unwrap();
    for server in [&a, &b] {
        server.until_open(10).await;
    }
    let end = a.publish("busy", "end").await;

    let all = [&first[..], &rest].concat();
    assert_eq!(
        redis.raw().await.ids("busy").await,
        [&all[..], &[end]].concat()
    );
    for subscriber in subscribers {
        let (last, open_at, received) = subscriber.await.unwrap();
        assert_exact(&all, last.as_deref(), first.len() + open_at, &received);
    }
}

/// What a subscriber that resumed after `last` (or started live, `None`) received of `all`:
/// exactly everything after its id; live, a suffix with no hole and no repeat, holding at
/// least every event whose publish started after its stream was open. `open_at`: how many of
/// `all` were published when it was open (the next one may have been on its way then; those
/// after it were not), so a live subscriber that received too little fails, an empty one too.
fn assert_exact(all: &[String], last: Option<&str>, open_at: usize, received: &[String]) {
    match last {
        Some(last) => {
            let after = all.iter().position(|id| *id == last).unwrap() + 1;
            assert_eq!(received, &all[after..], "resumed after {last}");
        }
        None => {
            assert!(all.ends_with(received), "{received:?}");
            let published_since = all.len().saturating_sub(open_at + 1);
            assert!(
                received.len() >= published_since,
                "live from {open_at} of {}, it received only {:?}",
                all.len(),
                received
            );
        }
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn trimming_by_count_shows_in_xlen_and_an_id_older_than_the_trim_gets_an_evicted_gap() {
    let redis = RedisServer::start();
    let bound = 50;
    let server = Server::start(Config {
        history: bound,
        ..config(&redis)
    })
    .await;
    let mut published = Vec::new();
    for n in 0..300 {
        published.push(server.publish("feed", &format!("event {n}")).await);
    }

    // The backend trims once the stream is a batch over its bound (a tenth of the bound, 1 to
    // 100 entries), back to the bound: XLEN stays within the bound plus less than a batch.
    let batch = (bound / 10).clamp(1, 100);
    let mut raw = redis.raw().await;
    let len = raw.xlen("feed").await;
    assert!(
        (bound..bound + batch).contains(&len),
        "XLEN {len} for a bound of {bound}"
    );
    let retained = raw.ids("feed").await;
    assert_eq!(retained, published[300 - len..], "the newest are kept");

    let newest_trimmed = &published[300 - len - 1];
    assert_evicted_gap_then_retained(&server, &published[0], newest_trimmed, &mut raw).await;

    // An id still retained replays exactly, without a gap.
    let mut recent = server.subscribe("feed", Some(&published[296])).await;
    assert_eq!(ids(&recent.take(3).await), published[297..]);
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn trimming_by_age_shows_in_xrange_and_an_id_older_than_the_trim_gets_an_evicted_gap() {
    let redis = RedisServer::start();
    let age = Duration::from_secs(1);
    let hub = Hub::builder()
        .history_age(age)
        .redis(&redis.url())
        .await
        .unwrap();
    let server = Server::serve(app_on(hub)).await;
    let mut old = Vec::new();
    for n in 0..3 {
        old.push(server.publish("feed", &format!("old {n}")).await);
    }
    let mut raw = redis.raw().await;
    assert_eq!(raw.ids("feed").await, old);
    // Real time, on the Redis server's clock: the age bound has to pass.
    tokio::time::sleep(age + Duration::from_millis(100)).await;
    let new = server.publish("feed", "new").await;
    assert!(stream_id(&new).0 - stream_id(&old[2]).0 > 1000);

    // Publishing trimmed everything older than the bound, by the ids' clock.
    assert_eq!(raw.ids("feed").await, [new]);

    assert_evicted_gap_then_retained(&server, &old[0], &old[2], &mut raw).await;
}

/// A client that last saw `evicted` gets a `gap` event (reason `evicted`) first, then every
/// entry the stream holds, and the gap's id resumes exactly there; a client that last saw
/// `newest_trimmed` missed nothing and gets the same entries without a gap.
async fn assert_evicted_gap_then_retained(
    server: &Server,
    evicted: &str,
    newest_trimmed: &str,
    raw: &mut support::redis_server::Raw,
) {
    let retained = raw.ids("feed").await;
    let mut reader = server.subscribe("feed", Some(evicted)).await;
    let gap = reader.next().await.unwrap();
    let notice = gap_notice(&gap);
    assert_eq!(notice["reason"], "evicted", "{notice}");
    assert_eq!(notice["requested"], evicted, "{notice}");
    assert_eq!(notice["resume"], "oldest", "{notice}");
    assert_eq!(
        notice["last_id"],
        retained.last().unwrap().as_str(),
        "{notice}"
    );
    assert_eq!(
        notice["resume_after"],
        gap.last_event_id.as_str(),
        "{notice}"
    );
    let replayed = reader.take(retained.len()).await;
    assert_eq!(ids(&replayed), retained);

    // The gap's own id is where the stream continued: presented again, no gap and no repeat.
    let mut again = server.subscribe("feed", Some(&gap.last_event_id)).await;
    let first = again.next().await.unwrap();
    assert_eq!(
        (first.event_type.as_str(), first.last_event_id.as_str()),
        ("message", retained[0].as_str())
    );

    let mut boundary = server.subscribe("feed", Some(newest_trimmed)).await;
    let replayed = boundary.take(retained.len()).await;
    assert_eq!(ids(&replayed), retained, "{replayed:?}");
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn subscribers_never_silently_miss_entries_trimmed_before_their_server_read_them() {
    let redis = RedisServer::start();
    // A bound of 5 trims on every publish past it.
    let config = Config {
        history: 5,
        ..config(&redis)
    };
    // Server A connects as a Redis user of its own, which the test can switch off.
    acl(
        &redis,
        &["SETUSER", "server-a", "on", ">a", "~*", "&*", "+@all"],
    )
    .await;
    let a = Server::start(Config {
        redis_url: Some(redis.url().replace("redis://", "redis://server-a:a@")),
        ..config.clone()
    })
    .await;
    let b = Server::start(config).await;
    let mut browsers = Vec::new();
    for _ in 0..2 {
        browsers.push(Browser::open(&a, "feed").await);
    }
    a.until_open(2).await;
    let mut accepted = Vec::new();
    for n in 0..3 {
        accepted.push(b.publish("feed", &format!("event {n}")).await);
    }
    for browser in &mut browsers {
        browser.until(&accepted[2]).await;
    }

    // Server A's reader loses its connection (A publishes nothing, so it is A's only client
    // blocked in XREAD; B's idle reader blocks in XREAD too, on a key nothing writes) and
    // cannot get a new one while A's user is off (the connections A has stay up). Once A's health says its reader is down, B publishes past the bound, so entries
    // are trimmed before A has read them; then A's reader may come back.
    acl(&redis, &["SETUSER", "server-a", "off"]).await;
    let mut raw = redis.raw().await;
    assert_eq!(raw.kill_user_clients_running("server-a", "xread").await, 1);
    a.until_health(false).await;
    for n in 3..10 {
        accepted.push(b.publish("feed", &format!("event {n}")).await);
    }
    let last = b.publish("feed", "last").await;
    accepted.push(last.clone());
    assert_eq!(raw.ids("feed").await.len(), 5, "entries were trimmed");
    acl(&redis, &["SETUSER", "server-a", "on"]).await;

    for browser in &mut browsers {
        browser.until(&last).await;
        browser.assert_nothing_missed_silently(&accepted);
        // The path under test ran: A's streams were ended, and the reconnect told of the gap.
        assert!(
            browser.reconnects >= 1 && browser.log.iter().any(|e| e.event_type == "gap"),
            "no reconnect and gap event: {:?}",
            browser.log
        );
    }
}

/// Runs `ACL args…` on `redis`.
async fn acl(redis: &RedisServer, args: &[&str]) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: redis::Value = redis::cmd("ACL")
        .arg(args)
        .query_async(&mut connection)
        .await
        .unwrap();
}

/// A client that behaves like `EventSource`: when its stream ends it reconnects at once with
/// the last event id it saw.
struct Browser<'a> {
    server: &'a Server,
    topic: &'static str,
    reader: EventReader,
    last: Option<String>,
    log: Vec<ParsedEvent>,
    reconnects: usize,
}

impl<'a> Browser<'a> {
    async fn open(server: &'a Server, topic: &'static str) -> Browser<'a> {
        Browser {
            server,
            topic,
            reader: server.subscribe(topic, None).await,
            last: None,
            log: Vec::new(),
            reconnects: 0,
        }
    }

    /// Reads, reconnecting as needed, until the event `id`.
    async fn until(&mut self, id: &str) {
        loop {
            match self.reader.next().await {
                Some(event) => {
                    self.last = Some(event.last_event_id.clone());
                    let done = event.event_type == "message" && event.last_event_id == id;
                    self.log.push(event);
                    if done {
                        return;
                    }
                }
                None => {
                    self.reconnects += 1;
                    assert!(self.reconnects <= 10, "reconnects: {:?}", self.log);
                    self.reader = self
                        .server
                        .subscribe(self.topic, self.last.as_deref())
                        .await;
                }
            }
        }
    }

    /// Every message received is one of `accepted`, in order and once; any accepted one not
    /// received was announced by a `gap` event (reason `evicted`) in its place.
    fn assert_nothing_missed_silently(&self, accepted: &[String]) {
        let mut next = 0;
        let mut announced = false;
        for event in &self.log {
            if event.event_type == "gap" {
                assert_eq!(gap_notice(event)["reason"], "evicted", "{:?}", self.log);
                announced = true;
                continue;
            }
            let at = accepted[next..]
                .iter()
                .position(|id| *id == event.last_event_id)
                .map(|i| next + i)
                .unwrap_or_else(|| panic!("{event:?} is out of order or repeated: {:?}", self.log));
            assert!(
                at == next || announced,
                "{:?} silently missed before {event:?}: {:?}",
                &accepted[next..at],
                self.log
            );
            next = at + 1;
            announced = false;
        }
        assert_eq!(next, accepted.len(), "{:?}", self.log);
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn id_ahead_of_the_stream_gets_an_unknown_gap() {
    let redis = RedisServer::start();
    let server = Server::start(config(&redis)).await;
    let first = server.publish("feed", "one").await;
    let (ms, seq) = stream_id(&first);
    let max = u64::MAX;
    for ahead in [
        format!("{ms}-{}", seq + 1),
        format!("{}-0", ms + 3_600_000),
        format!("{max}-{max}"),
    ] {
        let mut reader = server.subscribe("feed", Some(&ahead)).await;
        let notice = gap_notice(&reader.next().await.unwrap());
        assert_eq!(notice["reason"], "unknown", "{ahead}: {notice}");
        assert_eq!(notice["requested"], ahead.as_str(), "{notice}");
        assert_eq!(notice["last_id"], first.as_str(), "{notice}");
        // Then from the oldest retained.
        assert_eq!(reader.next().await.unwrap().last_event_id, first, "{ahead}");
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn id_that_is_not_a_stream_id_gets_a_malformed_gap() {
    let redis = RedisServer::start();
    let server = Server::start(config(&redis)).await;
    let first = server.publish("feed", "one").await;

    for bad in ["abc", "1-x", "1-2-3", "99999999999999999999999-0"] {
        let mut reader = server.subscribe("feed", Some(bad)).await;
        let notice = gap_notice(&reader.next().await.unwrap());
        assert_eq!(notice["reason"], "malformed", "{bad}: {notice}");
        assert_eq!(notice["requested"], bad, "{notice}");
        assert_eq!(reader.next().await.unwrap().last_event_id, first, "{bad}");
    }
}

/// A hub server like the example's, on a hub built here (for bounds its `Config` does not
/// have).
fn app_on(hub: Hub) -> App {
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
        data: String,
    ) -> Result<axum::Json<Value>, HubError> {
        let event = hub.publish(&topic, Event::data(data)).await?;
        Ok(axum::Json(serde_json::json!({ "id": event.id() })))
    }
    let sse = SseLayer::new().registry(hub.registry());
    let router = Router::new()
        .route("/events/{topic}", get(subscribe))
        .route("/publish/{topic}", post(publish))
        .layer(sse.clone())
        .with_state(hub.clone());
    App::new(router, sse, hub)
}

// ---- Topics that close, expire and cost what they hold (issue 10) ----

/// A backend ("node") on `redis`, with this idle TTL and the defaults otherwise.
fn node(redis: &RedisServer, idle_ttl: Duration) -> RedisBackend {
    node_with(redis, idle_ttl, TopicLimits::default().max_topics, 1024)
}

/// The same, with these bounds on the topics it reads and on each subscriber's lag.
fn node_with(
    redis: &RedisServer,
    idle_ttl: Duration,
    max_topics: usize,
    queue: usize,
) -> RedisBackend {
    let mut topics = TopicLimits::default();
    topics.idle_ttl = idle_ttl;
    topics.max_topics = max_topics;
    node_on(redis, topics, queue)
}

fn node_on(redis: &RedisServer, topics: TopicLimits, queue: usize) -> RedisBackend {
    RedisBackend::new(
        &redis.url(),
        DEFAULT_KEY_PREFIX,
        HistoryLimits::default(),
        topics,
        queue,
    )
    .unwrap()
}

/// A node whose local logs hold at most `max_history_bytes`, with a queue (1024) that no
/// subscriber here falls behind: only the byte bound cuts anyone off.
fn node_holding(redis: &RedisServer, max_history_bytes: usize) -> RedisBackend {
    let mut topics = TopicLimits::default();
    topics.idle_ttl = HOUR;
    topics.max_history_bytes = max_history_bytes;
    node_on(redis, topics, 1024)
}

/// The default idle TTL: long enough that nothing expires during a test.
const HOUR: Duration = Duration::from_secs(3600);

/// A hub server on Redis whose topics expire after `ttl` without publishes or subscribers.
async fn server_with_ttl(redis: &RedisServer, ttl: Duration) -> Server {
    let hub = Hub::builder()
        .topic_idle_ttl(ttl)
        .redis(&redis.url())
        .await
        .unwrap();
    Server::serve(app_on(hub)).await
}

fn after(id: &str) -> Start {
    Start::After(LastEventId::new(id).unwrap())
}

fn id_of(event: &Event) -> &str {
    event.id().expect("a stored event has an id")
}

fn live_part(opened: Opened) -> Live {
    match opened.rest {
        Rest::Live(live) => live,
        other => panic!("expected a live part, got {other:?}"),
    }
}

async fn next_delivery(live: &mut Live) -> Delivery {
    tokio::time::timeout(GUARD, live.next())
        .await
        .expect("a delivery within the guard time")
        .expect("the feed goes on")
}

async fn next_event(live: &mut Live) -> Event {
    match next_delivery(live).await {
        Delivery::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn publish_data(backend: &RedisBackend, topic: &str, data: &str) -> Event {
    backend
        .publish(topic, Event::data(data).into())
        .await
        .unwrap()
        .into_event()
}

async fn gap_reason(backend: &RedisBackend, topic: &str, id: &str) -> Option<GapReason> {
    let opened = backend
        .open(topic, &after(id), &ReplayOptions::default())
        .await
        .unwrap();
    opened.gap.map(|gap| gap.reason)
}

/// Waits until Redis has dropped every key of `topic`, polling `EXISTS`.
async fn until_gone(raw: &mut support::redis_server::Raw, topic: &str) {
    let keys = [RedisServer::key(topic), RedisServer::meta_key(topic)];
    tokio::time::timeout(GUARD, async {
        while raw.exists(&keys).await > 0 {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the keys of {topic} still exist after the guard time"));
}

/// Waits until the Redis server's clock is past the millisecond of stream id `id`, so that
/// the next id any stream adds is larger than every id of that millisecond.
async fn until_clock_past(raw: &mut support::redis_server::Raw, id: &str) {
    let (ms, _) = stream_id(id);
    tokio::time::timeout(GUARD, async {
        while raw.now_ms().await <= ms {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the Redis clock moves on");
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn close_is_seen_on_both_servers_and_later_subscribers_get_the_history_then_the_end() {
    let redis = RedisServer::start();
    let a = Server::start(config(&redis)).await;
    let b = Server::start(config(&redis)).await;
    let mut readers = vec![
        a.subscribe("job", None).await,
        b.subscribe("job", None).await,
    ];
    a.until_open(1).await;
    b.until_open(1).await;
    let published = [a.publish("job", "one").await, b.publish("job", "two").await];

    let end = b.hub.close("job").await.unwrap();
    let end_id = id_of(&end).to_owned();
    // The close marker is an entry of the stream; the final event's id is its id and ":end".
    let mut raw = redis.raw().await;
    let stored = raw.ids("job").await;
    assert_eq!(stored[..2], published[..]);
    assert_eq!(format!("{}:end", stored[2]), end_id);

    // Live subscribers on both servers: what they had not read, the final event, the end.
    for reader in &mut readers {
        let events = reader.until_end().await;
        assert_eq!(
            ids(&events),
            [&published[0], &published[1], &end_id],
            "{events:?}"
        );
        assert_eq!(events[2].event_type, "end");
        assert_eq!(events[2].data, r#"{"reason":"closed"}"#);
    }

    for server in [&a, &b] {
        // No more publishing on either server; closing again changes nothing.
        let (status, body) = server.try_publish("job", "three").await.unwrap_err();
        assert_eq!(status, 409, "{body}");
        let err = server
            .hub
            .publish("job", Event::data("three"))
            .await
            .unwrap_err();
        assert!(err.is_closed(), "{err}");
        assert_eq!(server.hub.close("job").await.unwrap(), end);

        // Later subscribers: what is retained after their start, then the final event.
        let mut resumed = server.subscribe("job", Some(&published[0])).await;
        let events = resumed.until_end().await;
        assert_eq!(ids(&events), [&published[1], &end_id], "{events:?}");
        let mut first_time = server.subscribe("job", None).await;
        assert_eq!(ids(&first_time.until_end().await), [&end_id]);
        // A client that has seen the final event is told to stop reconnecting.
        assert_eq!(server.request("job", Some(&end_id)).await.status(), 204);

        let info = server.hub.topic_info("job").await.unwrap().unwrap();
        assert!(info.closed);
        assert_eq!(info.retained_events, 2, "the marker is not an event");
        assert_eq!(info.last_id.as_deref(), Some(published[1].as_str()));
    }
    assert_eq!(
        raw.ids("job").await,
        stored,
        "nothing was added after the marker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn close_racing_publishes_and_subscribes_on_two_servers_loses_and_duplicates_nothing() {
    let redis = RedisServer::start();
    let a = std::sync::Arc::new(node(&redis, HOUR));
    let b = std::sync::Arc::new(node(&redis, HOUR));
    let mut first = Vec::new();
    for n in 0..10 {
        first.push(id_of(&publish_data(&a, "race", &format!("first {n}")).await).to_owned());
    }

    // One publisher, alternating nodes, until the topic is closed under it.
    let (progress, mut published) = tokio::sync::watch::channel(0usize);
    let publisher = {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0.. {
                let node = if n % 2 == 0 { &a } else { &b };
                match node
                    .publish("race", Event::data(format!("event {n}")).into())
                    .await
                {
                    Ok(published) => ids.push(published.id().to_owned()),
                    Err(err) if err.is_closed() => return ids,
                    Err(err) => panic!("{err}"),
                }
                progress.send_replace(n + 1);
            }
            unreachable!()
        })
    };

    // Subscribers open on both nodes all along the way, before and after the close.
    let mut subscribers = Vec::new();
    for k in 0..30usize {
        // After the close the publisher is gone: the rest open on the closed topic.
        let _ = published.wait_for(|&n| n >= k * 5).await;
        let node = if k % 2 == 0 { a.clone() } else { b.clone() };
        let last = (k % 3 != 0).then(|| first[k % 10].clone());
        let progress = published.clone();
        subscribers.push(tokio::spawn(async move {
            let start = last.as_deref().map_or(Start::Live, after);
            let opened = node
                .open("race", &start, &ReplayOptions::default())
                .await
                .unwrap();
            let open_at = *progress.borrow();
            assert!(opened.gap.is_none(), "{:?}", opened.gap);
            let mut received: Vec<String> =
                opened.replay.iter().map(|e| id_of(e).to_owned()).collect();
            let end = match opened.rest {
                Rest::End(end) => end,
                Rest::Live(mut live) => loop {
                    match next_delivery(&mut live).await {
                        Delivery::Event(event) => received.push(id_of(&event).to_owned()),
                        Delivery::End(end) => break end,
                        other => panic!("{other:?}"),
                    }
                },
                other => panic!("{other:?}"),
            };
            (last, open_at, received, end)
        }));
        if k == 15 {
            published.wait_for(|&n| n >= 60).await.unwrap();
            a.close("race", Event::data("closed")).await.unwrap();
        }
    }
    let rest = publisher.await.unwrap();
    let end = b.close("race", Event::data("again")).await.unwrap();
    assert!(id_of(&end).ends_with(":end"));

    let all = [&first[..], &rest].concat();
    let stored = redis.raw().await.ids("race").await;
    assert_eq!(stored[..all.len()], all[..]);
    assert_eq!(format!("{}:end", stored[all.len()]), id_of(&end));
    for subscriber in subscribers {
        let (last, open_at, received, their_end) = subscriber.await.unwrap();
        assert_eq!(their_end, end, "one final event for everyone");
        assert_exact(&all, last.as_deref(), first.len() + open_at, &received);
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn idle_topics_expire_in_redis_and_their_ids_are_foreign_on_both_servers() {
    let redis = RedisServer::start();
    let ttl = Duration::from_millis(200);
    let a = server_with_ttl(&redis, ttl).await;
    let b = server_with_ttl(&redis, ttl).await;
    let old = [
        a.publish("plain", "one").await,
        b.publish("plain", "two").await,
    ];
    let closed_old = a.publish("closed", "one").await;
    let end = b.hub.close("closed").await.unwrap();

    // Every key of both topics expires, renewed by the last publish or close.
    let mut raw = redis.raw().await;
    for topic in ["plain", "closed"] {
        for key in [RedisServer::key(topic), RedisServer::meta_key(topic)] {
            let pttl = raw.pttl(&key).await;
            assert!(pttl != -1 && pttl <= 200, "{key}: PTTL {pttl}");
        }
    }
    // Nobody publishes or listens: Redis drops them whole.
    for topic in ["plain", "closed"] {
        until_gone(&mut raw, topic).await;
    }

    let mut waiting = Vec::new();
    for server in [&a, &b] {
        for topic in ["plain", "closed"] {
            assert_eq!(server.hub.topic_info(topic).await.unwrap(), None, "{topic}");
        }
        // An id of the dropped instance is foreign; nothing is there to resume from yet.
        let mut reader = server.subscribe("plain", Some(&old[1])).await;
        let notice = gap_notice(&reader.next().await.unwrap());
        assert_eq!(notice["reason"], "foreign", "{notice}");
        assert_eq!(notice["last_id"], Value::Null, "{notice}");
        waiting.push(reader);
        // A client that saw the closed topic's end is still told to stop.
        let response = server.request("closed", Some(id_of(&end))).await;
        assert_eq!(response.status(), 204);
    }
    a.until_open(1).await;
    b.until_open(1).await;

    // A publish opens a new instance: the waiting subscribers get it live...
    let new = a.publish("plain", "new").await;
    let reopened = b.publish("closed", "open again").await;
    for reader in &mut waiting {
        assert_eq!(reader.next().await.unwrap().last_event_id, new);
    }
    // ...and the old ids are foreign on both servers, the new instance replayed whole.
    for server in [&a, &b] {
        for (topic, stale, fresh) in [
            ("plain", &old[0], &new),
            ("plain", &old[1], &new),
            ("closed", &closed_old, &reopened),
        ] {
            let mut reader = server.subscribe(topic, Some(stale)).await;
            let gap = reader.next().await.unwrap();
            let notice = gap_notice(&gap);
            assert_eq!(
                notice["reason"], "foreign",
                "{topic} after {stale}: {notice}"
            );
            assert_eq!(notice["last_id"], fresh.as_str(), "{notice}");
            assert_eq!(reader.next().await.unwrap().last_event_id, *fresh);
            // The gap's own id is the new instance's start: presented again, it resumes
            // exactly there.
            let mut again = server.subscribe(topic, Some(&gap.last_event_id)).await;
            let first = again.next().await.unwrap();
            assert_eq!(
                (first.event_type.as_str(), first.last_event_id.as_str()),
                ("message", fresh.as_str())
            );
        }
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_topic_with_a_subscriber_is_kept_past_its_idle_ttl_and_goes_once_nobody_listens() {
    let redis = RedisServer::start();
    let ttl = Duration::from_millis(200);
    let a = node(&redis, ttl);
    let b = node(&redis, ttl);
    let mut live = live_part(
        a.open("kept", &Start::Live, &ReplayOptions::default())
            .await
            .unwrap(),
    );
    let first = publish_data(&b, "kept", "one").await;
    assert_eq!(next_event(&mut live).await, first);

    // The server with the subscriber renews the keys: their TTL goes back up, again and again,
    // for longer than the TTL, and they never go meanwhile.
    let mut raw = redis.raw().await;
    let keys = [RedisServer::key("kept"), RedisServer::meta_key("kept")];
    let started = std::time::Instant::now();
    let mut renewals = 0;
    let mut last = raw.pttl(&keys[0]).await;
    tokio::time::timeout(GUARD, async {
        while renewals < 6 {
            tokio::time::sleep(POLL).await;
            assert_eq!(raw.exists(&keys).await, 2, "kept while someone listens");
            let pttl = raw.pttl(&keys[0]).await;
            if pttl > last {
                renewals += 1;
            }
            last = pttl;
        }
    })
    .await
    .expect("renewed within the guard time");
    assert!(started.elapsed() > ttl);
    // The same instance all along: the subscriber goes on.
    let second = publish_data(&b, "kept", "two").await;
    assert_eq!(next_event(&mut live).await, second);
    assert_eq!(a.topic_info("kept").await.unwrap().unwrap().subscribers, 1);

    drop(live);
    until_gone(&mut raw, "kept").await;
    assert_eq!(a.topic_info("kept").await.unwrap(), None);
    assert_eq!(
        gap_reason(&b, "kept", id_of(&second)).await,
        Some(GapReason::Foreign)
    );
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn opening_a_subscription_renews_the_topic_keys_at_once() {
    let redis = RedisServer::start();
    // A TTL long enough that no renewal by a keeper (every third of it) comes during the test.
    let ttl = Duration::from_secs(30);
    let a = node(&redis, ttl);
    let b = node(&redis, ttl);
    let first = publish_data(&a, "renewed", "one").await;
    let mut raw = redis.raw().await;
    let keys = [
        RedisServer::key("renewed"),
        RedisServer::meta_key("renewed"),
    ];
    let options = ReplayOptions::default();

    // Each way of opening, on the server that did not publish, when the keys are about to go
    // (as if nobody had published for most of the TTL): the keys get the whole TTL again.
    let mut feeds = Vec::new();
    for start in [Start::Live, after(id_of(&first)), Start::Oldest] {
        for key in &keys {
            assert!(raw.pexpire(key, 500).await, "{key} exists");
            let pttl = raw.pttl(key).await;
            assert!((0..=500).contains(&pttl), "{key}: PTTL {pttl}");
        }
        let opened = b.open("renewed", &start, &options).await.unwrap();
        assert!(opened.gap.is_none(), "{start:?}: {:?}", opened.gap);
        for key in &keys {
            let pttl = raw.pttl(key).await;
            assert!(
                pttl > 20_000 && pttl <= 30_000,
                "{key}: PTTL {pttl} after opening {start:?}"
            );
        }
        feeds.push(live_part(opened));
    }
    // The same instance goes on: every subscriber gets the next event.
    let second = publish_data(&a, "renewed", "two").await;
    for feed in &mut feeds {
        assert_eq!(next_event(feed).await, second);
    }

    // Opening a topic that does not exist renews nothing and creates nothing.
    let missing = [
        RedisServer::key("missing"),
        RedisServer::meta_key("missing"),
    ];
    let _feed = b.open("missing", &Start::Live, &options).await.unwrap();
    assert_eq!(raw.exists(&missing).await, 0);
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn the_three_start_positions_on_redis() {
    let redis = RedisServer::start();
    let a = node(&redis, HOUR);
    let b = node(&redis, HOUR);
    let options = ReplayOptions::default();

    // On a topic that does not exist yet: nothing to replay, then live.
    let opened = b.open("starts", &Start::Oldest, &options).await.unwrap();
    assert!(opened.gap.is_none() && opened.replay.is_empty());
    let mut early = live_part(opened);

    let mut published = Vec::new();
    for n in 0..5 {
        published.push(publish_data(&a, "starts", &format!("{n}")).await);
    }
    for event in &published {
        assert_eq!(next_event(&mut early).await, *event);
    }

    // Live: nothing replayed.
    let opened = b.open("starts", &Start::Live, &options).await.unwrap();
    assert!(opened.gap.is_none() && opened.replay.is_empty());
    let mut live = live_part(opened);
    // Oldest: everything retained.
    let opened = b.open("starts", &Start::Oldest, &options).await.unwrap();
    assert!(opened.gap.is_none());
    assert_eq!(opened.replay, published);
    let mut oldest = live_part(opened);
    // After an id: exactly what follows it.
    let opened = b
        .open("starts", &after(id_of(&published[2])), &options)
        .await
        .unwrap();
    assert!(opened.gap.is_none());
    assert_eq!(opened.replay, published[3..]);
    let mut resumed = live_part(opened);

    // Then live, for all of them, once.
    let sixth = publish_data(&a, "starts", "6").await;
    let seventh = publish_data(&b, "starts", "7").await;
    for feed in [&mut early, &mut live, &mut oldest, &mut resumed] {
        assert_eq!(next_event(feed).await, sixth);
        assert_eq!(next_event(feed).await, seventh);
    }

    // Oldest is capped like any replay.
    let mut capped = ReplayOptions::default();
    capped.max_replay = 4;
    let opened = b.open("starts", &Start::Oldest, &capped).await.unwrap();
    assert_eq!(opened.replay, published[..4]);
    assert!(matches!(opened.rest, Rest::More), "{:?}", opened.rest);
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn an_id_from_another_topic_is_foreign_where_stream_ids_can_tell() {
    let redis = RedisServer::start();
    let node = node(&redis, HOUR);
    let mut raw = redis.raw().await;
    // Stream ids are time-based: each step waits for Redis's clock to move on, so the ids of
    // the two topics interleave strictly.
    let before = publish_data(&node, "other", "before mine existed").await;
    until_clock_past(&mut raw, id_of(&before)).await;
    let m1 = publish_data(&node, "mine", "m1").await;
    until_clock_past(&mut raw, id_of(&m1)).await;
    let between = publish_data(&node, "other", "between m1 and m2").await;
    until_clock_past(&mut raw, id_of(&between)).await;
    let m2 = publish_data(&node, "mine", "m2").await;
    until_clock_past(&mut raw, id_of(&m2)).await;
    let ahead = publish_data(&node, "other", "after mine's newest").await;

    // Older than the topic's instance: foreign.
    assert_eq!(
        gap_reason(&node, "mine", id_of(&before)).await,
        Some(GapReason::Foreign)
    );
    // Within what it retains, yet none of its entries: foreign.
    assert_eq!(
        gap_reason(&node, "mine", id_of(&between)).await,
        Some(GapReason::Foreign)
    );
    // Newer than its newest: as an id it never issued (yet), unknown.
    assert_eq!(
        gap_reason(&node, "mine", id_of(&ahead)).await,
        Some(GapReason::Unknown)
    );
    // Its own ids resume exactly.
    let opened = node
        .open("mine", &after(id_of(&m1)), &ReplayOptions::default())
        .await
        .unwrap();
    assert!(opened.gap.is_none());
    assert_eq!(opened.replay, [m2]);
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_thousand_topics_with_one_subscriber_each_on_one_server() {
    let redis = RedisServer::start();
    let a = node(&redis, HOUR);
    let b = node(&redis, HOUR);
    let options = ReplayOptions::default();
    let topics: Vec<String> = (0..1000).map(|n| format!("user-{n}")).collect();
    // Each subscriber is a position in its topic's local log: no ring is allocated for it.
    let mut feeds = Vec::new();
    for topic in &topics {
        feeds.push(live_part(
            a.open(topic, &Start::Live, &options).await.unwrap(),
        ));
    }
    for topic in &topics {
        let info = a
            .topic_info(topic)
            .await
            .unwrap()
            .expect("it has a subscriber");
        assert_eq!((info.subscribers, info.retained_events), (1, 0), "{topic}");
    }

    let mut sent = Vec::new();
    for topic in &topics {
        sent.push(publish_data(&b, topic, topic).await);
    }
    for (feed, event) in feeds.iter_mut().zip(&sent) {
        assert_eq!(next_event(feed).await, *event);
    }
    for (topic, event) in topics.iter().zip(&sent) {
        let info = a.topic_info(topic).await.unwrap().unwrap();
        assert_eq!(info.subscribers, 1);
        assert_eq!(info.retained_events, 1);
        assert_eq!(info.retained_bytes, event.len());
        assert_eq!(info.last_id.as_deref(), event.id());
        assert!(!info.closed);
    }

    drop(feeds);
    for topic in &topics {
        assert_eq!(a.topic_info(topic).await.unwrap().unwrap().subscribers, 0);
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn max_topics_bounds_the_topics_a_server_reads() {
    let redis = RedisServer::start();
    let a = node_with(&redis, HOUR, 2, 1024);
    let options = ReplayOptions::default();
    let one = a.open("one", &Start::Live, &options).await.unwrap();
    let _two = a.open("two", &Start::Live, &options).await.unwrap();
    // A second subscriber of a topic read already costs no topic.
    let _again = a.open("one", &Start::Live, &options).await.unwrap();
    let err = a.open("three", &Start::Live, &options).await.unwrap_err();
    assert!(err.is_full(), "{err}");
    // Publishing is not bounded by it: Redis holds the topics.
    publish_data(&a, "three", "x").await;

    drop((one, _again));
    let three = a.open("three", &Start::Oldest, &options).await.unwrap();
    assert_eq!(three.replay.len(), 1);
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn wait_idle_follows_the_local_subscribers_without_asking_redis() {
    let redis = RedisServer::start();
    let a = std::sync::Arc::new(node(&redis, HOUR));
    let grace = Duration::from_millis(100);

    // Nobody listens: it resolves after the grace period.
    let started = tokio::time::Instant::now();
    a.wait_idle("answer", grace).await.unwrap();
    assert!(started.elapsed() >= grace);

    let opened = a
        .open("answer", &Start::Live, &ReplayOptions::default())
        .await
        .unwrap();
    let waiting = {
        let a = a.clone();
        tokio::spawn(async move {
            a.wait_idle("answer", grace).await.unwrap();
            tokio::time::Instant::now()
        })
    };
    // A bound, not a wait for something: several grace periods pass with the subscriber there.
    tokio::time::sleep(grace * 4).await;
    assert!(!waiting.is_finished(), "someone listens");
    assert_eq!(
        a.topic_info("answer").await.unwrap().unwrap().subscribers,
        1
    );

    let left = tokio::time::Instant::now();
    drop(opened);
    let resolved = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("resolves once nobody has listened for the grace period")
        .unwrap();
    assert!(resolved - left >= grace);
    assert_eq!(a.topic_info("answer").await.unwrap(), None, "nothing left");
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn errors_keep_the_redis_error_as_their_source_and_never_show_its_text() {
    let mut redis = RedisServer::start();
    let a = node(&redis, HOUR);
    publish_data(&a, "news", "up").await;
    let warmed = tokio::time::Instant::now();
    redis.stop();

    // The publish goes first, on the connection Redis closed, before anything here has seen
    // Redis go: nothing tells whether it was written before, so its outcome is unknown (unless
    // stopping Redis took longer than the backend's idle check, half a second: then a `PING`
    // finds the connection closed first, and nothing is sent). Then the failure is on record,
    // and each command fails before it is sent.
    let idle = warmed.elapsed();
    let published = a
        .publish("news", Event::data("down").into())
        .await
        .unwrap_err();
    assert!(
        published.is_outcome_unknown()
            || (published.is_unavailable() && idle > Duration::from_millis(400)),
        "{published:?} after {idle:?}"
    );
    let errors = [
        a.close("news", Event::data("end")).await.unwrap_err(),
        a.topic_info("news").await.unwrap_err(),
        a.open("news", &Start::Oldest, &ReplayOptions::default())
            .await
            .unwrap_err(),
        a.publish("news", Event::data("down").into())
            .await
            .unwrap_err(),
    ];
    for (n, err) in std::iter::once(published).chain(errors).enumerate() {
        assert!(n == 0 || err.is_unavailable(), "{err:?}");
        let shown = err.to_string();
        assert!(
            !shown.contains("Redis") && !shown.contains("127.0.0.1"),
            "{shown}"
        );
        let source = std::error::Error::source(&err).expect("the Redis error is kept");
        assert!(
            source.downcast_ref::<redis::RedisError>().is_some(),
            "{source:?}"
        );
    }
    // Operators see what is wrong, in words of the crate's own: the health is shown to anyone
    // (`/health`), so it never carries Redis's text or its address (the log does).
    match a.health() {
        Health::Unavailable(why) => {
            assert!(why.starts_with("Redis "), "{why}");
            assert!(
                [
                    "connection refused",
                    "connection lost",
                    "unreachable",
                    "timed out"
                ]
                .iter()
                .any(|class| why.ends_with(class)),
                "{why}"
            );
            assert!(
                !why.contains("127.0.0.1") && !why.contains("os error"),
                "{why}"
            );
        }
        Health::Ok => panic!("Redis is down"),
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_subscriber_more_than_its_queue_behind_is_lagged_and_the_others_go_on() {
    let redis = RedisServer::start();
    let a = node_with(&redis, HOUR, 100, 2);
    let b = node(&redis, HOUR);
    let options = ReplayOptions::default();
    let mut slow = live_part(a.open("busy", &Start::Live, &options).await.unwrap());
    let mut fast = live_part(a.open("busy", &Start::Live, &options).await.unwrap());
    // The fast one reads each event as it comes; the slow one reads none, and falls more than
    // its queue of 2 behind.
    for n in 0..5 {
        let event = publish_data(&b, "busy", &format!("{n}")).await;
        assert_eq!(next_event(&mut fast).await, event);
    }
    assert!(matches!(next_delivery(&mut slow).await, Delivery::Lagged));
    assert!(slow.next().await.is_none(), "then its feed ends");
    let sixth = publish_data(&b, "busy", "6").await;
    assert_eq!(next_event(&mut fast).await, sixth);
}

/// What an event costs against `max_history_bytes`.
fn cost(event: &Event) -> usize {
    event.len() + EVENT_OVERHEAD
}

/// About 1 KiB of data, numbered.
fn kib(n: usize) -> String {
    format!("{n:04} {}", "x".repeat(1019))
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn local_logs_stay_within_max_history_bytes_by_cutting_the_stalled_subscriber() {
    let redis = RedisServer::start();
    let bound = 16 * 1024;
    let a = node_holding(&redis, bound);
    let b = node(&redis, HOUR);
    let options = ReplayOptions::default();
    let mut stalled = live_part(a.open("big", &Start::Live, &options).await.unwrap());
    let mut reader = live_part(a.open("big", &Start::Live, &options).await.unwrap());

    // Forty events of 1 KiB, each read by the reader as it comes (so each is delivered before
    // the next is published); the stalled subscriber reads none and would pin them all.
    let mut published = Vec::new();
    let mut most = 0;
    for n in 0..40 {
        let event = publish_data(&b, "big", &kib(n)).await;
        assert_eq!(
            next_event(&mut reader).await,
            event,
            "the reader gets everything"
        );
        let held = a.local_bytes();
        assert!(held <= bound, "after event {n}: {held} bytes held");
        most = most.max(held);
        published.push(event);
    }
    assert!(40 * cost(&published[0]) > 2 * bound);
    // Up to the bound, not cut early.
    assert!(
        most > bound - 2 * cost(&published[0]),
        "at most {most} held"
    );

    // The stalled one was cut: its stream ends with a `retry:` hint...
    assert!(matches!(
        next_delivery(&mut stalled).await,
        Delivery::Lagged
    ));
    assert!(stalled.next().await.is_none(), "then its feed ends");
    // ...and when it reconnects it gets everything from Redis.
    let opened = a.open("big", &Start::Oldest, &options).await.unwrap();
    assert!(opened.gap.is_none());
    assert_eq!(opened.replay, published);
    drop(opened);

    // The reader goes on, and only it counts now.
    assert_eq!(a.topic_info("big").await.unwrap().unwrap().subscribers, 1);
    let last = publish_data(&b, "big", &kib(40)).await;
    assert_eq!(next_event(&mut reader).await, last);
    assert!(a.local_bytes() <= 2 * cost(&last), "{}", a.local_bytes());

    // Once the topic is closed and its subscribers are gone, nothing here is held.
    let end = b.close("big", Event::data("done")).await.unwrap();
    match next_delivery(&mut reader).await {
        Delivery::End(got) => assert_eq!(got, end),
        other => panic!("expected the end, got {other:?}"),
    }
    assert!(
        a.local_bytes() >= cost(&end),
        "the final event counts while held"
    );
    drop((reader, stalled));
    assert_eq!(a.local_bytes(), 0);
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn the_byte_bound_counts_every_local_topic_and_cuts_whoever_holds_the_oldest_first() {
    let redis = RedisServer::start();
    let bound = 16 * 1024;
    let a = node_holding(&redis, bound);
    let b = node(&redis, HOUR);
    let options = ReplayOptions::default();
    let open = |topic: &'static str| {
        let a = &a;
        let options = &options;
        async move { live_part(a.open(topic, &Start::Live, options).await.unwrap()) }
    };
    let (mut old_stalled, mut old_reader) = (open("older").await, open("older").await);
    let (mut new_stalled, mut new_reader) = (open("newer").await, open("newer").await);

    // Three events on "older", which its stalled subscriber holds.
    let mut older = Vec::new();
    for n in 0..3 {
        let event = publish_data(&b, "older", &kib(n)).await;
        assert_eq!(next_event(&mut old_reader).await, event);
        older.push(event);
    }
    let each = cost(&older[0]);
    assert!(a.local_bytes() >= 3 * each);
    // Then, on "newer", as many as the bound holds with room to spare: with "older"'s, more
    // than it holds.
    let count = bound / each - 1;
    assert!((3 + count) * each > bound);
    let mut newer = Vec::new();
    for n in 0..count {
        let event = publish_data(&b, "newer", &kib(n)).await;
        assert_eq!(next_event(&mut new_reader).await, event);
        assert!(a.local_bytes() <= bound, "{} bytes held", a.local_bytes());
        newer.push(event);
    }

    // The subscriber that held the oldest entries was cut, on the other topic; the stalled
    // one on "newer" was not, and gets everything.
    assert_eq!(a.topic_info("older").await.unwrap().unwrap().subscribers, 1);
    assert_eq!(a.topic_info("newer").await.unwrap().unwrap().subscribers, 2);
    assert!(matches!(
        next_delivery(&mut old_stalled).await,
        Delivery::Lagged
    ));
    for event in &newer {
        assert_eq!(next_event(&mut new_stalled).await, *event);
    }
    // The readers of both topics go on.
    let next = publish_data(&b, "older", &kib(3)).await;
    assert_eq!(next_event(&mut old_reader).await, next);
}

// ---- The first command after a Redis outage (issue 12, item 6; issue 18, item 3) ----

/// How long Redis stays down once the nodes' commands have failed: as in a real outage, longer
/// than the connection manager's own reconnect attempts (two, at most ~200 ms apart), so that
/// they have failed too and each node holds a failed reconnect when Redis comes back. A span
/// during which something must happen elsewhere (in the manager), never a wait for it: the
/// assertions hold whether or not it did.
const OUTAGE: Duration = Duration::from_millis(600);

/// Takes Redis down until every node's health says so. With `commands`, each node also fails
/// a publish and a subscribe meanwhile, and the outage lasts [`OUTAGE`] past them.
async fn outage(redis: &mut RedisServer, nodes: &[&Server], commands: bool) {
    redis.stop();
    for node in nodes {
        node.until_health(false).await;
    }
    if !commands {
        return;
    }
    for node in nodes {
        let (status, body) = node
            .try_publish("news", "while down")
            .await
            .expect_err("no publish while Redis is down");
        assert_eq!(status, 503, "{body}");
        let mut refused = node.subscribe("news", None).await;
        assert!(refused.until_end().await.is_empty());
        assert!(
            String::from_utf8_lossy(refused.raw()).contains("unavailable"),
            "{:?}",
            String::from_utf8_lossy(refused.raw())
        );
    }
    tokio::time::sleep(OUTAGE).await;
}

/// The first publish on `publisher` and the first subscription on `subscriber` (resuming after
/// `last`), at once: the publish is accepted, and the subscription is a stream that delivers
/// it (by replay or live), not the "unavailable" notice. Returns the new event's id.
async fn first_commands(publisher: &Server, subscriber: &Server, last: &str) -> String {
    let (published, mut reader) = tokio::join!(
        publisher.try_publish("news", "first after"),
        subscriber.subscribe("news", Some(last)),
    );
    let id = published.unwrap_or_else(|(status, body)| {
        panic!("the first publish after the outage answered {status}: {body}")
    });
    let event = reader.next().await.unwrap_or_else(|| {
        panic!(
            "the first subscription after the outage ended: {:?}",
            String::from_utf8_lossy(reader.raw())
        )
    });
    assert_eq!(
        (event.last_event_id.as_str(), event.data.as_str()),
        (id.as_str(), "first after")
    );
    assert!(!String::from_utf8_lossy(reader.raw()).contains("unavailable"));
    id
}

/// Two nodes through two outages, with commands failing during the first (each node then
/// holds a failed reconnect) and none during the second (each holds a connection that Redis
/// closed when it went down). After each, once both nodes' health is ok again (`health_first`)
/// or as soon as Redis answers, the first publish on one node and the first subscription on the
/// other succeed ([`first_commands`]); each node publishes first once.
async fn first_commands_after_two_outages(health_first: bool) {
    let mut redis = RedisServer::start();
    let a = Server::start(config(&redis)).await;
    let b = Server::start(config(&redis)).await;
    a.publish("news", "before").await;
    let mut last = b.publish("news", "before too").await;

    for (publisher, subscriber, commands) in [(&a, &b, true), (&b, &a, false)] {
        outage(&mut redis, &[&a, &b], commands).await;
        redis.restart();
        if health_first {
            a.until_health(true).await;
            b.until_health(true).await;
        }
        last = first_commands(publisher, subscriber, &last).await;
        a.until_health(true).await;
        b.until_health(true).await;
    }
    let mut raw = redis.raw().await;
    assert_eq!(
        raw.xlen("news").await,
        4,
        "the refused publishes stored nothing"
    );
    // Still two connections per node (the check goes on the command connection), once each
    // reader is back.
    tokio::time::timeout(GUARD, async {
        loop {
            let connections = raw.other_clients().await.len();
            assert!(connections <= 4, "{connections} connections for two nodes");
            if connections == 4 {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .expect("both readers are back within the guard time");
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn once_health_is_ok_after_an_outage_every_node_publishes_and_subscribes_on_its_first_try() {
    // `/health` says ok only once the next command works: they never disagree.
    first_commands_after_two_outages(true).await;
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn as_soon_as_redis_answers_again_the_first_commands_succeed_before_health_has_looked() {
    first_commands_after_two_outages(false).await;
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_publish_that_timed_out_on_a_frozen_redis_is_stored_once_never_retried() {
    let redis = RedisServer::start();
    let a = node(&redis, HOUR);
    publish_data(&a, "news", "before").await;

    // Sent, then no answer: it may have been stored (it will be, once Redis runs again), so it
    // must not be sent again, and the caller is told that its outcome is unknown.
    redis.freeze();
    let err = a
        .publish("news", Event::data("frozen").into())
        .await
        .unwrap_err();
    assert!(err.is_outcome_unknown(), "{err:?}");
    // Now that a failure is on record, a publish first checks that Redis answers, and is not
    // sent when it does not: nothing is left to be stored later.
    let err = a
        .publish("news", Event::data("not sent").into())
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    redis.thaw();

    publish_data(&a, "news", "after").await;
    let mut raw = redis.raw().await;
    assert_eq!(
        raw.bodies("news").await,
        ["data: before\n\n", "data: frozen\n\n", "data: after\n\n"]
    );
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_publish_whose_connection_dropped_after_it_was_sent_is_never_retried() {
    let redis = RedisServer::start();
    let a = node(&redis, HOUR);
    publish_data(&a, "news", "before").await;

    // The publish reaches Redis, which holds it unrun; then its connection is cut. The error
    // (the connection closed) does not tell whether it ran, so it is not sent again (a retry
    // would be held too, and run on `unpause`).
    let mut raw = redis.raw().await;
    raw.pause_writes(GUARD.as_millis() as u64).await;
    let cut = cut_held_publish(&redis);
    let (published, _control) = tokio::join!(a.publish("news", Event::data("cut").into()), cut);
    let err = published.unwrap_err();
    assert!(err.is_outcome_unknown(), "{err:?}");
    raw.unpause().await;

    publish_data(&a, "news", "after").await;
    assert_eq!(
        raw.bodies("news").await,
        ["data: before\n\n", "data: after\n\n"]
    );
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_keyed_publish_whose_connection_dropped_is_sent_again_once_and_stored_once() {
    let redis = RedisServer::start();
    let a = node(&redis, HOUR);
    publish_data(&a, "news", "before").await;

    // As above, but with an idempotency key: running it twice stores it once, so it is sent
    // again, on a new connection. The first was cut before it ran; the second runs once
    // writes resume.
    let mut raw = redis.raw().await;
    raw.pause_writes(GUARD.as_millis() as u64).await;
    let cut_then_resume = async {
        cut_held_publish(&redis).await.unpause().await;
    };
    let keyed = Publish::new(Event::data("cut")).idempotency_key("cut-1");
    let (published, ()) = tokio::join!(a.publish("news", keyed.clone()), cut_then_resume);
    let published = published.unwrap();
    assert!(!published.is_duplicate());

    // Its retry is a duplicate, and the stream holds it once.
    let retry = a.publish("news", keyed).await.unwrap();
    assert_eq!((retry.id(), retry.is_duplicate()), (published.id(), true));
    assert_eq!(
        raw.bodies("news").await,
        ["data: before\n\n", "data: cut\n\n"]
    );
}

/// Cuts the connection of a publish that reached Redis and is held there unrun (by `CLIENT
/// PAUSE WRITE`), once it arrives; returns the control connection it used.
async fn cut_held_publish(redis: &RedisServer) -> support::redis_server::Raw {
    let mut control = redis.raw().await;
    tokio::time::timeout(GUARD, async {
        while control.kill_clients_blocked_in("evalsha").await == 0 {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .expect("the publish reaches Redis");
    control
}

/// Waits until `count` connections are blocked in `XREAD` (`CLIENT LIST`'s `flags=` has `b`):
/// each idle node's reader, waiting for a topic, with a read pending on its connection.
async fn until_readers_blocked(raw: &mut support::redis_server::Raw, count: usize) {
    tokio::time::timeout(GUARD, async {
        while raw.count_clients_blocked_in("xread").await != count {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .expect("the idle readers block in XREAD within the guard time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_node_without_subscribers_sees_a_quick_restart_and_its_next_unkeyed_publish_succeeds() {
    // Redis is killed and started again on the same port, with nothing to be read on the node:
    // its reader's pending read fails as Redis's connections close, so the node knows of the
    // restart before any command, and it brings its command connection back by itself. Health
    // says ok again only once it has, and then the first publish without a key goes on the new
    // connection: accepted on its first try, stored once. Twice: once waiting for health to be
    // ok, once publishing straight away (whatever health says, the publish checks the command
    // connection first while the failure is on record).
    let mut redis = RedisServer::start();
    let server = Server::start(config(&redis)).await;
    let mut expected = vec![server.publish("news", "before").await];
    for wait_for_health in [true, false] {
        let mut raw = redis.raw().await;
        until_readers_blocked(&mut raw, 1).await;
        drop(raw);
        redis.restart();
        if wait_for_health {
            server.until_health(true).await;
        }
        let data = format!("after restart {}", expected.len());
        let id = server
            .try_publish("news", &data)
            .await
            .unwrap_or_else(|(status, body)| {
                panic!("the first publish after the restart answered {status}: {body}")
            });
        expected.push(id);
        // Health agrees with the command that just succeeded.
        server.until_health(true).await;
    }
    let mut raw = redis.raw().await;
    assert_eq!(raw.ids("news").await, expected, "each publish stored once");
    assert_eq!(
        raw.bodies("news").await,
        [
            "data: before\n\n",
            "data: after restart 1\n\n",
            "data: after restart 2\n\n"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_node_without_subscribers_that_saw_redis_go_answers_its_first_unkeyed_publish_503() {
    // The node's reader has a read pending, which fails as Redis goes: the node knows before
    // any command. Its first publish without a key is then not sent until the command
    // connection answers, and it does not: `503`, not stored, rather than `504` (a publish
    // handed to the connection Redis closed, which might have been written before).
    let mut redis = RedisServer::start();
    let server = Server::start(config(&redis)).await;
    let before = server.publish("news", "before").await;
    let mut raw = redis.raw().await;
    until_readers_blocked(&mut raw, 1).await;
    drop(raw);

    redis.stop();
    server.until_health(false).await;
    let (status, body) = server
        .try_publish("news", "while down")
        .await
        .expect_err("no publish while Redis is down");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unavailable"), "{body:?}");

    redis.restart();
    server.until_health(true).await;
    let after = server.publish("news", "after").await;
    let mut raw = redis.raw().await;
    assert_eq!(
        raw.ids("news").await,
        [before, after],
        "nothing else stored"
    );
}

/// Runs one command on `redis` on a connection of its own (so that Redis's `timeout` never
/// finds it idle) and returns the reply.
async fn redis_cmd(redis: &RedisServer, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// The `CLIENT LIST` lines of `redis`'s connections but the one that asks.
async fn clients(redis: &RedisServer) -> Vec<String> {
    redis.raw().await.other_clients().await
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_command_connection_that_redis_closed_while_idle_is_replaced_before_an_unkeyed_publish() {
    // Redis closes connections idle for a second (`timeout 1`, as hosted Redis often does; a
    // NAT's idle timeout does the same). The reader's blocking read is not idle; the command
    // connection is, between publishes.
    let redis = RedisServer::start();
    redis_cmd(&redis, &["CONFIG", "SET", "timeout", "1"]).await;
    let a = node(&redis, HOUR);
    let mut published = vec![publish_data(&a, "news", "warm").await];
    for round in 0..2 {
        // Until Redis has closed the command connection: only the reader's is left.
        tokio::time::timeout(GUARD, async {
            loop {
                let left = clients(&redis).await;
                if left.len() == 1 && left[0].contains("cmd=xread") {
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await
        .expect("Redis closes the idle command connection");
        assert_eq!(a.health(), Health::Ok);

        // The publish is not handed to the closed connection (its outcome would be unknown):
        // a `PING` finds it closed first, and the publish goes on a new one, on the first try.
        let event = a
            .publish("news", Event::data(format!("unkeyed {round}")).into())
            .await
            .unwrap_or_else(|err| panic!("round {round}: {err:?}"));
        assert!(!event.is_duplicate());
        published.push(event.into_event());
        assert_eq!(a.health(), Health::Ok);
    }
    let mut raw = redis.raw().await;
    assert_eq!(
        raw.bodies("news").await,
        [
            "data: warm\n\n",
            "data: unkeyed 0\n\n",
            "data: unkeyed 1\n\n"
        ],
        "each publish stored once"
    );
    let ids: Vec<&str> = published.iter().map(id_of).collect();
    assert_eq!(raw.ids("news").await, ids);
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_redis_out_of_memory_refuses_publishes_with_503_and_health_stays_ok() {
    // Redis answers every write with `OOM`: reachable and answering, so `/health` stays ok
    // (no flapping with the reader's reads); each publish answers 503, stored nothing, and
    // says why in words of its own, never Redis's.
    let redis = RedisServer::start();
    let server = Server::start(config(&redis)).await;
    let first = server.publish("news", "warm").await;
    redis_cmd(&redis, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await;
    redis_cmd(&redis, &["CONFIG", "SET", "maxmemory", "1"]).await;
    for n in 0..3 {
        let (status, body) = server
            .try_publish("news", &format!("refused {n}"))
            .await
            .unwrap_err();
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("out of memory") && body.contains("nothing was done"),
            "{body}"
        );
        assert!(
            !body.contains("OOM") && !body.contains("maxmemory") && !body.contains("Redis"),
            "{body}"
        );
        assert_eq!(server.hub.health(), Health::Ok, "after refused publish {n}");
    }
    redis_cmd(&redis, &["CONFIG", "SET", "maxmemory", "0"]).await;
    let last = server.publish("news", "after").await;
    assert_eq!(redis.raw().await.ids("news").await, [first, last]);
    assert_eq!(server.hub.health(), Health::Ok);
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_frozen_redis_shows_in_the_health_of_an_idle_node_within_the_readers_timeout() {
    // Nothing is published or subscribed: only the reader's blocking read can notice. It gets
    // no answer within its block time plus the command timeout (1 s + 2 s), the same bound a
    // command would meet.
    let redis = RedisServer::start();
    let a = node(&redis, HOUR);
    publish_data(&a, "news", "warm").await;
    redis.freeze();
    let frozen = tokio::time::Instant::now();
    let why = loop {
        if let Health::Unavailable(why) = a.health() {
            break why;
        }
        assert!(
            frozen.elapsed() < Duration::from_millis(4500),
            "the health said ok for 4.5 s of a frozen Redis"
        );
        tokio::time::sleep(POLL).await;
    };
    assert!(why.contains("timed out"), "{why}");
    redis.thaw();
    tokio::time::timeout(GUARD, async {
        while a.health() != Health::Ok {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .expect("the health is ok again once Redis runs");
}

/// The Redis user the README and the `RedisBackend` docs give: the least privilege the backend
/// needs.
const DOCUMENTED_ACL: &[&str] = &[
    "~tower-sse:*",
    "+@read",
    "+@write",
    "+@scripting",
    "+ping",
    "+time",
    "+client|id",
    "+client|unblock",
];

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn the_documented_least_privilege_redis_user_publishes_subscribes_and_delivers_live() {
    let redis = RedisServer::start();
    let user = |name: &str, without_client: bool| {
        let mut args = vec!["SETUSER", name, "reset", "on", ">p"];
        args.extend(
            DOCUMENTED_ACL
                .iter()
                .filter(|rule| !(without_client && rule.starts_with("+client"))),
        );
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let url = |name: &str| {
        redis
            .url()
            .replace("redis://", &format!("redis://{name}:p@"))
    };
    for (name, without_client) in [("hub", false), ("no-client", true)] {
        let args = user(name, without_client);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        acl(&redis, &args).await;
    }
    // `hub` has exactly the documented rules; `no-client` lacks the two `CLIENT` commands,
    // which only wake the reader: it works too, a new topic being read within the block time.
    let b = Server::start(config(&redis)).await;
    for name in ["hub", "no-client"] {
        let a = Server::start(Config {
            redis_url: Some(url(name)),
            ..config(&redis)
        })
        .await;
        let topic = format!("news-{name}");
        let first = a.publish(&topic, "first").await;
        let mut reader = a.subscribe(&topic, Some(&first)).await;
        a.until_open(1).await;
        let live = b.publish(&topic, "live").await;
        let event = tokio::time::timeout(GUARD, reader.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: no live event"))
            .unwrap_or_else(|| panic!("{name}: the stream ended"));
        assert_eq!(
            (event.last_event_id.as_str(), event.data.as_str()),
            (live.as_str(), "live")
        );
        // Replay on a subscribe, and a close.
        let mut replay = a.subscribe(&topic, Some(&first)).await;
        let event = replay.next().await.expect("replay");
        assert_eq!(event.last_event_id, live, "{name}");
        assert_eq!(a.hub.health(), Health::Ok, "{name}");
        let response = a
            .client
            .post(a.url(&format!("/close/{topic}")))
            .header("authorization", support::hub::bearer(&a.token))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{name}: {response:?}");
        assert_eq!(a.hub.health(), Health::Ok, "{name}");
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn a_close_that_got_no_answer_is_outcome_unknown_and_safe_to_retry() {
    let redis = RedisServer::start();
    let a = node(&redis, HOUR);
    publish_data(&a, "news", "before").await;
    redis.freeze();
    let err = a.close("news", Event::data("end")).await.unwrap_err();
    assert!(err.is_outcome_unknown(), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("retrying it is safe"), "{shown}");
    assert!(!shown.contains("nothing was done"), "{shown}");
    redis.thaw();
    // It ran once Redis did; the retry closes nothing more and answers the same final event.
    let retried = tokio::time::timeout(GUARD, async {
        loop {
            match a.close("news", Event::data("end")).await {
                Ok(end) => return end,
                Err(err) if err.is_unavailable() => tokio::time::sleep(POLL).await,
                Err(err) => panic!("{err:?}"),
            }
        }
    })
    .await
    .unwrap();
    let mut raw = redis.raw().await;
    assert_eq!(
        raw.ids("news").await.len(),
        2,
        "one event and one close marker"
    );
    assert_eq!(retried.data_str().as_deref(), Some("end"));
}
