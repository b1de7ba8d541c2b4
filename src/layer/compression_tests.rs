//! Tests for event streams and content encodings (`super::compression`): a stream that arrives
//! encoded passes untouched, and (feature `compression`) the layer's own compression, shared
//! (the default) and one context per stream, decodable after every event and keep-alive.
//!
//! No network: each test sends one request through the layer with `oneshot` and reads the body
//! frame by frame. Time is paused, so keep-alive intervals are exact and cost nothing. The
//! real-socket tests, with tower-http's `CompressionLayer` and real clients, are in
//! `tests/compression.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Body as _;

use super::tests::{
    KEEP_ALIVE, assert_quiet_for, channel_body, event_stream_response, get_request, next, rest,
    send, serve,
};
use super::{DEFAULT_KEEP_ALIVE, SseLayer};
use crate::Event;
use crate::registry::Registry;

/// Bytes an inner layer compressed (what they are does not matter: the layer never reads them).
const ENCODED: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff opaque";

fn encoded_response(body: Body, coding: &'static str) -> Response<Body> {
    let mut response = event_stream_response(body);
    response
        .headers_mut()
        .insert(header::CONTENT_ENCODING, coding.parse().unwrap());
    response
}

/// Opens a stream through `layer` whose handler's body is encoded with `coding`, and reads the
/// handler's first bytes through it.
async fn open_encoded(
    layer: SseLayer,
    coding: &'static str,
) -> (tokio::sync::mpsc::Sender<Bytes>, super::SseBody<Body>) {
    let (tx, body) = channel_body();
    let response = serve(layer, get_request(), encoded_response(body, coding)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    send(&tx, ENCODED).await;
    assert_eq!(next(&mut body).await, ENCODED, "first, and untouched");
    (tx, body)
}

/// A layer that would write every byte it can: initial comment, padding, retry hint.
fn busy_layer(registry: &Registry) -> SseLayer {
    SseLayer::new()
        .retry(Duration::from_secs(3))
        .padding(true)
        .registry(registry.clone())
}

/// Collects what `tracing` logs at `warn` and above while it is set.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn set(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// A stream that arrives encoded
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn encoded_stream_passes_byte_for_byte_without_any_bytes_of_the_layer() {
    let registry = Registry::new();
    let (tx, body) = channel_body();
    let response = serve(
        busy_layer(&registry),
        get_request(),
        encoded_response(body, "gzip"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut body = response.into_body();
    // No initial comment, padding or retry hint before the handler's first bytes.
    send(&tx, ENCODED).await;
    assert_eq!(next(&mut body).await, ENCODED);
    // No keep-alive, however long it idles.
    assert_quiet_for(&mut body, DEFAULT_KEEP_ALIVE * 4).await;
    send(&tx, b"more").await;
    assert_eq!(next(&mut body).await, &b"more"[..]);
    drop(tx);
    assert!(rest(&mut body).await.is_empty());
    assert!(body.is_end_stream());
}

#[tokio::test(start_paused = true)]
async fn encoded_stream_is_registered_counting_bytes_not_events() {
    let registry = Registry::new();
    let (tx, mut body) = open_encoded(busy_layer(&registry), "br").await;
    // Blank lines inside compressed bytes are no event ends.
    send(&tx, b"a\n\nb\n\n").await;
    next(&mut body).await;
    let info = registry.snapshot().pop().expect("the stream is listed");
    assert_eq!(info.bytes_sent(), ENCODED.len() as u64 + 6);
    assert_eq!(info.events_sent(), 0);
    drop(tx);
    rest(&mut body).await;
    assert!(registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn encoded_stream_refuses_connection_send() {
    let registry = Registry::new();
    let (_tx, mut body) = open_encoded(busy_layer(&registry), "gzip").await;
    let id = registry.snapshot()[0].id();
    let connection = registry.get(id).expect("registered");
    let refused = connection.send(Event::data("never written")).unwrap_err();
    assert!(!refused.is_full());
    assert_quiet_for(&mut body, Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn encoded_stream_ends_at_shutdown_without_a_retry_hint() {
    let registry = Registry::new();
    let layer = busy_layer(&registry);
    let (_tx, mut body) = open_encoded(layer.clone(), "gzip").await;
    layer.shutdown();
    assert!(rest(&mut body).await.is_empty(), "nothing written after it");
    assert!(registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn encoded_stream_ends_at_its_max_lifetime_without_a_retry_hint() {
    let registry = Registry::new();
    let layer = busy_layer(&registry).max_lifetime(Duration::from_secs(60));
    let (_tx, mut body) = open_encoded(layer, "zstd").await;
    assert!(rest(&mut body).await.is_empty());
    assert!(registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn encoded_stream_over_a_limit_gets_the_plain_refusal_without_content_encoding() {
    let registry = Registry::new();
    let layer = busy_layer(&registry).max_connections(1);
    let (_open_tx, open_body) = channel_body();
    let open = serve(
        layer.clone(),
        get_request(),
        encoded_response(open_body, "gzip"),
    )
    .await;
    // Accept `*/*`: the handler runs, and its encoded stream is refused when registered.
    let request = Request::get("/events")
        .header(header::ACCEPT, "*/*")
        .body(Body::empty())
        .unwrap();
    let (_tx, body) = channel_body();
    let refused = serve(layer, request, encoded_response(body, "gzip")).await;
    assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());
    let bytes = rest(&mut refused.into_body()).await;
    assert!(
        bytes.starts_with(b": too many connections\nretry: "),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    drop(open);
}

#[tokio::test(start_paused = true)]
async fn encoded_stream_logs_one_warning_per_response() {
    let logs = Logs::default();
    let _guard = logs.set();
    for _ in 0..2 {
        let (_tx, body) = channel_body();
        let response = serve(
            SseLayer::new(),
            get_request(),
            encoded_response(body, "gzip"),
        )
        .await;
        drop(response);
    }
    let text = logs.text();
    assert_eq!(text.matches("arrived already encoded").count(), 2, "{text}");
    assert!(text.contains("WARN"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn identity_content_encoding_is_a_plain_stream() {
    let (tx, body) = channel_body();
    let response = serve(
        SseLayer::new(),
        get_request(),
        encoded_response(body, "identity"),
    )
    .await;
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, KEEP_ALIVE, "the initial comment");
    send(&tx, b"data: x\n\n").await;
    assert_eq!(next(&mut body).await, &b"data: x\n\n"[..]);
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
}

#[tokio::test(start_paused = true)]
async fn empty_content_encoding_is_a_plain_stream() {
    // No coding in the value: not encoded, so the stream gets the layer's bytes.
    for value in ["", " ", ", ,", "identity, "] {
        let (tx, body) = channel_body();
        let response = serve(
            SseLayer::new(),
            get_request(),
            encoded_response(body, value),
        )
        .await;
        let mut body = response.into_body();
        assert_eq!(
            next(&mut body).await,
            KEEP_ALIVE,
            "{value:?}: the initial comment"
        );
        send(&tx, b"data: x\n\n").await;
        assert_eq!(next(&mut body).await, &b"data: x\n\n"[..], "{value:?}");
        assert_eq!(next(&mut body).await, KEEP_ALIVE, "{value:?}: a keep-alive");
    }
}

#[tokio::test(start_paused = true)]
async fn a_coding_among_empty_ones_is_still_encoded() {
    let (tx, body) = channel_body();
    let mut response = encoded_response(body, ", gzip");
    response
        .headers_mut()
        .append(header::CONTENT_ENCODING, "".parse().unwrap());
    let response = serve(SseLayer::new(), get_request(), response).await;
    let mut body = response.into_body();
    send(&tx, ENCODED).await;
    assert_eq!(next(&mut body).await, ENCODED, "first, and untouched");
}

// ---------------------------------------------------------------------------------------------
// The layer's own compression
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "compression")]
mod compressing {
    use async_compression::codecs::{BrotliDecoder, Decode, GzipDecoder, ZstdDecoder};
    use async_compression::core::util::PartialBuffer;
    use http::HeaderValue;
    use http_body_util::BodyExt as _;

    use super::super::Compression;
    use super::super::compression::{Encoding, negotiate};
    use super::super::tests::lists;
    use super::*;

    /// An incremental decoder of one encoding, as a client runs it.
    enum Decoder {
        Gzip(GzipDecoder),
        Brotli(Box<BrotliDecoder>),
        /// With whether the bytes so far end with the end of a frame.
        Zstd(ZstdDecoder, bool),
    }

    impl Decoder {
        fn new(coding: &str) -> Decoder {
            match coding {
                "gzip" => Decoder::Gzip(GzipDecoder::new()),
                "br" => Decoder::Brotli(Box::new(BrotliDecoder::new())),
                "zstd" => Decoder::Zstd(ZstdDecoder::new(), false),
                other => panic!("no decoder for {other}"),
            }
        }

        /// Everything `bytes` decode to, on top of what came before; and whether the
        /// compressed stream is complete.
        fn feed(&mut self, bytes: &[u8]) -> (Vec<u8>, bool) {
            match self {
                Decoder::Gzip(d) => decode(d, bytes),
                Decoder::Brotli(d) => decode(&mut **d, bytes),
                Decoder::Zstd(_, complete) if bytes.is_empty() => (Vec::new(), *complete),
                Decoder::Zstd(d, complete) => {
                    let (plain, ended) = decode_frames(d, bytes);
                    *complete = ended;
                    (plain, ended)
                }
            }
        }
    }

    /// As [`decode`], for a stream of frames (zstd's, RFC 8878): one frame after another.
    /// Whether the input ends with the end of a frame.
    fn decode_frames<D: Decode>(decoder: &mut D, mut bytes: &[u8]) -> (Vec<u8>, bool) {
        let mut decoded = Vec::new();
        loop {
            let mut input = PartialBuffer::new(bytes);
            let mut buf = vec![0u8; 1 << 16];
            let mut output = PartialBuffer::new(&mut buf[..]);
            let mut complete = false;
            loop {
                if !input.unwritten().is_empty() && !complete {
                    complete = decoder.decode(&mut input, &mut output).unwrap();
                }
                let flushed = decoder.flush(&mut output).unwrap();
                decoded.extend_from_slice(output.written());
                let full = output.unwritten().is_empty();
                output = PartialBuffer::new(&mut buf[..]);
                if (input.unwritten().is_empty() || complete) && flushed && !full {
                    break;
                }
            }
            bytes = &bytes[input.written_len()..];
            if complete {
                decoder.reinit().unwrap();
            }
            if bytes.is_empty() {
                return (decoded, complete);
            }
        }
    }

    fn decode<D: Decode>(decoder: &mut D, bytes: &[u8]) -> (Vec<u8>, bool) {
        let mut input = PartialBuffer::new(bytes);
        let mut decoded = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut complete = false;
        loop {
            let mut output = PartialBuffer::new(&mut buf[..]);
            if !input.unwritten().is_empty() && !complete {
                complete = decoder.decode(&mut input, &mut output).unwrap();
            }
            let flushed = decoder.flush(&mut output).unwrap();
            decoded.extend_from_slice(output.written());
            // A full buffer may leave more behind, even when the decoder says it flushed.
            let full = output.unwritten().is_empty();
            if (input.unwritten().is_empty() || complete) && flushed && !full {
                assert!(input.unwritten().is_empty(), "bytes after the end");
                return (decoded, complete);
            }
        }
    }

    /// A layer that compresses as `Compression::new()` does: each event once for all its
    /// streams (shared).
    fn compressing() -> SseLayer {
        SseLayer::new().compression(Compression::new())
    }

    /// A layer that compresses each stream in its own context.
    fn per_stream() -> SseLayer {
        SseLayer::new().compression(Compression::new().per_stream())
    }

    /// Both modes: one context per stream, and shared.
    fn both_modes() -> [(&'static str, SseLayer); 2] {
        [("per stream", per_stream()), ("shared", compressing())]
    }

    /// Opens a stream through the default compressing layer for a client that accepts
    /// `codings`.
    async fn open_compressed(
        codings: &'static str,
    ) -> (
        tokio::sync::mpsc::Sender<Bytes>,
        Response<super::super::SseBody<Body>>,
    ) {
        open_through(compressing(), codings).await
    }

    /// Opens a stream through `layer` for a client that accepts `codings`.
    async fn open_through(
        layer: SseLayer,
        codings: &str,
    ) -> (
        tokio::sync::mpsc::Sender<Bytes>,
        Response<super::super::SseBody<Body>>,
    ) {
        let (tx, body) = channel_body();
        let response = serve(layer, accepting(codings), event_stream_response(body)).await;
        (tx, response)
    }

    fn accepting(codings: &str) -> Request<Body> {
        Request::get("/events")
            .header(header::ACCEPT_ENCODING, codings)
            .body(Body::empty())
            .unwrap()
    }

    fn chosen(accept: &[&'static str], offered: Compression) -> Option<&'static str> {
        let values: Vec<HeaderValue> = accept.iter().map(|v| HeaderValue::from_static(v)).collect();
        negotiate(&values, &offered).map(|e| match e {
            Encoding::Zstd => "zstd",
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        })
    }

    /// Per stream: the client's weights, then zstd, gzip, Brotli. Shared (the default): the
    /// weights, then Brotli, gzip, zstd (one frame per event there, which some decoders stop
    /// after). Each case: what is accepted, what per stream chooses, what shared chooses.
    #[test]
    fn negotiation_respects_weights_then_the_modes_preference() {
        type Case = (
            &'static [&'static str],
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            (&[], None, None),
            (&[""], None, None),
            (&["identity"], None, None),
            (&["deflate"], None, None),
            (&["gzip"], Some("gzip"), Some("gzip")),
            (&["GZip"], Some("gzip"), Some("gzip")),
            (&["x-gzip"], Some("gzip"), Some("gzip")),
            (&["gzip, deflate, br"], Some("gzip"), Some("br")),
            (&["br"], Some("br"), Some("br")),
            (&["zstd"], Some("zstd"), Some("zstd")),
            (&["gzip, deflate, br, zstd"], Some("zstd"), Some("br")),
            (&["gzip, deflate, zstd"], Some("zstd"), Some("gzip")),
            (&["gzip", "br"], Some("gzip"), Some("br")),
            (&["gzip;q=0.9", "br"], Some("br"), Some("br")),
            (&["br;q=0.5, gzip"], Some("gzip"), Some("gzip")),
            (&["br;q=0.5, gzip;q=0.5"], Some("gzip"), Some("br")),
            (
                &["zstd;q=0.9, br;q=0.95 , gzip;q=0.1"],
                Some("br"),
                Some("br"),
            ),
            (&["zstd, br;q=0.5, gzip;q=0.5"], Some("zstd"), Some("zstd")),
            (&["gzip;q=0.001"], Some("gzip"), Some("gzip")),
            (&["gzip;Q=1.000"], Some("gzip"), Some("gzip")),
            (&["gzip;q=0"], None, None),
            (&["gzip; q=0.000"], None, None),
            (&["gzip;q=0, gzip"], None, None),
            (&["*"], Some("zstd"), Some("br")),
            (&["*;q=0"], None, None),
            (&["zstd;q=0, *"], Some("gzip"), Some("br")),
            (&["br;q=0, *"], Some("zstd"), Some("gzip")),
            (&["zstd;q=0, gzip;q=0, *;q=0.5"], Some("br"), Some("br")),
            (&["gzip;q=1.5"], None, None),
            (&["gzip;q=0.5555"], None, None),
            (&["gzip;q=abc"], None, None),
            (&["gzip;level=9"], Some("gzip"), Some("gzip")),
        ];
        assert_eq!(
            Compression::new(),
            Compression::new().shared(),
            "shared by default"
        );
        for (accept, per_stream, shared) in cases {
            assert_eq!(
                chosen(accept, Compression::new().per_stream()),
                *per_stream,
                "per stream, Accept-Encoding: {accept:?}"
            );
            assert_eq!(
                chosen(accept, Compression::new()),
                *shared,
                "shared, Accept-Encoding: {accept:?}"
            );
            assert_eq!(
                chosen(accept, Compression::new().per_stream().shared()),
                *shared,
                "shared after per_stream, Accept-Encoding: {accept:?}"
            );
        }
        assert_eq!(
            chosen(&["zstd, br, gzip"], Compression::new().no_br()),
            Some("gzip")
        );
        assert_eq!(
            chosen(
                &["zstd, br, gzip"],
                Compression::new().per_stream().no_zstd()
            ),
            Some("gzip")
        );
        assert_eq!(
            chosen(&["zstd, br"], Compression::new().no_zstd().no_br()),
            None
        );
        assert_eq!(
            chosen(&["*"], Compression::new().no_zstd().no_br()),
            Some("gzip")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn compressed_stream_says_so_and_varies_on_accept_encoding() {
        for coding in ["gzip", "br", "zstd"] {
            let (_tx, response) = open_compressed(coding).await;
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_ENCODING], coding);
            assert!(
                lists(headers, header::VARY, "accept-encoding"),
                "{headers:?}"
            );
            assert!(headers.get(header::CONTENT_LENGTH).is_none());
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache, no-transform");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn plain_stream_for_a_client_that_accepts_no_encoding_still_varies() {
        for request in [get_request(), accepting("gzip;q=0, identity")] {
            let (tx, body) = channel_body();
            let response = serve(compressing(), request, event_stream_response(body)).await;
            assert!(response.headers().get(header::CONTENT_ENCODING).is_none());
            assert!(lists(response.headers(), header::VARY, "accept-encoding"));
            let mut body = response.into_body();
            assert_eq!(next(&mut body).await, KEEP_ALIVE);
            send(&tx, b"data: x\n\n").await;
            assert_eq!(next(&mut body).await, &b"data: x\n\n"[..]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn vary_is_not_repeated() {
        let (_tx, body) = channel_body();
        let mut response = event_stream_response(body);
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        let response = serve(compressing(), accepting("gzip"), response).await;
        assert_eq!(response.headers().get_all(header::VARY).iter().count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn other_responses_are_not_compressed() {
        let response = Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("hello"))
            .unwrap();
        let response = serve(compressing(), accepting("gzip"), response).await;
        assert!(response.headers().get(header::CONTENT_ENCODING).is_none());
        assert!(response.headers().get(header::VARY).is_none());
        assert_eq!(rest(&mut response.into_body()).await, b"hello");
    }

    #[tokio::test(start_paused = true)]
    async fn each_event_and_keep_alive_decodes_as_soon_as_it_is_sent() {
        for (mode, layer) in both_modes() {
            for coding in ["gzip", "br", "zstd"] {
                decodes_as_sent(layer.clone(), &format!("{mode} {coding}"), coding).await;
            }
        }
    }

    /// Opens a stream through `layer` for `coding` and reads it with a real decoder: each
    /// event and keep-alive decodes whole from the frame it comes in, and the end completes
    /// the compressed stream.
    async fn decodes_as_sent(layer: SseLayer, what: &str, coding: &str) {
        let (tx, response) = open_through(layer, coding).await;
        let mut body = response.into_body();
        let mut decoder = Decoder::new(coding);
        let decoder_frames = coding == "zstd" && what.starts_with("shared");
        let mut decoded = |frame: Bytes| {
            let (plain, complete) = decoder.feed(&frame);
            // A zstd stream in shared mode is a frame per event: each ends one.
            assert!(!complete || decoder_frames, "{what}: ended early");
            String::from_utf8(plain).unwrap()
        };
        assert_eq!(
            decoded(next(&mut body).await),
            ":\n\n",
            "{what}: initial comment"
        );
        for i in 0..20 {
            let event = format!("id: {i}\ndata: {{\"n\":{i},\"page\":\"<div>…</div>\"}}\n\n");
            tx.send(Bytes::from(event.clone())).await.unwrap();
            assert_eq!(decoded(next(&mut body).await), event, "{what}: event {i}");
        }
        // Idle: the keep-alive comes out decodable too.
        assert_eq!(
            decoded(next(&mut body).await),
            ":\n\n",
            "{what}: keep-alive"
        );
        // An event split across frames: not flushed in the middle (what the codec gives
        // out before its end may be part of it), all of it once it is complete.
        send(&tx, b"data: first half").await;
        let mut split = String::new();
        if let Ok(frame) = tokio::time::timeout(Duration::from_secs(1), body.frame()).await {
            split += &decoded(frame.unwrap().unwrap().into_data().unwrap());
        }
        assert!("data: first half".starts_with(&split), "{what}: {split:?}");
        send(&tx, b", second half\n\n").await;
        split += &decoded(next(&mut body).await);
        assert_eq!(
            split, "data: first half, second half\n\n",
            "{what}: split event"
        );
        // The end completes the compressed stream.
        drop(tx);
        let (tail, complete) = decoder.feed(&rest(&mut body).await);
        assert!(tail.is_empty(), "{what}: {tail:?}");
        assert!(complete, "{what}: the compressed stream is complete");
        assert!(body.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn per_stream_events_compress_against_the_ones_before() {
        // Rows that do not repeat one another: the first page compresses little.
        let rows: String = (0..40)
            .map(|i| format!("<li id=r{i}>{:016x}</li>", fastrand::u64(..)))
            .collect();
        let page = format!("data: <main>{rows}</main>\n\n");
        for coding in ["gzip", "zstd"] {
            let (tx, response) = open_through(per_stream(), coding).await;
            let mut body = response.into_body();
            next(&mut body).await;
            tx.send(Bytes::from(page.clone())).await.unwrap();
            let first = next(&mut body).await.len();
            tx.send(Bytes::from(page.clone())).await.unwrap();
            let again = next(&mut body).await.len();
            assert!(again * 2 < first, "{coding}: {first} bytes, then {again}");
        }
    }

    /// The compressed bytes `coding` sends for `frames`, each sent and read in turn: shared,
    /// then per stream.
    async fn bytes_sent_shared_and_per_stream(coding: &str, frames: &[Bytes]) -> [usize; 2] {
        let mut sent = [0usize; 2];
        for (mode, layer) in [(0, compressing()), (1, per_stream())] {
            let (tx, response) = open_through(layer, coding).await;
            let mut body = response.into_body();
            next(&mut body).await;
            for frame in frames {
                tx.send(frame.clone()).await.unwrap();
                sent[mode] += next(&mut body).await.len();
            }
        }
        sent
    }

    /// What the default gives up for small events that are a stream's own (an LLM's tokens):
    /// each compressed on its own, they come out larger than plain, where one context per
    /// stream compresses them against the ones before. The byte counts are printed
    /// (`--nocapture`) and quoted in `Compression`'s docs.
    #[tokio::test(start_paused = true)]
    async fn small_events_are_larger_than_plain_when_shared_and_smaller_per_stream() {
        const WORDS: [&str; 10] = [
            "the", " quick", " brown", " fox", " jumps", " over", " lazy", " dog", ",", " and",
        ];
        let tokens: Vec<Bytes> = (0..500)
            .map(|i| {
                let word = WORDS[(i * 7 + i / 3) % WORDS.len()];
                Bytes::from(format!("data: {{\"token\":\"{word}\"}}\n\n"))
            })
            .collect();
        let plain: usize = tokens.iter().map(Bytes::len).sum();
        for coding in ["gzip", "br", "zstd"] {
            let [shared, per_stream] = bytes_sent_shared_and_per_stream(coding, &tokens).await;
            println!("{coding}: plain {plain}, shared {shared}, per stream {per_stream} bytes");
            assert!(shared > plain, "{coding}: shared {shared}, plain {plain}");
            if coding != "br" {
                // Brotli keeps no context between events in either mode.
                assert!(per_stream < plain, "{coding}: per stream {per_stream}");
            }
        }
    }

    /// What the default gives up for page morphs that are a stream's own: 20 morphs of a
    /// 7 KiB table, one more row changed each time. Per-stream zstd sends little more than
    /// the changes; shared, each morph costs nearly its first size. Printed (`--nocapture`)
    /// and quoted in `Compression`'s docs.
    #[tokio::test(start_paused = true)]
    async fn page_morphs_are_several_times_smaller_per_stream_than_shared() {
        let mut rows: Vec<String> = (0..200)
            .map(|i| format!("<tr><td>{i}</td><td>{}</td></tr>", i * 7919 % 10007))
            .collect();
        let mut morphs = Vec::new();
        for k in 0..20 {
            rows[k * 3] = format!("<tr><td>{k}</td><td>changed {k}</td></tr>");
            morphs.push(Bytes::from(format!(
                "data: <tbody id=t>{}</tbody>\n\n",
                rows.concat()
            )));
        }
        let plain: usize = morphs.iter().map(Bytes::len).sum();
        let mut sizes = Vec::new();
        for coding in ["gzip", "br", "zstd"] {
            let sent = bytes_sent_shared_and_per_stream(coding, &morphs).await;
            println!(
                "{coding}: plain {plain}, shared {}, per stream {}",
                sent[0], sent[1]
            );
            sizes.push((coding, sent));
        }
        let zstd_per_stream = sizes[2].1[1];
        for (coding, [shared, _]) in &sizes {
            assert!(
                zstd_per_stream * 4 < *shared,
                "{coding} shared {shared}, zstd per stream {zstd_per_stream}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_larger_than_gzips_window_sent_again_compresses_to_its_changes_with_per_stream_zstd()
     {
        // About 48 KiB of rows that do not repeat one another, then the same page with one
        // row changed: zstd's window (128 KiB) still holds the first.
        let mut rng = fastrand::Rng::with_seed(12);
        let row = |i: usize, value: u64| format!("<li id=r{i}>{value:016x}</li>");
        let mut rows: Vec<String> = (0..1500).map(|i| row(i, rng.u64(..))).collect();
        let page = |rows: &[String]| format!("data: <main>{}</main>\n\n", rows.concat());
        let first_page = page(&rows);
        assert!(first_page.len() > 40 * 1024);
        rows[700] = row(700, rng.u64(..));
        let (tx, response) = open_through(per_stream(), "zstd").await;
        let mut body = response.into_body();
        let mut decoder = Decoder::new("zstd");
        decoder.feed(&next(&mut body).await);
        tx.send(Bytes::from(first_page.clone())).await.unwrap();
        let first = next(&mut body).await;
        assert_eq!(decoder.feed(&first).0, first_page.as_bytes());
        let second_page = page(&rows);
        tx.send(Bytes::from(second_page.clone())).await.unwrap();
        let again = next(&mut body).await;
        assert_eq!(decoder.feed(&again).0, second_page.as_bytes());
        // How much is found again depends on the rows (what the small match table keeps):
        // from some 50 bytes to an eighth of the first send.
        assert!(
            again.len() * 6 < first.len(),
            "{} bytes, then {}",
            first.len(),
            again.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn large_events_that_do_not_compress_come_out_whole() {
        // Larger than any room the layer starts with, and random: the output is larger
        // than the input, so the codecs run out of room and go on.
        let noise = |len: usize| -> String {
            (0..len)
                .map(|_| fastrand::alphanumeric())
                .collect::<String>()
        };
        for ((mode, layer), coding) in both_modes()
            .into_iter()
            .flat_map(|mode| ["gzip", "br", "zstd"].map(|coding| (mode.clone(), coding)))
        {
            let (tx, response) = open_through(layer, coding).await;
            let mut body = response.into_body();
            let mut decoder = Decoder::new(coding);
            decoder.feed(&next(&mut body).await);
            // A zstd stream in shared mode is a frame per event: each ends one.
            let frames = coding == "zstd" && mode == "shared";
            let coding = format!("{mode} {coding}");
            for len in [20 * 1024, 300 * 1024, 1, 70 * 1024] {
                let event = format!("data: {}\n\n", noise(len));
                tx.send(Bytes::from(event.clone())).await.unwrap();
                let (plain, complete) = decoder.feed(&next(&mut body).await);
                assert!(!complete || frames, "{coding}");
                assert!(
                    plain == event.as_bytes(),
                    "{coding}: an event of {len} bytes, {} decoded",
                    plain.len()
                );
            }
            drop(tx);
            let (tail, complete) = decoder.feed(&rest(&mut body).await);
            assert!(tail.is_empty() && complete, "{coding}: a complete end");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_compressed_stream_with_its_retry_hint_and_a_complete_end() {
        for ((mode, layer), coding) in both_modes()
            .into_iter()
            .flat_map(|mode| ["gzip", "br", "zstd"].map(|coding| (mode.clone(), coding)))
        {
            let registry = Registry::new();
            let layer = layer.registry(registry.clone());
            let (tx, body) = channel_body();
            let response = serve(
                layer.clone(),
                accepting(coding),
                event_stream_response(body),
            )
            .await;
            let mut body = response.into_body();
            let mut decoder = Decoder::new(coding);
            decoder.feed(&next(&mut body).await);
            send(&tx, b"data: one\n\n").await;
            decoder.feed(&next(&mut body).await);
            let info = registry.snapshot().pop().unwrap();
            assert_eq!(info.events_sent(), 1, "{coding}: events counted");
            layer.shutdown();
            let (tail, complete) = decoder.feed(&rest(&mut body).await);
            let tail = String::from_utf8(tail).unwrap();
            assert!(
                tail.starts_with("retry: ") && tail.ends_with("\n\n"),
                "{mode} {coding}: {tail:?}"
            );
            assert!(
                complete,
                "{mode} {coding}: the compressed stream is complete"
            );
            assert!(registry.is_empty());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn connection_send_events_are_compressed_too() {
        let registry = Registry::new();
        let layer = compressing().registry(registry.clone());
        let (_tx, body) = channel_body();
        let response = serve(layer, accepting("gzip"), event_stream_response(body)).await;
        let mut body = response.into_body();
        let mut decoder = Decoder::new("gzip");
        decoder.feed(&next(&mut body).await);
        let id = registry.snapshot()[0].id();
        registry
            .get(id)
            .unwrap()
            .send(Event::data("just you"))
            .unwrap();
        let (plain, _) = decoder.feed(&next(&mut body).await);
        assert_eq!(plain, b"data: just you\n\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_encoded_by_an_inner_layer_is_not_compressed_twice() {
        let (tx, body) = channel_body();
        let response = serve(
            compressing(),
            accepting("gzip, br, zstd"),
            encoded_response(body, "br"),
        )
        .await;
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "br");
        let mut body = response.into_body();
        send(&tx, ENCODED).await;
        assert_eq!(next(&mut body).await, ENCODED);
        assert_quiet_for(&mut body, DEFAULT_KEEP_ALIVE * 2).await;
    }

    #[tokio::test(start_paused = true)]
    async fn refusal_of_a_compressing_layer_is_plain() {
        let layer = compressing().max_connections(1);
        let (_open_tx, open_body) = channel_body();
        let open = serve(
            layer.clone(),
            accepting("gzip"),
            event_stream_response(open_body),
        )
        .await;
        assert_eq!(open.headers()[header::CONTENT_ENCODING], "gzip");
        let request = Request::get("/events")
            .header(header::ACCEPT, "*/*")
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .unwrap();
        let (_tx, body) = channel_body();
        let refused = serve(layer, request, event_stream_response(body)).await;
        assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());
        let bytes = rest(&mut refused.into_body()).await;
        assert!(bytes.starts_with(b": too many connections\n"));
    }

    // -----------------------------------------------------------------------------------------
    // Shared mode: each event compressed once for all streams
    // -----------------------------------------------------------------------------------------

    /// Opens `n` streams of `topic` through `layer` for a client that accepts `coding`, each
    /// read past its first frame (the stream's header and initial comment).
    async fn subscribers(
        hub: &crate::Hub,
        layer: &SseLayer,
        topic: &str,
        coding: &str,
        n: usize,
    ) -> Vec<super::super::SseBody<Body>> {
        use axum::response::IntoResponse as _;
        let mut bodies = Vec::new();
        for _ in 0..n {
            let subscription = hub.subscribe(topic, None).await.unwrap();
            let response = serve(
                layer.clone(),
                accepting(coding),
                subscription.into_response(),
            );
            let mut body = response.await.into_body();
            next(&mut body).await;
            bodies.push(body);
        }
        bodies
    }

    fn same_bytes(frames: &[Bytes]) -> bool {
        frames
            .iter()
            .all(|f| f.as_ptr() == frames[0].as_ptr() && f.len() == frames[0].len())
    }

    #[tokio::test(start_paused = true)]
    async fn streams_of_one_topic_share_each_compressed_event_and_keep_alive() {
        let hub = crate::Hub::memory();
        let layer = compressing();
        for coding in ["gzip", "br", "zstd"] {
            let topic = format!("room-{coding}");
            let mut bodies = subscribers(&hub, &layer, &topic, coding, 3).await;
            for i in 0..5 {
                let event = Event::data(format!("{{\"n\":{i},\"html\":\"<p>row {i}</p>\"}}"));
                hub.publish(&topic, event).await.unwrap();
                let mut frames = Vec::new();
                for body in &mut bodies {
                    frames.push(next(body).await);
                }
                assert!(same_bytes(&frames), "{coding}: event {i}");
            }
            // Idle: each stream's keep-alive, the same bytes too.
            let mut frames = Vec::new();
            for body in &mut bodies {
                frames.push(next(body).await);
            }
            assert!(same_bytes(&frames), "{coding}: keep-alive");
        }
        // One context per stream: each compresses on its own.
        let mut bodies = subscribers(&hub, &per_stream(), "apart", "gzip", 2).await;
        hub.publish("apart", Event::data("{}")).await.unwrap();
        let (a, b) = (next(&mut bodies[0]).await, next(&mut bodies[1]).await);
        assert_eq!(a, b, "the same bytes, compressed twice");
        assert!(!same_bytes(&[a, b]));
    }

    mod shared_proptest {
        use std::io::Read as _;

        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Step {
            /// One event of the pool, in one frame.
            Event(usize),
            /// One event of the pool, in two frames cut at a byte.
            Split(usize, usize),
            /// Idle until every stream sends a keep-alive.
            Idle,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => (0..8usize).prop_map(Step::Event),
                1 => (0..8usize, 0..4096usize).prop_map(|(i, at)| Step::Split(i, at)),
                1 => Just(Step::Idle),
            ]
        }

        /// Event data: text with line breaks and non-ASCII, sometimes long and repetitive.
        fn data() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9 {}\":,\n\r\u{e9}\u{1f600}]{0,200}",
                ("[a-z]{1,12}", 1..400usize).prop_map(|(word, n)| word.repeat(n)),
            ]
        }

        /// The plain stream and each encoding's streams, all fed the same frames.
        struct Streams {
            senders: Vec<tokio::sync::mpsc::Sender<Bytes>>,
            bodies: Vec<super::super::super::SseBody<Body>>,
            sent: Vec<Vec<u8>>,
        }

        const CODINGS: [&str; 3] = ["gzip", "br", "zstd"];
        /// Streams per encoding.
        const EACH: usize = 2;

        impl Streams {
            async fn open(plain: SseLayer, shared: SseLayer) -> Streams {
                let mut streams = Streams {
                    senders: Vec::new(),
                    bodies: Vec::new(),
                    sent: Vec::new(),
                };
                let (tx, response) = open_through(plain, "identity").await;
                streams.add(tx, response.into_body());
                for coding in CODINGS {
                    for _ in 0..EACH {
                        let (tx, response) = open_through(shared.clone(), coding).await;
                        assert_eq!(response.headers()[header::CONTENT_ENCODING], coding);
                        streams.add(tx, response.into_body());
                    }
                }
                streams
            }

            fn add(
                &mut self,
                tx: tokio::sync::mpsc::Sender<Bytes>,
                body: super::super::super::SseBody<Body>,
            ) {
                self.senders.push(tx);
                self.bodies.push(body);
                self.sent.push(Vec::new());
            }

            /// Sends `frame` to every stream, and reads what each sends for it.
            async fn frame(&mut self, frame: &Bytes) {
                for tx in &self.senders {
                    tx.send(frame.clone()).await.unwrap();
                }
                self.read().await;
            }

            /// Reads each stream's next frame.
            async fn read(&mut self) {
                for (body, sent) in self.bodies.iter_mut().zip(&mut self.sent) {
                    sent.extend_from_slice(&next(body).await);
                }
            }

            /// Ends every stream and returns all each one sent.
            async fn end(mut self) -> Vec<Vec<u8>> {
                self.senders.clear();
                for (body, sent) in self.bodies.iter_mut().zip(&mut self.sent) {
                    sent.extend_from_slice(&rest(body).await);
                }
                self.sent
            }
        }

        fn decoded(coding: &str, bytes: &[u8]) -> Vec<u8> {
            let mut plain = Vec::new();
            match coding {
                // One gzip member (not `MultiGzDecoder`): its CRC-32 and length checked.
                "gzip" => flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut plain)
                    .map(drop),
                "br" => brotli::Decompressor::new(bytes, 4096)
                    .read_to_end(&mut plain)
                    .map(drop),
                _ => zstd::stream::decode_all(bytes).map(|all| plain = all),
            }
            .unwrap_or_else(|err| panic!("{coding}: {err}"));
            plain
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn shared_streams_decode_to_what_the_plain_stream_sends(
                pool in proptest::collection::vec(data(), 8),
                steps in proptest::collection::vec(step(), 0..30),
                cache_entries in prop_oneof![Just(0usize), 1..6usize, Just(1024)],
                cache_bytes in prop_oneof![Just(0usize), Just(600), Just(1usize << 20)],
            ) {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .unwrap();
                let sent = rt.block_on(async {
                    let plain = SseLayer::new().keep_alive(Duration::from_secs(1));
                    let shared = plain.clone().compression(
                        Compression::new()
                            .shared()
                            .cache_entries(cache_entries)
                            .cache_bytes(cache_bytes),
                    );
                    // The same `Bytes` each time an event is sent, as a hub's topic hands out.
                    let pool: Vec<Bytes> = pool
                        .iter()
                        .map(|data| Event::data(data.as_str()).into_bytes())
                        .collect();
                    let mut streams = Streams::open(plain, shared).await;
                    streams.read().await;
                    for step in &steps {
                        match *step {
                            Step::Event(i) => streams.frame(&pool[i]).await,
                            Step::Split(i, at) => {
                                // Two frames with bytes in each (an empty frame sends nothing
                                // compressed, and lets time run to a keep-alive).
                                let at = 1 + at % (pool[i].len() - 1);
                                streams.frame(&pool[i].slice(..at)).await;
                                streams.frame(&pool[i].slice(at..)).await;
                            }
                            Step::Idle => streams.read().await,
                        }
                    }
                    streams.end().await
                });
                let plain = &sent[0];
                for (i, coding) in CODINGS.iter().enumerate() {
                    let first = &sent[1 + i * EACH];
                    let decoded = decoded(coding, first);
                    let same = decoded.iter().zip(plain).take_while(|(a, b)| a == b).count();
                    prop_assert!(
                        decoded == *plain,
                        "{}: {} bytes decoded, {} sent plain, the same up to {}",
                        coding,
                        decoded.len(),
                        plain.len(),
                        same
                    );
                    for other in &sent[2 + i * EACH..1 + (i + 1) * EACH] {
                        // Each piece is the same whoever compresses it, cached or not.
                        prop_assert_eq!(other, first, "{}", coding);
                    }
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_cache_entry_count_is_capped_and_the_layer_works() {
        for entries in [1 << 30, usize::MAX] {
            let layer = SseLayer::new().compression(Compression::new().cache_entries(entries));
            let (tx, response) = open_through(layer, "gzip").await;
            assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
            drop(tx);
        }
    }

    #[test]
    fn compressed_streams_stay_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::super::SseBody<http_body_util::Full<Bytes>>>();
    }
}
