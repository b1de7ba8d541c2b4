//! What the README promises about the hub server (`examples/hub.rs`), each under a test that
//! fails when the promise is broken (issue 17):
//!
//! - `/health` answers 200 with `{"backend":"ok"}`, and 503 with `Retry-After` and its JSON
//!   while Redis is down; a publish then answers 503 with `Retry-After` too ("Several servers:
//!   Redis Streams").
//! - "Each server uses two Redis connections, whatever the number of subscribers": counted
//!   with `CLIENT LIST` while 1 000 subscribers listen on one server.
//! - The README's own nginx config, taken from README.md when the test runs, in front of three
//!   hub servers on one Redis: publish through nginx, receive on subscribers spread over the
//!   three, resume on another server after `Last-Event-ID`.
//! - "SIGINT or SIGTERM ends every stream with a `retry:` hint and exits": the example's own
//!   process, `target/debug/examples/hub` (which `cargo test` builds).
//! - "Slow consumers and memory": a subscriber that never reads leaves the hub holding a
//!   bounded number of bytes while many times more are published, and finds its stream ended
//!   with a `retry:` hint when it finally reads. Counted in bytes, never in time.
//!
//! The browser promises (the page at `/`, a limit refusal the browser recovers from by itself)
//! are in `tests/browser/hub_page.test.mjs` and `tests/browser/limits.test.mjs`.
//!
//! Tests that need `redis-server` or nginx start their own; they are ignored unless run with
//! `--include-ignored` (as `.ci/run` does), and then a missing one fails them. Nothing sleeps to
//! synchronise: tests wait on presence notices, on events received, or poll `/health`,
//! `/connections` or `CLIENT LIST` between short pauses under a guard while another process
//! gets there.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::client::{EventReader, GUARD, get_json, silent_client};
use support::hub::{Config, Server, config, hub_server};
use support::whatwg::{ParsedEvent, Parser};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tower_sse::Event;

/// The pause between two looks at something another process changes (never a way to wait).
const POLL: Duration = Duration::from_millis(10);

/// Polls `check` until it gives a value, pausing [`POLL`] between looks; fails after the guard
/// time with `what`.
async fn until<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    tokio::time::timeout(GUARD, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("waited {GUARD:?} for {what}"))
}

fn ids(events: &[ParsedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.last_event_id.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// The promises that need Redis

#[cfg(feature = "redis")]
mod with_redis {
    use super::*;
    use support::nginx::publish;
    use support::redis_server::RedisServer;

    // -----------------------------------------------------------------------------------------
    // /health and Retry-After while Redis is down

    /// `GET /health`: its status, its `Retry-After` header and its JSON.
    async fn health(server: &Server) -> (u16, Option<String>, Value) {
        let response = server
            .client
            .get(server.url("/health"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|err| panic!("/health answered {status} with {body:?}: {err}"));
        (status, retry_after, json)
    }

    /// Polls `/health` until it answers `status`.
    async fn until_health(server: &Server, status: u16) -> (u16, Option<String>, Value) {
        until(&format!("/health to answer {status}"), || async {
            let answer = health(server).await;
            (answer.0 == status).then_some(answer)
        })
        .await
    }

    /// A `Retry-After` in seconds (RFC 9110: delay-seconds), at least 1.
    fn assert_retry_after(value: Option<&str>, what: &str) {
        let value = value.unwrap_or_else(|| panic!("{what}: no Retry-After"));
        let secs: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("{what}: Retry-After {value:?} is not delay-seconds"));
        assert!(secs >= 1, "{what}: Retry-After {secs}");
    }

    async fn server_on(redis: &RedisServer) -> Server {
        Server::start(Config {
            redis_url: Some(redis.url()),
            ..config()
        })
        .await
    }

    #[tokio::test]
    #[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
    async fn health_and_publish_answer_503_with_retry_after_while_redis_is_down() {
        let mut redis = RedisServer::start();
        let server = server_on(&redis).await;
        server.publish("news", "connected").await;
        let (status, _, json) = health(&server).await;
        assert_eq!((status, json), (200, json!({ "backend": "ok" })));

        redis.stop();
        let (_, retry_after, json) = until_health(&server, 503).await;
        assert_retry_after(retry_after.as_deref(), "/health while Redis is down");
        assert_eq!(json["backend"], "unavailable", "{json}");
        let error = json["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "the JSON says what is wrong: {json}");

        // A publish meanwhile: 503, told when to try again, and told why.
        let response = server.publish_raw("/publish/news", "while down").await;
        assert_eq!(response.status(), 503);
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_retry_after(retry_after.as_deref(), "a publish while Redis is down");
        let body = response.text().await.unwrap();
        assert!(body.contains("unavailable"), "{body:?}");

        redis.restart();
        let (_, _, json) = until_health(&server, 200).await;
        assert_eq!(json, json!({ "backend": "ok" }));
        server.publish("news", "back").await;
    }

    // -----------------------------------------------------------------------------------------
    // Two Redis connections per server, whatever the number of subscribers

    const SUBSCRIBERS: usize = 1000;
    const TOPICS: usize = 100;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs redis-server: run with --include-ignored, as .ci/run does"]
    async fn one_server_uses_two_redis_connections_with_a_thousand_subscribers() {
        let redis = RedisServer::start();
        let server = server_on(&redis).await;
        let mut raw = redis.raw().await;
        server.publish("t0", "warm up").await;
        // The reader connects by itself, the command connection at the first command: wait
        // until both are up, then count.
        let before = tokio::time::timeout(GUARD, async {
            loop {
                let clients = raw.other_clients().await;
                if clients.len() >= 2 {
                    return clients;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await
        .expect("the server connects to Redis within the guard time");
        assert_eq!(
            before.len(),
            2,
            "with no subscriber:\n{}",
            before.join("\n")
        );

        // 1 000 subscribers on 100 topics, opened 100 at a time.
        let topic = |n: usize| format!("t{}", n % TOPICS);
        let mut readers = Vec::with_capacity(SUBSCRIBERS);
        for chunk in (0..SUBSCRIBERS).collect::<Vec<_>>().chunks(100) {
            let opened = futures_util::future::join_all(
                chunk.iter().map(|&n| server.subscribe_owned(topic(n))),
            )
            .await;
            readers.extend(opened);
        }
        server.until_open(SUBSCRIBERS).await;

        // Each of them live, through Redis: one event per topic reaches its ten subscribers.
        let mut sent = Vec::new();
        for t in 0..TOPICS {
            sent.push(server.publish(&format!("t{t}"), &format!("to t{t}")).await);
        }
        for (n, reader) in readers.iter_mut().enumerate() {
            let event = reader.next().await.expect("the stream stays open");
            assert_eq!(
                (event.data, event.last_event_id),
                (format!("to {}", topic(n)), sent[n % TOPICS].clone())
            );
        }

        let during = raw.other_clients().await;
        assert_eq!(
            during.len(),
            2,
            "with {SUBSCRIBERS} subscribers on {TOPICS} topics:\n{}",
            during.join("\n")
        );
    }

    impl Server {
        /// [`Server::subscribe`] with an owned topic, for many at once.
        async fn subscribe_owned(&self, topic: String) -> EventReader {
            self.subscribe(&topic, None).await
        }
    }

    // -----------------------------------------------------------------------------------------
    // The README's nginx config, three hub servers, one Redis

    /// The nginx config in README.md, section "Several servers: Redis Streams", as written.
    fn readme_nginx_config() -> String {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
                .expect("README.md");
        let section = readme
            .split_once("## Several servers: Redis Streams")
            .expect("README.md has the section \"Several servers: Redis Streams\"")
            .1;
        let block = section
            .split_once("```nginx\n")
            .expect("the section has an ```nginx block")
            .1;
        block
            .split_once("```")
            .expect("the nginx block ends")
            .0
            .to_owned()
    }

    /// Replaces the one occurrence of `from` in `config` with `to`; fails when `from` is not
    /// there exactly once, so that a README that changes breaks the test instead of being
    /// tested half.
    fn substitute(config: &str, from: &str, to: &str) -> String {
        assert_eq!(
            config.matches(from).count(),
            1,
            "the README's nginx config has {from:?} once:\n{config}"
        );
        config.replace(from, to)
    }

    /// The README's config with only what must change on a test machine: the three upstream
    /// addresses (the README's 127.0.0.1:3001..3003), the listening port (its 8080), and where
    /// nginx keeps its pid, logs and temporary files (the README's command runs it with
    /// `-p "$PWD"`; the test gives it a directory of its own).
    fn readme_config_for(dir: &Path, port: u16, upstreams: &[SocketAddr]) -> String {
        let mut config = readme_nginx_config();
        for (n, upstream) in upstreams.iter().enumerate() {
            let readme_addr = format!("server 127.0.0.1:{};", 3001 + n);
            config = substitute(&config, &readme_addr, &format!("server {upstream};"));
        }
        config = substitute(
            &config,
            "listen 127.0.0.1:8080;",
            &format!("listen 127.0.0.1:{port};"),
        );
        let dir = dir.display();
        let paths = format!(
            "http {{\n  access_log {dir}/access.log;\n  client_body_temp_path {dir}/client_body;\n  \
             proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n  \
             uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n"
        );
        config = substitute(&config, "http {\n", &paths);
        format!("pid {dir}/nginx.pid;\n{config}")
    }

    /// Which of `servers` holds the stream that presented `last` as its `Last-Event-ID`, once
    /// one does (the stream registers while nginx passes the request on).
    async fn server_holding(servers: &[Server], last: &str) -> usize {
        until(&format!("a stream resuming after {last}"), || async {
            servers.iter().position(|server| {
                server
                    .hub
                    .registry()
                    .snapshot()
                    .iter()
                    .any(|c| c.last_event_id() == Some(last))
            })
        })
        .await
    }

    /// How many streams each server holds.
    fn streams(servers: &[Server]) -> Vec<usize> {
        servers.iter().map(|s| s.hub.registry().len()).collect()
    }

    /// `GET url` with one header.
    async fn get_with(
        client: &reqwest::Client,
        url: &str,
        header: &str,
        value: &str,
    ) -> reqwest::Response {
        client.get(url).header(header, value).send().await.unwrap()
    }

    #[tokio::test]
    #[ignore = "needs redis-server and nginx: run with --include-ignored, as .ci/run does"]
    async fn the_readme_nginx_config_serves_three_hub_servers_on_one_redis() {
        let binary = support::nginx::nginx_binary();
        let redis = RedisServer::start();
        let mut servers = Vec::new();
        for _ in 0..3 {
            // nginx passes on the Host clients sent it (`$http_host`): the servers answer for
            // nginx's name, as the README's command says with ALLOW_HOSTS=127.0.0.1:8080 (here
            // nginx listens on a free port, chosen once the servers run).
            servers.push(
                Server::start(Config {
                    redis_url: Some(redis.url()),
                    allow_hosts: vec!["127.0.0.1".to_owned()],
                    ..config()
                })
                .await,
            );
        }
        let upstreams: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let nginx = support::nginx::Nginx::start(binary, |dir, port| {
            readme_config_for(dir, port, &upstreams)
        });
        // With the publisher's token on every request.
        let client = support::hub::authorized_client();
        let events_url = nginx.url("/events/news");
        let publish_url = nginx.url("/publish/news");

        // Six subscribers through nginx, spread over the three servers.
        let mut readers = Vec::new();
        for n in 1..=6 {
            let response = client.get(&events_url).send().await.unwrap();
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            readers.push(EventReader::new(response));
            until(&format!("{n} streams at the servers"), || async {
                (streams(&servers).iter().sum::<usize>() == n).then_some(())
            })
            .await;
        }
        let spread = streams(&servers);
        assert!(
            spread.iter().all(|&n| n >= 1),
            "nginx spreads the subscribers over the three servers: {spread:?}\n{}",
            nginx.logs()
        );

        // Published through nginx (on whichever server it picks): every subscriber, wherever
        // it is, gets every event once, in order, with the same ids.
        let mut published = Vec::new();
        for n in 0..9 {
            published.push(publish(&client, &publish_url, &format!("event {n}")).await);
        }
        for reader in &mut readers {
            let events = reader.take(9).await;
            assert_eq!(ids(&events), published);
            assert_eq!(events[8].data, "event 8");
        }

        // A client drops, misses events, and comes back through nginx with its Last-Event-ID,
        // three times: it gets exactly what it missed each time, on whichever server nginx
        // picks, and at least once on another server than the one it left.
        let mut reader = readers.pop().unwrap();
        let mut last = published.last().unwrap().clone();
        let mut on = None;
        let mut moved = 0;
        let mut all_missed = Vec::new();
        for round in 0..3 {
            drop(reader);
            let mut missed = Vec::new();
            for n in 0..3 {
                let data = format!("missed {round}.{n}");
                missed.push(publish(&client, &publish_url, &data).await);
            }
            reader = EventReader::new(get_with(&client, &events_url, "Last-Event-ID", &last).await);
            let server = server_holding(&servers, &last).await;
            if on.is_some_and(|before| before != server) {
                moved += 1;
            }
            on = Some(server);
            let events = reader.take(3).await;
            assert_eq!(ids(&events), missed, "round {round}, on server {server}");
            last = missed.last().unwrap().clone();
            all_missed.extend(missed);
        }
        assert!(
            moved >= 1,
            "the client resumed on another server at least once"
        );
        // The other subscribers got those events too, and live ones keep coming to all.
        let live = publish(&client, &publish_url, "live").await;
        all_missed.push(live.clone());
        for reader in &mut readers {
            assert_eq!(ids(&reader.until_id(&live).await), all_missed);
        }
        assert_eq!(ids(&reader.until_id(&live).await), [live]);

        // `proxy_set_header Host $http_host`: a page served through nginx is same-origin for
        // the hub, which compares its Origin with the Host nginx passes on.
        let origin = format!("http://127.0.0.1:{}", nginx.port);
        let response = get_with(&client, &events_url, "Origin", &origin).await;
        assert_eq!(
            response.status(),
            200,
            "a same-origin stream through nginx ({origin})"
        );
        drop(response);
        let response = get_with(&client, &events_url, "Origin", "http://elsewhere.example").await;
        assert_eq!(response.status(), 403, "the control: another origin");
    }

    impl EventReader {
        /// Every event up to and including the one with id `id`.
        async fn until_id(&mut self, id: &str) -> Vec<ParsedEvent> {
            let mut events = Vec::new();
            loop {
                let event = self.next().await.expect("the stream stays open");
                let done = event.last_event_id == id;
                events.push(event);
                if done {
                    return events;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SIGINT and SIGTERM: the example's own process

/// The hub example as its own process, `target/debug/examples/hub`.
struct HubProcess {
    child: tokio::process::Child,
    url: String,
    stdout: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl HubProcess {
    /// The binary next to this test's (`target/debug/deps/promises-…` →
    /// `target/debug/examples/hub`), whatever the target directory.
    fn binary() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary is in target/<profile>/deps");
        let binary = profile.join("examples").join("hub");
        assert!(
            binary.exists(),
            "{} does not exist: `cargo test` builds it (unless one `--test` is selected); \
             `cargo build --examples` does too",
            binary.display()
        );
        binary
    }

    /// Starts it on a free port and waits for its `listening on http://ADDR` line.
    async fn start() -> HubProcess {
        HubProcess::start_logging("warn").await
    }

    /// The same, with `RUST_LOG` set to `log`.
    async fn start_logging(log: &str) -> HubProcess {
        let mut child = tokio::process::Command::new(HubProcess::binary())
            .env("ADDR", "127.0.0.1:0")
            .env("JWT_SECRET", support::hub::SECRET)
            .env("RUST_LOG", log)
            .env_remove("REDIS_URL")
            .env_remove("MAX_CONNECTIONS")
            .env_remove("JWT_PUBLIC_KEY")
            .env_remove("PUBLIC_TOPICS")
            .env_remove("ALLOW_HOSTS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run the hub example");
        // Every line it prints and logs, for as long as it runs (so the pipes never fill).
        let mut stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        let url = tokio::time::timeout(GUARD, async {
            loop {
                let line = stdout
                    .recv()
                    .await
                    .expect("the hub exited before listening");
                if let Some(url) = line.strip_prefix("listening on ") {
                    return url.trim_end_matches('/').to_owned();
                }
            }
        })
        .await
        .expect("the hub listens within the guard time");
        HubProcess {
            child,
            url,
            stdout,
            stderr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends `signal` (`INT`, `TERM`) to the process.
    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {pid}");
    }

    /// Waits for the process to exit; its status and what it printed after `listening on`.
    async fn exit(self) -> (ExitStatus, Vec<String>) {
        let (status, printed, _) = self.exit_with_logs().await;
        (status, printed)
    }

    /// The same, and every line it wrote to stderr (its logs).
    async fn exit_with_logs(mut self) -> (ExitStatus, Vec<String>, Vec<String>) {
        let status = tokio::time::timeout(GUARD, self.child.wait())
            .await
            .expect("the hub exits within the guard time")
            .unwrap();
        let mut printed = Vec::new();
        while let Some(line) = self.stdout.recv().await {
            printed.push(line);
        }
        let mut logged = Vec::new();
        while let Some(line) = self.stderr.recv().await {
            eprintln!("hub: {line}");
            logged.push(line);
        }
        (status, printed, logged)
    }
}

/// The lines read from `pipe`, by a task of their own until it closes.
fn lines_of(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (lines, received) = tokio::sync::mpsc::unbounded_channel();
    let mut reader = BufReader::new(pipe).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            let _ = lines.send(line);
        }
    });
    received
}

/// Opens streams on the hub process, signals it, and checks that each stream ends with a
/// `retry:` hint after its last complete event and that the process exits 0.
async fn streams_end_with_a_retry_hint_and_the_process_exits_0_on(signal: &str) {
    let hub = HubProcess::start().await;
    // With the publisher's token (signed with the process's JWT_SECRET) on every request.
    let client = support::hub::authorized_client();
    let mut readers = Vec::new();
    for topic in ["a", "a", "b"] {
        let response = client.get(hub.url(&format!("/events/{topic}"))).send();
        readers.push((topic, EventReader::new(response.await.unwrap())));
    }
    until("three streams in /connections", || async {
        let list = get_json(&client, &hub.url("/connections")).await;
        (list.as_array().unwrap().len() == 3).then_some(())
    })
    .await;
    for topic in ["a", "b"] {
        let response = client
            .post(hub.url(&format!("/publish/{topic}")))
            .body(format!("to {topic}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for (topic, reader) in &mut readers {
        assert_eq!(reader.next().await.unwrap().data, format!("to {topic}"));
    }

    hub.signal(signal);
    for (topic, reader) in &mut readers {
        assert!(
            reader.until_end().await.is_empty(),
            "{topic}: no more events"
        );
        let retry = reader.retry().expect("each stream ends with a retry: hint");
        // The default shutdown hint: 2 s, ±50 % jitter.
        assert!((1000..=3000).contains(&retry), "{topic}: retry {retry} ms");
        let tail = format!("\n\nretry: {retry}\n\n");
        assert!(
            reader.raw().ends_with(tail.as_bytes()),
            "{topic}: the hint comes last, after a complete event: {:?}",
            String::from_utf8_lossy(reader.raw())
        );
    }
    let (status, printed) = hub.exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "SIG{signal}: {status}; printed {printed:?}"
    );
    assert_eq!(printed, ["shut down"]);
}

#[tokio::test]
async fn sigint_ends_every_stream_with_a_retry_hint_and_the_hub_exits_0() {
    streams_end_with_a_retry_hint_and_the_process_exits_0_on("INT").await;
}

#[tokio::test]
async fn sigterm_ends_every_stream_with_a_retry_hint_and_the_hub_exits_0() {
    streams_end_with_a_retry_hint_and_the_process_exits_0_on("TERM").await;
}

#[tokio::test]
async fn the_hub_logs_to_stderr_and_prints_only_its_own_lines_to_stdout() {
    // Debug logs on: a stream opened and a shutdown with it open log several lines.
    let hub = HubProcess::start_logging("debug").await;
    let response = reqwest::get(hub.url("/events/news")).await.unwrap();
    let mut reader = EventReader::new(response);
    hub.signal("TERM");
    assert!(reader.until_end().await.is_empty());
    let (status, printed, logged) = hub.exit_with_logs().await;
    assert_eq!(status.code(), Some(0), "{status}");
    // Stdout: only what the hub prints for people and scripts (`listening on` came first).
    assert_eq!(printed, ["shut down"]);
    assert!(
        logged.iter().any(|line| line.contains("DEBUG")),
        "the logs are on stderr: {logged:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Slow consumers and memory

/// Events published, 1 KiB each, as in `benches/slow_consumer.rs`.
const EVENTS: usize = 20_000;
const PAYLOAD: usize = 1024;
/// Published between two reads of the reading client, which so stays within its queue.
const BATCH: usize = 200;
/// The README's defaults: events a subscriber may fall behind (`subscriber_queue`), events
/// kept per topic (`HISTORY`).
const QUEUE: usize = 1024;
const HISTORY: usize = 1000;
/// The send buffer of the hub's sockets (set on the listener; accepted sockets inherit it).
const SEND_BUFFER: u32 = 64 * 1024;
/// What may leave the hub for a client that never reads: the kernel's send buffer (which it
/// doubles) and the client's receive buffer, plus hyper's write buffer (at most about 400 KiB)
/// and a few events.
const SENT_BOUND: u64 = 1024 * 1024;

/// Reads a chunked HTTP/1.1 response to its last chunk; its body. Fails as soon as more than
/// `limit` bytes have come.
async fn read_chunked_response(stream: &mut tokio::net::TcpStream, limit: usize) -> Vec<u8> {
    let mut received = Vec::new();
    let body_start = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        read_more(stream, &mut received, limit).await;
    };
    let head = String::from_utf8_lossy(&received[..body_start]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let mut body = Vec::new();
    let mut at = body_start;
    loop {
        // A chunk: its size in hex, CRLF, the bytes, CRLF. Read more until it is all here.
        let parsed = received[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|line| {
                let size = std::str::from_utf8(&received[at..at + line]).unwrap();
                (line, usize::from_str_radix(size, 16).unwrap())
            })
            .filter(|&(line, size)| received.len() >= at + line + 2 + size + 2);
        match parsed {
            Some((_, 0)) => return body,
            Some((line, size)) => {
                let data = at + line + 2;
                body.extend_from_slice(&received[data..data + size]);
                at = data + size + 2;
            }
            None => read_more(stream, &mut received, limit).await,
        }
    }
}

/// Appends what the socket has to `received`, up to `limit` bytes in all.
async fn read_more(stream: &mut tokio::net::TcpStream, received: &mut Vec<u8>, limit: usize) {
    let mut buf = [0; 16 * 1024];
    let n = tokio::time::timeout(GUARD, stream.read(&mut buf))
        .await
        .expect("the hub sends something within the guard time")
        .unwrap();
    assert_ne!(n, 0, "the hub closed the connection before the last chunk");
    received.extend_from_slice(&buf[..n]);
    assert!(
        received.len() <= limit,
        "more than {limit} bytes came: the stream was not cut where it stood"
    );
}

#[tokio::test]
async fn a_subscriber_that_never_reads_leaves_the_hub_holding_a_bounded_number_of_bytes() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(SEND_BUFFER).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1024).unwrap();
    let app = hub_server::app(&Config {
        history: HISTORY,
        // What is under test is the hub's own cut (`subscriber_queue`), not the layer's write
        // timeout, which would end the stream too on a machine slow enough to take 30 s.
        write_timeout: None,
        ..config()
    })
    .await
    .unwrap();
    let server = Server::serve_on(listener, app, reqwest::Client::new());

    let mut silent = silent_client(server.addr, "feed", 4096).await;
    server.until_open(1).await;
    let silent_peer = silent.local_addr().unwrap();
    let mut reader = server.subscribe("feed", None).await;
    server.until_open(2).await;

    // Publish 20 MiB, paced by the reading client, looking after each publish at what the
    // topic holds.
    let payload = "x".repeat(PAYLOAD);
    let mut published = Vec::with_capacity(EVENTS);
    let mut held_most = 0;
    let mut event_len = 0;
    for _ in 0..EVENTS / BATCH {
        for _ in 0..BATCH {
            let stored = server.hub.publish("feed", Event::data(&payload)).await;
            let stored = stored.unwrap();
            event_len = stored.event().len();
            published.push(stored.id().to_owned());
            let info = server.hub.topic_info("feed").await.unwrap().unwrap();
            held_most = held_most.max(info.retained_bytes);
        }
        let got = reader.take(BATCH).await;
        assert_eq!(ids(&got), published[published.len() - BATCH..]);
    }
    let published_bytes = EVENTS * event_len;
    let bound = (QUEUE + 1).max(HISTORY) * event_len;
    eprintln!(
        "published {} KiB; the topic held at most {} KiB (bound {} KiB)",
        published_bytes / 1024,
        held_most / 1024,
        bound / 1024
    );
    assert!(
        published_bytes >= 15 * bound,
        "the test publishes many times the bound"
    );
    assert!(
        held_most <= bound,
        "the topic held {held_most} bytes for a subscriber that never reads; at most \
         {QUEUE} events behind are kept for it ({bound} bytes)"
    );

    // What left the hub for the silent client is what its sockets and hyper hold.
    let sent = server
        .hub
        .registry()
        .snapshot()
        .iter()
        .find(|c| c.peer() == Some(silent_peer))
        .expect("the silent client's stream is still registered")
        .bytes_sent();
    eprintln!("{sent} bytes left the hub for the silent client");
    assert!(
        sent <= SENT_BOUND,
        "{sent} bytes were handed over for a client that never reads (bound {SENT_BOUND})"
    );
    assert_eq!(server.hub.stats().slow_consumers, 0, "not yet found out");

    // It reads at last: what had left the hub for it, then a retry: hint, and the response
    // ends. (With chunk framing and the head, a little more than that comes over the socket.)
    let sent = usize::try_from(sent).unwrap();
    let body = read_chunked_response(&mut silent, sent + sent / 16 + 4096).await;
    assert!(
        body.len() <= sent + 64,
        "{} bytes came, {sent} had left the hub: the stream was not cut where it stood",
        body.len()
    );
    let mut parser = Parser::new();
    let events = parser.feed(&body);
    assert!(!events.is_empty() && events.len() < EVENTS);
    assert_eq!(
        ids(&events),
        published[..events.len()],
        "the oldest events, in order"
    );
    let retry = parser.retry().expect("its stream ends with a retry: hint");
    assert!(
        body.ends_with(format!("retry: {retry}\n\n").as_bytes()),
        "the hint comes last: {:?}",
        String::from_utf8_lossy(&body[body.len().saturating_sub(200)..])
    );
    assert_eq!(server.hub.stats().slow_consumers, 1);

    // Cut off, it is gone from the registry, and the reader goes on.
    server.until_open(1).await;
    let last = server.publish("feed", "after").await;
    let event = reader.next().await.unwrap();
    assert_eq!((event.data.as_str(), event.last_event_id), ("after", last));
    drop(reader);
    server.stop().await;
}
