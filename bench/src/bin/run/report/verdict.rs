//! Whether a target is met: pure functions over the measured figures, so that what the report
//! calls "met" is decided, and tested, in one place.
//!
//! A figure is an `Option<f64>`: `None` (or NaN) where it was not measured — a scenario that did
//! not run, a server without its peer, a CPU time too short to divide. An infinite figure is a
//! measurement: a time that never came (a stream never closed, a server that never exited)
//! misses any upper bound.

use std::fmt;

/// The bound a target sets on its figure; a figure equal to it meets it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Bound {
    /// At most this much: a cost, a time, a ratio of costs.
    AtMost(f64),
    /// At least this much: a rate, a count, a ratio of rates.
    AtLeast(f64),
}

impl Bound {
    fn holds(self, x: f64) -> bool {
        match self {
            Bound::AtMost(bound) => x <= bound,
            Bound::AtLeast(bound) => x >= bound,
        }
    }
}

/// A target's verdict; it prints as the report words it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Met,
    Missed,
    /// Missed by the figure read idle, met by the same figure read once the server serves again
    /// (memory an allocator returns only when the process allocates again).
    MetServingAgain,
    NotMeasured,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::MetServingAgain => "met once it serves again; **missed** idle",
            Verdict::NotMeasured => "not measured",
        })
    }
}

/// Judges `figure` against `bound`.
pub(crate) fn judge(figure: Option<f64>, bound: Bound) -> Verdict {
    match figure.filter(|x| !x.is_nan()) {
        None => Verdict::NotMeasured,
        Some(x) if bound.holds(x) => Verdict::Met,
        Some(_) => Verdict::Missed,
    }
}

/// Judges a figure read twice, idle and once the server serves again: the idle reading decides,
/// unless it misses where the second one meets.
pub(crate) fn judge_idle_then_serving(
    idle: Option<f64>,
    serving: Option<f64>,
    bound: Bound,
) -> Verdict {
    match (judge(idle, bound), judge(serving, bound)) {
        (Verdict::Missed, Verdict::Met) => Verdict::MetServingAgain,
        (idle, _) => idle,
    }
}

/// `ours ÷ peer`; `None` where either is not measured or not finite, or the peer's figure is
/// zero or less (a ratio to nothing says nothing).
pub(crate) fn ratio(ours: Option<f64>, peer: Option<f64>) -> Option<f64> {
    let (ours, peer) = (ours?, peer?);
    (ours.is_finite() && peer.is_finite() && peer > 0.0).then(|| ours / peer)
}

/// `ours − peer`; `None` where either is not measured.
pub(crate) fn excess(ours: Option<f64>, peer: Option<f64>) -> Option<f64> {
    Some(ours? - peer?)
}

/// The mean of the [`ratio`]s of `pairs` (ours, peer), leaving out the pairs that have none;
/// `None` if none is left.
pub(crate) fn mean_ratio(
    pairs: impl IntoIterator<Item = (Option<f64>, Option<f64>)>,
) -> Option<f64> {
    let ratios: Vec<f64> = pairs.into_iter().filter_map(|(a, b)| ratio(a, b)).collect();
    (!ratios.is_empty()).then(|| ratios.iter().sum::<f64>() / ratios.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    /// Issue 6's "fan-out CPU per delivery ≤ 0.5× baseline" and "churn ≥ 0.9× baseline".
    const HALF: Bound = Bound::AtMost(0.5);
    const NINE_TENTHS: Bound = Bound::AtLeast(0.9);

    #[test]
    fn a_figure_within_its_bound_is_met() {
        assert_eq!(judge(Some(0.3), HALF), Met);
        assert_eq!(judge(Some(1.2), NINE_TENTHS), Met);
        assert_eq!(judge(ratio(Some(30.0), Some(100.0)), HALF), Met);
    }

    #[test]
    fn a_figure_past_its_bound_is_missed() {
        assert_eq!(judge(Some(0.51), HALF), Missed);
        assert_eq!(judge(Some(0.89), NINE_TENTHS), Missed);
        assert_eq!(judge(ratio(Some(107.0), Some(100.0)), HALF), Missed);
    }

    #[test]
    fn the_bound_itself_meets_it() {
        assert_eq!(judge(Some(0.5), HALF), Met);
        assert_eq!(judge(Some(0.9), NINE_TENTHS), Met);
        assert_eq!(judge(Some(0.0), Bound::AtMost(0.0)), Met);
        // An idle server that returned all it grew, and one that grew: 0 % and -0 % are in.
        assert_eq!(judge(Some(-0.0), Bound::AtMost(0.0)), Met);
    }

    #[test]
    fn a_missing_peer_is_not_measured() {
        assert_eq!(judge(ratio(Some(1.0), None), HALF), NotMeasured);
        assert_eq!(judge(ratio(None, Some(1.0)), HALF), NotMeasured);
        assert_eq!(
            judge(excess(Some(1.0), None), Bound::AtMost(1.0)),
            NotMeasured
        );
        assert_eq!(judge(None, NINE_TENTHS), NotMeasured);
    }

    #[test]
    fn a_figure_that_is_no_number_is_not_measured() {
        assert_eq!(judge(Some(f64::NAN), HALF), NotMeasured);
        // A CPU time too short to divide is NaN: its ratio is none.
        assert_eq!(ratio(Some(f64::NAN), Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), Some(f64::INFINITY)), None);
    }

    #[test]
    fn a_ratio_to_a_peer_of_zero_is_none() {
        assert_eq!(ratio(Some(5.0), Some(0.0)), None);
        assert_eq!(ratio(Some(5.0), Some(-1.0)), None);
        assert_eq!(ratio(Some(0.0), Some(5.0)), Some(0.0));
        assert_eq!(
            judge(ratio(Some(100.0), Some(0.0)), NINE_TENTHS),
            NotMeasured
        );
    }

    #[test]
    fn a_time_that_never_came_misses_an_upper_bound() {
        assert_eq!(judge(Some(f64::INFINITY), Bound::AtMost(7.1)), Missed);
        assert_eq!(judge(Some(f64::INFINITY), Bound::AtLeast(1.0)), Met);
    }

    #[test]
    fn issue_12_compression_target_is_a_ratio_to_plain_of_at_most_1_3() {
        // CPU-s per million deliveries, compressed against plain: `scenarios/compression.rs`.
        let target = Bound::AtMost(1.3);
        assert_eq!(judge(ratio(Some(13.0), Some(10.0)), target), Met);
        assert_eq!(judge(ratio(Some(9.0), Some(10.0)), target), Met);
        assert_eq!(judge(ratio(Some(13.01), Some(10.0)), target), Missed);
        assert_eq!(judge(ratio(Some(24.75), Some(8.32)), target), Missed);
        // A variant or a plain stream that did not deliver in full is passed on as `None`.
        assert_eq!(judge(ratio(None, Some(8.32)), target), NotMeasured);
        assert_eq!(judge(ratio(Some(9.0), None), target), NotMeasured);
    }

    #[test]
    fn the_mean_ratio_leaves_out_the_rows_without_a_peer() {
        let rows = [
            (Some(1.0), Some(4.0)),
            (Some(3.0), Some(4.0)),
            (Some(9.0), None),
            (Some(f64::NAN), Some(1.0)),
        ];
        assert_eq!(mean_ratio(rows), Some(0.5));
        assert_eq!(mean_ratio([(Some(1.0), None)]), None);
        assert_eq!(mean_ratio([]), None);
        assert_eq!(judge(mean_ratio([(None, Some(1.0))]), HALF), NotMeasured);
    }

    #[test]
    fn memory_returned_only_when_serving_again_is_said_so() {
        let ten_percent = Bound::AtMost(0.10);
        let judged = |idle, serving| judge_idle_then_serving(idle, serving, ten_percent);
        assert_eq!(judged(Some(0.15), Some(-0.001)), MetServingAgain);
        assert_eq!(judged(Some(0.10), Some(0.5)), Met);
        assert_eq!(judged(Some(0.15), Some(0.16)), Missed);
        assert_eq!(judged(Some(0.15), None), Missed);
        assert_eq!(judged(None, Some(0.0)), NotMeasured);
    }

    #[test]
    fn verdicts_print_as_the_report_words_them() {
        let words: Vec<String> = [Met, Missed, MetServingAgain, NotMeasured]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            words,
            [
                "met",
                "**missed**",
                "met once it serves again; **missed** idle",
                "not measured"
            ]
        );
    }
}
