//! Metrics (feature `metrics`): what operators read first, how many are connected and whether
//! events are getting through, recorded through the [`metrics`](https://docs.rs/metrics)
//! facade.
//!
//! The crate records; the application picks the exporter and installs it, as with
//! axum-prometheus, so the figures land on the same `/metrics` as everything else the
//! application measures. Without an installed recorder, recording costs next to nothing; without
//! the feature, nothing is recorded and nothing is compiled in.
//!
//! Every name starts with `sse_`. Labels are few and bounded: never a topic, a peer address or
//! an id. The Mercure and Centrifugo columns name what their operators read for the same fact
//! (Centrifugo's names with its default namespace, `centrifugo_`).
//!
//! | name | type | labels | what it counts | Mercure | Centrifugo |
//! |------|------|--------|----------------|---------|------------|
//! | `sse_connections_active` | gauge | | event streams open now, in every [`SseLayer`](crate::SseLayer) of the process | `mercure_subscribers_connected` (older versions: `mercure_subscribers`) | `centrifugo_node_num_clients`, `centrifugo_client_connections_inflight` |
//! | `sse_connections_total` | counter | `outcome` | requests for an event stream, by what became of them: `accepted` (registered), `refused_limit` (`max_connections`), `refused_peer_limit` (`max_connections_per_peer`), `refused_shutdown`, `refused_origin` (CORS: an origin not allowed) and `denied` (the hub's [policy](crate::auth) refused the subscription, `401`/`403`) | `mercure_subscribers_total` (accepted only) | `centrifugo_transport_connect_count` |
//! | `sse_disconnects_total` | counter | `reason` | streams that ended, by why (below) | | `centrifugo_client_num_server_disconnects` (by code) |
//! | `sse_stream_duration_seconds` | histogram | | how long each stream lasted, recorded when it ends | | |
//! | `sse_events_published_total` | counter | | events stored by [`Hub::publish`](crate::Hub::publish) (a duplicate of an idempotency key is not) | `mercure_updates_total` | `centrifugo_node_messages_sent_count` (`type="publication"`) |
//! | `sse_events_sent_total` | counter | | events written to clients, replayed ones included | | `centrifugo_transport_messages_sent` |
//! | `sse_bytes_sent_total` | counter | | bytes written to event streams (before any compression), comments and keep-alives included | | `centrifugo_transport_messages_sent_size` |
//! | `sse_replays_total` | counter | `outcome` | subscriptions that resumed after a `Last-Event-ID`: `exact`, or a `gap` event by its reason, `gap_evicted`, `gap_foreign`, `gap_unknown`, `gap_malformed` | | `centrifugo_client_recover` (`recovered="yes"`/`"no"`) |
//! | `sse_replayed_events_total` | counter | | events read from history for a subscription (a resume, or a first connection from [`Start::Oldest`](crate::backend::Start::Oldest)) | | |
//! | `sse_topics_active` | gauge | | topics held in this process (Redis: the topics this server reads for its subscribers) | | `centrifugo_node_num_channels` |
//! | `sse_retained_events` | gauge | | events held in those topics (in memory: the history; Redis: what this server holds until its subscribers have read it) | | |
//! | `sse_retained_bytes` | gauge | | their encoded bytes | | |
//! | `sse_backend_errors_total` | counter | `operation`, `kind` | backend calls that failed: `operation` is `publish`, `subscribe`, `close`, `topic_info`, `wait_idle` or `read` (Redis: the reader that fans events out); `kind` is `unavailable`, `outcome_unknown`, `full`, `closed`, `key_reused`, `config` or `internal` | | `centrifugo_broker_redis_pub_sub_errors` |
//! | `sse_backend_lag_seconds` | histogram | | Redis: from `XADD` (on the Redis server's clock) to this server reading the event for its subscribers | | `centrifugo_node_pub_sub_lag_seconds` |
//!
//! The `reason` of `sse_disconnects_total`:
//!
//! | reason | the stream ended because |
//! |--------|--------------------------|
//! | `client_closed` | the client went away (or the server dropped the connection) |
//! | `ended` | the handler's stream ended by itself: a closed topic, a finished response stream, an error |
//! | `slow` | the subscriber fell more than its queue behind ([`HubBuilder::subscriber_queue`](crate::HubBuilder::subscriber_queue)) |
//! | `stalled` | the client accepted no bytes for the [`write_timeout`](crate::SseLayer::write_timeout) |
//! | `lifetime` | it reached the layer's [`max_lifetime`](crate::SseLayer::max_lifetime) |
//! | `auth` | the authorization it was opened with expired ([`Subscription::expire_at`](crate::Subscription::expire_at)) |
//! | `replay_limit` | its replay was cut at [`max_replay`](crate::HubBuilder::max_replay): the client comes back for the rest |
//! | `backend` | the backend lost the topic's live feed (the client resumes by replay) |
//! | `unavailable` | the backend could not open it (unreachable, or the hub at its bounds): a `retry:` hint |
//! | `closed` | [`Registry::close`](crate::Registry::close) or [`Connection::close`](crate::Connection::close) |
//! | `shutdown` | the server shut down ([`SseLayer::shutdown`](crate::SseLayer::shutdown)) |
//!
//! A stream over a connection limit never opens: it is counted in `sse_connections_total`
//! (`refused_limit`, `refused_peer_limit`), not as a disconnect. The hub's reasons (`slow`,
//! `auth`, `replay_limit`, `backend`, `unavailable`) reach the layer through the response of a
//! [`Subscription`](crate::Subscription); a subscription wrapped in a stream of the handler's
//! own ends as `ended`.
//!
//! Histograms are recorded as raw values; an exporter turns them into buckets or quantiles.
//! With `metrics-exporter-prometheus`, give them buckets ([`STREAM_DURATION_BUCKETS`],
//! [`LAG_BUCKETS`]), else it renders them as summaries. Call [`describe`] once the recorder is
//! installed to give every metric its help text and unit.
//!
//! Besides metrics, the crate opens [`tracing`](https://docs.rs/tracing) spans, at `debug`:
//! `publish` (`topic`, then `id`), `subscribe` (`topic`, `start`) with `replay` inside it for a
//! resume (`last_event_id`, then `outcome` and `events`), and `sse_stream` for each stream's
//! lifetime (`id`, `path`, `topic`), entered whenever its body is polled, so what the handler's
//! stream logs carries them; a `stream ended` event says why and how much it sent. They are
//! there with or without this feature.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
//! use tower_sse::{Event, Hub, SseLayer, metrics};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The application installs the exporter (here Prometheus, without its HTTP listener)...
//! let prometheus = PrometheusBuilder::new()
//!     .set_buckets_for_metric(
//!         Matcher::Full(metrics::STREAM_DURATION_SECONDS.into()),
//!         metrics::STREAM_DURATION_BUCKETS,
//!     )?
//!     .install_recorder()?;
//! metrics::describe();
//!
//! // ...and serves what it renders, next to its own routes.
//! let hub = Hub::memory();
//! let handle = prometheus.clone();
//! let app: Router = Router::new()
//!     .route("/metrics", get(move || async move { handle.render() }))
//!     .layer(SseLayer::new().registry(hub.registry()));
//! # let _ = app;
//!
//! hub.publish("news", Event::data("hello")).await?;
//! assert!(prometheus.render().contains("sse_events_published_total 1"));
//! # Ok(()) }
//! ```

mod record;
#[cfg(test)]
mod tests;

#[cfg(feature = "redis")]
pub(crate) use record::backend_lag;
pub(crate) use record::{
    End, EndCell, StreamMetrics, TopicMetrics, backend_error, denied, published, refused,
    refused_origin, replayed,
};

/// Gauge: event streams open now.
pub const CONNECTIONS_ACTIVE: &str = "sse_connections_active";
/// Counter, label `outcome`: requests for an event stream, by what became of them.
pub const CONNECTIONS_TOTAL: &str = "sse_connections_total";
/// Counter, label `reason`: streams that ended, by why.
pub const DISCONNECTS_TOTAL: &str = "sse_disconnects_total";
/// Histogram, seconds: how long each stream lasted, recorded when it ends.
pub const STREAM_DURATION_SECONDS: &str = "sse_stream_duration_seconds";
/// Counter: events stored by the hub.
pub const EVENTS_PUBLISHED_TOTAL: &str = "sse_events_published_total";
/// Counter: events written to clients.
pub const EVENTS_SENT_TOTAL: &str = "sse_events_sent_total";
/// Counter: bytes written to event streams.
pub const BYTES_SENT_TOTAL: &str = "sse_bytes_sent_total";
/// Counter, label `outcome`: subscriptions that resumed after a `Last-Event-ID`.
pub const REPLAYS_TOTAL: &str = "sse_replays_total";
/// Counter: events read from history for a subscription.
pub const REPLAYED_EVENTS_TOTAL: &str = "sse_replayed_events_total";
/// Gauge: topics held in this process.
pub const TOPICS_ACTIVE: &str = "sse_topics_active";
/// Gauge: events held in those topics.
pub const RETAINED_EVENTS: &str = "sse_retained_events";
/// Gauge: the encoded bytes of those events.
pub const RETAINED_BYTES: &str = "sse_retained_bytes";
/// Counter, labels `operation` and `kind`: backend calls that failed.
pub const BACKEND_ERRORS_TOTAL: &str = "sse_backend_errors_total";
/// Histogram, seconds: Redis, from `XADD` to this server reading the event.
pub const BACKEND_LAG_SECONDS: &str = "sse_backend_lag_seconds";

/// Buckets for [`STREAM_DURATION_SECONDS`], in seconds: streams last from a second (a refused
/// or cut one) to a day.
pub const STREAM_DURATION_BUCKETS: &[f64] = &[
    1.0,
    5.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4.0 * 3600.0,
    24.0 * 3600.0,
];

/// Buckets for [`BACKEND_LAG_SECONDS`], in seconds: from a millisecond to ten seconds.
pub const LAG_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Gives every metric of this crate its help text and unit, in the recorder installed now
/// (the global one, or the local one this runs under). Call it once, after installing the
/// exporter; without it the figures are recorded all the same, without help text.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS_ACTIVE, Unit::Count, "Event streams open now.");
    describe_counter!(
        CONNECTIONS_TOTAL,
        Unit::Count,
        "Requests for an event stream, by outcome: accepted, or why it was refused."
    );
    describe_counter!(
        DISCONNECTS_TOTAL,
        Unit::Count,
        "Event streams that ended, by reason."
    );
    describe_histogram!(
        STREAM_DURATION_SECONDS,
        Unit::Seconds,
        "How long event streams lasted, recorded when each ends."
    );
    describe_counter!(
        EVENTS_PUBLISHED_TOTAL,
        Unit::Count,
        "Events stored by the hub."
    );
    describe_counter!(
        EVENTS_SENT_TOTAL,
        Unit::Count,
        "Events written to clients, replayed ones included."
    );
    describe_counter!(
        BYTES_SENT_TOTAL,
        Unit::Bytes,
        "Bytes written to event streams, comments and keep-alives included."
    );
    describe_counter!(
        REPLAYS_TOTAL,
        Unit::Count,
        "Subscriptions that resumed after a Last-Event-ID, by outcome: exact, or gap_<reason>."
    );
    describe_counter!(
        REPLAYED_EVENTS_TOTAL,
        Unit::Count,
        "Events read from history for subscriptions."
    );
    describe_gauge!(TOPICS_ACTIVE, Unit::Count, "Topics held in this process.");
    describe_gauge!(
        RETAINED_EVENTS,
        Unit::Count,
        "Events held in this process's topics."
    );
    describe_gauge!(
        RETAINED_BYTES,
        Unit::Bytes,
        "Encoded bytes of the events held in this process's topics."
    );
    describe_counter!(
        BACKEND_ERRORS_TOTAL,
        Unit::Count,
        "Backend calls that failed, by operation and kind."
    );
    describe_histogram!(
        BACKEND_LAG_SECONDS,
        Unit::Seconds,
        "Redis: time from XADD to this server reading the event for its subscribers."
    );
}
