//! The hub server's `GET /metrics`: what `tower_sse::metrics` records (connections,
//! disconnects by reason, events published and sent, replays and gaps, topics, backend errors
//! and lag), in Prometheus's text format, through `metrics-exporter-prometheus`.
//!
//! The recorder is the process's global one, installed the first time an app is built,
//! without the exporter's own HTTP listener: this route renders it.
//!
//! Who may read it: the bearer `METRICS_TOKEN` when set (in the `Authorization: Bearer` header
//! only), or a token with `"admin": true`, as for `/connections` and the admin page. The
//! figures name no topic, peer or id, but they tell how busy the hub is and how it fails.
//! Prometheus sends the credential with `authorization: { credentials_file: … }` in its scrape
//! config: prefer `METRICS_TOKEN` (a random secret of 32 characters or more, e.g. `openssl rand
//! -hex 32`), which opens `/metrics` and nothing else, to a long-lived admin token, which would
//! also read `/connections` (every client's address) and close topics. `METRICS_PUBLIC=1` opens
//! the route to anyone, for a hub whose address only the scraper can reach.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_sse::Hub;
use tower_sse::auth::{Action, Denied, Identity};

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

/// Who may read `/metrics` besides admin tokens.
#[derive(Clone, Debug, Default)]
pub enum Readers {
    /// Admin tokens only.
    #[default]
    Admins,
    /// Admin tokens, and this bearer secret (`METRICS_TOKEN`).
    Token(String),
    /// Anyone (`METRICS_PUBLIC=1`).
    Anyone,
}

impl Readers {
    /// Whether `headers` carry `Authorization: Bearer <token>` with this `METRICS_TOKEN`.
    fn admits_bearer(&self, headers: &HeaderMap) -> bool {
        let Readers::Token(token) = self else {
            return false;
        };
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|value| value.as_bytes().strip_prefix(b"Bearer "))
            .any(|given| same_secret(given, token.as_bytes()))
    }
}

/// `a == b`, in a time that depends on their lengths only, not on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[derive(Clone)]
struct MetricsState {
    hub: Hub,
    handle: PrometheusHandle,
    readers: Readers,
}

/// The `Identity` extractor authenticates with the hub's policy.
impl FromRef<MetricsState> for Hub {
    fn from_ref(state: &MetricsState) -> Hub {
        state.hub.clone()
    }
}

/// `GET /metrics`, for admin tokens and whom `readers` names.
pub fn router<S>(hub: Hub, handle: PrometheusHandle, readers: Readers) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(MetricsState {
            hub,
            handle,
            readers,
        })
}

/// What the recorder holds now, in Prometheus's text format.
async fn metrics(
    State(state): State<MetricsState>,
    headers: HeaderMap,
    who: Result<Identity, Denied>,
) -> Result<Response, Response> {
    let admitted =
        matches!(state.readers, Readers::Anyone) || state.readers.admits_bearer(&headers);
    if !admitted {
        let who = who.map_err(IntoResponse::into_response)?;
        state
            .hub
            .authorize(&who, Action::Admin, "*")
            .map_err(IntoResponse::into_response)?;
    }
    state.handle.run_upkeep();
    Ok((
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.handle.render(),
    )
        .into_response())
}
