//! Churn (`churn`): streams that connect, get their first event and close, as fast as 20 client
//! loops go.

use std::process::Stdio;
use std::time::Duration;

use crate::clients::{publish_args, source_ips, strings};
use crate::ctx::{Ctx, stop};
use crate::plan::Plan;
use crate::report::markdown::{Table, heading, paragraph};
use crate::servers::Server;

use super::Results;

/// One server's churn.
pub(crate) struct ChurnRow {
    pub(crate) server: String,
    /// Cycles per second.
    pub(crate) per_s: f64,
    pub(crate) errors: u64,
    pub(crate) p50_ms: f64,
}

/// Client loops that connect, wait for the first event of a busy topic and close: cycles per
/// second.
pub(crate) fn churn(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    res: &mut Results,
) -> Result<(), String> {
    let running = ctx.start(server, &[])?;
    let base = format!("http://{}", running.addr);
    let mut args = publish_args(&running.addr, "churn", 1000.0, 64);
    args.extend(strings(&[
        "--duration",
        &(plan.churn_secs + 3.0).to_string(),
    ]));
    let mut publisher = ctx
        .loadgen(&args)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    let args = strings(&[
        "churn",
        "--url",
        &format!("{base}/events/churn"),
        "--concurrency",
        "20",
        "--duration",
        &plan.churn_secs.to_string(),
        "--source-ips",
        &source_ips(0, 9, 16),
    ]);
    let v = ctx.loadgen_json(&args);
    let _ = publisher.kill();
    let _ = publisher.wait();
    stop(running);
    let per_s = v["per_s"].as_f64().unwrap_or(0.0);
    println!("  churn: {per_s:.0}/s");
    if per_s == 0.0 {
        ctx.failures
            .push(format!("{}: churn: no cycle completed", server.name));
    }
    res.churn.push(ChurnRow {
        server: server.name.into(),
        per_s,
        errors: v["errors"].as_u64().unwrap_or(0),
        p50_ms: v["p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
    });
    Ok(())
}

/// The scenario's section.
pub(crate) fn report(md: &mut String, plan: &Plan, res: &Results) {
    heading(md, "Churn");
    paragraph(
        md,
        &format!(
            "20 client loops for {} s: connect, `GET /events/churn`, wait for the first event (a publisher sends 1000 ev/s), close.",
            plan.churn_secs
        ),
    );
    let mut t = Table::new(md, &["server", "cycles/s", "failed cycles", "p50 cycle ms"]);
    for r in &res.churn {
        t.row(&[
            &r.server,
            &format!("{:.0}", r.per_s),
            &r.errors,
            &format!("{:.2}", r.p50_ms),
        ]);
    }
    t.end();
}
