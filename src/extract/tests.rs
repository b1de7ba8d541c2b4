use http::request::Parts;
use http::{HeaderValue, Request};

use super::{LAST_EVENT_ID, LastEventId, MAX_LAST_EVENT_ID_LEN};

fn parts(uri: &str, header: Option<&[u8]>) -> Parts {
    let mut builder = Request::get(uri);
    if let Some(value) = header {
        builder = builder.header(LAST_EVENT_ID, HeaderValue::from_bytes(value).unwrap());
    }
    builder.body(()).unwrap().into_parts().0
}

fn from_header(value: &[u8]) -> Option<LastEventId> {
    LastEventId::from_parts(&parts("/events", Some(value)))
}

fn from_query(query: &str) -> Option<LastEventId> {
    LastEventId::from_parts(&parts(&format!("/events?{query}"), None))
}

/// The reason an id that is present is unusable.
fn reason(id: Option<LastEventId>) -> &'static str {
    let id = id.expect("present");
    assert_eq!(id.as_str(), None);
    assert!(!id.is_valid());
    id.error().expect("unusable").reason()
}

#[test]
fn header() {
    let id = from_header(b"42").unwrap();
    assert_eq!(id.as_str(), Some("42"));
    assert!(id.is_valid());
    assert_eq!(id.error(), None);
    assert_eq!(id.to_string(), "42");
}

#[test]
fn header_wins_over_query() {
    let both = parts("/events?lastEventId=7", Some(b"9"));
    assert_eq!(LastEventId::from_parts(&both).unwrap().as_str(), Some("9"));
    // Even an unusable header is not replaced by a usable query parameter.
    let long = vec![b'x'; MAX_LAST_EVENT_ID_LEN + 1];
    let both = parts("/events?lastEventId=7", Some(&long));
    assert_eq!(reason(LastEventId::from_parts(&both)), "too_long");
}

#[test]
fn header_name_is_case_insensitive() {
    let (parts, ()) = Request::get("/")
        .header("Last-Event-ID", "5")
        .body(())
        .unwrap()
        .into_parts();
    assert_eq!(LastEventId::from_parts(&parts).unwrap().as_str(), Some("5"));
}

#[test]
fn query() {
    assert_eq!(from_query("lastEventId=42").unwrap().as_str(), Some("42"));
    assert_eq!(
        from_query("a=1&lastEventId=42&b=2").unwrap().as_str(),
        Some("42")
    );
    // The first occurrence counts.
    assert_eq!(
        from_query("lastEventId=1&lastEventId=2").unwrap().as_str(),
        Some("1")
    );
}

#[test]
fn query_is_percent_decoded_with_plus_as_space() {
    assert_eq!(
        from_query("lastEventId=a%20b+c%2Bd%3D%26")
            .unwrap()
            .as_str(),
        Some("a b c+d=&")
    );
    assert_eq!(
        from_query("lastEventId=%C3%A9%E2%9C%93").unwrap().as_str(),
        Some("é✓")
    );
    // A malformed escape is kept as it is.
    assert_eq!(
        from_query("lastEventId=100%").unwrap().as_str(),
        Some("100%")
    );
    assert_eq!(from_query("lastEventId=%zz").unwrap().as_str(), Some("%zz"));
}

#[test]
fn only_the_exact_key_counts() {
    assert_eq!(from_query("xlastEventId=5"), None);
    assert_eq!(from_query("lastEventIdx=5"), None);
    assert_eq!(from_query("lasteventid=5"), None);
    assert_eq!(from_query("last-event-id=5"), None);
    assert_eq!(
        from_query("xlastEventId=5&lastEventId=6").unwrap().as_str(),
        Some("6")
    );
}

#[test]
fn empty_is_none() {
    assert_eq!(LastEventId::from_parts(&parts("/events", None)), None);
    assert_eq!(LastEventId::from_parts(&parts("/events?", None)), None);
    assert_eq!(from_query("other=1"), None);
    assert_eq!(from_query("lastEventId="), None);
    assert_eq!(from_query("lastEventId"), None);
    assert_eq!(from_header(b""), None);
    assert_eq!(LastEventId::from_bytes(b""), None);
}

#[test]
fn exactly_the_limit_is_accepted() {
    let max = "7".repeat(MAX_LAST_EVENT_ID_LEN);
    assert_eq!(
        from_header(max.as_bytes()).unwrap().as_str(),
        Some(max.as_str())
    );
    assert_eq!(
        from_query(&format!("lastEventId={max}")).unwrap().as_str(),
        Some(max.as_str())
    );
    // The limit is on decoded bytes: 1024 bytes written as 3072 escapes fit.
    let escaped = "%41".repeat(MAX_LAST_EVENT_ID_LEN);
    assert_eq!(
        from_query(&format!("lastEventId={escaped}"))
            .unwrap()
            .as_str()
            .map(str::len),
        Some(MAX_LAST_EVENT_ID_LEN)
    );
    assert!(LastEventId::new(max).is_ok());
}

#[test]
fn over_the_limit_is_present_but_unusable() {
    let long = "7".repeat(MAX_LAST_EVENT_ID_LEN + 1);
    assert_eq!(reason(from_header(long.as_bytes())), "too_long");
    assert_eq!(
        reason(from_query(&format!("lastEventId={long}"))),
        "too_long"
    );
    assert_eq!(
        reason(from_query(&format!(
            "lastEventId={}",
            "%41".repeat(MAX_LAST_EVENT_ID_LEN + 1)
        ))),
        "too_long"
    );
    let id = from_header(long.as_bytes()).unwrap();
    let message = id.error().unwrap().to_string();
    assert!(message.contains("1024"), "{message}");
    assert_eq!(id.to_string(), format!("<unusable: {message}>"));
    // A multi-byte character counts by its bytes.
    let multibyte = "é".repeat(MAX_LAST_EVENT_ID_LEN / 2 + 1);
    assert_eq!(reason(from_header(multibyte.as_bytes())), "too_long");
}

#[test]
fn huge_query_value_is_rejected_without_decoding() {
    // More than three encoded bytes per allowed decoded byte cannot fit: refused as it is, even
    // when decoding it would have produced something else to complain about.
    let just_over = format!("lastEventId={}", "A".repeat(3 * MAX_LAST_EVENT_ID_LEN + 1));
    assert_eq!(reason(from_query(&just_over)), "too_long");
    let big = format!("lastEventId={}&b=1", "%FF%0A".repeat(10_000));
    assert_eq!(reason(from_query(&big)), "too_long");
    // Longer than any `Uri` holds, straight to the parser.
    let huge = format!("lastEventId={}&b=1", "%FF%0A".repeat(1 << 20));
    assert_eq!(
        reason(LastEventId::from_header_or_query(None, Some(&huge))),
        "too_long"
    );
}

#[test]
fn non_utf8_header_is_unusable() {
    assert_eq!(reason(from_header(b"\xff\xfe")), "not_utf8");
    assert_eq!(reason(from_header(b"abc\xc3")), "not_utf8");
    assert_eq!(reason(from_query("lastEventId=%FF")), "not_utf8");
    // Header bytes that are UTF-8 are fine, ASCII or not.
    assert_eq!(from_header("é✓".as_bytes()).unwrap().as_str(), Some("é✓"));
}

#[test]
fn line_breaks_and_nul_are_unusable() {
    for query in ["lastEventId=1%0D", "lastEventId=1%0A2", "lastEventId=%00"] {
        assert_eq!(reason(from_query(query)), "forbidden_char", "{query}");
    }
    for raw in [&b"1\r"[..], b"\n", b"a\0b", b"\xff\n"] {
        assert_eq!(
            reason(LastEventId::from_bytes(raw)),
            "forbidden_char",
            "{raw:?}"
        );
    }
    let message = LastEventId::from_bytes(b"\0")
        .unwrap()
        .error()
        .unwrap()
        .to_string();
    assert!(message.contains("CR, LF or NUL"), "{message}");
}

#[test]
fn new_validates() {
    assert_eq!(LastEventId::new("42").unwrap().as_str(), Some("42"));
    assert_eq!(LastEventId::new("").unwrap_err().reason(), "empty");
    assert_eq!(
        LastEventId::new("a\nb").unwrap_err().reason(),
        "forbidden_char"
    );
    assert_eq!(
        LastEventId::new("x".repeat(MAX_LAST_EVENT_ID_LEN + 1))
            .unwrap_err()
            .reason(),
        "too_long"
    );
    assert_eq!(
        LastEventId::new("42").unwrap(),
        LastEventId::from_bytes(b"42").unwrap()
    );
}

#[test]
fn error_messages() {
    for (result, message) in [
        (LastEventId::new(""), "the last event id is empty"),
        (
            LastEventId::new("\n"),
            "the last event id contains CR, LF or NUL",
        ),
    ] {
        assert_eq!(result.unwrap_err().to_string(), message);
    }
    let not_utf8 = LastEventId::from_bytes(b"\xff").unwrap();
    assert_eq!(
        not_utf8.error().unwrap().to_string(),
        "the last event id is not UTF-8"
    );
    assert_eq!(
        not_utf8.to_string(),
        "<unusable: the last event id is not UTF-8>"
    );
}

#[test]
fn nothing_panics_on_odd_input() {
    for query in [
        "&&&",
        "=",
        "lastEventId==",
        "lastEventId=%",
        "lastEventId=%%%",
        "lastEventId=+",
        "&lastEventId=%E2%82",
    ] {
        let _ = from_query(query);
    }
    assert_eq!(from_query("lastEventId==").unwrap().as_str(), Some("="));
    assert_eq!(from_query("lastEventId=+").unwrap().as_str(), Some(" "));
    assert_eq!(reason(from_query("lastEventId=%E2%82")), "not_utf8");
    for byte in 0..=255u8 {
        let _ = LastEventId::from_bytes(&[byte]);
        let _ = LastEventId::from_bytes(&[b'a', byte, b'b']);
    }
}

#[cfg(feature = "axum")]
mod axum_extractor {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::super::{LAST_EVENT_ID, LastEventId};

    async fn optional(last: Option<LastEventId>) -> String {
        match last {
            None => "none".to_owned(),
            Some(last) => match last.as_str() {
                Some(id) => format!("id {id}"),
                None => format!("unusable {}", last.error().unwrap().reason()),
            },
        }
    }

    async fn required(last: LastEventId) -> String {
        format!("id {last}")
    }

    fn app() -> Router {
        Router::new()
            .route("/optional", get(optional))
            .route("/required", get(required))
    }

    async fn call(uri: &str, header: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::get(uri);
        if let Some(value) = header {
            request = request.header(LAST_EVENT_ID, value);
        }
        let response = app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn optional_extractor() {
        assert_eq!(
            call("/optional", None).await,
            (StatusCode::OK, "none".into())
        );
        assert_eq!(
            call("/optional", Some("5")).await,
            (StatusCode::OK, "id 5".into())
        );
        assert_eq!(
            call("/optional?lastEventId=6", None).await,
            (StatusCode::OK, "id 6".into())
        );
        assert_eq!(
            call("/optional?lastEventId=6", Some("5")).await,
            (StatusCode::OK, "id 5".into())
        );
        assert_eq!(
            call("/optional?lastEventId=%0A", None).await,
            (StatusCode::OK, "unusable forbidden_char".into())
        );
    }

    #[tokio::test]
    async fn required_extractor() {
        let (status, body) = call("/required", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("Last-Event-ID"), "{body}");
        assert_eq!(
            call("/required?lastEventId=", None).await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            call("/required", Some("5")).await,
            (StatusCode::OK, "id 5".into())
        );
        assert_eq!(
            call("/required?lastEventId=a+b", None).await,
            (StatusCode::OK, "id a b".into())
        );
        // Present but unusable is still present: the handler decides.
        let long = "x".repeat(super::MAX_LAST_EVENT_ID_LEN + 1);
        let (status, body) = call("/required", Some(&long)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("id <unusable:"), "{body}");
    }
}
