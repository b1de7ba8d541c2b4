//! The report: a Markdown document of the run, then its plots.
//!
//! [`report`] writes the sections in order: the machine and the servers, the comparison with
//! each peer ([`ratios`]), the targets of issues 6 and 15 ([`targets`], judged by [`verdict`]), then each
//! scenario's own section (in `scenarios/`), and the commands run. [`markdown`] is how tables and
//! figures are written, [`rows`] how rows are picked out of the results.

pub(crate) mod markdown;
pub(crate) mod plots;
mod ratios;
mod rows;
mod targets;
pub(crate) mod verdict;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::args::Args;
use crate::clients::PER_PROCESS;
use crate::ctx::Ctx;
use crate::measure::sh;
use crate::plan::Plan;
use crate::scenarios::{
    Results, churn, compression, fan_out, idle, many_topics, multi_node, plain, shutdown, stalled,
    storm,
};
use crate::servers::MEMORY_SCENARIOS;

use markdown::{Table, heading, paragraph};

/// The report of a run that took `elapsed`.
pub(crate) fn report(
    args: &Args,
    plan: &Plan,
    ctx: &Ctx,
    res: &Results,
    elapsed: Duration,
) -> String {
    // A plot's path from the report's directory.
    let plot = |name: &str| -> String {
        let p = args.plots.join(name);
        let base = args.out.parent().unwrap_or(Path::new("."));
        let abs_base = std::fs::canonicalize(base).unwrap_or(base.to_path_buf());
        let abs = std::fs::canonicalize(&p).unwrap_or(p);
        abs.strip_prefix(&abs_base)
            .map(|r| r.display().to_string())
            .unwrap_or(abs.display().to_string())
    };
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    paragraph(
        &mut md,
        &format!(
            "Written by the harness in `bench/` (issue 6) — do not edit by hand. Mode `{:?}`, run took {:.0} s.",
            args.mode,
            elapsed.as_secs_f64()
        ),
    );
    paragraph(&mut md, &format!("```sh\n{}\n```", args.cmdline));
    heading(&mut md, "Machine");
    paragraph(&mut md, &machine());
    paragraph(
        &mut md,
        &format!(
            "Each server runs alone, pinned to core 0 (`taskset -c 0`) with one worker thread (`WORKERS=1`); \
             the clients (`loadgen`, one tokio current-thread runtime per process, at most {PER_PROCESS} \
             connections per process, sockets bound round-robin to 127.0.0.1–127.0.0.8) run on core 1. \
             Everything is on loopback. Server memory is the resident set (VmRSS) of the server's process tree; \
             server CPU is utime+stime from /proc/PID/stat. Latency is the time from the publisher stamping \
             `t=<unix nanos>` in the data to the client parsing the event, in an HDR histogram.",
        ),
    );
    servers(&mut md, res);
    ratios::write(&mut md, plan, res);
    targets::write(&mut md, plan, res);
    targets::write_issue_15(&mut md, plan, res);
    compression::report(&mut md, res);
    stalled::report(&mut md, res);
    shutdown::report(&mut md, res);
    idle::report(&mut md, res, &plot(plots::MEMORY));
    many_topics::report(&mut md, plan, res);
    fan_out::report(&mut md, plan, res, &plot(plots::LATENCY));
    storm::report(&mut md, plan, res);
    churn::report(&mut md, plan, res);
    plain::report(&mut md, plan, res);
    multi_node::report(&mut md, plan, res);
    heading(&mut md, "Commands");
    paragraph(
        &mut md,
        "Every distinct command the harness ran (addresses and scratch paths vary):",
    );
    let _ = writeln!(md, "```sh");
    for c in &ctx.commands {
        let _ = writeln!(md, "{c}");
    }
    let _ = writeln!(md, "```");
    if !ctx.failures.is_empty() {
        let _ = writeln!(md, "\n## Failures\n");
        for f in &ctx.failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    md
}

/// The machine, a Markdown list.
fn machine() -> String {
    let model = sh("lscpu", &[])
        .lines()
        .find(|l| l.starts_with("Model name"))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        .unwrap_or_else(|| "?".into());
    let glibc = sh("ldd", &["--version"]);
    let jemalloc = sh("dpkg-query", &["-W", "-f=${Version}", "libjemalloc2"]);
    format!(
        "- CPUs: {} (`nproc`), {model}\n- kernel: {}\n- {}\n- open-file limit: {} per process\n\
         - allocators: glibc's malloc ({}), and for the `+jemalloc` rows Debian's libjemalloc2 {}",
        sh("nproc", &[]),
        sh("uname", &["-r"]),
        sh("rustc", &["--version"]),
        sh("bash", &["-c", "ulimit -n"]),
        glibc.lines().next().unwrap_or("?"),
        if jemalloc.is_empty() {
            "(not installed)"
        } else {
            &jemalloc
        },
    )
}

/// The section "Servers": which were measured, and how; which were not, and why.
fn servers(md: &mut String, res: &Results) {
    heading(md, "Servers");
    let mut t = Table::new(md, &["server", "measured"]);
    for name in &res.measured {
        let measured = match res.preloaded.iter().find(|(n, _)| n == name) {
            Some((_, how)) => format!(
                "yes: the same binary with `{how}` (the library checked in its /proc/PID/maps), in the memory scenarios ({})",
                MEMORY_SCENARIOS.join(", ")
            ),
            None => "yes".into(),
        };
        t.row(&[name, &measured]);
    }
    for (name, why) in &res.skipped {
        t.row(&[name, &format!("**not measured**: {why}")]);
    }
    t.end();
}
