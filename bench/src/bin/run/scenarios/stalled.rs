//! Issue 12's first target: "1 000 clients that never read hold at most 1 000 × the configured
//! send buffer of kernel memory, and all are disconnected within `write_timeout` plus one
//! keep-alive interval."
//!
//! The tower-sse server served by `tower_sse::serve` (`SERVE=1`) with a 64 KiB send buffer
//! (`SEND_BUFFER`), a 5 s write timeout and a 2 s keep-alive. `loadgen stall` opens the clients
//! that never read, each with a 4 KiB receive buffer, and a polite reader subscribes to the same
//! topic. `ss` is read every [`SAMPLE`] for the server's side of every stalled connection: its
//! send queue (`Send-Q`, unacknowledged bytes) and its kernel memory (`skmem`: `w`, the bytes
//! its send queue holds in the kernel, and `tb`, the send buffer the kernel enforces).
//!
//! Two phases, each with its own N stalled connections:
//! - *busy*: 1 KiB events at [`BUSY_RATE`] for longer than the timeouts, so the streams always
//!   have something to send;
//! - *quiet*: 1 KiB events at [`QUIET_RATE`] only until every stalled socket is full, then none,
//!   so the streams have only keep-alives to send: the case the "plus one keep-alive interval"
//!   of the target is for.
//!
//! A connection's stall starts at the sample where its send queue was last seen to grow (the
//! server's last write into it, to within one sample) and ends at the first sample where the
//! server's socket is no longer established (`tower_sse::serve` resets it, so it is gone).

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::clients::{Subscribers, forward_ready, publish_args, source_ips, strings};
use crate::ctx::{Ctx, signal, stop};
use crate::measure::{rss_kib, sockstat_pages};
use crate::plan::Plan;
use crate::report::markdown::{Table, fixed, heading, kib, paragraph};
use crate::report::verdict::{Bound, Verdict, judge};
use crate::servers::Server;

use super::Results;

/// The send buffer the server is configured with (`SEND_BUFFER`, `Serve::send_buffer_size`).
const SEND_BUFFER: u64 = 64 * 1024;
/// The layer's write timeout and keep-alive interval in this scenario, s.
const WRITE_TIMEOUT_S: u64 = 5;
const KEEP_ALIVE_S: u64 = 2;
/// The receive buffer (`SO_RCVBUF`) of the clients that never read, bytes.
const RCVBUF: u64 = 4096;
/// Event data size, bytes.
const EVENT_BYTES: u64 = 1024;
/// Events per second while the streams are kept busy.
const BUSY_RATE: f64 = 100.0;
/// Events per second while the quiet phase fills the sockets.
const QUIET_RATE: f64 = 20.0;
/// How often `ss` is read.
pub(crate) const SAMPLE: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------- shared with `shutdown`

/// The server's side of one TCP connection, as `ss -tanmO` shows it.
pub(crate) struct Sock {
    pub(crate) state: String,
    /// Bytes sent and not yet acknowledged (`Send-Q`).
    pub(crate) send_q: u64,
    /// The client's address, `ip:port`.
    pub(crate) peer: String,
    /// `skmem` `w`: the memory its send queue holds in the kernel (`sk_wmem_queued`), bytes.
    pub(crate) wmem: u64,
    /// `skmem` `tb`: the send buffer the kernel enforces (`sk_sndbuf`), bytes.
    pub(crate) sndbuf: u64,
}

impl Sock {
    /// Whether the server still holds the connection open: established, or closed by the
    /// client only. After the server's close it is in FIN-WAIT or TIME-WAIT, or gone.
    pub(crate) fn open(&self) -> bool {
        matches!(self.state.as_str(), "ESTAB" | "CLOSE-WAIT" | "SYN-RECV")
    }
}

/// Every connection of the server listening on `port` (not the listener), from `ss`.
pub(crate) fn sockets(port: u16) -> Vec<Sock> {
    let out = Command::new("ss")
        .args(["-HtanmO", "sport", "=", &format!(":{port}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 || f[0] == "LISTEN" {
                return None;
            }
            let skmem = |key: &str| -> u64 {
                f.iter()
                    .find_map(|x| x.strip_prefix("skmem:("))
                    .and_then(|m| {
                        m.trim_end_matches(')').split(',').find_map(|kv| {
                            let digits = kv.strip_prefix(key)?;
                            digits.parse().ok()
                        })
                    })
                    .unwrap_or(0)
            };
            Some(Sock {
                state: f[0].to_owned(),
                send_q: f[2].parse().unwrap_or(0),
                peer: f[4].to_owned(),
                wmem: skmem("w"),
                sndbuf: skmem("tb"),
            })
        })
        .collect()
}

/// The port of `addr` (`ip:port`).
pub(crate) fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// A `loadgen stall` process holding connections that never read (or never finish their head).
pub(crate) struct Stall {
    child: Option<Child>,
    pub(crate) established: u64,
    pub(crate) errors: u64,
}

impl Stall {
    /// Starts `loadgen stall` with `n` connections from `ips` to `url`, and waits until they are
    /// all there (at most 60 s). `extra` are more arguments (`--rcvbuf`, `--half-head`).
    pub(crate) fn open(
        ctx: &mut Ctx,
        url: &str,
        n: u64,
        ips: &str,
        extra: &[&str],
        bound_secs: f64,
    ) -> Stall {
        let mut args = strings(&[
            "stall",
            "--url",
            url,
            "--connections",
            &n.to_string(),
            "--source-ips",
            ips,
            "--duration",
            &bound_secs.to_string(),
        ]);
        args.extend(strings(extra));
        let mut child = match ctx.loadgen(&args).stdout(Stdio::piped()).spawn() {
            Ok(c) => c,
            Err(e) => {
                ctx.failures.push(format!("loadgen stall: {e}"));
                return Stall {
                    child: None,
                    established: 0,
                    errors: n,
                };
            }
        };
        let (tx, rx) = mpsc::channel();
        forward_ready(child.stdout.take().expect("piped"), tx);
        let (established, errors) = rx.recv_timeout(Duration::from_secs(60)).unwrap_or((0, n));
        Stall {
            child: Some(child),
            established,
            errors,
        }
    }

    /// Ends the process, which closes its connections.
    pub(crate) fn close(self) {
        if let Some(mut child) = self.child {
            signal(child.id(), "-TERM");
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------- the sampler

/// What the samples showed of one stalled connection.
#[derive(Clone, Copy, Default)]
struct Track {
    send_q: u64,
    /// The sample where its send queue was last seen to grow.
    grew: Option<Instant>,
    /// The first sample where the server no longer held it open.
    closed: Option<Instant>,
    peak_wmem: u64,
    sndbuf: u64,
}

#[derive(Default)]
struct Samples {
    tracks: HashMap<String, Track>,
    /// The largest sums, over the stalled connections, of `w` and of `Send-Q`, in one sample.
    peak_wmem_sum: u64,
    peak_send_q_sum: u64,
    /// The largest /proc/net/sockstat TCP `mem` (pages) and server RSS (KiB) in one sample.
    peak_pages: u64,
    peak_rss: u64,
    samples: u64,
    /// The longest a sample took.
    slowest: Duration,
}

struct Sampler {
    done: Arc<AtomicBool>,
    samples: Arc<Mutex<Samples>>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    /// Samples the connections of the server on `port` (process `pid`) whose peer address
    /// starts with `prefix`.
    fn start(port: u16, prefix: &'static str, pid: u32) -> Sampler {
        let done = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Samples::default()));
        let thread = {
            let (done, samples) = (done.clone(), samples.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    let socks = sockets(port);
                    let (pages, rss) = (sockstat_pages(), rss_kib(pid));
                    let mut s = samples.lock().expect("sampler");
                    let mut seen = HashSet::new();
                    let (mut wmem, mut send_q) = (0, 0);
                    for sock in socks.iter().filter(|s| s.peer.starts_with(prefix)) {
                        seen.insert(sock.peer.clone());
                        let t = s.tracks.entry(sock.peer.clone()).or_default();
                        if sock.send_q > t.send_q {
                            t.grew = Some(now);
                        }
                        t.send_q = sock.send_q;
                        if !sock.open() && t.closed.is_none() {
                            t.closed = Some(now);
                        }
                        t.peak_wmem = t.peak_wmem.max(sock.wmem);
                        t.sndbuf = t.sndbuf.max(sock.sndbuf);
                        wmem += sock.wmem;
                        send_q += sock.send_q;
                    }
                    for (peer, t) in s.tracks.iter_mut() {
                        if t.closed.is_none() && !seen.contains(peer) {
                            t.closed = Some(now);
                        }
                    }
                    s.peak_wmem_sum = s.peak_wmem_sum.max(wmem);
                    s.peak_send_q_sum = s.peak_send_q_sum.max(send_q);
                    s.peak_pages = s.peak_pages.max(pages);
                    s.peak_rss = s.peak_rss.max(rss);
                    s.samples += 1;
                    s.slowest = s.slowest.max(now.elapsed());
                    drop(s);
                    std::thread::sleep(SAMPLE.saturating_sub(now.elapsed()));
                }
            })
        };
        Sampler {
            done,
            samples,
            thread,
        }
    }

    /// Reads the samples so far.
    fn with<T>(&self, f: impl FnOnce(&Samples) -> T) -> T {
        f(&self.samples.lock().expect("sampler"))
    }

    fn finish(self) -> Samples {
        self.done.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        std::mem::take(&mut *self.samples.lock().expect("sampler"))
    }
}

// ---------------------------------------------------------------- the scenario

/// One phase of the stalled scenario.
pub(crate) struct StalledRow {
    phase: &'static str,
    connections: u64,
    established: u64,
    published: u64,
    /// Connections whose send queue was seen to grow and to stop.
    filled: u64,
    /// Connections the server no longer held open by the end.
    closed: u64,
    /// The largest `w` of one connection, and its `tb`.
    max_wmem: u64,
    sndbuf: u64,
    peak_wmem_sum: u64,
    peak_send_q_sum: u64,
    /// Peak growth of /proc/net/sockstat TCP memory and of the server's RSS, KiB.
    sockstat_kib: u64,
    rss_kib: u64,
    /// Per connection, from its last write to its close, s (sorted).
    stall_to_close: Vec<f64>,
    /// From the last write into any of them until the last was closed, s.
    last_fill_to_all_closed: Option<f64>,
    /// The polite reader: events received in this phase, and published.
    polite_delivered: u64,
    samples: u64,
    slowest_sample_ms: f64,
}

impl StalledRow {
    fn max_stall(&self) -> Option<f64> {
        self.stall_to_close.last().copied()
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.stall_to_close.len();
        (n > 0).then(|| self.stall_to_close[((n - 1) as f64 * q).round() as usize])
    }
}

/// The figures and settings of the stalled scenario, for the report.
pub(crate) struct StalledRun {
    rows: Vec<StalledRow>,
    /// The polite reader at the end: whether the server closed it, and its errors.
    polite_closed: u64,
    polite_errors: u64,
}

fn publish(ctx: &mut Ctx, addr: &str, rate: f64, secs: f64, count: Option<u64>) -> u64 {
    let mut args = publish_args(addr, "stall", rate, EVENT_BYTES);
    args.extend(strings(&["--duration", &secs.to_string()]));
    if let Some(count) = count {
        args.extend(strings(&["--count", &count.to_string()]));
    }
    ctx.loadgen_json(&args)["published"].as_u64().unwrap_or(0)
}

/// Waits until the sampler has seen every one of `n` connections closed, at most `bound`.
fn wait_closed(sampler: &Sampler, n: u64, bound: Duration) {
    let start = Instant::now();
    while start.elapsed() < bound {
        let all = sampler
            .with(|s| s.tracks.len() as u64 >= n && s.tracks.values().all(|t| t.closed.is_some()));
        if all {
            // One more sample, so that the last close is seen by a full sample.
            std::thread::sleep(SAMPLE * 2);
            return;
        }
        std::thread::sleep(SAMPLE);
    }
}

/// The figures of a phase from its samples.
#[allow(clippy::too_many_arguments)]
fn row(
    phase: &'static str,
    n: u64,
    stall: &Stall,
    published: u64,
    polite_delivered: u64,
    s: &Samples,
    pages0: u64,
    rss0: u64,
) -> StalledRow {
    let mut stall_to_close: Vec<f64> = s
        .tracks
        .values()
        .filter_map(|t| Some(t.closed?.saturating_duration_since(t.grew?).as_secs_f64()))
        .collect();
    stall_to_close.sort_by(f64::total_cmp);
    let last_fill = s.tracks.values().filter_map(|t| t.grew).max();
    let all_closed = s
        .tracks
        .values()
        .all(|t| t.closed.is_some())
        .then(|| s.tracks.values().filter_map(|t| t.closed).max())
        .flatten();
    let biggest = s.tracks.values().max_by_key(|t| t.peak_wmem);
    StalledRow {
        phase,
        connections: n,
        established: stall.established,
        published,
        filled: s.tracks.values().filter(|t| t.grew.is_some()).count() as u64,
        closed: s.tracks.values().filter(|t| t.closed.is_some()).count() as u64,
        max_wmem: biggest.map_or(0, |t| t.peak_wmem),
        sndbuf: s.tracks.values().map(|t| t.sndbuf).max().unwrap_or(0),
        peak_wmem_sum: s.peak_wmem_sum,
        peak_send_q_sum: s.peak_send_q_sum,
        sockstat_kib: s.peak_pages.saturating_sub(pages0) * 4,
        rss_kib: s.peak_rss.saturating_sub(rss0),
        stall_to_close,
        last_fill_to_all_closed: match (last_fill, all_closed) {
            (Some(fill), Some(closed)) => {
                Some(closed.saturating_duration_since(fill).as_secs_f64())
            }
            _ => None,
        },
        polite_delivered,
        samples: s.samples,
        slowest_sample_ms: s.slowest.as_secs_f64() * 1000.0,
    }
}

/// The stalled scenario on the tower-sse server: the busy phase, then the quiet one.
pub(crate) fn stalled(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    res: &mut Results,
) -> Result<(), String> {
    let n = plan.stalled;
    let (send_buffer, write_timeout, keep_alive) = (
        SEND_BUFFER.to_string(),
        WRITE_TIMEOUT_S.to_string(),
        KEEP_ALIVE_S.to_string(),
    );
    let running = ctx.start(
        server,
        &[
            ("SERVE", "1"),
            ("SEND_BUFFER", &send_buffer),
            ("WRITE_TIMEOUT", &write_timeout),
            ("KEEP_ALIVE", &keep_alive),
        ],
    )?;
    let (pid, port) = (running.child.id(), port_of(&running.addr));
    let addr = running.addr.clone();
    let url = format!("http://{addr}/events/stall");
    let timeouts = Duration::from_secs(WRITE_TIMEOUT_S + KEEP_ALIVE_S);
    let bound = 300.0;
    std::thread::sleep(Duration::from_millis(300));
    let (pages0, rss0) = (sockstat_pages(), rss_kib(pid));
    let mut polite = Subscribers::open(ctx, &url, 1, "stall-polite", bound);
    let _ = polite.snapshot();
    let mut rows = Vec::new();

    // Busy: events keep coming, for longer than the timeouts.
    let stall = Stall::open(
        ctx,
        &url,
        n,
        &source_ips(1, 1, 8),
        &["--rcvbuf", &RCVBUF.to_string()],
        bound,
    );
    let sampler = Sampler::start(port, "127.0.1.", pid);
    let busy_secs = (timeouts + Duration::from_secs(3)).as_secs_f64();
    let published = publish(ctx, &addr, BUSY_RATE, busy_secs, None);
    wait_closed(
        &sampler,
        stall.established,
        timeouts + Duration::from_secs(15),
    );
    let samples = sampler.finish();
    std::thread::sleep(Duration::from_millis(500));
    let delivered = polite.snapshot().delivered;
    let busy = row(
        "busy", n, &stall, published, delivered, &samples, pages0, rss0,
    );
    stall.close();
    println!(
        "  stalled busy {n}: {} closed, max {:?} s from the last write to the close, peak Σw {} KiB",
        busy.closed,
        busy.max_stall(),
        busy.peak_wmem_sum / 1024
    );
    rows.push(busy);

    // Quiet: events only until every socket is full, then keep-alives only.
    std::thread::sleep(Duration::from_secs(1));
    let (pages0, rss0) = (sockstat_pages(), rss_kib(pid));
    let stall = Stall::open(
        ctx,
        &url,
        n,
        &source_ips(3, 1, 8),
        &["--rcvbuf", &RCVBUF.to_string()],
        bound,
    );
    let sampler = Sampler::start(port, "127.0.3.", pid);
    let mut published = 0;
    let filling = Instant::now();
    // Two events at a time; full once every socket's send queue has stopped growing for two
    // samples.
    while filling.elapsed() < Duration::from_secs(60) {
        published += publish(ctx, &addr, QUIET_RATE, 5.0, Some(2));
        let full = sampler.with(|s| {
            s.tracks.len() as u64 >= stall.established
                && s.tracks.values().all(|t| {
                    t.closed.is_some()
                        || t.grew
                            .is_some_and(|g| g.elapsed() >= SAMPLE * 2 && t.send_q > 0)
                })
        });
        if full {
            break;
        }
    }
    wait_closed(
        &sampler,
        stall.established,
        timeouts + Duration::from_secs(60),
    );
    let samples = sampler.finish();
    std::thread::sleep(Duration::from_millis(500));
    let delivered = polite.snapshot().delivered;
    let quiet = row(
        "quiet", n, &stall, published, delivered, &samples, pages0, rss0,
    );
    stall.close();
    println!(
        "  stalled quiet {n}: {} closed, max {:?} s from the last write to the close",
        quiet.closed,
        quiet.max_stall()
    );
    rows.push(quiet);

    let end = polite.close();
    stop(running);
    for r in &rows {
        if r.established < n {
            ctx.failures.push(format!(
                "stalled {}: {} of {n} stalled connections established",
                r.phase, r.established
            ));
        }
        if r.polite_delivered < r.published {
            ctx.failures.push(format!(
                "stalled {}: the polite reader got {} of {} events",
                r.phase, r.polite_delivered, r.published
            ));
        }
    }
    res.stalled = Some(StalledRun {
        rows,
        polite_closed: end.closed,
        polite_errors: end.errors,
    });
    Ok(())
}

// ---------------------------------------------------------------- report

/// The stalled scenario's section of the report, if it ran.
pub(crate) fn report(md: &mut String, res: &Results) {
    let Some(run) = &res.stalled else {
        return;
    };
    heading(md, "Stalled readers (issue 12)");
    paragraph(
        md,
        &format!(
            "The tower-sse server served by `tower_sse::serve` (`SERVE=1`) with a send buffer of \
             {} KiB (`SEND_BUFFER={SEND_BUFFER}`, `Serve::send_buffer_size`), \
             `WRITE_TIMEOUT={WRITE_TIMEOUT_S}` s and `KEEP_ALIVE={KEEP_ALIVE_S}` s. In each phase, \
             `loadgen stall` opens N connections that read their response head and then never read \
             again, each with `SO_RCVBUF` {RCVBUF} B, while one polite reader (`loadgen subscribe`) \
             reads the same topic throughout. {EVENT_BYTES} B events: in the *busy* phase at \
             {BUSY_RATE} ev/s for {} s (longer than both timeouts), in the *quiet* phase at \
             {QUIET_RATE} ev/s, two at a time, only until every stalled socket's send queue has \
             stopped growing, then none (keep-alives only). `ss -tanmO` is read every {} ms for the \
             server's side of the stalled connections: `w` (skmem `wmem_queued`: what the send queue \
             holds in kernel memory), `tb` (skmem `sndbuf`: the send buffer the kernel enforces), \
             and `Send-Q`. A connection's stall starts at the sample where its `Send-Q` last grew \
             (the server's last write into it, to one sample) and ends at the first sample where the \
             server no longer holds it open (`serve` resets it; it is gone). sockstat is the peak \
             growth of /proc/net/sockstat TCP `mem` (machine-wide, both ends, other processes \
             included); RSS is the server's peak growth.",
            SEND_BUFFER / 1024,
            WRITE_TIMEOUT_S + KEEP_ALIVE_S + 3,
            SAMPLE.as_millis()
        ),
    );
    let mut t = Table::new(
        md,
        &[
            "phase",
            "N",
            "established",
            "filled",
            "closed",
            "published",
            "polite got",
            "peak Σ w KiB",
            "peak Σ Send-Q KiB",
            "max w of one KiB",
            "tb KiB",
            "sockstat KiB",
            "server RSS KiB",
            "last write → close s: p50 / max",
            "last fill → all closed s",
        ],
    );
    for r in &run.rows {
        t.row(&[
            &r.phase,
            &r.connections,
            &r.established,
            &r.filled,
            &r.closed,
            &r.published,
            &r.polite_delivered,
            &format!("{:.0}", kib(r.peak_wmem_sum)),
            &format!("{:.0}", kib(r.peak_send_q_sum)),
            &format!("{:.1}", kib(r.max_wmem)),
            &format!("{:.0}", kib(r.sndbuf)),
            &r.sockstat_kib,
            &r.rss_kib,
            &format!("{} / {}", fixed(r.quantile(0.5)), fixed(r.max_stall())),
            &fixed(r.last_fill_to_all_closed),
        ]);
    }
    t.end();
    paragraph(
        md,
        &format!(
            "The polite reader was closed by the server {} time(s), with {} error(s), over both \
             phases. Samples: {}; the slowest took {:.0} ms.",
            run.polite_closed,
            run.polite_errors,
            run.rows.iter().map(|r| r.samples).sum::<u64>(),
            run.rows
                .iter()
                .map(|r| r.slowest_sample_ms)
                .fold(0.0, f64::max)
        ),
    );
    // Verdicts. Memory: against N × the configured send buffer, the target's words. Linux
    // doubles the value set with `SO_SNDBUF` (socket(7)), so `serve` asks for half and the
    // kernel enforces the configured figure (`tb`); a queue may still pass it by part of one
    // packet (the kernel checks the limit before it queues the next packet), which the
    // ratio to N × `tb` and the largest single queue show. Time: the slowest connection, with
    // one sample of slack for the sampling; one never closed is never.
    let bound = (WRITE_TIMEOUT_S + KEEP_ALIVE_S) as f64;
    let slack = SAMPLE.as_secs_f64();
    let mut t = Table::new(md, &["target", "phase", "measured", "bound", "verdict"]);
    for r in &run.rows {
        let n = r.connections as f64;
        let configured = n * SEND_BUFFER as f64;
        let enforced = n * r.sndbuf as f64;
        let wmem = r.peak_wmem_sum as f64;
        let verdict = match judge((r.filled > 0).then_some(wmem), Bound::AtMost(configured)) {
            Verdict::Missed => format!(
                "{} by {:.1} %: each queue may pass `SO_SNDBUF` by part of one packet ({:.3}× N × `tb`)",
                Verdict::Missed,
                (wmem / configured - 1.0) * 100.0,
                wmem / enforced
            ),
            verdict => verdict.to_string(),
        };
        t.row(&[
            &"kernel memory of N stalled readers ≤ N × the configured send buffer",
            &r.phase,
            &format!(
                "peak Σ w {:.1} MiB (Σ Send-Q, the bytes, {:.1} MiB); largest w of one {:.1} KiB, `tb` {} KiB",
                wmem / 1048576.0,
                r.peak_send_q_sum as f64 / 1048576.0,
                kib(r.max_wmem),
                r.sndbuf / 1024
            ),
            &format!(
                "N × {} KiB = {:.1} MiB",
                SEND_BUFFER / 1024,
                configured / 1048576.0
            ),
            &verdict,
        ]);
        let slowest = (r.established > 0).then(|| match r.max_stall() {
            Some(max) if r.closed >= r.established => max,
            _ => f64::INFINITY,
        });
        t.row(&[
            &"all disconnected within write_timeout + keep-alive",
            &r.phase,
            &format!(
                "{} of {} closed, slowest {} s after its last write",
                r.closed,
                r.established,
                fixed(r.max_stall())
            ),
            &format!("{bound:.0} s (+ {slack:.1} s sampling)"),
            &judge(slowest, Bound::AtMost(bound + slack)),
        ]);
    }
    t.end();
}
