//! End to end over a real socket: a stream that answers a `POST`, read the way `fetch` reads
//! one (a JSON body, `Accept: */*`, `Last-Event-ID` set by hand), by a page on another origin
//! (a CORS preflight, then the request with credentials), through `SseLayer`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use futures_util::{Stream, StreamExt, stream};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use support::client::{EventReader, GUARD};
use tokio::task::JoinHandle;
use tower_sse::registry::Registry;
use tower_sse::{Event, EventStream, LastEventId, SseLayer};

const APP: &str = "https://app.example.com";

/// The body of `POST /answer`: how many tokens to answer with.
#[derive(serde::Deserialize)]
struct Prompt {
    tokens: u64,
}

/// `POST /answer`: tokens `1..=tokens`, each an event named `token` with its number as id, one
/// every few milliseconds, resumed after the `Last-Event-ID` the client sends; then `done`.
async fn answer(
    last: Option<LastEventId>,
    Json(prompt): Json<Prompt>,
) -> EventStream<impl Stream<Item = Event>> {
    let after = last
        .and_then(|last| last.as_str()?.parse::<u64>().ok())
        .unwrap_or(0);
    let tokens = stream::iter(after + 1..=prompt.tokens).then(|n| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Event::builder()
            .id(n.to_string())
            .event("token")
            .data(format!("t{n}"))
            .build()
            .unwrap()
    });
    let done = Event::builder()
        .event("done")
        .data(format!(r#"{{"tokens":{}}}"#, prompt.tokens))
        .build()
        .unwrap();
    EventStream::new(tokens).end_with(done)
}

/// Sets its flag when it is dropped.
struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A server on `127.0.0.1:0` with `POST /answer` and `POST /endless` (a producer that never
/// ends by itself, which sets `dropped` when it is dropped), under `layer`.
struct Server {
    addr: SocketAddr,
    registry: Registry,
    dropped: Arc<AtomicBool>,
    client: reqwest::Client,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(layer: SseLayer) -> Server {
        let registry = Registry::new();
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let app = Router::new()
            .route("/answer", post(answer))
            .route(
                "/endless",
                post(move || {
                    let guard = DropGuard(flag.clone());
                    async move {
                        let ticks = stream::unfold(guard, |guard| async move {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            Some((Event::data("tick"), guard))
                        });
                        EventStream::new(ticks)
                    }
                }),
            )
            .layer(layer.registry(registry.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Server {
            addr,
            registry,
            dropped,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What `fetch(url, { method: "POST", credentials: "include", headers, body })` sends
    /// from a page on [`APP`], with `Last-Event-ID` when resuming.
    async fn fetch(&self, path: &str, body: &str, last: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(path))
            .header(header::ORIGIN, APP)
            .header(header::ACCEPT, "*/*")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_owned());
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        request.send().await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A layer that lets pages on [`APP`] `POST` JSON with `fetch`.
fn fetch_layer() -> SseLayer {
    SseLayer::new()
        .allow_origins([APP])
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE])
}

/// Whether the comma-separated header `name` lists `item`.
fn lists(headers: &HeaderMap, name: header::HeaderName, item: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(item))
}

fn assert_cors_with_credentials(headers: &HeaderMap) {
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert!(lists(headers, header::VARY, "origin"), "{headers:?}");
}

/// Asserts that `response` is an event stream that a page on [`APP`] may read.
fn assert_cors_stream(response: &reqwest::Response) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    assert_cors_with_credentials(response.headers());
}

#[tokio::test]
async fn post_stream_read_like_fetch_resumes_after_last_event_id_and_ends_with_done() {
    let server = Server::start(fetch_layer()).await;

    // The preflight the browser sends first: a JSON body and `Last-Event-ID` are not "simple".
    let preflight = server
        .client
        .request(Method::OPTIONS, server.url("/answer"))
        .header(header::ORIGIN, APP)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "content-type,last-event-id",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_cors_with_credentials(headers);
    assert!(lists(headers, header::ACCESS_CONTROL_ALLOW_METHODS, "POST"));
    assert!(lists(
        headers,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        "content-type"
    ));
    assert!(lists(
        headers,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        "last-event-id"
    ));

    // The first request: three tokens arrive, then the connection is cut.
    let response = server.fetch("/answer", r#"{"tokens":6}"#, None).await;
    assert_cors_stream(&response);
    let mut reader = EventReader::new(response);
    let first = reader.take(3).await;
    let seen: Vec<_> = first.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(seen, ["t1", "t2", "t3"]);
    assert!(first.iter().all(|e| e.event_type == "token"));
    let last = first.last().unwrap().last_event_id.clone();
    assert_eq!(last, "3");
    drop(reader);

    // The retry, with the id of the last event seen in a header set by hand.
    let response = server
        .fetch("/answer", r#"{"tokens":6}"#, Some(&last))
        .await;
    assert_cors_stream(&response);
    let mut reader = EventReader::new(response);
    let rest = reader.until_end().await;
    let seen: Vec<_> = rest
        .iter()
        .map(|e| (e.event_type.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("token", "t4"),
            ("token", "t5"),
            ("token", "t6"),
            ("done", r#"{"tokens":6}"#)
        ]
    );
    assert_eq!(reader.retry(), None, "an end, not a retry hint");
}

#[tokio::test]
async fn a_fetch_client_that_goes_away_drops_the_producer() {
    let server = Server::start(fetch_layer()).await;
    let response = server.fetch("/endless", "{}", None).await;
    let mut reader = EventReader::new(response);
    reader.take(2).await;
    assert_eq!(server.registry.len(), 1);
    assert!(!server.dropped.load(Ordering::SeqCst));

    // `AbortController.abort()`, or a closed tab.
    drop(reader);
    tokio::time::timeout(GUARD, async {
        while !server.dropped.load(Ordering::SeqCst) || !server.registry.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the producer is dropped once the client has gone");
}

#[tokio::test]
async fn a_fetch_stream_over_the_limit_gets_200_and_a_retry_hint() {
    let server = Server::start(fetch_layer().max_connections_per_peer(1)).await;
    let response = server.fetch("/endless", "{}", None).await;
    let mut held = EventReader::new(response);
    held.take(1).await;
    assert_eq!(server.registry.len(), 1);

    let response = server.fetch("/answer", r#"{"tokens":3}"#, None).await;
    assert_cors_stream(&response);
    let mut refused = EventReader::new(response);
    assert!(refused.until_end().await.is_empty());
    let retry = refused.retry().expect("a retry hint");
    assert!((5000..=15000).contains(&retry), "{retry}");
    assert!(
        refused
            .raw()
            .starts_with(b": too many connections from this address\n")
    );
    assert_eq!(server.registry.len(), 1);
}
