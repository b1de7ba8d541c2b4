use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;

use super::*;

const TOPIC: &str = "news";

fn limits(max_events: usize, max_bytes: usize, max_age: Duration) -> HistoryLimits {
    HistoryLimits {
        max_events,
        max_bytes,
        max_age,
    }
}

fn events(max_events: usize) -> HistoryLimits {
    HistoryLimits {
        max_events,
        ..HistoryLimits::default()
    }
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

/// Publishes `n` events whose data is their sequence number (the topic must be new, or the
/// data is off by what it already held).
async fn publish_n(backend: &MemoryBackend, topic: &str, n: u64) -> Vec<Event> {
    let mut published = Vec::new();
    for i in 1..=n {
        let event = backend
            .publish(topic, Event::data(i.to_string()))
            .await
            .expect("publish");
        published.push(event);
    }
    published
}

async fn open(
    backend: &MemoryBackend,
    topic: &str,
    after: Option<&LastEventId>,
    options: &ReplayOptions,
) -> Opened {
    backend
        .open(topic, after, options)
        .await
        .expect("the memory backend always opens")
}

fn last(id: &str) -> LastEventId {
    LastEventId::new(id).expect("a usable id")
}

fn id_of(backend: &MemoryBackend, seq: u64) -> String {
    format!("{}-{seq}", backend.epoch())
}

fn last_at(backend: &MemoryBackend, seq: u64) -> LastEventId {
    last(&id_of(backend, seq))
}

/// The SEQ part of each event's id, checking the EPOCH part is `backend`'s.
fn seqs(backend: &MemoryBackend, events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|event| {
            let id = event.id().expect("a stored event has an id");
            let (epoch, seq) = id.rsplit_once('-').expect("EPOCH-SEQ");
            assert_eq!(epoch, backend.epoch(), "id {id}");
            seq.parse().expect("SEQ is a number")
        })
        .collect()
}

fn live_part(opened: Opened) -> Live {
    opened.live.expect("the subscription has a live part")
}

#[tokio::test]
async fn ids_are_epoch_dash_seq_counting_from_1_per_topic() {
    let backend = MemoryBackend::default();
    let epoch = backend.epoch().to_owned();
    assert_eq!(epoch.len(), 12);
    assert!(
        epoch
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{epoch}"
    );

    let a = publish_n(&backend, "a", 3).await;
    let b = publish_n(&backend, "b", 2).await;
    let a4 = backend.publish("a", Event::data("4")).await.unwrap();

    let ids = |events: &[Event]| -> Vec<String> {
        events.iter().map(|e| e.id().unwrap().to_owned()).collect()
    };
    assert_eq!(
        ids(&a),
        [
            format!("{epoch}-1"),
            format!("{epoch}-2"),
            format!("{epoch}-3")
        ]
    );
    assert_eq!(ids(&b), [format!("{epoch}-1"), format!("{epoch}-2")]);
    assert_eq!(a4.id(), Some(format!("{epoch}-4").as_str()));
    assert_eq!(
        a[0].as_bytes(),
        format!("id: {epoch}-1\ndata: 1\n\n").as_bytes()
    );

    // Another instance (a restarted server) has its own epoch.
    assert_ne!(MemoryBackend::default().epoch(), epoch);
}

#[tokio::test]
async fn history_is_bounded_by_count() {
    let backend = MemoryBackend::new(events(3));
    publish_n(&backend, TOPIC, 5).await;

    // 3, 4 and 5 are retained: resuming after 2 is exact.
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 2)), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), [3, 4, 5]);

    // 2 is gone: resuming after 1 is not.
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 1)), &capped(100)).await;
    assert_eq!(opened.gap.map(|gap| gap.reason), Some(GapReason::Evicted));
    assert_eq!(seqs(&backend, &opened.replay), [3, 4, 5]);
}

#[tokio::test]
async fn history_is_bounded_by_bytes() {
    // Ids 1..=9 have the same length, so every event here has the same encoded size.
    let size = MemoryBackend::default()
        .publish(TOPIC, Event::data("x"))
        .await
        .unwrap()
        .len();
    let backend = MemoryBackend::new(limits(1000, 3 * size, Duration::from_secs(3600)));
    for _ in 0..5 {
        let event = backend.publish(TOPIC, Event::data("x")).await.unwrap();
        assert_eq!(event.len(), size);
    }

    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 2)), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), [3, 4, 5]);
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 1)), &capped(100)).await;
    assert_eq!(opened.gap.map(|gap| gap.reason), Some(GapReason::Evicted));

    // One byte less and only two fit.
    let backend = MemoryBackend::new(limits(1000, 3 * size - 1, Duration::from_secs(3600)));
    publish_n(&backend, TOPIC, 5).await;
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 3)), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), [4, 5]);
}

#[tokio::test]
async fn an_event_larger_than_the_byte_bound_is_not_retained_but_keeps_its_id() {
    let backend = MemoryBackend::new(limits(1000, 64, Duration::from_secs(3600)));
    publish_n(&backend, TOPIC, 2).await;
    let big = backend
        .publish(TOPIC, Event::data("x".repeat(100)))
        .await
        .unwrap();
    assert_eq!(big.id(), Some(id_of(&backend, 3).as_str()));

    // Resuming after the big one is exact (nothing was missed)...
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 3)), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert!(opened.replay.is_empty());
    // ...resuming before it is not.
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 2)), &capped(100)).await;
    let gap = opened.gap.expect("a gap");
    assert_eq!(gap.reason, GapReason::Evicted);
    assert_eq!(gap.resume_after, Some(id_of(&backend, 3)));
    assert!(opened.replay.is_empty());

    let next = backend.publish(TOPIC, Event::data("y")).await.unwrap();
    assert_eq!(next.id(), Some(id_of(&backend, 4).as_str()));
}

#[tokio::test(start_paused = true)]
async fn history_is_bounded_by_age() {
    let backend = MemoryBackend::new(limits(1000, usize::MAX, Duration::from_secs(10)));
    publish_n(&backend, TOPIC, 1).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    backend.publish(TOPIC, Event::data("2")).await.unwrap();

    // Exactly max_age old: still retained.
    tokio::time::advance(Duration::from_secs(5)).await;
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 0)), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), [1, 2]);

    // Older: evicted, even without a publish to trigger it.
    tokio::time::advance(Duration::from_millis(1)).await;
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 0)), &capped(100)).await;
    let gap = opened.gap.expect("a gap");
    assert_eq!(gap.reason, GapReason::Evicted);
    assert_eq!(gap.resume_after, Some(id_of(&backend, 1)));
    assert_eq!(seqs(&backend, &opened.replay), [2]);

    tokio::time::advance(Duration::from_secs(5)).await;
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 1)), &capped(100)).await;
    assert_eq!(opened.gap.map(|gap| gap.reason), Some(GapReason::Evicted));
    assert!(opened.replay.is_empty());
    // The newest id still resumes exactly: nothing after it was missed.
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 2)), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert!(opened.replay.is_empty());
    assert_eq!(live_part(opened).after, 2);
}

#[tokio::test]
async fn open_without_an_id_is_live_only() {
    let backend = MemoryBackend::default();
    publish_n(&backend, TOPIC, 3).await;

    let opened = open(&backend, TOPIC, None, &ReplayOptions::default()).await;
    assert_eq!(opened.gap, None);
    assert!(opened.replay.is_empty());
    let mut live = live_part(opened);
    assert_eq!(live.after, 3);
    assert!(matches!(live.receiver.try_recv(), Err(TryRecvError::Empty)));

    let published = backend.publish(TOPIC, Event::data("4")).await.unwrap();
    let received = live.receiver.try_recv().expect("the live event");
    assert_eq!(received.position, 4);
    assert_eq!(received.event, published);
    assert!(matches!(live.receiver.try_recv(), Err(TryRecvError::Empty)));
}

#[tokio::test]
async fn open_after_an_id_replays_exactly_what_follows_then_live() {
    let backend = MemoryBackend::default();
    let published = publish_n(&backend, TOPIC, 10).await;

    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 7)), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(opened.replay, published[7..]);
    let mut live = live_part(opened);
    assert_eq!(live.after, 10);

    backend.publish(TOPIC, Event::data("11")).await.unwrap();
    assert_eq!(live.receiver.try_recv().expect("live").position, 11);
    assert!(matches!(live.receiver.try_recv(), Err(TryRecvError::Empty)));

    // The newest id: nothing to replay, live after it.
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 11)), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert!(opened.replay.is_empty());
    assert_eq!(live_part(opened).after, 11);
}

#[tokio::test]
async fn epoch_zero_replays_everything_retained() {
    let backend = MemoryBackend::default();
    let epoch_zero = last_at(&backend, 0);

    // On a topic that has nothing yet: nothing, and no gap.
    let opened = open(&backend, TOPIC, Some(&epoch_zero), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert!(opened.replay.is_empty());
    assert_eq!(live_part(opened).after, 0);

    let published = publish_n(&backend, TOPIC, 5).await;
    let opened = open(&backend, TOPIC, Some(&epoch_zero), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(opened.replay, published);
    assert_eq!(live_part(opened).after, 5);
}

#[tokio::test]
async fn an_evicted_id_is_a_gap_that_resumes_from_the_oldest_retained() {
    let backend = MemoryBackend::new(events(5));
    publish_n(&backend, TOPIC, 10).await;

    let opened = open(
        &backend,
        TOPIC,
        Some(&last_at(&backend, 3)),
        &ReplayOptions::default(),
    )
    .await;
    assert_eq!(
        opened.gap,
        Some(Gap {
            reason: GapReason::Evicted,
            resume: GapResume::Oldest,
            resume_after: Some(id_of(&backend, 5)),
            last_id: Some(id_of(&backend, 10)),
        })
    );
    assert_eq!(seqs(&backend, &opened.replay), [6, 7, 8, 9, 10]);
    assert_eq!(live_part(opened).after, 10);
}

#[tokio::test]
async fn an_evicted_id_with_gap_resume_live_replays_nothing() {
    let backend = MemoryBackend::new(events(5));
    publish_n(&backend, TOPIC, 10).await;

    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 3)), &live_on_gap()).await;
    assert_eq!(
        opened.gap,
        Some(Gap {
            reason: GapReason::Evicted,
            resume: GapResume::Live,
            resume_after: Some(id_of(&backend, 10)),
            last_id: Some(id_of(&backend, 10)),
        })
    );
    assert!(opened.replay.is_empty());
    let mut live = live_part(opened);
    assert_eq!(live.after, 10);
    backend.publish(TOPIC, Event::data("11")).await.unwrap();
    assert_eq!(live.receiver.try_recv().expect("live").position, 11);
}

#[tokio::test]
async fn presenting_resume_after_later_resumes_exactly() {
    // A foreign id, so that the events published in between evict nothing.
    let foreign = last_at(&MemoryBackend::default(), 3);
    for options in [ReplayOptions::default(), live_on_gap()] {
        let backend = MemoryBackend::default();
        publish_n(&backend, TOPIC, 10).await;
        let opened = open(&backend, TOPIC, Some(&foreign), &options).await;
        let resume_after = opened
            .gap
            .and_then(|gap| gap.resume_after)
            .expect("resume_after");
        let continued = seqs(&backend, &opened.replay);

        backend.publish(TOPIC, Event::data("11")).await.unwrap();
        let opened = open(&backend, TOPIC, Some(&last(&resume_after)), &options).await;
        assert_eq!(opened.gap, None, "{options:?}");
        let mut expected = continued;
        expected.push(11);
        assert_eq!(seqs(&backend, &opened.replay), expected, "{options:?}");
    }
}

#[tokio::test]
async fn an_id_from_another_instance_is_foreign() {
    let backend = MemoryBackend::default();
    let other = MemoryBackend::default();
    publish_n(&backend, TOPIC, 3).await;
    publish_n(&other, TOPIC, 3).await;

    for seq in [0, 2, 3, 4] {
        let opened = open(
            &backend,
            TOPIC,
            Some(&last_at(&other, seq)),
            &ReplayOptions::default(),
        )
        .await;
        assert_eq!(
            opened.gap,
            Some(Gap {
                reason: GapReason::Foreign,
                resume: GapResume::Oldest,
                resume_after: Some(id_of(&backend, 0)),
                last_id: Some(id_of(&backend, 3)),
            }),
            "{}",
            id_of(&other, seq)
        );
        assert_eq!(seqs(&backend, &opened.replay), [1, 2, 3]);
    }
}

#[tokio::test]
async fn a_seq_beyond_the_last_is_unknown() {
    let backend = MemoryBackend::default();
    publish_n(&backend, TOPIC, 3).await;

    let opened = open(
        &backend,
        TOPIC,
        Some(&last_at(&backend, 4)),
        &ReplayOptions::default(),
    )
    .await;
    assert_eq!(
        opened.gap,
        Some(Gap {
            reason: GapReason::Unknown,
            resume: GapResume::Oldest,
            resume_after: Some(id_of(&backend, 0)),
            last_id: Some(id_of(&backend, 3)),
        })
    );
    assert_eq!(seqs(&backend, &opened.replay), [1, 2, 3]);

    // A topic that never published has no last id.
    let opened = open(
        &backend,
        "empty",
        Some(&last_at(&backend, 1)),
        &ReplayOptions::default(),
    )
    .await;
    assert_eq!(
        opened.gap,
        Some(Gap {
            reason: GapReason::Unknown,
            resume: GapResume::Oldest,
            resume_after: Some(id_of(&backend, 0)),
            last_id: None,
        })
    );
    assert!(opened.replay.is_empty());
    assert_eq!(live_part(opened).after, 0);
}

#[tokio::test]
async fn garbage_and_unusable_ids_are_malformed() {
    let backend = MemoryBackend::default();
    publish_n(&backend, TOPIC, 2).await;
    let epoch = backend.epoch().to_owned();

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

    for id in &ids {
        let opened = open(&backend, TOPIC, Some(id), &ReplayOptions::default()).await;
        assert_eq!(
            opened.gap,
            Some(Gap {
                reason: GapReason::Malformed,
                resume: GapResume::Oldest,
                resume_after: Some(id_of(&backend, 0)),
                last_id: Some(id_of(&backend, 2)),
            }),
            "{id}"
        );
        assert_eq!(seqs(&backend, &opened.replay), [1, 2], "{id}");
        assert_eq!(live_part(opened).after, 2, "{id}");
    }
}

#[tokio::test]
async fn max_replay_cuts_the_replay_and_leaves_out_the_live_part() {
    let backend = MemoryBackend::default();
    publish_n(&backend, TOPIC, 25).await;
    let options = capped(10);

    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 0)), &options).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), (1..=10).collect::<Vec<_>>());
    assert!(opened.live.is_none());

    // Reconnecting with the last replayed id gets the next batch.
    let last_replayed = opened.replay.last().unwrap().id().unwrap().to_owned();
    let opened = open(&backend, TOPIC, Some(&last(&last_replayed)), &options).await;
    assert_eq!(opened.gap, None);
    assert_eq!(
        seqs(&backend, &opened.replay),
        (11..=20).collect::<Vec<_>>()
    );
    assert!(opened.live.is_none());

    let last_replayed = opened.replay.last().unwrap().id().unwrap().to_owned();
    let opened = open(&backend, TOPIC, Some(&last(&last_replayed)), &options).await;
    assert_eq!(opened.gap, None);
    assert_eq!(seqs(&backend, &opened.replay), [21, 22, 23, 24, 25]);
    assert_eq!(live_part(opened).after, 25);

    // Exactly the cap behind: all of it, and live.
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 15)), &options).await;
    assert_eq!(
        seqs(&backend, &opened.replay),
        (16..=25).collect::<Vec<_>>()
    );
    assert_eq!(live_part(opened).after, 25);
}

#[tokio::test]
async fn max_replay_caps_the_replay_after_a_gap_too() {
    let backend = MemoryBackend::new(events(20));
    publish_n(&backend, TOPIC, 30).await;

    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 1)), &capped(10)).await;
    assert_eq!(opened.gap.map(|gap| gap.reason), Some(GapReason::Evicted));
    assert_eq!(
        seqs(&backend, &opened.replay),
        (11..=20).collect::<Vec<_>>()
    );
    assert!(opened.live.is_none());
}

#[tokio::test]
async fn live_after_is_the_position_of_the_last_replayed_event() {
    let backend = MemoryBackend::default();
    let opened = open(&backend, TOPIC, None, &ReplayOptions::default()).await;
    assert_eq!(live_part(opened).after, 0);

    publish_n(&backend, TOPIC, 4).await;
    for seq in 0..=4 {
        let opened = open(&backend, TOPIC, Some(&last_at(&backend, seq)), &capped(100)).await;
        let replayed = seqs(&backend, &opened.replay);
        assert_eq!(replayed.last().copied().unwrap_or(seq), 4);
        assert_eq!(live_part(opened).after, 4);
    }
}

#[tokio::test]
async fn a_subscriber_more_than_its_queue_behind_is_lagged() {
    let backend = MemoryBackend::with_queue(HistoryLimits::default(), 4);
    let mut slow = live_part(open(&backend, TOPIC, None, &ReplayOptions::default()).await);
    let mut fast = live_part(open(&backend, TOPIC, None, &ReplayOptions::default()).await);

    for i in 1..=10 {
        backend.publish(TOPIC, Event::data("x")).await.unwrap();
        assert_eq!(fast.receiver.try_recv().expect("live").position, i);
    }
    assert!(matches!(
        slow.receiver.try_recv(),
        Err(TryRecvError::Lagged(_))
    ));
}

/// Opens (and drops) subscriptions to enough new, empty topics to make the map sweep.
async fn force_sweep(backend: &MemoryBackend) {
    for i in 0..=FIRST_SWEEP {
        let opened = open(
            backend,
            &format!("empty-{i}"),
            None,
            &ReplayOptions::default(),
        )
        .await;
        drop(opened);
    }
}

#[tokio::test]
async fn the_sweep_drops_topics_that_hold_nothing() {
    let backend = MemoryBackend::default();
    publish_n(&backend, TOPIC, 1).await;
    force_sweep(&backend).await;

    let topics = lock(&backend.topics);
    assert!(topics.map.len() < FIRST_SWEEP, "{}", topics.map.len());
    assert!(topics.map.contains_key(TOPIC));
}

#[tokio::test(start_paused = true)]
async fn the_sweep_keeps_the_sequence_of_a_topic_that_has_published() {
    let backend = MemoryBackend::new(limits(1000, usize::MAX, Duration::from_secs(1)));
    publish_n(&backend, TOPIC, 3).await;
    // Its history expires: the topic holds no event and has no subscriber.
    tokio::time::advance(Duration::from_secs(2)).await;
    force_sweep(&backend).await;
    assert!(lock(&backend.topics).map.len() < FIRST_SWEEP);

    let next = backend.publish(TOPIC, Event::data("4")).await.unwrap();
    assert_eq!(next.id(), Some(id_of(&backend, 4).as_str()));
    // An id issued before the sweep still means the same event.
    let opened = open(&backend, TOPIC, Some(&last_at(&backend, 3)), &capped(100)).await;
    assert_eq!(opened.gap, None);
    assert_eq!(opened.replay, [next]);
}
