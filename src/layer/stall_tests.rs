//! Tests for [`SseLayer::write_timeout`]: a stream that has handed a frame over and is not
//! asked for the next one within the timeout (its client accepts no bytes) is ended, leaves
//! the registry and is counted; one that waits for its own events, or whose client reads
//! slowly, is not.
//!
//! No network (the real-socket test is `tests/stalled_reader.rs`): the test plays the server,
//! polling the body or not. Time is paused, so the timeouts are exact and cost nothing.

use std::time::Duration;

use futures_util::StreamExt as _;
use http_body::Body as _;
use http_body_util::BodyExt as _;
use tokio::time::{Instant, timeout};

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::tests::{KEEP_ALIVE, assert_quiet_for, next, open, send};
use super::{SseBody, SseLayer};
use crate::registry::{Presence, PresenceStream, Registry};

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How late the watchdog may notice a stall: a quarter of the timeout.
const LATENESS: Duration = Duration::from_millis(2500);

/// The layer of these tests on `registry`: no keep-alive, the write timeout above.
fn layer(registry: &Registry) -> SseLayer {
    SseLayer::new()
        .registry(registry.clone())
        .no_keep_alive()
        .write_timeout(WRITE_TIMEOUT)
}

/// Opens a stream through `layer` and reads its prelude: handed over, and taken.
async fn started(layer: SseLayer) -> (mpsc::Sender<Bytes>, SseBody<Body>) {
    let (tx, mut body) = open(layer).await;
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    (tx, body)
}

/// Waits for the next disconnect notice and returns how long after `since` it came; fails if
/// none comes within `within`.
async fn disconnect_after(
    presence: &mut PresenceStream,
    since: Instant,
    within: Duration,
) -> Duration {
    loop {
        let notice = timeout(within, presence.next())
            .await
            .expect("no disconnect within the bound")
            .expect("the registry is alive");
        if let Presence::Disconnected(_) = notice {
            return since.elapsed();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_not_asked_for_its_next_frame_is_ended_after_the_write_timeout() {
    let registry = Registry::new();
    let mut presence = registry.presence();
    // The prelude is handed over; the server never asks for more (its socket takes nothing).
    let (_tx, mut body) = started(layer(&registry)).await;
    let handed_over = Instant::now();
    assert!(matches!(
        presence.next().await,
        Some(Presence::Connected(_))
    ));

    let after = disconnect_after(&mut presence, handed_over, WRITE_TIMEOUT * 2).await;
    assert!(
        after >= WRITE_TIMEOUT && after <= WRITE_TIMEOUT + LATENESS,
        "ended {after:?} after the last frame"
    );
    assert_eq!(registry.len(), 0);
    let stats = registry.stats();
    assert_eq!((stats.stalled, stats.opened, stats.client_gone), (1, 1, 0));
    // Should the client read after all, it finds the stream ended with a `retry:` hint.
    let last = next(&mut body).await;
    assert!(
        last.starts_with(b"retry: ") && last.ends_with(b"\n\n"),
        "{last:?}"
    );
    assert!(body.frame().await.is_none());
    assert!(body.is_end_stream());
}

#[tokio::test(start_paused = true)]
async fn a_keep_alive_the_client_does_not_take_counts_as_something_to_send() {
    let registry = Registry::new();
    let mut presence = registry.presence();
    let keep_alive = Duration::from_secs(4);
    let (_tx, mut body) = started(layer(&registry).keep_alive(keep_alive)).await;
    // Waiting for events, the stream is not stalled however long it waits...
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    assert_eq!(registry.len(), 1);
    // ...until a keep-alive it hands over is not taken.
    let handed_over = Instant::now();
    let after = disconnect_after(&mut presence, handed_over, WRITE_TIMEOUT * 2).await;
    assert!(after >= WRITE_TIMEOUT && after <= WRITE_TIMEOUT + LATENESS);
    assert_eq!(registry.stats().stalled, 1);
}

#[tokio::test(start_paused = true)]
async fn a_stream_waiting_for_its_own_events_is_never_stalled() {
    let registry = Registry::new();
    let (tx, mut body) = started(layer(&registry)).await;
    // The server asks; the stream has nothing for an hour.
    assert_quiet_for(&mut body, Duration::from_secs(3600)).await;
    // Not polled now either, but it owes nothing: the server is waiting on it, not it on the
    // server.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(registry.len(), 1);
    send(&tx, b"data: late\n\n").await;
    assert_eq!(next(&mut body).await, &b"data: late\n\n"[..]);
    assert_eq!(registry.stats().stalled, 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_that_takes_a_frame_within_each_timeout_is_not_stalled() {
    let registry = Registry::new();
    let (tx, mut body) = started(layer(&registry)).await;
    for _ in 0..20 {
        // Always something to send, taken just within the timeout.
        send(&tx, b"data: x\n\n").await;
        tokio::time::sleep(WRITE_TIMEOUT - Duration::from_millis(100)).await;
        assert_eq!(next(&mut body).await, &b"data: x\n\n"[..]);
    }
    assert_eq!(registry.len(), 1);
    assert_eq!(registry.stats().stalled, 0);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_frees_its_slot_under_the_limits() {
    let registry = Registry::new();
    let layer = layer(&registry).max_connections(1);
    let _stalled = started(layer.clone()).await;
    // At the cap: refused, with a `retry:` hint and an immediate end.
    let (_tx2, mut refused) = open(layer.clone()).await;
    let refusal = super::tests::rest(&mut refused).await;
    assert!(
        refusal.starts_with(b": too many connections\n"),
        "{refusal:?}"
    );

    tokio::time::sleep(WRITE_TIMEOUT + LATENESS).await;
    assert_eq!(registry.len(), 0);
    let _admitted = started(layer).await;
    assert_eq!(registry.len(), 1);
    let stats = registry.stats();
    assert_eq!((stats.opened, stats.refused, stats.stalled), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn without_a_write_timeout_a_stalled_stream_stays() {
    let registry = Registry::new();
    let _body = started(layer(&registry).no_write_timeout()).await;
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert_eq!(registry.len(), 1);
    assert_eq!(registry.stats().stalled, 0);
}

#[tokio::test(start_paused = true)]
async fn the_default_write_timeout_is_30_seconds_and_zero_switches_it_off() {
    assert_eq!(super::DEFAULT_WRITE_TIMEOUT, Duration::from_secs(30));
    let registry = Registry::new();
    let mut presence = registry.presence();
    let _body = started(SseLayer::new().registry(registry.clone()).no_keep_alive()).await;
    let handed_over = Instant::now();
    let after = disconnect_after(&mut presence, handed_over, Duration::from_secs(60)).await;
    assert!(after >= Duration::from_secs(30) && after <= Duration::from_millis(37_500));

    let registry = Registry::new();
    let _body = started(layer(&registry).write_timeout(Duration::ZERO)).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(registry.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_hub_counts_stalled_readers_of_its_registry() {
    let hub = crate::Hub::memory();
    let registry = hub.registry();
    let _body = started(layer(&registry)).await;
    tokio::time::sleep(WRITE_TIMEOUT + LATENESS).await;
    assert_eq!(hub.stats().stalled_readers, 1);
    assert_eq!(registry.stats().stalled, 1);
}

#[tokio::test(start_paused = true)]
async fn why_streams_end_is_counted() {
    let registry = Registry::new();
    let layer = layer(&registry)
        .no_write_timeout()
        .max_lifetime(Duration::from_secs(60));
    // Ends by itself.
    let (tx, mut ended) = started(layer.clone()).await;
    drop(tx);
    assert!(ended.frame().await.is_none());
    // Dropped before its end: the client went away.
    drop(started(layer.clone()).await);
    // Closed by the application.
    let (_tx, mut closed) = started(layer.clone()).await;
    assert!(registry.close(registry.snapshot()[0].id()));
    assert!(closed.frame().await.is_none());
    // At its lifetime.
    let (_tx, mut old) = started(layer.clone()).await;
    while old.frame().await.is_some() {}
    // At shutdown.
    let (_tx, mut stopped) = started(layer.clone()).await;
    layer.shutdown();
    while stopped.frame().await.is_some() {}

    let stats = registry.stats();
    assert_eq!(stats.open, 0);
    assert_eq!(stats.opened, 5);
    assert_eq!(
        (
            stats.ended,
            stats.client_gone,
            stats.closed,
            stats.max_lifetime,
            stats.shutdown,
            stats.stalled
        ),
        (1, 1, 1, 1, 1, 0)
    );
}
