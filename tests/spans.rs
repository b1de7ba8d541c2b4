//! The spans around a hub's work, as a `tracing` subscriber sees them: their names, their
//! fields, and the spans an event inside a stream's body is logged in.
//!
//! One test alone in its binary: `tracing` caches, per call site, whether any subscriber wants
//! it, and tests running beside this one without a subscriber would race that cache.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

use tower_sse::backend::Start;
use tower_sse::testing::get_events;
use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};

/// An event's message, with the names of the spans it was logged in, innermost first.
type Logged = (String, Vec<String>);

/// What the subscriber saw: each span as `name field=value …` (fields in the order set, later
/// records appended), and each event's message with the names of the spans it is inside.
#[derive(Clone, Default)]
struct Seen {
    spans: Arc<Mutex<Vec<(Id, String)>>>,
    events: Arc<Mutex<Vec<Logged>>>,
}

impl Seen {
    fn span(&self, name: &str) -> Vec<String> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .map(|(_, text)| text.clone())
            .filter(|text| text.split(' ').next() == Some(name))
            .collect()
    }
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Seen {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut text = attrs.metadata().name().to_owned();
        attrs.record(&mut Fields(&mut text));
        self.spans.lock().unwrap().push((id.clone(), text));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.spans.lock().unwrap();
        if let Some((_, text)) = spans.iter_mut().find(|(span, _)| span == id) {
            values.record(&mut Fields(text));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut message = String::new();
        event.record(&mut Fields(&mut message));
        let scope = ctx
            .event_scope(event)
            .map(|scope| scope.map(|span| span.name().to_owned()).collect())
            .unwrap_or_default();
        self.events.lock().unwrap().push((message, scope));
    }
}

async fn subscribe(
    State(hub): State<Hub>,
    Path(topic): Path<String>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    hub.subscribe(&topic, last).await
}

#[test]
fn spans_wrap_publish_subscribe_replay_and_each_stream() {
    let seen = Seen::default();
    let subscriber = tracing_subscriber::registry().with(seen.clone());
    tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                let hub = Hub::builder().subscriber_queue(1).memory();
                let first = hub.publish("news", Event::data("one")).await.unwrap();
                hub.publish("news", Event::data("two")).await.unwrap();
                let after = Start::After(LastEventId::new(first.id()).unwrap());
                drop(hub.subscribe_from("news", after).await.unwrap());

                let mut app = Router::new()
                    .route("/events/{topic}", get(subscribe))
                    .layer(SseLayer::new().registry(hub.registry()))
                    .with_state(hub.clone());
                let mut response = get_events(&mut app, "/events/news").send().await.unwrap();
                for n in 0..3 {
                    hub.publish("news", Event::data(n.to_string()))
                        .await
                        .unwrap();
                }
                response.body_mut().until_end().await.unwrap();
            });
    });

    let publishes = seen.span("publish");
    assert_eq!(publishes.len(), 5);
    assert!(
        publishes[0].starts_with("publish topic=news id="),
        "{publishes:?}"
    );
    // The memory backend's ids are `EPOCH-SEQ`: the first event's ends with `-1`.
    assert!(publishes[0].ends_with("-1"), "{publishes:?}");
    let subscribes = seen.span("subscribe");
    assert_eq!(
        subscribes,
        [
            "subscribe topic=news start=after",
            "subscribe topic=news start=live"
        ]
    );
    let replays = seen.span("replay");
    assert_eq!(replays.len(), 1);
    assert!(
        replays[0].ends_with(" outcome=exact events=1"),
        "{replays:?}"
    );
    let streams = seen.span("sse_stream");
    assert_eq!(streams.len(), 1);
    assert!(
        streams[0].contains(" path=/events/news topic=news"),
        "{streams:?}"
    );
    // What the subscription logs while the stream's body polls it is inside the stream's span.
    let events = seen.events.lock().unwrap();
    let behind = events
        .iter()
        .find(|(message, _)| message.contains("subscriber fell behind"))
        .expect("the subscription says it fell behind");
    assert!(behind.1.contains(&"sse_stream".to_owned()), "{behind:?}");
    assert!(
        events
            .iter()
            .any(|(message, scope)| message.contains("stream ended")
                && message.contains("reason=Ended")
                && scope.contains(&"sse_stream".to_owned())),
        "the end is said inside the stream's span"
    );
}
