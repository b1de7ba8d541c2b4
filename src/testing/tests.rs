use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body::Frame;
use http_body_util::StreamBody;
use proptest::prelude::*;

use super::*;
use crate::{Event, EventStream};

/// A body that yields these chunks as its frames, then ends.
fn chunked(
    chunks: &[&[u8]],
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
    let frames: Vec<_> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(stream::iter(frames))
}

/// Splits `bytes` at these offsets (modulo its length, any order).
fn split(bytes: &[u8], offsets: &[usize]) -> Vec<Vec<u8>> {
    if bytes.is_empty() {
        return vec![Vec::new()];
    }
    let mut cuts: Vec<usize> = offsets.iter().map(|&o| o % bytes.len()).collect();
    cuts.extend([0, bytes.len()]);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

// --- Parser ---

#[test]
fn parser_fires_what_a_browser_fires() {
    let stream = b"\xEF\xBB\xBFid: 1\r\nevent: a\rdata: x\ndata\n\n: c\nid\nretry: 10\nretry: x\n\ndata:  y\n\n";
    let mut parser = Parser::new();
    assert_eq!(
        parser.feed_items(stream),
        [
            Item::Event(ParsedEvent::new("a", "x\n", "1")),
            Item::Comment {
                text: " c".to_owned(),
                mid_event: false
            },
            Item::Event(ParsedEvent::new("message", " y", "")),
        ]
    );
    assert_eq!(parser.retry(), Some(Duration::from_millis(10)));
    assert_eq!(parser.last_event_id(), "");
    assert!(!parser.has_pending());
}

#[test]
fn parser_ignores_an_id_with_nul_and_a_bom_after_the_start() {
    let events = parse(b"id: 5\n\nid: 6\0\ndata: a\n\n\xEF\xBB\xBFdata: b\n\n");
    assert_eq!(events, [ParsedEvent::new("message", "a", "5")]);
}

#[test]
fn parser_saturates_a_huge_retry() {
    let mut parser = Parser::new();
    parser.feed(b"retry: 99999999999999999999999999\n\n");
    assert_eq!(parser.retry(), Some(Duration::from_millis(u64::MAX)));
}

#[test]
fn parser_reads_every_event_the_crate_writes_back() {
    let event = Event::builder()
        .id("7")
        .event("e")
        .comment("note")
        .retry(Duration::from_secs(2))
        .data("a\r\nb")
        .build()
        .unwrap();
    let mut parser = Parser::new();
    assert_eq!(
        parser.feed_items(event.as_bytes()),
        [
            Item::Comment {
                text: " note".to_owned(),
                mid_event: true
            },
            Item::Event(ParsedEvent::new("e", "a\nb", "7")),
        ]
    );
    assert_eq!(parser.retry(), Some(Duration::from_secs(2)));
}

#[test]
fn parser_strips_a_bom_split_at_every_point() {
    let stream = b"\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\ndata: c\n\n";
    let whole = parse(stream);
    assert_eq!(
        whole,
        [
            ParsedEvent::new("message", "a", ""),
            ParsedEvent::new("message", "c", "")
        ]
    );
    for first in 0..=stream.len() {
        for second in first..=stream.len() {
            let mut parser = Parser::new();
            let mut events = Vec::new();
            for chunk in [&stream[..first], &stream[first..second], &stream[second..]] {
                events.extend(
                    parser
                        .feed_items(chunk)
                        .into_iter()
                        .filter_map(|item| match item {
                            Item::Event(event) => Some(event),
                            _ => None,
                        }),
                );
            }
            assert_eq!(events, whole, "split at {first} and {second}");
        }
    }
}

proptest! {
    /// Any bytes, after a whole, partial or doubled BOM, split anywhere (the BOM too): no
    /// panic, and the same items and state as in one chunk.
    #[test]
    fn parser_takes_any_bytes_split_anywhere(
        bom in prop_oneof![
            Just(&b""[..]),
            Just(&b"\xEF"[..]),
            Just(&b"\xEF\xBB"[..]),
            Just(&b"\xEF\xBB\xBF"[..]),
            Just(&b"\xEF\xBB\xBF\xEF\xBB\xBF"[..]),
        ],
        rest in proptest::collection::vec(
            prop_oneof![
                4 => any::<u8>(),
                1 => Just(b'\r'),
                1 => Just(b'\n'),
                1 => Just(b':'),
                1 => Just(0xEF),
            ],
            0..200,
        ),
        offsets in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let bytes = [bom, &rest[..]].concat();
        let mut whole = Parser::new();
        let expected = whole.feed_items(&bytes);
        let mut parser = Parser::new();
        let items: Vec<Item> = split(&bytes, &offsets)
            .iter()
            .flat_map(|chunk| parser.feed_items(chunk))
            .collect();
        prop_assert_eq!(items, expected);
        prop_assert_eq!(parser.last_event_id(), whole.last_event_id());
        prop_assert_eq!(parser.retry(), whole.retry());
        prop_assert_eq!(parser.has_pending(), whole.has_pending());
    }

    /// Field lines made of format characters: no panic, and events only at blank lines.
    #[test]
    fn parser_takes_any_field_lines(
        lines in proptest::collection::vec("(data|event|id|retry|:|x)?:? ?[a-z0-9: \r\n\0é]{0,8}", 0..20),
    ) {
        let stream = lines.join("\n");
        let events = parse(stream.as_bytes());
        prop_assert!(events.len() <= lines.len());
        for event in events {
            prop_assert!(!event.event_type.is_empty());
            prop_assert!(!event.last_event_id.contains('\0'));
        }
    }
}

// --- EventReader ---

#[tokio::test]
async fn reader_reads_events_split_across_frames_anywhere() {
    let bytes = "\u{feff}: hi\r\nid: ✓\r\ndata: é\r\n\r\ndata: 2\r\r".as_bytes();
    for offsets in [
        vec![],
        vec![1, 2],
        vec![5, 19, 20, 21],
        (0..bytes.len()).collect(),
    ] {
        let chunks = split(bytes, &offsets);
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let mut reader = EventReader::new(chunked(&chunks));
        assert_eq!(
            reader.until_end().await.unwrap(),
            [
                ParsedEvent::new("message", "é", "✓"),
                ParsedEvent::new("message", "2", "✓"),
            ],
            "{offsets:?}"
        );
        assert!(reader.is_ended());
        assert!(!reader.parser().has_pending());
    }
}

#[tokio::test]
async fn take_stops_at_n_and_gives_fewer_at_the_end() {
    let mut reader = EventReader::new(chunked(&[b": c\ndata: 1\n\ndata: 2\n\n", b"data: 3\n\n"]));
    assert_eq!(reader.take(0).await.unwrap(), []);
    assert_eq!(
        reader.take(2).await.unwrap(),
        [ParsedEvent::message("1"), ParsedEvent::message("2")]
    );
    assert!(
        !reader.is_ended(),
        "two events needed no more than one frame"
    );
    assert_eq!(reader.take(5).await.unwrap(), [ParsedEvent::message("3")]);
    assert!(reader.is_ended());
    assert_eq!(reader.take(1).await.unwrap(), []);
    assert_eq!(reader.next_event().await.unwrap(), None);
}

#[tokio::test]
async fn next_item_reports_comments_and_next_event_skips_them() {
    let mut reader = EventReader::new(chunked(&[b": a\n\ndata: x\n\n: b\n\ndata: y\n\n"]));
    assert_eq!(
        reader.next_item().await.unwrap(),
        Some(Item::Comment {
            text: " a".to_owned(),
            mid_event: false
        })
    );
    assert_eq!(
        reader.next_item().await.unwrap(),
        Some(Item::Event(ParsedEvent::message("x")))
    );
    assert_eq!(
        reader.next_event().await.unwrap(),
        Some(ParsedEvent::message("y"))
    );
    assert_eq!(reader.next_item().await.unwrap(), None);
}

#[tokio::test]
async fn an_incomplete_final_event_is_discarded_and_shown_as_pending() {
    let mut reader = EventReader::new(chunked(&[b"data: 1\n\ndata: 2\n"]));
    assert_eq!(
        reader.until_end().await.unwrap(),
        [ParsedEvent::message("1")]
    );
    assert!(reader.parser().has_pending());
}

#[tokio::test]
async fn last_event_id_and_retry_are_the_streams_so_far() {
    let mut reader = EventReader::new(EventStream::new(stream::iter([
        Event::builder().id("1").data("a").build().unwrap(),
        Event::retry(Duration::from_millis(1500)),
        Event::builder().id("2").build().unwrap(),
    ])));
    assert_eq!(reader.last_event_id(), "");
    assert_eq!(
        reader.next_event().await.unwrap(),
        Some(ParsedEvent::new("message", "a", "1"))
    );
    assert_eq!(reader.last_event_id(), "1");
    assert_eq!(reader.next_event().await.unwrap(), None);
    assert_eq!(reader.last_event_id(), "2", "an id-only event moves it");
    assert_eq!(reader.retry(), Some(Duration::from_millis(1500)));
}

#[tokio::test]
async fn trailers_are_skipped() {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"data: a\n\n"))),
        Ok(Frame::trailers(http::HeaderMap::new())),
    ];
    let mut reader = EventReader::new(StreamBody::new(stream::iter(frames)));
    assert_eq!(
        reader.until_end().await.unwrap(),
        [ParsedEvent::message("a")]
    );
}

#[tokio::test]
async fn a_body_error_is_returned_and_the_events_before_it_kept() {
    let frames: Vec<Result<Frame<Bytes>, &str>> = vec![
        Ok(Frame::data(Bytes::from_static(b"data: a\n\n"))),
        Err("reset"),
        Ok(Frame::data(Bytes::from_static(b"data: never read\n\n"))),
    ];
    let mut reader = EventReader::new(StreamBody::new(stream::iter(frames)));
    assert_eq!(reader.take(2).await, Err("reset"));
    assert!(reader.is_ended(), "a failed body is not read again");
    assert_eq!(reader.take(2).await.unwrap(), [ParsedEvent::message("a")]);
}

#[tokio::test(start_paused = true)]
async fn a_take_cancelled_by_a_timeout_loses_nothing() {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut reader = EventReader::new(body);
    tx.send(Ok(Frame::data(Bytes::from_static(b"data: 1\n\n"))))
        .await
        .unwrap();
    let timed_out = tokio::time::timeout(Duration::from_secs(1), reader.take(2)).await;
    assert!(timed_out.is_err(), "the second event never came in time");
    tx.send(Ok(Frame::data(Bytes::from_static(b"data: 2\n\n"))))
        .await
        .unwrap();
    assert_eq!(
        reader.take(2).await.unwrap(),
        [ParsedEvent::message("1"), ParsedEvent::message("2")]
    );
}

// --- get_events ---

#[cfg(feature = "axum")]
mod get_events {
    use axum::Router;
    use axum::extract::{Path, State};
    use axum::http::HeaderMap;
    use axum::routing::get;

    use super::*;
    use crate::{Hub, HubError, LastEventId, SseLayer, Subscription};

    /// Echoes the request's headers as one event each, `name: value`, then ends.
    async fn echo_headers(
        headers: HeaderMap,
    ) -> EventStream<impl futures_util::Stream<Item = Event>> {
        let mut lines: Vec<String> = headers
            .iter()
            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
            .collect();
        lines.sort();
        EventStream::new(stream::iter(lines.into_iter().map(Event::data)))
    }

    fn datas(events: Vec<ParsedEvent>) -> Vec<String> {
        events.into_iter().map(|event| event.data).collect()
    }

    #[tokio::test]
    async fn the_request_is_an_event_sources() {
        let mut app = Router::new().route("/", get(echo_headers));
        let mut response = get_events(&mut app, "/").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            datas(response.body_mut().until_end().await.unwrap()),
            ["accept: text/event-stream", "host: localhost"]
        );

        let mut response = get_events(app.clone(), "/")
            .last_event_id("41")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .send()
            .await
            .unwrap();
        assert_eq!(
            datas(response.body_mut().until_end().await.unwrap()),
            [
                "accept: text/event-stream",
                "cookie: a=1",
                "cookie: b=2",
                "host: localhost",
                "last-event-id: 41"
            ]
        );
    }

    #[tokio::test]
    async fn the_host_is_the_uris_authority_or_the_one_given() {
        let mut app = Router::new().route("/", get(echo_headers));
        let mut response = get_events(&mut app, "http://example.com:8080/")
            .send()
            .await
            .unwrap();
        assert_eq!(
            datas(response.body_mut().until_end().await.unwrap()),
            ["accept: text/event-stream", "host: example.com:8080"]
        );

        let mut response = get_events(&mut app, "/")
            .header("host", "push.example")
            .send()
            .await
            .unwrap();
        assert_eq!(
            datas(response.body_mut().until_end().await.unwrap()),
            ["accept: text/event-stream", "host: push.example"]
        );
    }

    #[tokio::test]
    async fn a_layer_that_allows_only_some_hosts_lets_the_request_through() {
        let mut app = Router::new()
            .route("/", get(echo_headers))
            .layer(SseLayer::new().allow_hosts(["localhost", "push.example"]));
        let response = get_events(&mut app, "/").send().await.unwrap();
        assert_eq!(response.status(), 200);
        let response = get_events(&mut app, "/")
            .header("host", "push.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let response = get_events(&mut app, "/")
            .header("host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 421);
    }

    #[tokio::test]
    async fn an_empty_last_event_id_sends_no_header_as_a_browser() {
        let mut app = Router::new().route("/", get(echo_headers));
        let mut response = get_events(&mut app, "/")
            .last_event_id("41")
            .last_event_id("")
            .send()
            .await
            .unwrap();
        assert_eq!(
            datas(response.body_mut().until_end().await.unwrap()),
            ["accept: text/event-stream", "host: localhost"]
        );
    }

    #[test]
    #[should_panic(expected = "is not a header value")]
    fn a_last_event_id_with_a_line_break_panics_with_what_is_wrong() {
        let _ = get_events(Router::<()>::new(), "/").last_event_id("1\n2");
    }

    async fn subscribe(
        State(hub): State<Hub>,
        Path(topic): Path<String>,
        last: Option<LastEventId>,
    ) -> Result<Subscription, HubError> {
        hub.subscribe(&topic, last).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_with_the_last_id_seen_gets_the_replay_then_live() {
        let hub = Hub::memory();
        let mut app = Router::new()
            .route("/events/{topic}", get(subscribe))
            .layer(SseLayer::new())
            .with_state(hub.clone());
        let mut first = get_events(&mut app, "/events/t").send().await.unwrap();
        for n in 1..=5 {
            hub.publish("t", Event::data(n.to_string())).await.unwrap();
        }
        assert_eq!(
            datas(first.body_mut().take(3).await.unwrap()),
            ["1", "2", "3"]
        );
        let seen = first.body().last_event_id().to_owned();
        assert!(!seen.is_empty());
        drop(first);

        let mut again = get_events(&mut app, "/events/t")
            .last_event_id(&seen)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 200);
        assert_eq!(datas(again.body_mut().take(2).await.unwrap()), ["4", "5"]);
        hub.publish("t", Event::data("6")).await.unwrap();
        assert_eq!(datas(again.body_mut().take(1).await.unwrap()), ["6"]);
    }
}
