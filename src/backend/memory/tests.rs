use std::time::Duration;

use futures_util::{FutureExt, StreamExt};

use super::*;
use crate::LastEventId;

const TOPIC: &str = "news";

fn limits(max_events: usize, max_bytes: usize, max_age: Duration) -> HistoryLimits {
    HistoryLimits {
        max_events,
        max_bytes,
        max_age,
        ..HistoryLimits::default()
    }
}

fn events(max_events: usize) -> HistoryLimits {
    HistoryLimits {
        max_events,
        ..HistoryLimits::default()
    }
}

fn topic_limits(max_topics: usize, max_history_bytes: usize, idle_ttl: Duration) -> TopicLimits {
    TopicLimits {
        max_topics,
        max_history_bytes,
        idle_ttl,
    }
}

/// A backend with the default history bounds and queue, and these hub-wide bounds.
fn bounded(max_topics: usize, max_history_bytes: usize, idle_ttl: Duration) -> MemoryBackend {
    MemoryBackend::with_limits(
        HistoryLimits::default(),
        topic_limits(max_topics, max_history_bytes, idle_ttl),
        DEFAULT_QUEUE,
    )
}

fn capped(max_replay: usize) -> ReplayOptions {
    ReplayOptions {
        max_replay,
        ..ReplayOptions::default()
    }
}

fn live_on_gap() -> ReplayOptions {
    ReplayOptions {
        resume: GapResume::Live,
        ..ReplayOptions::default()
    }
}

/// Publishes `n` events to `topic` whose data is their sequence number (the topic must be new,
/// or the data is off by what it already held).
async fn publish_n(backend: &MemoryBackend, topic: &str, n: u64) -> Vec<Event> {
    let mut published = Vec::new();
    for i in 1..=n {
        let event = backend
            .publish(topic, Event::data(i.to_string()).into())
            .await
            .expect("publish")
            .into_event();
        published.push(event);
    }
    published
}

async fn open(
    backend: &MemoryBackend,
    topic: &str,
    start: Start,
    options: &ReplayOptions,
) -> Opened {
    backend
        .open(topic, &start, options)
        .await
        .expect("the memory backend opens")
}

fn last(id: &str) -> LastEventId {
    LastEventId::new(id).expect("a usable id")
}

fn after(id: &str) -> Start {
    Start::After(last(id))
}

/// The epoch of `topic`'s current instance.
fn epoch(backend: &MemoryBackend, topic: &str) -> u64 {
    let topic = lock(&backend.shared.topics)
        .map
        .get(topic)
        .cloned()
        .expect("the topic exists");
    lock(&topic.state).epoch
}

fn id_of(backend: &MemoryBackend, topic: &str, seq: u64) -> String {
    id(epoch(backend, topic), seq)
}

fn after_seq(backend: &MemoryBackend, seq: u64) -> Start {
    after(&id_of(backend, TOPIC, seq))
}

/// The SEQ part of each event's id, checking the EPOCH part is `TOPIC`'s.
fn seqs(backend: &MemoryBackend, events: &[Event]) -> Vec<u64> {
    let epoch = epoch(backend, TOPIC);
    events
        .iter()
        .map(|event| {
            let event_id = event.id().expect("a stored event has an id");
            parse(event_id, epoch).unwrap_or_else(|reason| panic!("{event_id}: {reason:?}"))
        })
        .collect()
}

fn live_part(opened: Opened) -> Live {
    match opened.rest {
        Rest::Live(live) => live,
        other => panic!("expected a live part, got {other:?}"),
    }
}

/// The next delivery, if one is ready now.
fn try_next(live: &mut Live) -> Option<Option<Delivery>> {
    live.next().now_or_never()
}

fn next_event(live: &mut Live) -> Event {
    match try_next(live) {
        Some(Some(Delivery::Event(event))) => event,
        other => panic!("expected a ready event, got {other:?}"),
    }
}

fn assert_waiting(live: &mut Live) {
    if let Some(item) = try_next(live) {
        panic!("expected the feed to wait, got {item:?}");
    }
}

/// Lets the reaper run everything due by now (paused time).
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn ids_are_epoch_dash_seq_counting_from_1_with_an_epoch_per_topic() {
    let backend = MemoryBackend::default();
    let a = publish_n(&backend, "a", 3).await;
    let b = publish_n(&backend, "b", 2).await;
    let a4 = backend
        .publish("a", Event::data("4").into())
        .await
        .unwrap()
        .into_event();

    let (ea, eb) = (
        format!("{:012x}", epoch(&backend, "a")),
        format!("{:012x}", epoch(&backend, "b")),
    );
    assert_ne!(ea, eb, "each topic has its own epoch");
    let ids = |events: &[Event]| -> Vec<String> {
        events.iter().map(|e| e.id().unwrap().to_owned()).collect()
    };
    assert_eq!(
        ids(&a),
        [format!("{ea}-1"), format!("{ea}-2"), format!("{ea}-3")]
    );
    assert_eq!(ids(&b), [format!("{eb}-1"), format!("{eb}-2")]);
    assert_eq!(a4.id(), Some(format!("{ea}-4").as_str()));
    assert_eq!(
        a[0].as_bytes(),
        format!("id: {ea}-1\ndata: 1\n\n").as_bytes()
    );

    // Another instance (a restarted server) has other epochs.
    let other = MemoryBackend::default();
    publish_n(&other, "a", 1).await;
    assert_ne!(epoch(&other, "a"), epoch(&backend, "a"));
}

#[tokio::test]
async fn history_is_bounded_by_count() {
    let backend = MemoryBackend::new(events(3));
    publish_n(&backend, TOPIC, 5).await;

    // 3, 4 and 5 are retained: resuming after 2 is exact.
    let opened = open(&backend, TOPIC, after_seq(&backend, 2), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), [3, 4, 5]);

    // 2 is gone: resuming after 1 is not.
    let opened = open(&backend, TOPIC, after_seq(&backend, 1), &capped(100)).await;
    assert_eq!(opened.gap.map(|gap| gap.reason), Some(GapReason::Evicted));
    assert_eq!(seqs(&backend, &opened.replay), [3, 4, 5]);
}

#[tokio::test]
async fn history_is_bounded_by_bytes() {
    // Ids 1..=9 have the same length, so every event here has the same encoded size.
    let size = MemoryBackend::default()
        .publish(TOPIC, Event::data("x").into())
        .await
        .unwrap()
        .into_event()
        .len();
    let backend = MemoryBackend::new(limits(1000, 3 * size, Duration::from_secs(3600)));
    for _ in 0..5 {
        let event = backend
            .publish(TOPIC, Event::data("x").into())
            .await
            .unwrap()
            .into_event();
        assert_eq!(event.len(), size);
    }

    let opened = open(&backend, TOPIC, after_seq(&backend, 2), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), [3, 4, 5]);
    let opened = open(&backend, TOPIC, after_seq(&backend, 1), &capped(100)).await;
    assert_eq!(opened.gap.map(|gap| gap.reason), Some(GapReason::Evicted));

    // One byte less and only two fit.
    let backend = MemoryBackend::new(limits(1000, 3 * size - 1, Duration::from_secs(3600)));
    publish_n(&backend, TOPIC, 5).await;
    let opened = open(&backend, TOPIC, after_seq(&backend, 3), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), [4, 5]);
}

#[tokio::test]
async fn an_event_larger_than_the_byte_bound_is_not_retained_but_keeps_its_id() {
    let backend = MemoryBackend::new(limits(1000, 64, Duration::from_secs(3600)));
    // A subscriber that reads everything keeps the topic while nothing is retained.
    let mut keep = live_part(open(&backend, TOPIC, Start::Live, &capped(100)).await);
    publish_n(&backend, TOPIC, 2).await;
    let big = backend
        .publish(TOPIC, Event::data("x".repeat(100)).into())
        .await
        .unwrap()
        .into_event();
    assert_eq!(big.id(), Some(id_of(&backend, TOPIC, 3).as_str()));
    for _ in 0..3 {
        next_event(&mut keep);
    }

    // Resuming after the big one is exact (nothing was missed)...
    let opened = open(&backend, TOPIC, after_seq(&backend, 3), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert!(opened.replay.is_empty());
    // ...resuming before it is not.
    let opened = open(&backend, TOPIC, after_seq(&backend, 2), &capped(100)).await;
    let gap = opened.gap.expect("a gap");
    assert_eq!(gap.reason, GapReason::Evicted);
    assert_eq!(gap.resume_after, Some(id_of(&backend, TOPIC, 3)));
    assert!(opened.replay.is_empty());

    let next = backend
        .publish(TOPIC, Event::data("y").into())
        .await
        .unwrap()
        .into_event();
    assert_eq!(next.id(), Some(id_of(&backend, TOPIC, 4).as_str()));
}

#[tokio::test]
async fn a_topic_whose_only_event_is_not_retained_is_dropped_at_once() {
    let backend = MemoryBackend::new(limits(1000, 64, Duration::from_secs(3600)));
    backend
        .publish(TOPIC, Event::data("x".repeat(100)).into())
        .await
        .unwrap()
        .into_event();
    assert_eq!(backend.topic_count(), 0);
    assert_eq!(backend.history_bytes(), 0);
}

#[tokio::test]
async fn a_live_subscriber_gets_an_event_over_the_byte_bound_before_it_leaves_the_history() {
    let backend = MemoryBackend::new(limits(1000, 64, Duration::from_secs(3600)));
    let mut live = live_part(open(&backend, TOPIC, Start::Live, &capped(100)).await);
    let big = backend
        .publish(TOPIC, Event::data("x".repeat(100)).into())
        .await
        .unwrap()
        .into_event();
    assert_eq!(next_event(&mut live), big);
    // Read by everyone: the next look at the history lets it go.
    let opened = open(&backend, TOPIC, Start::Oldest, &capped(100)).await;
    assert!(opened.replay.is_empty());
}

#[tokio::test(start_paused = true)]
async fn history_is_bounded_by_age() {
    let backend = MemoryBackend::new(limits(1000, usize::MAX, Duration::from_secs(10)));
    // A subscriber that reads everything keeps the topic (and its epoch) while its history
    // expires.
    let mut keep = live_part(open(&backend, TOPIC, Start::Live, &capped(100)).await);
    publish_n(&backend, TOPIC, 1).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    backend
        .publish(TOPIC, Event::data("2").into())
        .await
        .unwrap()
        .into_event();
    next_event(&mut keep);
    next_event(&mut keep);

    // Exactly max_age old: still retained.
    tokio::time::advance(Duration::from_secs(5)).await;
    let opened = open(&backend, TOPIC, after_seq(&backend, 0), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), [1, 2]);

    // Older: evicted, even without a publish to trigger it.
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(retained_events(&backend).await, 1);
    let opened = open(&backend, TOPIC, after_seq(&backend, 0), &capped(100)).await;
    let gap = opened.gap.expect("a gap");
    assert_eq!(gap.reason, GapReason::Evicted);
    assert_eq!(gap.resume_after, Some(id_of(&backend, TOPIC, 1)));
    assert_eq!(seqs(&backend, &opened.replay), [2]);

    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    let opened = open(&backend, TOPIC, after_seq(&backend, 1), &capped(100)).await;
    assert_eq!(opened.gap.map(|gap| gap.reason), Some(GapReason::Evicted));
    assert!(opened.replay.is_empty());
    // The newest id still resumes exactly: nothing after it was missed.
    let opened = open(&backend, TOPIC, after_seq(&backend, 2), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert!(opened.replay.is_empty());
    let mut live = live_part(opened);
    assert_waiting(&mut live);
    backend
        .publish(TOPIC, Event::data("3").into())
        .await
        .unwrap()
        .into_event();
    assert_eq!(seqs(&backend, &[next_event(&mut live)]), [3]);
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_keeps_up_gets_every_event_however_short_the_history() {
    let backend = MemoryBackend::new(limits(1, usize::MAX, Duration::from_millis(1)));
    let mut live = live_part(open(&backend, TOPIC, Start::Live, &capped(100)).await);
    let published = publish_n(&backend, TOPIC, 5).await;
    // The events expire and overflow the count bound before the subscriber reads them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for event in &published {
        assert_eq!(&next_event(&mut live), event);
    }
    assert_waiting(&mut live);
}

#[tokio::test]
async fn the_three_start_positions() {
    let backend = MemoryBackend::default();
    let published = publish_n(&backend, TOPIC, 5).await;

    // Live: nothing replayed, the next event live.
    let mut live = live_part(open(&backend, TOPIC, Start::Live, &capped(100)).await);
    assert_waiting(&mut live);

    // Oldest: everything retained, then live.
    let opened = open(&backend, TOPIC, Start::Oldest, &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(opened.replay, published);
    let mut oldest = live_part(opened);

    // After an id: what follows it, then live.
    let opened = open(&backend, TOPIC, after_seq(&backend, 3), &capped(100)).await;
    assert_eq!(opened.replay, published[3..]);
    let mut resumed = live_part(opened);

    let six = backend
        .publish(TOPIC, Event::data("6").into())
        .await
        .unwrap()
        .into_event();
    for feed in [&mut live, &mut oldest, &mut resumed] {
        assert_eq!(next_event(feed), six);
        assert_waiting(feed);
    }

    // Oldest is capped like any replay.
    let opened = open(&backend, TOPIC, Start::Oldest, &capped(4)).await;
    assert_eq!(seqs(&backend, &opened.replay), [1, 2, 3, 4]);
    assert!(matches!(opened.rest, Rest::More));
}

#[tokio::test]
async fn open_after_an_id_replays_exactly_what_follows_then_live() {
    let backend = MemoryBackend::default();
    let published = publish_n(&backend, TOPIC, 10).await;

    let opened = open(&backend, TOPIC, after_seq(&backend, 7), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(opened.replay, published[7..]);
    let mut live = live_part(opened);
    assert_waiting(&mut live);

    backend
        .publish(TOPIC, Event::data("11").into())
        .await
        .unwrap()
        .into_event();
    assert_eq!(seqs(&backend, &[next_event(&mut live)]), [11]);
    assert_waiting(&mut live);

    // The newest id: nothing to replay, live after it.
    let opened = open(&backend, TOPIC, after_seq(&backend, 11), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert!(opened.replay.is_empty());
    assert_waiting(&mut live_part(opened));
}

#[tokio::test]
async fn epoch_zero_replays_everything_retained() {
    let backend = MemoryBackend::default();
    // A subscriber creates the topic: its epoch-0 is "before the first event".
    let _first = open(&backend, TOPIC, Start::Live, &capped(100)).await;
    let epoch_zero = after_seq(&backend, 0);

    let opened = open(&backend, TOPIC, epoch_zero.clone(), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert!(opened.replay.is_empty());

    let published = publish_n(&backend, TOPIC, 5).await;
    let opened = open(&backend, TOPIC, epoch_zero, &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(opened.replay, published);
}

#[tokio::test]
async fn an_evicted_id_is_a_gap_that_resumes_from_the_oldest_retained() {
    let backend = MemoryBackend::new(events(5));
    publish_n(&backend, TOPIC, 10).await;

    let opened = open(
        &backend,
        TOPIC,
        after_seq(&backend, 3),
        &ReplayOptions::default(),
    )
    .await;
    assert_eq!(
        opened.gap,
        Some(
            Gap::new(GapReason::Evicted, GapResume::Oldest)
                .resume_after(id_of(&backend, TOPIC, 5))
                .last_id(id_of(&backend, TOPIC, 10))
        )
    );
    assert_eq!(seqs(&backend, &opened.replay), [6, 7, 8, 9, 10]);
    assert_waiting(&mut live_part(opened));
}

#[tokio::test]
async fn an_evicted_id_with_gap_resume_live_replays_nothing() {
    let backend = MemoryBackend::new(events(5));
    publish_n(&backend, TOPIC, 10).await;

    let opened = open(&backend, TOPIC, after_seq(&backend, 3), &live_on_gap()).await;
    assert_eq!(
        opened.gap,
        Some(
            Gap::new(GapReason::Evicted, GapResume::Live)
                .resume_after(id_of(&backend, TOPIC, 10))
                .last_id(id_of(&backend, TOPIC, 10))
        )
    );
    assert!(opened.replay.is_empty());
    let mut live = live_part(opened);
    backend
        .publish(TOPIC, Event::data("11").into())
        .await
        .unwrap()
        .into_event();
    assert_eq!(seqs(&backend, &[next_event(&mut live)]), [11]);
}

#[tokio::test]
async fn presenting_resume_after_later_resumes_exactly() {
    for options in [ReplayOptions::default(), live_on_gap()] {
        let backend = MemoryBackend::default();
        publish_n(&backend, TOPIC, 10).await;
        // A foreign id, so that the events published in between evict nothing.
        let opened = open(&backend, TOPIC, after("000000000000-3"), &options).await;
        let resume_after = opened
            .gap
            .and_then(|gap| gap.resume_after)
            .expect("resume_after");
        let continued = seqs(&backend, &opened.replay);

        backend
            .publish(TOPIC, Event::data("11").into())
            .await
            .unwrap()
            .into_event();
        let opened = open(&backend, TOPIC, after(&resume_after), &options).await;
        assert_eq!(opened.gap, None, "{options:?}");
        let mut expected = continued;
        expected.push(11);
        assert_eq!(seqs(&backend, &opened.replay), expected, "{options:?}");
    }
}

#[tokio::test]
async fn ids_from_another_instance_or_another_topic_are_foreign() {
    let backend = MemoryBackend::default();
    let other = MemoryBackend::default();
    publish_n(&backend, TOPIC, 3).await;
    publish_n(&backend, "sports", 3).await;
    publish_n(&other, TOPIC, 3).await;

    let foreign_ids = [0, 2, 3, 4]
        .into_iter()
        .flat_map(|seq| [id_of(&other, TOPIC, seq), id_of(&backend, "sports", seq)]);
    for foreign in foreign_ids {
        let opened = open(&backend, TOPIC, after(&foreign), &ReplayOptions::default()).await;
        assert_eq!(
            opened.gap,
            Some(
                Gap::new(GapReason::Foreign, GapResume::Oldest)
                    .resume_after(id_of(&backend, TOPIC, 0))
                    .last_id(id_of(&backend, TOPIC, 3))
            ),
            "{foreign}"
        );
        assert_eq!(seqs(&backend, &opened.replay), [1, 2, 3], "{foreign}");
    }
}

#[tokio::test]
async fn a_seq_beyond_the_last_is_unknown() {
    let backend = MemoryBackend::default();
    publish_n(&backend, TOPIC, 3).await;

    let opened = open(
        &backend,
        TOPIC,
        after_seq(&backend, 4),
        &ReplayOptions::default(),
    )
    .await;
    assert_eq!(
        opened.gap,
        Some(
            Gap::new(GapReason::Unknown, GapResume::Oldest)
                .resume_after(id_of(&backend, TOPIC, 0))
                .last_id(id_of(&backend, TOPIC, 3))
        )
    );
    assert_eq!(seqs(&backend, &opened.replay), [1, 2, 3]);
}

#[tokio::test]
async fn garbage_and_unusable_ids_are_malformed() {
    let backend = MemoryBackend::default();
    publish_n(&backend, TOPIC, 2).await;
    let epoch = format!("{:012x}", epoch(&backend, TOPIC));

    let mut ids: Vec<LastEventId> = [
        "garbage".to_owned(),
        "42".to_owned(),
        "-1".to_owned(),
        format!("{epoch}-"),
        format!("{epoch}-x"),
        format!("{epoch}--1"),
        format!("{epoch}-1.0"),
        format!("{epoch}-18446744073709551616"),
        format!("{epoch}0-1"),
        format!("{}-1", &epoch[1..]),
        "zzzzzzzzzzzz-1".to_owned(),
        format!("{epoch}-1-2"),
    ]
    .iter()
    .map(|id| last(id))
    .collect();
    ids.extend(
        [&b"a\nb"[..], b"a\rb", b"a\0b", b"\xff\xfe", &[b'1'; 2000]]
            .iter()
            .map(|raw| LastEventId::from_bytes(raw).expect("not empty")),
    );

    for id in ids {
        let shown = id.to_string();
        let opened = open(&backend, TOPIC, Start::After(id), &ReplayOptions::default()).await;
        assert_eq!(
            opened.gap,
            Some(
                Gap::new(GapReason::Malformed, GapResume::Oldest)
                    .resume_after(id_of(&backend, TOPIC, 0))
                    .last_id(id_of(&backend, TOPIC, 2))
            ),
            "{shown}"
        );
        assert_eq!(seqs(&backend, &opened.replay), [1, 2], "{shown}");
    }
}

#[tokio::test]
async fn max_replay_cuts_the_replay_and_leaves_out_the_live_part() {
    let backend = MemoryBackend::default();
    publish_n(&backend, TOPIC, 25).await;
    let options = capped(10);

    let opened = open(&backend, TOPIC, after_seq(&backend, 0), &options).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), (1..=10).collect::<Vec<_>>());
    assert!(matches!(opened.rest, Rest::More));

    // Reconnecting with the last replayed id gets the next batch.
    let last_replayed = opened.replay.last().unwrap().id().unwrap().to_owned();
    let opened = open(&backend, TOPIC, after(&last_replayed), &options).await;
    assert_eq!(
        seqs(&backend, &opened.replay),
        (11..=20).collect::<Vec<_>>()
    );
    assert!(matches!(opened.rest, Rest::More));

    let last_replayed = opened.replay.last().unwrap().id().unwrap().to_owned();
    let opened = open(&backend, TOPIC, after(&last_replayed), &options).await;
    assert_eq!(seqs(&backend, &opened.replay), [21, 22, 23, 24, 25]);
    assert_waiting(&mut live_part(opened));

    // Exactly the cap behind: all of it, and live.
    let opened = open(&backend, TOPIC, after_seq(&backend, 15), &options).await;
    assert_eq!(
        seqs(&backend, &opened.replay),
        (16..=25).collect::<Vec<_>>()
    );
    assert_waiting(&mut live_part(opened));
}

#[tokio::test]
async fn a_subscriber_more_than_its_queue_behind_is_lagged() {
    let backend = MemoryBackend::with_limits(HistoryLimits::default(), TopicLimits::default(), 4);
    let mut slow = live_part(open(&backend, TOPIC, Start::Live, &capped(100)).await);
    let mut fast = live_part(open(&backend, TOPIC, Start::Live, &capped(100)).await);

    for i in 1..=10 {
        backend
            .publish(TOPIC, Event::data("x").into())
            .await
            .unwrap()
            .into_event();
        assert_eq!(seqs(&backend, &[next_event(&mut fast)]), [i]);
    }
    assert!(matches!(try_next(&mut slow), Some(Some(Delivery::Lagged))));
    assert!(matches!(try_next(&mut slow), Some(None)));
}

#[tokio::test]
async fn a_topic_with_no_subscriber_and_nothing_retained_is_dropped_at_once() {
    let backend = MemoryBackend::default();
    let opened = open(&backend, TOPIC, Start::Live, &capped(100)).await;
    assert_eq!(backend.topic_count(), 1);
    drop(opened);
    assert_eq!(backend.topic_count(), 0);
    assert_eq!(backend.topic_info(TOPIC).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn twenty_thousand_topics_opened_and_abandoned_leave_nothing_behind() {
    let backend = MemoryBackend::new(limits(1000, usize::MAX, Duration::from_secs(10)));
    for i in 0..10_000 {
        // One event each, nobody listening.
        backend
            .publish(&format!("published-{i}"), Event::data("x").into())
            .await
            .unwrap()
            .into_event();
        // A subscriber that comes and goes.
        let mut live =
            live_part(open(&backend, &format!("visited-{i}"), Start::Live, &capped(1)).await);
        assert_waiting(&mut live);
    }
    assert_eq!(
        backend.topic_count(),
        10_000,
        "the published topics retain their event"
    );
    assert!(backend.history_bytes() > 0);

    tokio::time::sleep(Duration::from_secs(11)).await;
    settle().await;
    assert_eq!(backend.topic_count(), 0);
    assert_eq!(backend.history_bytes(), 0);
    let shared = &backend.shared;
    assert!(
        lock(&shared.deadlines).is_empty(),
        "no reaper entry is left"
    );
    assert!(lock(&shared.topics).map.capacity() < 4096, "the map shrank");
}

#[tokio::test(start_paused = true)]
async fn an_idle_topic_is_dropped_whole_and_its_ids_become_foreign() {
    let ttl = Duration::from_secs(60);
    let backend = bounded(100, usize::MAX, ttl);
    let published = publish_n(&backend, TOPIC, 3).await;

    // A subscriber keeps it however long it stays.
    let opened = open(&backend, TOPIC, Start::Live, &capped(100)).await;
    tokio::time::sleep(ttl * 3).await;
    settle().await;
    assert_eq!(retained_events(&backend).await, 3);

    // It leaves: the topic is idle from now on; a publish resets the clock.
    drop(opened);
    tokio::time::sleep(ttl / 2).await;
    let fourth = backend
        .publish(TOPIC, Event::data("4").into())
        .await
        .unwrap()
        .into_event();
    tokio::time::sleep(ttl / 2 + Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(backend.topic_count(), 1, "published to within the TTL");

    tokio::time::sleep(ttl / 2).await;
    settle().await;
    assert_eq!(
        backend.topic_count(),
        0,
        "idle for the TTL: dropped with its history"
    );
    assert_eq!(backend.history_bytes(), 0);

    // A new instance: the old ids are foreign there.
    publish_n(&backend, TOPIC, 1).await;
    for old in published.iter().chain([&fourth]) {
        let opened = open(&backend, TOPIC, after(old.id().unwrap()), &capped(100)).await;
        assert_eq!(opened.gap.map(|gap| gap.reason), Some(GapReason::Foreign));
    }
}

#[tokio::test(start_paused = true)]
async fn a_topic_whose_history_expires_is_dropped_and_a_new_one_has_a_new_epoch() {
    let backend = MemoryBackend::new(limits(1000, usize::MAX, Duration::from_secs(1)));
    let old = publish_n(&backend, TOPIC, 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(backend.topic_count(), 0);

    let next = backend
        .publish(TOPIC, Event::data("1").into())
        .await
        .unwrap()
        .into_event();
    assert!(next.id().unwrap().ends_with("-1"));
    let opened = open(&backend, TOPIC, after(old[2].id().unwrap()), &capped(100)).await;
    assert_eq!(opened.gap.map(|gap| gap.reason), Some(GapReason::Foreign));
    assert_eq!(opened.replay, [next]);
}

fn end_event() -> Event {
    Event::builder().event("end").data("bye").build().unwrap()
}

#[tokio::test]
async fn close_ends_live_subscribers_and_later_ones_get_the_history_then_the_end() {
    let backend = MemoryBackend::default();
    let mut live = live_part(open(&backend, TOPIC, Start::Live, &capped(100)).await);
    let published = publish_n(&backend, TOPIC, 2).await;

    let end = backend.close(TOPIC, end_event()).await.unwrap();
    let end_id = format!("{}{END_ID_SUFFIX}", id_of(&backend, TOPIC, 3));
    assert_eq!(end.id(), Some(end_id.as_str()));
    assert!(super::super::is_end_id(&end_id));

    // The live one: what it had not read, then the end, then nothing.
    assert_eq!(next_event(&mut live), published[0]);
    assert_eq!(next_event(&mut live), published[1]);
    assert!(matches!(try_next(&mut live), Some(Some(Delivery::End(e))) if e == end));
    assert!(matches!(try_next(&mut live), Some(None)));

    // Later ones: what is retained after their start, then the end.
    for (start, replayed) in [
        (Start::Oldest, &published[..]),
        (after_seq(&backend, 1), &published[1..]),
        (Start::Live, &[][..]),
    ] {
        let opened = open(&backend, TOPIC, start, &capped(100)).await;
        assert_eq!(opened.replay, replayed);
        assert!(matches!(opened.rest, Rest::End(ref e) if *e == end));
    }
    // Cut at the cap: the end comes with the last batch.
    let opened = open(&backend, TOPIC, Start::Oldest, &capped(1)).await;
    assert!(matches!(opened.rest, Rest::More));

    // The final event counts against the hub's bound as long as the topic holds it.
    let held: usize = published.iter().map(|e| e.len() + EVENT_OVERHEAD).sum();
    assert_eq!(backend.history_bytes(), held + end.len() + EVENT_OVERHEAD);

    // No more publishing; closing again changes nothing.
    let err = backend
        .publish(TOPIC, Event::data("3").into())
        .await
        .unwrap_err();
    assert!(err.is_closed(), "{err}");
    let again = backend.close(TOPIC, Event::data("other")).await.unwrap();
    assert_eq!(again, end);
    let info = backend.topic_info(TOPIC).await.unwrap().unwrap();
    assert!(info.closed);
    assert_eq!(info.retained_events, 2);
}

#[tokio::test(start_paused = true)]
async fn a_closed_topic_goes_away_after_its_idle_ttl_and_can_be_opened_again() {
    let ttl = Duration::from_secs(30);
    let backend = bounded(100, usize::MAX, ttl);
    let old = publish_n(&backend, TOPIC, 2).await;
    backend.close(TOPIC, end_event()).await.unwrap();
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(backend.topic_count(), 0);

    let reopened = backend
        .publish(TOPIC, Event::data("new").into())
        .await
        .unwrap()
        .into_event();
    let opened = open(&backend, TOPIC, after(old[1].id().unwrap()), &capped(100)).await;
    assert_eq!(opened.gap.map(|gap| gap.reason), Some(GapReason::Foreign));
    assert_eq!(opened.replay, [reopened]);
    assert!(matches!(opened.rest, Rest::Live(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_racing_publish_and_subscribe_loses_and_duplicates_nothing() {
    for round in 0..50 {
        let backend = Arc::new(MemoryBackend::default());
        let topic = format!("race-{round}");
        let publisher = {
            let backend = backend.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                for i in 0..200 {
                    match backend
                        .publish(&topic, Event::data(i.to_string()).into())
                        .await
                    {
                        Ok(published) => accepted.push(published.into_event()),
                        Err(err) => {
                            assert!(err.is_closed(), "{err}");
                            break;
                        }
                    }
                    tokio::task::yield_now().await;
                }
                accepted
            })
        };
        let subscribers: Vec<_> = (0..4)
            .map(|i| {
                let backend = backend.clone();
                let topic = topic.clone();
                tokio::spawn(async move {
                    for _ in 0..i * 3 {
                        tokio::task::yield_now().await;
                    }
                    let opened = backend
                        .open(&topic, &Start::Oldest, &capped(10_000))
                        .await
                        .unwrap();
                    let mut got = opened.replay;
                    let end = match opened.rest {
                        Rest::End(end) => end,
                        Rest::Live(mut live) => loop {
                            match live.next().await {
                                Some(Delivery::Event(event)) => got.push(event),
                                Some(Delivery::End(end)) => break end,
                                other => panic!("unexpected {other:?}"),
                            }
                        },
                        Rest::More => panic!("the cap is above what is published"),
                    };
                    (got, end)
                })
            })
            .collect();
        for _ in 0..round % 7 * 5 {
            tokio::task::yield_now().await;
        }
        let end = backend.close(&topic, end_event()).await.unwrap();
        let accepted = publisher.await.unwrap();
        for subscriber in subscribers {
            let (got, their_end) = subscriber.await.unwrap();
            assert_eq!(their_end, end);
            // From the oldest: every accepted event, in order, once.
            assert_eq!(got, accepted, "round {round}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn max_topics_evicts_idle_topics_oldest_first_then_refuses() {
    let backend = bounded(4, usize::MAX, Duration::from_secs(3600));
    // Two idle topics (history, no subscriber), oldest first, and two with subscribers.
    let tick = || tokio::time::advance(Duration::from_secs(1));
    publish_n(&backend, "idle-old", 1).await;
    tick().await;
    publish_n(&backend, "idle-new", 1).await;
    let _a = open(&backend, "busy-a", Start::Live, &capped(100)).await;
    let _b = open(&backend, "busy-b", Start::Live, &capped(100)).await;
    tick().await;

    publish_n(&backend, "fifth", 1).await;
    assert_eq!(backend.topic_count(), 4);
    assert_eq!(
        backend.topic_info("idle-old").await.unwrap(),
        None,
        "oldest idle: evicted"
    );
    assert!(backend.topic_info("idle-new").await.unwrap().is_some());
    tick().await;

    publish_n(&backend, "sixth", 1).await;
    assert_eq!(backend.topic_info("idle-new").await.unwrap(), None);
    tick().await;

    // The just-published topics are idle too: they go in their turn.
    publish_n(&backend, "seventh", 1).await;
    tick().await;
    publish_n(&backend, "eighth", 1).await;
    assert_eq!(backend.topic_count(), 4);
    assert_eq!(backend.topic_info("fifth").await.unwrap(), None);
    assert_eq!(backend.topic_info("sixth").await.unwrap(), None);

    // All four busy: a new topic is refused, for publishers and subscribers alike.
    let _c = open(&backend, "seventh", Start::Live, &capped(100)).await;
    let _d = open(&backend, "eighth", Start::Live, &capped(100)).await;
    let err = backend
        .publish("ninth", Event::data("x").into())
        .await
        .unwrap_err();
    assert!(err.is_full(), "{err}");
    let err = backend
        .open("ninth", &Start::Live, &capped(100))
        .await
        .unwrap_err();
    assert!(err.is_full(), "{err}");
    // Existing topics still take events.
    publish_n(&backend, "busy-a", 1).await;
}

#[tokio::test]
async fn max_history_bytes_evicts_idle_topics_then_own_history_then_refuses() {
    let size = MemoryBackend::default()
        .publish(TOPIC, Event::data("x".repeat(100)).into())
        .await
        .unwrap()
        .into_event()
        .len();
    let charge = size + EVENT_OVERHEAD;
    // Room for exactly four events.
    let backend = bounded(100, 4 * charge, Duration::from_secs(3600));
    let x = || Event::data("x".repeat(100));
    backend
        .publish("idle", x().into())
        .await
        .unwrap()
        .into_event();
    let _busy = open(&backend, "busy", Start::Live, &capped(100)).await;
    for _ in 0..3 {
        backend
            .publish("busy", x().into())
            .await
            .unwrap()
            .into_event();
    }
    assert_eq!(backend.history_bytes(), 4 * charge);

    // Full: the idle topic goes first.
    backend
        .publish("busy", x().into())
        .await
        .unwrap()
        .into_event();
    assert_eq!(backend.topic_info("idle").await.unwrap(), None);
    assert_eq!(backend.history_bytes(), 4 * charge);

    // Then the topic's own oldest events.
    backend
        .publish("busy", x().into())
        .await
        .unwrap()
        .into_event();
    let info = backend.topic_info("busy").await.unwrap().unwrap();
    assert_eq!(info.retained_events, 4);
    assert_eq!(backend.history_bytes(), 4 * charge);

    // Another topic with a subscriber and nothing to give up: refused.
    let _other = open(&backend, "other", Start::Live, &capped(100)).await;
    let err = backend.publish("other", x().into()).await.unwrap_err();
    assert!(err.is_full(), "{err}");
    // An event that could never fit: refused.
    let err = backend
        .publish("busy", Event::data("x".repeat(5 * charge)).into())
        .await
        .unwrap_err();
    assert!(err.is_full(), "{err}");
    assert_eq!(backend.history_bytes(), 4 * charge);
}

#[tokio::test]
async fn no_sequence_of_publishes_takes_the_history_past_its_bound() {
    let max = 64 * 1024;
    let backend = bounded(50, max, Duration::from_secs(3600));
    let mut subscribers = Vec::new();
    for i in 0..10 {
        subscribers.push(open(&backend, &format!("t{i}"), Start::Live, &capped(1)).await);
    }
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..5000 {
        let topic = format!("t{}", rng.usize(..100));
        let size = rng.usize(..4096);
        if rng.usize(..50) == 0 {
            let _ = backend.close(&topic, Event::data("z".repeat(size))).await;
        } else {
            let _ = backend
                .publish(&topic, Event::data("y".repeat(size)).into())
                .await;
        }
        assert!(
            backend.history_bytes() <= max,
            "{}",
            backend.history_bytes()
        );
        assert!(backend.topic_count() <= 50);
    }
    // What is counted is what is held.
    let held: usize = lock(&backend.shared.topics)
        .map
        .values()
        .map(|topic| Shared::held(&lock(&topic.state)))
        .sum();
    assert_eq!(held, backend.history_bytes());
}

#[tokio::test]
async fn topic_info_says_who_listens_and_what_is_retained() {
    let backend = MemoryBackend::default();
    assert_eq!(backend.topic_info(TOPIC).await.unwrap(), None);
    let published = publish_n(&backend, TOPIC, 3).await;
    let a = open(&backend, TOPIC, Start::Live, &capped(100)).await;
    let b = open(&backend, TOPIC, Start::Live, &capped(100)).await;

    let info = backend.topic_info(TOPIC).await.unwrap().unwrap();
    assert_eq!(info.subscribers, 2);
    assert_eq!(info.retained_events, 3);
    assert_eq!(
        info.retained_bytes,
        published.iter().map(Event::len).sum::<usize>()
    );
    assert_eq!(info.last_id.as_deref(), published[2].id());
    assert!(!info.closed);

    drop(a);
    drop(b);
    assert_eq!(
        backend
            .topic_info(TOPIC)
            .await
            .unwrap()
            .unwrap()
            .subscribers,
        0
    );
}

#[tokio::test(start_paused = true)]
async fn wait_idle_resolves_once_nobody_has_listened_for_the_grace_period() {
    let backend = Arc::new(MemoryBackend::default());
    let grace = Duration::from_secs(10);
    let waiting = |backend: Arc<MemoryBackend>| {
        tokio::spawn(async move {
            let started = Instant::now();
            backend.wait_idle(TOPIC, grace).await.unwrap();
            started.elapsed()
        })
    };

    // Nobody ever comes: after the grace period.
    let idle = waiting(backend.clone()).await.unwrap();
    assert_eq!(idle, grace);
    assert_eq!(backend.topic_count(), 0, "the wait leaves nothing behind");

    // A subscriber for 25 s, away for 5 s, back for 10 s, then gone for good.
    let task = waiting(backend.clone());
    settle().await;
    assert_eq!(
        backend.topic_count(),
        1,
        "the waited-on topic exists while it waits"
    );
    let first = open(&backend, TOPIC, Start::Live, &capped(100)).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    drop(first);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = open(&backend, TOPIC, Start::Live, &capped(100)).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!task.is_finished());
    drop(second);
    assert_eq!(task.await.unwrap(), Duration::from_secs(40) + grace);
}

#[tokio::test]
async fn at_max_history_bytes_a_topic_without_subscribers_drops_its_own_oldest_not_itself() {
    let size = MemoryBackend::default()
        .publish(TOPIC, Event::data("x").into())
        .await
        .unwrap()
        .into_event()
        .len();
    let backend = bounded(100, 3 * (size + EVENT_OVERHEAD), Duration::from_secs(3600));
    let published = publish_n(&backend, TOPIC, 5).await;
    // Same instance all along: the ids count on, and the newest three are retained.
    assert_eq!(seqs(&backend, &published), [1, 2, 3, 4, 5]);
    let opened = open(&backend, TOPIC, after_seq(&backend, 2), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), [3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn bounds_too_far_away_to_express_are_no_bounds() {
    let backend = MemoryBackend::with_limits(
        limits(1000, usize::MAX, Duration::MAX),
        topic_limits(100, usize::MAX, Duration::MAX),
        DEFAULT_QUEUE,
    );
    publish_n(&backend, TOPIC, 2).await;
    let end = backend.close("other", end_event()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)).await;
    settle().await;
    let opened = open(&backend, TOPIC, Start::Oldest, &capped(100)).await;
    assert_eq!(seqs(&backend, &opened.replay), [1, 2]);
    let opened = open(&backend, "other", Start::Live, &capped(100)).await;
    assert!(matches!(opened.rest, Rest::End(ref e) if *e == end));
}

#[tokio::test(start_paused = true)]
async fn topics_evicted_for_room_leave_no_reaper_entries_behind() {
    let backend = bounded(100, usize::MAX, Duration::from_secs(3600));
    for i in 0..50_000 {
        backend
            .publish(&format!("t{i}"), Event::data("x").into())
            .await
            .unwrap()
            .into_event();
    }
    assert!(backend.topic_count() <= 100);
    let deadlines = lock(&backend.shared.deadlines).len();
    assert!(
        deadlines <= 2 * 100 + 1024 + 1,
        "{deadlines} reaper entries"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_wait_and_a_refused_publish_leave_nothing_behind() {
    let backend = bounded(100, 64, Duration::from_secs(3600));
    // The documented select! pattern: the wait is dropped when the work finishes first.
    let waited = tokio::time::timeout(
        Duration::from_secs(1),
        backend.wait_idle(TOPIC, Duration::from_secs(60)),
    )
    .await;
    assert!(waited.is_err(), "the work finished first");
    assert_eq!(backend.topic_count(), 0);

    // An event that can never fit the hub: refused, and its new topic is not kept.
    let err = backend
        .publish("fresh", Event::data("x".repeat(100)).into())
        .await
        .unwrap_err();
    assert!(err.is_full(), "{err}");
    assert_eq!(backend.topic_count(), 0);
}

#[tokio::test]
async fn a_burst_leaves_no_large_buffer_behind() {
    let backend = MemoryBackend::with_limits(events(10), TopicLimits::default(), 2000);
    let mut live = live_part(open(&backend, TOPIC, Start::Live, &capped(100)).await);
    // Retained for the subscriber while it has not read them.
    publish_n(&backend, TOPIC, 1000).await;
    for _ in 0..1000 {
        next_event(&mut live);
    }
    backend
        .publish(TOPIC, Event::data("y").into())
        .await
        .unwrap()
        .into_event();
    let topic = lock(&backend.shared.topics)
        .map
        .get(TOPIC)
        .cloned()
        .unwrap();
    let state = lock(&topic.state);
    assert!(state.log.len() <= 10);
    assert!(state.log.capacity() < 128, "{}", state.log.capacity());
}

// ---- Idempotency keys (issue 18) ----

/// A publish of `data` with idempotency key `key`.
fn keyed(data: &str, key: &str) -> Publish {
    Publish::new(Event::data(data)).idempotency_key(key)
}

/// A backend whose keys live `window`, at most `max_keys` per topic, within `max_bytes` in all.
fn with_keys(window: Duration, max_keys: usize, max_bytes: usize) -> MemoryBackend {
    let history = HistoryLimits {
        idempotency_window: window,
        max_idempotency_keys: max_keys,
        ..HistoryLimits::default()
    };
    let topics = TopicLimits {
        max_history_bytes: max_bytes,
        ..TopicLimits::default()
    };
    MemoryBackend::with_limits(history, topics, DEFAULT_QUEUE)
}

/// What one event of `data` (with a one-digit sequence number) and its key `key` count.
fn charged(backend: &MemoryBackend, data: &str, key: &str) -> usize {
    let event = Event::data(data)
        .with_id(&id_of(backend, TOPIC, 1))
        .unwrap();
    event.len() + EVENT_OVERHEAD + key.len() + crate::backend::IDEMPOTENCY_KEY_OVERHEAD
}

#[tokio::test(start_paused = true)]
async fn a_key_seen_within_the_window_returns_the_first_id_and_event_and_stores_nothing() {
    let window = Duration::from_secs(300);
    let backend = with_keys(window, 100, usize::MAX);
    let first = backend.publish(TOPIC, keyed("a", "k-1")).await.unwrap();
    assert!(!first.is_duplicate());
    let held = backend.history_bytes();
    assert_eq!(held, charged(&backend, "a", "k-1"));

    tokio::time::sleep(window - Duration::from_millis(1)).await;
    let again = backend.publish(TOPIC, keyed("a", "k-1")).await.unwrap();
    assert!(again.is_duplicate());
    assert_eq!((again.id(), again.event()), (first.id(), first.event()));
    assert_eq!(backend.history_bytes(), held, "nothing more is held");
    let opened = open(&backend, TOPIC, Start::Oldest, &capped(100)).await;
    assert_eq!(opened.replay, [first.event().clone()], "stored once");

    // Once the window has passed, the key is forgotten: the same publish is a new event.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let later = backend.publish(TOPIC, keyed("a", "k-1")).await.unwrap();
    assert!(!later.is_duplicate());
    assert_eq!(seqs(&backend, &[later.into_event()]), [2]);
}

#[tokio::test]
async fn a_key_used_for_another_event_is_refused_and_keys_are_per_topic() {
    let backend = MemoryBackend::default();
    let first = backend.publish(TOPIC, keyed("a", "k")).await.unwrap();
    let err = backend.publish(TOPIC, keyed("b", "k")).await.unwrap_err();
    assert!(err.is_key_reused(), "{err:?}");
    // The name counts too: it is part of the event.
    let named = Event::builder().event("x").data("a").build().unwrap();
    let err = backend
        .publish(TOPIC, Publish::new(named).idempotency_key("k"))
        .await
        .unwrap_err();
    assert!(err.is_key_reused(), "{err:?}");
    assert_eq!(retained_events(&backend).await, 1);
    // The same key on another topic is another key.
    let other = backend.publish("other", keyed("b", "k")).await.unwrap();
    assert!(!other.is_duplicate());
    // Without a key, the same event is stored again.
    let plain = backend
        .publish(TOPIC, Event::data("a").into())
        .await
        .unwrap();
    assert!(!plain.is_duplicate());
    assert_ne!(plain.id(), first.id());
}

#[tokio::test]
async fn keys_per_topic_are_bounded_and_the_oldest_is_forgotten_first() {
    let backend = with_keys(Duration::from_secs(300), 3, usize::MAX);
    let mut ids = Vec::new();
    for n in 1..=4 {
        let key = format!("k-{n}");
        let published = backend.publish(TOPIC, keyed("x", &key)).await.unwrap();
        ids.push(published.id().to_owned());
    }
    // k-1 is forgotten; k-2..k-4 are remembered, and cost what they say.
    let events = 4 * (Event::data("x").with_id(&ids[0]).unwrap().len() + EVENT_OVERHEAD);
    let keys = 3 * ("k-1".len() + crate::backend::IDEMPOTENCY_KEY_OVERHEAD);
    assert_eq!(backend.history_bytes(), events + keys);
    for n in [4, 3, 2] {
        let again = backend
            .publish(TOPIC, keyed("x", &format!("k-{n}")))
            .await
            .unwrap();
        assert_eq!(
            (again.id(), again.is_duplicate()),
            (ids[n - 1].as_str(), true)
        );
    }
    let forgotten = backend.publish(TOPIC, keyed("x", "k-1")).await.unwrap();
    assert!(!forgotten.is_duplicate(), "beyond the bound: stored again");
}

#[tokio::test(start_paused = true)]
async fn keys_count_towards_the_byte_bound_and_keep_their_topic_until_they_expire() {
    let window = Duration::from_secs(60);
    // Events expire after 1 s; keys after a minute.
    let history = HistoryLimits {
        max_age: Duration::from_secs(1),
        idempotency_window: window,
        ..HistoryLimits::default()
    };
    let backend = MemoryBackend::new(history);
    let first = backend.publish(TOPIC, keyed("x", "k")).await.unwrap();
    let key_cost = "k".len() + crate::backend::IDEMPOTENCY_KEY_OVERHEAD;

    // The event is gone, the key is not: the topic stays, and a retry is still recognised.
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(backend.history_bytes(), key_cost);
    assert_eq!(backend.topic_count(), 1);
    let again = backend.publish(TOPIC, keyed("x", "k")).await.unwrap();
    assert_eq!((again.id(), again.is_duplicate()), (first.id(), true));

    // Once the key expires, the reaper drops the topic: nothing is left.
    tokio::time::sleep(window).await;
    settle().await;
    assert_eq!(backend.topic_count(), 0);
    assert_eq!(backend.history_bytes(), 0);
}

#[tokio::test]
async fn at_the_byte_bound_a_topic_drops_its_oldest_events_then_keys_to_take_a_new_event() {
    // Keys that cost more than their events, so that dropping events is not enough.
    let key = |n: usize| format!("{n}{}", "k".repeat(100));
    let probe = with_keys(Duration::from_secs(300), 100, usize::MAX);
    probe.publish(TOPIC, keyed("x", &key(1))).await.unwrap();
    let one = probe.history_bytes();
    // Room for two keyed events; nothing idle to evict but the topic's own.
    let backend = with_keys(Duration::from_secs(300), 100, 2 * one);
    let mut ids = Vec::new();
    for n in 1..=3 {
        let published = backend.publish(TOPIC, keyed("x", &key(n))).await.unwrap();
        ids.push(published.id().to_owned());
        assert!(backend.history_bytes() <= 2 * one);
    }
    // Both older events went, and the oldest key: the two newest keys are remembered.
    let opened = open(&backend, TOPIC, Start::Oldest, &capped(100)).await;
    assert_eq!(seqs(&backend, &opened.replay), [3]);
    for n in [3, 2] {
        let again = backend.publish(TOPIC, keyed("x", &key(n))).await.unwrap();
        assert_eq!(
            (again.id(), again.is_duplicate()),
            (ids[n - 1].as_str(), true)
        );
    }
    let forgotten = backend.publish(TOPIC, keyed("x", &key(1))).await.unwrap();
    assert!(!forgotten.is_duplicate());
}

#[tokio::test]
async fn a_retry_of_a_publish_stored_before_the_close_gets_its_id_after_it() {
    let backend = MemoryBackend::default();
    let first = backend.publish(TOPIC, keyed("x", "k")).await.unwrap();
    backend.close(TOPIC, end_event()).await.unwrap();
    let again = backend.publish(TOPIC, keyed("x", "k")).await.unwrap();
    assert_eq!((again.id(), again.is_duplicate()), (first.id(), true));
    let err = backend.publish(TOPIC, keyed("y", "new")).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
}

/// How many events `TOPIC` holds now.
async fn retained_events(backend: &MemoryBackend) -> usize {
    backend
        .topic_info(TOPIC)
        .await
        .unwrap()
        .expect("the topic exists")
        .retained_events
}
