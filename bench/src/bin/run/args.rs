//! The command line: `--smoke`, `--quick` (the default) or `--full`; `--out FILE` (the report),
//! `--plots DIR`, and `--servers a,b` and `--scenarios idle,per-user,fanout,storm,churn,plain,
//! many-topics,overhead,compression,stalled,shutdown,multi-node` to run a part;
//! `--compression LIST`, the compression scenario's variants (`per-stream`, `shared`, or names
//! such as `gzip-shared`; `plain` always; all by default); `--subscribers 10000`, `--rates 1,10`
//! and `--sizes 64` to measure the fan-out (and the scenarios that share its counts) at some of
//! the mode's counts, or at others.

use std::path::{Path, PathBuf};

use crate::plan::Mode;

/// What the command line asks for.
pub(crate) struct Args {
    pub(crate) mode: Mode,
    /// The report (absolute): `BENCHMARKS.md` by default, `target/bench-smoke.md` with
    /// `--smoke`.
    pub(crate) out: PathBuf,
    /// Where the plots go: `bench/plots` beside `BENCHMARKS.md`, `{stem}-plots` beside any other
    /// report.
    pub(crate) plots: PathBuf,
    /// The command as the report quotes it.
    pub(crate) cmdline: String,
    /// `--servers` and `--scenarios`, as given.
    servers: Option<String>,
    scenarios: Option<String>,
    /// `--compression`, as given.
    compression: Option<String>,
    /// `--subscribers`, `--rates` and `--sizes`, as given.
    subscribers: Option<String>,
    rates: Option<String>,
    sizes: Option<String>,
}

/// The flags that stand alone: the mode.
const MODES: &[&str] = &["--smoke", "--quick", "--full"];
/// The flags followed by a value.
const VALUED: &[&str] = &[
    "--out",
    "--plots",
    "--servers",
    "--scenarios",
    "--compression",
    "--subscribers",
    "--rates",
    "--sizes",
];

/// The usage line, for a command line that is not one.
const USAGE: &str = "usage: run [--smoke|--quick|--full] [--out FILE] [--plots DIR] [--servers A,B] \
                     [--scenarios A,B] [--compression LIST] [--subscribers N,..] [--rates R,..] \
                     [--sizes S,..] (see bench/src/bin/run/args.rs)";

impl Args {
    /// Reads `args` (the program's, without its name); `root` is the workspace's root. An
    /// argument that is none of the flags (`--help` included), or a flag without its value, is
    /// an error that says so with the usage: a mistyped flag would otherwise run the whole
    /// default benchmark and write over `BENCHMARKS.md`.
    pub(crate) fn parse(args: Vec<String>, root: &Path) -> Result<Args, String> {
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_str();
            if VALUED.contains(&arg) {
                if args.get(i + 1).is_none() {
                    return Err(format!("{arg} needs a value\n{USAGE}"));
                }
                i += 2;
            } else if MODES.contains(&arg) {
                i += 1;
            } else {
                return Err(format!("unknown argument {arg:?}\n{USAGE}"));
            }
        }
        let mode = if args.iter().any(|a| a == "--full") {
            Mode::Full
        } else if args.iter().any(|a| a == "--smoke") {
            Mode::Smoke
        } else {
            Mode::Quick
        };
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let out = value("--out").map(PathBuf::from).unwrap_or_else(|| {
            if mode == Mode::Smoke {
                root.join("target/bench-smoke.md")
            } else {
                root.join("BENCHMARKS.md")
            }
        });
        let out = if out.is_absolute() {
            out
        } else {
            std::env::current_dir().expect("cwd").join(out)
        };
        let plots = value("--plots").map(PathBuf::from).unwrap_or_else(|| {
            if out.file_name().is_some_and(|n| n == "BENCHMARKS.md") {
                out.parent().unwrap_or(root).join("bench/plots")
            } else {
                let stem = out
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.parent().unwrap_or(root).join(format!("{stem}-plots"))
            }
        });
        Ok(Args {
            mode,
            out,
            plots,
            cmdline: format!(
                "cargo run --release -p tower-sse-bench --bin run -- {}",
                args.join(" ")
            ),
            servers: value("--servers"),
            scenarios: value("--scenarios"),
            compression: value("--compression"),
            subscribers: value("--subscribers"),
            rates: value("--rates"),
            sizes: value("--sizes"),
        })
    }

    /// Replaces the plan's fan-out counts with those `--subscribers`, `--rates` and `--sizes`
    /// give; a list that does not parse is reported and leaves the plan's.
    pub(crate) fn narrow(&self, plan: &mut crate::plan::Plan) {
        fn list<T: std::str::FromStr>(flag: &str, given: Option<&str>, into: &mut Vec<T>) {
            let Some(given) = given else { return };
            match given
                .split(',')
                .map(|v| v.trim().parse())
                .collect::<Result<Vec<T>, _>>()
            {
                Ok(values) if !values.is_empty() => *into = values,
                _ => eprintln!("run: {flag} {given:?} is not a list of numbers; ignored"),
            }
        }
        list(
            "--subscribers",
            self.subscribers.as_deref(),
            &mut plan.subscribers,
        );
        list("--rates", self.rates.as_deref(), &mut plan.rates);
        list("--sizes", self.sizes.as_deref(), &mut plan.sizes);
    }

    /// Whether the server `name` is to be measured: `--servers` names it, or is not given.
    pub(crate) fn server(&self, name: &str) -> bool {
        picked(self.servers.as_deref(), name)
    }

    /// Whether the scenario `name` is to run: `--scenarios` names it, or is not given.
    pub(crate) fn scenario(&self, name: &str) -> bool {
        picked(self.scenarios.as_deref(), name)
    }

    /// The compression scenario's variants `--compression` names, if given (see
    /// [`compression::variants`](crate::scenarios::compression::variants)).
    pub(crate) fn compression(&self) -> Option<&str> {
        self.compression.as_deref()
    }

    /// Whether `--scenarios` is given.
    pub(crate) fn scenarios_named(&self) -> bool {
        self.scenarios.is_some()
    }
}

/// Whether the comma-separated `list` names `name`; everything is picked without a list.
fn picked(list: Option<&str>, name: &str) -> bool {
    list.is_none_or(|list| list.split(',').any(|item| item.trim() == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        try_parse(args).unwrap()
    }

    fn try_parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(
            args.iter().map(|a| a.to_string()).collect(),
            Path::new("/repo"),
        )
    }

    #[test]
    fn an_unknown_argument_or_a_missing_value_is_refused() {
        for args in [
            &["--help"][..],
            &["--scenario", "idle"],
            &["--smoke", "extra"],
            &["--out"],
        ] {
            let err = try_parse(args).err().unwrap_or_else(|| panic!("{args:?}"));
            assert!(err.contains("usage: run"), "{args:?}: {err}");
        }
    }

    #[test]
    fn a_list_picks_what_it_names_and_no_list_picks_all() {
        let args = parse(&[
            "--smoke",
            "--scenarios",
            "idle, stalled,multi-node",
            "--servers",
            "baseline",
        ]);
        assert_eq!(args.mode, Mode::Smoke);
        assert!(args.scenario("idle") && args.scenario("stalled") && args.scenario("multi-node"));
        assert!(!args.scenario("per-user"));
        assert!(args.server("baseline") && !args.server("tower-sse"));
        assert!(args.scenarios_named());
        assert_eq!(args.compression(), None);
        let zip = parse(&["--scenarios", "compression", "--compression", "shared"]);
        assert_eq!(zip.compression(), Some("shared"));
        let all = parse(&[]);
        assert_eq!(all.mode, Mode::Quick);
        assert!(all.scenario("shutdown") && all.server("nchan") && !all.scenarios_named());
    }

    #[test]
    fn the_report_and_its_plots_go_where_the_mode_says() {
        let smoke = parse(&["--smoke"]);
        assert_eq!(smoke.out, Path::new("/repo/target/bench-smoke.md"));
        assert_eq!(smoke.plots, Path::new("/repo/target/bench-smoke-plots"));
        let quick = parse(&["--quick"]);
        assert_eq!(quick.out, Path::new("/repo/BENCHMARKS.md"));
        assert_eq!(quick.plots, Path::new("/repo/bench/plots"));
        let part = parse(&["--out", "/tmp/part.md", "--plots", "/tmp/p"]);
        assert_eq!(
            (part.out.as_path(), part.plots.as_path()),
            (Path::new("/tmp/part.md"), Path::new("/tmp/p"))
        );
        assert_eq!(
            part.cmdline,
            "cargo run --release -p tower-sse-bench --bin run -- --out /tmp/part.md --plots /tmp/p"
        );
    }

    #[test]
    fn the_fan_out_counts_can_be_narrowed() {
        let args = parse(&[
            "--full",
            "--subscribers",
            "10000",
            "--rates",
            "1,10",
            "--sizes",
            "x",
        ]);
        let mut plan = crate::plan::Plan::of(args.mode);
        args.narrow(&mut plan);
        assert_eq!(plan.subscribers, [10000]);
        assert_eq!(plan.rates, [1.0, 10.0]);
        // Not numbers: the mode's own.
        assert_eq!(plan.sizes, [64, 1024]);
    }
}
