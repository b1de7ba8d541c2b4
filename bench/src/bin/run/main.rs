//! The orchestrator of issue 6: one command runs every scenario against every server and writes
//! the report with its plots.
//!
//! ```text
//! cargo run --release -p tower-sse-bench --bin run -- --quick             # ~3 min, BENCHMARKS.md
//! cargo run --release -p tower-sse-bench --bin run -- --full              # every scenario of the issue
//! cargo run --release -p tower-sse-bench --bin run -- --smoke --out target/bench-smoke.md   # CI
//! cargo run --release -p tower-sse-bench --bin run -- --quick --servers tower-sse,baseline \
//!     --scenarios idle,plain,overhead --out target/part.md   # a part, while working on it
//! ```
//!
//! Scenarios: `idle` (memory per idle stream, one shared topic), `per-user` (the same with a
//! topic per stream, beside the shared figure), `fanout`, `storm`, `churn`, `plain`,
//! `many-topics` (one event each to many topics, RSS after they expire), `overhead` and
//! `compression` (CPU per delivery of 1 KiB JSON events, compressed by the layer, one context per
//! stream or shared, against plain; issue 12; `--compression shared` or `per-stream` runs a part
//! of its variants), `stalled` (kernel memory and disconnect time of clients that never read) and
//! `shutdown` (graceful shutdown's time with open streams, stalled readers and half-sent heads),
//! the last two on tower-sse only (issue 12), and `multi-node` (three tower-sse servers on one
//! Redis against one, on a `redis-server` of its own; issue 15).
//!
//! Each server runs pinned to core 0 (`taskset -c 0`, `WORKERS=1`), the clients (`loadgen`) on
//! core 1, all on loopback. Servers are rows of [`servers::servers`]: a name, a command and its
//! environment; a peer whose files or tools are missing is reported as not measured, with why.
//! The rows `tower-sse+jemalloc` and `baseline+jemalloc` are the same two binaries with Debian's
//! libjemalloc2 preloaded (`LD_PRELOAD`) instead of glibc's malloc, and `…+jemalloc-bg` the same
//! with jemalloc's background thread on, in the memory scenarios (`idle`, `per-user`,
//! `many-topics`): what the allocator, not the code, makes of freed memory. Without libjemalloc2
//! they are not measured, with why. The rows `tower-sse+serve` and `tower-sse+serve-hyper` are the
//! tower-sse binary served by `tower_sse::serve` with its HTTP/1 fast path for event streams on
//! and off (issue 15), and `floor` is a single-threaded epoll writer of pre-encoded chunks
//! (`floor.rs`): what the kernel itself costs per delivery. `--smoke` runs tiny counts against
//! tower-sse and the baseline (and their `+jemalloc` rows), `tower-sse+serve` and the floor, and
//! exits non-zero if any scenario failed to deliver.
//!
//! The modules, in the order a run uses them:
//! - [`args`]: the command line; [`plan`]: the counts of each mode;
//! - [`servers`]: the servers compared and how to start each;
//! - [`ctx`]: starting and stopping them, and running `loadgen`; [`clients`]: the `loadgen`
//!   processes and what they report; [`measure`]: what is read of the server's process and the
//!   kernel;
//! - [`scenarios`]: one file a scenario, with its rows and its section of the report;
//! - [`report`]: the report: the comparison with each peer, the targets and their verdicts
//!   (`report/verdict.rs`), the Markdown, the plots.

mod args;
mod clients;
mod ctx;
mod measure;
mod plan;
mod report;
mod scenarios;
mod servers;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use args::Args;
use ctx::{Ctx, stop};
use plan::{Mode, Plan};
use scenarios::idle::Topics;
use scenarios::{Results, churn, compression, fan_out, idle, many_topics, plain, shutdown};
use scenarios::{multi_node, stalled, storm};
use servers::Server;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let args = match Args::parse(std::env::args().skip(1).collect(), &root) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("run: {e}");
            std::process::exit(2);
        }
    };
    let mode = args.mode;
    let zip_variants = match compression::variants(args.compression()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("run: {e}");
            std::process::exit(2);
        }
    };

    // The other binaries of this package: `cargo run --bin run` builds only this one.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo)
        .args(["build", "--release", "-p", "tower-sse-bench", "--bins"])
        .current_dir(&root)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("run: building the bench binaries failed");
        std::process::exit(1);
    }
    let bin = std::env::current_exe()
        .expect("exe")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    for tool in ["taskset"] {
        if Command::new(tool).arg("-V").output().is_err() {
            eprintln!("run: `{tool}` is needed (util-linux)");
            std::process::exit(1);
        }
    }
    let scratch = std::env::temp_dir().join(format!("tower-sse-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&scratch);
    let clk_tck = measure::sh("getconf", &["CLK_TCK"])
        .parse()
        .unwrap_or(100.0);
    let mut ctx = Ctx {
        root: root.clone(),
        bin: bin.clone(),
        scratch: scratch.clone(),
        port: 21000, // below the ephemeral range, so no client socket holds it
        commands: vec![args.cmdline.clone()],
        clk_tck,
        failures: Vec::new(),
    };
    let mut plan = Plan::of(mode);
    args.narrow(&mut plan);
    let mut res = Results::default();
    let started = Instant::now();
    let all = servers::servers(&bin);
    let mut tower_sse: Option<&Server> = None;
    for server in &all {
        if (mode == Mode::Smoke && !server.smoke) || !args.server(server.name) {
            continue;
        }
        println!("== {}", server.name);
        // A first start tells whether the server can be measured at all.
        match ctx.start(server, &[]) {
            Ok(r) => stop(r),
            Err(why) => {
                println!("  not measured: {why}");
                if server.needs.is_empty() {
                    ctx.failures.push(format!("{}: {why}", server.name));
                }
                res.skipped.push((server.name.into(), why));
                continue;
            }
        }
        res.measured.push(server.name.into());
        if let Some(lib) = &server.preload {
            let env: String = server
                .env
                .iter()
                .map(|(k, v)| format!(" {k}={v}"))
                .collect();
            res.preloaded
                .push((server.name.into(), format!("LD_PRELOAD={lib}{env}")));
        }
        // The scenarios asked for that this server is measured in.
        let wants = |scenario: &str| {
            args.scenario(scenario) && (server.only.is_empty() || server.only.contains(&scenario))
        };
        if server.name == "tower-sse" {
            tower_sse = Some(server);
        }
        let mut outcome = Vec::new();
        // `per-user` also measures the shared topic at the same counts: its figure is read
        // against that one, from the same run.
        let per_user = wants("per-user");
        if wants("idle") || per_user {
            for &n in &plan.idle {
                outcome.push(idle::idle(&mut ctx, server, n, Topics::Shared, &mut res));
                if per_user {
                    outcome.push(idle::idle(&mut ctx, server, n, Topics::Own, &mut res));
                }
            }
        }
        if wants("fanout") {
            for &n in &plan.subscribers {
                outcome.push(fan_out::fan_out(&mut ctx, server, &plan, n, &mut res));
            }
        }
        if wants("storm") {
            if server.replay {
                outcome.push(storm::storm(&mut ctx, server, &plan, &mut res));
            } else {
                res.no_replay.push(server.name.into());
            }
        }
        if wants("churn") {
            outcome.push(churn::churn(&mut ctx, server, &plan, &mut res));
        }
        if wants("plain") {
            outcome.push(plain::plain(&mut ctx, server, &plan, &mut res));
        }
        if wants("many-topics") {
            outcome.push(many_topics::many_topics(&mut ctx, server, &plan, &mut res));
        }
        for e in outcome.into_iter().filter_map(Result::err) {
            ctx.failures.push(format!("{}: {e}", server.name));
        }
    }
    if let Some(server) = tower_sse
        && args.scenario("overhead")
        && let Err(e) = plain::overhead(&mut ctx, server, &plan, &mut res)
    {
        ctx.failures.push(format!("tower-sse layer overhead: {e}"));
    }
    if let Some(server) = tower_sse
        && args.scenario("compression")
        && let Err(e) = compression::compression(&mut ctx, server, &plan, &zip_variants, &mut res)
    {
        ctx.failures.push(format!("tower-sse compression: {e}"));
    }
    // The two scenarios of issue 12's hostile clients take ~40 s between them: not in the smoke
    // run unless named (`--smoke --scenarios stalled,shutdown`).
    let hostile =
        |name: &str| args.scenario(name) && (mode != Mode::Smoke || args.scenarios_named());
    if let Some(server) = tower_sse
        && hostile("stalled")
        && let Err(e) = stalled::stalled(&mut ctx, server, &plan, &mut res)
    {
        ctx.failures.push(format!("tower-sse stalled: {e}"));
    }
    if let Some(server) = tower_sse
        && hostile("shutdown")
        && let Err(e) = shutdown::shutdown(&mut ctx, server, &plan, &mut res)
    {
        ctx.failures.push(format!("tower-sse shutdown: {e}"));
    }
    if let Some(server) = tower_sse
        && args.scenario("multi-node")
        && let Err(e) = multi_node::multi_node(&mut ctx, server, &plan, &mut res)
    {
        ctx.failures.push(format!("tower-sse {e}"));
    }
    let elapsed = started.elapsed();
    if let Err(e) = report::plots::write(&plan, &res, &args.plots) {
        eprintln!("run: writing plots: {e}");
    }
    let md = report::report(&args, &plan, &ctx, &res, elapsed);
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&args.out, md).expect("write the report");
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "wrote {} and plots in {} ({:.0} s)",
        args.out.display(),
        args.plots.display(),
        elapsed.as_secs_f64()
    );
    // Only the smoke run gates on delivery; a full or quick run reports its failures in the file.
    if !ctx.failures.is_empty() && mode == Mode::Smoke {
        eprintln!("run: {} scenario(s) failed:", ctx.failures.len());
        for f in &ctx.failures {
            eprintln!("  {f}");
        }
        std::process::exit(1);
    }
    for f in &ctx.failures {
        eprintln!("run: not delivered in full (see the report's Failures): {f}");
    }
}
