//! The clients: `loadgen` processes, the arguments of each of its modes, and what its
//! subscribers report.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use serde_json::Value;

use crate::ctx::{Ctx, signal};
use crate::measure::{cpu_ticks, settle};

/// Connections per client process: the open-file limit is 20000 per process.
pub(crate) const PER_PROCESS: u64 = 5000;

/// Keep-alive connections, and requests pipelined on each, when publishing to a topic each.
/// Not pipelined: the axum servers do not set `TCP_NODELAY`, so the second of two pipelined
/// answers waits for the client's delayed ACK (~40 ms): 1.4k publishes/s with two in flight
/// against 120k/s with one, here.
pub(crate) const PER_TOPIC_CONNS: u64 = 64;
pub(crate) const PER_TOPIC_PIPELINE: u64 = 1;

/// Arguments as owned strings.
pub(crate) fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Subscriber client processes holding `n` connections between them.
pub(crate) struct Subscribers {
    /// Each process and the path of its report.
    procs: Vec<(Child, String)>,
    /// Connections the processes said were open, and failed, once they were ready.
    pub(crate) established: u64,
    pub(crate) errors: u64,
    snapshots: u32,
}

/// `count` source addresses (`--source-ips`) from `127.0.{net}.{first}` on. A kind of client
/// gets a `net` of its own where `ss` must tell its connections apart by their peer address.
pub(crate) fn source_ips(net: u8, first: u8, count: u8) -> String {
    (first..first + count)
        .map(|i| format!("127.0.{net}.{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Forwards each `ready ESTABLISHED ERRORS` line of a `loadgen` process's stdout to `tx`, on a
/// thread of its own.
pub(crate) fn forward_ready(stdout: ChildStdout, tx: mpsc::Sender<(u64, u64)>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ready ") {
                let v: Vec<u64> = rest.split(' ').filter_map(|x| x.parse().ok()).collect();
                let _ = tx.send((
                    v.first().copied().unwrap_or(0),
                    v.get(1).copied().unwrap_or(0),
                ));
            }
        }
    });
}

impl Subscribers {
    /// A `{i}` in `url` gives each connection its own topic, `i` counting from 0 over all the
    /// processes.
    pub(crate) fn open(
        ctx: &mut Ctx,
        url: &str,
        n: u64,
        tag: &str,
        bound_secs: f64,
    ) -> Subscribers {
        Self::open_with(ctx, url, n, tag, bound_secs, &[])
    }

    /// [`open`](Self::open), with `extra` arguments for each `loadgen subscribe`.
    pub(crate) fn open_with(
        ctx: &mut Ctx,
        url: &str,
        n: u64,
        tag: &str,
        bound_secs: f64,
        extra: &[&str],
    ) -> Subscribers {
        let count = n.div_ceil(PER_PROCESS).max(1);
        let mut procs = Vec::new();
        let (tx, rx) = mpsc::channel();
        let mut first = 0;
        for i in 0..count {
            let share = n / count + u64::from(i < n % count);
            let report = ctx
                .scratch
                .join(format!("{tag}-{i}.json"))
                .display()
                .to_string();
            let mut args = strings(&[
                "subscribe",
                "--url",
                url,
                "--connections",
                &share.to_string(),
                "--source-ips",
                &source_ips(0, 1, 8),
                "--report",
                &report,
                "--duration",
                &bound_secs.to_string(),
                "--first",
                &first.to_string(),
            ]);
            args.extend(strings(extra));
            first += share;
            let mut child = match ctx.loadgen(&args).stdout(Stdio::piped()).spawn() {
                Ok(c) => c,
                Err(e) => {
                    ctx.failures.push(format!("loadgen: {e}"));
                    continue;
                }
            };
            forward_ready(child.stdout.take().expect("piped"), tx.clone());
            procs.push((child, report));
        }
        let (mut established, mut errors) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(90);
        for _ in 0..procs.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((e, r)) => {
                    established += e;
                    errors += r;
                }
                Err(_) => break,
            }
        }
        Subscribers {
            procs,
            established,
            errors,
            snapshots: 0,
        }
    }

    /// SIGUSR1 to every client: each writes what it saw since the last snapshot.
    pub(crate) fn snapshot(&mut self) -> Delivery {
        self.snapshots += 1;
        let k = self.snapshots;
        for (child, _) in &self.procs {
            signal(child.id(), "-USR1");
        }
        let files: Vec<String> = self
            .procs
            .iter()
            .map(|(_, r)| format!("{r}.{k}.json"))
            .collect();
        Delivery::collect(&files)
    }

    /// SIGTERM to every client, and what each saw in all.
    pub(crate) fn close(mut self) -> Delivery {
        for (child, _) in &self.procs {
            signal(child.id(), "-TERM");
        }
        for (child, _) in &mut self.procs {
            let _ = child.wait();
        }
        let files: Vec<String> = self.procs.iter().map(|(_, r)| r.clone()).collect();
        Delivery::collect(&files)
    }
}

/// What the subscriber processes reported, merged.
#[derive(Default)]
pub(crate) struct Delivery {
    /// Events received.
    pub(crate) delivered: u64,
    /// Streams the server ended, and connections that failed.
    pub(crate) closed: u64,
    pub(crate) errors: u64,
    /// Connections that received every event they were behind (`--expect`), and the longest
    /// one took, ms.
    pub(crate) caught_up: u64,
    pub(crate) catch_up_ms: f64,
    /// Connections that have received an event since they opened (not only since the last
    /// snapshot).
    pub(crate) receiving: u64,
    /// Events whose data did not name the connection's own topic, since they opened.
    pub(crate) misrouted: u64,
    /// Response body bytes as they came (de-chunked, still compressed where they were).
    pub(crate) body_bytes: u64,
    /// How many connections received each number of events, since they opened.
    pub(crate) per_connection: BTreeMap<u64, u64>,
    /// Events whose id was not above the one before on their connection, since they opened.
    pub(crate) out_of_order: u64,
    /// Latency, µs.
    hist: Option<Histogram<u64>>,
}

impl Delivery {
    /// Merges the reports `files`, waiting up to 10 s for them to be written.
    pub(crate) fn collect(files: &[String]) -> Delivery {
        let mut d = Delivery::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        for f in files {
            while !Path::new(f).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let v: Value = std::fs::read_to_string(f)
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(Value::Null);
            let u = |k: &str| v[k].as_u64().unwrap_or(0);
            d.delivered += u("delivered");
            d.closed += u("closed_by_server");
            d.errors += u("errors");
            d.caught_up += u("caught_up");
            d.receiving += u("receiving");
            d.misrouted += u("misrouted");
            d.body_bytes += u("body_bytes");
            d.out_of_order += u("out_of_order");
            if let Some(counts) = v["events_per_connection"].as_object() {
                for (events, conns) in counts {
                    if let Ok(events) = events.parse() {
                        *d.per_connection.entry(events).or_default() += conns.as_u64().unwrap_or(0);
                    }
                }
            }
            d.catch_up_ms = d
                .catch_up_ms
                .max(v["catch_up_max_ms"].as_f64().unwrap_or(0.0));
            if let Ok(bytes) = std::fs::read(format!("{f}.hist"))
                && let Ok(h) = Deserializer::new().deserialize::<u64, _>(&mut bytes.as_slice())
            {
                match d.hist.as_mut() {
                    Some(acc) => {
                        let _ = acc.add(&h);
                    }
                    None => d.hist = Some(h),
                }
            }
        }
        d
    }

    /// The latency at quantile `q`, ms.
    pub(crate) fn q_ms(&self, q: f64) -> Option<f64> {
        let h = self.hist.as_ref().filter(|h| !h.is_empty())?;
        Some(h.value_at_quantile(q) as f64 / 1000.0)
    }
}

/// `loadgen publish-many`: one 64 B event to each of the topics `{prefix}0`…, over
/// [`PER_TOPIC_CONNS`] keep-alive connections with [`PER_TOPIC_PIPELINE`] requests pipelined on
/// each.
pub(crate) fn publish_many_args(addr: &str, prefix: &str, topics: u64) -> Vec<String> {
    strings(&[
        "publish-many",
        "--url",
        &format!("http://{addr}"),
        "--prefix",
        prefix,
        "--topics",
        &topics.to_string(),
        "--connections",
        &PER_TOPIC_CONNS.to_string(),
        "--pipeline",
        &PER_TOPIC_PIPELINE.to_string(),
        "--size",
        "64",
        "--duration",
        "600",
    ])
}

/// `loadgen plain` against `addr`: `connections` keep-alive connections for `secs`.
pub(crate) fn plain_args(addr: &str, connections: u64, secs: f64) -> Vec<String> {
    strings(&[
        "plain",
        "--url",
        &format!("http://{addr}/plain"),
        "--connections",
        &connections.to_string(),
        "--duration",
        &secs.to_string(),
    ])
}

/// One publishing round: `loadgen` run with the publish `args`, then a wait until each process
/// of `pids` is idle again; loadgen's JSON line, the CPU-s each of `pids` spent meanwhile, and
/// what `subs` received.
pub(crate) fn publish_round(
    ctx: &mut Ctx,
    subs: &mut Subscribers,
    args: &[String],
    pids: &[u32],
) -> (Value, Vec<f64>, Delivery) {
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let out = ctx.loadgen_json(args);
    std::thread::sleep(Duration::from_millis(500));
    for &pid in pids {
        settle(pid, Duration::from_secs(15));
    }
    let cpu_s = pids
        .iter()
        .zip(before)
        .map(|(&p, from)| cpu_ticks(p).saturating_sub(from) as f64 / ctx.clk_tck)
        .collect();
    (out, cpu_s, subs.snapshot())
}

/// `loadgen publish` of `size`-byte events to `topic` on `addr` at `rate` per second (0: as fast
/// as it can); the caller adds `--duration` and the rest.
pub(crate) fn publish_args(addr: &str, topic: &str, rate: f64, size: u64) -> Vec<String> {
    // Several addresses, comma-separated: loadgen takes them in turn.
    let urls: Vec<String> = addr.split(',').map(|a| format!("http://{a}")).collect();
    strings(&[
        "publish",
        "--url",
        &urls.join(","),
        "--topic",
        topic,
        "--rate",
        &rate.to_string(),
        "--size",
        &size.to_string(),
    ])
}

/// How `loadgen publish-many` publishes, as the report says it.
pub(crate) fn publish_many_how() -> String {
    format!(
        "{PER_TOPIC_CONNS} keep-alive connections, {}",
        if PER_TOPIC_PIPELINE > 1 {
            format!("{PER_TOPIC_PIPELINE} requests pipelined on each")
        } else {
            "one request at a time on each: pipelined answers wait for delayed ACKs on servers without `TCP_NODELAY`".into()
        }
    )
}
