//! Through a real proxy: Debian's nginx in front of the hub server of `examples/hub.rs`, set up
//! the way a deployment that knows nothing about SSE would be: proxy buffering left at its
//! default (on), a 10 s `proxy_read_timeout`, HTTP/1.1 to the upstream. The hub must make it
//! work by itself: `X-Accel-Buffering: no` turns buffering off for its streams, and keep-alive
//! comments (every 3 s here) keep idle streams under the read timeout.
//!
//! Needs `/usr/sbin/nginx` (Debian's `nginx-light`, which `.ci/run` installs). Without it the
//! tests are skipped with a notice, except under `CI=true`, where they fail.

mod support;

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::client::{EventReader, GUARD};
use support::hub::{Config, Server};
use support::whatwg::{Item, Parser};

/// The hub's keep-alive interval in these tests.
const KEEP_ALIVE: Duration = Duration::from_secs(3);
/// nginx's `proxy_read_timeout`: an upstream silent for this long is cut off.
const PROXY_READ_TIMEOUT_SECS: u64 = 10;
/// How soon a published event must come out of nginx. Buffered, it would wait there until 4 or
/// 8 KiB had piled up, or the stream ended.
const PROMPT: Duration = Duration::from_secs(2);

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
// nginx, as a child process with its own config, logs and temp files

/// Where Debian puts nginx; `NGINX` overrides it.
fn nginx_path() -> PathBuf {
    std::env::var_os("NGINX").map_or_else(|| "/usr/sbin/nginx".into(), PathBuf::from)
}

/// nginx, or `None` (the test then returns early) when it is not installed and not under CI.
fn nginx_or_skip(test: &str) -> Option<PathBuf> {
    let path = nginx_path();
    if path.exists() {
        return Some(path);
    }
    let path = path.display();
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!(
            "nginx not found at {path} (CI=true, so this fails rather than skips: .ci/run \
             installs nginx-light; locally, `apt-get install nginx-light`)"
        );
    }
    eprintln!("skipping {test}: nginx not found at {path} (apt-get install nginx-light)");
    None
}

/// A running nginx, stopped and its directory removed on drop.
struct Nginx {
    binary: PathBuf,
    dir: PathBuf,
    conf: PathBuf,
    child: Child,
    port: u16,
}

impl Nginx {
    /// Starts nginx in front of `upstream` and waits until it accepts connections.
    fn start(binary: PathBuf, upstream: SocketAddr) -> Nginx {
        // The free port is found by binding and releasing it; should another process take it
        // in between, nginx fails to start and the next attempt uses another port.
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Nginx::try_start(binary.clone(), upstream) {
                Ok(nginx) => return nginx,
                Err(err) => failures.push(err),
            }
        }
        panic!("nginx did not start:\n{}", failures.join("\n---\n"));
    }

    fn try_start(binary: PathBuf, upstream: SocketAddr) -> Result<Nginx, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "tower-sse-nginx-{}-{port}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nginx.conf");
        fs::write(&conf, config(&dir, port, upstream)).unwrap();
        let stderr = fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(&binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", binary.display()));
        let mut nginx = Nginx {
            binary,
            dir,
            conf,
            child,
            port,
        };
        let deadline = Instant::now() + GUARD;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nginx);
            }
            if let Some(status) = nginx.child.try_wait().unwrap() {
                return Err(format!("nginx exited ({status}):\n{}", nginx.logs()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx did not accept connections on port {port} within {GUARD:?}:\n{}",
                    nginx.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What nginx wrote to its stderr and error log, for failure messages.
    fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A fast shutdown through the master process, so that its workers go too; SIGKILL if
        // that does not end it in time.
        let _ = Command::new(&self.binary)
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(&self.conf)
            .args(["-g", "daemon off;", "-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

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

/// Publishes `data` through nginx and returns the id the hub gave it.
async fn publish(client: &reqwest::Client, url: &str, data: &str) -> String {
    let response = client.post(url).body(data.to_owned()).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn events_come_through_nginx_without_buffering_delay() {
    let Some(binary) = nginx_or_skip("events_come_through_nginx_without_buffering_delay") else {
        return;
    };
    let hub = Server::for_nginx().await;
    let nginx = Nginx::start(binary, hub.addr);
    let client = reqwest::Client::new();

    let mut reader = subscribe(&client, &nginx.url("/events/live")).await;
    hub.until_open(1).await;
    // Small events, a few dozen bytes each: far below any buffer size.
    for n in 1..=3 {
        let data = format!("small event {n}");
        let published = Instant::now();
        let id = publish(&client, &nginx.url("/publish/live"), &data).await;
        let event = tokio::time::timeout(PROMPT, reader.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "event {n} did not come out of nginx within {PROMPT:?}: buffered?\n{}",
                    nginx.logs()
                )
            })
            .expect("the stream stays open");
        assert_eq!(
            (event.data.as_str(), event.last_event_id),
            (data.as_str(), id)
        );
        eprintln!("event {n} through nginx in {:?}", published.elapsed());
    }
    drop(reader);
    hub.stop().await;
}

/// What `X-Accel-Buffering: no` really changes. With a reader that keeps up, nginx 1.22 passes
/// small events on at once even with buffering on (seen here: through the `/buffered/` location
/// a small event arrived within milliseconds too), so promptness alone cannot show that the
/// header works. A reader that stalls
/// shows it: buffering on, nginx keeps reading from the hub and piles the backlog into a
/// temporary file on its own disk (up to 1 GiB by default), out of reach of the hub's
/// slow-consumer handling; buffering off, nginx reads no further than the reader takes, and
/// the backlog stays at the hub. The `/buffered/` location, which ignores the header, is the
/// control showing the stall is big enough to make nginx buffer.
#[tokio::test]
async fn x_accel_buffering_keeps_a_stalled_reader_s_backlog_out_of_nginx() {
    let Some(binary) =
        nginx_or_skip("x_accel_buffering_keeps_a_stalled_reader_s_backlog_out_of_nginx")
    else {
        return;
    };
    let hub = Server::for_nginx().await;
    let nginx = Nginx::start(binary, hub.addr);

    // Through the plain location: the hub's header turns buffering off.
    let stalled = stall(&nginx, "/events/slow").await;
    hub.until_open(1).await;
    let sent = publish_backlog(&hub, "slow").await;
    eprintln!("buffering off: {sent} of {BACKLOG_BYTES} bytes left the hub");
    assert!(
        sent < BACKLOG_BYTES / 2,
        "only what the sockets hold left the hub ({sent} of {BACKLOG_BYTES} bytes)"
    );
    assert!(
        !nginx.logs().contains(BUFFERED_TO_FILE),
        "nginx buffered a stream whose upstream said X-Accel-Buffering: no:\n{}",
        nginx.logs()
    );
    drop(stalled);
    hub.until_open(0).await;

    // The control: the same stall where nginx ignores the header.
    let stalled = stall(&nginx, "/buffered/events/held").await;
    hub.until_open(1).await;
    let sent = publish_backlog(&hub, "held").await;
    eprintln!("buffering forced on: {sent} of {BACKLOG_BYTES} bytes left the hub");
    assert!(
        sent >= BACKLOG_BYTES && nginx.logs().contains(BUFFERED_TO_FILE),
        "with buffering forced on, nginx did not take the whole backlog into a temporary file \
         ({sent} of {BACKLOG_BYTES} bytes left the hub), so the first half of this test shows \
         nothing:\n{}",
        nginx.logs()
    );
    drop(stalled);
    hub.stop().await;
}

/// What nginx logs (at `warn`) when it spills a response to a temporary file.
const BUFFERED_TO_FILE: &str = "buffered to a temporary file";
/// More than the loopback sockets between the hub, nginx and the reader can hold (a few MiB).
const BACKLOG_BYTES: u64 = 48 * 1024 * 1024;

/// Requests `path` through nginx on a socket with a small receive buffer, reads the response
/// headers, then never reads again.
async fn stall(nginx: &Nginx, path: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], nginx.port)))
        .await
        .unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
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
    stream
}

/// Publishes `BACKLOG_BYTES` in 64 KiB events straight to the hub, waits until the hub's
/// writes to the stalled stream have stopped, and returns how many bytes it wrote.
async fn publish_backlog(hub: &Server, topic: &str) -> u64 {
    let client = reqwest::Client::new();
    let url = format!("http://{}/publish/{topic}", hub.addr);
    let data = "x".repeat(64 * 1024);
    for _ in 0..BACKLOG_BYTES / (64 * 1024) {
        let response = client.post(&url).body(data.clone()).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let sent = || {
        hub.hub
            .registry()
            .snapshot()
            .iter()
            .map(|c| c.bytes_sent())
            .sum::<u64>()
    };
    // Settled: nothing more left the hub for half a second.
    let deadline = Instant::now() + GUARD;
    let mut last = sent();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sent();
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "the hub's writes settle");
        last = now;
    }
}

#[tokio::test]
async fn idle_stream_survives_30_s_through_a_10_s_proxy_read_timeout() {
    let Some(binary) = nginx_or_skip("idle_stream_survives_30_s_through_a_10_s_proxy_read_timeout")
    else {
        return;
    };
    let hub = Server::for_nginx().await;
    let nginx = Nginx::start(binary, hub.addr);
    let client = reqwest::Client::new();

    let mut reader = subscribe(&client, &nginx.url("/events/quiet")).await;
    hub.until_open(1).await;
    let before = hub.stream_ids();

    // Three read timeouts' worth of silence from the publisher.
    let idle = Duration::from_secs(3 * PROXY_READ_TIMEOUT_SECS);
    tokio::time::sleep(idle).await;

    // The same stream, still registered at the hub: nginx did not cut it.
    let after = hub.stream_ids();
    assert_eq!(after, before, "the hub still holds the same one stream");
    let id = publish(&client, &nginx.url("/publish/quiet"), "after 30 s").await;
    let event = tokio::time::timeout(PROMPT, reader.next())
        .await
        .unwrap_or_else(|_| panic!("no event within {PROMPT:?} after the idle time"))
        .unwrap_or_else(|| {
            panic!(
                "nginx ended the idle stream (proxy_read_timeout?):\n{}",
                nginx.logs()
            )
        });
    assert_eq!(
        (event.data.as_str(), event.last_event_id),
        ("after 30 s", id)
    );

    // What kept it open: keep-alive comments every 3 s, each one resetting nginx's timer.
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
