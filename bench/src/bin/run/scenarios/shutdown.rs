//! Issue 12's second target: "Graceful shutdown returns within its deadline with stalled
//! readers, half-sent heads and 10 000 open streams."
//!
//! The tower-sse server served by `tower_sse::serve` (`SERVE=1`) with
//! `SHUTDOWN_DEADLINE=`[`DEADLINE_S`] and everything else at its default (a 30 s write timeout,
//! so the stalled readers are still there at the signal). Open, in this order: the streams
//! (`loadgen subscribe`, from 127.0.0.1–8), [`STALLED`] clients that never read with their
//! windows filled (`loadgen stall --rcvbuf`, from 127.0.1.x, then 1 KiB events until their
//! send queues are full), and [`HALF_HEADS`] connections that sent `GET /health HTTP/1.1\r\nHo`
//! and nothing more (`loadgen stall --half-head`, from 127.0.2.x). Then SIGTERM to the server,
//! and the time until its process has exited; `ss` is read meanwhile, for when each kind of
//! connection was no longer held open by the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::clients::{Subscribers, publish_args, source_ips, strings};
use crate::ctx::{Ctx, signal, stop};
use crate::measure::tree;
use crate::plan::Plan;
use crate::report::markdown::{Table, fixed, heading, paragraph};
use crate::report::verdict::{Bound, judge};
use crate::servers::Server;

use super::Results;
use super::stalled::{SAMPLE, Sock, Stall, port_of, sockets};

/// The shutdown deadline the server is given (`SHUTDOWN_DEADLINE`), s.
const DEADLINE_S: u64 = 5;
/// What the process may take past the deadline and still meet the target: after the deadline,
/// `serve` resets the connections still open and waits for their tasks, then the runtime and
/// the process end (with up to 10 000 sockets to free), and the `timeout` wrapper reaps it.
const SLACK_S: f64 = 1.0;
/// Stalled readers and half-sent heads.
const STALLED: u64 = 100;
const HALF_HEADS: u64 = 100;

/// Which of the three kinds a connection is, by its peer address.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stream,
    Stalled,
    Half,
}

fn kind(sock: &Sock) -> Kind {
    if sock.peer.starts_with("127.0.1.") {
        Kind::Stalled
    } else if sock.peer.starts_with("127.0.2.") {
        Kind::Half
    } else {
        Kind::Stream
    }
}

/// How many of each kind the server holds open: streams, stalled, half heads.
fn census(socks: &[Sock]) -> [u64; 3] {
    let mut c = [0; 3];
    for s in socks.iter().filter(|s| s.open()) {
        c[kind(s) as usize] += 1;
    }
    c
}

/// The shutdown scenario's figures.
pub(crate) struct ShutdownRow {
    streams: u64,
    /// Held open by the server just before the signal: streams, stalled, half heads.
    before: [u64; 3],
    /// Stalled readers whose send queue held at least half the configured-by-default 64 KiB.
    stalled_full: u64,
    /// Their send queues' kernel memory then, KiB.
    stalled_wmem_kib: u64,
    /// From the signal until the server's process had exited, s; `None`: not within the bound.
    exit_s: Option<f64>,
    /// From the signal until the server held none of each kind open, s.
    drained_s: [Option<f64>; 3],
    /// The longest one reading of `ss` took meanwhile, ms: the resolution of `drained_s`.
    census_ms: f64,
    /// What the stream clients saw: streams the server ended (cleanly), and errors (resets).
    closed_by_server: u64,
    errors: u64,
}

/// The shutdown scenario on the tower-sse server.
pub(crate) fn shutdown(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    res: &mut Results,
) -> Result<(), String> {
    let n = plan.shutdown_streams;
    let deadline = DEADLINE_S.to_string();
    let running = ctx.start(server, &[("SERVE", "1"), ("SHUTDOWN_DEADLINE", &deadline)])?;
    let port = port_of(&running.addr);
    let addr = running.addr.clone();
    let bound = 300.0;
    let streams = Subscribers::open(
        ctx,
        &format!("http://{addr}/events/open"),
        n,
        "shutdown-streams",
        bound,
    );
    if streams.established < n {
        ctx.failures.push(format!(
            "shutdown: {} of {n} streams established ({} failed)",
            streams.established, streams.errors
        ));
    }
    let stalled = Stall::open(
        ctx,
        &format!("http://{addr}/events/stall"),
        STALLED,
        &source_ips(1, 1, 8),
        &["--rcvbuf", "4096"],
        bound,
    );
    // Fill their windows: 300 KiB of events each is more than a 64 KiB send buffer (128 KiB as
    // the kernel counts it), a 4 KiB receive buffer and hyper's write queue hold.
    let mut args = publish_args(&addr, "stall", 1000.0, 1024);
    args.extend(strings(&["--count", "300", "--duration", "10"]));
    let _ = ctx.loadgen_json(&args);
    let half = Stall::open(
        ctx,
        &format!("http://{addr}/health"),
        HALF_HEADS,
        &source_ips(2, 1, 8),
        &["--half-head"],
        bound,
    );
    for (what, opened, count) in [
        ("stalled readers", &stalled, STALLED),
        ("half heads", &half, HALF_HEADS),
    ] {
        if opened.established < count {
            ctx.failures.push(format!(
                "shutdown: {} of {count} {what} connected ({} failed)",
                opened.established, opened.errors
            ));
        }
    }
    std::thread::sleep(SAMPLE * 3);
    let socks = sockets(port);
    let before = census(&socks);
    let stalled_socks = || {
        socks
            .iter()
            .filter(|s| kind(s) == Kind::Stalled && s.open())
    };
    let stalled_full = stalled_socks().filter(|s| s.send_q >= 32 * 1024).count() as u64;
    let stalled_wmem_kib = stalled_socks().map(|s| s.wmem).sum::<u64>() / 1024;
    println!(
        "  shutdown {n}: held open before the signal: {} streams, {} stalled ({stalled_full} full), {} half heads",
        before[0], before[1], before[2]
    );

    // SIGTERM to the server itself (under `timeout` and `taskset`, which execs it).
    let mut running = running;
    let wrapper = running.child.id();
    let pid = tree(wrapper).last().copied().unwrap_or(wrapper);
    let signalled = Instant::now();
    signal(pid, "-TERM");
    // `ss` on another thread, so that the exit is seen within a few ms.
    let done = Arc::new(AtomicBool::new(false));
    let census_thread = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut drained_s: [Option<f64>; 3] = [None; 3];
            let mut slowest = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                let read = Instant::now();
                let now = signalled.elapsed().as_secs_f64();
                let open = census(&sockets(port));
                slowest = slowest.max(read.elapsed());
                for (k, drained) in drained_s.iter_mut().enumerate() {
                    if drained.is_none() && open[k] == 0 {
                        *drained = Some(now);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (drained_s, slowest)
        })
    };
    let mut exit_s = None;
    let limit = Duration::from_secs(DEADLINE_S + 30);
    while signalled.elapsed() < limit {
        if let Ok(Some(_)) = running.child.try_wait() {
            exit_s = Some(signalled.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done.store(true, Ordering::Relaxed);
    let (mut drained_s, slowest) = census_thread.join().unwrap_or(([None; 3], Duration::ZERO));
    if let Some(exit) = exit_s {
        // What had not drained by the exit, drained at it: the process closes every socket.
        for drained in &mut drained_s {
            *drained = Some(drained.map_or(exit, |d| d.min(exit)));
        }
    }
    println!("  shutdown {n}: exited after {exit_s:?} s (deadline {DEADLINE_S} s)");
    if exit_s.is_none() {
        stop(running);
    }
    let seen = streams.close();
    stalled.close();
    half.close();
    res.shutdown = Some(ShutdownRow {
        streams: n,
        before,
        stalled_full,
        stalled_wmem_kib,
        exit_s,
        drained_s,
        census_ms: slowest.as_secs_f64() * 1000.0,
        closed_by_server: seen.closed,
        errors: seen.errors,
    });
    Ok(())
}

/// The shutdown scenario's section of the report, if it ran.
pub(crate) fn report(md: &mut String, res: &Results) {
    let Some(r) = &res.shutdown else {
        return;
    };
    heading(md, "Graceful shutdown under load (issue 12)");
    paragraph(
        md,
        &format!(
            "The tower-sse server served by `tower_sse::serve` (`SERVE=1`) with \
             `SHUTDOWN_DEADLINE={DEADLINE_S}` s (`Serve::shutdown_deadline`), the rest at its \
             defaults (64 KiB send buffer, 30 s write timeout, 15 s keep-alive). Open, in this \
             order: {} streams (`loadgen subscribe`, no events), {STALLED} clients that never read \
             (`loadgen stall --rcvbuf 4096`) whose windows 300 events of 1 KiB then fill, and \
             {HALF_HEADS} connections that sent `GET /health HTTP/1.1\\r\\nHo` and nothing more \
             (`loadgen stall --half-head`). Then SIGTERM to the server process; the time until it \
             has exited, and, from `ss` read every 20 ms besides (each reading took up to {:.0} ms), \
             until the server held no connection of each kind open (established or half-closed by \
             the client).",
            r.streams, r.census_ms
        ),
    );
    let mut t = Table::new(md, &["", "streams", "stalled readers", "half-sent heads"]);
    t.row(&[
        &"held open at the signal",
        &r.before[0],
        &format!(
            "{} ({} with ≥ 32 KiB unacknowledged, {} KiB of send queues)",
            r.before[1], r.stalled_full, r.stalled_wmem_kib
        ),
        &r.before[2],
    ]);
    t.row(&[
        &"none held open after s",
        &fixed(r.drained_s[0]),
        &fixed(r.drained_s[1]),
        &fixed(r.drained_s[2]),
    ]);
    t.end();
    paragraph(
        md,
        &format!(
            "The stream clients saw {} stream(s) ended by the server and {} error(s) (resets).",
            r.closed_by_server, r.errors
        ),
    );
    // A server that did not exit within the bound never did.
    let exit = (!r.before.contains(&0)).then(|| r.exit_s.unwrap_or(f64::INFINITY));
    let mut t = Table::new(md, &["target", "measured", "bound", "verdict"]);
    t.row(&[
        &format!(
            "graceful shutdown returns within its deadline with stalled readers, half-sent heads and {} open streams",
            r.streams
        ),
        &format!("exited {} s after SIGTERM", fixed(r.exit_s)),
        &format!("{DEADLINE_S} s deadline + {SLACK_S} s for the process to end"),
        &judge(exit, Bound::AtMost(DEADLINE_S as f64 + SLACK_S)),
    ]);
    t.end();
}
