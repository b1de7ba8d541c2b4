use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;

use super::*;

fn build(builder: EventBuilder) -> Event {
    builder.build().expect("a valid event")
}

#[test]
fn id_accessor() {
    assert_eq!(Event::data("x").id(), None);
    assert_eq!(Event::retry(Duration::from_secs(1)).id(), None);
    assert_eq!(build(Event::builder().data("x")).id(), None);
    assert_eq!(build(Event::builder().id("42").data("x")).id(), Some("42"));
    assert_eq!(build(Event::builder().id("")).id(), Some(""));
    assert_eq!(build(Event::builder().id(" 1 ")).id(), Some(" 1 "));
    assert_eq!(build(Event::builder().id("  ")).id(), Some("  "));
    assert_eq!(build(Event::builder().id("✓ é")).id(), Some("✓ é"));
    assert_eq!(build(Event::builder().id("a:b")).id(), Some("a:b"));
}

#[test]
fn id_line_is_tracked() {
    let event = build(Event::builder().id("42").event("e").data("x"));
    assert_eq!(event.id_line, b"id: 42\n".len());
    let event = build(Event::builder().id("").data("x"));
    assert_eq!(event.id_line, b"id:\n".len());
    assert_eq!(Event::data("x").id_line, 0);
}

#[test]
fn the_last_setter_wins() {
    let event = build(
        Event::builder()
            .id("1")
            .id("2")
            .event("a")
            .event("b")
            .retry(Duration::from_secs(1))
            .retry(Duration::from_secs(2))
            .data("x")
            .data("y"),
    );
    assert_eq!(
        event.as_bytes(),
        &b"id: 2\nevent: b\nretry: 2000\ndata: y\n\n"[..]
    );
}

#[test]
fn field_order_is_id_event_retry_comments_data() {
    let event = build(
        Event::builder()
            .data("d")
            .comment("c1")
            .retry(Duration::from_millis(5))
            .event("e")
            .comment("c2")
            .id("i"),
    );
    assert_eq!(
        event.as_bytes(),
        &b"id: i\nevent: e\nretry: 5\n: c1\n: c2\ndata: d\n\n"[..]
    );
}

#[test]
fn with_id_adds_replaces_and_keeps_the_rest() {
    let plain = Event::data("x");
    let added = plain.with_id("7").unwrap();
    assert_eq!(added.as_bytes(), &b"id: 7\ndata: x\n\n"[..]);
    assert_eq!(added.id(), Some("7"));
    assert_eq!(added.id_line, b"id: 7\n".len());

    let replaced = added.with_id("123").unwrap();
    assert_eq!(replaced.as_bytes(), &b"id: 123\ndata: x\n\n"[..]);
    assert_eq!(replaced.id(), Some("123"));

    let emptied = replaced.with_id("").unwrap();
    assert_eq!(emptied.as_bytes(), &b"id:\ndata: x\n\n"[..]);
    assert_eq!(emptied.id(), Some(""));
    assert_eq!(emptied.with_id("8").unwrap(), plain.with_id("8").unwrap());

    // The source events are unchanged.
    assert_eq!(plain.as_bytes(), &b"data: x\n\n"[..]);
    assert_eq!(added.id(), Some("7"));
}

#[test]
fn with_id_matches_the_builder() {
    let built = build(
        Event::builder()
            .id("1")
            .event("e")
            .retry(Duration::from_secs(1))
            .comment("c")
            .data("a\nb"),
    );
    let expected = build(
        Event::builder()
            .id("2")
            .event("e")
            .retry(Duration::from_secs(1))
            .comment("c")
            .data("a\nb"),
    );
    assert_eq!(built.with_id("2").unwrap(), expected);
}

#[test]
fn with_id_rejects_forbidden_characters() {
    let event = build(Event::builder().id("1").data("x"));
    for (bad, name) in [
        ("a\rb", "carriage return (CR)"),
        ("a\nb", "line feed (LF)"),
        ("a\0b", "NUL"),
    ] {
        let err = event.with_id(bad).unwrap_err();
        assert_eq!(
            err,
            EventError::new(ErrorKind::Id(bad.chars().nth(1).unwrap()))
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn len_and_bytes() {
    let event = build(Event::builder().id("1").data("hello"));
    assert_eq!(event.len(), b"id: 1\ndata: hello\n\n".len());
    assert_eq!(event.len(), event.as_bytes().len());
    assert!(!event.is_empty());
    assert!(!build(Event::builder()).is_empty());
    assert_eq!(build(Event::builder()).len(), 1);

    let bytes: Bytes = event.clone().into();
    assert_eq!(bytes, event.clone().into_bytes());
    assert_eq!(&bytes, event.as_bytes());
}

#[test]
fn clones_share_the_buffer() {
    let event = Event::data("shared");
    let clone = event.clone();
    assert_eq!(event, clone);
    assert_eq!(event.as_bytes().as_ptr(), clone.as_bytes().as_ptr());
    assert_eq!(event.as_bytes().as_ptr(), clone.into_bytes().as_ptr());
}

#[test]
fn retry_is_whole_milliseconds() {
    assert_eq!(
        Event::retry(Duration::from_micros(2999)).as_bytes(),
        &b"retry: 2\n\n"[..]
    );
    assert_eq!(
        Event::retry(Duration::ZERO).as_bytes(),
        &b"retry: 0\n\n"[..]
    );
    assert_eq!(
        Event::retry(Duration::MAX).as_bytes(),
        &b"retry: 18446744073709551615\n\n"[..]
    );
}

#[test]
fn write_data_splits_on_each_line_break() {
    for (data, expected) in [
        ("", "data:\n"),
        ("a", "data: a\n"),
        ("a\nb", "data: a\ndata: b\n"),
        ("a\rb", "data: a\ndata: b\n"),
        ("a\r\nb", "data: a\ndata: b\n"),
        ("a\n\rb", "data: a\ndata:\ndata: b\n"),
        ("a\r\rb", "data: a\ndata:\ndata: b\n"),
        ("\r\n", "data:\ndata:\n"),
        ("a\r", "data: a\ndata:\n"),
        ("é\r\n✓", "data: é\ndata: ✓\n"),
    ] {
        let mut buf = BytesMut::new();
        write_data(&mut buf, data);
        assert_eq!(buf, expected.as_bytes(), "{data:?}");
    }
}

#[test]
fn first_error_wins() {
    let id_first = Event::builder()
        .id("a\n")
        .event("b\r")
        .comment("c\n")
        .build();
    assert_eq!(id_first.unwrap_err(), EventError::new(ErrorKind::Id('\n')));

    let event_first = Event::builder().event("b\r").id("a\n").build();
    assert_eq!(
        event_first.unwrap_err(),
        EventError::new(ErrorKind::EventName('\r'))
    );

    let comment_first = Event::builder()
        .comment("ok")
        .comment("c\n")
        .id("\0")
        .build();
    assert_eq!(
        comment_first.unwrap_err(),
        EventError::new(ErrorKind::Comment('\n'))
    );

    // The first forbidden character of the value is the one reported.
    let err = Event::builder().id("x\0\r\n").build().unwrap_err();
    assert_eq!(err, EventError::new(ErrorKind::Id('\0')));
}

#[test]
fn a_later_valid_value_does_not_clear_an_error() {
    // Documented: the first invalid value that was set is reported by `build`.
    let err = Event::builder().id("1\n").id("2").data("x").build();
    assert_eq!(err.unwrap_err(), EventError::new(ErrorKind::Id('\n')));
}

#[test]
fn error_messages_name_the_field_and_the_character() {
    let cases = [
        (
            Event::builder().id("\r").build(),
            "event id contains a carriage return (CR); ids may not contain CR, LF or NUL",
        ),
        (
            Event::builder().id("\n").build(),
            "event id contains a line feed (LF); ids may not contain CR, LF or NUL",
        ),
        (
            Event::builder().id("\0").build(),
            "event id contains a NUL character; ids may not contain CR, LF or NUL",
        ),
        (
            Event::builder().event("\n").build(),
            "event name contains a line feed (LF); names may not contain CR or LF",
        ),
        (
            Event::builder().comment("\r").build(),
            "comment contains a carriage return (CR); comments may not contain CR or LF",
        ),
    ];
    for (result, message) in cases {
        assert_eq!(result.unwrap_err().to_string(), message);
    }
}

#[test]
fn nul_is_only_forbidden_in_ids() {
    assert!(Event::builder().event("\0").build().is_ok());
    assert!(Event::builder().comment("\0").build().is_ok());
    assert!(Event::builder().data("\0").build().is_ok());
}

#[test]
fn debug_never_panics() {
    let events = [
        Event::data("x"),
        build(Event::builder().id("1").data("x")),
        build(Event::builder().id("")),
        build(Event::builder().id("✓")),
        build(Event::builder()),
        Event::data("\u{0}\u{feff}").with_id("é").unwrap(),
    ];
    for event in events {
        let debug = format!("{event:?}");
        assert!(debug.starts_with("Event"), "{debug}");
        let _ = format!("{event:#?}");
    }
    let with_id = format!("{:?}", build(Event::builder().id("42")));
    assert!(with_id.contains("Some(\"42\")"), "{with_id}");

    let failed = Event::builder().id("\n").event("\r").comment("\n");
    let _ = format!("{failed:?}");
    let err = failed.build().unwrap_err();
    let _ = format!("{err:?}");
}

#[test]
fn errors_are_send_sync_static() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<EventError>();
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    assert_shareable::<Event>();
    assert_shareable::<EventBuilder>();
}

#[cfg(feature = "json")]
mod json {
    use serde::ser::{Error as _, Serialize, Serializer};

    use super::*;

    struct Unserializable;

    impl Serialize for Unserializable {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(S::Error::custom("boom"))
        }
    }

    #[test]
    fn json_is_one_data_line() {
        let event = Event::json(&serde_json::json!({"text": "a\nb\r\nc", "n": 1})).unwrap();
        assert_eq!(
            event.as_bytes(),
            &b"data: {\"n\":1,\"text\":\"a\\nb\\r\\nc\"}\n\n"[..]
        );
        assert_eq!(event.id(), None);
    }

    #[test]
    fn json_of_a_string_and_of_unsized_values() {
        assert_eq!(
            Event::json("hi").unwrap().as_bytes(),
            &b"data: \"hi\"\n\n"[..]
        );
        let slice: &[u8] = &[1, 2];
        assert_eq!(
            Event::json(slice).unwrap().as_bytes(),
            &b"data: [1,2]\n\n"[..]
        );
        assert_eq!(
            Event::json(&Option::<u8>::None).unwrap().as_bytes(),
            &b"data: null\n\n"[..]
        );
    }

    #[test]
    fn json_data_with_other_fields() {
        let event = build(
            Event::builder()
                .id("3")
                .event("update")
                .json_data(&serde_json::json!([1, "two"])),
        );
        assert_eq!(
            event.as_bytes(),
            &b"id: 3\nevent: update\ndata: [1,\"two\"]\n\n"[..]
        );
        assert_eq!(event.id(), Some("3"));
    }

    #[test]
    fn json_and_text_data_replace_each_other() {
        let event = build(Event::builder().data("text").json_data(&1));
        assert_eq!(event.as_bytes(), &b"data: 1\n\n"[..]);
        let event = build(Event::builder().json_data(&1).data("text"));
        assert_eq!(event.as_bytes(), &b"data: text\n\n"[..]);
    }

    #[test]
    fn json_errors_are_reported_by_build() {
        let err = Event::json(&Unserializable).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event data could not be serialized as JSON: boom"
        );

        // First error wins here too.
        let err = Event::builder()
            .json_data(&Unserializable)
            .id("\n")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("JSON"), "{err}");
        let err = Event::builder()
            .id("\n")
            .json_data(&Unserializable)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("event id"), "{err}");
    }

    #[test]
    fn json_with_id_keeps_the_data() {
        let event = Event::json(&serde_json::json!({"k": "v"}))
            .unwrap()
            .with_id("9")
            .unwrap();
        assert_eq!(event.as_bytes(), &b"id: 9\ndata: {\"k\":\"v\"}\n\n"[..]);
    }
}

#[test]
fn from_encoded_round_trips_every_built_event() {
    let events = [
        Event::data("hello"),
        Event::data(""),
        Event::data("a\r\nb\rc\nd"),
        Event::retry(Duration::from_millis(1500)),
        Event::builder().id("e-1").build().unwrap(),
        Event::builder().comment("c").build().unwrap(),
        Event::builder()
            .id("x")
            .event("price")
            .retry(Duration::from_secs(1))
            .comment("note")
            .data("1\n2")
            .build()
            .unwrap(),
    ];
    for event in events {
        let back = Event::from_encoded(event.as_bytes().clone()).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.id(), event.id());
        assert_eq!(back.without_id(), event.without_id());
    }
}

#[test]
fn from_encoded_refuses_what_could_corrupt_a_stream() {
    for (bytes, why) in [
        (&b"data: a\n\ndata: b\n\n"[..], "more than one event"),
        (b"data: a\r\n\r\n", "carriage return"),
        (b"data: a\n", "blank line"),
        (b"data: a", "blank line"),
        (b"", "blank line"),
        (b"\n", "blank line"),
        (b"data: a\nid: 1\n\n", "first line"),
        (b"id: 1\0\n\n", "NUL"),
        (b"data: \xff\n\n", "UTF-8"),
    ] {
        let err = Event::from_encoded(Bytes::copy_from_slice(bytes)).unwrap_err();
        assert!(err.to_string().contains(why), "{bytes:?}: {err}");
    }
}

#[test]
fn a_bare_id_line_is_an_empty_id() {
    let event = Event::from_encoded(Bytes::from_static(b"id\ndata: x\n\n")).unwrap();
    assert_eq!(event.id(), Some(""));
    assert_eq!(event.without_id(), &b"data: x\n\n"[..]);
}

// --- Accessors: what a browser reads back from the encoded event ---

fn data_of(event: &Event) -> Option<&str> {
    // A helper that keeps the borrow: `data_str` of one line is borrowed.
    match event.data_str()? {
        Cow::Borrowed(data) => Some(data),
        Cow::Owned(_) => panic!("one line of data is borrowed: {event:?}"),
    }
}

#[test]
fn data_str_is_the_data_a_browser_receives() {
    assert_eq!(data_of(&Event::data("hello")), Some("hello"));
    assert_eq!(
        Event::data("one\ntwo\nthree").data_str().as_deref(),
        Some("one\ntwo\nthree")
    );
    // CR, LF and CRLF each end one line, and come back as LF.
    assert_eq!(Event::data("a\r\nb").data_str().as_deref(), Some("a\nb"));
    assert_eq!(Event::data("a\rb").data_str().as_deref(), Some("a\nb"));
    assert_eq!(
        Event::data("a\n\rb\r\rc\r\n\nd").data_str().as_deref(),
        Some("a\n\nb\n\nc\n\nd")
    );
    // Leading and trailing line breaks survive.
    assert_eq!(Event::data("a\n").data_str().as_deref(), Some("a\n"));
    assert_eq!(Event::data("\na").data_str().as_deref(), Some("\na"));
    assert_eq!(Event::data("\r\n").data_str().as_deref(), Some("\n"));
    assert_eq!(Event::data("\n\n").data_str().as_deref(), Some("\n\n"));
}

#[test]
fn data_str_keeps_colons_and_leading_spaces() {
    assert_eq!(data_of(&Event::data(" x")), Some(" x"));
    assert_eq!(data_of(&Event::data("  two")), Some("  two"));
    assert_eq!(
        data_of(&Event::data(": not a comment")),
        Some(": not a comment")
    );
    assert_eq!(data_of(&Event::data("data: x")), Some("data: x"));
    assert_eq!(
        Event::data(" a:b\n :c\n\t").data_str().as_deref(),
        Some(" a:b\n :c\n\t")
    );
    assert_eq!(data_of(&Event::data("é ✓ \0")), Some("é ✓ \0"));
}

#[test]
fn empty_data_is_some_empty_and_no_data_is_none() {
    assert_eq!(data_of(&Event::data("")), Some(""));
    assert_eq!(data_of(&build(Event::builder().data(""))), Some(""));
    assert_eq!(build(Event::builder().id("1")).data_str(), None);
    assert_eq!(build(Event::builder().event("e")).data_str(), None);
    assert_eq!(build(Event::builder()).data_str(), None);
    assert_eq!(Event::retry(Duration::from_secs(1)).data_str(), None);
}

#[test]
fn accessors_read_every_field_of_a_full_event() {
    let event = build(
        Event::builder()
            .id("i: 1")
            .event(" spaced:name ")
            .retry(Duration::from_millis(1500))
            .comment("c: 1")
            .comment(" c2")
            .data("data: a\r\n: b"),
    );
    assert_eq!(event.id(), Some("i: 1"));
    assert_eq!(event.name(), Some(" spaced:name "));
    assert_eq!(event.retry_hint(), Some(Duration::from_millis(1500)));
    assert!(event.comments().eq(["c: 1", " c2"]));
    assert_eq!(event.data_str().as_deref(), Some("data: a\n: b"));
    // The same after an id is given at publish time.
    let event = event.with_id("2").unwrap();
    assert_eq!(event.id(), Some("2"));
    assert_eq!(event.name(), Some(" spaced:name "));
    assert_eq!(event.data_str().as_deref(), Some("data: a\n: b"));
}

#[test]
fn an_empty_name_and_an_empty_comment_are_kept() {
    let event = build(Event::builder().event("").comment("").data("x"));
    assert_eq!(event.name(), Some(""));
    assert!(event.comments().eq([""]));
    assert_eq!(Event::data("x").comments().count(), 0);
}

#[test]
fn retry_hint_is_in_whole_milliseconds() {
    assert_eq!(Event::data("x").retry_hint(), None);
    assert_eq!(
        Event::retry(Duration::from_micros(1999)).retry_hint(),
        Some(Duration::from_millis(1))
    );
    assert_eq!(
        Event::retry(Duration::ZERO).retry_hint(),
        Some(Duration::ZERO)
    );
    assert_eq!(
        Event::retry(Duration::MAX).retry_hint(),
        Some(Duration::from_millis(u64::MAX))
    );
}

#[test]
fn accessors_read_encoded_events_as_a_browser_would() {
    let event = |bytes: &'static [u8]| Event::from_encoded(Bytes::from_static(bytes)).unwrap();
    // No space after the colon, a bare field name, the last `event:` and valid `retry:` win.
    let e = event(b"event:a\nevent\nevent: b\ndata:x\ndata\nretry: 10\nretry: 2x\n:c\n\n");
    assert_eq!(e.name(), Some("b"));
    assert_eq!(e.data_str().as_deref(), Some("x\n"));
    assert_eq!(e.retry_hint(), Some(Duration::from_millis(10)));
    assert!(e.comments().eq(["c"]));
    // Unknown fields are ignored; a field named like a prefix is another field.
    let e = event(b"datum: x\nevents: y\nretry\n\n");
    assert_eq!(e.data_str(), None);
    assert_eq!(e.name(), None);
    assert_eq!(e.retry_hint(), None);
    // A retry beyond `u64` milliseconds saturates, as the parser's does.
    let e = event(b"retry: 99999999999999999999999\n\n");
    assert_eq!(e.retry_hint(), Some(Duration::from_millis(u64::MAX)));
}

mod accessor_props {
    use proptest::prelude::*;

    use super::*;

    /// Text weighted towards what the format cares about.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                3 => any::<char>(),
                1 => Just('\r'),
                1 => Just('\n'),
                1 => Just(':'),
                1 => Just(' '),
            ],
            0..16,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    /// Text without line breaks (valid as a name or a comment), NUL allowed or not.
    fn line(nul: bool) -> impl Strategy<Value = String> {
        text().prop_map(move |s| {
            s.chars()
                .filter(|&c| c != '\r' && c != '\n' && (nul || c != '\0'))
                .collect()
        })
    }

    proptest! {
        /// Whatever an event is built with, the accessors give it back as a browser reads it.
        #[test]
        fn builder_then_accessors_round_trip(
            id in proptest::option::of(line(false)),
            name in proptest::option::of(line(true)),
            retry in proptest::option::of(any::<u64>()),
            comments in proptest::collection::vec(line(true), 0..3),
            data in proptest::option::of(text()),
        ) {
            let mut builder = Event::builder();
            if let Some(id) = &id {
                builder = builder.id(id.clone());
            }
            if let Some(name) = &name {
                builder = builder.event(name.clone());
            }
            if let Some(millis) = retry {
                builder = builder.retry(Duration::from_millis(millis));
            }
            for comment in &comments {
                builder = builder.comment(comment.clone());
            }
            if let Some(data) = &data {
                builder = builder.data(data.clone());
            }
            let event = builder.build().unwrap();
            prop_assert_eq!(event.id(), id.as_deref());
            prop_assert_eq!(event.name(), name.as_deref());
            prop_assert_eq!(event.retry_hint(), retry.map(Duration::from_millis));
            prop_assert_eq!(event.comments().collect::<Vec<_>>(), comments);
            let expected = data.map(|d| d.replace("\r\n", "\n").replace('\r', "\n"));
            let data = event.data_str();
            prop_assert_eq!(data.as_deref(), expected.as_deref());
        }
    }
}
