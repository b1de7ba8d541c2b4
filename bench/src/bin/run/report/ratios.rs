//! The comparison: tower-sse's figure ÷ each peer's, scenario by scenario, from the same run.

use crate::plan::Plan;
use crate::scenarios::Results;
use crate::scenarios::idle::Topics;

use super::markdown::{Table, heading, paragraph, times};

/// The section "tower-sse against each peer".
pub(crate) fn write(md: &mut String, plan: &Plan, res: &Results) {
    heading(md, "tower-sse against each peer (same run)");
    paragraph(
        md,
        "Ratio = tower-sse ÷ peer; below 1× is better for memory, CPU and latency, above 1× for rates. A peer preloaded with an allocator is read against tower-sse with the same one. `floor` is a bare epoll writer of pre-encoded chunks (`bench/src/bin/floor.rs`): what the kernel itself costs. The last columns, where measured, read `tower-sse+serve` (served by `tower_sse::serve`, its HTTP/1 fast path on) against `tower-sse` (`axum::serve`) and against `tower-sse+serve-hyper` (`serve` with every request through hyper).",
    );
    let pairs = res.pairs();
    let columns: Vec<String> = std::iter::once("metric".to_owned())
        .chain(pairs.iter().map(|(ours, p)| match ours.as_str() {
            "tower-sse" => format!("vs {p}"),
            _ => format!("{ours} vs {p}"),
        }))
        .collect();
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut t = Table::new(md, &columns);
    // A row of the ratios of `figure`.
    let mut ratios = |label: &str, figure: &dyn Fn(&str) -> Option<f64>| {
        let cells = pairs.iter().map(|(ours, p)| times(figure(ours), figure(p)));
        t.strings(std::iter::once(label.to_owned()).chain(cells));
    };
    // Whether a tower-sse row of the columns has a measurement; `true` without columns.
    let ours_has = |has: &dyn Fn(&str) -> bool| {
        (pairs.is_empty() && has("tower-sse")) || pairs.iter().any(|(ours, _)| has(ours))
    };
    for (topics, what) in [
        (Topics::Shared, "idle RSS per connection"),
        (Topics::Own, "idle RSS per stream, a topic each"),
    ] {
        for &n in &plan.idle {
            let idle = |s: &str| res.idle_rss(s, n, topics);
            if ours_has(&|s| idle(s).is_some()) {
                ratios(&format!("{what}, {n} conns"), &idle);
            }
        }
    }
    for &n in &plan.subscribers {
        for &rate in &plan.rates {
            for &size in &plan.sizes {
                let fan = |s: &str| res.fan_row(s, n, rate, size);
                if !ours_has(&|s| fan(s).is_some()) {
                    continue;
                }
                let at = format!("{n} subs, {rate} ev/s, {size} B");
                ratios(&format!("CPU per delivery, {at}"), &|s| {
                    fan(s).map(|r| r.cpu_s_per_m)
                });
                ratios(&format!("p99 latency, {at}"), &|s| {
                    fan(s).and_then(|r| r.p99)
                });
            }
        }
    }
    // Only servers that keep history are in the storm (the others have no replay).
    ratios("replay storm: time until every client caught up", &|s| {
        res.storm_caught_up(s).map(|r| r.all_ms)
    });
    ratios("replay storm: server CPU", &|s| {
        res.storm_caught_up(s).map(|r| r.cpu_s)
    });
    ratios("churn (connect, first event, close) per second", &|s| {
        res.churn_per_s(s)
    });
    ratios("`/plain` requests per second", &|s| res.plain_rps(s));
    t.end();
}
