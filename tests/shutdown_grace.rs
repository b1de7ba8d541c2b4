//! End to end over a real socket: `axum::serve` with a graceful shutdown from
//! `SseLayer::shutdown_on` and a `shutdown_grace`. A stream that finishes within the grace ends
//! normally; one that would not ends with a `retry:` hint when the grace is over; and `serve`
//! returns.

mod support;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use futures_util::{StreamExt, stream};
use support::client::{EventReader, GUARD};
use tokio::sync::oneshot;
use tower_sse::registry::Registry;
use tower_sse::{Event, EventStream, SseLayer};

const GRACE: Duration = Duration::from_millis(600);

#[tokio::test]
async fn graceful_shutdown_lets_short_streams_finish_and_ends_the_rest_at_the_grace() {
    let registry = Registry::new();
    let layer = SseLayer::new()
        .registry(registry.clone())
        .shutdown_grace(GRACE);
    let app = Router::new()
        .route(
            // Finishes a third of the grace after it starts.
            "/short",
            get(|| async {
                let steps = stream::iter(0..3).then(|n| async move {
                    if n > 0 {
                        tokio::time::sleep(GRACE / 6).await;
                    }
                    Event::data(format!("step {n}"))
                });
                let done = Event::builder().event("done").data("{}").build().unwrap();
                EventStream::new(steps).end_with(done)
            }),
        )
        .route(
            // Never ends by itself.
            "/endless",
            get(|| async {
                EventStream::new(stream::iter([Event::data("hello")]).chain(stream::pending()))
            }),
        )
        .layer(layer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal_tx, signal_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(layer.shutdown_on(async move {
                signal_rx.await.ok();
            }))
            .into_future(),
    );

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let open = |path: &str| {
        let request = client.get(format!("http://{addr}{path}"));
        async move { EventReader::new(request.send().await.unwrap()) }
    };
    let mut endless = open("/endless").await;
    assert_eq!(endless.take(1).await[0].data, "hello");
    let mut short = open("/short").await;
    assert_eq!(short.take(1).await[0].data, "step 0");
    assert_eq!(registry.len(), 2);

    let start = Instant::now();
    signal_tx.send(()).unwrap();
    let short = tokio::spawn(async move {
        let events = short.until_end().await;
        (events, short.retry())
    });
    let endless = tokio::spawn(async move {
        let events = endless.until_end().await;
        (events, endless.retry(), start.elapsed())
    });
    tokio::time::timeout(GUARD, server)
        .await
        .expect("serve returns after the grace")
        .unwrap()
        .unwrap();
    let took = start.elapsed();

    let (events, retry) = short.await.unwrap();
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.event_type.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        seen,
        [("message", "step 1"), ("message", "step 2"), ("done", "{}")]
    );
    assert_eq!(retry, None, "ended normally, without a retry hint");

    let (events, retry, ended) = endless.await.unwrap();
    assert!(events.is_empty(), "{events:?}");
    let retry = retry.expect("a retry hint at the end of the grace");
    assert!((1000..=3000).contains(&retry), "{retry}");
    assert!(ended >= GRACE, "ended after {ended:?}, before the grace");
    assert!(
        took >= GRACE,
        "serve returned after {took:?}, before the grace"
    );
    assert!(registry.is_empty());
}
