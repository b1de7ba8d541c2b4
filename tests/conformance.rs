//! [`tests/CONFORMANCE.md`](CONFORMANCE.md), "The bytes we write": one test or more per case,
//! each checking the exact bytes `Event` writes and what the WHATWG parsing algorithm
//! (`support::whatwg`) makes of them, and the response the layer gives an event stream; then
//! property tests over arbitrary events, split into arbitrary chunks. Each case there names its
//! tests, and [`conformance_md_names_tests_that_exist`] checks that they exist, for every
//! section of that file.
//!
//! At the end, a few checks of the reference parser itself against web-platform-tests cases, so a
//! bug in the parser cannot hide a bug in the encoder.

mod support;

use std::cell::Cell;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseResult, TestRunner};
use support::whatwg::{Item, ParsedEvent, Parser, parse, parse_chunks, split_at_offsets};
use tower::ServiceExt as _;
use tower_sse::testing::EventReader;
use tower_sse::{Event, EventError, EventStream, SseLayer};

/// Parses one event's bytes and returns the parser too, for its last event id and retry.
fn parse_one(event: &Event) -> (Vec<ParsedEvent>, Parser) {
    let mut parser = Parser::new();
    let events = parser.feed(event.as_bytes());
    assert!(
        !parser.has_pending(),
        "the event must end with a blank line: {event:?}"
    );
    (events, parser)
}

/// The data a browser receives for `data` (one `data:` line per line).
fn received_data(data: &str) -> String {
    let (events, _) = parse_one(&Event::data(data));
    assert_eq!(events.len(), 1, "{data:?} must fire exactly one event");
    events.into_iter().next().unwrap().data
}

// --- `data("hello")` → `data: hello\n\n`; multi-line data → one `data: ` line per line ---

#[test]
fn data_hello() {
    let event = Event::data("hello");
    assert_eq!(event.as_bytes(), &b"data: hello\n\n"[..]);
    let (events, parser) = parse_one(&event);
    assert_eq!(events, [ParsedEvent::message("hello")]);
    assert_eq!(parser.last_event_id(), "");
    assert_eq!(parser.retry(), None);
}

#[test]
fn multi_line_data_is_one_data_line_per_line() {
    let event = Event::data("one\ntwo\nthree");
    assert_eq!(
        event.as_bytes(),
        &b"data: one\ndata: two\ndata: three\n\n"[..]
    );
    assert_eq!(
        parse_one(&event).0,
        [ParsedEvent::message("one\ntwo\nthree")]
    );
}

#[test]
fn builder_data_matches_the_data_shortcut() {
    let built = Event::builder().data("one\ntwo").build().unwrap();
    assert_eq!(built, Event::data("one\ntwo"));
}

// --- CR, LF and CRLF each end exactly one line ---

#[test]
fn crlf_in_data_ends_one_line() {
    let event = Event::data("a\r\nb");
    assert_eq!(event.as_bytes(), &b"data: a\ndata: b\n\n"[..]);
    assert_eq!(received_data("a\r\nb"), "a\nb");
}

#[test]
fn lone_cr_in_data_ends_one_line() {
    let event = Event::data("a\rb");
    assert_eq!(event.as_bytes(), &b"data: a\ndata: b\n\n"[..]);
    assert_eq!(received_data("a\rb"), "a\nb");
}

#[test]
fn lone_lf_in_data_ends_one_line() {
    let event = Event::data("a\nb");
    assert_eq!(event.as_bytes(), &b"data: a\ndata: b\n\n"[..]);
    assert_eq!(received_data("a\nb"), "a\nb");
}

#[test]
fn two_crlfs_in_data_make_one_empty_line() {
    let event = Event::data("a\r\n\r\nb");
    assert_eq!(event.as_bytes(), &b"data: a\ndata:\ndata: b\n\n"[..]);
    assert_eq!(received_data("a\r\n\r\nb"), "a\n\nb");
}

#[test]
fn mixed_line_breaks_in_data() {
    // LF CR is two line breaks, not one.
    assert_eq!(received_data("a\n\rb\r\rc\r\n\nd"), "a\n\nb\n\nc\n\nd");
}

#[test]
fn trailing_and_leading_line_breaks_in_data_survive() {
    assert_eq!(received_data("a\n"), "a\n");
    assert_eq!(received_data("\na"), "\na");
    assert_eq!(received_data("\r\n"), "\n");
    assert_eq!(received_data("\r"), "\n");
    assert_eq!(received_data("\n\n"), "\n\n");
}

// --- Always `data: ` with the space ---

#[test]
fn leading_space_in_data_is_kept() {
    let event = Event::data(" x");
    assert_eq!(event.as_bytes(), &b"data:  x\n\n"[..]);
    assert_eq!(received_data(" x"), " x");
}

#[test]
fn leading_spaces_on_every_line_are_kept() {
    assert_eq!(received_data("  a\n b\r\n   c"), "  a\n b\n   c");
}

#[test]
fn colons_in_data_are_kept() {
    assert_eq!(received_data(": not a comment"), ": not a comment");
    assert_eq!(received_data("a: b\nc:d"), "a: b\nc:d");
}

// --- Empty data writes `data:` and fires an empty message ---

#[test]
fn empty_data_fires_an_empty_message() {
    let event = Event::data("");
    assert_eq!(event.as_bytes(), &b"data:\n\n"[..]);
    assert_eq!(parse_one(&event).0, [ParsedEvent::message("")]);

    let built = Event::builder().data("").build().unwrap();
    assert_eq!(built.as_bytes(), &b"data:\n\n"[..]);
}

// --- An event with only an id fires nothing but moves the last event id ---

#[test]
fn id_only_event_fires_nothing_but_moves_the_last_event_id() {
    let event = Event::builder().id("7").build().unwrap();
    assert_eq!(event.as_bytes(), &b"id: 7\n\n"[..]);
    let (events, parser) = parse_one(&event);
    assert!(events.is_empty());
    assert_eq!(parser.last_event_id(), "7");
}

#[test]
fn id_only_event_moves_the_id_seen_by_later_events() {
    let first = Event::builder().id("1").data("a").build().unwrap();
    let id_only = Event::builder().id("2").build().unwrap();
    let later = Event::data("b");
    let stream = [first, id_only, later]
        .iter()
        .flat_map(|e| e.as_bytes().to_vec())
        .collect::<Vec<_>>();
    assert_eq!(
        parse(&stream),
        [
            ParsedEvent::new("message", "a", "1"),
            ParsedEvent::new("message", "b", "2"),
        ]
    );
}

#[test]
fn empty_id_resets_the_last_event_id() {
    let set = Event::builder().id("5").data("a").build().unwrap();
    let reset = Event::builder().id("").build().unwrap();
    assert_eq!(reset.as_bytes(), &b"id:\n\n"[..]);
    let mut parser = Parser::new();
    parser.feed(set.as_bytes());
    assert_eq!(parser.last_event_id(), "5");
    assert!(parser.feed(reset.as_bytes()).is_empty());
    assert_eq!(parser.last_event_id(), "");
}

// --- CR or LF in id, event or a comment, NUL in id: an error, never bytes, never a panic ---

fn assert_rejected(result: Result<Event, EventError>, field: &str, what: &str) {
    let err = result.expect_err("must be rejected");
    let message = err.to_string();
    assert!(
        message.contains(field) && message.contains(what),
        "the error should name the field ({field}) and the character ({what}): {message:?}"
    );
}

#[test]
fn line_breaks_in_id_are_rejected() {
    assert_rejected(
        Event::builder().id("1\ndata: forged").data("x").build(),
        "id",
        "line feed (LF)",
    );
    assert_rejected(
        Event::builder().id("1\rdata: forged").build(),
        "id",
        "carriage return (CR)",
    );
    assert_rejected(
        Event::builder().id("1\r\n").build(),
        "id",
        "carriage return (CR)",
    );
}

#[test]
fn nul_in_id_is_rejected() {
    // A browser would silently ignore the whole `id:` line.
    assert_rejected(Event::builder().id("a\0b").build(), "id", "NUL");
}

#[test]
fn line_breaks_in_event_name_are_rejected() {
    assert_rejected(
        Event::builder().event("a\ndata: forged").build(),
        "event name",
        "line feed (LF)",
    );
    assert_rejected(
        Event::builder().event("a\r").build(),
        "event name",
        "carriage return (CR)",
    );
}

#[test]
fn nul_in_event_name_is_carried() {
    // NUL is only special in ids.
    let event = Event::builder().event("a\0b").data("x").build().unwrap();
    assert_eq!(parse_one(&event).0, [ParsedEvent::new("a\0b", "x", "")]);
}

#[test]
fn line_breaks_in_comment_are_rejected() {
    assert_rejected(
        Event::builder()
            .comment("ok")
            .comment("a\ndata: forged")
            .build(),
        "comment",
        "line feed (LF)",
    );
    assert_rejected(
        Event::builder().comment("\r").build(),
        "comment",
        "carriage return (CR)",
    );
}

#[test]
fn with_id_rejects_what_the_builder_rejects() {
    let event = Event::data("x");
    for bad in ["1\n", "\r1", "1\0"] {
        let err = event.with_id(bad).expect_err(bad);
        assert!(err.to_string().contains("event id"), "{err}");
    }
}

#[test]
fn comments_are_written_and_ignored() {
    let event = Event::builder()
        .comment("debug info")
        .comment("")
        .data("x")
        .build()
        .unwrap();
    assert_eq!(event.as_bytes(), &b": debug info\n:\ndata: x\n\n"[..]);
    let items = Parser::new().feed_items(event.as_bytes());
    assert_eq!(
        items,
        [
            Item::Comment {
                text: " debug info".to_owned(),
                mid_event: false
            },
            Item::Comment {
                text: String::new(),
                mid_event: false
            },
            Item::Event(ParsedEvent::message("x")),
        ]
    );
}

// --- `retry:` is ASCII digits only ---

#[test]
fn retry_is_ascii_digits() {
    for (retry, digits) in [
        (Duration::ZERO, "0"),
        (Duration::from_millis(1), "1"),
        (Duration::from_micros(1999), "1"),
        (Duration::from_secs(3), "3000"),
        (Duration::from_secs(u64::MAX), "18446744073709551615"),
        (Duration::MAX, "18446744073709551615"),
    ] {
        let event = Event::retry(retry);
        assert_eq!(event.as_bytes(), format!("retry: {digits}\n\n").as_bytes());
        let (events, parser) = parse_one(&event);
        assert!(events.is_empty());
        assert_eq!(parser.retry(), Some(digits.parse().unwrap()));

        let built = Event::builder().retry(retry).data("x").build().unwrap();
        let text = std::str::from_utf8(built.as_bytes()).unwrap();
        let line = text.lines().find(|l| l.starts_with("retry")).unwrap();
        let value = line.strip_prefix("retry: ").unwrap();
        assert!(value.bytes().all(|b| b.is_ascii_digit()), "{line:?}");
        assert_eq!(value, digits);
    }
}

// --- No BOM, ever ---

#[test]
fn no_bom_even_when_data_starts_with_one() {
    let event = Event::data("\u{feff}x");
    assert!(!event.as_bytes().starts_with(b"\xEF\xBB\xBF"));
    // The BOM is not at the start of the stream, so the browser keeps it as data.
    assert_eq!(received_data("\u{feff}x"), "\u{feff}x");

    for event in [
        Event::builder()
            .comment("\u{feff}")
            .data("x")
            .build()
            .unwrap(),
        Event::builder().id("\u{feff}").build().unwrap(),
        Event::builder().event("\u{feff}").build().unwrap(),
        Event::retry(Duration::from_secs(1)),
    ] {
        assert!(!event.as_bytes().starts_with(b"\xEF\xBB\xBF"), "{event:?}");
    }
}

// --- Every event ends with a blank line ---

#[test]
fn every_event_ends_with_a_blank_line() {
    let events = [
        Event::data(""),
        Event::data("x\n"),
        Event::data("x\r"),
        Event::retry(Duration::ZERO),
        Event::builder().build().unwrap(),
        Event::builder().id("").build().unwrap(),
        Event::builder().event("").build().unwrap(),
        Event::builder().comment("c").build().unwrap(),
        Event::builder()
            .id("1")
            .event("e")
            .retry(Duration::from_secs(1))
            .comment("c")
            .data("d\r\n")
            .build()
            .unwrap(),
        Event::data("x").with_id("9").unwrap(),
    ];
    for event in events {
        let bytes = event.as_bytes();
        assert!(bytes.ends_with(b"\n\n") || &bytes[..] == b"\n", "{event:?}");
        assert!(!bytes.contains(&b'\r'), "never a CR: {event:?}");
        // A blank line only at the end: the event is exactly one event.
        let body = &bytes[..bytes.len() - 1];
        assert!(
            !body.windows(2).any(|w| w == b"\n\n") && !body.starts_with(b"\n"),
            "{event:?}"
        );
        let mut parser = Parser::new();
        parser.feed(bytes);
        assert!(!parser.has_pending(), "{event:?}");
    }
}

#[test]
fn an_empty_builder_writes_a_lone_blank_line() {
    let event = Event::builder().build().unwrap();
    assert_eq!(event.as_bytes(), &b"\n"[..]);
    assert!(parse_one(&event).0.is_empty());
}

// --- Output is UTF-8; non-ASCII data round-trips ---

#[test]
fn output_is_utf8_and_non_ascii_round_trips() {
    let data = "héllo, 世界 🎉\nΣ\u{0}\u{7f}\u{2028}end";
    let event = Event::builder()
        .id("ïd-✓")
        .event("évènement")
        .comment("コメント")
        .data(data)
        .build()
        .unwrap();
    assert!(std::str::from_utf8(event.as_bytes()).is_ok());
    assert_eq!(event.id(), Some("ïd-✓"));
    let (events, parser) = parse_one(&event);
    assert_eq!(events, [ParsedEvent::new("évènement", data, "ïd-✓")]);
    assert_eq!(parser.last_event_id(), "ïd-✓");
}

#[test]
fn non_ascii_survives_any_split() {
    let event = Event::builder().id("✓").data("日本語🎉").build().unwrap();
    let bytes = event.as_bytes();
    for cut in 0..=bytes.len() {
        let events = parse_chunks([&bytes[..cut], &bytes[cut..]]);
        assert_eq!(
            events,
            [ParsedEvent::new("message", "日本語🎉", "✓")],
            "{cut}"
        );
    }
}

// --- Event names and ids, as the browser sees them ---

#[test]
fn event_name_sets_the_type() {
    let event = Event::builder().event("price").data("1").build().unwrap();
    assert_eq!(event.as_bytes(), &b"event: price\ndata: 1\n\n"[..]);
    assert_eq!(parse_one(&event).0, [ParsedEvent::new("price", "1", "")]);
}

#[test]
fn empty_event_name_is_a_message() {
    let event = Event::builder().event("").data("1").build().unwrap();
    assert_eq!(event.as_bytes(), &b"event:\ndata: 1\n\n"[..]);
    assert_eq!(parse_one(&event).0, [ParsedEvent::message("1")]);
}

#[test]
fn leading_spaces_in_id_and_event_name_are_kept() {
    let event = Event::builder()
        .id(" 1")
        .event(" e")
        .data("x")
        .build()
        .unwrap();
    assert_eq!(event.id(), Some(" 1"));
    assert_eq!(parse_one(&event).0, [ParsedEvent::new(" e", "x", " 1")]);
}

#[test]
fn the_documented_example_parses() {
    let event = Event::builder()
        .event("price")
        .id("42")
        .data("EUR 1.08\nUSD 1.00")
        .retry(Duration::from_secs(3))
        .build()
        .unwrap();
    let (events, parser) = parse_one(&event);
    assert_eq!(
        events,
        [ParsedEvent::new("price", "EUR 1.08\nUSD 1.00", "42")]
    );
    assert_eq!(parser.retry(), Some(3000));
}

// --- `Event::with_id` ---

#[test]
fn with_id_replaces_an_id() {
    let original = Event::builder()
        .id("1")
        .event("e")
        .data("x\ny")
        .build()
        .unwrap();
    let renumbered = original.with_id("2").unwrap();
    assert_eq!(
        renumbered.as_bytes(),
        &b"id: 2\nevent: e\ndata: x\ndata: y\n\n"[..]
    );
    assert_eq!(renumbered.id(), Some("2"));
    assert_eq!(
        parse_one(&renumbered).0,
        [ParsedEvent::new("e", "x\ny", "2")]
    );
    // The original is untouched.
    assert_eq!(original.id(), Some("1"));
    assert_eq!(parse_one(&original).0, [ParsedEvent::new("e", "x\ny", "1")]);
}

#[test]
fn with_id_adds_an_id() {
    let event = Event::data("x").with_id("10").unwrap();
    assert_eq!(event.as_bytes(), &b"id: 10\ndata: x\n\n"[..]);
    assert_eq!(
        parse_one(&event).0,
        [ParsedEvent::new("message", "x", "10")]
    );
    // Twice in a row is the same as once.
    assert_eq!(
        event.with_id("11").unwrap(),
        Event::data("x").with_id("11").unwrap()
    );
}

#[test]
fn with_id_on_an_id_only_event() {
    let event = Event::builder()
        .id("1")
        .build()
        .unwrap()
        .with_id("")
        .unwrap();
    assert_eq!(event.as_bytes(), &b"id:\n\n"[..]);
    assert_eq!(event.id(), Some(""));
}

// --- Several events in one stream ---

#[test]
fn concatenated_events_parse_as_the_same_sequence() {
    let events = [
        Event::builder().id("1").data("first").build().unwrap(),
        Event::builder()
            .event("custom")
            .data("second\r\nline")
            .build()
            .unwrap(),
        Event::retry(Duration::from_millis(1500)),
        Event::builder().comment("keep-alive").build().unwrap(),
        Event::data(""),
        Event::builder().id("3").event("e").build().unwrap(),
        Event::data(" last"),
    ];
    let stream: Vec<u8> = events.iter().flat_map(|e| e.as_bytes().to_vec()).collect();
    let expected = [
        ParsedEvent::new("message", "first", "1"),
        ParsedEvent::new("custom", "second\nline", "1"),
        ParsedEvent::new("message", "", "1"),
        // The event name of an event without data is reset at its blank line.
        ParsedEvent::new("message", " last", "3"),
    ];
    assert_eq!(parse(&stream), expected);
    // Byte by byte.
    assert_eq!(parse_chunks(stream.chunks(1)), expected);
    // Event by event, keeping the parser's state.
    let mut parser = Parser::new();
    let one_by_one: Vec<_> = events
        .iter()
        .flat_map(|e| parser.feed(e.as_bytes()))
        .collect();
    assert_eq!(one_by_one, expected);
    assert_eq!(parser.retry(), Some(1500));
    assert_eq!(parser.last_event_id(), "3");
}

// --- Response: 200, `text/event-stream`, `no-cache`, `X-Accel-Buffering: no`, no
// `Content-Length`, no `Connection` header on HTTP/2 ---

/// The layer's response to a handler that set what an HTTP/1.1 handler might (a length and a
/// `Connection` header), taken from the router as a service, before any server touches it.
#[tokio::test]
async fn response_is_an_uncached_unbuffered_event_stream_without_connection_headers_on_http2() {
    async fn stream() -> Response {
        let mut response =
            EventStream::new(futures_util::stream::iter([Event::data("x")])).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("9"));
        response
    }
    let app = Router::new()
        .route("/events", get(stream))
        .layer(SseLayer::new());
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let request = Request::get("/events")
            .version(version)
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let headers = response.headers();
        assert_eq!(response.status(), StatusCode::OK, "{version:?}");
        assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
        let cache_control = headers[header::CACHE_CONTROL].to_str().unwrap();
        assert!(
            cache_control.split(',').any(|d| d.trim() == "no-cache"),
            "{version:?}: Cache-Control: {cache_control}"
        );
        assert_eq!(headers["x-accel-buffering"], "no", "{version:?}");
        assert!(headers.get(header::CONTENT_LENGTH).is_none(), "{version:?}");
        assert_eq!(
            headers.get(header::CONNECTION).is_none(),
            version == Version::HTTP_2,
            "{version:?}: Connection {:?}",
            headers.get(header::CONNECTION)
        );
        let mut events = EventReader::new(response.into_body());
        assert_eq!(
            events.until_end().await.unwrap(),
            [ParsedEvent::message("x")],
            "{version:?}"
        );
        assert!(!events.parser().has_pending(), "{version:?}");
    }
}

// --- Property tests ---

/// Characters that matter to the format, plus anything.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        2 => prop::sample::select(vec!['a', 'b', '1', 'é', '🎉']),
        1 => prop::sample::select(vec!['\r', '\n', '\0', ' ', ':', '\u{feff}']),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(interesting_char(), 0..12).prop_map(|chars| chars.into_iter().collect())
}

#[derive(Debug, Clone)]
struct Spec {
    id: Option<String>,
    event: Option<String>,
    retry: Option<Duration>,
    comments: Vec<String>,
    data: Option<String>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of((any::<u64>(), 0..1_000_000_000u32, any::<bool>()).prop_map(
            |(n, nanos, small)| {
                if small {
                    Duration::from_millis(n % 100_000)
                } else {
                    Duration::new(n, nanos)
                }
            },
        )),
        prop::collection::vec(text(), 0..3),
        prop::option::of(text()),
    )
        .prop_map(|(id, event, retry, comments, data)| Spec {
            id,
            event,
            retry,
            comments,
            data,
        })
}

impl Spec {
    fn build(&self) -> Result<Event, EventError> {
        let mut builder = Event::builder();
        if let Some(id) = &self.id {
            builder = builder.id(id.clone());
        }
        if let Some(event) = &self.event {
            builder = builder.event(event.clone());
        }
        if let Some(retry) = self.retry {
            builder = builder.retry(retry);
        }
        for comment in &self.comments {
            builder = builder.comment(comment.clone());
        }
        if let Some(data) = &self.data {
            builder = builder.data(data.clone());
        }
        builder.build()
    }

    /// The error [`EventBuilder::build`](tower_sse::EventBuilder::build) documents for this
    /// event, or `None` when the wire format can carry it: the first invalid value set (the
    /// id, the event name, then each comment, in the order [`Spec::build`] sets them), naming
    /// the field and its first forbidden character.
    fn expected_error(&self) -> Option<String> {
        let first = |s: &str, forbidden: &[char]| s.chars().find(|c| forbidden.contains(c));
        let id = self
            .id
            .as_deref()
            .and_then(|id| first(id, &['\r', '\n', '\0']));
        let name = self
            .event
            .as_deref()
            .and_then(|name| first(name, &['\r', '\n']));
        let comment = self
            .comments
            .iter()
            .find_map(|text| first(text, &['\r', '\n']));
        let (field, c, rule) = match (id, name, comment) {
            (Some(c), _, _) => ("event id", c, "ids may not contain CR, LF or NUL"),
            (None, Some(c), _) => ("event name", c, "names may not contain CR or LF"),
            (None, None, Some(c)) => ("comment", c, "comments may not contain CR or LF"),
            (None, None, None) => return None,
        };
        let what = match c {
            '\r' => "a carriage return (CR)",
            '\n' => "a line feed (LF)",
            _ => "a NUL character",
        };
        Some(format!("{field} contains {what}; {rule}"))
    }

    /// Builds the event, checking that it fails exactly when, and exactly as, documented:
    /// `Ok(Some(event))`, or `Ok(None)` for a rejected event, after counting it in `rejected`.
    fn build_checked(&self, rejected: &Cell<usize>) -> Result<Option<Event>, TestCaseError> {
        match (self.build(), self.expected_error()) {
            (Ok(event), None) => Ok(Some(event)),
            (Err(err), Some(expected)) => {
                prop_assert_eq!(err.to_string(), expected);
                rejected.set(rejected.get() + 1);
                Ok(None)
            }
            (Ok(event), Some(expected)) => Err(TestCaseError::fail(format!(
                "accepted {event:?}; expected {expected:?}"
            ))),
            (Err(err), None) => Err(TestCaseError::fail(format!(
                "rejected a valid event: {err}"
            ))),
        }
    }

    fn retry_millis(&self) -> Option<u64> {
        self.retry
            .map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX))
    }

    /// What the browser fires for this event, given the last event id before it.
    fn expected(&self, last_event_id: &str) -> Option<ParsedEvent> {
        let data = self.data.as_ref()?;
        Some(ParsedEvent::new(
            match self.event.as_deref() {
                None | Some("") => "message",
                Some(name) => name,
            },
            data.replace("\r\n", "\n").replace('\r', "\n"),
            self.id.as_deref().unwrap_or(last_event_id),
        ))
    }
}

/// A fixed seed keeps the suite deterministic; set `PROPTEST_RNG_SEED` (or `PROPTEST_CASES`)
/// to explore further.
fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            512
        },
        rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
            default.rng_seed
        } else {
            RngSeed::Fixed(0x7e5e)
        },
        source_file: Some(file!()),
        ..default
    }
}

/// Runs `test` on [`config`]'s cases of `strategy`, each case counting the events it saw
/// rejected (each with its documented error, see [`Spec::build_checked`]). Fails on the first
/// failing case (shrunk); returns how many cases ran and how many events were rejected, having
/// checked that rejections were common: a generator that drifted to valid events only would
/// leave the errors untested while passing.
fn run_counting<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value, &Cell<usize>) -> TestCaseResult,
) -> (usize, usize) {
    let (cases, rejected) = (Cell::new(0), Cell::new(0));
    let result = TestRunner::new(config()).run(&strategy, |value| {
        cases.set(cases.get() + 1);
        test(value, &rejected)
    });
    if let Err(err) = result {
        panic!("{name}: {err}");
    }
    let (cases, rejected) = (cases.get(), rejected.get());
    eprintln!("{name}: {cases} cases, {rejected} events rejected with the documented error");
    assert!(
        rejected >= cases / 10,
        "{name}: only {rejected} events rejected in {cases} cases"
    );
    (cases, rejected)
}

/// Any event either fails to build with the documented error, because it really holds a
/// forbidden character, or reaches the browser exactly as it was set, however the bytes are
/// split.
#[test]
fn any_event_round_trips_or_is_rejected() {
    let strategy = (spec(), prop::collection::vec(any::<usize>(), 0..6));
    let (cases, rejected) = run_counting("any event", strategy, |(spec, offsets), rejected| {
        let Some(event) = spec.build_checked(rejected)? else {
            return Ok(());
        };
        let bytes = event.as_bytes();
        prop_assert!(std::str::from_utf8(bytes).is_ok());
        prop_assert!(!bytes.starts_with(b"\xEF\xBB\xBF"));
        prop_assert!(bytes.ends_with(b"\n\n") || &bytes[..] == b"\n");
        prop_assert!(!bytes.contains(&b'\r'));
        prop_assert_eq!(event.id(), spec.id.as_deref());
        prop_assert_eq!(event.len(), bytes.len());

        let mut parser = Parser::new();
        let mut events = Vec::new();
        for chunk in split_at_offsets(bytes, &offsets) {
            events.extend(parser.feed(chunk));
        }
        let expected: Vec<_> = spec.expected("").into_iter().collect();
        prop_assert_eq!(events, expected);
        prop_assert!(!parser.has_pending());
        prop_assert_eq!(parser.last_event_id(), spec.id.as_deref().unwrap_or(""));
        prop_assert_eq!(parser.retry(), spec.retry_millis());

        // Comments arrive as written.
        let comments: Vec<String> = Parser::new()
            .feed_items(bytes)
            .into_iter()
            .filter_map(|item| match item {
                Item::Comment { text, .. } => Some(text),
                Item::Event(_) => None,
            })
            .collect();
        let written: Vec<String> = spec
            .comments
            .iter()
            .map(|c| {
                if c.is_empty() {
                    String::new()
                } else {
                    format!(" {c}")
                }
            })
            .collect();
        prop_assert_eq!(comments, written);
        Ok(())
    });
    assert!(
        cases - rejected >= cases / 10,
        "only {} of {cases} events were valid",
        cases - rejected
    );
}

/// `with_id` gives the same result as building with that id, errors included.
#[test]
fn with_id_is_building_with_that_id() {
    run_counting("with_id", (spec(), text()), |(spec, id), rejected| {
        let Some(event) = spec.build_checked(rejected)? else {
            return Ok(());
        };
        let with_spec = Spec {
            id: Some(id.clone()),
            ..spec
        };
        match (event.with_id(&id), with_spec.build()) {
            (Ok(a), Ok(b)) => {
                // Same event in the browser; the field order may differ only by the id line,
                // which both put first.
                prop_assert_eq!(a.as_bytes(), b.as_bytes());
                prop_assert_eq!(a.id(), Some(id.as_str()));
            }
            (Err(a), Err(b)) => {
                // The event was valid, so the id is what is wrong, for both.
                prop_assert_eq!(a.to_string(), b.to_string());
                prop_assert_eq!(Some(a.to_string()), with_spec.expected_error());
                rejected.set(rejected.get() + 1);
            }
            (a, b) => prop_assert!(false, "with_id {:?} but build {:?}", a, b),
        }
        Ok(())
    });
}

/// A stream of events parses as the sequence of what each event means, the last event id
/// carrying over from one event to the next, whatever the chunking. Events that fail to build
/// (with the documented error) are left out of the stream.
#[test]
fn concatenated_events_round_trip() {
    let strategy = (
        prop::collection::vec(spec(), 0..8),
        prop::collection::vec(any::<usize>(), 0..12),
    );
    run_counting("concatenated", strategy, |(specs, offsets), rejected| {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        let mut last_event_id = String::new();
        let mut retry = None;
        for spec in &specs {
            let Some(event) = spec.build_checked(rejected)? else {
                continue;
            };
            stream.extend_from_slice(event.as_bytes());
            expected.extend(spec.expected(&last_event_id));
            if let Some(id) = &spec.id {
                last_event_id.clone_from(id);
            }
            retry = spec.retry_millis().or(retry);
        }
        let mut parser = Parser::new();
        let mut events = Vec::new();
        for chunk in split_at_offsets(&stream, &offsets) {
            events.extend(parser.feed(chunk));
        }
        prop_assert_eq!(events, expected);
        prop_assert!(!parser.has_pending());
        prop_assert_eq!(parser.last_event_id(), last_event_id.as_str());
        prop_assert_eq!(parser.retry(), retry);
        Ok(())
    });
}

// --- The reference parser itself (web-platform-tests `eventsource/format-*`) ---

#[test]
fn parser_strips_one_leading_bom() {
    // format-bom.htm: a BOM later in the stream is part of a field name.
    let stream = "\u{feff}data:1\n\n\u{feff}data:2\n\ndata:3\n\n";
    assert_eq!(
        parse(stream.as_bytes()),
        [ParsedEvent::message("1"), ParsedEvent::message("3")]
    );
    // format-bom-2.htm: only one BOM is stripped.
    let stream = "\u{feff}\u{feff}data:1\n\ndata:2\n\ndata:3\n\n";
    assert_eq!(
        parse(stream.as_bytes()),
        [ParsedEvent::message("2"), ParsedEvent::message("3")]
    );
    // Split inside the BOM.
    let stream = "\u{feff}data:1\n\n".as_bytes();
    for cut in 0..stream.len() {
        assert_eq!(
            parse_chunks([&stream[..cut], &stream[cut..]]),
            [ParsedEvent::message("1")],
            "{cut}"
        );
    }
}

#[test]
fn parser_field_parsing() {
    // format-field-parsing.htm
    let stream = "data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n";
    assert_eq!(
        parse(stream.as_bytes()),
        [ParsedEvent::message("\0\n 2\n1\n3\n\n4")]
    );
}

#[test]
fn parser_line_endings_and_chunk_boundaries() {
    for stream in [
        "data: a\r\ndata: b\r\n\r\n",
        "data: a\rdata: b\r\r",
        "data: a\ndata: b\n\n",
        "data: a\r\ndata: b\n\r",
    ] {
        let bytes = stream.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(
                parse_chunks([&bytes[..cut], &bytes[cut..]]),
                [ParsedEvent::message("a\nb")],
                "{stream:?} split at {cut}"
            );
        }
    }
    // A CR that ends one chunk and the LF that starts the next are one line end.
    let mut parser = Parser::new();
    assert!(parser.feed(b"data: a\r").is_empty());
    assert_eq!(
        parser.feed(b"\ndata: b\r\n\r\n"),
        [ParsedEvent::message("a\nb")]
    );
}

#[test]
fn parser_fields() {
    let stream = b"data\n\nid: 1\0\nid: 2\nretry: 12x\nretry: 300\nretry:\nretry: -1\nfoo: bar\nevent:x\ndata:y\n\ndata: z\n\n";
    let mut parser = Parser::new();
    assert_eq!(
        parser.feed(stream),
        [
            // A field name alone has an empty value.
            ParsedEvent::message(""),
            // An id with NUL is ignored; unknown fields are ignored.
            ParsedEvent::new("x", "y", "2"),
            // The event type is reset after dispatch; the id is not.
            ParsedEvent::new("message", "z", "2"),
        ]
    );
    assert_eq!(parser.retry(), Some(300));
}

#[test]
fn parser_discards_an_incomplete_final_event() {
    let mut parser = Parser::new();
    assert_eq!(
        parser.feed(b"data: a\n\ndata: b\n"),
        [ParsedEvent::message("a")]
    );
    assert!(parser.has_pending());
    let mut parser = Parser::new();
    parser.feed(b"data: a\n\ndata: b");
    assert!(parser.has_pending());
    // An id in an unfinished event does not move the last event id.
    let mut parser = Parser::new();
    parser.feed(b"id: 1\n");
    assert_eq!(parser.last_event_id(), "");
}

#[test]
fn parser_reports_comments_in_order() {
    let items = Parser::new().feed_items(b": a\ndata: x\n:b\n\n:c\n");
    assert_eq!(
        items,
        [
            Item::Comment {
                text: " a".to_owned(),
                mid_event: false
            },
            Item::Comment {
                text: "b".to_owned(),
                mid_event: true
            },
            Item::Event(ParsedEvent::message("x")),
            Item::Comment {
                text: "c".to_owned(),
                mid_event: false
            },
        ]
    );
}

#[test]
fn parser_replaces_invalid_utf8() {
    assert_eq!(
        parse(b"data: a\xFFb\n\n"),
        [ParsedEvent::message("a\u{fffd}b")]
    );
}

// --- tests/CONFORMANCE.md: each case names tests that exist ---

/// A case of tests/CONFORMANCE.md: its section and its text, test lines included.
struct Case {
    section: String,
    text: String,
}

/// The cases of tests/CONFORMANCE.md: each `- ` bullet under a `## ` heading, with the indented
/// lines that follow it.
fn conformance_cases(doc: &str) -> Vec<Case> {
    let mut section = None;
    let mut cases: Vec<Case> = Vec::new();
    for line in doc.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            section = Some(title.to_owned());
        } else if let (Some(section), Some(text)) = (&section, line.strip_prefix("- ")) {
            cases.push(Case {
                section: section.clone(),
                text: text.to_owned(),
            });
        } else if let (Some(case), true) = (cases.last_mut(), line.starts_with("  ")) {
            case.text.push(' ');
            case.text.push_str(line.trim());
        }
    }
    cases
}

/// The tests a case names: each code span `path::test`, with `path` under `tests/` or `src/`.
fn named_tests(case: &str) -> Vec<(&str, &str)> {
    case.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|span| span.split_once("::"))
        .filter(|(path, _)| path.starts_with("tests/") || path.starts_with("src/"))
        .collect()
}

#[test]
fn conformance_md_names_tests_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("tests/CONFORMANCE.md")).unwrap();
    let cases = conformance_cases(&doc);
    assert!(cases.len() >= 30, "only {} cases read", cases.len());
    let mut problems = Vec::new();
    for case in &cases {
        let tests = named_tests(&case.text);
        let short: String = case.text.chars().take(60).collect();
        if tests.is_empty() && !case.text.contains("No test yet") {
            problems.push(format!(
                "{short:?}: names no test and does not say `No test yet`"
            ));
        }
        if case.section == "The bytes we write"
            && !tests
                .iter()
                .any(|(path, _)| *path == "tests/conformance.rs")
        {
            problems.push(format!("{short:?}: names no test in tests/conformance.rs"));
        }
        for (path, test) in tests {
            let Ok(source) = std::fs::read_to_string(root.join(path)) else {
                problems.push(format!("{short:?}: {path} does not exist"));
                continue;
            };
            // A Rust test function, or (for a `.mjs` file) the start of a test's title.
            let found = if path.ends_with(".rs") {
                source.contains(&format!("fn {test}("))
            } else {
                source.contains(test)
            };
            if !found {
                problems.push(format!("{short:?}: no test `{test}` in {path}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "tests/CONFORMANCE.md:\n{}",
        problems.join("\n")
    );
}
