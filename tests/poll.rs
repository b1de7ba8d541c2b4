//! The shared poller (`tower_sse::poll`, feature `poll`) over real sockets: an upstream JSON API
//! served by axum on `127.0.0.1:0`, a stream server with a `Poller` in front of it, and clients
//! reading the streams with reqwest through the WHATWG parser.

#[allow(dead_code, unused_imports)]
mod support {
    pub mod client;
    pub mod whatwg;
}

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use support::client::EventReader;
use support::whatwg::ParsedEvent;
use tokio::sync::watch;
use tower_sse::poll::{Poller, Source, json_patch};
use tower_sse::{Hub, LastEventId, SseLayer};

/// What the upstream must never let reach a client: its error page and its address.
const SECRET: &str = "stack trace at db-7.internal:5432";

/// What the test upstream answers.
#[derive(Debug, Clone)]
enum Answer {
    /// `{"n": <how many requests came before>, "unit": …}`: a new value on every request.
    Counting,
    /// `value`, with `ETag: "<version>"`, and `304` to a request that has it.
    Versioned { version: u64, value: Value },
    /// An error status, with a body that must not reach clients.
    Failing(StatusCode),
    /// `302` to `location`.
    Redirect(String),
}

/// A JSON API whose answers the test sets, counting its requests and `304`s.
#[derive(Clone)]
struct Upstream {
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicU64>,
    not_modified: Arc<watch::Sender<u64>>,
    addr: SocketAddr,
}

impl Upstream {
    async fn start(answer: Answer) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = Upstream {
            answer: Arc::new(Mutex::new(answer)),
            requests: Arc::default(),
            not_modified: Arc::new(watch::channel(0).0),
            addr: listener.local_addr().unwrap(),
        };
        let router = Router::new()
            .route("/api", get(answer_request))
            .with_state(upstream.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        upstream
    }

    fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Resolves once the upstream has answered `count` requests with `304`.
    async fn until_not_modified(&self, count: u64) {
        let mut answered = self.not_modified.subscribe();
        tokio::time::timeout(support::client::GUARD, answered.wait_for(|n| *n >= count))
            .await
            .expect("the poller sends conditional requests")
            .unwrap();
    }
}

async fn answer_request(State(upstream): State<Upstream>, headers: HeaderMap) -> Response {
    let n = upstream.requests.fetch_add(1, Ordering::SeqCst);
    let answer = upstream.answer.lock().unwrap().clone();
    match answer {
        // With a text that makes it larger than a patch of `n` (a value no larger than its
        // patch is sent whole, as a `snapshot`).
        Answer::Counting => {
            axum::Json(json!({ "n": n, "unit": "requests the upstream answered before this one" }))
                .into_response()
        }
        Answer::Versioned { version, value } => {
            let etag = format!("\"{version}\"");
            if headers
                .get(header::IF_NONE_MATCH)
                .is_some_and(|tag| *tag == *etag)
            {
                upstream.not_modified.send_modify(|n| *n += 1);
                return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
            }
            ([(header::ETAG, etag)], axum::Json(value)).into_response()
        }
        Answer::Failing(status) => (status, SECRET).into_response(),
        Answer::Redirect(location) => {
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    url: String,
}

/// `GET /stream?url=…`: the poller's stream of that URL, polled every 20 ms.
async fn stream(
    State(poller): State<Poller>,
    Query(query): Query<StreamQuery>,
    last: Option<LastEventId>,
) -> Response {
    let source = match Source::url(&query.url) {
        Ok(source) => source.interval(Duration::from_millis(20)),
        Err(err) => return err.into_response(),
    };
    match poller.subscribe(source, last).await {
        Ok(subscription) => subscription.into_response(),
        Err(err) => err.into_response(),
    }
}

/// A stream server with a poller on `hub`.
struct Server {
    addr: SocketAddr,
    poller: Poller,
    client: reqwest::Client,
}

impl Server {
    async fn start(hub: Hub) -> Server {
        let poller = Poller::builder()
            .min_interval(Duration::from_millis(10))
            .max_backoff(Duration::from_millis(200))
            .idle_grace(Duration::from_secs(1))
            .build(hub.clone());
        let router = Router::new()
            .route("/stream", get(stream))
            .layer(SseLayer::new().registry(hub.registry()))
            .with_state(poller.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Server {
            addr,
            poller,
            client: reqwest::Client::new(),
        }
    }

    /// The stream of `url`, as a client that last saw `last`.
    async fn open(&self, url: &str, last: Option<&str>) -> EventReader {
        let mut request = self
            .client
            .get(format!("http://{}/stream", self.addr))
            .query(&[("url", url)])
            .header(header::ACCEPT, "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        EventReader::new(request.send().await.unwrap())
    }

    /// How many events the poller's topic for `url` retains.
    async fn retained(&self, url: &str) -> usize {
        let source = Source::url(url)
            .unwrap()
            .interval(Duration::from_millis(20));
        let topic = self.poller.topic(&source);
        let info = self.poller.hub().topic_info(&topic).await.unwrap();
        info.map_or(0, |info| info.retained_events)
    }
}

/// What a page does with the events: the value, and the last event id.
#[derive(Debug, Default)]
struct Client {
    state: Option<Value>,
    last_id: String,
}

impl Client {
    fn apply(&mut self, event: &ParsedEvent) {
        let data: Value = serde_json::from_str(&event.data).unwrap();
        match event.event_type.as_str() {
            "snapshot" => self.state = Some(data),
            "patch" => {
                let patch: json_patch::Patch = serde_json::from_value(data).unwrap();
                json_patch::patch(self.state.as_mut().expect("a snapshot first"), &patch).unwrap();
            }
            "error" => {}
            other => panic!("unexpected event {other}: {event:?}"),
        }
        self.last_id = event.last_event_id.clone();
    }

    async fn read(&mut self, reader: &mut EventReader) -> ParsedEvent {
        let event = reader.next().await.expect("the stream goes on");
        self.apply(&event);
        event
    }
}

#[tokio::test]
async fn a_hundred_subscribers_cause_one_upstream_request_per_poll() {
    let upstream = Upstream::start(Answer::Counting).await;
    let server = Server::start(Hub::memory()).await;
    let mut readers = Vec::new();
    for _ in 0..100 {
        readers.push(server.open(&upstream.url(), None).await);
    }
    assert_eq!(server.poller.running(), 1);
    // The upstream's value is the number of requests before it: had each subscriber (or
    // anything but one poller) made requests, a client would see numbers skipped.
    for reader in &mut readers {
        let mut client = Client::default();
        let mut seen = Vec::new();
        for _ in 0..5 {
            client.read(reader).await;
            seen.push(client.state.as_ref().unwrap()["n"].as_u64().unwrap());
        }
        assert!(
            seen.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "one request per poll, whoever listens: {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_304_publishes_nothing() {
    let v1 = json!({"rows": [
        {"id": 1, "gate": "A1", "destination": "Amsterdam Centraal"},
        {"id": 2, "gate": "A2", "destination": "Basel SBB"},
    ]});
    let upstream = Upstream::start(Answer::Versioned {
        version: 1,
        value: v1.clone(),
    })
    .await;
    let server = Server::start(Hub::memory()).await;
    let mut reader = server.open(&upstream.url(), None).await;
    let mut client = Client::default();
    assert_eq!(client.read(&mut reader).await.event_type, "snapshot");
    assert_eq!(client.state.as_ref(), Some(&v1));

    upstream.until_not_modified(3).await;
    assert_eq!(
        server.retained(&upstream.url()).await,
        1,
        "the snapshot only"
    );

    let v2 = json!({"rows": [
        {"id": 1, "gate": "B7", "destination": "Amsterdam Centraal"},
        {"id": 2, "gate": "A2", "destination": "Basel SBB"},
    ]});
    upstream.set(Answer::Versioned {
        version: 2,
        value: v2.clone(),
    });
    let event = client.read(&mut reader).await;
    assert_eq!(
        event.event_type, "patch",
        "the next event is the change: {event:?}"
    );
    assert_eq!(
        event.data,
        r#"[{"op":"replace","path":"/rows/0/gate","value":"B7"}]"#
    );
    assert_eq!(client.state, Some(v2));
}

#[tokio::test]
async fn an_outage_is_an_error_event_and_the_stream_carries_on() {
    let note = "the service behind the load balancer, over every zone of the region";
    let v1 = json!({"status": "green", "load": 3, "note": note});
    let upstream = Upstream::start(Answer::Versioned {
        version: 1,
        value: v1,
    })
    .await;
    let server = Server::start(Hub::memory()).await;
    let mut reader = server.open(&upstream.url(), None).await;
    let mut client = Client::default();
    assert_eq!(client.read(&mut reader).await.event_type, "snapshot");

    upstream.set(Answer::Failing(StatusCode::SERVICE_UNAVAILABLE));
    let error = client.read(&mut reader).await;
    assert_eq!(error.event_type, "error");
    let data: Value = serde_json::from_str(&error.data).unwrap();
    assert_eq!(data["message"], "the upstream answered 503");
    assert_eq!(data["status"], 503);
    assert!(data["retry_ms"].as_u64().unwrap() > 0);
    assert!(!error.data.contains("db-7") && !error.data.contains(&upstream.addr.to_string()));

    // A client that comes during the outage gets the last value, then the news.
    let mut late = server.open(&upstream.url(), None).await;
    let mut late_client = Client::default();
    assert_eq!(late_client.read(&mut late).await.event_type, "snapshot");
    assert_eq!(late_client.read(&mut late).await.data, error.data);

    let v2 = json!({"status": "amber", "load": 9, "note": note});
    upstream.set(Answer::Versioned {
        version: 2,
        value: v2.clone(),
    });
    for (client, reader) in [(&mut client, &mut reader), (&mut late_client, &mut late)] {
        let event = client.read(reader).await;
        assert_eq!(event.event_type, "patch", "{event:?}");
        assert_eq!(client.state.as_ref(), Some(&v2));
    }
}

#[tokio::test]
async fn an_unreachable_upstream_is_an_error_event_without_its_address() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let server = Server::start(Hub::memory()).await;
    let url = format!("http://{closed}/api");
    let mut reader = server.open(&url, None).await;
    let error = reader.next().await.unwrap();
    assert_eq!(error.event_type, "error");
    let data: Value = serde_json::from_str(&error.data).unwrap();
    assert_eq!(data["message"], "the upstream cannot be reached");
    assert!(
        !error.data.contains(&closed.port().to_string()),
        "{}",
        error.data
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let elsewhere = Upstream::start(Answer::Counting).await;
    let upstream = Upstream::start(Answer::Redirect(elsewhere.url())).await;
    let server = Server::start(Hub::memory()).await;
    let mut reader = server.open(&upstream.url(), None).await;
    let error = reader.next().await.unwrap();
    assert_eq!(error.event_type, "error");
    let data: Value = serde_json::from_str(&error.data).unwrap();
    assert_eq!(
        data["message"],
        "the upstream answered 302 (redirects are not followed)"
    );
    assert!(upstream.requests() >= 1);
    assert_eq!(
        elsewhere.requests(),
        0,
        "nothing was asked of the redirect's target"
    );
}

#[tokio::test]
async fn a_reconnect_gets_the_patches_it_missed() {
    let upstream = Upstream::start(Answer::Counting).await;
    let server = Server::start(Hub::memory()).await;
    let mut watcher = server.open(&upstream.url(), None).await;
    let mut watching = Client::default();
    let mut away = server.open(&upstream.url(), None).await;
    let mut leaving = Client::default();
    // Both are at the same event once each has read the one the other read last.
    leaving.read(&mut away).await;
    leaving.read(&mut away).await;
    while watching.state != leaving.state {
        watching.read(&mut watcher).await;
    }
    drop(away);
    for _ in 0..3 {
        watching.read(&mut watcher).await;
    }
    let mut back = server.open(&upstream.url(), Some(&leaving.last_id)).await;
    for _ in 0..3 {
        let event = leaving.read(&mut back).await;
        assert_eq!(event.event_type, "patch", "{event:?}");
    }
    assert_eq!(leaving.state, watching.state);
}

#[tokio::test]
async fn a_reconnect_whose_patches_are_gone_gets_a_snapshot() {
    let upstream = Upstream::start(Answer::Counting).await;
    let server = Server::start(Hub::builder().history_events(2).memory()).await;
    let mut watcher = server.open(&upstream.url(), None).await;
    let mut watching = Client::default();
    watching.read(&mut watcher).await;
    let gone = watching.last_id.clone();
    for _ in 0..5 {
        watching.read(&mut watcher).await;
    }
    let mut back = server.open(&upstream.url(), Some(&gone)).await;
    let mut client = Client::default();
    let event = client.read(&mut back).await;
    assert_eq!(event.event_type, "snapshot", "never a gap: {event:?}");
    // From there on, exactly what the watcher sees.
    assert_eq!(client.read(&mut back).await.event_type, "patch");
    while watching.last_id != client.last_id {
        watching.read(&mut watcher).await;
    }
    assert_eq!(client.state, watching.state);
}

#[test]
fn urls_a_poller_cannot_poll_are_refused_with_a_reason() {
    for (url, says) in [
        ("https://api.example.com/v1", "https is not supported"),
        (
            "ftp://files.example.com/x.json",
            "the scheme \"ftp\" is not supported",
        ),
        ("http://user:pw@api.example.com/", "user name or password"),
        ("not a url", "not a URL"),
        ("/relative/path", "not a URL"),
    ] {
        let err = Source::url(url).unwrap_err();
        assert!(err.to_string().contains(says), "{url}: {err}");
        assert_eq!(err.into_response().status(), StatusCode::BAD_REQUEST);
    }
    let source = Source::url("http://api.example.com/v1/board#top").unwrap();
    assert_eq!(source.key(), "http://api.example.com/v1/board");
}
