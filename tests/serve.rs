//! `tower_sse::serve` over real sockets: hostile and careless clients (a head sent a byte at a
//! time, connections that send nothing, half a head or a full TCP window at shutdown) are cut
//! off on time, HTTP/1 and HTTP/2 both work, and handlers and the layer see the peer's
//! address.
//!
//! Timeouts run on tokio's paused clock (`start_paused`), which jumps to the next timer
//! whenever the runtime has nothing else to do: the loopback socket delivers what a client
//! writes before the runtime is idle again, so the times measured are the server's own, exact
//! and instant. The client and the server share the one thread of the test's runtime. A test
//! where data flows both ways while the clock matters (a window update from the kernel may come
//! after the runtime found nothing to do, and the clock would jump) runs in real time instead,
//! with a short deadline and a bound.

mod support;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use futures_util::stream::{self, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_sse::registry::Registry;
use tower_sse::{Event, EventStream, SseLayer};

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const DEADLINE: Duration = Duration::from_secs(5);
/// The deadline of the test that runs in real time, and what a busy machine may add to it.
const REAL_DEADLINE: Duration = Duration::from_secs(1);
const REAL_SLACK: Duration = Duration::from_secs(2);
/// What a paused clock may add to a timer: none of it, but a tick of slack costs nothing.
const SLACK: Duration = Duration::from_millis(5);

/// `/` answers "hello"; `/peer` the peer address from `ConnectInfo`; `/events` is an event
/// stream of `size`-byte events, without end, through the layer.
fn app(sse: &SseLayer, started: Arc<Notify>, size: usize) -> Router {
    let payload = "x".repeat(size);
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/events",
            get(move || async move {
                started.notify_one();
                EventStream::new(stream::repeat_with(move || Event::data(&payload)))
            }),
        )
        .layer(sse.clone())
}

/// A server on `127.0.0.1:0` serving [`app`], shut down by `stop` through the layer.
struct Server {
    addr: SocketAddr,
    registry: Registry,
    started: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(event_size: usize) -> Server {
        Server::start_with_deadline(event_size, DEADLINE).await
    }

    async fn start_with_deadline(event_size: usize, deadline: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Registry::new();
        let sse = SseLayer::new().registry(registry.clone());
        let started = Arc::new(Notify::new());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = support::serve(listener, app(&sse, started.clone(), event_size))
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            .send_buffer_size(16 * 1024)
            .with_graceful_shutdown(sse.shutdown_on(async {
                let _ = stopped.await;
            }))
            .shutdown_deadline(deadline);
        Server {
            addr,
            registry,
            started,
            stop: Some(stop),
            task: tokio::spawn(server.into_future()),
        }
    }

    /// `GET path` with `client`, checked to be answered over `version`.
    async fn get(
        &self,
        client: &reqwest::Client,
        path: &str,
        version: reqwest::Version,
    ) -> reqwest::Response {
        let url = format!("http://{}{path}", self.addr);
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.version(), version);
        response
    }

    /// Starts the shutdown; the time it took to return once it does.
    async fn shut_down(&mut self) -> Duration {
        let start = Instant::now();
        self.stop.take().unwrap().send(()).unwrap();
        (&mut self.task).await.unwrap().unwrap();
        start.elapsed()
    }
}

/// Reads until the server closes the connection (an end of file or a reset); what it read.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends the head of `GET path` over `stream`.
async fn send_get(stream: &mut TcpStream, path: &str) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
}

/// Sends `GET path` over `stream` and reads the response to "hello" (or any body ending with
/// `until`).
async fn request(stream: &mut TcpStream, path: &str, until: &str) -> String {
    send_get(stream, path).await;
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    while !received.ends_with(until.as_bytes()) {
        let n = stream.read(&mut buf).await.unwrap();
        assert_ne!(n, 0, "the server closed the connection mid-response");
        received.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(received).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_head_sent_a_byte_at_a_time_is_cut_off_after_the_header_read_timeout() {
    let server = Server::start(16).await;
    // A request head that never ends, one byte per 100 ms.
    let head = b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ";
    let elapsed =
        support::head_cut_off_after(server.addr, head, 1, Duration::from_millis(100)).await;
    assert!(
        elapsed >= HEADER_READ_TIMEOUT && elapsed <= HEADER_READ_TIMEOUT + SLACK,
        "cut off after {elapsed:?}, not the header read timeout ({HEADER_READ_TIMEOUT:?})"
    );
}

/// Silent connections: 5 000, each closed when it has been open for the idle timeout.
const SILENT: usize = 5_000;

#[tokio::test(start_paused = true)]
async fn connections_that_send_nothing_are_closed_after_the_idle_timeout() {
    let server = Server::start(16).await;
    let mut waiting = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let opened = Instant::now();
        waiting.push(tokio::spawn(async move {
            let received = read_to_close(&mut stream).await;
            (opened.elapsed(), received.len())
        }));
    }
    for waiter in waiting {
        let (open_for, received) = waiter.await.unwrap();
        assert_eq!(received, 0, "a silent connection is answered nothing");
        assert!(
            open_for >= IDLE_TIMEOUT && open_for <= IDLE_TIMEOUT + SLACK,
            "a silent connection was closed after {open_for:?}, not the idle timeout \
             ({IDLE_TIMEOUT:?})"
        );
    }

    // The server still serves.
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        request(&mut client, "/", "hello")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout_not_before() {
    let server = Server::start(16).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        request(&mut client, "/", "hello")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let idle_since = Instant::now();
    read_to_close(&mut client).await;
    // HTTP/1 waits for the next head under the header read timeout, the shorter of the two.
    let idle_for = idle_since.elapsed();
    assert!(
        idle_for >= HEADER_READ_TIMEOUT && idle_for <= HEADER_READ_TIMEOUT + SLACK,
        "an idle kept-alive connection was closed after {idle_for:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn half_sent_heads_do_not_hold_the_shutdown() {
    let mut server = Server::start(16).await;
    // A connection that sent half of its first head, and one that sent half of its second.
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    first.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        request(&mut second, "/", "hello")
            .await
            .starts_with("HTTP/1.1 200")
    );
    second.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    // The server accepts in order and has answered on `second`: it holds both.

    let took = server.shut_down().await;
    assert!(
        took < DEADLINE,
        "the shutdown took {took:?}; half a head is no request to finish"
    );
    assert!(read_to_close(&mut first).await.is_empty());
    assert!(read_to_close(&mut second).await.is_empty());
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_hold_the_shutdown_past_its_deadline() {
    let mut server = Server::start_with_deadline(64 * 1024, REAL_DEADLINE).await;
    // A client with a tiny receive window, which asks for an endless stream and never reads.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    send_get(&mut stalled, "/events").await;
    server.started.notified().await;
    // A stream that reads along shows the layer's shutdown ending streams meanwhile.
    let mut reading = TcpStream::connect(server.addr).await.unwrap();
    send_get(&mut reading, "/events").await;
    server.started.notified().await;
    let reader = tokio::spawn(async move { read_to_close(&mut reading).await });

    let took = server.shut_down().await;
    assert!(
        took >= REAL_DEADLINE && took <= REAL_DEADLINE + REAL_SLACK,
        "the shutdown took {took:?}, not its deadline ({REAL_DEADLINE:?})"
    );
    let read = reader.await.unwrap();
    let tail = String::from_utf8_lossy(&read[read.len().saturating_sub(300)..]).into_owned();
    assert!(
        read.ends_with(b"\n\n\r\n0\r\n\r\n") && tail.contains("retry: "),
        "the reading client's stream ends with a retry: hint and the end of the body: {tail:?}"
    );
    // The stalled one was reset: what it can still read is cut short, then it ends.
    read_to_close(&mut stalled).await;
    assert_eq!(server.registry.len(), 0);
}

#[tokio::test]
async fn http2_and_http1_are_both_served() {
    let mut server = Server::start(16).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = server.get(&h2, "/", reqwest::Version::HTTP_2).await;
    assert_eq!(response.text().await.unwrap(), "hello");

    // An event stream over HTTP/2, through the layer, read along.
    let response = server.get(&h2, "/events", reqwest::Version::HTTP_2).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (first_event, got_first_event) = oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut received = Vec::new();
        let mut first_event = Some(first_event);
        while let Some(chunk) = body.next().await {
            received.extend_from_slice(&chunk.unwrap());
            if received.windows(8).any(|w| w == b"data: xx")
                && let Some(first_event) = first_event.take()
            {
                first_event.send(()).unwrap();
            }
        }
        received
    });
    got_first_event.await.unwrap();

    let h1 = reqwest::Client::new();
    let response = server.get(&h1, "/", reqwest::Version::HTTP_11).await;
    assert_eq!(response.text().await.unwrap(), "hello");

    // The shutdown ends the HTTP/2 stream and returns well before the deadline.
    let took = server.shut_down().await;
    assert!(took < DEADLINE, "the shutdown took {took:?}");
    let received = reader.await.unwrap();
    assert!(String::from_utf8_lossy(&received[received.len() - 100..]).contains("retry: "));
}

#[tokio::test]
async fn handlers_and_the_layer_see_the_peer_address() {
    let server = Server::start(16).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let local = client.local_addr().unwrap();
    let response = request(&mut client, "/peer", &local.to_string()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // The layer's registry lists an open stream with its peer.
    let mut streaming = TcpStream::connect(server.addr).await.unwrap();
    let local = streaming.local_addr().unwrap();
    send_get(&mut streaming, "/events").await;
    let mut buf = [0; 1024];
    assert_ne!(streaming.read(&mut buf).await.unwrap(), 0);
    let peers: Vec<_> = server
        .registry
        .snapshot()
        .iter()
        .map(|c| c.peer())
        .collect();
    assert_eq!(peers, [Some(local)]);
}

/// What axum's `serve` takes, `serve` takes: a router, a make-service, one with connect info,
/// and any tower service.
#[tokio::test]
async fn make_services_and_plain_tower_services_are_served_too() {
    async fn peer(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
        peer.to_string()
    }
    let router = Router::new().route("/peer", get(peer));
    let tower_service =
        tower::service_fn(|_: http::Request<tower_sse::serve::RequestBody>| async {
            Ok::<_, Infallible>(http::Response::new("plain tower".to_owned()))
        });
    let listeners = [(); 3].map(|()| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let addrs = listeners.each_ref().map(|l| l.local_addr().unwrap());
    let [with_info, make, plain] = listeners.map(|l| {
        l.set_nonblocking(true).unwrap();
        TcpListener::from_std(l).unwrap()
    });
    let tasks = [
        tokio::spawn(
            support::serve(
                with_info,
                router
                    .clone()
                    .into_make_service_with_connect_info::<SocketAddr>(),
            )
            .into_future(),
        ),
        tokio::spawn(support::serve(make, router.into_make_service()).into_future()),
        tokio::spawn(support::serve(plain, tower_service).into_future()),
    ];
    for addr in &addrs[..2] {
        let mut client = TcpStream::connect(addr).await.unwrap();
        let local = client.local_addr().unwrap().to_string();
        assert!(
            request(&mut client, "/peer", &local)
                .await
                .starts_with("HTTP/1.1 200")
        );
    }
    let mut client = TcpStream::connect(addrs[2]).await.unwrap();
    assert!(
        request(&mut client, "/", "plain tower")
            .await
            .starts_with("HTTP/1.1 200")
    );
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_has_its_connection_reset_after_the_write_timeout() {
    const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
    const KEEP_ALIVE: Duration = Duration::from_secs(1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = Registry::new();
    let sse = SseLayer::new()
        .registry(registry.clone())
        .keep_alive(KEEP_ALIVE)
        .write_timeout(WRITE_TIMEOUT);
    let started = Arc::new(Notify::new());
    let server = support::serve(listener, app(&sse, started.clone(), 64 * 1024))
        .idle_timeout(IDLE_TIMEOUT)
        .send_buffer_size(16 * 1024);
    let _task = tokio::spawn(server.into_future());

    // A client with a tiny receive window, which asks for an endless stream and never reads.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    send_get(&mut stalled, "/events").await;
    started.notified().await;
    let asked = Instant::now();

    // The server resets the connection (an error on the client's socket, which a plain close
    // would not raise) without the client reading a byte.
    let reset = tokio::time::timeout(
        WRITE_TIMEOUT + KEEP_ALIVE + REAL_SLACK,
        stalled.ready(tokio::io::Interest::ERROR),
    )
    .await;
    assert!(
        reset.is_ok(),
        "the stalled connection is still open {:?} after its request",
        asked.elapsed()
    );
    let took = asked.elapsed();
    assert!(
        took >= WRITE_TIMEOUT && took <= WRITE_TIMEOUT + KEEP_ALIVE + REAL_SLACK,
        "reset {took:?} after the request"
    );
    read_to_close(&mut stalled).await;
    assert_eq!(registry.len(), 0);
    assert_eq!(registry.stats().stalled, 1);
}

#[tokio::test]
async fn a_client_that_stops_reading_when_only_keep_alives_are_due_is_reset_after_the_write_timeout()
 {
    const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
    const KEEP_ALIVE: Duration = Duration::from_secs(1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = Registry::new();
    let sse = SseLayer::new()
        .registry(registry.clone())
        .keep_alive(KEEP_ALIVE)
        .write_timeout(WRITE_TIMEOUT);
    // One event larger than the socket buffers on both sides, then nothing but keep-alives:
    // hyper takes a keep-alive into its write queue each interval (up to 16 of them) whether or
    // not the socket takes bytes, so the body alone would see the stall only after a dozen
    // intervals. The socket's own view ends it within the write timeout.
    let payload = "x".repeat(256 * 1024);
    let started = Arc::new(Notify::new());
    let notify = started.clone();
    let router = Router::new()
        .route(
            "/quiet",
            get(move || async move {
                notify.notify_one();
                EventStream::new(
                    stream::once(async move { Event::data(&payload) }).chain(stream::pending()),
                )
            }),
        )
        .layer(sse.clone());
    let server = support::serve(listener, router)
        .idle_timeout(IDLE_TIMEOUT)
        .send_buffer_size(16 * 1024);
    let _task = tokio::spawn(server.into_future());

    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    send_get(&mut stalled, "/quiet").await;
    started.notified().await;
    let asked = Instant::now();

    let bound = WRITE_TIMEOUT + KEEP_ALIVE + REAL_SLACK;
    let reset = tokio::time::timeout(bound, stalled.ready(tokio::io::Interest::ERROR)).await;
    assert!(
        reset.is_ok(),
        "the stalled connection is still open {:?} after its request",
        asked.elapsed()
    );
    let took = asked.elapsed();
    assert!(took >= WRITE_TIMEOUT, "reset {took:?} after the request");
    read_to_close(&mut stalled).await;
    assert_eq!(registry.len(), 0);
    assert_eq!(registry.stats().stalled, 1);
}
