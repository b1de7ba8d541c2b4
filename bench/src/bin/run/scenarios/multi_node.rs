//! Multi-node (`multi-node`, issue 15): three hub servers on one Redis, against one.
//!
//! The scenario starts a `redis-server` of its own (a free loopback port, no persistence, a
//! scratch directory; pinned to core 0 with the servers), then runs two phases on it, each with
//! the subscribers of one topic of its own (so the two phases share nothing but Redis):
//! - one node: one tower-sse server on that Redis (`REDIS_URL`), every subscriber on it, every
//!   publish to it;
//! - three nodes: three servers on the same Redis with the same key prefix, so they share the
//!   topic; the subscribers spread evenly over the three (`loadgen subscribe` with three URLs),
//!   the publishes round-robin over them (`loadgen publish` with three URLs).
//!
//! Each phase publishes two rounds to its topic, each for the plan's `multi_node_secs`: first
//! as fast as the answers come with [`IN_FLIGHT`] requests outstanding (publishes per second
//! accepted: what the nodes sustain), then at a fixed rate, a tenth of what one node sustained
//! ([`FIXED_SHARE`]), the same in both phases (the latency of a load both can carry: a saturated
//! round's latency is how long its backlog grew). After each round the nodes are left to drain, then the subscribers
//! report what they received, and their latency from the `t=` stamp in the data. At the end of
//! a phase, each subscriber's count of events since it opened is checked against the events
//! accepted: none missing, none twice, and rising ids (tower-sse's Redis ids are `MS-SEQ`, the
//! same on every node) on every connection.
//!
//! All three nodes run on core 0 like the one node (and every server of the harness), with
//! Redis: the comparison is of what the protocol costs, not of the cores added. Without
//! `redis-server` the scenario is not measured, with why.

use std::process::Command;
use std::time::Duration;

use crate::clients::{Subscribers, publish_args, publish_round, strings};
use crate::ctx::{Ctx, Running, stop};
use crate::measure::sh;
use crate::plan::Plan;
use crate::report::markdown::{Table, fixed, heading, paragraph, times};
use crate::servers::Server;

use super::Results;

/// Publish requests outstanding at once in the round that goes as fast as it can: enough to
/// keep one node busy (one at a time waits on each answer's round trip through Redis), few
/// enough that the publisher does not queue more than the nodes take.
const IN_FLIGHT: u64 = 8;
/// Event data size, bytes.
const SIZE: u64 = 64;
/// The nodes of the second phase.
const NODES: usize = 3;
/// The fixed rate's share of what one node sustained. Well below it: a saturated node writes
/// several events to a stream at once, while at a rate it carries each event is a write of its
/// own to every stream, which costs more per event (here, a quarter of the saturated rate kept
/// one node's core 75% busy). Three nodes on one core may sustain less than one.
const FIXED_SHARE: f64 = 0.1;

/// What the scenario measured, or why it did not.
#[derive(Default)]
pub(crate) struct MultiNode {
    /// Why it was not measured (`redis-server` missing).
    pub(crate) not_measured: Option<String>,
    /// `redis-server --version`.
    redis: String,
    rounds: Vec<RoundRow>,
    checks: Vec<CheckRow>,
}

/// One round of one phase.
pub(crate) struct RoundRow {
    nodes: usize,
    /// `None`: as fast as the answers come, [`IN_FLIGHT`] at once; `Some`: at this rate.
    rate: Option<f64>,
    /// Publishes answered 2xx, and those that failed.
    accepted: u64,
    errors: u64,
    per_s: f64,
    delivered: u64,
    expected: u64,
    /// End-to-end latency, ms.
    p50: Option<f64>,
    p99: Option<f64>,
    /// CPU time of the nodes together, and of Redis, over the round, s.
    nodes_cpu_s: f64,
    redis_cpu_s: f64,
}

/// What every subscriber of a phase received, against the events accepted.
pub(crate) struct CheckRow {
    nodes: usize,
    /// Events accepted over the phase's rounds.
    accepted: u64,
    /// Subscribers that connected, of those asked for.
    established: u64,
    /// Subscribers that received exactly the events accepted, and fewer, and more.
    complete: u64,
    fewer: u64,
    more: u64,
    /// Events whose id was not above the one before on their connection.
    out_of_order: u64,
    /// Streams the server ended, and connections that failed.
    closed: u64,
    errors: u64,
}

/// The scenario on the tower-sse server `server`.
pub(crate) fn multi_node(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    res: &mut Results,
) -> Result<(), String> {
    let out = &mut res.multi_node;
    let redis = match Redis::start(ctx) {
        Ok(redis) => redis,
        Err(NoRedis::Missing(why)) => {
            println!("  multi-node: not measured: {why}");
            out.not_measured = Some(why);
            return Ok(());
        }
        Err(NoRedis::Failed(why)) => return Err(format!("multi-node: {why}")),
    };
    out.redis = redis.version.clone();
    let result = phase(ctx, server, plan, &redis, 1, None, out)
        .and_then(|rate| phase(ctx, server, plan, &redis, NODES, Some(rate), out));
    stop(redis.running);
    result.map(|_| ())
}

/// `nodes` servers on `redis`, the plan's subscribers spread over them, and two rounds of
/// publishing: as fast as it goes, then at `rate` events per second (if `None`, the
/// [`fixed_rate`] of what the first round sustained). Returns that rate.
fn phase(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    redis: &Redis,
    nodes: usize,
    rate: Option<f64>,
    out: &mut MultiNode,
) -> Result<f64, String> {
    let url = redis.url();
    let mut running: Vec<Running> = Vec::new();
    for i in 1..=nodes {
        match ctx.start(server, &[("REDIS_URL", &url)]) {
            Ok(r) => running.push(r),
            Err(e) => {
                running.into_iter().for_each(stop);
                return Err(format!("multi-node: node {i} of {nodes}: {e}"));
            }
        }
    }
    let pids: Vec<u32> = running.iter().map(|r| r.child.id()).collect();
    let topic = format!("multi-{nodes}");
    let events: Vec<String> = running
        .iter()
        .map(|r| format!("http://{}/events/{topic}", r.addr))
        .collect();
    let n = plan.multi_node_subscribers;
    let bound = 2.0 * (plan.multi_node_secs + 25.0) + 60.0;
    let mut subs = Subscribers::open(ctx, &events.join(","), n, &topic, bound);
    let established = subs.established;
    if established < n {
        ctx.failures.push(format!(
            "multi-node, {nodes} node(s): {established} of {n} subscribers connected ({} failed)",
            subs.errors
        ));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = subs.snapshot();
    let addrs: Vec<&str> = running.iter().map(|r| r.addr.as_str()).collect();
    let publish = |rate: f64| {
        let mut args = publish_args(&addrs.join(","), &topic, rate, SIZE);
        args.extend(strings(&[
            "--duration",
            &plan.multi_node_secs.to_string(),
            "--in-flight",
            &IN_FLIGHT.to_string(),
        ]));
        args
    };
    let mut measure = |rate: Option<f64>| {
        let args = publish(rate.unwrap_or(0.0));
        let row = round(ctx, &mut subs, &pids, redis.pid(), &args, nodes, rate);
        let how = row
            .rate
            .map_or("as fast as it goes".into(), |r| format!("{r} ev/s"));
        println!(
            "  multi-node, {nodes} node(s), {n} subs, {how}: {} accepted ({:.0}/s), {}/{} delivered, p99 {:?} ms",
            row.accepted, row.per_s, row.delivered, row.expected, row.p99
        );
        if row.accepted == 0 || row.delivered == 0 {
            ctx.failures.push(format!(
                "multi-node, {nodes} node(s), {how}: {} accepted, {} delivered",
                row.accepted, row.delivered
            ));
        }
        let figures = (row.accepted, row.per_s);
        out.rounds.push(row);
        figures
    };
    let (saturated, per_s) = measure(None);
    let rate = rate.unwrap_or_else(|| fixed_rate(per_s));
    let (at_rate, _) = measure(Some(rate));
    let accepted_all = saturated + at_rate;
    let d = subs.close();
    running.into_iter().for_each(stop);
    let count = |pick: &dyn Fn(u64) -> bool| -> u64 {
        d.per_connection
            .iter()
            .filter(|&(&events, _)| pick(events))
            .map(|(_, &conns)| conns)
            .sum()
    };
    let check = CheckRow {
        nodes,
        accepted: accepted_all,
        established,
        complete: count(&|e| e == accepted_all),
        fewer: count(&|e| e < accepted_all),
        more: count(&|e| e > accepted_all),
        out_of_order: d.out_of_order,
        closed: d.closed,
        errors: d.errors,
    };
    println!(
        "  multi-node, {nodes} node(s): {} of {n} subscribers received all {accepted_all} events ({} fewer, {} more, {} out of order)",
        check.complete, check.fewer, check.more, check.out_of_order
    );
    if check.complete < n || check.out_of_order > 0 {
        ctx.failures.push(format!(
            "multi-node, {nodes} node(s): {} of {n} subscribers received every one of the {accepted_all} events accepted ({} fewer, {} more; {} out of order or repeated)",
            check.complete, check.fewer, check.more, check.out_of_order
        ));
    }
    out.checks.push(check);
    Ok(rate)
}

/// One round: `loadgen` with the publish `args` against the nodes `pids` (on Redis `redis_pid`),
/// until they and Redis are idle again; what the subscribers `subs` received meanwhile, and the CPU time
/// of the nodes and of Redis.
fn round(
    ctx: &mut Ctx,
    subs: &mut Subscribers,
    pids: &[u32],
    redis_pid: u32,
    args: &[String],
    nodes: usize,
    rate: Option<f64>,
) -> RoundRow {
    let all: Vec<u32> = pids.iter().copied().chain([redis_pid]).collect();
    let (v, cpu_s, d) = publish_round(ctx, subs, args, &all);
    let (redis_cpu_s, nodes_cpu_s) = cpu_s
        .split_last()
        .map_or((0.0, 0.0), |(redis, nodes)| (*redis, nodes.iter().sum()));
    let accepted = v["accepted"].as_u64().unwrap_or(0);
    RoundRow {
        nodes,
        rate,
        accepted,
        errors: v["errors"].as_u64().unwrap_or(0),
        per_s: v["per_s"].as_f64().unwrap_or(0.0),
        delivered: d.delivered,
        expected: accepted * subs.established,
        p50: d.q_ms(0.5),
        p99: d.q_ms(0.99),
        nodes_cpu_s,
        redis_cpu_s,
    }
}

/// The fixed rate of the second rounds: [`FIXED_SHARE`] of `per_s` (what one node sustained),
/// to two significant figures, at least 1.
fn fixed_rate(per_s: f64) -> f64 {
    let rate = per_s * FIXED_SHARE;
    if rate < 1.0 {
        return 1.0;
    }
    let unit = 10f64.powf(rate.log10().floor() - 1.0).max(1.0);
    (rate / unit).round() * unit
}

/// Why the scenario has no Redis.
enum NoRedis {
    /// `redis-server` is not installed: the scenario is not measured.
    Missing(String),
    /// It is, but it did not start: a failure.
    Failed(String),
}

/// The scenario's own `redis-server`.
struct Redis {
    running: Running,
    version: String,
}

impl Redis {
    /// Starts `redis-server` as the servers start ([`Ctx::start`]: a fresh loopback port, a
    /// scratch directory, pinned to core 0), without persistence.
    fn start(ctx: &mut Ctx) -> Result<Redis, NoRedis> {
        let version = match Command::new("redis-server").arg("--version").output() {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().into(),
            _ => {
                return Err(NoRedis::Missing(
                    "`redis-server` is not installed (`apt-get install redis-server`)".into(),
                ));
            }
        };
        let redis = Server {
            name: "redis",
            command: strings(&[
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                "{PORT}",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                "{DIR}",
            ]),
            env: vec![],
            needs: vec![],
            preload: None,
            only: &[],
            replay: false,
            smoke: false,
            status: None,
        };
        // Empty, without persistence: ready once it accepts connections.
        let running = ctx.start(&redis, &[]).map_err(NoRedis::Failed)?;
        Ok(Redis { running, version })
    }

    fn pid(&self) -> u32 {
        self.running.child.id()
    }

    /// Its URL, for `REDIS_URL`.
    fn url(&self) -> String {
        format!("redis://{}/", self.running.addr)
    }
}

/// The scenario's section.
pub(crate) fn report(md: &mut String, plan: &Plan, res: &Results) {
    let m = &res.multi_node;
    if m.not_measured.is_none() && m.rounds.is_empty() {
        return;
    }
    heading(md, "Multi-node: three hubs on one Redis");
    if let Some(why) = &m.not_measured {
        paragraph(md, &format!("Not measured: {why}."));
        return;
    }
    paragraph(
        md,
        &format!(
            "tower-sse servers on the Redis Streams backend (`REDIS_URL`), on one `redis-server` ({}) started for the scenario (loopback, `--save '' --appendonly no`). \
             One node: {subs} subscribers of one topic on one server, every publish to it. Three nodes: three servers on the same Redis (the same key prefix, so they share the topic), \
             the {subs} subscribers spread evenly over them, the publishes round-robin over them. Each publishes {SIZE} B events for {secs} s, twice: \
             as fast as the answers come with {IN_FLIGHT} requests in flight (publishes/s accepted: what the nodes sustain; its latency is mostly how far the backlog grew), \
             then at a fixed rate, {share:.0}% of what one node sustained, the same for both (latency at a load both carry; where three nodes accepted fewer than asked, they could not). \
             Latency is end to end, from the publisher's `t=` stamp to the subscriber parsing the event, in ms; CPU-s of the nodes together and of Redis over the round, until they were idle again. \
             **Pinning:** all three nodes run on core 0, as the one node does, and Redis with them; the clients run on core 1 (this machine has {} cores): \
             the comparison is of what the protocol costs, not of cores added.",
            m.redis
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            sh("nproc", &[]),
            subs = plan.multi_node_subscribers,
            secs = plan.multi_node_secs,
            share = FIXED_SHARE * 100.0,
        ),
    );
    let mut t = Table::new(
        md,
        &[
            "nodes",
            "publisher",
            "accepted",
            "publishes/s",
            "delivered / expected",
            "p50",
            "p99",
            "nodes CPU-s",
            "Redis CPU-s",
            "publish errors",
        ],
    );
    for r in &m.rounds {
        t.row(&[
            &r.nodes,
            &r.rate
                .map_or(format!("as fast as it goes, {IN_FLIGHT} in flight"), |r| {
                    format!("{r} ev/s")
                }),
            &r.accepted,
            &format!("{:.0}", r.per_s),
            &format!("{} / {}", r.delivered, r.expected),
            &fixed(r.p50),
            &fixed(r.p99),
            &format!("{:.2}", r.nodes_cpu_s),
            &format!("{:.2}", r.redis_cpu_s),
            &r.errors,
        ]);
    }
    t.end();
    paragraph(
        md,
        "What each subscriber received over both rounds, against the events accepted: exactly those (none missing, none twice), and events whose id was not above the one before on its connection (out of order or repeated; ids are Redis stream ids, `MS-SEQ`, the same on every node).",
    );
    let mut t = Table::new(
        md,
        &[
            "nodes",
            "events accepted",
            "subscribers connected",
            "with every event",
            "with fewer",
            "with more",
            "out of order or repeated",
            "streams closed by server",
            "connection errors",
        ],
    );
    for c in &m.checks {
        t.row(&[
            &c.nodes,
            &c.accepted,
            &format!("{} / {}", c.established, plan.multi_node_subscribers),
            &c.complete,
            &c.fewer,
            &c.more,
            &c.out_of_order,
            &c.closed,
            &c.errors,
        ]);
    }
    t.end();
    let round = |nodes: usize, fixed: bool| {
        m.rounds
            .iter()
            .find(|r| r.nodes == nodes && r.rate.is_some() == fixed)
    };
    let ratio = |fixed: bool, figure: fn(&RoundRow) -> Option<f64>| {
        times(
            round(NODES, fixed).and_then(figure),
            round(1, fixed).and_then(figure),
        )
    };
    let mut t = Table::new(md, &["three nodes ÷ one node", "ratio"]);
    t.row(&[
        &"publishes/s, as fast as it goes",
        &ratio(false, |r| Some(r.per_s)),
    ]);
    t.row(&[&"p99, at the fixed rate", &ratio(true, |r| r.p99)]);
    t.row(&[&"p99, as fast as it goes", &ratio(false, |r| r.p99)]);
    t.end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Mode;

    fn round(nodes: usize, rate: Option<f64>, per_s: f64, p99: f64) -> RoundRow {
        RoundRow {
            nodes,
            rate,
            accepted: 100,
            errors: 0,
            per_s,
            delivered: 3000,
            expected: 3000,
            p50: Some(p99 / 2.0),
            p99: Some(p99),
            nodes_cpu_s: 1.0,
            redis_cpu_s: 0.5,
        }
    }

    #[test]
    fn the_section_compares_three_nodes_with_one() {
        let mut res = Results::default();
        res.multi_node.rounds = vec![
            round(1, None, 1000.0, 40.0),
            round(1, Some(500.0), 500.0, 4.0),
            round(3, None, 800.0, 60.0),
            round(3, Some(500.0), 500.0, 5.0),
        ];
        let mut md = String::new();
        report(&mut md, &Plan::of(Mode::Smoke), &res);
        assert!(
            md.contains("| publishes/s, as fast as it goes | 0.80× |"),
            "{md}"
        );
        assert!(md.contains("| p99, at the fixed rate | 1.25× |"), "{md}");
        assert!(md.contains("| p99, as fast as it goes | 1.50× |"), "{md}");
        assert!(
            md.contains("| 3 | 500 ev/s | 100 | 500 | 3000 / 3000 |"),
            "{md}"
        );
    }

    #[test]
    fn without_redis_the_section_says_why() {
        let mut res = Results::default();
        let mut md = String::new();
        report(&mut md, &Plan::of(Mode::Smoke), &res);
        assert_eq!(md, "", "not run: no section");
        res.multi_node.not_measured = Some("`redis-server` is not installed".into());
        report(&mut md, &Plan::of(Mode::Smoke), &res);
        assert!(md.contains("Not measured: `redis-server` is not installed."));
    }

    #[test]
    fn the_fixed_rate_is_a_tenth_to_two_significant_figures() {
        assert_eq!(fixed_rate(1286.0), 130.0);
        assert_eq!(fixed_rate(874.0), 87.0);
        assert_eq!(fixed_rate(45.0), 5.0);
        assert_eq!(fixed_rate(5.0), 1.0);
        assert_eq!(fixed_rate(117_280.0), 12_000.0);
    }
}
