use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use serde_json::Value;

use super::*;

const TOPIC: &str = "news";

/// An event as a client's parser sees it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
}

/// The event as a client sees it, read back through `Event`'s accessors.
fn parse(event: &Event) -> Parsed {
    assert_eq!(event.comments().count(), 0, "no comments here: {event:?}");
    Parsed {
        id: event.id().map(str::to_owned),
        event: event.name().map(str::to_owned),
        data: event.data_str().map(std::borrow::Cow::into_owned),
        retry: event
            .retry_hint()
            .map(|retry| u64::try_from(retry.as_millis()).expect("a retry in u64 ms")),
    }
}

fn epoch(id: &str) -> &str {
    id.rsplit_once('-').expect("EPOCH-SEQ").0
}

fn seq(id: &str) -> u64 {
    id.rsplit_once('-')
        .expect("EPOCH-SEQ")
        .1
        .parse()
        .expect("SEQ is a number")
}

/// The SEQ of an ordinary (not `gap`, not retry) event, checking its data is its SEQ, as
/// [`publish_range`] publishes them.
fn data_seq(event: &Event) -> u64 {
    let parsed = parse(event);
    assert_eq!(parsed.event, None, "{event:?}");
    let id = parsed.id.expect("an id");
    let n = seq(&id);
    assert_eq!(parsed.data, Some(n.to_string()), "{event:?}");
    n
}

fn last(id: &str) -> Option<LastEventId> {
    Some(LastEventId::new(id).expect("a usable id"))
}

/// Publishes events numbered `from..=to` (their data), checking each gets that SEQ; returns the
/// epoch.
async fn publish_range(hub: &Hub, from: u64, to: u64) -> String {
    let mut epoch_of = String::new();
    for n in from..=to {
        let published = hub
            .publish(TOPIC, Event::data(n.to_string()))
            .await
            .expect("publish");
        let id = published.id();
        assert_eq!(seq(id), n);
        epoch_of = epoch(id).to_owned();
    }
    epoch_of
}

async fn subscribe(hub: &Hub, last: Option<LastEventId>) -> Subscription {
    hub.subscribe(TOPIC, last).await.expect("subscribe")
}

/// The next item, which must be ready now (the in-memory hub never makes a ready event wait).
fn next_now(sub: &mut Subscription) -> Option<Event> {
    sub.next()
        .now_or_never()
        .expect("an item is ready (an event or the end)")
}

fn next_event(sub: &mut Subscription) -> Event {
    next_now(sub).expect("an event, not the end of the stream")
}

/// Reads `n` ready events and returns their SEQs.
fn take_seqs(sub: &mut Subscription, n: usize) -> Vec<u64> {
    (0..n).map(|_| data_seq(&next_event(sub))).collect()
}

/// The stream is open and has nothing to deliver: it waits for live events.
fn assert_waiting(sub: &mut Subscription) {
    if let Some(item) = sub.next().now_or_never() {
        panic!("expected the stream to wait for live events, got {item:?}");
    }
}

/// The gap event's parsed JSON, checking it is named `gap` and carries `resume_after` as its
/// id.
fn gap_json(event: &Event) -> Value {
    let parsed = parse(event);
    assert_eq!(parsed.event.as_deref(), Some("gap"), "{event:?}");
    let json: Value = serde_json::from_str(parsed.data.as_deref().expect("data")).expect("JSON");
    assert_eq!(
        json["resume_after"].as_str(),
        parsed.id.as_deref(),
        "the gap event's id is resume_after: {json}"
    );
    json
}

fn assert_retry_then_end(sub: &mut Subscription, retry: Duration) {
    let event = next_event(sub);
    assert_eq!(event, Event::retry(retry));
    assert_eq!(
        parse(&event),
        Parsed {
            retry: Some(u64::try_from(retry.as_millis()).unwrap()),
            ..Parsed::default()
        }
    );
    assert!(
        next_now(sub).is_none(),
        "the stream ends after the retry hint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reconnects_get_every_later_event_exactly_once_in_order() {
    const TOTAL: u64 = 5000;
    const BEFORE: u64 = 100;
    const SUBSCRIBERS: usize = 50;
    const RECONNECTS: usize = 3;
    // No eviction, no replay cap and no lag: any loss or duplicate is the hub's.
    let hub = Hub::builder()
        .history_events(TOTAL as usize)
        .max_replay(TOTAL as usize)
        .subscriber_queue(TOTAL as usize)
        .memory();
    let epoch = publish_range(&hub, 1, BEFORE).await;
    let (progress, watch) = tokio::sync::watch::channel(BEFORE);

    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let hub = hub.clone();
        let epoch = epoch.clone();
        let mut watch = watch.clone();
        // Reconnect once the publisher has reached `start`, with an id already issued then.
        let start = rng.u64(BEFORE..TOTAL);
        let mut task_rng = fastrand::Rng::with_seed(rng.u64(..));
        subscribers.push(tokio::spawn(async move {
            let published = *watch.wait_for(|&n| n >= start).await.expect("publisher");
            // First an id already issued, then the last id seen, on each reconnect.
            let mut after = task_rng.u64(1..=published);
            for connection in 0..=RECONNECTS {
                let mut sub = hub
                    .subscribe(TOPIC, last(&format!("{epoch}-{after}")))
                    .await
                    .expect("subscribe");
                // Where this connection drops; the last one reads to the end.
                let stop = if connection == RECONNECTS {
                    TOTAL
                } else {
                    task_rng.u64(after..=TOTAL)
                };
                let context = format!("seed {seed}, connection {connection} after {after}");
                while after < stop {
                    let event = tokio::time::timeout(Duration::from_secs(30), sub.next())
                        .await
                        .unwrap_or_else(|_| panic!("{context}: timed out at {after}"))
                        .unwrap_or_else(|| panic!("{context}: ended at {after}"));
                    let parsed = parse(&event);
                    after += 1;
                    assert_eq!(
                        parsed,
                        Parsed {
                            id: Some(format!("{epoch}-{after}")),
                            data: Some(after.to_string()),
                            ..Parsed::default()
                        },
                        "{context}"
                    );
                }
                if after == TOTAL {
                    // Nothing after the last event: no duplicate comes late.
                    let late = sub.next().now_or_never();
                    assert!(late.is_none(), "{context}: {late:?}");
                }
            }
            assert_eq!(after, TOTAL);
        }));
    }

    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for n in BEFORE + 1..=TOTAL {
                let published = hub
                    .publish(TOPIC, Event::data(n.to_string()))
                    .await
                    .expect("publish");
                assert_eq!(seq(published.id()), n);
                progress.send_replace(n);
                // Let subscribers (re)connect while publishing goes on.
                tokio::task::yield_now().await;
            }
        })
    };

    publisher.await.expect("publisher");
    for subscriber in subscribers {
        subscriber.await.expect("subscriber");
    }
    assert_eq!(hub.stats().published, TOTAL);
    assert_eq!(hub.stats().slow_consumers, 0);
}

#[tokio::test]
async fn a_reconnect_replays_what_followed_its_id_then_live() {
    let hub = Hub::memory();
    let epoch = publish_range(&hub, 1, 11).await;

    let mut sub = subscribe(&hub, last(&format!("{epoch}-7"))).await;
    assert_eq!(take_seqs(&mut sub, 4), [8, 9, 10, 11]);
    assert_waiting(&mut sub);
    publish_range(&hub, 12, 13).await;
    assert_eq!(take_seqs(&mut sub, 2), [12, 13]);
    assert_waiting(&mut sub);
}

#[tokio::test]
async fn prepended_events_come_first_in_their_order_then_the_replay_then_live() {
    let hub = Hub::memory();
    let epoch = publish_range(&hub, 1, 5).await;
    let mut sub = subscribe(&hub, last(&format!("{epoch}-3")))
        .await
        .prepend([Event::data("first"), Event::data("second")]);
    assert_eq!(next_event(&mut sub), Event::data("first"));
    assert_eq!(next_event(&mut sub), Event::data("second"));
    assert_eq!(take_seqs(&mut sub, 2), [4, 5]);
    assert_waiting(&mut sub);
    publish_range(&hub, 6, 6).await;
    assert_eq!(take_seqs(&mut sub, 1), [6]);
}

#[tokio::test]
async fn a_first_connection_gets_live_events_only() {
    let hub = Hub::memory();
    publish_range(&hub, 1, 3).await;
    let mut sub = subscribe(&hub, None).await;
    assert_waiting(&mut sub);
    publish_range(&hub, 4, 4).await;
    assert_eq!(take_seqs(&mut sub, 1), [4]);
}

#[tokio::test]
async fn an_evicted_id_gets_a_gap_event_first_then_the_oldest_retained() {
    let hub = Hub::builder().history_events(5).memory();
    let epoch = publish_range(&hub, 1, 10).await;

    let mut sub = subscribe(&hub, last(&format!("{epoch}-2"))).await;
    let gap = gap_json(&next_event(&mut sub));
    assert_eq!(
        gap,
        serde_json::json!({
            "reason": "evicted",
            "requested": format!("{epoch}-2"),
            "resume": "oldest",
            "resume_after": format!("{epoch}-5"),
            "last_id": format!("{epoch}-10"),
        })
    );
    assert_eq!(take_seqs(&mut sub, 5), [6, 7, 8, 9, 10]);
    assert_waiting(&mut sub);
    publish_range(&hub, 11, 11).await;
    assert_eq!(take_seqs(&mut sub, 1), [11]);
}

#[tokio::test]
async fn a_foreign_epoch_id_gets_a_gap_event_first_then_the_oldest_retained() {
    let hub = Hub::memory();
    let epoch = publish_range(&hub, 1, 3).await;
    // An id from another hub: a server that has restarted since.
    let restarted = Hub::memory();
    let foreign = publish_range(&restarted, 1, 7).await;
    let foreign = format!("{foreign}-7");

    let mut sub = subscribe(&hub, last(&foreign)).await;
    let gap = gap_json(&next_event(&mut sub));
    assert_eq!(
        gap,
        serde_json::json!({
            "reason": "foreign",
            "requested": foreign,
            "resume": "oldest",
            "resume_after": format!("{epoch}-0"),
            "last_id": format!("{epoch}-3"),
        })
    );
    assert_eq!(take_seqs(&mut sub, 3), [1, 2, 3]);
    assert_waiting(&mut sub);
    publish_range(&hub, 4, 4).await;
    assert_eq!(take_seqs(&mut sub, 1), [4]);
}

#[tokio::test]
async fn with_gap_resume_live_a_gap_event_is_followed_by_live_events_only() {
    let hub = Hub::builder()
        .history_events(5)
        .gap_resume(GapResume::Live)
        .memory();
    let epoch = publish_range(&hub, 1, 10).await;
    let foreign = publish_range(&Hub::memory(), 1, 1).await;

    for (requested, reason) in [
        (format!("{epoch}-2"), "evicted"),
        (format!("{foreign}-1"), "foreign"),
    ] {
        let mut sub = subscribe(&hub, last(&requested)).await;
        let gap = gap_json(&next_event(&mut sub));
        assert_eq!(
            gap,
            serde_json::json!({
                "reason": reason,
                "requested": requested,
                "resume": "live",
                "resume_after": format!("{epoch}-10"),
                "last_id": format!("{epoch}-10"),
            })
        );
        assert_waiting(&mut sub);
    }

    let mut sub = subscribe(&hub, last(&format!("{epoch}-2"))).await;
    gap_json(&next_event(&mut sub));
    publish_range(&hub, 11, 12).await;
    assert_eq!(take_seqs(&mut sub, 2), [11, 12]);
    assert_waiting(&mut sub);
}

#[tokio::test]
async fn presenting_the_gap_events_id_later_resumes_exactly() {
    // A foreign id, so that the events published in between evict nothing.
    let foreign = format!("{}-3", publish_range(&Hub::memory(), 1, 3).await);
    for resume in [GapResume::Oldest, GapResume::Live] {
        let hub = Hub::builder().gap_resume(resume).memory();
        publish_range(&hub, 1, 10).await;

        // The client reads only the gap event, then drops.
        let mut sub = subscribe(&hub, last(&foreign)).await;
        let gap = next_event(&mut sub);
        gap_json(&gap);
        let gap_id = parse(&gap).id.expect("the gap event has an id");
        drop(sub);
        publish_range(&hub, 11, 12).await;

        let mut sub = subscribe(&hub, last(&gap_id)).await;
        let expected: Vec<u64> = match resume {
            GapResume::Oldest => (1..=12).collect(),
            GapResume::Live => vec![11, 12],
        };
        assert_eq!(take_seqs(&mut sub, expected.len()), expected, "{resume:?}");
        assert_waiting(&mut sub);
    }
}

#[tokio::test]
async fn an_unusable_id_gets_a_malformed_gap_event_with_requested_null_and_a_detail() {
    let hub = Hub::memory();
    let epoch = publish_range(&hub, 1, 2).await;
    let unusable = LastEventId::from_bytes(b"a\nb").expect("not empty");
    let detail = unusable.error().expect("unusable").to_string();

    let mut sub = subscribe(&hub, Some(unusable)).await;
    let gap = gap_json(&next_event(&mut sub));
    assert_eq!(
        gap,
        serde_json::json!({
            "reason": "malformed",
            "requested": null,
            "detail": detail,
            "resume": "oldest",
            "resume_after": format!("{epoch}-0"),
            "last_id": format!("{epoch}-2"),
        })
    );
    assert!(detail.contains("CR, LF or NUL"), "{detail}");
    assert_eq!(take_seqs(&mut sub, 2), [1, 2]);
    assert_waiting(&mut sub);
}

#[tokio::test]
async fn a_garbage_id_gets_a_malformed_gap_event_without_a_detail() {
    let hub = Hub::memory();
    let epoch = publish_range(&hub, 1, 2).await;

    // Quotes, a backslash and control characters survive the JSON.
    let garbage = "not \"an\" id\\\t\u{1}\u{2028}";
    let mut sub = subscribe(&hub, last(garbage)).await;
    let gap = gap_json(&next_event(&mut sub));
    assert_eq!(
        gap,
        serde_json::json!({
            "reason": "malformed",
            "requested": garbage,
            "resume": "oldest",
            "resume_after": format!("{epoch}-0"),
            "last_id": format!("{epoch}-2"),
        })
    );
    assert_eq!(take_seqs(&mut sub, 2), [1, 2]);
}

#[tokio::test]
async fn an_id_ahead_of_the_topic_gets_an_unknown_gap_event() {
    let hub = Hub::memory();
    let epoch = publish_range(&hub, 1, 2).await;

    let mut sub = subscribe(&hub, last(&format!("{epoch}-3"))).await;
    let gap = gap_json(&next_event(&mut sub));
    assert_eq!(gap["reason"], "unknown");
    assert_eq!(gap["resume_after"], format!("{epoch}-0"));
    assert_eq!(take_seqs(&mut sub, 2), [1, 2]);
}

#[tokio::test]
async fn a_slow_subscriber_is_ended_with_a_retry_hint_and_catches_up_by_replay() {
    let hub = Hub::builder().subscriber_queue(8).memory();
    let epoch = publish_range(&hub, 1, 5).await;

    // The slow one has three events to replay and then never polls while 100 are published.
    let mut slow = subscribe(&hub, last(&format!("{epoch}-2"))).await;
    let mut fast = subscribe(&hub, None).await;
    for n in 6..=105 {
        publish_range(&hub, n, n).await;
        assert_eq!(take_seqs(&mut fast, 1), [n]);
    }
    assert_waiting(&mut fast);

    assert_eq!(take_seqs(&mut slow, 3), [3, 4, 5]);
    assert_eq!(
        next_now(&mut slow).expect("the retry hint").as_bytes(),
        &b"retry: 1000\n\n"[..]
    );
    assert!(next_now(&mut slow).is_none(), "the stream ends");
    assert_eq!(hub.stats().slow_consumers, 1);

    // It reconnects with the last id it saw and gets the rest, exactly.
    let mut again = subscribe(&hub, last(&format!("{epoch}-5"))).await;
    assert_eq!(take_seqs(&mut again, 100), (6..=105).collect::<Vec<_>>());
    assert_waiting(&mut again);
    assert_eq!(hub.stats().slow_consumers, 1);
}

#[tokio::test]
async fn the_lag_retry_hint_is_retry_after_lag() {
    let hub = Hub::builder()
        .subscriber_queue(2)
        .retry_after_lag(Duration::from_millis(2500))
        .memory();
    let mut slow = subscribe(&hub, None).await;
    publish_range(&hub, 1, 10).await;
    let event = next_event(&mut slow);
    assert_eq!(event.as_bytes(), &b"retry: 2500\n\n"[..]);
    assert!(next_now(&mut slow).is_none());
}

#[tokio::test]
async fn a_client_beyond_max_replay_catches_up_in_batches_then_is_live() {
    let retry = Duration::from_millis(2500);
    let hub = Hub::builder()
        .max_replay(10)
        .retry_after_lag(retry)
        .memory();
    let epoch = publish_range(&hub, 1, 30).await;

    // 25 behind: 10, retry, end.
    let mut sub = subscribe(&hub, last(&format!("{epoch}-5"))).await;
    assert_eq!(take_seqs(&mut sub, 10), (6..=15).collect::<Vec<_>>());
    assert_retry_then_end(&mut sub, retry);

    let mut sub = subscribe(&hub, last(&format!("{epoch}-15"))).await;
    assert_eq!(take_seqs(&mut sub, 10), (16..=25).collect::<Vec<_>>());
    assert_retry_then_end(&mut sub, retry);

    // The third connection catches up and stays open for live events.
    let mut sub = subscribe(&hub, last(&format!("{epoch}-25"))).await;
    assert_eq!(take_seqs(&mut sub, 5), [26, 27, 28, 29, 30]);
    assert_waiting(&mut sub);
    publish_range(&hub, 31, 31).await;
    assert_eq!(take_seqs(&mut sub, 1), [31]);
    assert_eq!(hub.stats().slow_consumers, 0);
}

#[tokio::test]
async fn invalid_topic_names_are_refused_with_what_is_allowed() {
    let hub = Hub::memory();
    let long = "a".repeat(MAX_TOPIC_LEN + 1);
    for topic in [
        "",
        long.as_str(),
        "a b",
        "a\nb",
        "café",
        "a?b",
        "a#b",
        "a%20b",
    ] {
        let err = hub.publish(topic, Event::data("x")).await.expect_err(topic);
        assert!(err.is_invalid_input(), "{topic:?}");
        assert!(!err.is_unavailable(), "{topic:?}");
        let message = err.to_string();
        assert!(
            message.contains("1 to 200 bytes of ASCII letters, digits and - _ . : ~ @ /"),
            "{topic:?}: {message}"
        );
        assert!(message.starts_with("invalid topic "), "{message}");
        assert!(!message.contains('\n'), "{message:?}");

        let err = hub.subscribe(topic, None).await.expect_err(topic);
        assert!(err.is_invalid_input(), "{topic:?}");
    }
    assert_eq!(hub.stats().published, 0);

    let longest = "a".repeat(MAX_TOPIC_LEN);
    for topic in ["a", longest.as_str(), "a-b_c.d:e~f@g/H0"] {
        hub.publish(topic, Event::data("x")).await.expect(topic);
        hub.subscribe(topic, None).await.expect(topic);
    }
}

#[tokio::test]
async fn an_event_over_max_event_bytes_is_refused_and_not_stored() {
    let hub = Hub::builder().max_event_bytes(64).memory();
    let epoch = publish_range(&hub, 1, 1).await;

    let big = Event::data("x".repeat(100));
    let err = hub
        .publish(TOPIC, big.clone())
        .await
        .expect_err("too large");
    assert!(err.is_invalid_input());
    let message = err.to_string();
    assert!(message.contains(&big.len().to_string()), "{message}");
    assert!(message.contains("64"), "{message}");

    // The next id is not skipped, and a client replaying everything never sees it.
    publish_range(&hub, 2, 2).await;
    let mut sub = subscribe(&hub, last(&format!("{epoch}-0"))).await;
    assert_eq!(take_seqs(&mut sub, 2), [1, 2]);
    assert_waiting(&mut sub);
    assert_eq!(hub.stats().published, 2);
}

#[tokio::test]
async fn publish_replaces_an_id_the_event_already_had() {
    let hub = Hub::memory();
    let event = Event::builder()
        .id("chosen-by-the-caller")
        .event("price")
        .data("1")
        .build()
        .unwrap();
    let published = hub.publish(TOPIC, event).await.unwrap();
    let id = published.id().to_owned();
    assert_eq!(seq(&id), 1);
    assert!(!published.is_duplicate());
    assert_eq!(
        published.event().as_bytes(),
        format!("id: {id}\nevent: price\ndata: 1\n\n").as_bytes()
    );

    let mut sub = subscribe(&hub, last(&format!("{}-0", epoch(&id)))).await;
    assert_eq!(next_event(&mut sub), published.into_event());
}

#[tokio::test]
async fn stats_count_published_events() {
    let hub = Hub::memory();
    assert_eq!(hub.stats().published, 0);
    publish_range(&hub, 1, 3).await;
    hub.publish("other", Event::data("x")).await.unwrap();
    hub.publish("", Event::data("x")).await.unwrap_err();
    assert_eq!(hub.stats().published, 4);
    assert_eq!(hub.clone().stats().published, 4);
}

#[tokio::test]
async fn subscription_topic_is_the_subscribed_topic() {
    let hub = Hub::memory();
    let sub = hub.subscribe("rooms/42:chat", None).await.unwrap();
    assert_eq!(sub.topic(), "rooms/42:chat");
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn hub_errors_as_responses_are_400_and_413() {
    use axum::response::IntoResponse;
    use http::StatusCode;

    let hub = Hub::builder().max_event_bytes(16).memory();
    let cases = [
        ("a b", Event::data("x"), StatusCode::BAD_REQUEST),
        ("", Event::data("x"), StatusCode::BAD_REQUEST),
        (
            TOPIC,
            Event::data("x".repeat(32)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (topic, event, status) in cases {
        let err = hub.publish(topic, event).await.unwrap_err();
        let message = err.to_string();
        let response = err.into_response();
        assert_eq!(response.status(), status, "{message}");
        assert!(response.headers().get(http::header::RETRY_AFTER).is_none());
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert_eq!(body, format!("{message}\n").as_bytes());
    }
}

#[cfg(feature = "axum")]
async fn response_parts(err: HubError) -> (http::StatusCode, Option<String>, String) {
    use axum::response::IntoResponse;
    let response = err.into_response();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .map(|value| value.to_str().unwrap().to_owned());
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    (
        status,
        retry_after,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn a_full_hub_is_503_with_retry_after_and_a_closed_topic_409() {
    use http::StatusCode;

    let hub = Hub::builder().max_topics(1).memory();
    let _busy = subscribe(&hub, None).await;
    let (status, retry_after, body) =
        response_parts(hub.publish("other", Event::data("x")).await.unwrap_err()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(body.contains("as many topics"), "{body}");

    hub.close(TOPIC).await.unwrap();
    let err = hub.publish(TOPIC, Event::data("x")).await.unwrap_err();
    assert!(err.is_closed());
    let (status, retry_after, _) = response_parts(err).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(retry_after, None);
}

/// A backend whose store is unreachable, with an error text that must stay in the logs.
struct Unreachable;

impl Backend for Unreachable {
    fn publish<'a>(
        &'a self,
        _: &'a str,
        _: Publish,
    ) -> futures_util::future::BoxFuture<'a, Result<Published, crate::backend::Error>> {
        let source = std::io::Error::other("connect to 10.1.2.3:6379: refused (secret)");
        futures_util::future::ready(Err(crate::backend::Error::unavailable(source))).boxed()
    }
    fn open<'a>(
        &'a self,
        _: &'a str,
        _: &'a Start,
        _: &'a ReplayOptions,
    ) -> futures_util::future::BoxFuture<'a, Result<crate::backend::Opened, crate::backend::Error>>
    {
        let source = std::io::Error::other("connect to 10.1.2.3:6379: refused (secret)");
        futures_util::future::ready(Err(crate::backend::Error::unavailable(source))).boxed()
    }
    fn close<'a>(
        &'a self,
        _: &'a str,
        _: Event,
    ) -> futures_util::future::BoxFuture<'a, Result<Event, crate::backend::Error>> {
        futures_util::future::ready(Err(crate::backend::Error::internal("secret"))).boxed()
    }
    fn topic_info<'a>(
        &'a self,
        _: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<TopicInfo>, crate::backend::Error>> {
        futures_util::future::ready(Ok(None)).boxed()
    }
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn backend_errors_reach_clients_without_the_backends_internals() {
    use http::StatusCode;
    use std::error::Error as _;

    let hub = Hub::builder().backend(Unreachable);
    let err = hub.publish(TOPIC, Event::data("x")).await.unwrap_err();
    assert!(err.is_unavailable());
    // The logs can have it all.
    let source = err.source().and_then(|backend| backend.source()).unwrap();
    assert!(source.to_string().contains("10.1.2.3"));
    let (status, retry_after, body) = response_parts(err).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        !body.contains("10.1.2.3") && !body.contains("secret"),
        "{body}"
    );

    // A subscriber gets the same message as a comment, then a retry hint.
    let mut sub = subscribe(&hub, None).await;
    let notice = String::from_utf8(next_event(&mut sub).as_bytes().to_vec()).unwrap();
    assert!(
        notice.contains("\n: the hub's backend is unavailable"),
        "{notice:?}"
    );
    assert!(notice.starts_with("retry: 1000\n"), "{notice:?}");
    assert!(!notice.contains("secret"), "{notice:?}");
    assert!(next_now(&mut sub).is_none());

    let (status, _, body) = response_parts(hub.close(TOPIC).await.unwrap_err()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.contains("secret"), "{body}");
}

#[tokio::test]
async fn close_sends_an_end_event_and_a_client_that_saw_it_is_ended() {
    let hub = Hub::memory();
    let mut sub = subscribe(&hub, None).await;
    let epoch = publish_range(&hub, 1, 1).await;
    let end = hub.close(TOPIC).await.unwrap();
    assert_eq!(
        parse(&end),
        Parsed {
            id: Some(format!("{epoch}-2:end")),
            event: Some("end".into()),
            data: Some(r#"{"reason":"closed"}"#.into()),
            retry: None,
        }
    );
    assert_eq!(take_seqs(&mut sub, 1), [1]);
    assert_eq!(next_event(&mut sub), end);
    assert!(next_now(&mut sub).is_none());

    let ended = subscribe(&hub, last(end.id().unwrap())).await;
    assert!(ended.is_ended());
    // Even once the topic is gone, or on a topic that never existed.
    let elsewhere = hub
        .subscribe("elsewhere", last("anything:end"))
        .await
        .unwrap();
    assert!(elsewhere.is_ended());
    // What a browser's reconnect gets through a router: `204`, which stops it, once it saw
    // the end; otherwise what it missed, the end included.
    #[cfg(all(feature = "axum", feature = "testing"))]
    {
        use crate::testing::{ParsedEvent, get_events};
        let mut app = router(&hub);
        let ended = get_events(&mut app, "/events/news")
            .last_event_id(end.id().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(ended.status(), http::StatusCode::NO_CONTENT);
        let mut open = get_events(&mut app, "/events/news")
            .last_event_id(&format!("{epoch}-1"))
            .send()
            .await
            .unwrap();
        assert_eq!(open.status(), http::StatusCode::OK);
        assert_eq!(
            open.body_mut().until_end().await.unwrap(),
            [ParsedEvent::new(
                "end",
                r#"{"reason":"closed"}"#,
                end.id().unwrap()
            )]
        );
    }
}

/// `GET /events/{topic}` on `hub`, as an app serves it.
#[cfg(all(feature = "axum", feature = "testing"))]
fn router(hub: &Hub) -> axum::Router {
    use axum::extract::{Path, State};
    async fn subscribe(
        State(hub): State<Hub>,
        Path(topic): Path<String>,
        last: Option<LastEventId>,
    ) -> Result<Subscription, HubError> {
        hub.subscribe(&topic, last).await
    }
    axum::Router::new()
        .route("/events/{topic}", axum::routing::get(subscribe))
        .layer(crate::SseLayer::new())
        .with_state(hub.clone())
}

#[tokio::test]
async fn close_with_a_custom_final_event() {
    let hub = Hub::memory();
    let mut sub = subscribe(&hub, None).await;
    let done = Event::builder().event("done").data("42").build().unwrap();
    let end = hub.close_with(TOPIC, done).await.unwrap();
    let parsed = parse(&next_event(&mut sub));
    assert_eq!(parsed.event.as_deref(), Some("done"));
    assert_eq!(parsed.data.as_deref(), Some("42"));
    assert_eq!(parsed.id.as_deref(), end.id());
}

#[tokio::test]
async fn subscribe_from_oldest_replays_everything_retained_on_a_first_connection() {
    let hub = Hub::memory();
    publish_range(&hub, 1, 3).await;
    let mut sub = hub
        .subscribe_from(TOPIC, Start::resume_or(None, Start::Oldest))
        .await
        .unwrap();
    assert_eq!(take_seqs(&mut sub, 3), [1, 2, 3]);
    assert_waiting(&mut sub);
}

#[tokio::test]
async fn a_subscriber_refused_by_max_topics_gets_a_retry_hint() {
    let hub = Hub::builder()
        .max_topics(1)
        .retry_after_lag(Duration::from_millis(1500))
        .memory();
    let _busy = subscribe(&hub, None).await;
    let mut refused = hub.subscribe("other", None).await.unwrap();
    let notice = next_event(&mut refused);
    let text = std::str::from_utf8(notice.as_bytes()).unwrap();
    assert!(text.starts_with("retry: 1500\n"), "{text:?}");
    assert!(
        text.contains("\n: the hub holds as many topics"),
        "{text:?}"
    );
    assert!(next_now(&mut refused).is_none());
}

/// The memory backend without its own `wait_idle`: the trait's default is used.
struct DefaultWait(MemoryBackend);

impl Backend for DefaultWait {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        publish: Publish,
    ) -> futures_util::future::BoxFuture<'a, Result<Published, crate::backend::Error>> {
        self.0.publish(topic, publish)
    }
    fn open<'a>(
        &'a self,
        topic: &'a str,
        start: &'a Start,
        options: &'a ReplayOptions,
    ) -> futures_util::future::BoxFuture<'a, Result<crate::backend::Opened, crate::backend::Error>>
    {
        self.0.open(topic, start, options)
    }
    fn close<'a>(
        &'a self,
        topic: &'a str,
        end: Event,
    ) -> futures_util::future::BoxFuture<'a, Result<Event, crate::backend::Error>> {
        self.0.close(topic, end)
    }
    fn topic_info<'a>(
        &'a self,
        topic: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<TopicInfo>, crate::backend::Error>> {
        self.0.topic_info(topic)
    }
}

#[tokio::test(start_paused = true)]
async fn the_default_wait_idle_waits_for_grace_without_subscribers() {
    let hub = Hub::builder().backend(DefaultWait(MemoryBackend::default()));
    let grace = Duration::from_secs(8);

    let started = tokio::time::Instant::now();
    hub.wait_idle(TOPIC, grace).await.unwrap();
    assert!(started.elapsed() >= grace && started.elapsed() <= grace + grace / 4);

    // A subscriber for 20 s: not before it has left and `grace` has passed.
    let sub = subscribe(&hub, None).await;
    let waiter = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            hub.wait_idle(TOPIC, grace).await.unwrap();
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_secs(20)).await;
    drop(sub);
    let waited = waiter.await.unwrap();
    assert!(
        waited >= Duration::from_secs(20) + grace
            && waited <= Duration::from_secs(20) + grace + grace / 2,
        "{waited:?}"
    );
}

// ---- Idempotent publish and honest outcomes (issue 18) ----

/// A backend whose publishes and subscriptions fail with the error `fail` makes.
struct Failing(fn() -> crate::backend::Error);

impl Backend for Failing {
    fn publish<'a>(
        &'a self,
        _: &'a str,
        _: Publish,
    ) -> futures_util::future::BoxFuture<'a, Result<Published, crate::backend::Error>> {
        futures_util::future::ready(Err((self.0)())).boxed()
    }
    fn open<'a>(
        &'a self,
        _: &'a str,
        _: &'a Start,
        _: &'a ReplayOptions,
    ) -> futures_util::future::BoxFuture<'a, Result<crate::backend::Opened, crate::backend::Error>>
    {
        futures_util::future::ready(Err((self.0)())).boxed()
    }
    fn close<'a>(
        &'a self,
        _: &'a str,
        _: Event,
    ) -> futures_util::future::BoxFuture<'a, Result<Event, crate::backend::Error>> {
        futures_util::future::ready(Err((self.0)())).boxed()
    }
    fn topic_info<'a>(
        &'a self,
        _: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<TopicInfo>, crate::backend::Error>> {
        futures_util::future::ready(Ok(None)).boxed()
    }
}

fn timed_out() -> crate::backend::Error {
    let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "10.1.2.3:6379 (secret)");
    crate::backend::Error::outcome_unknown(source)
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn a_publish_whose_outcome_is_unknown_is_a_504_that_says_to_retry_with_the_same_key() {
    use http::StatusCode;

    let hub = Hub::builder().backend(Failing(timed_out));
    let err = hub
        .publish(TOPIC, Publish::new(Event::data("x")).idempotency_key("k"))
        .await
        .unwrap_err();
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert!(!err.is_unavailable() && !err.is_invalid_input() && !err.is_key_reused());
    let (status, retry_after, body) = response_parts(err).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(body.contains("may or may not have been stored"), "{body}");
    assert!(body.contains("same idempotency key"), "{body}");
    assert!(body.contains("may store the event twice"), "{body}");
    assert!(!body.contains("secret"), "{body}");

    // Not stored is another answer: 503, "nothing was done".
    let hub = Hub::builder().backend(Unreachable);
    let err = hub.publish(TOPIC, Event::data("x")).await.unwrap_err();
    assert!(err.is_unavailable() && !err.is_outcome_unknown());
    let (status, _, body) = response_parts(err).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("nothing was done"), "{body}");
}

#[tokio::test]
async fn a_subscription_whose_backend_does_not_answer_is_a_retry_hint() {
    let hub = Hub::builder().backend(Failing(timed_out));
    let mut sub = subscribe(&hub, None).await;
    let notice = String::from_utf8(next_event(&mut sub).as_bytes().to_vec()).unwrap();
    assert!(notice.starts_with("retry: 1000\n"), "{notice:?}");
    assert!(next_now(&mut sub).is_none());
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn a_key_used_for_another_event_is_a_422() {
    use http::StatusCode;

    let hub = Hub::memory();
    hub.publish(TOPIC, Publish::new(Event::data("a")).idempotency_key("k"))
        .await
        .unwrap();
    let err = hub
        .publish(TOPIC, Publish::new(Event::data("b")).idempotency_key("k"))
        .await
        .unwrap_err();
    assert!(err.is_key_reused(), "{err:?}");
    let (status, retry_after, body) = response_parts(err).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(retry_after, None);
    assert!(body.contains("a different event"), "{body}");
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn invalid_idempotency_keys_are_a_400_that_says_what_a_key_may_be() {
    use http::StatusCode;

    // The backend is never asked: it would fail otherwise.
    let hub = Hub::builder().backend(Failing(timed_out));
    let long = "k".repeat(crate::backend::MAX_IDEMPOTENCY_KEY_LEN + 1);
    for key in ["", "a b", "tab\t", "é", "nul\0", long.as_str()] {
        let publish = Publish::new(Event::data("x")).idempotency_key(key);
        let err = hub.publish(TOPIC, publish).await.unwrap_err();
        assert!(err.is_invalid_input(), "{key:?}: {err:?}");
        let (status, _, body) = response_parts(err).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key:?}");
        assert!(
            body.starts_with("invalid idempotency key")
                && body.contains("1 to 128 visible ASCII characters"),
            "{body}"
        );
        assert!(body.len() < 300, "the key shown is cut: {body}");
    }
    // The longest key, and every visible ASCII character, are fine.
    let visible: String = ('!'..='~').collect();
    for key in ["k".repeat(crate::backend::MAX_IDEMPOTENCY_KEY_LEN), visible] {
        let publish = Publish::new(Event::data("x")).idempotency_key(key);
        let err = hub.publish(TOPIC, publish).await.unwrap_err();
        assert!(err.is_outcome_unknown(), "{err:?}");
    }
}

#[tokio::test]
async fn a_duplicate_is_not_counted_as_published_and_reaches_no_subscriber() {
    let hub = Hub::memory();
    let mut sub = subscribe(&hub, None).await;
    let publish = || Publish::new(Event::data("once")).idempotency_key("k");
    let first = hub.publish(TOPIC, publish()).await.unwrap();
    let again = hub.publish(TOPIC, publish()).await.unwrap();
    assert_eq!((again.id(), again.is_duplicate()), (first.id(), true));
    assert_eq!(again.event(), first.event());
    assert_eq!(hub.stats().published, 1);
    assert_eq!(next_event(&mut sub), first.into_event());
    assert_waiting(&mut sub);
}

#[tokio::test]
async fn publish_as_checks_the_key_and_returns_the_duplicate_too() {
    let hub = Hub::memory();
    let who = crate::auth::Identity::anonymous();
    let publish = || Publish::new(Event::data("x")).idempotency_key("k");
    let first = hub.publish_as(&who, TOPIC, publish()).await.unwrap();
    let again = hub.publish_as(&who, TOPIC, publish()).await.unwrap();
    assert_eq!((again.id(), again.is_duplicate()), (first.id(), true));
    let bad = Publish::new(Event::data("x")).idempotency_key("a b");
    let err = hub.publish_as(&who, TOPIC, bad).await.unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");
}
