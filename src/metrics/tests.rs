//! What the crate records, read back from `metrics-util`'s `DebuggingRecorder`, installed as
//! the local recorder of a current-thread runtime on paused time (so everything the test runs,
//! spawned tasks included, records there, and durations are exact).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use http::request::Parts;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use crate::auth::{Action, Denied, Identity, Policy};
use crate::backend::Start;
use crate::testing::get_events;
use crate::{Event, Hub, HubError, LastEventId, Publish, SseLayer, Subscription};

/// A recorder for one test, and the totals of every snapshot taken of it (a snapshot resets
/// what it reads: counters and gauges add up across snapshots, histograms append).
struct Recording {
    recorder: DebuggingRecorder,
    snapshotter: Snapshotter,
    totals: Mutex<Totals>,
}

#[derive(Default)]
struct Totals {
    counters: HashMap<String, u64>,
    gauges: HashMap<String, f64>,
    histograms: HashMap<String, Vec<f64>>,
}

impl Recording {
    fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        Recording {
            snapshotter: recorder.snapshotter(),
            recorder,
            totals: Mutex::new(Totals::default()),
        }
    }

    /// Runs `future` to its end with this recorder, on paused time.
    fn run<T>(&self, future: impl Future<Output = T>) -> T {
        metrics::with_local_recorder(&self.recorder, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap()
                .block_on(future)
        })
    }

    /// The totals so far, by `name{label="value",…}` (labels sorted).
    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        let mut totals = self.totals.lock().unwrap();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|label| format!("{}=\"{}\"", label.key(), label.value()))
                .collect();
            labels.sort();
            let name = key.key().name();
            let name = match labels.is_empty() {
                true => name.to_owned(),
                false => format!("{name}{{{}}}", labels.join(",")),
            };
            match value {
                DebugValue::Counter(n) => *totals.counters.entry(name).or_default() += n,
                DebugValue::Gauge(v) => *totals.gauges.entry(name).or_default() += v.0,
                DebugValue::Histogram(values) => totals
                    .histograms
                    .entry(name)
                    .or_default()
                    .extend(values.into_iter().map(|v| v.0)),
            }
        }
        totals
    }

    fn counter(&self, name: &str) -> u64 {
        self.totals().counters.get(name).copied().unwrap_or(0)
    }

    fn gauge(&self, name: &str) -> f64 {
        self.totals().gauges.get(name).copied().unwrap_or(0.0)
    }

    fn histogram(&self, name: &str) -> Vec<f64> {
        self.totals()
            .histograms
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

async fn subscribe(
    State(hub): State<Hub>,
    Path(topic): Path<String>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    hub.subscribe(&topic, last).await
}

/// The hub behind `layer`, at `/events/{topic}`.
fn app(hub: &Hub, layer: SseLayer) -> Router {
    Router::new()
        .route("/events/{topic}", get(subscribe))
        .layer(layer.registry(hub.registry()))
        .with_state(hub.clone())
}

#[test]
fn a_stream_counts_as_accepted_and_active_its_events_and_bytes_as_sent_then_its_end() {
    let rec = Recording::new();
    rec.run(async {
        let hub = Hub::memory();
        let mut app = app(&hub, SseLayer::new());
        let mut response = get_events(&mut app, "/events/news").send().await.unwrap();
        assert_eq!(
            rec.counter("sse_connections_total{outcome=\"accepted\"}"),
            1
        );
        assert_eq!(rec.gauge("sse_connections_active"), 1.0);

        hub.publish("news", Event::data("one")).await.unwrap();
        hub.publish("news", Event::data("two")).await.unwrap();
        response.body_mut().take(2).await.unwrap();
        let sent = hub.registry().snapshot()[0].clone();
        assert_eq!(rec.counter("sse_events_sent_total"), 2);
        assert_eq!(rec.counter("sse_bytes_sent_total"), sent.bytes_sent());

        // Less than the write timeout (30 s), after which an unread stream counts as stalled.
        tokio::time::sleep(Duration::from_secs(20)).await;
        drop(response);
    });
    assert_eq!(rec.gauge("sse_connections_active"), 0.0);
    assert_eq!(
        rec.counter("sse_disconnects_total{reason=\"client_closed\"}"),
        1
    );
    assert_eq!(rec.histogram("sse_stream_duration_seconds"), [20.0]);
    assert_eq!(rec.counter("sse_events_published_total"), 2);
}

#[test]
fn a_stream_whose_client_stops_reading_for_the_write_timeout_ends_as_stalled() {
    let rec = Recording::new();
    rec.run(async {
        let hub = Hub::memory();
        let mut app = app(&hub, SseLayer::new().write_timeout(Duration::from_secs(30)));
        let mut response = get_events(&mut app, "/events/news").send().await.unwrap();
        hub.publish("news", Event::data("one")).await.unwrap();
        response.body_mut().take(1).await.unwrap();
        // The body handed its frame over and is not polled again.
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(hub.registry().len(), 0);
    });
    assert_eq!(rec.counter("sse_disconnects_total{reason=\"stalled\"}"), 1);
    assert_eq!(rec.gauge("sse_connections_active"), 0.0);
}

#[test]
fn a_subscriber_more_than_its_queue_behind_ends_as_slow() {
    let rec = Recording::new();
    rec.run(async {
        let hub = Hub::builder().subscriber_queue(2).memory();
        let mut app = app(&hub, SseLayer::new());
        let mut response = get_events(&mut app, "/events/feed").send().await.unwrap();
        for n in 0..5 {
            hub.publish("feed", Event::data(n.to_string()))
                .await
                .unwrap();
        }
        response.body_mut().until_end().await.unwrap();
        assert!(
            response.body().retry().is_some(),
            "it ends with a retry: hint"
        );
    });
    assert_eq!(rec.counter("sse_disconnects_total{reason=\"slow\"}"), 1);
    assert_eq!(rec.gauge("sse_connections_active"), 0.0);
}

#[test]
fn shutdown_ends_open_streams_as_shutdown_and_refuses_new_ones() {
    let rec = Recording::new();
    rec.run(async {
        let hub = Hub::memory();
        let sse = SseLayer::new().registry(hub.registry());
        let mut app = app(&hub, sse.clone());
        let mut open = get_events(&mut app, "/events/news").send().await.unwrap();
        sse.shutdown();
        open.body_mut().until_end().await.unwrap();
        let mut late = get_events(&mut app, "/events/news").send().await.unwrap();
        late.body_mut().until_end().await.unwrap();
    });
    assert_eq!(rec.counter("sse_disconnects_total{reason=\"shutdown\"}"), 1);
    assert_eq!(
        rec.counter("sse_connections_total{outcome=\"refused_shutdown\"}"),
        1
    );
    assert_eq!(
        rec.counter("sse_connections_total{outcome=\"accepted\"}"),
        1
    );
    assert_eq!(rec.gauge("sse_connections_active"), 0.0);
}

#[test]
fn limits_and_disallowed_origins_count_as_refusals() {
    let rec = Recording::new();
    rec.run(async {
        let hub = Hub::memory();
        let layer = SseLayer::new()
            .max_connections(1)
            .allow_origins(["https://app.example.com"]);
        let mut app = app(&hub, layer);
        let _open = get_events(&mut app, "/events/news").send().await.unwrap();
        let mut over = get_events(&mut app, "/events/news").send().await.unwrap();
        over.body_mut().until_end().await.unwrap();
        let foreign = get_events(&mut app, "/events/news")
            .header("origin", "https://elsewhere.example")
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status(), 403);
    });
    assert_eq!(
        rec.counter("sse_connections_total{outcome=\"refused_limit\"}"),
        1
    );
    assert_eq!(
        rec.counter("sse_connections_total{outcome=\"refused_origin\"}"),
        1
    );
    assert_eq!(
        rec.counter("sse_connections_total{outcome=\"accepted\"}"),
        1
    );
}

/// Refuses every subscription to `private`.
struct NoPrivate;

impl Policy for NoPrivate {
    fn authenticate(&self, _request: &Parts) -> Result<Identity, Denied> {
        Ok(Identity::anonymous())
    }

    fn authorize(&self, _who: &Identity, _action: Action, topic: &str) -> Result<(), Denied> {
        match topic {
            "private" => Err(Denied::unauthenticated("sign in first")),
            _ => Ok(()),
        }
    }
}

#[test]
fn a_subscription_the_policy_refuses_counts_as_denied() {
    let rec = Recording::new();
    rec.run(async {
        let hub = Hub::builder().policy(NoPrivate).memory();
        let who = Identity::anonymous();
        assert!(hub.subscribe_as(&who, "private", None).await.is_err());
        assert!(hub.subscribe_as(&who, "public", None).await.is_ok());
    });
    assert_eq!(rec.counter("sse_connections_total{outcome=\"denied\"}"), 1);
}

#[test]
fn an_expired_authorization_and_a_capped_replay_end_their_streams_by_reason() {
    let rec = Recording::new();
    rec.run(async {
        let hub = Hub::builder().max_replay(2).memory();
        let first = hub.publish("news", Event::data("0")).await.unwrap();
        for n in 1..5 {
            hub.publish("news", Event::data(n.to_string()))
                .await
                .unwrap();
        }
        let expiring = Router::new()
            .route(
                "/events/{topic}",
                get(
                    |State(hub): State<Hub>, Path(topic): Path<String>| async move {
                        let at = SystemTime::now() + Duration::from_secs(5);
                        Ok::<_, HubError>(hub.subscribe(&topic, None).await?.expire_at(at))
                    },
                ),
            )
            .layer(SseLayer::new().registry(hub.registry()))
            .with_state(hub.clone());
        let mut response = get_events(expiring, "/events/news").send().await.unwrap();
        response.body_mut().until_end().await.unwrap();

        let mut app = app(&hub, SseLayer::new());
        let mut behind = get_events(&mut app, "/events/news")
            .last_event_id(first.id())
            .send()
            .await
            .unwrap();
        assert_eq!(behind.body_mut().until_end().await.unwrap().len(), 2);
    });
    assert_eq!(rec.counter("sse_disconnects_total{reason=\"auth\"}"), 1);
    assert_eq!(
        rec.counter("sse_disconnects_total{reason=\"replay_limit\"}"),
        1
    );
}

#[test]
fn a_stream_at_its_max_lifetime_ends_as_lifetime_with_its_duration() {
    let rec = Recording::new();
    rec.run(async {
        let hub = Hub::memory();
        let mut app = app(&hub, SseLayer::new().max_lifetime(Duration::from_secs(600)));
        let mut response = get_events(&mut app, "/events/news").send().await.unwrap();
        response.body_mut().until_end().await.unwrap();
    });
    assert_eq!(rec.counter("sse_disconnects_total{reason=\"lifetime\"}"), 1);
    assert_eq!(rec.histogram("sse_stream_duration_seconds"), [600.0]);
}

#[test]
fn resumes_count_as_exact_or_as_a_gap_by_reason_with_the_events_replayed() {
    let rec = Recording::new();
    rec.run(async {
        let hub = Hub::memory();
        let first = hub.publish("news", Event::data("one")).await.unwrap();
        hub.publish("news", Event::data("two")).await.unwrap();
        hub.publish("news", Event::data("three")).await.unwrap();
        let after = |id: &str| Start::After(LastEventId::new(id).unwrap());
        let exact = hub.subscribe_from("news", after(first.id())).await.unwrap();
        drop(exact);
        let foreign = hub.subscribe_from("news", after("0123456789ab-1")).await;
        let malformed = hub.subscribe_from("news", after("not an id")).await;
        let oldest = hub.subscribe_from("news", Start::Oldest).await;
        let live = hub.subscribe_from("news", Start::Live).await;
        drop((foreign, malformed, oldest, live));
    });
    assert_eq!(rec.counter("sse_replays_total{outcome=\"exact\"}"), 1);
    assert_eq!(rec.counter("sse_replays_total{outcome=\"gap_foreign\"}"), 1);
    assert_eq!(
        rec.counter("sse_replays_total{outcome=\"gap_malformed\"}"),
        1
    );
    // 2 after the first id, 3 from the oldest after each gap, 3 from the oldest.
    assert_eq!(rec.counter("sse_replayed_events_total"), 2 + 3 + 3 + 3);
}

#[test]
fn publishes_count_once_per_stored_event_and_failures_by_operation_and_kind() {
    let rec = Recording::new();
    rec.run(async {
        let hub = Hub::memory();
        let keyed = || Publish::new(Event::data("paid")).idempotency_key("pay-1");
        hub.publish("payments", keyed()).await.unwrap();
        let again = hub.publish("payments", keyed()).await.unwrap();
        assert!(again.is_duplicate());
        hub.close("payments").await.unwrap();
        assert!(hub.publish("payments", Event::data("late")).await.is_err());
    });
    assert_eq!(rec.counter("sse_events_published_total"), 1);
    assert_eq!(
        rec.counter("sse_backend_errors_total{kind=\"closed\",operation=\"publish\"}"),
        1
    );
}

#[test]
fn topic_gauges_follow_what_the_memory_backend_holds() {
    let rec = Recording::new();
    rec.run(async {
        let hub = Hub::builder().history_events(2).memory();
        let mut bytes = 0;
        for n in 0..3 {
            let published = hub.publish("a", Event::data(n.to_string())).await.unwrap();
            if n > 0 {
                bytes += published.event().len();
            }
        }
        bytes += hub
            .publish("b", Event::data("b"))
            .await
            .unwrap()
            .event()
            .len();
        assert_eq!(rec.gauge("sse_topics_active"), 2.0);
        assert_eq!(rec.gauge("sse_retained_events"), 3.0);
        assert_eq!(rec.gauge("sse_retained_bytes"), bytes as f64);
        drop(hub);
    });
    assert_eq!(rec.gauge("sse_topics_active"), 0.0);
    assert_eq!(rec.gauge("sse_retained_events"), 0.0);
    assert_eq!(rec.gauge("sse_retained_bytes"), 0.0);
}

#[test]
fn describe_gives_every_metric_help_text() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        super::describe();
        metrics::counter!(super::EVENTS_PUBLISHED_TOTAL).increment(1);
    });
    let (_, _, help, _) = snapshotter.snapshot().into_vec().remove(0);
    assert_eq!(help.as_deref(), Some("Events stored by the hub."));
}
