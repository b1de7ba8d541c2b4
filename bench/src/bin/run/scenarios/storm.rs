//! The replay storm (`storm`): many clients reconnect at once, each the same many events behind.

use std::process::Stdio;

use crate::clients::{Delivery, publish_args, source_ips, strings};
use crate::ctx::{Ctx, stop};
use crate::measure::cpu_ticks;
use crate::plan::Plan;
use crate::report::markdown::{Table, heading, paragraph};
use crate::servers::Server;

use super::Results;

/// One server's storm.
pub(crate) struct StormRow {
    pub(crate) server: String,
    pub(crate) clients: u64,
    /// Clients that received every event they were behind.
    pub(crate) caught_up: u64,
    /// Until the last of them had, ms.
    pub(crate) all_ms: f64,
    /// Server CPU meanwhile, s.
    pub(crate) cpu_s: f64,
    pub(crate) delivered: u64,
}

/// Events published first, then many clients at once with the `Last-Event-ID` of the first:
/// the time until every one has them all, and the server's CPU meanwhile.
pub(crate) fn storm(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    res: &mut Results,
) -> Result<(), String> {
    let running = ctx.start(server, &[])?;
    let pid = running.child.id();
    let mut args = publish_args(&running.addr, "storm", 0.0, 64);
    args.extend(strings(&[
        "--count",
        &(plan.storm_behind + 1).to_string(),
        "--duration",
        "60",
    ]));
    let pubr = ctx.loadgen_json(&args);
    let first = pubr["first_id"].as_str().unwrap_or_default().to_owned();
    if first.is_empty() {
        stop(running);
        return Err("publishing gave no event id".into());
    }
    let report = ctx
        .scratch
        .join(format!("storm-{}.json", server.name))
        .display()
        .to_string();
    let cpu0 = cpu_ticks(pid);
    let args = strings(&[
        "subscribe",
        "--url",
        &format!("http://{}/events/storm", running.addr),
        "--connections",
        &plan.storm_clients.to_string(),
        "--source-ips",
        &source_ips(0, 1, 8),
        "--report",
        &report,
        "--last-event-id",
        &first,
        "--expect",
        &plan.storm_behind.to_string(),
        "--connect-concurrency",
        &plan.storm_clients.to_string(),
        "--duration",
        "60",
    ]);
    let _ = ctx.loadgen(&args).stdout(Stdio::null()).status();
    let cpu_s = cpu_ticks(pid).saturating_sub(cpu0) as f64 / ctx.clk_tck;
    stop(running);
    let d = Delivery::collect(&[report]);
    println!(
        "  replay storm: {}/{} caught up in {:.0} ms",
        d.caught_up, plan.storm_clients, d.catch_up_ms
    );
    if d.caught_up < plan.storm_clients {
        ctx.failures.push(format!(
            "{}: replay storm: {} of {} caught up",
            server.name, d.caught_up, plan.storm_clients
        ));
    }
    res.storm.push(StormRow {
        server: server.name.into(),
        clients: plan.storm_clients,
        caught_up: d.caught_up,
        all_ms: d.catch_up_ms,
        cpu_s,
        delivered: d.delivered,
    });
    Ok(())
}

/// The scenario's section.
pub(crate) fn report(md: &mut String, plan: &Plan, res: &Results) {
    heading(md, "Replay storm");
    paragraph(
        md,
        &format!(
            "{} events of 64 B are published, then {} clients connect at once with `Last-Event-ID` of the first, so each is {} events behind; time until the last one has them all, and server CPU meanwhile.",
            plan.storm_behind + 1,
            plan.storm_clients,
            plan.storm_behind
        ),
    );
    let mut t = Table::new(
        md,
        &[
            "server",
            "clients",
            "caught up",
            "all caught up after ms",
            "server CPU-s",
            "events delivered",
        ],
    );
    for r in &res.storm {
        t.row(&[
            &r.server,
            &r.clients,
            &r.caught_up,
            &format!("{:.0}", r.all_ms),
            &format!("{:.2}", r.cpu_s),
            &r.delivered,
        ]);
    }
    for p in &res.no_replay {
        t.row(&[
            p,
            &"–",
            &"not measured: no `Last-Event-ID` resume from an id that `POST /publish` returns",
            &"",
            &"",
            &"",
        ]);
    }
    t.end();
}
