//! `tower_sse::serve`'s HTTP/1 fast path against hyper, over real sockets: two servers of the
//! same app, one with the fast path and one without, must answer every head alike, hostile or
//! not (the fast path answers exactly as hyper would, or hands the connection to hyper); and an
//! event stream on the fast path is hyper's, byte for byte but the date, whatever other
//! connections send.

mod support;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::get;
use futures_util::stream;
use http::header::CONTENT_TYPE;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_sse::{Event, EventStream, SseLayer};

/// What a handler saw of its request, for the answer: a difference in how the head was read
/// shows in the body.
fn seen(request: &Request) -> String {
    let mut headers: Vec<String> = request
        .headers()
        .iter()
        .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    headers.sort();
    format!(
        "{} {} {:?} [{}]",
        request.method(),
        request.uri(),
        request.version(),
        headers.join(", ")
    )
}

/// `/events`: two events (the second naming what the handler saw), then the end; `/empty`: an
/// event stream that ends at once; any other path: what the handler saw, as text.
fn app() -> Router {
    let events = |request: Request| async move {
        let seen = seen(&request);
        EventStream::new(stream::iter([Event::data("first"), Event::data(seen)]))
    };
    Router::new()
        .route("/events", get(events))
        .route(
            "/empty",
            get(|| async { EventStream::new(stream::empty::<Event>()) }),
        )
        .fallback(|request: Request| async move { seen(&request).into_response() })
        .layer(SseLayer::new().keep_alive(Duration::from_secs(3600)))
        // An event stream of known length, outside the layer: hyper sends it with a
        // `content-length`, so the fast path hands it over.
        .route(
            "/fixed",
            get(|| async { ([(CONTENT_TYPE, "text/event-stream")], "data: x\n\n") }),
        )
}

/// Serves [`app`], with or without the fast path; its address.
async fn server(fast: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tower_sse::serve(listener, app())
        .http1_fast_path(fast)
        .header_read_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(30));
    tokio::spawn(server.into_future());
    addr
}

/// One response as read off the wire: its status line and headers (the date's value blanked,
/// as it differs by the second), and its body, de-chunked.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    head: String,
    body: Vec<u8>,
}

/// Sends `request` and reads what comes back, response by response, until the connection
/// closes or, on a kept-alive connection, nothing more comes (the server waits for a head).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (Vec<Answer>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may close before reading it all (a head it refuses): that is its answer.
    let _ = stream.write_all(request).await;
    let mut received = Vec::new();
    let mut buf = [0; 16 * 1024];
    loop {
        // Paused time: this elapses only once both sides wait.
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    let (answers, rest) = parse_answers(&received);
    (answers, rest.to_vec())
}

/// The whole responses in `bytes`, and what follows them.
fn parse_answers(mut bytes: &[u8]) -> (Vec<Answer>, &[u8]) {
    let mut answers = Vec::new();
    while let Some(end) = find(bytes, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut rest = &bytes[end + 4..];
        let lower = head.to_ascii_lowercase();
        let chunked = lower.contains("\r\ntransfer-encoding: chunked");
        let length = lower
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|l| l.trim().parse::<usize>().ok());
        let mut body = Vec::new();
        if chunked {
            let Some((data, true, after)) = dechunk(rest) else {
                return (answers, bytes);
            };
            body = data;
            rest = after;
        } else if let Some(length) = length {
            if rest.len() < length {
                return (answers, bytes);
            }
            body.extend_from_slice(&rest[..length]);
            rest = &rest[length..];
        }
        let head = head
            .split("\r\n")
            .map(|l| match l.to_ascii_lowercase().starts_with("date: ") {
                true => "date: <date>",
                false => l,
            })
            .collect::<Vec<_>>()
            .join("\r\n");
        answers.push(Answer { head, body });
        bytes = rest;
    }
    (answers, bytes)
}

/// The whole chunks of a chunked body at the start of `rest`: their data, whether the last
/// chunk came, and what follows; `None` if a chunk is not framed as one (a size line that is
/// not hex, data not followed by its CRLF).
fn dechunk(mut rest: &[u8]) -> Option<(Vec<u8>, bool, &[u8])> {
    let mut data = Vec::new();
    loop {
        let Some(line) = find(rest, b"\r\n") else {
            return Some((data, false, rest));
        };
        let size = std::str::from_utf8(&rest[..line])
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())?;
        let end = line + 2 + size;
        if rest.len() < end + 2 {
            return Some((data, false, rest));
        }
        if &rest[end..end + 2] != b"\r\n" {
            return None;
        }
        data.extend_from_slice(&rest[line + 2..end]);
        rest = &rest[end + 2..];
        if size == 0 {
            return Some((data, true, rest));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A paused-time runtime for the property test, which drives its own cases.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Both servers' answers to `request`, which must be the same.
async fn both_answer_alike(request: &[u8]) -> Vec<Answer> {
    let (fast, hyper) = tokio::join!(server(true), server(false));
    let (on_fast, on_hyper) = tokio::join!(exchange(fast, request), exchange(hyper, request));
    assert_eq!(
        on_fast,
        on_hyper,
        "the two paths answered {:?} differently",
        String::from_utf8_lossy(request)
    );
    on_fast.0
}

#[tokio::test(start_paused = true)]
async fn an_event_stream_on_the_fast_path_is_hypers_but_the_date() {
    let request = b"GET /events?a=1 HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n";
    let answers = both_answer_alike(request).await;
    assert_eq!(answers.len(), 1);
    let answer = &answers[0];
    assert!(
        answer.head.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        answer.head
    );
    assert!(answer.head.contains("content-type: text/event-stream"));
    let body = String::from_utf8(answer.body.clone()).unwrap();
    assert!(body.contains("data: first\n\n"), "{body}");
    assert!(body.contains("data: GET /events?a=1 HTTP/1.1 [accept=text/event-stream, host=h]"));
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_serves_the_next_requests_after_a_stream() {
    // A stream, a second stream, then a plain request, sent at once: pipelined.
    let request = b"GET /events HTTP/1.1\r\nHost: h\r\n\r\n\
                    GET /events HTTP/1.1\r\nHost: h\r\n\r\n\
                    GET /plain HTTP/1.1\r\nHost: h\r\n\r\n";
    let answers = both_answer_alike(request).await;
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert!(answers[2].body.starts_with(b"GET /plain HTTP/1.1"));

    // Sent one after the other on the same connection, the first two on the fast path.
    let addr = server(true).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut received = Vec::new();
    for (i, path) in ["/events", "/empty", "/events", "/plain"]
        .into_iter()
        .enumerate()
    {
        let head = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed before answering {path}");
            received.extend_from_slice(&buf[..n]);
            let (answers, rest) = parse_answers(&received);
            if rest.is_empty() && answers.len() == i + 1 {
                break;
            }
        }
    }
    let (answers, _) = parse_answers(&received);
    assert_eq!(answers.len(), 4);
    // The layer's opening comment, then the end.
    assert_eq!(answers[1].body, b":\n\n", "/empty: {:?}", answers[1]);
}

/// Heads the fast path must not take, each with what hyper answers it: both paths answer alike.
#[tokio::test(start_paused = true)]
async fn hostile_and_ambiguous_heads_are_answered_as_hyper_answers_them() {
    let long_header = format!(
        "GET /events HTTP/1.1\r\nHost: h\r\nX-Long: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let many_headers = format!(
        "GET /events HTTP/1.1\r\n{}\r\n",
        (0..120)
            .map(|i| format!("X-{i}: {i}\r\n"))
            .collect::<String>()
    );
    let heads: Vec<&[u8]> = vec![
        b"GET /events HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /events HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /events HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
        b"GET /events HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"GET /events HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET /events HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET /events HTTP/1.1\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /events HTTP/1.1\r\nX-Ctl: a\x01b\r\n\r\n",
        b"GET /events HTTP/1.1\r\nX Space: a\r\n\r\n",
        b"GET /events HTTP/1.1\r\nX-Space : a\r\n\r\n",
        b"GET /events HTTP/1.1\r\nNoColon\r\n\r\n",
        b"GET /ev\x7fents HTTP/1.1\r\n\r\n",
        b"GET /events HTTP/1.1\nHost: h\n\n",
        b"GET /events HTTP/1.0\r\n\r\n",
        b"GET /events HTTP/2.0\r\n\r\n",
        b"GET http://h/events HTTP/1.1\r\n\r\n",
        b"GET /events HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET /events HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /events HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"HEAD /events HTTP/1.1\r\n\r\n",
        b"get /events HTTP/1.1\r\n\r\n",
        b"\r\nGET /events HTTP/1.1\r\n\r\n",
        b"GET /events HTTP/1.1\r\nHost: h\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /fixed HTTP/1.1\r\n\r\n",
        long_header.as_bytes(),
        many_headers.as_bytes(),
    ];
    for head in heads {
        both_answer_alike(head).await;
    }
}

/// While the fast path writes a stream, hostile heads on other connections change nothing in
/// it: each is answered as hyper answers it, and the stream goes on, uncorrupted.
#[tokio::test(start_paused = true)]
async fn hostile_heads_do_not_touch_a_stream_in_progress() {
    let hub = tower_sse::Hub::builder().memory();
    let sub = {
        let hub = hub.clone();
        move || {
            let hub = hub.clone();
            async move { hub.subscribe("t", None).await }
        }
    };
    let router = Router::new()
        .route("/t", get(sub))
        .layer(SseLayer::new().registry(hub.registry()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(support::serve(listener, router).into_future());

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /t HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        received.extend_from_slice(&buf[..n]);
    }
    // What hyper answers each, on a connection it closes after: the malformed ones a 400; the
    // one with both `Content-Length` and `Transfer-Encoding`, read as chunked (RFC 9112 §6.1:
    // the encoding wins), the stream.
    for (i, (hostile, status)) in [
        (
            &b"GET /t HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            "HTTP/1.1 200",
        ),
        (b"GET /t HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "HTTP/1.1 400"),
        (b"GET /t\x00 HTTP/1.1\r\n\r\n", "HTTP/1.1 400"),
        (b"GET /t HTTP/1.1\r\nX: \x01\r\n\r\n", "HTTP/1.1 400"),
    ]
    .into_iter()
    .enumerate()
    {
        let (answers, rest) = exchange(addr, hostile).await;
        let head = match answers.as_slice() {
            [answer] => answer.head.clone(),
            // An event stream, still open when the client stopped reading.
            [] => {
                let end = find(&rest, b"\r\n\r\n").unwrap_or_else(|| panic!("head {i}: no answer"));
                String::from_utf8_lossy(&rest[..end]).into_owned()
            }
            more => panic!("head {i}: {} answers: {more:?}", more.len()),
        };
        assert!(head.starts_with(status), "head {i}: {head}");
        assert!(
            head.to_ascii_lowercase().contains("\r\nconnection: close"),
            "head {i}: {head}"
        );
        hub.publish("t", Event::data(format!("event {i}")))
            .await
            .unwrap();
    }
    // Every chunk of the stream is well framed, and its data holds every event.
    let want: Vec<String> = (0..4).map(|i| format!("data: event {i}\n\n")).collect();
    let body_at = find(&received, b"\r\n\r\n").unwrap() + 4;
    loop {
        let (data, ended, _) =
            dechunk(&received[body_at..]).expect("the stream's chunks are well framed");
        assert!(!ended, "the stream ended");
        let text = String::from_utf8_lossy(&data);
        if want.iter().all(|w| text.contains(w.as_str())) {
            break;
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert_ne!(n, 0, "the stream ended");
        received.extend_from_slice(&buf[..n]);
    }
}

/// One of `usual` most of the time, else one of `odd`: most heads are then ones the fast path
/// would take, but for the one piece that decides.
fn mostly(
    usual: &'static [&'static str],
    odd: &'static [&'static str],
) -> BoxedStrategy<&'static str> {
    prop_oneof![
        4 => prop::sample::select(usual),
        1 => prop::sample::select(odd),
    ]
    .boxed()
}

/// Once an HTTP/1 request has been answered on a connection, the HTTP/2 preface is no request:
/// hyper closes the connection, and so does the fast path (it does not look for HTTP/2 again).
#[tokio::test(start_paused = true)]
async fn the_http2_preface_after_a_request_is_refused_on_both_paths() {
    async fn in_turns(addr: SocketAddr) -> (Vec<Answer>, Vec<u8>) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut received = Vec::new();
        let turns: [&[u8]; 2] = [
            b"GET /empty HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
        ];
        for turn in turns {
            let _ = stream.write_all(turn).await;
            let mut buf = [0; 4096];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await
                && n > 0
            {
                received.extend_from_slice(&buf[..n]);
            }
        }
        let (answers, rest) = parse_answers(&received);
        (answers, rest.to_vec())
    }
    let (fast, hyper) = tokio::join!(server(true), server(false));
    let (on_fast, on_hyper) = tokio::join!(in_turns(fast), in_turns(hyper));
    assert_eq!(on_fast, on_hyper);
    assert_eq!(on_fast.0.len(), 1);
    assert!(on_fast.1.is_empty(), "no HTTP/2 frame: {:?}", on_fast.1);
}

/// When a head is cut off for taking too long: the same on both paths, also for a head the fast
/// path reads for a while, then hands over as too long for it (hyper goes on under what is left
/// of the timeout, not a new one).
#[tokio::test(start_paused = true)]
async fn a_slow_oversized_head_is_cut_off_when_hyper_cuts_it_off() {
    // 20 KiB a second: past the fast path's 64 KiB after about 3 s.
    let cut_after = |addr| {
        support::head_cut_off_after(
            addr,
            b"GET /events HTTP/1.1\r\nX: ",
            2048,
            Duration::from_millis(100),
        )
    };
    let (fast, hyper) = tokio::join!(server(true), server(false));
    let (on_fast, on_hyper) = tokio::join!(cut_after(fast), cut_after(hyper));
    assert!(on_hyper >= Duration::from_secs(5), "{on_hyper:?}");
    let apart = on_fast.abs_diff(on_hyper);
    assert!(
        apart < Duration::from_millis(200),
        "cut off after {on_fast:?} on the fast path, {on_hyper:?} on hyper"
    );
}

/// A finite stream whose end the client does not read (it stopped reading): once the body has
/// ended the request is over, and the idle timeout closes the connection, as on hyper; nothing
/// else would (the layer's write timeout watches open streams only).
#[tokio::test(start_paused = true)]
async fn an_ended_stream_to_a_client_that_stopped_reading_is_closed_by_the_idle_timeout() {
    let app = Router::new()
        .route(
            "/big",
            get(|| async {
                // Ends within what one write gathers (64 KiB), more than the socket takes.
                let events = (0..12).map(|_| Event::data("x".repeat(4096)));
                EventStream::new(stream::iter(events))
            }),
        )
        .layer(SseLayer::new().write_timeout(Duration::from_secs(1)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = support::serve(listener, app)
        .idle_timeout(Duration::from_secs(2))
        .send_buffer_size(16 * 1024);
    tokio::spawn(server.into_future());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = socket.connect(addr).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    // Not reading for a while: the server cannot send it all.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mut buf = vec![0; 1 << 20];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(1), client.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => {}
            Err(_) => break false,
        }
    };
    assert!(
        closed,
        "the connection is still open, with nothing more to read"
    );
}

/// Pieces of request heads, valid and hostile, that the property test puts together.
fn head_strategy() -> impl Strategy<Value = Vec<u8>> {
    let method = mostly(&["GET"], &["HEAD", "POST", "get", "GET\t", "OPTIONS"]);
    let target = mostly(
        &[
            "/events",
            "/events?x=%20y",
            "/empty",
            "/plain",
            "/",
            "//x",
            "/fixed",
        ],
        &[
            "*",
            "http://h/events",
            "/a b",
            "/\u{7f}",
            "/é",
            "/#f",
            "events",
        ],
    );
    let version = mostly(
        &["HTTP/1.1"],
        &[
            "HTTP/1.0",
            "HTTP/2.0",
            "http/1.1",
            "HTTP/1.10",
            "HTTP/1.1 ",
            "HTTP/0.9",
        ],
    );
    let header = mostly(
        &[
            "Host: h",
            "Accept: text/event-stream",
            "Accept: */*",
            "Connection: keep-alive",
            "Last-Event-ID: 42",
            "Cookie: a=b; c=d",
            "X-Obs: caf\u{e9}",
            "X-Tab: a\tb",
            "X-Empty:",
            "X-Trailing: a  ",
        ],
        &[
            "Connection: close",
            "Connection: Upgrade",
            "Connection: keep-alive, close",
            "Upgrade: websocket",
            "Content-Length: 0",
            "Content-Length: 3",
            "Content-Length: 3, 3",
            "Content-Length: +3",
            "Content-Length: 1\r\nContent-Length: 2",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding: chunked\r\nContent-Length: 3",
            "Expect: 100-continue",
            "TE: trailers",
            "HTTP2-Settings: AAMAAABkAAQAAP__",
            "X-Folded: a\r\n b",
            "X-Folded: a\r\n\tb",
            "X-Nul: a\u{0}b",
            "X-Ctl: a\u{1}b",
            "X-Del: a\u{7f}b",
            "X Space: a",
            "X-Space : a",
            ": no-name",
            "NoColon",
            "X-Long: LONG",
        ],
    );
    let line_end = mostly(&["\r\n"], &["\n"]);
    let after = mostly(
        &[""],
        &[
            "abc",
            "0\r\n\r\n",
            "GET /plain HTTP/1.1\r\n\r\n",
            "GET /events HTTP/1.1\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ],
    );
    (
        method,
        target,
        version,
        prop::collection::vec(header, 0..6),
        line_end,
        prop::bool::weighted(0.9),
        after,
    )
        .prop_map(|(method, target, version, headers, eol, complete, after)| {
            let mut head = format!("{method} {target} {version}{eol}");
            for h in headers {
                let h = h.replace("LONG", &"x".repeat(66 * 1024));
                head.push_str(&h);
                head.push_str(eol);
            }
            if complete {
                head.push_str(eol);
            }
            head.push_str(after);
            head.into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    /// Whatever head a client sends, the fast path answers it exactly as hyper does (or hands
    /// it to hyper, which then does).
    #[test]
    fn the_fast_path_answers_every_head_as_hyper_does(head in head_strategy()) {
        runtime().block_on(both_answer_alike(&head));
    }
}
