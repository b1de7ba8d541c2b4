//! Load program: a subscriber that never reads must not grow server memory.
//!
//! ```text
//! cargo bench --bench slow_consumer                 # 50 000 events of 1 KiB
//! EVENTS=200000 cargo bench --bench slow_consumer   # more
//! ```
//!
//! One process runs a hub server on 127.0.0.1, a client that reads every event, and a client
//! that sends its request and then never reads (its receive buffer set small). Events are
//! published in batches paced by the reading client, and the process's resident memory is
//! sampled. The same run is repeated without the silent client, for comparison. At the end the
//! silent client reads: it must find its stream ended with a `retry:` hint, counted as a slow
//! consumer. Figures go to stdout; nothing is asserted on time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};

const PAYLOAD: usize = 1024;
const BATCH: u64 = 200;

async fn subscribe(
    State(hub): State<Hub>,
    Path(topic): Path<String>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    hub.subscribe(&topic, last).await
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn start() -> (SocketAddr, Hub) {
    let hub = Hub::memory();
    let app = Router::new()
        .route("/events/{topic}", get(subscribe))
        .layer(SseLayer::new().registry(hub.registry()))
        .with_state(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hub)
}

/// Sends the request and never reads.
async fn silent_client(addr: SocketAddr, topic: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /events/{topic} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

struct Outcome {
    rss_before: u64,
    rss_after: u64,
    received: u64,
    secs: f64,
}

async fn run(events: u64, with_silent: bool, topic: &str) -> (Outcome, Hub, Option<TcpStream>) {
    let (addr, hub) = start().await;
    let registry = hub.registry();
    let silent = if with_silent {
        Some(silent_client(addr, topic).await)
    } else {
        None
    };
    let received = Arc::new(AtomicU64::new(0));
    let reader = {
        let received = received.clone();
        let url = format!("http://{addr}/events/{topic}");
        tokio::spawn(async move {
            let response = reqwest::get(url).await.unwrap();
            let mut body = response.bytes_stream();
            let mut pending_blank = 0usize;
            while let Some(chunk) = body.next().await {
                // Count events by their blank-line ends (`\n\n`), across chunk boundaries.
                for &b in chunk.unwrap().iter() {
                    if b == b'\n' {
                        pending_blank += 1;
                        if pending_blank == 2 {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        pending_blank = 0;
                    }
                }
            }
        })
    };
    let expected_streams = if with_silent { 2 } else { 1 };
    let mut presence = registry.presence();
    while registry.len() < expected_streams {
        presence.next().await;
    }
    // The reader's first frame (the initial comment) also ends with a blank line.
    while received.load(Ordering::Relaxed) < 1 {
        tokio::task::yield_now().await;
    }
    received.store(0, Ordering::Relaxed);

    let payload = "x".repeat(PAYLOAD);
    let rss_before = rss_kib("VmRSS:");
    let started = Instant::now();
    let mut published = 0u64;
    while published < events {
        for _ in 0..BATCH {
            hub.publish(topic, Event::data(&payload)).await.unwrap();
        }
        published += BATCH;
        // Pace by the reading client, so it never falls a queue behind itself.
        while received.load(Ordering::Relaxed) + BATCH < published {
            tokio::task::yield_now().await;
        }
    }
    while received.load(Ordering::Relaxed) < published {
        tokio::task::yield_now().await;
    }
    let secs = started.elapsed().as_secs_f64();
    let rss_after = rss_kib("VmRSS:");
    reader.abort();
    (
        Outcome {
            rss_before,
            rss_after,
            received: received.load(Ordering::Relaxed),
            secs,
        },
        hub,
        silent,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: u64 = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    println!(
        "slow consumer load: {events} events of {PAYLOAD} B to one reading and one silent client"
    );

    let (control, _, _) = run(events, false, "control").await;
    let (outcome, hub, silent) = run(events, true, "silent").await;

    // The silent client finally reads: it must find its stream ended with a retry hint.
    let mut silent = silent.unwrap();
    let mut tail = Vec::new();
    // The response ends with the last chunk (`0\r\n\r\n`); the connection itself stays open
    // for the next request (HTTP/1.1 keep-alive).
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = vec![0u8; 64 * 1024];
        while !tail.ends_with(b"\r\n0\r\n\r\n") {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => tail.extend_from_slice(&buf[..n]),
            }
        }
        tail.ends_with(b"\r\n0\r\n\r\n")
    })
    .await
    .unwrap_or(false);
    let tail = String::from_utf8_lossy(&tail);
    let retried = tail.contains("\nretry: ");

    let mib = |kib: u64| kib as f64 / 1024.0;
    let published_mib = (events as f64 * PAYLOAD as f64) / (1024.0 * 1024.0);
    println!("published: {published_mib:.1} MiB");
    println!(
        "without the silent client: RSS {:.1} -> {:.1} MiB (+{:.1} MiB), reader got {} events in {:.2} s",
        mib(control.rss_before),
        mib(control.rss_after),
        mib(control.rss_after.saturating_sub(control.rss_before)),
        control.received,
        control.secs
    );
    println!(
        "with the silent client:    RSS {:.1} -> {:.1} MiB (+{:.1} MiB), reader got {} events in {:.2} s",
        mib(outcome.rss_before),
        mib(outcome.rss_after),
        mib(outcome.rss_after.saturating_sub(outcome.rss_before)),
        outcome.received,
        outcome.secs
    );
    println!("peak RSS of the process: {:.1} MiB", mib(rss_kib("VmHWM:")));
    println!(
        "silent client, once it read: stream ended: {ended}, retry hint: {retried}, slow consumers counted: {}, stalled readers counted: {}",
        hub.stats().slow_consumers,
        hub.stats().stalled_readers
    );
}
