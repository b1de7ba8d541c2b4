//! Compression (`compression`, issue 12): the CPU per delivery of 1 KiB JSON events compressed
//! by the layer (gzip, Brotli, zstd; one context per stream, or each event once for all streams
//! with `Compression::shared`), against the same server plain.

use crate::clients::{Subscribers, publish_args, strings};
use crate::ctx::{Ctx, stop};
use crate::plan::Plan;
use crate::report::markdown::{Table, heading, paragraph};
use crate::report::verdict::{Bound, Verdict, judge, ratio};
use crate::servers::Server;

use super::Results;
use super::fan_out::Round;

/// Issue 12's target: a compressed stream's CPU per delivery at most 1.3× plain's.
const TARGET: Bound = Bound::AtMost(1.3);

/// How the server compresses: its `COMPRESSION` (none for plain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Plain,
    /// `Compression::new().per_stream()`: one context per stream.
    PerStream,
    /// `Compression::new()` (the default): each event compressed once for all streams.
    Shared,
}

impl Mode {
    /// The server's environment for this mode.
    fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Mode::Plain => &[],
            Mode::PerStream => &[("COMPRESSION", "per-stream")],
            Mode::Shared => &[("COMPRESSION", "shared")],
        }
    }

    /// As the report's table says it.
    fn words(self) -> &'static str {
        match self {
            Mode::Plain => "none",
            Mode::PerStream => "per stream (`Compression::new().per_stream()`)",
            Mode::Shared => "shared (`Compression::new()`, the default)",
        }
    }
}

/// A variant of the compression scenario: its name, how its server compresses, and the
/// encoding its subscribers ask for (`--accept-encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    pub(crate) name: &'static str,
    mode: Mode,
    coding: Option<&'static str>,
}

const fn variant(name: &'static str, mode: Mode, coding: Option<&'static str>) -> Variant {
    Variant { name, mode, coding }
}

/// Every variant, in the order they are measured in each round.
pub(crate) const VARIANTS: [Variant; 7] = [
    variant("plain", Mode::Plain, None),
    variant("gzip", Mode::PerStream, Some("gzip")),
    variant("br", Mode::PerStream, Some("br")),
    variant("zstd", Mode::PerStream, Some("zstd")),
    variant("gzip-shared", Mode::Shared, Some("gzip")),
    variant("br-shared", Mode::Shared, Some("br")),
    variant("zstd-shared", Mode::Shared, Some("zstd")),
];

/// The variants `--compression LIST` picks (all without a list): `plain`, always, and those the
/// comma-separated list names, by name or by mode (`per-stream`: `gzip,br,zstd`; `shared`:
/// `gzip-shared,br-shared,zstd-shared`). An error names what the list names that is neither.
pub(crate) fn variants(list: Option<&str>) -> Result<Vec<Variant>, String> {
    let Some(list) = list else {
        return Ok(VARIANTS.to_vec());
    };
    let items: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect();
    let picks = |v: &Variant, item: &str| {
        v.name == item
            || (item == "per-stream" && v.mode == Mode::PerStream)
            || (item == "shared" && v.mode == Mode::Shared)
    };
    if let Some(unknown) = items
        .iter()
        .find(|item| !VARIANTS.iter().any(|v| picks(v, item)))
    {
        let names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
        return Err(format!(
            "--compression: no variant {unknown:?} (per-stream, shared, {})",
            names.join(", ")
        ));
    }
    Ok(VARIANTS
        .into_iter()
        .filter(|v| v.mode == Mode::Plain || items.iter().any(|item| picks(v, item)))
        .collect())
}

/// Events per second published in the compression scenario, and its rounds.
const COMPRESSION_RATE: f64 = 20.0;
const COMPRESSION_ROUNDS: usize = 3;

/// One variant of the compression scenario: its CPU per delivery in each round.
pub(crate) struct CompressionRow {
    variant: Variant,
    subscribers: u64,
    /// Subscribers connected, of `subscribers`.
    established: u64,
    published: u64,
    expected: u64,
    /// Events received, over all rounds and up to the subscribers' close.
    delivered: u64,
    /// Body bytes received in the rounds (as sent, compressed or not).
    body_bytes: u64,
    /// Connections that failed (a response in another coding, a body that did not decode),
    /// and streams the server ended.
    errors: u64,
    closed: u64,
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

    /// Whether every subscriber connected, none failed or was closed, and each received
    /// every event published: the rounds measured what they claim to.
    fn complete(&self) -> bool {
        self.published > 0
            && self.established == self.subscribers
            && self.errors == 0
            && self.closed == 0
            && self.delivered == self.expected
    }

    /// Body bytes per delivery, as they came over the connection.
    fn bytes_per_event(&self) -> Option<f64> {
        (self.delivered > 0).then(|| self.body_bytes as f64 / self.delivered as f64)
    }
}

/// The variant's best CPU per delivery ÷ plain's, and its verdict against issue 12's target:
/// not measured unless both delivered in full (a stream that broke measured nothing).
fn judged(row: &CompressionRow, plain: &CompressionRow) -> (Option<f64>, Verdict) {
    let complete = |r: &CompressionRow| r.complete().then(|| r.best());
    let factor = ratio(complete(row), complete(plain));
    (factor, judge(factor, TARGET))
}

/// Issue 12's compression target: the same tower-sse server plain, with `SseLayer::compression`
/// one context per stream (`COMPRESSION=per-stream`) and shared (`COMPRESSION=shared`), with
/// subscribers that ask for gzip, Brotli or zstd and decode every event, all up at once and
/// measured in alternation, so that other load on the machine falls on all alike. Each round
/// publishes 1 KiB JSON events to each in turn and reads the server's CPU per delivery; the best
/// round of each counts.
pub(crate) fn compression(
    ctx: &mut Ctx,
    server: &Server,
    plan: &Plan,
    variants: &[Variant],
    res: &mut Results,
) -> Result<(), String> {
    let subs_n = if plan.subscribers.contains(&1000) {
        1000
    } else {
        plan.subscribers.iter().copied().min().unwrap_or(50)
    };
    let rounds = if subs_n < 1000 { 1 } else { COMPRESSION_ROUNDS };
    let bound = (rounds * variants.len()) as f64 * (plan.publish_secs + 20.0) + 60.0;
    let mut running = Vec::new();
    for &variant in variants {
        let r = match ctx.start(server, variant.mode.env()) {
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
        let extra: Vec<&str> = variant
            .coding
            .map_or(vec![], |c| vec!["--accept-encoding", c]);
        let tag = format!("zip-{}", variant.name);
        let mut subs = Subscribers::open_with(ctx, &url, subs_n, &tag, bound, &extra);
        if subs.established < subs_n {
            ctx.failures.push(format!(
                "compression {}: {} of {subs_n} subscribers connected ({} failed)",
                variant.name, subs.established, subs.errors
            ));
        }
        let _ = subs.snapshot();
        running.push((variant, r, subs));
    }
    let mut rows: Vec<CompressionRow> = running
        .iter()
        .map(|(variant, _, subs)| CompressionRow {
            variant: *variant,
            subscribers: subs_n,
            established: subs.established,
            published: 0,
            expected: 0,
            delivered: 0,
            body_bytes: 0,
            errors: 0,
            closed: 0,
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
                "  compression {} round {}: {}/{} delivered, {per_m:.2} CPU-s/M, {:.0} B/event",
                variant.name,
                round + 1,
                d.delivered,
                published * subs.established,
                d.body_bytes as f64 / d.delivered.max(1) as f64,
            );
            row.published += published;
            row.expected += published * subs.established;
            row.delivered += d.delivered;
            row.body_bytes += d.body_bytes;
            row.cpu_s_per_m.push(per_m);
        }
    }
    for ((variant, r, subs), row) in running.into_iter().zip(&mut rows) {
        // What arrived after the last round's snapshot counts too; the failures and closes
        // are counted since the subscribers connected.
        let last = subs.close();
        stop(r);
        row.delivered += last.delivered;
        row.errors = last.errors;
        row.closed = last.closed;
        if !row.complete() {
            ctx.failures.push(format!(
                "compression {}: delivered {} of {} ({} of {} subscribers connected, {} failed, \
                 {} closed by the server)",
                variant.name,
                row.delivered,
                row.expected,
                row.established,
                row.subscribers,
                row.errors,
                row.closed
            ));
        }
    }
    res.compression.extend(rows);
    Ok(())
}

/// The scenario's section of the report, if it ran.
pub(crate) fn report(md: &mut String, res: &Results) {
    let Some(plain) = res
        .compression
        .iter()
        .find(|r| r.variant.mode == Mode::Plain)
    else {
        return;
    };
    heading(md, "Compression (issue 12)");
    paragraph(
        md,
        &format!(
            "The tower-sse server plain and with `SseLayer::compression`, one context per stream \
             (`COMPRESSION=per-stream`: each event compressed for each subscriber, in its own \
             context) or shared (`COMPRESSION=shared`: each event compressed once, on its own, \
             and the same bytes sent to every subscriber), a server per variant, each with {} \
             subscribers asking for one encoding (`--accept-encoding`), requiring it in the \
             response and decoding every event; all {} up at once, measured in alternation over \
             {} round(s). Each round publishes 1 KiB JSON events (an order with varied line \
             items, `--data json`) at {COMPRESSION_RATE} ev/s for the fan-out duration to each \
             server in turn; server CPU-s per million deliveries, each round's figure listed, \
             the best (least) one counting. Bytes per event are the response bodies' bytes as \
             they came (keep-alives included) per event received. Issue 12's target: a \
             compressed stream's CPU per delivery at most {:.2}× plain's; a variant whose \
             subscribers did not all receive every event is not measured.",
            plain.subscribers,
            res.compression.len(),
            plain.cpu_s_per_m.len(),
            match TARGET {
                Bound::AtMost(x) | Bound::AtLeast(x) => x,
            },
        ),
    );
    let mut t = Table::new(
        md,
        &[
            "variant",
            "compression",
            "delivered / expected",
            "bytes per event",
            "CPU-s per M, each round",
            "best",
            "÷ plain",
            "target ≤ 1.30× plain",
        ],
    );
    for r in &res.compression {
        let rounds: Vec<String> = r.cpu_s_per_m.iter().map(|x| format!("{x:.2}")).collect();
        let (factor_of, verdict) = judged(r, plain);
        let verdict = if r.variant.mode == Mode::Plain {
            "(the base)".to_owned()
        } else {
            verdict.to_string()
        };
        t.row(&[
            &r.variant.name,
            &r.variant.mode.words(),
            &format!("{} / {}", r.delivered, r.expected),
            &r.bytes_per_event()
                .map_or("–".into(), |b| format!("{b:.0}")),
            &rounds.join(", "),
            &format!("{:.2}", r.best()),
            &factor_of.map_or("–".into(), |f| format!("{f:.2}×")),
            &verdict,
        ]);
    }
    t.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: Option<&str>) -> Vec<&'static str> {
        variants(list).unwrap().iter().map(|v| v.name).collect()
    }

    #[test]
    fn a_list_picks_variants_by_name_or_mode_and_plain_always() {
        assert_eq!(names(None).len(), 7);
        assert_eq!(
            names(Some("shared")),
            ["plain", "gzip-shared", "br-shared", "zstd-shared"]
        );
        assert_eq!(names(Some("per-stream")), ["plain", "gzip", "br", "zstd"]);
        assert_eq!(
            names(Some("zstd-shared, gzip")),
            ["plain", "gzip", "zstd-shared"]
        );
        assert_eq!(names(Some("plain")), ["plain"]);
        let err = variants(Some("gzip,lz4")).unwrap_err();
        assert!(err.contains("\"lz4\""), "{err}");
    }

    #[test]
    fn shared_variants_run_the_shared_server_and_ask_for_their_encoding() {
        for v in VARIANTS {
            match v.name.strip_suffix("-shared") {
                Some(coding) => {
                    assert_eq!(v.mode.env(), [("COMPRESSION", "shared")]);
                    assert_eq!(v.coding, Some(coding));
                }
                None if v.name == "plain" => assert_eq!((v.mode.env(), v.coding), (&[][..], None)),
                None => {
                    assert_eq!(v.mode.env(), [("COMPRESSION", "per-stream")]);
                    assert_eq!(v.coding, Some(v.name));
                }
            }
        }
    }

    fn row(name: &str, cpu_s_per_m: &[f64], delivered: u64) -> CompressionRow {
        CompressionRow {
            variant: *VARIANTS.iter().find(|v| v.name == name).unwrap(),
            subscribers: 1000,
            established: 1000,
            published: 300,
            expected: 300_000,
            delivered,
            body_bytes: 0,
            errors: 0,
            closed: 0,
            cpu_s_per_m: cpu_s_per_m.to_vec(),
        }
    }

    #[test]
    fn each_variant_is_judged_on_its_best_round_against_plains() {
        let plain = row("plain", &[10.5, 10.0, f64::NAN], 300_000);
        // 13.0 ÷ 10.0: the bound itself.
        let (f, v) = judged(&row("gzip-shared", &[14.0, 13.0], 300_000), &plain);
        assert_eq!((f, v), (Some(1.3), Verdict::Met));
        let (f, v) = judged(&row("zstd", &[29.0, 30.0], 300_000), &plain);
        assert_eq!((f, v), (Some(2.9), Verdict::Missed));
        assert_eq!(
            judged(&row("br-shared", &[13.1], 300_000), &plain).1,
            Verdict::Missed
        );
    }

    #[test]
    fn a_variant_that_did_not_deliver_in_full_is_not_measured() {
        let plain = row("plain", &[10.0], 300_000);
        // One event short: a stream broke, or the count is wrong.
        let short = row("zstd-shared", &[11.0], 299_999);
        assert_eq!(judged(&short, &plain), (None, Verdict::NotMeasured));
        // More than expected is as wrong.
        let over = row("zstd-shared", &[11.0], 300_001);
        assert_eq!(judged(&over, &plain).1, Verdict::NotMeasured);
        let mut failed = row("gzip-shared", &[11.0], 300_000);
        failed.errors = 1;
        assert_eq!(judged(&failed, &plain).1, Verdict::NotMeasured);
        let mut missing = row("br", &[11.0], 300_000);
        missing.established = 999;
        assert_eq!(judged(&missing, &plain).1, Verdict::NotMeasured);
        // Nor is any variant when plain did not.
        let broken_plain = row("plain", &[10.0], 1);
        let fine = row("gzip", &[11.0], 300_000);
        assert_eq!(judged(&fine, &broken_plain).1, Verdict::NotMeasured);
        assert_eq!(judged(&fine, &plain).1, Verdict::Met);
    }
}
