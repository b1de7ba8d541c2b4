//! The plots: p99 latency against subscribers, and idle memory per connection, as small SVG line
//! charts.

use std::fmt::Write as _;
use std::path::Path;

use crate::plan::Plan;
use crate::scenarios::Results;
use crate::scenarios::idle::Topics;

/// The plots' file names.
pub(crate) const LATENCY: &str = "latency-p99.svg";
pub(crate) const MEMORY: &str = "memory-per-connection.svg";

/// Writes both plots into `plots`.
pub(crate) fn write(plan: &Plan, res: &Results, plots: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(plots)?;
    // A series for each measured server, in the order measured.
    let series = |points: &dyn Fn(&str) -> Vec<(f64, f64)>| -> Vec<(String, Vec<(f64, f64)>)> {
        res.measured
            .iter()
            .map(|n| (n.clone(), points(n)))
            .collect()
    };
    // Latency p99 against subscribers at the middle rate and smallest size.
    let rate = plan.rates[plan.rates.len() / 2];
    let size = plan.sizes[0];
    let lat = series(&|n| {
        let rows = res.fan.iter();
        let rows = rows.filter(|r| r.server == n && r.rate == rate && r.size == size);
        rows.filter_map(|r| Some((r.subscribers as f64, r.p99?)))
            .collect()
    });
    std::fs::write(
        plots.join(LATENCY),
        svg_chart(
            &format!("p99 latency, {rate} ev/s, {size} B"),
            "subscribers",
            "p99 ms",
            &lat,
        ),
    )?;
    let mem = series(&|n| {
        let rows = res.idle.iter();
        let rows = rows.filter(|r| r.server == n && r.topics == Topics::Shared);
        rows.map(|r| (r.connections as f64, r.rss_kib_per_conn))
            .collect()
    });
    std::fs::write(
        plots.join(MEMORY),
        svg_chart(
            "idle server memory per connection",
            "connections",
            "KiB per connection",
            &mem,
        ),
    )
}

/// A small line chart: series of (x, y), x on a log scale.
fn svg_chart(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let (w, h, l, r, t, b) = (640.0, 400.0, 70.0, 150.0, 40.0, 50.0);
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let xmin = pts
        .iter()
        .map(|p| p.0)
        .fold(f64::INFINITY, f64::min)
        .max(1.0)
        .log10();
    let mut xmax = pts.iter().map(|p| p.0).fold(1.0, f64::max).log10();
    let mut xmin = xmin;
    if xmax <= xmin {
        xmin -= 0.5;
        xmax = xmin + 1.0;
    }
    let ymax = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    let px = |x: f64| l + (x.max(1.0).log10() - xmin) / (xmax - xmin) * (w - l - r);
    let py = |y: f64| h - b - y / ymax * (h - t - b);
    let colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n\
         <line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xlabel}</text>\n\
         <text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">{ylabel}</text>\n",
        (w - r + l) / 2.0,
        h - b,
        w - r,
        h - b,
        h - b,
        (w - r + l) / 2.0,
        h - 10.0,
        (h - b + t) / 2.0
    );
    for i in 0..=4 {
        let y = ymax * i as f64 / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><line x1=\"{l}\" y1=\"{1}\" x2=\"{}\" y2=\"{1}\" stroke=\"#ddd\"/>",
            l - 6.0,
            py(y),
            if ymax < 10.0 {
                format!("{y:.2}")
            } else {
                format!("{y:.0}")
            },
            w - r
        );
    }
    let mut xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for x in xs {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x}</text>",
            px(x),
            h - b + 16.0
        );
    }
    // A server without points here (not measured in this scenario) gets no line or legend.
    let drawn = series.iter().filter(|(_, p)| !p.is_empty());
    for (i, (name, p)) in drawn.enumerate() {
        let c = colors[i % colors.len()];
        let path: Vec<String> = p
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for &(x, y) in p {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>",
                px(x),
                py(y)
            );
        }
        let ly = t + 20.0 * i as f64 + 10.0;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{name}</text>",
            w - r + 10.0,
            w - r + 30.0,
            w - r + 35.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}
