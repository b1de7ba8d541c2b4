//! The poller on the virtual clock: lifecycle, sharing, the interval's floor, backoff, `error`
//! events, reconnects, and (a property test) that a client applying the events sees exactly
//! each upstream state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

use super::diff_tests::{edited, edits};
use super::{Poller, Source};
use crate::backend::{
    Backend, Error as BackendError, MemoryBackend, Opened, Publish, Published, ReplayOptions,
    Start, TopicInfo,
};
use crate::{Event, Hub, LastEventId, Subscription};

/// A function source that answers what a test says, and counts when it was polled.
#[derive(Clone)]
struct Script {
    state: Arc<Mutex<ScriptState>>,
}

type Answer = Box<dyn FnMut(usize) -> Result<Value, String> + Send>;

struct ScriptState {
    answer: Answer,
    polls: Vec<Instant>,
}

impl Script {
    /// Answers `answer(n)` to the `n`th poll (from 0).
    fn new(answer: impl FnMut(usize) -> Result<Value, String> + Send + 'static) -> Script {
        Script {
            state: Arc::new(Mutex::new(ScriptState {
                answer: Box::new(answer),
                polls: Vec::new(),
            })),
        }
    }

    /// [`counted`]`(n)` on the `n`th poll: a change every time.
    fn counting() -> Script {
        Script::new(|n| Ok(counted(n)))
    }

    fn source(&self, key: &str) -> Source {
        let script = self.clone();
        Source::from_fn(key, move || {
            let answer = {
                let mut state = script.state.lock().unwrap();
                let n = state.polls.len();
                state.polls.push(Instant::now());
                (state.answer)(n)
            };
            async move { answer }
        })
        .interval(Duration::from_secs(1))
    }

    fn polls(&self) -> usize {
        self.state.lock().unwrap().polls.len()
    }

    /// The time between each poll and the next.
    fn gaps(&self) -> Vec<Duration> {
        let polls = self.state.lock().unwrap().polls.clone();
        polls.windows(2).map(|pair| pair[1] - pair[0]).collect()
    }
}

/// A value with a count `n`, larger than a patch of its count (a value no larger than its
/// patch is published whole, as a `snapshot`).
fn counted(n: usize) -> Value {
    json!({ "n": n, "unit": "polls of a source that changes on every one" })
}

fn poller(hub: Hub) -> Poller {
    Poller::builder()
        .min_interval(Duration::from_secs(1))
        .idle_grace(Duration::from_secs(5))
        .max_backoff(Duration::from_secs(8))
        .build(hub)
}

/// The next event, within an hour of the virtual clock.
async fn next(subscription: &mut Subscription) -> Event {
    timeout(Duration::from_secs(3600), subscription.next())
        .await
        .expect("an event within an hour")
        .expect("the stream goes on")
}

fn data(event: &Event) -> Value {
    serde_json::from_str(&event.data_str().unwrap()).unwrap()
}

/// What a page does with the events: its state, and the last event id it saw.
#[derive(Debug, Default)]
struct Client {
    state: Option<Value>,
    last_id: Option<String>,
}

impl Client {
    fn apply(&mut self, event: &Event) {
        match event.name() {
            Some("snapshot") => self.state = Some(data(event)),
            Some("patch") => {
                let patch: json_patch::Patch = serde_json::from_value(data(event)).unwrap();
                let state = self.state.as_mut().expect("a patch after a snapshot");
                json_patch::patch(state, &patch).unwrap();
            }
            Some("error") => {}
            other => panic!("unexpected event {other:?}: {event:?}"),
        }
        if let Some(id) = event.id() {
            self.last_id = Some(id.to_owned());
        }
    }

    fn last_id(&self) -> LastEventId {
        LastEventId::new(self.last_id.clone().expect("an id seen")).unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn a_poller_starts_with_its_first_subscriber_and_stops_after_its_last() {
    let poller = poller(Hub::memory());
    let script = Script::counting();
    sleep(Duration::from_secs(10)).await;
    assert_eq!((poller.running(), script.polls()), (0, 0));

    let mut first = poller
        .subscribe(script.source("board"), None)
        .await
        .unwrap();
    assert_eq!(poller.running(), 1);
    let snapshot = next(&mut first).await;
    assert_eq!(snapshot.name(), Some("snapshot"));
    assert_eq!(data(&snapshot), counted(0));
    assert_eq!(script.polls(), 1);

    // A second subscriber shares it, and starts from the current value.
    let mut second = poller
        .subscribe(script.source("board"), None)
        .await
        .unwrap();
    assert_eq!(poller.running(), 1);
    assert_eq!(next(&mut second).await.name(), Some("snapshot"));

    drop((first, second));
    sleep(Duration::from_secs(4)).await;
    assert_eq!(poller.running(), 1, "within the idle grace");
    sleep(Duration::from_secs(3)).await;
    assert_eq!(poller.running(), 0, "stopped after the idle grace");
    let polls = script.polls();
    sleep(Duration::from_secs(60)).await;
    assert_eq!(script.polls(), polls, "no poll once stopped");

    // The next subscriber starts it again, with a snapshot of the value then.
    let mut again = poller
        .subscribe(script.source("board"), None)
        .await
        .unwrap();
    let snapshot = next(&mut again).await;
    assert_eq!(snapshot.name(), Some("snapshot"));
    assert_eq!(data(&snapshot), counted(polls));
}

#[tokio::test(start_paused = true)]
async fn a_hundred_subscribers_share_one_poll_per_interval() {
    let poller = poller(Hub::memory());
    let script = Script::counting();
    let mut subscribers = Vec::new();
    for _ in 0..100 {
        subscribers.push(
            poller
                .subscribe(script.source("board"), None)
                .await
                .unwrap(),
        );
    }
    assert_eq!(poller.running(), 1);
    let started = Instant::now();
    for n in 0..5 {
        let mut seen = Vec::new();
        for subscriber in &mut subscribers {
            let event = next(subscriber).await;
            seen.push((
                event.name().map(str::to_owned),
                event.data_str().unwrap().into_owned(),
            ));
        }
        assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{seen:?}");
        assert_eq!(script.polls(), n + 1, "one poll for every subscriber");
    }
    assert_eq!(started.elapsed(), Duration::from_secs(4));
    assert!(
        script
            .gaps()
            .iter()
            .all(|gap| *gap == Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn the_interval_has_a_floor() {
    let poller = poller(Hub::memory());
    let script = Script::counting();
    let source = script.source("fast").interval(Duration::from_millis(1));
    let _subscription = poller.subscribe(source, None).await.unwrap();
    sleep(Duration::from_millis(5500)).await;
    assert_eq!(script.polls(), 6);
    assert_eq!(script.gaps(), vec![Duration::from_secs(1); 5]);
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_and_are_one_safe_error_event() {
    let poller = poller(Hub::memory());
    let script = Script::new(|n| {
        if n < 4 {
            Err("connect 10.1.2.3:8080: <html>internal secret</html>".to_owned())
        } else {
            Ok(counted(n))
        }
    });
    let mut subscription = poller
        .subscribe(script.source("flaky"), None)
        .await
        .unwrap();
    let error = next(&mut subscription).await;
    assert_eq!(error.name(), Some("error"));
    assert_eq!(
        data(&error),
        json!({"message": "the source failed", "retry_ms": 2000})
    );

    // A subscriber that comes during the outage hears of it at once.
    sleep(Duration::from_secs(3)).await;
    let mut late = poller
        .subscribe(script.source("flaky"), None)
        .await
        .unwrap();
    assert_eq!(next(&mut late).await.without_id(), error.without_id());

    // Polls at 0, 2, 6, 14 s (interval × 2, 4, 8), then at most 8 s apart: the next at 22 s
    // answers, and the streams, still open, get the value.
    let snapshot = next(&mut subscription).await;
    assert_eq!(
        snapshot.name(),
        Some("snapshot"),
        "one error event per outage"
    );
    assert_eq!(data(&snapshot), counted(4));
    assert_eq!(next(&mut late).await.name(), Some("snapshot"));
    assert_eq!(
        script.gaps(),
        [2, 4, 8, 8].map(Duration::from_secs).to_vec()
    );
    // Back to the interval.
    assert_eq!(next(&mut subscription).await.name(), Some("patch"));
    assert_eq!(script.gaps().last(), Some(&Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn a_source_that_hangs_times_out() {
    let poller = Poller::builder()
        .min_interval(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .build(Hub::memory());
    let source = Source::from_fn("stuck", std::future::pending::<Result<Value, String>>);
    let mut subscription = poller.subscribe(source, None).await.unwrap();
    let started = Instant::now();
    let error = next(&mut subscription).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(error.name(), Some("error"));
    assert_eq!(
        data(&error)["message"],
        "the upstream did not answer in time"
    );
}

#[tokio::test(start_paused = true)]
async fn recovery_with_the_same_value_is_an_empty_patch() {
    let poller = poller(Hub::memory());
    let script = Script::new(|n| match n {
        1 => Err("down".to_owned()),
        _ => Ok(json!({"same": true})),
    });
    let mut subscription = poller.subscribe(script.source("same"), None).await.unwrap();
    let mut client = Client::default();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = next(&mut subscription).await;
        client.apply(&event);
        seen.push((event.name().unwrap().to_owned(), data(&event)));
    }
    assert_eq!(seen[0], ("snapshot".to_owned(), json!({"same": true})));
    assert_eq!(seen[1].0, "error");
    assert_eq!(seen[2], ("patch".to_owned(), json!([])));
    assert_eq!(client.state, Some(json!({"same": true})));
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_value_publishes_nothing() {
    let hub = Hub::memory();
    let poller = poller(hub.clone());
    let script = Script::new(|_| Ok(json!({"still": "the same"})));
    let source = script.source("unchanged");
    let topic = poller.topic(&source);
    let mut subscription = poller.subscribe(source, None).await.unwrap();
    assert_eq!(next(&mut subscription).await.name(), Some("snapshot"));
    sleep(Duration::from_millis(9500)).await;
    assert_eq!(script.polls(), 10);
    let info = hub.topic_info(&topic).await.unwrap().unwrap();
    assert_eq!(info.retained_events, 1, "the snapshot only");
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_gets_the_patches_it_missed() {
    let poller = poller(Hub::memory());
    let script = Script::counting();
    let mut watcher = poller
        .subscribe(script.source("board"), None)
        .await
        .unwrap();
    let mut watching = Client::default();
    let mut leaving = Client::default();
    let mut away = poller
        .subscribe(script.source("board"), None)
        .await
        .unwrap();
    for _ in 0..2 {
        watching.apply(&next(&mut watcher).await);
        leaving.apply(&next(&mut away).await);
    }
    drop(away);
    for _ in 0..3 {
        watching.apply(&next(&mut watcher).await);
    }
    let mut back = poller
        .subscribe(script.source("board"), Some(leaving.last_id()))
        .await
        .unwrap();
    for _ in 0..3 {
        let event = next(&mut back).await;
        assert_eq!(event.name(), Some("patch"), "{event:?}");
        leaving.apply(&event);
    }
    assert_eq!(leaving.state, watching.state);
    assert_eq!(leaving.state, Some(counted(4)));
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_whose_patches_are_gone_gets_a_snapshot() {
    let poller = poller(Hub::builder().history_events(2).memory());
    let script = Script::counting();
    let mut watcher = poller
        .subscribe(script.source("board"), None)
        .await
        .unwrap();
    let mut watching = Client::default();
    watching.apply(&next(&mut watcher).await);
    let gone = watching.last_id();
    for _ in 0..5 {
        watching.apply(&next(&mut watcher).await);
    }
    let mut back = poller
        .subscribe(script.source("board"), Some(gone))
        .await
        .unwrap();
    let event = next(&mut back).await;
    assert_eq!(event.name(), Some("snapshot"));
    assert_eq!(Some(data(&event)), watching.state);
    assert_eq!(event.id(), watching.last_id.as_deref());
    // Then live, exactly after it.
    let mut client = Client::default();
    client.apply(&event);
    watching.apply(&next(&mut watcher).await);
    client.apply(&next(&mut back).await);
    assert_eq!(client.state, watching.state);
}

#[tokio::test(start_paused = true)]
async fn ids_that_are_not_the_pollers_get_a_snapshot_never_a_gap() {
    let poller = poller(Hub::memory());
    let script = Script::counting();
    let mut watcher = poller
        .subscribe(script.source("board"), None)
        .await
        .unwrap();
    next(&mut watcher).await;
    for id in ["nonsense", "0123456789ab-5", "whatever:end"] {
        let last = LastEventId::new(id).unwrap();
        let mut subscription = poller
            .subscribe(script.source("board"), Some(last))
            .await
            .unwrap();
        assert!(!subscription.is_ended(), "{id}");
        let event = next(&mut subscription).await;
        assert_eq!(event.name(), Some("snapshot"), "{id}: {event:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn rows_inserted_at_the_head_are_one_add_with_an_array_key() {
    let poller = poller(Hub::memory());
    let script = Script::new(|n| {
        let rows: Vec<Value> = (0..=n + 3)
            .rev()
            .map(|id| json!({"id": id, "gate": "A1"}))
            .collect();
        Ok(json!({ "rows": rows }))
    });
    let source = script.source("rows").array_key("id");
    let mut subscription = poller.subscribe(source, None).await.unwrap();
    assert_eq!(next(&mut subscription).await.name(), Some("snapshot"));
    for n in 4..7 {
        let patch = next(&mut subscription).await;
        assert_eq!(
            data(&patch),
            json!([{"op": "add", "path": "/rows/0", "value": {"id": n, "gate": "A1"}}])
        );
    }
}

#[tokio::test(start_paused = true)]
async fn sources_differ_by_key_interval_and_array_key() {
    let poller = poller(Hub::memory());
    let script = Script::counting();
    let sources = [
        script.source("a"),
        script.source("b"),
        script.source("a").interval(Duration::from_secs(2)),
        script.source("a").array_key("id"),
    ];
    let topics: std::collections::HashSet<String> =
        sources.iter().map(|source| poller.topic(source)).collect();
    assert_eq!(topics.len(), 4);
    let mut subscriptions = Vec::new();
    for source in sources {
        subscriptions.push(poller.subscribe(source, None).await.unwrap());
    }
    assert_eq!(poller.running(), 4);
    // The floor makes these two one source.
    let floor = script.source("a").interval(Duration::from_millis(10));
    assert_eq!(poller.topic(&floor), poller.topic(&script.source("a")));
}

/// The distinct states one after the other, as a client should see them.
fn changes(states: &[Value]) -> Vec<Value> {
    let mut changes: Vec<Value> = Vec::new();
    for state in states {
        if changes.last() != Some(state) {
            changes.push(state.clone());
        }
    }
    changes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random documents and random edit sequences: a client that applies the snapshot and then
    /// every patch has exactly each upstream state, by position and by key.
    #[test]
    fn the_snapshot_and_every_patch_give_each_upstream_state(
        (rows, edits) in edits(),
        keyed in any::<bool>(),
    ) {
        let states = edited(rows, &edits);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let seen = runtime.block_on(async {
            let poller = poller(Hub::memory());
            let answers = states.clone();
            let script = Script::new(move |n| Ok(answers[n.min(answers.len() - 1)].clone()));
            let mut source = script.source("edited");
            if keyed {
                source = source.array_key("id");
            }
            let mut subscription = poller.subscribe(source, None).await.unwrap();
            let mut client = Client::default();
            let mut seen = Vec::new();
            for _ in 0..changes(&states).len() {
                client.apply(&next(&mut subscription).await);
                seen.push(client.state.clone().unwrap());
            }
            seen
        });
        prop_assert_eq!(seen, changes(&states));
    }
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_at_the_end_of_the_idle_grace_is_served() {
    for after in [4_990, 5_000, 5_010].map(Duration::from_millis) {
        let poller = poller(Hub::memory());
        let script = Script::counting();
        drop(
            poller
                .subscribe(script.source("board"), None)
                .await
                .unwrap(),
        );
        sleep(after).await;
        let mut late = poller
            .subscribe(script.source("board"), None)
            .await
            .unwrap();
        assert_eq!(next(&mut late).await.name(), Some("snapshot"), "{after:?}");
        assert_eq!(
            next(&mut late).await.name(),
            Some("patch"),
            "{after:?}: polled"
        );
        assert_eq!(poller.running(), 1);
    }
}

/// A memory backend with hooks: publishes that are stored but answered `outcome_unknown` (as
/// Redis's are on a timeout after `XADD`), and gates that hold resumes and `topic_info`.
#[derive(Default)]
struct Hooked {
    inner: MemoryBackend,
    /// The publishes (counted from 0) to answer `outcome_unknown`, once stored.
    unknown: Vec<usize>,
    published: AtomicUsize,
    /// Holds every `open` after a `Last-Event-ID` until it says `true`.
    resumes: Option<watch::Receiver<bool>>,
    /// Holds every `topic_info` until it says `true`.
    info: Option<watch::Receiver<bool>>,
}

async fn gate(gate: &Option<watch::Receiver<bool>>) {
    if let Some(gate) = gate {
        gate.clone().wait_for(|open| *open).await.unwrap();
    }
}

impl Backend for Hooked {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        publish: Publish,
    ) -> BoxFuture<'a, Result<Published, BackendError>> {
        Box::pin(async move {
            let published = self.inner.publish(topic, publish).await?;
            if self
                .unknown
                .contains(&self.published.fetch_add(1, Ordering::SeqCst))
            {
                return Err(BackendError::outcome_unknown(std::io::Error::other(
                    "timed out after the write",
                )));
            }
            Ok(published)
        })
    }

    fn open<'a>(
        &'a self,
        topic: &'a str,
        start: &'a Start,
        options: &'a ReplayOptions,
    ) -> BoxFuture<'a, Result<Opened, BackendError>> {
        Box::pin(async move {
            if matches!(start, Start::After(_)) {
                gate(&self.resumes).await;
            }
            self.inner.open(topic, start, options).await
        })
    }

    fn close<'a>(
        &'a self,
        topic: &'a str,
        end: Event,
    ) -> BoxFuture<'a, Result<Event, BackendError>> {
        self.inner.close(topic, end)
    }

    fn topic_info<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicInfo>, BackendError>> {
        Box::pin(async move {
            gate(&self.info).await;
            self.inner.topic_info(topic).await
        })
    }

    fn wait_idle<'a>(
        &'a self,
        topic: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        self.inner.wait_idle(topic, grace)
    }
}

/// Rows `0..=n`, each with a name: a value a patch of one more row is smaller than.
fn rows(n: usize) -> Value {
    let rows: Vec<Value> = (0..=n)
        .map(|id| json!({"id": id, "name": format!("row number {id}")}))
        .collect();
    json!({ "rows": rows })
}

#[tokio::test(start_paused = true)]
async fn a_publish_of_unknown_outcome_is_followed_by_a_snapshot_not_a_patch() {
    // The third publish (the second patch) is stored and sent, but the backend says it may not
    // have been: patching from the value before it would add its row twice.
    let hub = Hub::builder().backend(Hooked {
        unknown: vec![2],
        ..Hooked::default()
    });
    let poller = poller(hub);
    let script = Script::new(|n| Ok(rows(n)));
    let source = script.source("rows").array_key("id");
    let mut subscription = poller.subscribe(source, None).await.unwrap();
    let mut client = Client::default();
    let mut seen = Vec::new();
    for _ in 0..6 {
        let event = next(&mut subscription).await;
        client.apply(&event);
        seen.push(event.name().unwrap().to_owned());
        if event.name() != Some("error") {
            assert_eq!(client.state.as_ref(), Some(&rows(script.polls() - 1)));
        }
    }
    assert_eq!(
        seen,
        ["snapshot", "patch", "patch", "error", "snapshot", "patch"]
    );
    assert_eq!(client.state, Some(rows(4)));
}

#[tokio::test(start_paused = true)]
async fn a_patch_no_smaller_than_the_value_is_a_snapshot() {
    // 300 zeros, then 300 ones: 300 replaces, far larger than the value, and than the hub's
    // limit on one event.
    let hub = Hub::builder().max_event_bytes(4096).memory();
    let poller = poller(hub);
    let script = Script::new(|n| Ok(Value::Array(vec![json!(n % 2); 300])));
    let mut subscription = poller.subscribe(script.source("big"), None).await.unwrap();
    let mut client = Client::default();
    for n in 0..4 {
        let event = next(&mut subscription).await;
        assert_eq!(event.name(), Some("snapshot"), "{n}");
        client.apply(&event);
        assert_eq!(client.state, Some(Value::Array(vec![json!(n % 2); 300])));
    }
    // A subscriber that comes now starts from the value now.
    let mut late = poller.subscribe(script.source("big"), None).await.unwrap();
    let snapshot = next(&mut late).await;
    assert_eq!(
        Some(data(&snapshot)),
        client.state,
        "not stuck on an old value"
    );
}

#[tokio::test(start_paused = true)]
async fn a_value_too_large_for_one_event_is_one_error_then_retried() {
    let hub = Hub::builder().max_event_bytes(4096).memory();
    let poller = poller(hub);
    // Small, then too large for any event twice, then small again.
    let script = Script::new(|n| {
        let size = if (1..3).contains(&n) { 5000 } else { 10 };
        Ok(json!({ "n": n, "text": "x".repeat(size) }))
    });
    let mut subscription = poller
        .subscribe(script.source("grows"), None)
        .await
        .unwrap();
    let mut client = Client::default();
    client.apply(&next(&mut subscription).await);
    let error = next(&mut subscription).await;
    assert_eq!(error.name(), Some("error"));
    assert_eq!(
        data(&error),
        json!({
            "message": "the value is larger than the hub accepts in one event",
            "retry_ms": 2000,
        })
    );
    // Polled again after 2 s (still too large: no second error), then after 4 s: the value,
    // whole, since subscribers may hold either of the older ones.
    let snapshot = next(&mut subscription).await;
    assert_eq!(snapshot.name(), Some("snapshot"));
    client.apply(&snapshot);
    assert_eq!(
        client.state,
        Some(json!({ "n": 3, "text": "x".repeat(10) }))
    );
    assert_eq!(script.gaps(), [1, 2, 4].map(Duration::from_secs).to_vec());
}

#[tokio::test(start_paused = true)]
async fn sources_over_max_sources_get_a_retry_hint_until_a_poller_stops() {
    let poller = Poller::builder()
        .min_interval(Duration::from_secs(1))
        .idle_grace(Duration::from_secs(5))
        .max_sources(2)
        .build(Hub::memory());
    let script = Script::counting();
    let first = poller.subscribe(script.source("a"), None).await.unwrap();
    let _second = poller.subscribe(script.source("b"), None).await.unwrap();
    // A running source still takes subscribers.
    let mut again = poller.subscribe(script.source("a"), None).await.unwrap();
    assert_eq!(next(&mut again).await.name(), Some("snapshot"));

    let mut refused = poller.subscribe(script.source("c"), None).await.unwrap();
    assert_eq!(poller.running(), 2, "no third poller");
    let notice = next(&mut refused).await;
    assert_eq!(
        notice.comments().collect::<Vec<_>>(),
        ["as many sources are polled as may be; try again later"]
    );
    let retry = next(&mut refused).await.retry_hint().expect("a retry hint");
    assert!(
        retry >= Duration::from_secs(5) && retry <= Duration::from_millis(7500),
        "{retry:?}"
    );
    assert!(refused.next().await.is_none(), "then the end");

    // Once a poller has stopped, the next source is polled.
    drop((first, again));
    sleep(Duration::from_secs(6)).await;
    assert_eq!(poller.running(), 1);
    let mut third = poller.subscribe(script.source("c"), None).await.unwrap();
    assert_eq!(next(&mut third).await.name(), Some("snapshot"));
    assert_eq!(poller.running(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_slow_resume_does_not_hold_up_publishes() {
    let (open, resumes) = watch::channel(false);
    let hub = Hub::builder().backend(Hooked {
        resumes: Some(resumes),
        ..Hooked::default()
    });
    let poller = poller(hub);
    let script = Script::counting();
    let mut watcher = poller
        .subscribe(script.source("board"), None)
        .await
        .unwrap();
    let mut client = Client::default();
    client.apply(&next(&mut watcher).await);
    // A reconnect whose replay is slow to come (a backend's round trip).
    let resuming = tokio::spawn({
        let (poller, source, last) = (poller.clone(), script.source("board"), client.last_id());
        async move { poller.subscribe(source, Some(last)).await.unwrap() }
    });
    tokio::task::yield_now().await;
    // Meanwhile, the changes go on.
    for _ in 0..3 {
        let event = next(&mut watcher).await;
        assert_eq!(event.name(), Some("patch"));
        client.apply(&event);
    }
    open.send(true).unwrap();
    let mut resumed = resuming.await.unwrap();
    for _ in 0..3 {
        assert_eq!(next(&mut resumed).await.name(), Some("patch"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_stopping_poller_publishes_nothing_once_a_new_one_runs() {
    // The hub is slow to say whether anyone listens, once the idle grace is over: long enough
    // for a new subscriber to start a new poller on the same topic.
    let (answer, info) = watch::channel(false);
    let hub = Hub::builder().backend(Hooked {
        info: Some(info),
        ..Hooked::default()
    });
    let poller = poller(hub);
    let script = Script::counting();
    drop(
        poller
            .subscribe(script.source("board"), None)
            .await
            .unwrap(),
    );
    sleep(Duration::from_millis(5500)).await;
    assert_eq!(
        poller.running(),
        0,
        "taken out, asking whether anyone listens"
    );

    let mut subscription = poller
        .subscribe(script.source("board"), None)
        .await
        .unwrap();
    assert_eq!(poller.running(), 1);
    let mut client = Client::default();
    let mut names = Vec::new();
    // Until between two polls (the new poller's are at 5.5, 6.5… s, the old one's at 6, 7… s).
    let until = Instant::now() + Duration::from_millis(3250);
    while let Ok(Some(event)) = tokio::time::timeout_at(until, subscription.next()).await {
        client.apply(&event);
        names.push(event.name().unwrap().to_owned());
    }
    // The new poller's snapshot and its patches, one a second: no second poller's.
    assert_eq!(names, ["snapshot", "patch", "patch", "patch"]);
    assert_eq!(client.state, Some(counted(script.polls() - 1)));
    answer.send(true).unwrap();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(poller.running(), 1);
}
