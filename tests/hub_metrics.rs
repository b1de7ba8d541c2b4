//! The hub server's `GET /metrics` (`examples/hub/metrics.rs`), scraped over real sockets
//! after a scripted session: every metric of `tower_sse::metrics` moves as the session says.
//!
//! The Prometheus recorder is the process's own, shared by every hub server of this binary, so
//! the tests that move figures take [`SERIAL`] and compare a scrape after with one before.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use support::client::{GUARD, silent_client};
use support::hub::{Config, Server, bearer, config, hub_server, token};
use tokio::io::AsyncReadExt as _;
use tower_sse::Event;
use tower_sse::auth::jwt::Claims;

/// Taken by the tests that move figures, one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A scrape: each sample by `name{label="value",…}`, its labels sorted.
#[derive(Debug, Clone, Default)]
struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// Reads Prometheus's text format.
    fn parse(text: &str) -> Scrape {
        let mut samples = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').expect("a sample: series and value");
            let key = match series.split_once('{') {
                None => series.to_owned(),
                Some((name, labels)) => {
                    let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                    labels.sort_unstable();
                    format!("{name}{{{}}}", labels.join(","))
                }
            };
            samples.insert(key, value.parse().expect("a number"));
        }
        Scrape(samples)
    }

    fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }

    /// How much `key` moved since `before`.
    fn since(&self, before: &Scrape, key: &str) -> f64 {
        self.get(key) - before.get(key)
    }
}

/// An admin token: what `/metrics` asks for by default.
fn admin_token() -> String {
    token(Claims::new().admin(true))
}

/// `GET /metrics` with an admin token.
async fn scrape(server: &Server) -> Scrape {
    let response = server
        .client
        .get(server.url("/metrics"))
        .header(AUTHORIZATION, bearer(&admin_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET /metrics with an admin token");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    Scrape::parse(&response.text().await.unwrap())
}

/// What the server's `/metrics` renders, read in process: after a shutdown, when no server
/// answers any more.
fn render() -> Scrape {
    Scrape::parse(&hub_server::metrics::handle().unwrap().render())
}

/// Reads a chunked HTTP/1.1 response to its last chunk; every byte received.
async fn read_to_last_chunk(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    while !received.ends_with(b"\r\n0\r\n\r\n") {
        let n = tokio::time::timeout(GUARD, stream.read(&mut buf))
            .await
            .expect("the hub sends something within the guard time")
            .unwrap();
        assert_ne!(n, 0, "the hub closed the connection before the last chunk");
        received.extend_from_slice(&buf[..n]);
    }
    received
}

/// Events of 1 KiB published on `feed` while a client reads nothing: far more than the
/// subscriber queue (1024) and what the sockets and hyper hold for it.
const BACKLOG: usize = 3000;

#[tokio::test]
async fn metrics_move_as_a_session_of_connects_publishes_replays_gaps_refusals_a_slow_consumer_and_a_shutdown()
 {
    let _serial = SERIAL.lock().await;
    let server = Server::start(Config {
        public_topics: ["news", "feed", "shut"].map(String::from).to_vec(),
        max_connections: Some(3),
        // The slow consumer is the hub's cut, not the layer's write timeout.
        write_timeout: None,
        send_buffer: Some(4096),
        ..config()
    })
    .await;
    let before = scrape(&server).await;
    let disconnects = |scrape: &Scrape, reason: &str| {
        scrape.since(
            &before,
            &format!("sse_disconnects_total{{reason=\"{reason}\"}}"),
        )
    };
    let connections = |scrape: &Scrape, outcome: &str| {
        scrape.since(
            &before,
            &format!("sse_connections_total{{outcome=\"{outcome}\"}}"),
        )
    };

    // Connect and publish: a live subscriber gets three events.
    let mut live = server.subscribe("news", None).await;
    server.until_open(1).await;
    let mut ids = Vec::new();
    for data in ["one", "two", "three"] {
        ids.push(server.publish("news", data).await);
    }
    assert_eq!(live.take(3).await.len(), 3);

    // A reconnect after the first id gets the two it missed: an exact replay.
    let mut resumed = server.subscribe("news", Some(&ids[0])).await;
    assert_eq!(resumed.take(2).await.len(), 2);
    server.until_open(2).await;
    let now = scrape(&server).await;
    assert_eq!(connections(&now, "accepted"), 2.0);
    assert_eq!(now.since(&before, "sse_connections_active"), 2.0);
    assert_eq!(now.since(&before, "sse_events_published_total"), 3.0);
    assert_eq!(now.since(&before, "sse_events_sent_total"), 5.0);
    assert!(now.since(&before, "sse_bytes_sent_total") > 0.0);
    assert_eq!(
        now.since(&before, "sse_replays_total{outcome=\"exact\"}"),
        1.0
    );
    assert_eq!(now.since(&before, "sse_replayed_events_total"), 2.0);

    // An id of another topic: a gap event, then everything retained; then it leaves.
    let mut foreign = server.subscribe("news", Some("0123456789ab-1")).await;
    let got = foreign.take(4).await;
    assert_eq!(got[0].event_type, "gap");
    server.until_open(3).await;
    drop(foreign);
    server.until_open(2).await;

    // Refusals: over MAX_CONNECTIONS, a private topic without a token, a foreign origin.
    let third = server.subscribe("news", None).await;
    server.until_open(3).await;
    let mut over = server.subscribe("news", None).await;
    assert!(
        over.until_end().await.is_empty(),
        "a retry: hint, then the end"
    );
    drop(third);
    server.until_open(2).await;
    assert_eq!(server.request("private", None).await.status(), 401);
    let foreign_origin = server
        .client
        .get(server.url("/events/news"))
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_origin.status(), 403);
    let now = scrape(&server).await;
    assert_eq!(
        now.since(&before, "sse_replays_total{outcome=\"gap_foreign\"}"),
        1.0
    );
    assert_eq!(now.since(&before, "sse_replayed_events_total"), 2.0 + 3.0);
    assert_eq!(disconnects(&now, "client_closed"), 2.0);
    assert_eq!(connections(&now, "refused_limit"), 1.0);
    assert_eq!(connections(&now, "denied"), 1.0);
    assert_eq!(connections(&now, "refused_origin"), 1.0);
    assert_eq!(connections(&now, "accepted"), 4.0);
    assert_eq!(now.since(&before, "sse_connections_active"), 2.0);
    assert_eq!(now.since(&before, "sse_stream_duration_seconds_count"), 2.0);

    // A slow consumer: a client that reads nothing while the backlog is published falls more
    // than its queue behind; when it reads at last, its stream ends with a retry: hint.
    let mut silent = silent_client(server.addr, "feed", 4096).await;
    server.until_open(3).await;
    let payload = "x".repeat(1024);
    for _ in 0..BACKLOG {
        server
            .hub
            .publish("feed", Event::data(&payload))
            .await
            .unwrap();
    }
    let received = read_to_last_chunk(&mut silent).await;
    server.until_open(2).await;
    let now = scrape(&server).await;
    assert_eq!(disconnects(&now, "slow"), 1.0);
    assert_eq!(
        now.since(&before, "sse_events_published_total"),
        (3 + BACKLOG) as f64
    );
    assert!(now.since(&before, "sse_bytes_sent_total") > received.len() as f64 / 2.0);
    assert!(now.since(&before, "sse_events_sent_total") > 5.0 + 4.0);

    // Closing the topic ends its two streams by themselves; a publish to it then fails.
    let closed = server.publish_raw("/close/news", "").await;
    assert_eq!(closed.status(), 200);
    live.until_end().await;
    resumed.until_end().await;
    assert_eq!(server.try_publish("news", "late").await.unwrap_err().0, 409);
    server.until_open(0).await;
    let now = scrape(&server).await;
    assert_eq!(disconnects(&now, "ended"), 2.0);
    assert_eq!(
        now.since(
            &before,
            "sse_backend_errors_total{kind=\"closed\",operation=\"publish\"}"
        ),
        1.0
    );
    assert_eq!(now.since(&before, "sse_connections_active"), 0.0);

    // What the topics hold, as the hub tells it (asked first: the answer drops what is past
    // the history bounds, and the scrape after it sees that).
    let mut events = 0;
    let mut bytes = 0;
    for topic in ["news", "feed"] {
        let info = server.hub.topic_info(topic).await.unwrap().unwrap();
        events += info.retained_events;
        bytes += info.retained_bytes;
    }
    let now = scrape(&server).await;
    assert_eq!(now.since(&before, "sse_topics_active"), 2.0);
    assert_eq!(now.since(&before, "sse_retained_events"), events as f64);
    assert_eq!(now.since(&before, "sse_retained_bytes"), bytes as f64);

    // A shutdown ends the last stream; the server is gone then, so its recorder is read in
    // process (what `/metrics` renders).
    let mut last = server.subscribe("shut", None).await;
    server.until_open(1).await;
    server.stop().await;
    last.until_end().await;
    let after = render();
    assert_eq!(disconnects(&after, "shutdown"), 1.0);
    assert_eq!(connections(&after, "accepted"), 6.0);
    assert_eq!(after.since(&before, "sse_connections_active"), 0.0);
    // Every stream that opened has ended, and each recorded how long it lasted.
    assert_eq!(
        after.since(&before, "sse_stream_duration_seconds_count"),
        6.0
    );
}

#[tokio::test]
async fn metrics_need_an_admin_token_unless_metrics_public() {
    let server = Server::start(config()).await;
    let url = server.url("/metrics");
    let anonymous = server.client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let publisher = token(Claims::new().publish(["*"]).subscribe(["*"]));
    let not_admin = server
        .client
        .get(&url)
        .header(AUTHORIZATION, bearer(&publisher))
        .send()
        .await
        .unwrap();
    assert_eq!(not_admin.status(), 403);
    scrape(&server).await;
    server.stop().await;

    let public = Server::start(Config {
        metrics_public: true,
        ..config()
    })
    .await;
    let response = public
        .client
        .get(public.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    public.stop().await;
}

#[tokio::test]
async fn metrics_token_reads_metrics_and_nothing_else() {
    let secret = "m".repeat(40);
    let server = Server::start(Config {
        metrics_token: Some(secret.clone()),
        ..config()
    })
    .await;
    let get = |path: &str, authorization: String| {
        server
            .client
            .get(server.url(path))
            .header(AUTHORIZATION, authorization)
            .send()
    };
    let response = get("/metrics", format!("Bearer {secret}")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.text().await.unwrap().contains("sse_"),
        "Prometheus text"
    );
    // Not a token anywhere else, and not a near miss.
    assert_eq!(
        get("/connections", format!("Bearer {secret}"))
            .await
            .unwrap()
            .status(),
        401
    );
    let near = format!("{}n", &secret[..secret.len() - 1]);
    assert_eq!(
        get("/metrics", format!("Bearer {near}"))
            .await
            .unwrap()
            .status(),
        401
    );
    // Admin tokens still read it.
    scrape(&server).await;
    server.stop().await;
}

#[tokio::test]
#[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
async fn with_redis_metrics_show_the_backends_lag_and_its_errors() {
    let _serial = SERIAL.lock().await;
    let mut redis = support::redis_server::RedisServer::start();
    let server = Server::start(Config {
        redis_url: Some(redis.url()),
        ..config()
    })
    .await;
    let before = scrape(&server).await;
    let mut reader = server.subscribe("news", None).await;
    server.until_open(1).await;
    server.publish("news", "one").await;
    assert_eq!(reader.take(1).await[0].data, "one");
    let now = scrape(&server).await;
    assert!(now.since(&before, "sse_backend_lag_seconds_count") >= 1.0);

    // Redis goes away: the publish fails, and so does the reader's blocking read, which
    // notices when its connection drops.
    redis.stop();
    let (status, _) = server.try_publish("news", "two").await.unwrap_err();
    // 503 when nothing was stored, 504 when Redis may have stored it before it went.
    assert!(matches!(status, 503 | 504), "{status}");
    let failed = |now: &Scrape, operation: &str| -> f64 {
        now.0
            .keys()
            .filter(|key| {
                key.starts_with("sse_backend_errors_total{")
                    && key.contains(&format!("operation=\"{operation}\""))
            })
            .map(|key| now.since(&before, key))
            .sum()
    };
    assert!(failed(&scrape(&server).await, "publish") >= 1.0);
    // Scraped until the reader's failure shows, a bounded number of times.
    let mut tries = 0;
    while failed(&scrape(&server).await, "read") < 1.0 {
        tries += 1;
        assert!(tries < 200, "the reader's failure shows within 200 scrapes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(reader);
    server.stop().await;
}
