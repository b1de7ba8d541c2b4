use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::stream;

use super::*;

const STEP: Duration = Duration::from_millis(10);

fn token(n: u64) -> Event {
    Event::builder()
        .event("token")
        .data(n.to_string())
        .build()
        .unwrap()
}

/// Sets its flag when dropped: tells whether the hub dropped the producer.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// `n` tokens, one every [`STEP`]; `dropped` is set once the producer is dropped.
fn tokens(n: u64, dropped: &Arc<AtomicBool>) -> impl Stream<Item = Event> + Send + 'static {
    let flag = DropFlag(dropped.clone());
    stream::iter(1..=n).then(move |i| {
        let _keep = &flag;
        async move {
            tokio::time::sleep(STEP).await;
            token(i)
        }
    })
}

fn hub() -> Hub {
    Hub::builder()
        .topic_idle_ttl(Duration::from_secs(300))
        .memory()
}

/// What a client reads until the stream ends: (name, data, id) per event, markers left out.
async fn read_all(subscription: Subscription) -> Vec<(String, String, String)> {
    subscription
        .filter_map(|event| async move {
            let text = String::from_utf8(event.as_bytes().to_vec()).unwrap();
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data: ").or(line.strip_prefix("data:")))
                .collect();
            if data.is_empty() {
                return None; // the opening marker, or a retry hint
            }
            Some((
                event.name().unwrap_or("message").to_owned(),
                data.join("\n"),
                event.id().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
        .await
}

fn names(events: &[(String, String, String)]) -> Vec<&str> {
    events.iter().map(|(name, _, _)| name.as_str()).collect()
}

fn datas(events: &[(String, String, String)]) -> Vec<&str> {
    events.iter().map(|(_, data, _)| data.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_first_connection_gets_everything_from_the_start_then_done() {
    let hub = hub();
    let dropped = Arc::new(AtomicBool::new(false));
    let spawned = hub
        .spawn_stream(StreamOptions::new(), tokens(5, &dropped))
        .await
        .unwrap();
    assert_eq!(spawned.id().len(), 32);
    // A late first connection: from the start all the same.
    tokio::time::sleep(STEP * 3).await;
    let late = hub.resume(spawned.id(), None).await.unwrap();
    let first = read_all(spawned.into_subscription()).await;
    assert_eq!(datas(&first), ["1", "2", "3", "4", "5", "{}"]);
    assert_eq!(names(&first)[5], DONE);
    assert_eq!(read_all(late).await, first);
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_mid_way_resumes_exactly_then_after_the_end_gets_the_rest_and_204() {
    let hub = hub();
    let dropped = Arc::new(AtomicBool::new(false));
    let (id, mut first) = hub
        .spawn_stream(StreamOptions::new(), tokens(6, &dropped))
        .await
        .unwrap()
        .into_parts();
    // The client reads the marker and two tokens, then its connection drops.
    let mut last = None;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = first.next().await.unwrap();
        last = event.id().map(|id| LastEventId::new(id).unwrap());
        if event.name() == Some("token") {
            seen.push(event);
        }
    }
    drop(first);

    // Mid-way: exactly what follows.
    let resumed = read_all(hub.resume(&id, last.clone()).await.unwrap()).await;
    assert_eq!(datas(&resumed), ["3", "4", "5", "6", "{}"]);

    // After the end: the rest and the same end, at once.
    let after_end = read_all(hub.resume(&id, last).await.unwrap()).await;
    assert_eq!(after_end, resumed);

    // With the end's id, as EventSource reconnects: 204.
    let end_id = LastEventId::new(resumed.last().unwrap().2.clone()).unwrap();
    assert!(hub.resume(&id, Some(end_id)).await.unwrap().is_ended());
}

#[tokio::test(start_paused = true)]
async fn unknown_malformed_and_expired_ids_are_204() {
    let hub = hub();
    for id in ["0123456789abcdef", "no/slash", "", &"x".repeat(65)] {
        assert!(hub.resume(id, None).await.unwrap().is_ended(), "{id:?}");
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let id = hub
        .spawn_stream(StreamOptions::new(), tokens(2, &dropped))
        .await
        .unwrap()
        .id()
        .to_owned();
    tokio::time::sleep(STEP * 5).await;
    assert!(
        !hub.resume(&id, None).await.unwrap().is_ended(),
        "kept for the TTL"
    );
    tokio::time::sleep(Duration::from_secs(301)).await;
    assert!(
        hub.resume(&id, None).await.unwrap().is_ended(),
        "gone after the TTL"
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_ends_the_stream_with_cancelled_and_drops_the_producer() {
    let hub = hub();
    let dropped = Arc::new(AtomicBool::new(false));
    let (id, subscription) = hub
        .spawn_stream(StreamOptions::new(), tokens(1000, &dropped))
        .await
        .unwrap()
        .into_parts();
    tokio::time::sleep(STEP * 3 + STEP / 2).await;
    assert!(hub.cancel(&id).await.unwrap());
    let events = read_all(subscription).await;
    assert_eq!(names(&events).last(), Some(&CANCELLED));
    assert_eq!(events.last().unwrap().1, r#"{"reason":"cancelled"}"#);
    assert!(events.len() < 10, "{events:?}");
    tokio::task::yield_now().await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the producer is dropped at once"
    );
    // Already ended: nothing to cancel; an unknown id neither.
    assert!(!hub.cancel(&id).await.unwrap());
    assert!(!hub.cancel("nope").await.unwrap());
    assert!(hub.topic_info("stream:nope").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_detached_stream_runs_to_the_end_with_nobody_listening() {
    let hub = hub();
    let dropped = Arc::new(AtomicBool::new(false));
    let (id, subscription) = hub
        .spawn_stream(StreamOptions::new().detached(), tokens(50, &dropped))
        .await
        .unwrap()
        .into_parts();
    drop(subscription);
    tokio::time::sleep(STEP * 60).await;
    let events = read_all(hub.resume(&id, None).await.unwrap()).await;
    assert_eq!(events.len(), 51);
    assert_eq!(names(&events)[50], DONE);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_stream_is_cancelled_after_its_grace_and_its_producer_dropped() {
    let hub = hub();
    let grace = Duration::from_secs(5);
    let dropped = Arc::new(AtomicBool::new(false));
    let (id, subscription) = hub
        .spawn_stream(
            StreamOptions::new().abandon_after(grace),
            tokens(100_000, &dropped),
        )
        .await
        .unwrap()
        .into_parts();
    // Its only client reads a while, then disconnects.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(subscription);
    tokio::time::sleep(grace - STEP).await;
    assert!(!dropped.load(Ordering::SeqCst), "still within the grace");
    tokio::time::sleep(STEP * 2).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "dropped once nobody listened for the grace"
    );
    let events = read_all(hub.resume(&id, None).await.unwrap()).await;
    assert_eq!(events.last().unwrap().1, r#"{"reason":"abandoned"}"#);
}

#[tokio::test(start_paused = true)]
async fn a_failing_producer_ends_with_an_error_event_safe_for_clients() {
    let hub = hub();
    let producer = stream::iter([
        Ok(token(1)),
        Err("database at 10.0.0.7 refused the query"),
        Ok(token(2)),
    ]);
    let spawned = hub
        .spawn_try_stream(StreamOptions::new(), producer)
        .await
        .unwrap();
    let events = read_all(spawned.into_subscription()).await;
    assert_eq!(names(&events), ["token", ERROR]);
    assert_eq!(events[1].1, r#"{"message":"the stream failed"}"#);
}

#[tokio::test(start_paused = true)]
async fn a_done_event_of_the_producers_own_ends_the_stream_with_its_data() {
    let hub = hub();
    let done = Event::builder()
        .event("done")
        .data(r#"{"tokens":2}"#)
        .build()
        .unwrap();
    let producer = stream::iter([token(1), token(2), done, token(3)]);
    let spawned = hub
        .spawn_stream(StreamOptions::new(), producer)
        .await
        .unwrap();
    let events = read_all(spawned.into_subscription()).await;
    assert_eq!(datas(&events), ["1", "2", r#"{"tokens":2}"#]);
    assert!(events[2].2.ends_with(":end"), "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn a_second_start_under_a_live_id_is_refused() {
    let hub = hub();
    let dropped = Arc::new(AtomicBool::new(false));
    let first = hub
        .spawn_stream(StreamOptions::new().id("answer-1"), tokens(3, &dropped))
        .await
        .unwrap();
    assert_eq!(first.id(), "answer-1");
    let err = hub
        .spawn_stream(StreamOptions::new().id("answer-1"), stream::empty())
        .await
        .unwrap_err();
    assert!(err.is_stream_exists(), "{err}");
    // Finished but kept: still refused.
    read_all(first.into_subscription()).await;
    let err = hub
        .spawn_stream(StreamOptions::new().id("answer-1"), stream::empty())
        .await
        .unwrap_err();
    assert!(err.is_stream_exists(), "{err}");

    let err = hub
        .spawn_stream(StreamOptions::new().id("bad id"), stream::empty())
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_producer_that_panics_ends_the_stream_with_an_error_event() {
    let hub = hub();
    let producer = stream::iter(1..=3).map(|n| {
        assert!(n < 2, "the producer's own bug");
        token(n)
    });
    let spawned = hub
        .spawn_stream(StreamOptions::new(), producer)
        .await
        .unwrap();
    let events = tokio::time::timeout(
        Duration::from_secs(60),
        read_all(spawned.into_subscription()),
    )
    .await
    .expect("the stream ends instead of hanging");
    assert_eq!(names(&events), ["token", ERROR]);
    assert_eq!(hub.running_streams(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_start_dropped_before_its_producer_runs_still_ends_the_stream() {
    let hub = hub();
    // What `spawn_stream` leaves when its caller drops it between publishing the opening
    // marker and starting the producer (on a backend whose publish really waits, e.g. Redis).
    hub.publish(&topic_of("half"), token(1)).await.unwrap();
    drop(Unstarted {
        hub: Some(hub.clone()),
        topic: topic_of("half"),
    });
    let events = tokio::time::timeout(
        Duration::from_secs(60),
        read_all(hub.resume("half", None).await.unwrap()),
    )
    .await
    .expect("the stream ends instead of hanging");
    assert_eq!(names(&events), ["token", ERROR]);
}
