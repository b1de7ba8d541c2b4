//! Ordinary requests (`plain`): `GET /plain` per second on each server, and the layer's overhead
//! on them (`overhead`): the tower-sse server with and without `SseLayer`, paired.

use crate::clients::plain_args;
use crate::ctx::{Ctx, stop};
use crate::plan::Plan;
use crate::report::markdown::{Table, heading, paragraph};
use crate::servers::Server;

use super::Results;

/// The rows of the overhead scenario: the tower-sse server with `SseLayer` on the router's
/// routes, with a layer that does nothing there, with `SseLayer` around the whole router, and
/// with none.
pub(crate) const WITH_LAYER: &str = "tower-sse with SseLayer (paired)";
pub(crate) const NOOP_LAYER: &str = "tower-sse with a no-op layer (paired)";
pub(crate) const OUTER_LAYER: &str = "tower-sse with SseLayer around the router (paired)";
pub(crate) const WITHOUT_LAYER: &str = "tower-sse without SseLayer (paired)";

/// One server's (or overhead variant's) rate.
pub(crate) struct PlainRow {
    pub(crate) server: String,
    /// Requests per second, the best run.
    pub(crate) rps: f64,
}

/// `GET /plain` on `server` from 50 keep-alive connections, best of three runs.
pub(crate) fn plain(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    res: &mut Results,
) -> Result<(), String> {
    let running = ctx.start(server, &[])?;
    // Best of three runs: other load on the machine only ever lowers a run's rate.
    let rps = (0..3)
        .map(|_| run(ctx, &running.addr, plan))
        .fold(0.0, f64::max);
    stop(running);
    record_plain(ctx, res, server.name, rps);
    Ok(())
}

/// One run of `loadgen plain` against `addr`: requests per second.
fn run(ctx: &mut Ctx, addr: &str, plan: &Plan) -> f64 {
    let args = plain_args(addr, 50, plan.plain_secs);
    ctx.loadgen_json(&args)["rps"].as_f64().unwrap_or(0.0)
}

/// Adds the row `label` with `rps` (a failure if none).
fn record_plain(ctx: &mut Ctx, res: &mut Results, label: &str, rps: f64) {
    println!("  /plain {label}: {rps:.0} req/s");
    if rps == 0.0 {
        ctx.failures
            .push(format!("{label}: /plain answered nothing"));
    }
    res.plain.push(PlainRow {
        server: label.into(),
        rps,
    });
}

/// The layer's overhead on `/plain`: the same server four times, all up at once, measured in
/// alternation (three rounds, best of each) so that other load on the machine falls on all
/// alike: with `SseLayer` on the router's routes, with a layer that does nothing there (what
/// axum's routing charges for any layer), with `SseLayer` around the whole router (which skips
/// that charge), and with none.
pub(crate) fn overhead(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    res: &mut Results,
) -> Result<(), String> {
    let variants: [(&str, &[(&str, &str)]); 4] = [
        (WITH_LAYER, &[]),
        (NOOP_LAYER, &[("NOOP_LAYER", "1")]),
        (OUTER_LAYER, &[("OUTER_LAYER", "1")]),
        (WITHOUT_LAYER, &[("NO_LAYER", "1")]),
    ];
    let mut running = Vec::new();
    for (name, env) in variants {
        match ctx.start(server, env) {
            Ok(r) => running.push((name, r)),
            Err(e) => {
                running.into_iter().for_each(|(_, r)| stop(r));
                return Err(e);
            }
        }
    }
    let mut best = vec![0.0f64; running.len()];
    for _ in 0..3 {
        for (i, (_, r)) in running.iter().enumerate() {
            best[i] = best[i].max(run(ctx, &r.addr, plan));
        }
    }
    for ((name, r), rps) in running.into_iter().zip(best) {
        stop(r);
        record_plain(ctx, res, name, rps);
    }
    Ok(())
}

/// The section of both scenarios.
pub(crate) fn report(md: &mut String, plan: &Plan, res: &Results) {
    heading(md, "Ordinary requests: `GET /plain`");
    paragraph(
        md,
        &format!(
            "50 keep-alive connections from `loadgen plain` (wrk is not used), best of three runs of {} s; the client (one thread) may bound the rate as much as the server does. The four paired rows are the layer-overhead measurement, all up at once, runs alternated: the same server with `SseLayer` added by `Router::layer`, with a layer that does nothing added the same way (`tower_layer::layer_fn(|route| route)`: what axum's routing charges for any layer), with `SseLayer` wrapped around the whole router (`SseLayer::layer(router)`, served with `into_make_service`: no per-route charge) and with no layer.",
            plan.plain_secs
        ),
    );
    let mut t = Table::new(md, &["server", "requests/s"]);
    for r in &res.plain {
        t.row(&[&r.server, &format!("{:.0}", r.rps)]);
    }
    t.end();
}
