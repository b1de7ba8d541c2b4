//! Compression (`compression`, issue 12): the CPU per delivery of 1 KiB JSON events compressed
//! by the layer (gzip, Brotli, zstd), against the same server plain.

use crate::clients::{Subscribers, publish_args, strings};
use crate::ctx::{Ctx, stop};
use crate::plan::Plan;
use crate::report::markdown::{Table, factor, heading, paragraph, times};
use crate::report::verdict::{Bound, judge, ratio};
use crate::servers::Server;

use super::Results;
use super::fan_out::Round;

/// Issue 12's target: gzip's CPU per delivery at most 1.3× plain's.
const TARGET: Bound = Bound::AtMost(1.3);

/// A variant of the compression scenario: a name, the server's environment, and the encoding its
/// subscribers ask for (`--accept-encoding`).
type CompressionVariant = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

const COMPRESSION_VARIANTS: [CompressionVariant; 4] = [
    ("plain", &[], None),
    ("gzip", &[("COMPRESSION", "1")], Some("gzip")),
    ("br", &[("COMPRESSION", "1")], Some("br")),
    ("zstd", &[("COMPRESSION", "1")], Some("zstd")),
];

/// Events per second published in the compression scenario, and its rounds.
const COMPRESSION_RATE: f64 = 20.0;
const COMPRESSION_ROUNDS: usize = 3;

/// One variant of the compression scenario: its CPU per delivery in each round.
pub(crate) struct CompressionRow {
    variant: &'static str,
    subscribers: u64,
    published: u64,
    expected: u64,
    delivered: u64,
    /// Server CPU-s per million deliveries, one per round.
    cpu_s_per_m: Vec<f64>,
}

impl CompressionRow {
    /// The round with the least CPU per delivery: other load on the machine only ever adds.
    fn best(&self) -> f64 {
        self.cpu_s_per_m
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(f64::NAN, f64::min)
    }
}

/// Issue 12's compression target: the same tower-sse server once plain and once with
/// `SseLayer::compression` (`COMPRESSION=1`), with subscribers that ask for gzip, Brotli or
/// zstd and decode every event, all up at once and measured in alternation, so that other load
/// on the machine falls on all alike. Each round publishes 1 KiB JSON events to each in turn
/// and reads the server's CPU per delivery; the best round of each counts.
pub(crate) fn compression(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    res: &mut Results,
) -> Result<(), String> {
    let subs_n = if plan.subscribers.contains(&1000) {
        1000
    } else {
        plan.subscribers.iter().copied().min().unwrap_or(50)
    };
    let rounds = if subs_n < 1000 { 1 } else { COMPRESSION_ROUNDS };
    let bound = (rounds * COMPRESSION_VARIANTS.len()) as f64 * (plan.publish_secs + 20.0) + 60.0;
    let mut running = Vec::new();
    for (variant, env, coding) in COMPRESSION_VARIANTS {
        let r = match ctx.start(server, env) {
            Ok(r) => r,
            Err(e) => {
                for (_, r, subs) in running {
                    Subscribers::close(subs);
                    stop(r);
                }
                return Err(e);
            }
        };
        let url = format!("http://{}/events/zip", r.addr);
        let extra: Vec<&str> = coding.map_or(vec![], |c| vec!["--accept-encoding", c]);
        let mut subs =
            Subscribers::open_with(ctx, &url, subs_n, &format!("zip-{variant}"), bound, &extra);
        if subs.established < subs_n {
            ctx.failures.push(format!(
                "compression {variant}: {} of {subs_n} subscribers connected ({} failed)",
                subs.established, subs.errors
            ));
        }
        let _ = subs.snapshot();
        running.push((variant, r, subs));
    }
    let mut rows: Vec<CompressionRow> = running
        .iter()
        .map(|(variant, _, _)| CompressionRow {
            variant,
            subscribers: subs_n,
            published: 0,
            expected: 0,
            delivered: 0,
            cpu_s_per_m: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for ((variant, r, subs), row) in running.iter_mut().zip(&mut rows) {
            let mut args = publish_args(&r.addr, "zip", COMPRESSION_RATE, 1024);
            args.extend(strings(&[
                "--data",
                "json",
                "--duration",
                &plan.publish_secs.to_string(),
            ]));
            let Round {
                published,
                delivery: d,
                cpu_s_per_m: per_m,
            } = Round::measure(ctx, r.child.id(), subs, &args);
            println!(
                "  compression {variant} round {}: {}/{} delivered, {per_m:.2} CPU-s/M",
                round + 1,
                d.delivered,
                published * subs.established
            );
            row.published += published;
            row.expected += published * subs.established;
            row.delivered += d.delivered;
            row.cpu_s_per_m.push(per_m);
        }
    }
    for ((variant, r, subs), row) in running.into_iter().zip(&rows) {
        subs.close();
        stop(r);
        if row.published == 0 || (row.delivered as f64) < 0.9 * row.expected as f64 {
            ctx.failures.push(format!(
                "compression {variant}: delivered {} of {}",
                row.delivered, row.expected
            ));
        }
    }
    res.compression.extend(rows);
    Ok(())
}

/// The scenario's section of the report, if it ran.
pub(crate) fn report(md: &mut String, res: &Results) {
    let Some(plain) = res.compression.iter().find(|r| r.variant == "plain") else {
        return;
    };
    let base = Some(plain.best());
    heading(md, "Compression (issue 12)");
    paragraph(
        md,
        &format!(
            "The tower-sse server twice more with `SseLayer::compression` (`COMPRESSION=1`), each \
             with {} subscribers asking for one encoding (`--accept-encoding`) and decoding every \
             event, against the plain server; all four up at once, measured in alternation over {} \
             round(s). Each round publishes 1 KiB JSON events (an order with varied line items, \
             `--data json`) at {COMPRESSION_RATE} ev/s for the fan-out duration to each server in \
             turn; server CPU-s per million deliveries, each round's figure listed, the best \
             (least) one counting. The layer flushes each stream's compression context after \
             every event, so every event is compressed on its own for every subscriber.",
            plain.subscribers,
            plain.cpu_s_per_m.len()
        ),
    );
    let mut t = Table::new(
        md,
        &[
            "variant",
            "delivered / expected",
            "CPU-s per M, each round",
            "best",
            "÷ plain",
        ],
    );
    for r in &res.compression {
        let rounds: Vec<String> = r.cpu_s_per_m.iter().map(|x| format!("{x:.2}")).collect();
        t.row(&[
            &r.variant,
            &format!("{} / {}", r.delivered, r.expected),
            &rounds.join(", "),
            &format!("{:.2}", r.best()),
            &times(Some(r.best()), base),
        ]);
    }
    t.end();
    let gzip = res.compression.iter().find(|r| r.variant == "gzip");
    let gzip = ratio(gzip.map(CompressionRow::best), base);
    let mut t = Table::new(md, &["target", "measured", "verdict"]);
    t.row(&[
        &"per-event flush costs ≤ ~30 % more CPU per delivery than an uncompressed stream, 1 KiB JSON (gzip)",
        &factor(gzip),
        &judge(gzip, TARGET),
    ]);
    t.end();
}
