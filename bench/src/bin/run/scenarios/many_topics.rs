//! Many topics (`many-topics`): one event to each of many topics, no subscriber, on a server told
//! to expire them: its RSS at start, after the publishing, and once it holds still past the
//! expiry.

use std::fmt::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::clients::{PER_TOPIC_CONNS, plain_args, publish_many_args, publish_many_how};
use crate::ctx::{Ctx, stop};
use crate::measure::{rss_kib, settle, steady_rss};
use crate::plan::Plan;
use crate::report::markdown::{Table, heading, mib, paragraph, percent};
use crate::report::verdict;
use crate::servers::Server;

use super::Results;

/// The history age and idle-topic TTL of the many-topics scenario, ms (`HISTORY_AGE_MS`,
/// `TOPIC_IDLE_TTL_MS` in the server's environment).
const EXPIRY_MS: u64 = 2000;

/// How long the RSS must hold still (within 1 %) to be read as after expiry: longer than
/// jemalloc's decay time (10 s), over which it returns freed pages in steps (with
/// `background_thread:true`, ~10 s apart here).
const HOLD: Duration = Duration::from_secs(12);

/// One server's run.
pub(crate) struct ManyRow {
    pub(crate) server: String,
    pub(crate) topics: u64,
    pub(crate) published: u64,
    pub(crate) errors: u64,
    pub(crate) per_s: f64,
    /// Before anything, and after the warm-up on `/plain` (the start the others are read
    /// against).
    pub(crate) rss_fresh: u64,
    pub(crate) rss_start: u64,
    pub(crate) rss_published: u64,
    pub(crate) rss_expired: u64,
    /// After expiry, then the same warm-up on `/plain` as before `rss_start`: what an allocator
    /// that returns memory only when the process allocates again has returned.
    pub(crate) rss_served: u64,
    /// From the start of the publishing until the RSS was read after expiry.
    pub(crate) waited_s: f64,
    /// What the server said it did with the expiry settings (its `expiry:` line).
    pub(crate) expiry: String,
}

impl ManyRow {
    /// `rss` (one of the readings after expiry) against RSS at start: 0.1 is 10 % more.
    pub(crate) fn vs_start(&self, rss: u64) -> Option<f64> {
        verdict::ratio(Some(rss as f64), Some(self.rss_start as f64)).map(|r| r - 1.0)
    }
}

/// One event to each of `plan.many_topics` topics, no subscriber, on a server told to expire
/// history after [`EXPIRY_MS`] and idle topics after as long: RSS at start, after the publishing
/// and once it holds still past the expiry.
pub(crate) fn many_topics(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    res: &mut Results,
) -> Result<(), String> {
    let expiry = EXPIRY_MS.to_string();
    let env = [
        ("HISTORY_AGE_MS", expiry.as_str()),
        ("TOPIC_IDLE_TTL_MS", expiry.as_str()),
        // nchan keeps ~0.6 KiB of shared memory per channel with one message: 1M topics do not
        // fit in its default 128M (the others ignore this).
        ("NCHAN_SHARED_MEMORY", "1024M"),
    ];
    let running = ctx.start(server, &env)?;
    let pid = running.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let rss_fresh = rss_kib(pid);
    // As many keep-alive connections on `/plain` first: what serving them costs (buffers the
    // allocator keeps) is then in the start figure, and the growth after it is the topics'.
    let _ = ctx.loadgen_json(&plain_args(&running.addr, PER_TOPIC_CONNS, 0.5));
    std::thread::sleep(Duration::from_millis(500));
    let rss_start = rss_kib(pid);
    let began = Instant::now();
    let v = ctx.loadgen_json(&publish_many_args(&running.addr, "m", plan.many_topics));
    let published = v["published"].as_u64().unwrap_or(0);
    let errors = v["errors"].as_u64().unwrap_or(0);
    settle(pid, Duration::from_secs(15));
    let rss_published = rss_kib(pid);
    // The last topic was published just now: its event expires after the history age, the
    // topic after the idle TTL from then. From a second past that, wait for the RSS to hold
    // still for [`HOLD`] (a sweep may run late; an allocator may return pages in steps), at
    // most 60 s more.
    let expired_at = Instant::now() + Duration::from_millis(2 * EXPIRY_MS);
    let bound = expired_at + Duration::from_secs(60);
    let rss_expired = steady_rss(pid, expired_at + Duration::from_secs(1), HOLD, bound);
    let waited_s = began.elapsed().as_secs_f64();
    // Then serving again, as at the start: the same warm-up, the same wait.
    let _ = ctx.loadgen_json(&plain_args(&running.addr, PER_TOPIC_CONNS, 0.5));
    std::thread::sleep(Duration::from_millis(500));
    let rss_served = rss_kib(pid);
    let said = std::fs::read_to_string(&running.log).unwrap_or_default();
    let mut expiry = said
        .lines()
        .find_map(|l| l.strip_prefix("expiry: "))
        .unwrap_or("(the server did not say)")
        .to_owned();
    if let Some(status) = server.status {
        // Its own count, once it has dropped every channel (or at the bound).
        let counts = loop {
            let counts = status_counts(&running.addr, status);
            if counts.split(", ").any(|c| c == "channels: 0") || Instant::now() >= bound {
                break counts;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let _ = write!(
            expiry,
            "; `GET {status}` {:.0} s after the publishing began: {counts}",
            began.elapsed().as_secs_f64()
        );
    }
    stop(running);
    println!(
        "  many topics {}: {published} published ({errors} errors) at {:.0}/s, RSS {rss_fresh} → {rss_start} → {rss_published} → {rss_expired} KiB, {rss_served} KiB serving again",
        plan.many_topics,
        v["per_s"].as_f64().unwrap_or(0.0)
    );
    if published < plan.many_topics {
        ctx.failures.push(format!(
            "{}: many topics: {published} of {} published ({errors} errors)",
            server.name, plan.many_topics
        ));
    }
    res.many.push(ManyRow {
        server: server.name.into(),
        topics: plan.many_topics,
        published,
        errors,
        per_s: v["per_s"].as_f64().unwrap_or(0.0),
        rss_fresh,
        rss_start,
        rss_published,
        rss_expired,
        rss_served,
        waited_s,
        expiry,
    });
    Ok(())
}

/// The lines of `GET path` on `addr` that count topics and memory (nchan's stub status:
/// `channels: N`, `stored messages: N`, `shared memory used: NK`), joined.
fn status_counts(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut text = String::new();
    let got = TcpStream::connect(addr).and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        s.read_to_string(&mut text)
    });
    if let Err(e) = got {
        return format!("no answer ({e})");
    }
    text.lines()
        .filter(|l| {
            ["channels:", "stored messages:", "shared memory used:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------- report

/// The scenario's section.
pub(crate) fn report(md: &mut String, plan: &Plan, res: &Results) {
    heading(md, "Many topics");
    let publishing = publish_many_how();
    paragraph(
        md,
        &format!(
            "One 64 B event to each of {} distinct topics (`POST /publish/m{{i}}`), with no subscriber, from `loadgen publish-many` ({publishing}), on a fresh server started with `HISTORY_AGE_MS={EXPIRY_MS} TOPIC_IDLE_TTL_MS={EXPIRY_MS}` (what each server made of them is in the last column, from its own log). RSS (MiB) of the fresh server; at start, which is after a 0.5 s warm-up of as many keep-alive connections on `GET /plain` (so that what serving the publishing connections costs is not counted as the topics'); once the publishing is done and the server is idle; after expiry, idle: from {} ms (history age, then idle TTL) + 1 s after the last publish, read every 0.5 s until it holds still (within 1 %) for {} s, at most 60 s after the expiry; and serving again: then the same warm-up on `/plain` as before the start figure, read as long after it. \"Growth returned\" is how much of the growth from publishing is gone after expiry, idle; RSS only shows what the server gives back to the operating system (an allocator may keep freed memory, and nchan's shared memory stays resident once touched). The `+jemalloc` rows are the same binaries as the rows without, with Debian's libjemalloc2 preloaded in place of glibc's malloc: as it comes (it returns freed pages over its 10 s decay time, counted on the process's own allocations, so not while the process is idle), and `+jemalloc-bg` with `MALLOC_CONF=background_thread:true` (a thread of its own returns them).",
            plan.many_topics,
            2 * EXPIRY_MS,
            HOLD.as_secs()
        ),
    );
    let mut t = Table::new(
        md,
        &[
            "server",
            "topics",
            "published",
            "errors",
            "published/s",
            "RSS fresh",
            "at start",
            "after publishing",
            "after expiry, idle",
            "vs start",
            "growth returned",
            "serving again",
            "vs start",
            "waited s",
            "expiry, as the server says",
        ],
    );
    for r in &res.many {
        let grew = r.rss_published.saturating_sub(r.rss_start);
        let returned = if grew * 10 < r.rss_start {
            "– (grew < 10%)".to_owned()
        } else {
            format!(
                "{:.0}%",
                r.rss_published.saturating_sub(r.rss_expired) as f64 / grew as f64 * 100.0
            )
        };
        t.row(&[
            &r.server,
            &r.topics,
            &r.published,
            &r.errors,
            &format!("{:.0}", r.per_s),
            &format!("{:.1}", mib(r.rss_fresh)),
            &format!("{:.1}", mib(r.rss_start)),
            &format!("{:.1}", mib(r.rss_published)),
            &format!("{:.1}", mib(r.rss_expired)),
            &percent(r.vs_start(r.rss_expired)),
            &returned,
            &format!("{:.1}", mib(r.rss_served)),
            &percent(r.vs_start(r.rss_served)),
            &format!("{:.0}", r.waited_s),
            &r.expiry,
        ]);
    }
    t.end();
}
