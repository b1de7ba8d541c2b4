//! Compressed event streams over real sockets (invariant 9: the layer never writes into a body
//! it cannot read), read by clients that decode: reqwest with its gzip, Brotli and zstd
//! decoders, and `curl --compressed` (zlib, libbrotli and libzstd) where curl is installed.
//!
//! - The layer's own compression (`SseLayer::compression`), for each encoding, with one context
//!   per stream and shared (`Compression::shared`, each event compressed once for all
//!   streams): every event is read fully decoded before the next one is published, and a
//!   keep-alive arrives decodable while the stream idles; a hub's topic fans out to several
//!   decoding clients at once.
//! - tower-http's `CompressionLayer`, with a predicate that compresses event streams
//!   (`SizeAbove`), in both orders: inside `SseLayer` (the layer passes the encoded stream on
//!   untouched), and outside it (it compresses everything the layer writes).
//!
//! Waits are for bytes to arrive, bounded by [`WAIT`]; the only sleep gives keep-alive comments
//! a chance to be (wrongly) written into an encoded stream.
#![cfg(feature = "compression")]

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use futures_util::StreamExt as _;
use reqwest::header;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::SizeAbove;
use tower_sse::layer::Compression;
use tower_sse::{Event, EventStream, SseLayer};

/// How long any one wait for bytes may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);
const KEEP_ALIVE: Duration = Duration::from_millis(200);

/// Each stream the server opens hands the test the sender of its events.
type Opened = mpsc::UnboundedSender<mpsc::Sender<Event>>;

async fn events(State(opened): State<Opened>) -> EventStream<ReceiverStream<Event>> {
    let (tx, rx) = mpsc::channel(16);
    let _ = opened.send(tx);
    EventStream::new(ReceiverStream::new(rx))
}

/// A server on a free port whose `/events` is `router` with its stream handler; returns its
/// URL and the streams it opens.
async fn start(layers: impl FnOnce(Router<Opened>) -> Router<Opened>) -> (String, Streams) {
    let (opened, streams) = mpsc::unbounded_channel();
    let app = layers(Router::new().route("/events", get(events))).with_state(opened);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, streams)
}

/// The next stream the server opened.
async fn opened(streams: &mut Streams) -> mpsc::Sender<Event> {
    tokio::time::timeout(WAIT, streams.recv())
        .await
        .expect("the stream opened")
        .unwrap()
}

/// Reads a decoded response body as it arrives.
struct Reader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    text: String,
}

impl Reader {
    fn new(response: reqwest::Response) -> Reader {
        Reader {
            body: response.bytes_stream().boxed(),
            text: String::new(),
        }
    }

    /// Everything up to and including the first `what` still unread, once it has arrived.
    async fn through(&mut self, what: &str) -> String {
        loop {
            if let Some(at) = self.text.find(what) {
                return self.text.drain(..at + what.len()).collect();
            }
            let chunk = tokio::time::timeout(WAIT, self.body.next())
                .await
                .unwrap_or_else(|_| panic!("waited for {what:?}; got {:?}", self.text))
                .unwrap_or_else(|| panic!("ended before {what:?}; got {:?}", self.text))
                .expect("a decodable body");
            self.text
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The rest of the body, which must end and decode cleanly.
    async fn rest(mut self) -> String {
        while let Some(chunk) = tokio::time::timeout(WAIT, self.body.next())
            .await
            .expect("the body ended")
        {
            let chunk = chunk.expect("a decodable body to the end");
            self.text
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
        self.text
    }
}

/// A client that decodes gzip, Brotli and zstd (reqwest's defaults with those features).
fn decoding() -> reqwest::Client {
    reqwest::Client::new()
}

/// A client that leaves bodies encoded, to see the headers and bytes as sent.
fn raw() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .build()
        .unwrap()
}

async fn request(client: &reqwest::Client, url: &str, accept_encoding: &str) -> reqwest::Response {
    let response = client
        .get(url)
        .header(header::ACCEPT, "text/event-stream")
        .header(header::ACCEPT_ENCODING, accept_encoding)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
}

fn event(i: usize) -> (Event, String) {
    let data = format!("{{\"n\":{i},\"html\":\"<div id=row{i}>row {i}</div>\"}}");
    (Event::data(data.clone()), format!("data: {data}\n\n"))
}

/// Publishes `count` events one at a time, each read fully decoded before the next is sent.
async fn one_at_a_time(events: &mpsc::Sender<Event>, reader: &mut Reader, count: usize) {
    for i in 0..count {
        let (event, wire) = event(i);
        events.send(event).await.unwrap();
        let read = reader.through(&wire).await;
        // Keep-alive comments may come before it, nothing else.
        let before = &read[..read.len() - wire.len()];
        assert_eq!(
            before.trim_start_matches(":\n\n"),
            "",
            "event {i}: {read:?}"
        );
    }
}

fn header_of(response: &reqwest::Response, name: header::HeaderName) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The server's streams, as [`start`] hands them over.
type Streams = mpsc::UnboundedReceiver<mpsc::Sender<Event>>;

/// Opens a stream as a client that does not decode, asking for `coding`; asserts that it is
/// sent with `Content-Encoding: sent_as` (exactly one) and returns it.
async fn assert_sent_as(
    url: &str,
    streams: &mut Streams,
    coding: &str,
    sent_as: &str,
) -> reqwest::Response {
    let response = request(&raw(), url, coding).await;
    let _events = opened(streams).await;
    assert_eq!(header_of(&response, header::CONTENT_ENCODING), [sent_as]);
    response
}

/// The first bytes of a response's body, as sent.
async fn first_bytes(response: reqwest::Response) -> bytes::Bytes {
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(WAIT, body.next()).await.unwrap();
    first.unwrap().unwrap()
}

/// Opens a stream as a client that decodes, asking for `coding`, and reads the layer's stream
/// decoded: its initial comment, events each read before the next is published, a keep-alive
/// while it idles, and a clean end.
async fn assert_decoded_as_sent(url: &str, streams: &mut Streams, coding: &str) {
    let mut reader = Reader::new(request(&decoding(), url, coding).await);
    let events = opened(streams).await;
    assert_eq!(
        reader.through(":\n\n").await,
        ":\n\n",
        "{coding}: initial comment"
    );
    one_at_a_time(&events, &mut reader, 10).await;
    let idle = reader.through(":\n\n").await;
    assert_eq!(idle, ":\n\n", "{coding}: keep-alive while idle");
    let (last, wire) = event(10);
    events.send(last).await.unwrap();
    drop(events);
    let rest = reader.rest().await;
    assert_eq!(rest.trim_start_matches(":\n\n"), wire, "{coding}: the end");
}

// ---------------------------------------------------------------------------------------------
// The layer's own compression
// ---------------------------------------------------------------------------------------------

/// The layer's compression with one context per stream.
fn per_stream() -> SseLayer {
    SseLayer::new()
        .keep_alive(KEEP_ALIVE)
        .compression(Compression::new().per_stream())
}

#[tokio::test]
async fn per_stream_compression_decodes_each_event_as_soon_as_it_is_sent() {
    let (url, mut streams) = start(|router| router.layer(per_stream())).await;
    for coding in ["gzip", "br", "zstd"] {
        let first = first_bytes(assert_sent_as(&url, &mut streams, coding, coding).await).await;
        assert!(!first.starts_with(b":"), "{coding}: {first:?}");
        assert_decoded_as_sent(&url, &mut streams, coding).await;
    }
}

#[tokio::test]
async fn compressed_streams_vary_on_accept_encoding() {
    let (url, mut streams) = start(|router| router.layer(compressing())).await;
    for coding in ["gzip", "identity"] {
        let response = request(&raw(), &url, coding).await;
        let _events = opened(&mut streams).await;
        let vary = header_of(&response, header::VARY);
        assert!(
            vary.iter()
                .any(|v| v.eq_ignore_ascii_case("accept-encoding")),
            "{coding}: {vary:?}"
        );
    }
}

#[tokio::test]
async fn a_client_that_accepts_no_encoding_gets_the_plain_stream() {
    let (url, mut streams) = start(|router| router.layer(compressing())).await;
    let response = request(&raw(), &url, "gzip;q=0, br;q=0, zstd;q=0").await;
    let _events = opened(&mut streams).await;
    assert!(header_of(&response, header::CONTENT_ENCODING).is_empty());
    assert_eq!(first_bytes(response).await, &b":\n\n"[..]);
}

/// The layer's compression as `Compression::new()` sets it: shared, each event compressed once
/// for all streams.
fn compressing() -> SseLayer {
    SseLayer::new()
        .keep_alive(KEEP_ALIVE)
        .compression(Compression::new())
}

#[tokio::test]
async fn the_layer_compresses_each_event_decodable_as_soon_as_it_is_sent() {
    let (url, mut streams) = start(|router| router.layer(compressing())).await;
    for coding in ["gzip", "br", "zstd"] {
        let first = first_bytes(assert_sent_as(&url, &mut streams, coding, coding).await).await;
        assert!(!first.starts_with(b":"), "{coding}: {first:?}");
        assert_decoded_as_sent(&url, &mut streams, coding).await;
    }
}

#[tokio::test]
async fn shared_compression_fans_a_topic_out_to_decoding_clients() {
    use axum::extract::Path;
    use tower_sse::{Hub, Subscription};

    async fn subscribe(State(hub): State<Hub>, Path(topic): Path<String>) -> Subscription {
        hub.subscribe(&topic, None).await.unwrap()
    }
    let hub = Hub::memory();
    let app = Router::new()
        .route("/events/{topic}", get(subscribe))
        .layer(compressing())
        .with_state(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Two decoding clients per encoding, all on one topic.
    let mut readers = Vec::new();
    for coding in ["gzip", "br", "zstd", "gzip", "br", "zstd"] {
        // (The client decodes, and takes `Content-Encoding` away.)
        let response = request(&decoding(), &format!("{base}/room"), coding).await;
        let mut reader = Reader::new(response);
        assert_eq!(reader.through(":\n\n").await, ":\n\n", "{coding}");
        readers.push((coding, reader));
    }
    for i in 0..20 {
        let (event, wire) = event(i);
        let published = hub.publish("room", event).await.unwrap();
        let wire = wire.replacen("data: ", &format!("id: {}\ndata: ", published.id()), 1);
        for (coding, reader) in &mut readers {
            let read = reader.through(&wire).await;
            assert_eq!(
                read.trim_start_matches(":\n\n"),
                wire,
                "{coding}: event {i}"
            );
        }
    }
}

#[tokio::test]
async fn curl_compressed_decodes_each_event_as_it_is_sent() {
    for layer in [per_stream(), compressing()] {
        curl_decodes_each_event_as_it_is_sent(layer).await;
    }
}

/// Reads streams through `layer` with `curl --compressed` (zlib, libbrotli and libzstd): each
/// event is decoded as it is sent, and the stream ends cleanly. Without curl, skipped with a
/// note, except under `CI=true` (as `.ci/run` runs, which installs curl), where that fails.
async fn curl_decodes_each_event_as_it_is_sent(layer: SseLayer) {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "curl is not installed: install it (apt-get install curl; .ci/run does)"
        );
        eprintln!("curl is not installed: skipping the curl --compressed check");
        return;
    }
    use tokio::io::AsyncBufReadExt as _;
    let (url, mut streams) = start(|router| router.layer(layer)).await;
    for coding in ["gzip", "br", "zstd"] {
        let mut curl = tokio::process::Command::new("curl")
            .args(["-sSN", "--compressed", "-H"])
            .arg(format!("Accept-Encoding: {coding}"))
            .args(["-D", "/dev/stderr", &url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(curl.stdout.take().unwrap()).lines();
        let mut headers = tokio::io::BufReader::new(curl.stderr.take().unwrap()).lines();
        let events = opened(&mut streams).await;
        let mut said = Vec::new();
        while let Some(line) = tokio::time::timeout(WAIT, headers.next_line())
            .await
            .unwrap()
            .unwrap()
        {
            if line.trim().is_empty() {
                break;
            }
            said.push(line.to_ascii_lowercase());
        }
        assert!(
            said.iter()
                .any(|l| l.trim() == format!("content-encoding: {coding}")),
            "{said:?}"
        );
        for i in 0..5 {
            let (event, wire) = event(i);
            events.send(event).await.unwrap();
            let expected = wire.lines().next().unwrap().to_owned();
            loop {
                let line = tokio::time::timeout(WAIT, lines.next_line())
                    .await
                    .unwrap_or_else(|_| panic!("{coding}: waited for event {i}"))
                    .unwrap()
                    .expect("curl's output goes on");
                if line.starts_with("data:") {
                    assert_eq!(line, expected, "{coding}");
                    break;
                }
            }
        }
        drop(events);
        let status = tokio::time::timeout(WAIT, curl.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(
            status.success(),
            "{coding}: curl decoded to the end ({status})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// tower-http's CompressionLayer, in both orders
// ---------------------------------------------------------------------------------------------

/// A `CompressionLayer` that compresses event streams, as a common tweak of its predicate does
/// (its default skips them).
fn tower_http_compression() -> CompressionLayer<SizeAbove> {
    CompressionLayer::new().compress_when(SizeAbove::new(32))
}

#[tokio::test]
async fn sse_layer_outside_tower_http_compression_passes_the_stream_untouched() {
    for sse in [
        SseLayer::new().keep_alive(Duration::from_millis(50)),
        SseLayer::new()
            .keep_alive(Duration::from_millis(50))
            .compression(Compression::new()),
    ] {
        // `.layer(compression).layer(sse)`: the handler's stream is gzip when SseLayer sees it.
        let (url, mut streams) =
            start(|router| router.layer(tower_http_compression()).layer(sse)).await;
        assert_sent_as(&url, &mut streams, "gzip, br, zstd", "zstd").await;

        let mut reader = Reader::new(request(&decoding(), &url, "gzip").await);
        let events = opened(&mut streams).await;
        one_at_a_time(&events, &mut reader, 5).await;
        // Idle for several keep-alive intervals: none may be written into the gzip stream.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (last, wire) = event(5);
        events.send(last).await.unwrap();
        drop(events);
        let rest = reader.rest().await;
        assert_eq!(rest, wire, "no comment, hint or keep-alive was added");
    }
}

#[tokio::test]
async fn tower_http_compression_outside_sse_layer_compresses_what_the_layer_writes() {
    // `.layer(sse).layer(compression)`: SseLayer writes its comments, then it is all gzip.
    let sse = SseLayer::new().keep_alive(KEEP_ALIVE);
    let (url, mut streams) =
        start(|router| router.layer(sse).layer(tower_http_compression())).await;
    assert_sent_as(&url, &mut streams, "gzip", "gzip").await;
    assert_decoded_as_sent(&url, &mut streams, "gzip").await;
}

#[tokio::test]
async fn a_compressing_sse_layer_inside_tower_http_compression_is_not_compressed_twice() {
    let (url, mut streams) =
        start(|router| router.layer(compressing()).layer(tower_http_compression())).await;
    for coding in ["gzip", "br", "zstd"] {
        assert_sent_as(&url, &mut streams, coding, coding).await;
        assert_decoded_as_sent(&url, &mut streams, coding).await;
    }
}
