//! A client that stops reading, over a real socket: its receive buffer is tiny and it never
//! reads, while the hub publishes more than the socket buffers and hyper's write buffer hold.
//! Served by plain `axum::serve`: the layer alone ends the stream (`SseLayer::write_timeout`),
//! within the write timeout and one keep-alive interval, and frees its slot. A client that
//! reads the same events on the same topic keeps its stream.
//!
//! Waits are on signals (presence notices, the reader's progress), each under a bound that
//! fails the test instead of hanging it.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};
use tower_sse::registry::{Presence, PresenceStream};
use tower_sse::{Event, Hub};

mod support;
use support::hub::{Config, config, hub_server};

const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Events of 512 KiB: 16 of them (8 MiB) are more than the silent client's socket buffers
/// (its receive buffer is a few KiB, the server's send buffer grows to 4 MiB at most) and
/// hyper's write buffer take, and less than the hub keeps per topic by default (16 MiB).
const EVENT_BYTES: usize = 512 * 1024;
const EVENTS: usize = 16;
/// Fails a wait that should take milliseconds.
const GUARD: Duration = Duration::from_secs(30);

/// The hub server of `examples/hub.rs` with a cap of two streams, served by plain
/// `axum::serve`: nothing but the layer bounds a stalled reader.
async fn start() -> (SocketAddr, Hub) {
    let app = hub_server::app(&Config {
        keep_alive: KEEP_ALIVE,
        write_timeout: Some(WRITE_TIMEOUT),
        max_connections: Some(2),
        ..config()
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router;
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    (addr, app.hub)
}

/// Sends its request and never reads, with a receive buffer as small as the kernel allows.
async fn silent_client(addr: SocketAddr, topic: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /events/{topic} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// The next presence notice, within the guard.
async fn notice(presence: &mut PresenceStream) -> Presence {
    timeout(GUARD, presence.next())
        .await
        .expect("a presence notice")
        .expect("the registry is alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_ended_within_the_write_timeout_and_frees_its_slot() {
    let (addr, hub) = start().await;
    let registry = hub.registry();
    let mut presence = registry.presence();

    let silent = silent_client(addr, "news").await;
    let silent_id = match notice(&mut presence).await {
        Presence::Connected(info) => info.id(),
        other => panic!("expected the silent client to connect, got {other:?}"),
    };
    let connected = Instant::now();

    // A client that reads everything, on the same topic.
    let reader = reqwest::get(format!("http://{addr}/events/news"))
        .await
        .unwrap();
    assert!(matches!(
        notice(&mut presence).await,
        Presence::Connected(_)
    ));
    // At the cap of two: a third is refused.
    let refused = reqwest::get(format!("http://{addr}/events/news"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        refused.starts_with(": too many connections\n"),
        "{refused:?}"
    );

    let payload = "x".repeat(EVENT_BYTES);
    for _ in 0..EVENTS {
        hub.publish("news", Event::data(&payload)).await.unwrap();
    }
    let published = Instant::now();

    // The reader gets every event (so the server was writing all along).
    let reading = tokio::spawn(async move {
        let mut body = reader.bytes_stream();
        // Blank lines end the initial comment and each event.
        let (mut breaks, mut ends) = (0, 0);
        while ends < EVENTS + 1 {
            let chunk = timeout(GUARD, body.next())
                .await
                .expect("the reader gets its events")
                .expect("the stream goes on")
                .unwrap();
            for &b in chunk.iter() {
                breaks = if b == b'\n' { breaks + 1 } else { 0 };
                ends += usize::from(breaks == 2);
            }
        }
        body
    });

    // The silent client's stream ends: it has accepted nothing for the write timeout.
    let gone = loop {
        match notice(&mut presence).await {
            Presence::Disconnected(info) if info.id() == silent_id => break info,
            Presence::Disconnected(info) => panic!("the reader was disconnected: {info:?}"),
            Presence::Connected(_) => {}
        }
    };
    let ended = published.elapsed();
    assert!(
        ended <= WRITE_TIMEOUT + KEEP_ALIVE,
        "ended {ended:?} after the last publish"
    );
    assert!(
        connected.elapsed() >= WRITE_TIMEOUT,
        "ended before the write timeout"
    );
    assert!(gone.bytes_sent() < (EVENTS * EVENT_BYTES) as u64);

    // Its slot is free: the registry holds the reader only, and a new stream is admitted.
    assert_eq!(registry.len(), 1);
    let stats = registry.stats();
    assert_eq!((stats.stalled, stats.refused, stats.opened), (1, 1, 2));
    assert_eq!(hub.stats().stalled_readers, 1);
    let _body = reading.await.unwrap();
    assert_eq!(registry.len(), 1, "the reader keeps its stream");
    let again = reqwest::get(format!("http://{addr}/events/news"))
        .await
        .unwrap();
    let mut again = again.bytes_stream();
    let first = timeout(GUARD, again.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b":\n\n");
    assert!(matches!(
        notice(&mut presence).await,
        Presence::Connected(_)
    ));
    assert_eq!(registry.len(), 2);
    drop(silent);
}
