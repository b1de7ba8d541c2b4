//! Fan-out (`fanout`): one publisher, many subscribers of its topic; deliveries, server CPU per
//! delivery and latency at each rate and event size.

use std::time::Duration;

use crate::clients::{Delivery, Subscribers, publish_args, publish_round, strings};
use crate::ctx::{Ctx, stop};
use crate::measure::cpu_s_per_million;
use crate::plan::Plan;
use crate::report::markdown::{Table, fixed, heading, paragraph};
use crate::servers::Server;

use super::Results;

/// One rate and size of one server's run.
pub(crate) struct FanRow {
    pub(crate) server: String,
    pub(crate) subscribers: u64,
    pub(crate) rate: f64,
    pub(crate) size: usize,
    pub(crate) published: u64,
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) per_s: f64,
    /// Server CPU-s per million deliveries; NaN where too coarse to divide.
    pub(crate) cpu_s_per_m: f64,
    /// Latency quantiles, ms.
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) p999: Option<f64>,
    pub(crate) dropped_conns: u64,
}

/// One round of publishing to subscribers, measured.
pub(crate) struct Round {
    /// Events the publisher published.
    pub(crate) published: u64,
    /// What the subscribers received of them.
    pub(crate) delivery: Delivery,
    /// Server CPU-s per million deliveries ([`cpu_s_per_million`]).
    pub(crate) cpu_s_per_m: f64,
}

impl Round {
    /// Runs `loadgen` with the publish `args` against the server `pid`, waits until the server
    /// is idle again, and reads what `subs` received and the server's CPU time meanwhile.
    pub(crate) fn measure(
        ctx: &mut Ctx,
        pid: u32,
        subs: &mut Subscribers,
        args: &[String],
    ) -> Round {
        let (out, cpu_s, delivery) = publish_round(ctx, subs, args, &[pid]);
        Round {
            published: out["published"].as_u64().unwrap_or(0),
            cpu_s_per_m: cpu_s_per_million(cpu_s[0], delivery.delivered),
            delivery,
        }
    }
}

/// `subs_n` subscribers of one topic, and a publisher at each rate and size of the plan in turn:
/// deliveries, server CPU per delivery and latency of each.
pub(crate) fn fan_out(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    subs_n: u64,
    res: &mut Results,
) -> Result<(), String> {
    let running = ctx.start(server, &[])?;
    let pid = running.child.id();
    let url = format!("http://{}/events/fan", running.addr);
    let configs = plan.rates.len() * plan.sizes.len();
    let bound = configs as f64 * (plan.publish_secs + 25.0) + 60.0;
    let mut subs = Subscribers::open(
        ctx,
        &url,
        subs_n,
        &format!("fan-{}-{subs_n}", server.name),
        bound,
    );
    let established = subs.established;
    if established < subs_n {
        ctx.failures.push(format!(
            "{}: fan-out: {established} of {subs_n} subscribers connected ({} failed)",
            server.name, subs.errors
        ));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = subs.snapshot(); // drop whatever came before (keep-alive comments are not counted)
    for &rate in &plan.rates {
        for &size in &plan.sizes {
            let mut args = publish_args(&running.addr, "fan", rate, size as u64);
            args.extend(strings(&["--duration", &plan.publish_secs.to_string()]));
            let Round {
                published,
                delivery: d,
                cpu_s_per_m,
            } = Round::measure(ctx, pid, &mut subs, &args);
            let expected = published * established;
            let row = FanRow {
                server: server.name.into(),
                subscribers: subs_n,
                rate,
                size,
                published,
                expected,
                delivered: d.delivered,
                per_s: d.delivered as f64 / plan.publish_secs,
                cpu_s_per_m,
                p50: d.q_ms(0.5),
                p99: d.q_ms(0.99),
                p999: d.q_ms(0.999),
                dropped_conns: d.closed,
            };
            println!(
                "  fan-out {subs_n} subs, {rate} ev/s, {size} B: {}/{} delivered, {:.2} CPU-s/M, p99 {:?} ms",
                row.delivered, row.expected, row.cpu_s_per_m, row.p99
            );
            if published == 0
                || row.delivered == 0
                || (row.delivered as f64) < 0.9 * expected as f64
            {
                ctx.failures.push(format!(
                    "{}: fan-out {subs_n}×{rate}/s×{size} B delivered {} of {expected}",
                    server.name, row.delivered
                ));
            }
            res.fan.push(row);
        }
    }
    subs.close();
    stop(running);
    Ok(())
}

/// The scenario's section (with the plot, `plot` its path from the report).
pub(crate) fn report(md: &mut String, plan: &Plan, res: &Results, plot: &str) {
    heading(md, "Fan-out");
    paragraph(
        md,
        &format!(
            "One publisher (`POST /publish/fan`, one keep-alive connection) for {} s per row; delivered/s over that time; CPU-s per million deliveries = server CPU from the first publish until the server is idle again, divided by the deliveries (millions); CPU time is counted in 10 ms ticks, so rows with under a second of server CPU are coarse, and under 0.2 s it is not divided (–). Latency in ms. The publisher runs on the clients' core: when the subscribers saturate that core, fewer events than asked are published (see the published column), and latency includes the clients' own queueing.",
            plan.publish_secs
        ),
    );
    let mut t = Table::new(
        md,
        &[
            "server",
            "subscribers",
            "ev/s",
            "bytes",
            "published",
            "delivered / expected",
            "delivered/s",
            "server CPU-s per M",
            "p50",
            "p99",
            "p999",
            "streams closed by server",
        ],
    );
    for r in &res.fan {
        t.row(&[
            &r.server,
            &r.subscribers,
            &r.rate,
            &r.size,
            &r.published,
            &format!("{} / {}", r.delivered, r.expected),
            &format!("{:.0}", r.per_s),
            &fixed(Some(r.cpu_s_per_m).filter(|x| x.is_finite())),
            &fixed(r.p50),
            &fixed(r.p99),
            &fixed(r.p999),
            &r.dropped_conns,
        ]);
    }
    t.end();
    paragraph(md, &format!("![p99 latency against subscribers]({plot})"));
}
