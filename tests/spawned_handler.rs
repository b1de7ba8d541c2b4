//! Over a real socket: a middleware between `SseLayer` and the handler that spawns the handler
//! as a task of its own. The request's extensions go with the request to that task, so the
//! handler's `Connection` extractor finds its stream; the response's extensions come back with
//! the response, so the registry learns the subscription's topic.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::routing::get;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tower_sse::registry::Connection;
use tower_sse::{Event, Hub, SseLayer};

const GUARD: Duration = Duration::from_secs(30);

#[tokio::test]
async fn connection_and_topic_work_when_a_middleware_spawns_the_handler() {
    let hub = Hub::memory();
    let registry = hub.registry();
    let (conns, mut handler_conns) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/events/{topic}",
            get(
                move |State(hub): State<Hub>, Path(topic): Path<String>, conn: Connection| {
                    let conns = conns.clone();
                    async move {
                        conns.send(conn).unwrap();
                        hub.subscribe(&topic, None).await
                    }
                },
            ),
        )
        .layer(middleware::from_fn(|req: Request, next: Next| async move {
            tokio::spawn(next.run(req)).await.unwrap()
        }))
        .layer(SseLayer::new().registry(registry.clone()))
        .with_state(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let response = timeout(GUARD, reqwest::get(format!("http://{addr}/events/lobby")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let conn = handler_conns.recv().await.unwrap();

    let open = registry.snapshot();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id(), conn.id());
    assert_eq!(open[0].topic(), Some("lobby"));

    // The handler's handle is the open stream's: what it sends reaches this client, between
    // the hub's events.
    conn.send(Event::data("just you")).unwrap();
    hub.publish("lobby", Event::data("everyone")).await.unwrap();
    let mut body = response.bytes_stream();
    let mut received = Vec::new();
    while !String::from_utf8_lossy(&received).contains("data: everyone\n\n") {
        let chunk = timeout(GUARD, body.next()).await.unwrap().unwrap().unwrap();
        received.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(received).unwrap();
    assert!(text.contains("data: just you\n\n"), "{text:?}");
}
