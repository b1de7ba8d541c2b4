//! The Redis Streams backend end to end: hub servers of `examples/hub.rs` on `127.0.0.1:0`
//! sharing a real `redis-server` that each test starts on a free port with a temporary
//! directory (`support::redis_server`), driven by a real HTTP client and read with the WHATWG
//! parser. Without `redis-server` the tests are skipped, except under `CI=true`.
//!
//! Nothing here sleeps to synchronise: tests wait on the streams themselves, on presence
//! notices, or poll `hub.health()` between short pauses under a guard while an external
//! process reconnects. The one real-time sleep is the age bound's second.
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
use support::client::{EventReader, GUARD};
use support::hub::{App, Config, Server};
use support::redis_server::RedisServer;
use support::whatwg::{Item, ParsedEvent, Parser};
use tower_sse::backend::Health;
use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};

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

    /// Waits until the hub's health is `Ok` (`up`) or `Unavailable` (`!up`), polling it.
    async fn until_health(&self, up: bool) -> Health {
        let wanted = |health: &Health| matches!(health, Health::Ok) == up;
        let polled = tokio::time::timeout(GUARD, async {
            loop {
                let health = self.hub.health();
                if wanted(&health) {
                    return health;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        polled.unwrap_or_else(|_| {
            panic!(
                "health is still {:?} after the guard time",
                self.hub.health()
            )
        })
    }
}

/// The pause between two looks at something another process changes (never a way to wait).
const POLL: Duration = Duration::from_millis(10);

fn config(redis: &RedisServer) -> Config {
    Config {
        addr: "127.0.0.1:0".to_owned(),
        redis_url: Some(redis.url()),
        ..Config::default()
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
async fn event_published_on_either_server_reaches_subscribers_on_both_once_in_the_same_order() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
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
async fn client_that_read_up_to_an_id_on_one_server_resumes_on_the_other_with_exactly_the_rest() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
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
async fn replay_after_an_old_id_is_exact_after_both_servers_restart() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
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
async fn redis_outage_gives_clear_publish_errors_keeps_streams_up_and_loses_nothing() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
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

    // Publishing fails, clearly, on either server and through the hub itself.
    for server in [&a, &b] {
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
async fn subscribe_while_redis_is_down_ends_with_a_retry_hint_and_resumes_once_it_is_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
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
async fn health_tells_whether_redis_is_reachable_even_on_an_idle_hub() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
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
async fn subscribers_opening_while_events_are_published_get_each_event_once_in_order() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
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
        subscribers.push(tokio::spawn(async move {
            let mut reader = server.subscribe("busy", last.as_deref()).await;
            let mut received = Vec::new();
            loop {
                let event = reader.next().await.expect("the stream stays open");
                assert_eq!(event.event_type, "message", "{event:?}");
                if event.data == "end" {
                    return (last, received);
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
        let (last, received) = subscriber.await.unwrap();
        match last {
            // Exactly everything after its id.
            Some(last) => {
                let after = all.iter().position(|id| *id == last).unwrap() + 1;
                assert_eq!(received, all[after..], "resumed after {last}");
            }
            // Live from some point on, then every event: a suffix, no hole, no repeat.
            None => assert!(all.ends_with(&received), "{received:?}"),
        }
    }
}

#[tokio::test]
async fn trimming_by_count_shows_in_xlen_and_an_id_older_than_the_trim_gets_an_evicted_gap() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
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
async fn trimming_by_age_shows_in_xrange_and_an_id_older_than_the_trim_gets_an_evicted_gap() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
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
async fn subscribers_never_silently_miss_entries_trimmed_before_their_server_read_them() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // A bound of 5 trims on every publish past it.
    let config = Config {
        history: 5,
        ..config(&redis)
    };
    let a = Server::start(config.clone()).await;
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

    // Server A's reader loses its connection (A publishes nothing, so it is the only client
    // blocked in XREAD) and waits before reconnecting: meanwhile B publishes past the bound, so
    // entries are trimmed before A has read them.
    let mut raw = redis.raw().await;
    assert_eq!(raw.kill_clients_running("xread").await, 1);
    for n in 3..10 {
        accepted.push(b.publish("feed", &format!("event {n}")).await);
    }
    let last = b.publish("feed", "last").await;
    accepted.push(last.clone());

    for browser in &mut browsers {
        browser.until(&last).await;
        browser.assert_nothing_missed_silently(&accepted);
    }
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
async fn id_ahead_of_the_stream_gets_an_unknown_gap() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
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
async fn id_that_is_not_a_stream_id_gets_a_malformed_gap() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
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
    App { router, sse, hub }
}
