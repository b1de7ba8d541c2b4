//! The hub server's `GET /metrics`: what `tower_sse::metrics` records (connections,
//! disconnects by reason, events published and sent, replays and gaps, topics, backend errors
//! and lag), in Prometheus's text format, through `metrics-exporter-prometheus`.
//!
//! The recorder is the process's global one, installed the first time an app is built,
//! without the exporter's own HTTP listener: this route renders it.
//!
//! Who may read it: by default, a token with `"admin": true`, as for `/connections` and the
//! admin page (in the `Authorization: Bearer` header, the `sse_token` cookie, or the
//! `authorization` query parameter). The figures name no topic, peer or id, but they tell how
//! busy the hub is and how it fails. Prometheus sends the token with
//! `authorization: { credentials_file: … }` in its scrape config (mint a long-lived one with
//! `hub token --admin --ttl 31536000`). `METRICS_PUBLIC=1` opens the route to anyone, for a
//! hub whose address only the scraper can reach.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_sse::auth::{Action, Identity};
use tower_sse::{Hub, HubError};

/// How often histograms are folded into what `/metrics` renders, so that they hold no more
/// than this long's samples between two scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process's Prometheus recorder: installed (with the crate's help texts, and buckets for
/// its histograms) the first time it is asked for.
///
/// # Errors
///
/// Another recorder was installed first.
pub fn handle() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE.get_or_init(install).clone()
}

fn install() -> Result<PrometheusHandle, String> {
    use tower_sse::metrics::{
        BACKEND_LAG_SECONDS, LAG_BUCKETS, STREAM_DURATION_BUCKETS, STREAM_DURATION_SECONDS,
    };
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(STREAM_DURATION_SECONDS.to_owned()),
            STREAM_DURATION_BUCKETS,
        )
        .and_then(|builder| {
            builder
                .set_buckets_for_metric(Matcher::Full(BACKEND_LAG_SECONDS.to_owned()), LAG_BUCKETS)
        })
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|err| format!("cannot install the Prometheus recorder: {err}"))?;
    tower_sse::metrics::describe();
    // Without the exporter's HTTP listener, nothing else runs its upkeep.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        })
        .map_err(|err| format!("cannot start the metrics upkeep thread: {err}"))?;
    Ok(handle)
}

#[derive(Clone)]
struct MetricsState {
    hub: Hub,
    handle: PrometheusHandle,
    public: bool,
}

/// The `Identity` extractor authenticates with the hub's policy.
impl FromRef<MetricsState> for Hub {
    fn from_ref(state: &MetricsState) -> Hub {
        state.hub.clone()
    }
}

/// `GET /metrics`, for admin tokens unless `public`.
pub fn router<S>(hub: Hub, handle: PrometheusHandle, public: bool) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(MetricsState {
            hub,
            handle,
            public,
        })
}

/// What the recorder holds now, in Prometheus's text format.
async fn metrics(State(state): State<MetricsState>, who: Identity) -> Result<Response, HubError> {
    if !state.public {
        state.hub.authorize(&who, Action::Admin, "*")?;
    }
    state.handle.run_upkeep();
    Ok((
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.handle.render(),
    )
        .into_response())
}
