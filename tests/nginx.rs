//! Through a real proxy: Debian's nginx in front of the hub server of `examples/hub.rs`, set up
//! the way a deployment that knows nothing about SSE would be: proxy buffering left at its
//! default (on), a 10 s `proxy_read_timeout`, HTTP/1.1 to the upstream. The hub must make it
//! work by itself: `X-Accel-Buffering: no` turns buffering off for its streams, and keep-alive
//! comments (every 3 s here) keep idle streams under the read timeout.
//!
//! Needs `/usr/sbin/nginx` (Debian's `nginx-light`, which `.ci/run` installs), so the tests are
//! ignored unless run with `--include-ignored` (as `.ci/run` does); then a missing nginx fails
//! them.
//!
//! Nothing waits on the clock but the idle test, whose subject is nginx's own timer: the others
//! wait for events, for the end of a stream, or for presence notices, under a failure guard.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use support::client::{EventReader, GUARD};
use support::hub::{Config, Server};
use support::nginx::{Nginx, nginx_binary, publish};
use support::whatwg::{Item, Parser};

/// The hub's keep-alive interval in these tests.
const KEEP_ALIVE: Duration = Duration::from_secs(3);
/// nginx's `proxy_read_timeout`: an upstream silent for this long is cut off.
const PROXY_READ_TIMEOUT_SECS: u64 = 10;

// ---------------------------------------------------------------------------------------------
// The hub server, in process

/// What the nginx cases add to the shared hub server harness.
impl Server {
    /// The example's hub server, keep-alive every 3 s.
    async fn for_nginx() -> Server {
        Server::start(Config {
            keep_alive: KEEP_ALIVE,
            ..support::hub::config()
        })
        .await
    }

    /// The registry ids of the open streams.
    fn stream_ids(&self) -> Vec<u64> {
        self.hub
            .registry()
            .snapshot()
            .iter()
            .map(|c| c.id())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// nginx (`support::nginx`), configured as a deployment that knows nothing about SSE

/// A plain reverse-proxy config. No `proxy_buffering off`: buffering stays at nginx's default
/// (on), and the hub's `X-Accel-Buffering: no` has to turn it off for event streams.
///
/// `/buffered/` is the control: it ignores `X-Accel-Buffering`, so buffering really is on there.
fn config(dir: &Path, port: u16, upstream: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        r#"worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 64;
}}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout {PROXY_READ_TIMEOUT_SECS}s;
        }}
        location /buffered/ {{
            proxy_pass http://{upstream}/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout {PROXY_READ_TIMEOUT_SECS}s;
            proxy_ignore_headers X-Accel-Buffering;
        }}
    }}
}}
"#
    )
}

// ---------------------------------------------------------------------------------------------
// Through nginx

async fn subscribe(client: &reqwest::Client, url: &str) -> EventReader {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{url}"
    );
    EventReader::new(response)
}

/// Each event comes out of nginx before the next is published: the next publish waits for it
/// (under the guard), so an event held back until more data comes (a hub that flushes only full
/// buffers, a compressing proxy) fails the test, however long the guard. It cannot tell nginx's
/// buffering on from off: nginx 1.22 passes small events on at once to a reader that keeps up
/// either way (through the `/buffered/` location too, tried here). The next test can.
#[tokio::test]
#[ignore = "needs nginx: run with --include-ignored, as .ci/run does"]
async fn each_event_comes_through_nginx_before_the_next_is_published() {
    let binary = nginx_binary();
    let hub = Server::for_nginx().await;
    let nginx = Nginx::start(binary, |dir, port| config(dir, port, hub.addr));
    // With the publisher's token on every request.
    let client = support::hub::authorized_client();

    let mut reader = subscribe(&client, &nginx.url("/events/live")).await;
    hub.until_open(1).await;
    // Small events, a few dozen bytes each: far below any buffer size.
    for n in 1..=3 {
        let data = format!("small event {n}");
        let id = publish(&client, &nginx.url("/publish/live"), &data).await;
        let event = reader.next().await.expect("the stream stays open");
        assert_eq!(
            (event.data.as_str(), event.last_event_id),
            (data.as_str(), id)
        );
    }
    drop(reader);
    hub.stop().await;
}

/// What `X-Accel-Buffering: no` really changes, shown by a reader that stalls. Buffering on,
/// nginx keeps reading from the hub and piles the backlog into a temporary file on its own disk
/// (up to 1 GiB by default), out of reach of the hub's slow-consumer handling: the hub sees a
/// reader that keeps up, and the stalled client, once it reads, gets every event. Buffering off,
/// nginx reads no further than the client takes, so the backlog stays at the hub, which ends
/// the stream of a subscriber more than its queue (1024 events) behind: the client, once it
/// reads, gets what the sockets held, a `retry:` hint and the end, long before the last event.
/// Both outcomes are things the client reads, so nothing here waits on the clock. The
/// `/buffered/` location, which ignores the header, is the control showing the stall is big
/// enough to make nginx buffer.
#[tokio::test]
#[ignore = "needs nginx: run with --include-ignored, as .ci/run does"]
async fn x_accel_buffering_keeps_a_stalled_reader_s_backlog_out_of_nginx() {
    let binary = nginx_binary();
    let hub = Server::for_nginx().await;
    let nginx = Nginx::start(binary, |dir, port| config(dir, port, hub.addr));

    // Through the plain location: the hub's header turns buffering off.
    let mut stalled = Stalled::open(&nginx, "/events/slow").await;
    hub.until_open(1).await;
    let ids = publish_backlog(&hub, "slow").await;
    let received = stalled.read_until(ids.last().unwrap()).await;
    assert!(
        received.len() < ids.len() - QUEUE,
        "the stalled reader got {} of {} events: nginx took the backlog off the hub\n{}",
        received.len(),
        ids.len(),
        nginx.logs()
    );
    assert_eq!(received, ids[..received.len()], "a prefix, in order");
    assert!(stalled.retry().is_some(), "ended with a retry: hint");
    assert!(
        !nginx.logs().contains(BUFFERED_TO_FILE),
        "nginx buffered a stream whose upstream said X-Accel-Buffering: no:\n{}",
        nginx.logs()
    );
    hub.until_open(0).await;

    // The control: the same stall where nginx ignores the header.
    let mut stalled = Stalled::open(&nginx, "/buffered/events/held").await;
    hub.until_open(1).await;
    let ids = publish_backlog_at_nginx_pace(&hub, "held").await;
    let received = stalled.read_until(ids.last().unwrap()).await;
    assert!(
        received == ids && nginx.logs().contains(BUFFERED_TO_FILE),
        "with buffering forced on, nginx did not take the whole backlog into a temporary file \
         (the stalled reader got {} of {} events), so the first half of this test shows \
         nothing:\n{}",
        received.len(),
        ids.len(),
        nginx.logs()
    );
    drop(stalled);
    hub.stop().await;
}

/// What nginx logs (at `warn`) when it spills a response to a temporary file.
const BUFFERED_TO_FILE: &str = "buffered to a temporary file";
/// How far behind the hub lets a subscriber fall before it ends its stream (the example's
/// hub keeps the default `subscriber_queue`).
const QUEUE: usize = 1024;
/// The backlog's events: three times the queue, 48 MiB in all, many times what the loopback
/// sockets between the hub, nginx and the reader hold (a few MiB).
const BACKLOG_EVENTS: usize = 3 * QUEUE;
const EVENT_BYTES: usize = 16 * 1024;

/// An event stream requested through nginx on a socket with a small receive buffer, which the
/// test does not read while the backlog is published. HTTP/1.0, so that nginx sends the body
/// as it is (no chunked encoding) and closes the connection at its end.
struct Stalled {
    stream: tokio::net::TcpStream,
    parser: Parser,
}

impl Stalled {
    /// Sends the request and reads the response headers, no further.
    async fn open(nginx: &Nginx, path: &str) -> Stalled {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket
            .connect(SocketAddr::from(([127, 0, 0, 1], nginx.port)))
            .await
            .unwrap();
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0; 1];
            let n = tokio::time::timeout(GUARD, stream.read(&mut byte))
                .await
                .expect("response headers within the guard time")
                .unwrap();
            assert_eq!(n, 1, "nginx closed the connection before the headers");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        Stalled {
            stream,
            parser: Parser::new(),
        }
    }

    /// Reads until the event `last` or the end of the stream; returns the ids received.
    async fn read_until(&mut self, last: &str) -> Vec<String> {
        use tokio::io::AsyncReadExt;
        let mut ids = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = tokio::time::timeout(GUARD, self.stream.read(&mut buf))
                .await
                .expect("nginx sends something within the guard time")
                .unwrap();
            if n == 0 {
                return ids;
            }
            for item in self.parser.feed_items(&buf[..n]) {
                if let Item::Event(event) = item {
                    assert_eq!(event.data.len(), EVENT_BYTES, "{:?}", event.event_type);
                    ids.push(event.last_event_id);
                    if ids.last().is_some_and(|id| id == last) {
                        return ids;
                    }
                }
            }
        }
    }

    /// The `retry:` hint received, if any.
    fn retry(&self) -> Option<u64> {
        self.parser.retry()
    }
}

/// Publishes the backlog straight to the hub; returns the events' ids.
async fn publish_backlog(hub: &Server, topic: &str) -> Vec<String> {
    let data = "x".repeat(EVENT_BYTES);
    let mut ids = Vec::with_capacity(BACKLOG_EVENTS);
    for _ in 0..BACKLOG_EVENTS {
        ids.push(hub.publish(topic, &data).await);
    }
    ids
}

/// The backlog, published no further ahead of what the hub has handed to nginx than half the
/// subscriber queue: nginx, spilling to its temporary file, may fall behind a publisher on a
/// busy machine, and the hub would end its stream as a slow consumer, which is not what the
/// control is about. Waits on the registry's count of events sent, under the guard.
async fn publish_backlog_at_nginx_pace(hub: &Server, topic: &str) -> Vec<String> {
    let data = "x".repeat(EVENT_BYTES);
    let registry = hub.hub.registry();
    let sent = || {
        registry
            .snapshot()
            .iter()
            .find(|c| c.topic() == Some(topic))
            .map_or(0, |c| c.events_sent() as usize)
    };
    let mut ids = Vec::with_capacity(BACKLOG_EVENTS);
    for published in 0..BACKLOG_EVENTS {
        if published >= QUEUE / 2 {
            let caught_up = async {
                while sent() + QUEUE / 2 <= published {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            tokio::time::timeout(GUARD, caught_up)
                .await
                .expect("nginx takes the events within the guard time");
        }
        ids.push(hub.publish(topic, &data).await);
    }
    ids
}

#[tokio::test]
#[ignore = "needs nginx: run with --include-ignored, as .ci/run does"]
async fn idle_stream_survives_30_s_through_a_10_s_proxy_read_timeout() {
    let binary = nginx_binary();
    let hub = Server::for_nginx().await;
    let nginx = Nginx::start(binary, |dir, port| config(dir, port, hub.addr));
    // With the publisher's token on every request.
    let client = support::hub::authorized_client();

    let mut reader = subscribe(&client, &nginx.url("/events/quiet")).await;
    hub.until_open(1).await;
    let before = hub.stream_ids();

    // Three read timeouts' worth of silence from the publisher. Real time: what is under test
    // is nginx's own timer, which only the clock moves.
    let idle = Duration::from_secs(3 * PROXY_READ_TIMEOUT_SECS);
    tokio::time::sleep(idle).await;

    // The same stream, still registered at the hub: nginx did not cut it.
    let after = hub.stream_ids();
    assert_eq!(after, before, "the hub still holds the same one stream");
    let id = publish(&client, &nginx.url("/publish/quiet"), "after 30 s").await;
    let event = reader.next().await.unwrap_or_else(|| {
        panic!(
            "nginx ended the idle stream (proxy_read_timeout?):\n{}",
            nginx.logs()
        )
    });
    assert_eq!(
        (event.data.as_str(), event.last_event_id),
        ("after 30 s", id)
    );

    // What kept it open: keep-alive comments every 3 s, each one resetting nginx's timer. On
    // the real clock, so one may fall just outside the idle time: one fewer is accepted.
    let comments = Parser::new()
        .feed_items(reader.raw())
        .into_iter()
        .filter(is_keep_alive)
        .count();
    let expected = (idle.as_secs() / KEEP_ALIVE.as_secs()) as usize;
    assert!(
        comments >= expected - 1,
        "{comments} keep-alive comments in {idle:?} (expected about {expected})"
    );
    let log = nginx.logs();
    assert!(!log.contains("timed out"), "nginx logged a timeout:\n{log}");
    drop(reader);
    hub.stop().await;
}

/// A comment between two events, as keep-alives are.
fn is_keep_alive(item: &Item) -> bool {
    matches!(
        item,
        Item::Comment {
            mid_event: false,
            ..
        }
    )
}
