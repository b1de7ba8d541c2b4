//! End to end over real sockets: the resumable-answer server of `examples/llm.rs`, driven by a
//! real HTTP client and read with the WHATWG parser; on Redis, an answer started on one server
//! and resumed on another.

mod support;

use std::net::SocketAddr;

use serde_json::{Value, json};
use support::client::{EventReader, GUARD};
use support::redis_server::RedisServer;
use tokio::sync::oneshot;

#[path = "../examples/llm.rs"]
#[allow(dead_code)]
mod llm;

struct Server {
    addr: SocketAddr,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start(config: llm::Config) -> Server {
        let app = llm::app(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(llm::serve(listener, app, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            client: reqwest::Client::new(),
            _stop: stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn ask(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/chat"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Starts an answer and returns its id.
    async fn start_answer(&self, tokens: u64, interval_ms: u64) -> String {
        let response = self
            .ask(json!({ "prompt": "why streams", "tokens": tokens, "interval_ms": interval_ms }))
            .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    async fn stream(&self, id: &str, last: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(&format!("/chat/{id}/stream")));
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last);
        }
        request.send().await.unwrap()
    }
}

fn config() -> llm::Config {
    llm::Config {
        addr: "127.0.0.1:0".to_owned(),
        ..llm::Config::default()
    }
}

/// The whole expected answer to "why streams" with `n` tokens.
fn expected(n: u64) -> Vec<String> {
    (1..=n).map(|i| llm::token_text("why streams", i)).collect()
}

#[tokio::test]
async fn an_answer_streams_its_tokens_then_done_and_resumes_exactly_after_a_cut() {
    let server = Server::start(config()).await;
    let id = server.start_answer(40, 5).await;

    // Read ten tokens, then the connection drops.
    let mut reader = EventReader::new(server.stream(&id, None).await);
    let first = reader.take(10).await;
    assert!(first.iter().all(|e| e.event_type == "token"));
    let last = first.last().unwrap().last_event_id.clone();
    drop(reader);

    // Reconnect as EventSource does: exactly the rest, then done, then the end.
    let mut reader = EventReader::new(server.stream(&id, Some(&last)).await);
    let rest = reader.until_end().await;
    let (done, tokens) = rest.split_last().unwrap();
    assert_eq!(done.event_type, "done");
    assert_eq!(
        serde_json::from_str::<Value>(&done.data).unwrap(),
        json!({"tokens": 40})
    );
    let text: Vec<String> = first.iter().chain(tokens).map(|e| e.data.clone()).collect();
    assert_eq!(text, expected(40), "no token missing or repeated");

    // After the answer: from the start again it is all there, and with done's id, 204.
    let mut reader = EventReader::new(server.stream(&id, None).await);
    assert_eq!(reader.until_end().await.len(), 41);
    let response = server.stream(&id, Some(&done.last_event_id)).await;
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn unknown_ids_are_204_and_bad_requests_400() {
    let server = Server::start(config()).await;
    for id in ["0123456789abcdef0123456789abcdef", "x%2Fy"] {
        assert_eq!(server.stream(id, None).await.status(), 204, "{id}");
    }
    for body in [
        json!({ "prompt": "x", "tokens": 0 }),
        json!({ "prompt": "x", "tokens": llm::MAX_TOKENS + 1 }),
        json!({ "prompt": "x", "interval_ms": llm::MAX_INTERVAL_MS + 1 }),
        json!({ "prompt": "x".repeat(llm::MAX_PROMPT + 1) }),
        json!({ "tokens": 3 }),
        json!({ "prompt": "x", "extra": true }),
    ] {
        let response = server.ask(body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].is_string(), "{body}: {error}");
    }
    let response = server
        .client
        .post(server.url("/chat/nope/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn cancel_answers_202_and_the_stream_ends_with_cancelled() {
    let server = Server::start(config()).await;
    let id = server.start_answer(10_000, 20).await;
    let mut reader = EventReader::new(server.stream(&id, None).await);
    reader.take(2).await;
    let response = server
        .client
        .post(server.url(&format!("/chat/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let rest = reader.until_end().await;
    let end = rest.last().unwrap();
    assert_eq!(end.event_type, "cancelled");
    assert!(
        rest.len() < 100,
        "the answer stopped: {} more events",
        rest.len()
    );
}

#[tokio::test]
async fn past_max_streams_a_new_answer_gets_503() {
    let server = Server::start(llm::Config {
        max_streams: 1,
        ..config()
    })
    .await;
    server.start_answer(10_000, 50).await;
    let response = server.ask(json!({ "prompt": "second" })).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn on_redis_an_answer_started_on_one_server_resumes_on_another() {
    let redis = RedisServer::start();
    let on_redis = || llm::Config {
        redis_url: Some(redis.url()),
        ..config()
    };
    let a = Server::start(on_redis()).await;
    let b = Server::start(on_redis()).await;
    let id = a.start_answer(30, 10).await;

    let mut reader = EventReader::new(a.stream(&id, None).await);
    let first = reader.take(8).await;
    let last = first.last().unwrap().last_event_id.clone();
    drop(reader);

    // The same id, the other server: exactly the rest, then done.
    let mut reader = EventReader::new(b.stream(&id, Some(&last)).await);
    let rest = tokio::time::timeout(GUARD, reader.until_end())
        .await
        .unwrap();
    let (done, tokens) = rest.split_last().unwrap();
    assert_eq!(done.event_type, "done");
    let text: Vec<String> = first.iter().chain(tokens).map(|e| e.data.clone()).collect();
    assert_eq!(text, expected(30));

    // Cancel from the other server, too: a's producer stops.
    let id = a.start_answer(10_000, 20).await;
    let mut reader = EventReader::new(a.stream(&id, None).await);
    reader.take(2).await;
    let response = b
        .client
        .post(b.url(&format!("/chat/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let rest = tokio::time::timeout(GUARD, reader.until_end())
        .await
        .unwrap();
    assert_eq!(rest.last().unwrap().event_type, "cancelled");
}
