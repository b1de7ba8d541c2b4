//! HTTP/2 end to end: the hub server of `examples/hub.rs` on `127.0.0.1:0` (axum's `serve`
//! speaks h2c with prior knowledge when axum's `http2` feature is on, as in dev builds), read by
//! a reqwest client that speaks only HTTP/2.
//!
//! Browsers open at most six HTTP/1.1 connections per origin, so a seventh `EventSource` on a
//! page waits forever; over HTTP/2 every stream shares one connection and that limit is gone.
//! These tests hold the server to that: many concurrent streams on one connection, each getting
//! every event, with no connection-specific header on any response (RFC 9113 §8.2.2 makes a
//! response carrying one malformed).
//!
//! Who removes those headers: hyper's h2 server strips them from every response it sends,
//! whatever the layer did, so a check of what reaches the client ([`assert_http2`]) checks
//! hyper and would pass with `SseLayer` removed. The layer's own stripping, which matters under
//! a server that does not clean up after it, is checked before hyper sees the response, by
//! calling the router as a service with an HTTP/2 request
//! (`the_layer_removes_handler_set_connection_headers_before_hyper_sees_them`).

mod support;

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures_util::StreamExt;
use futures_util::future::join_all;
use reqwest::Version;
use serde_json::Value;
use support::client::EventReader;
use support::hub::{Config, Server, config};
use tower::ServiceExt as _;
use tower_sse::{Event, EventStream, SseLayer};

/// More than the six connections per origin browsers allow over HTTP/1.1.
const STREAMS: usize = 10;

/// Headers that belong to one connection and must never appear in an HTTP/2 response.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

/// What the HTTP/2 cases add to the shared hub server harness: every request over the HTTP/2
/// client, checked to be HTTP/2.
impl Server {
    async fn h2(config: Config) -> Server {
        Server::start_with_client(config, h2_client()).await
    }

    async fn h2_get(&self, path: &str) -> reqwest::Response {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        assert_http2(&response);
        response
    }

    /// Publishes over the same HTTP/2 connection; returns the id the hub gave the event.
    async fn h2_publish(&self, path: &str, data: &str) -> String {
        let response = self.publish_raw(path, data.to_owned()).await;
        assert_http2(&response);
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }
}

fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// The response came over HTTP/2 and carries no connection-specific header on the wire. hyper's
/// h2 server removes them itself, so this checks what the client gets, not what the layer does.
#[track_caller]
fn assert_http2(response: &reqwest::Response) {
    assert_eq!(response.version(), Version::HTTP_2, "{}", response.url());
    for name in CONNECTION_SPECIFIC {
        assert!(
            response.headers().get(name).is_none(),
            "{} {}: an HTTP/2 response with `{name}: {:?}`",
            response.status(),
            response.url(),
            response.headers()[name]
        );
    }
}

#[tokio::test]
async fn ten_concurrent_streams_over_one_http2_connection_all_receive_every_event() {
    let server = Server::h2(config()).await;
    // All at once, as a page opening ten `EventSource`s would.
    let responses = join_all((0..STREAMS).map(|_| server.h2_get("/events/board"))).await;
    let mut readers = Vec::new();
    for response in responses {
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        readers.push(EventReader::new(response));
    }
    server.until_open(STREAMS).await;

    // One TCP connection: every stream has the same peer address (and so the same port).
    let peers: Vec<SocketAddr> = server
        .hub
        .registry()
        .snapshot()
        .iter()
        .map(|c| c.peer().expect("the hub records each stream's peer"))
        .collect();
    assert_eq!(peers.len(), STREAMS);
    assert!(
        peers.iter().all(|peer| *peer == peers[0]),
        "streams spread over several connections: {peers:?}"
    );

    let published = [
        ("/publish/board", "first"),
        ("/publish/board", "multi\r\nline"),
        ("/publish/board?event=departure", "{\"flight\":\"LH 123\"}"),
        ("/publish/board", "😀 ünïcödé"),
        ("/publish/board", &"x".repeat(100_000)),
    ];
    let mut expected = Vec::new();
    for (path, data) in published {
        let id = server.h2_publish(path, data).await;
        let event_type = if path.contains("event=") {
            "departure"
        } else {
            "message"
        };
        expected.push((event_type, data.replace("\r\n", "\n"), id));
    }

    let received = join_all(readers.iter_mut().map(|r| r.take(published.len()))).await;
    for (n, events) in received.iter().enumerate() {
        let got: Vec<(&str, String, String)> = events
            .iter()
            .map(|e| {
                (
                    e.event_type.as_str(),
                    e.data.clone(),
                    e.last_event_id.clone(),
                )
            })
            .collect();
        assert!(got == expected, "stream {n} of {STREAMS} got other events");
    }
    drop(readers);
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_ends_every_http2_stream_with_a_retry_hint() {
    let server = Server::h2(config()).await;
    let responses = join_all((0..STREAMS).map(|_| server.h2_get("/events/news"))).await;
    let mut readers: Vec<EventReader> = responses.into_iter().map(EventReader::new).collect();
    server.until_open(STREAMS).await;
    server.stop().await;
    for mut reader in readers.drain(..) {
        assert!(reader.until_end().await.is_empty());
        let retry = reader.retry().expect("a retry hint before the end");
        assert!((1000..=3000).contains(&retry), "retry {retry} ms");
    }
}

/// Every kind of response the hub gives, over HTTP/2: streams, a refused stream, a replay with
/// a gap, publishing, the page, the registry listing, health, and an error. What reaches the
/// client, after hyper (see the module docs): the layer's part is the next test's.
#[tokio::test]
async fn no_http2_response_from_the_hub_carries_connection_specific_headers_on_the_wire() {
    let server = Server::h2(Config {
        max_connections: Some(1),
        ..config()
    })
    .await;
    let mut open = EventReader::new(server.h2_get("/events/news").await);
    server.until_open(1).await;
    // Over the limit: refused in-band (200, a comment and a `retry:` hint, then the end).
    let mut refused = EventReader::new(server.h2_get("/events/news").await);
    assert!(refused.until_end().await.is_empty());
    assert!(
        refused.retry().is_some(),
        "a refused stream says when to retry"
    );

    server.h2_publish("/publish/news", "x").await;
    assert_eq!(open.next().await.unwrap().data, "x");
    drop(open);
    server.until_open(0).await;

    // A replay that starts with a `gap` event.
    let mut gap = EventReader::new(server.h2_get("/events/news?lastEventId=unknown").await);
    assert_eq!(gap.next().await.unwrap().event_type, "gap");
    drop(gap);

    for path in ["/", "/connections", "/health", "/no-such-page"] {
        server.h2_get(path).await;
    }
    let bad = server
        .client
        .post(server.url("/publish/bad%20topic"))
        .header("authorization", support::hub::bearer(&server.token))
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(bad.status().is_client_error());
    assert_http2(&bad);
    server.stop().await;
}

/// A handler that sets connection-specific headers itself (as code written for HTTP/1.1 does).
async fn stream_with_connection_headers() -> impl IntoResponse {
    let events =
        futures_util::stream::iter([Event::data("hello")]).chain(futures_util::stream::pending());
    let mut response = EventStream::new(events).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("proxy-connection", "keep-alive"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

fn app_with_connection_headers() -> axum::Router {
    axum::Router::new()
        .route("/events", get(stream_with_connection_headers))
        .layer(SseLayer::new())
}

/// The layer's response to an HTTP/2 request, taken from the router as a service, before hyper
/// sees it (hyper would strip these headers itself): none of the handler's connection-specific
/// headers is left, and the stream's own headers are there.
#[tokio::test]
async fn the_layer_removes_handler_set_connection_headers_before_hyper_sees_them() {
    let request = Request::get("/events")
        .version(Version::HTTP_2)
        .body(Body::empty())
        .unwrap();
    let response = app_with_connection_headers()
        .oneshot(request)
        .await
        .unwrap();
    for name in CONNECTION_SPECIFIC {
        assert!(
            response.headers().get(name).is_none(),
            "the layer left `{name}: {:?}` on an HTTP/2 event stream",
            response.headers()[name]
        );
    }
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    assert_eq!(response.headers()["x-accel-buffering"], "no");
}

/// The same handler over a real HTTP/2 connection: ten streams at once, each gets its event.
#[tokio::test]
async fn handler_set_connection_headers_do_not_break_http2_streams() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        tokio::spawn(async move { axum::serve(listener, app_with_connection_headers()).await });

    let client = h2_client();
    let responses =
        join_all((0..STREAMS).map(|_| client.get(format!("http://{addr}/events")).send())).await;
    for response in responses {
        let response = response.unwrap();
        assert_http2(&response);
        let mut reader = EventReader::new(response);
        assert_eq!(reader.next().await.unwrap().data, "hello");
    }
    server.abort();
}
