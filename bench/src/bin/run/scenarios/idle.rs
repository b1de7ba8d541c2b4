//! Idle streams (`idle`) and a topic per stream (`per-user`): the server's memory per stream,
//! once they are open and once each has received an event.

use std::time::{Duration, Instant};

use crate::clients::strings;
use crate::clients::{Delivery, Subscribers, publish_args, publish_many_args, publish_many_how};
use crate::ctx::{Ctx, stop};
use crate::measure::{rss_kib, slab_kib, sockstat_pages};
use crate::report::markdown::{Table, fixed, heading, paragraph, times};
use crate::servers::Server;

use super::Results;

/// Which topics the idle streams subscribe to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topics {
    /// All to `/events/idle`.
    Shared,
    /// Each to its own, `/events/u{i}` (the per-user scenario).
    Own,
}

/// One idle run: a server, its streams and their topics, the growth per stream.
pub(crate) struct IdleRow {
    pub(crate) server: String,
    pub(crate) topics: Topics,
    pub(crate) connections: u64,
    pub(crate) established: u64,
    /// Server RSS growth per stream, KiB, once they are open.
    pub(crate) rss_kib_per_conn: f64,
    /// The same, once every connection has received one event (every server has then
    /// written to each connection at least once, as it does for its first keep-alive).
    pub(crate) rss_after_event_kib_per_conn: Option<f64>,
    /// Kernel socket buffers and slab growth per stream, KiB.
    pub(crate) sock_kib_per_conn: f64,
    pub(crate) slab_kib_per_conn: f64,
    /// Streams that received their event, and events that reached a stream of another topic.
    pub(crate) receiving: u64,
    pub(crate) misrouted: u64,
}

/// `n` idle streams on a fresh server: RSS growth per stream once they are open, and again once
/// each has received one event. With [`Topics::Own`] every stream has its own topic and every
/// topic gets its own event (checked: each stream must receive one, naming its topic).
pub(crate) fn idle(
    ctx: &mut Ctx,
    server: &Server,
    n: u64,
    topics: Topics,
    res: &mut Results,
) -> Result<(), String> {
    let running = ctx.start(server, &[])?;
    let pid = running.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, sock0, slab0) = (rss_kib(pid), sockstat_pages(), slab_kib());
    let (path, label) = match topics {
        Topics::Shared => ("idle", "idle"),
        Topics::Own => ("u{i}", "per-user"),
    };
    let url = format!("http://{}/events/{path}", running.addr);
    let subs = Subscribers::open(ctx, &url, n, &format!("{label}-{}-{n}", server.name), 120.0);
    std::thread::sleep(Duration::from_secs(2));
    let (rss1, sock1, slab1) = (rss_kib(pid), sockstat_pages(), slab_kib());
    let mut subs = subs;
    let established = subs.established;
    // Then one event to every connection: the figure after it is the steady state, where
    // each server has written to each connection (a first keep-alive would do the same).
    let _ = subs.snapshot();
    // How many streams an event was sent to.
    let expected = match topics {
        Topics::Shared => {
            let mut args = publish_args(&running.addr, "idle", 10.0, 64);
            args.extend(strings(&["--duration", "5", "--count", "1"]));
            // One event reaches every stream.
            ctx.loadgen_json(&args)["published"]
                .as_u64()
                .unwrap_or(0)
                .min(1)
                * established
        }
        Topics::Own => ctx.loadgen_json(&publish_many_args(&running.addr, "u", n))["published"]
            .as_u64()
            .unwrap_or(0)
            .min(established),
    };
    let (mut delivered, mut last) = (0, Delivery::default());
    let waited = Instant::now();
    while expected > 0 && delivered < established && waited.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        last = subs.snapshot();
        delivered += last.delivered;
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss2 = (expected > 0 && delivered >= established).then(|| rss_kib(pid));
    subs.close();
    stop(running);
    let per = |x: f64| {
        if established > 0 {
            x / established as f64
        } else {
            0.0
        }
    };
    println!(
        "  {label} {n}: {established} established, RSS {rss0} → {rss1} KiB, {} got their event",
        last.receiving
    );
    if established < n {
        ctx.failures.push(format!(
            "{}: {label} {n}: only {established} connections established",
            server.name
        ));
    }
    if expected < established || last.receiving < established || last.misrouted > 0 {
        ctx.failures.push(format!(
            "{}: {label} {n}: {} of {established} streams got their event ({expected} sent, {} misrouted)",
            server.name, last.receiving, last.misrouted
        ));
    }
    res.idle.push(IdleRow {
        server: server.name.into(),
        topics,
        connections: n,
        established,
        rss_kib_per_conn: per(rss1.saturating_sub(rss0) as f64),
        rss_after_event_kib_per_conn: rss2.map(|rss2| per(rss2.saturating_sub(rss0) as f64)),
        sock_kib_per_conn: per(sock1.saturating_sub(sock0) as f64 * 4.0),
        slab_kib_per_conn: per(slab1 as f64 - slab0 as f64),
        receiving: last.receiving,
        misrouted: last.misrouted,
    });
    Ok(())
}

// ---------------------------------------------------------------- report

/// The sections of both scenarios: idle memory per connection (with the plot, `plot` its path
/// from the report) and a topic per stream.
pub(crate) fn report(md: &mut String, res: &Results, plot: &str) {
    heading(md, "Idle memory per connection");
    paragraph(
        md,
        "RSS growth of the server between before and 2 s after all connections are open, divided by the connections; \"after one event\" is the same growth 1 s after every connection has received one 64 B event (the steady state: each server has then written to each connection, as its first keep-alive would); kernel TCP memory is /proc/net/sockstat `mem` growth (socket buffers in use, both ends of each loopback connection; idle sockets hold none) and kernel slab is /proc/meminfo `Slab:` growth (socket, file and epoll structures of both ends and of the client, machine-wide, so noisy), per connection.",
    );
    let mut t = Table::new(
        md,
        &[
            "server",
            "connections",
            "established",
            "server RSS KiB/conn",
            "after one event",
            "kernel socket buffers KiB/conn",
            "kernel slab KiB/conn",
        ],
    );
    for r in res.idle.iter().filter(|r| r.topics == Topics::Shared) {
        t.row(&[
            &r.server,
            &r.connections,
            &r.established,
            &format!("{:.2}", r.rss_kib_per_conn),
            &fixed(r.rss_after_event_kib_per_conn),
            &format!("{:.2}", r.sock_kib_per_conn),
            &format!("{:.2}", r.slab_kib_per_conn),
        ]);
    }
    t.end();
    paragraph(md, &format!("![memory per connection]({plot})"));

    heading(md, "A topic per stream (per-user)");
    let publishing = publish_many_how();
    paragraph(
        md,
        &format!(
            "The same measurement with every stream on its own topic (`GET /events/u{{i}}`), on a fresh server, beside the shared-topic figure of the table above (same run, same count); \"after one event each\" follows one 64 B event published to every topic (`loadgen publish-many`: {publishing}); a stream counts as served when it received an event naming its own topic (an event naming another is misrouted)."
        ),
    );
    let mut t = Table::new(
        md,
        &[
            "server",
            "streams",
            "established",
            "own topic RSS KiB/stream",
            "shared topic KiB/conn",
            "own ÷ shared",
            "after one event each",
            "streams that got their event",
            "misrouted",
        ],
    );
    for r in res.idle.iter().filter(|r| r.topics == Topics::Own) {
        let shared = res.idle_rss(&r.server, r.connections, Topics::Shared);
        t.row(&[
            &r.server,
            &r.connections,
            &r.established,
            &format!("{:.2}", r.rss_kib_per_conn),
            &fixed(shared),
            &times(Some(r.rss_kib_per_conn), shared),
            &fixed(r.rss_after_event_kib_per_conn),
            &r.receiving,
            &r.misrouted,
        ]);
    }
    t.end();
}
