//! Tests for what a request refused by a connection limit or a shutdown costs when its handler
//! runs anyway (its request did not take only an event stream) and subscribes to a hub: during
//! a shutdown the subscription opens nothing in the backend; at a connection limit it is opened
//! (the hub cannot see the request) and dropped unpolled by the layer, keeping nothing; neither
//! builds a registry entry. One below the limits subscribes as always. The heap count over a
//! real socket is `tests/refusals.rs`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::get;
use futures_util::StreamExt as _;
use http::{Request, StatusCode, header};
use tower::ServiceExt as _;

use super::SseLayer;
use super::tests::{KEEP_ALIVE, next, rest};
use crate::{Hub, HubError, Subscription};

/// What the handler saw: whether the topic existed in the backend right after it subscribed,
/// and what the subscription yields when polled directly.
type Seen = Arc<Mutex<Vec<(bool, Option<crate::Event>)>>>;

/// A hub app whose `/events/{topic}` handler subscribes and reports what it saw; `probe`
/// topics are polled by the handler itself, the others returned as the response.
fn app(layer: SseLayer, hub: &Hub, seen: &Seen) -> Router {
    let seen = seen.clone();
    Router::new()
        .route(
            "/events/{topic}",
            get(move |State(hub): State<Hub>, Path(topic): Path<String>| {
                let seen = seen.clone();
                async move {
                    let mut subscription = hub.subscribe(&topic, None).await?;
                    let exists = hub.topic_info(&topic).await?.is_some();
                    let first = if topic.starts_with("probe") {
                        subscription.next().await
                    } else {
                        None
                    };
                    seen.lock().unwrap().push((exists, first));
                    Ok::<Subscription, HubError>(subscription)
                }
            }),
        )
        .layer(layer.registry(hub.registry()))
        .with_state(hub.clone())
}

/// A `GET` as `fetch` sends it: `Accept: */*`, so the handler runs whatever the limits say.
fn fetch(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::ACCEPT, "*/*")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_request_refused_at_the_cap_keeps_no_subscription() {
    let hub = Hub::memory();
    let seen = Seen::default();
    let app = app(SseLayer::new().max_connections(1), &hub, &seen);

    let open = app.clone().oneshot(fetch("/events/first")).await.unwrap();
    let mut open = open.into_body();
    assert_eq!(next(&mut open).await, KEEP_ALIVE);
    assert_eq!(seen.lock().unwrap().pop(), Some((true, None)));

    // At the cap: the handler runs and its subscription is opened (the hub cannot see the
    // request, nor the layer's limits); the layer refuses the stream and drops the
    // subscription unpolled, and with it the topic it held and the registry entry it never
    // built.
    let refused = app.clone().oneshot(fetch("/events/second")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::OK);
    let body = rest(&mut refused.into_body()).await;
    assert!(body.starts_with(b": too many connections\n"), "{body:?}");
    assert_eq!(seen.lock().unwrap().pop(), Some((true, None)));
    assert!(hub.topic_info("second").await.unwrap().is_none());
    assert_eq!(hub.registry().len(), 1);
    assert_eq!(hub.registry().stats().refused, 1);
}

#[tokio::test(start_paused = true)]
async fn during_a_shutdown_a_handler_subscribes_to_nothing() {
    let hub = Hub::memory();
    let seen = Seen::default();
    let layer = SseLayer::new();
    let app = app(layer.clone(), &hub, &seen);
    SseLayer::new().registry(hub.registry()).shutdown();
    let refused = app.clone().oneshot(fetch("/events/late")).await.unwrap();
    let body = rest(&mut refused.into_body()).await;
    assert!(body.starts_with(b": shutting down\n"), "{body:?}");
    assert_eq!(seen.lock().unwrap().pop(), Some((false, None)));
    assert!(hub.topic_info("late").await.unwrap().is_none());

    // Polled anyway (here by the handler itself), it is a `retry:` hint and its end.
    let _ = app.oneshot(fetch("/events/probe")).await.unwrap();
    let (exists, first) = seen.lock().unwrap().pop().unwrap();
    assert!(!exists);
    let first = first.expect("a retry hint");
    assert!(first.as_bytes().starts_with(b"retry: "), "{first:?}");
}

#[tokio::test(start_paused = true)]
async fn a_hub_whose_registry_shuts_down_opens_nothing_even_without_a_request() {
    let hub = Hub::memory();
    SseLayer::new().registry(hub.registry()).shutdown();
    let mut subscription = hub.subscribe("after", None).await.unwrap();
    assert!(hub.topic_info("after").await.unwrap().is_none());
    let first = subscription.next().await.expect("a retry hint");
    assert!(first.as_bytes().starts_with(b"retry: "), "{first:?}");
    assert!(subscription.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn below_the_limits_a_handler_subscribes_as_always() {
    let hub = Hub::memory();
    let seen = Seen::default();
    let app = app(SseLayer::new().max_connections(2), &hub, &seen);
    let mut bodies = Vec::new();
    for topic in ["a", "b"] {
        let response = app
            .clone()
            .oneshot(fetch(&format!("/events/{topic}")))
            .await
            .unwrap();
        let mut body = response.into_body();
        assert_eq!(next(&mut body).await, KEEP_ALIVE);
        bodies.push(body);
        assert_eq!(seen.lock().unwrap().pop(), Some((true, None)));
    }
    // Subscribed before the stream opened: an event published now reaches it.
    hub.publish("b", crate::Event::data("live")).await.unwrap();
    let frame = next(&mut bodies[1]).await;
    assert!(frame.ends_with(b"data: live\n\n"), "{frame:?}");
}

#[tokio::test(start_paused = true)]
async fn a_subscription_outside_the_layer_is_opened_as_always() {
    let hub = Hub::memory();
    let subscription = hub.subscribe("outside", None).await.unwrap();
    assert_eq!(
        hub.topic_info("outside")
            .await
            .unwrap()
            .unwrap()
            .subscribers,
        1
    );
    drop(subscription);
    assert!(hub.topic_info("outside").await.unwrap().is_none());
}
