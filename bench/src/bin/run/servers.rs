//! The servers compared: tower-sse's and the baseline's binaries (each also on jemalloc),
//! tower-sse's served by `tower_sse::serve` with and without its HTTP/1 fast path, the floor (a
//! bare epoll writer, issue 15), and the peers nchan and better-sse, each a command with its
//! environment and what it needs.

use std::path::Path;

/// The row of `tower_sse::serve` with its HTTP/1 fast path (issue 15), and without it.
pub(crate) const SERVE: &str = "tower-sse+serve";
pub(crate) const SERVE_HYPER: &str = "tower-sse+serve-hyper";

/// One server of the comparison: how to start it. `{ADDR}`, `{PORT}` and `{DIR}` in the command
/// are replaced by the listen address, its port and a scratch directory; `ADDR` and `WORKERS=1` are also set
/// in its environment.
pub(crate) struct Server {
    pub(crate) name: &'static str,
    pub(crate) command: Vec<String>,
    pub(crate) env: Vec<(&'static str, &'static str)>,
    /// Files that must exist (relative to the workspace root, or absolute) for it to be measured.
    pub(crate) needs: Vec<String>,
    /// A shared library loaded into the server before any other (`LD_PRELOAD`, set by `env`
    /// after `taskset`, so that only the server loads it), which must then be mapped in its
    /// process: the allocator rows.
    pub(crate) preload: Option<String>,
    /// The scenarios it is measured in; every one when empty.
    pub(crate) only: &'static [&'static str],
    /// Whether `POST /publish` answers the event's id (as its body, or nchan's "last message
    /// id: …" line) and `Last-Event-ID` replays after it.
    pub(crate) replay: bool,
    /// Whether it is measured in `--smoke`.
    pub(crate) smoke: bool,
    /// A path that answers the server's own count of topics, read after expiry in the
    /// many-topics scenario.
    pub(crate) status: Option<&'static str>,
}

/// Debian's libjemalloc2 (`apt-get install libjemalloc2`; `bench/peers/install.sh` installs it).
fn jemalloc() -> String {
    format!(
        "/usr/lib/{}-linux-gnu/libjemalloc.so.2",
        std::env::consts::ARCH
    )
}

/// What the allocator rows are measured in: the scenarios that read memory.
pub(crate) const MEMORY_SCENARIOS: &[&str] = &["idle", "per-user", "many-topics"];

/// What the rows of `tower_sse::serve` are measured in (issue 15): memory per stream, fan-out,
/// the replay storm, churn and `/plain`, where how a request is served shows. Not many-topics:
/// its figure is the hub's, whoever serves it.
pub(crate) const SERVE_SCENARIOS: &[&str] =
    &["idle", "per-user", "fanout", "storm", "churn", "plain"];

/// The allocator a server of this crate runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allocator {
    /// glibc's malloc, as built.
    Glibc,
    /// Debian's libjemalloc2 preloaded, as it comes: it returns freed pages to the system over
    /// its decay time (10 s), counted on the process's own allocations, so not while it is idle.
    Jemalloc,
    /// The same with `MALLOC_CONF=background_thread:true`: a thread of its own returns them,
    /// idle or not.
    JemallocBackground,
}

/// Every server of the comparison, in the order they are measured; `bin` holds this package's
/// binaries.
pub(crate) fn servers(bin: &Path) -> Vec<Server> {
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    // A server of this crate on `allocator`: the same binary for each.
    let rust = |name, binary: &str, replay, allocator| Server {
        name,
        command: vec![bin.join(binary).display().to_string()],
        env: match allocator {
            Allocator::JemallocBackground => vec![("MALLOC_CONF", "background_thread:true")],
            _ => vec![],
        },
        needs: match allocator {
            Allocator::Glibc => vec![],
            _ => vec![jemalloc()],
        },
        preload: (allocator != Allocator::Glibc).then(jemalloc),
        only: match allocator {
            Allocator::Glibc => &[],
            _ => MEMORY_SCENARIOS,
        },
        replay,
        // The smoke run covers preloading with one of the two jemalloc rows.
        smoke: allocator != Allocator::JemallocBackground,
        status: None,
    };
    let tower_sse = |name, allocator| rust(name, "tower-sse-server", true, allocator);
    let baseline = |name, allocator| rust(name, "baseline", false, allocator);
    // The tower-sse server served by `tower_sse::serve` (`SERVE=1`) rather than `axum::serve`,
    // in `env`, on glibc's malloc.
    let serve = |name, env: &[(&'static str, &'static str)], smoke| Server {
        env: env.to_vec(),
        only: SERVE_SCENARIOS,
        smoke,
        ..tower_sse(name, Allocator::Glibc)
    };
    vec![
        tower_sse("tower-sse", Allocator::Glibc),
        tower_sse("tower-sse+jemalloc", Allocator::Jemalloc),
        tower_sse("tower-sse+jemalloc-bg", Allocator::JemallocBackground),
        // Its HTTP/1 fast path for event streams is on by default.
        serve(SERVE, &[("SERVE", "1")], true),
        // Every request through hyper: how `serve` served before issue 15.
        serve(
            SERVE_HYPER,
            &[("SERVE", "1"), ("HTTP1_FAST_PATH", "0")],
            false,
        ),
        baseline("baseline", Allocator::Glibc),
        baseline("baseline+jemalloc", Allocator::Jemalloc),
        baseline("baseline+jemalloc-bg", Allocator::JemallocBackground),
        Server {
            // The same scenarios as the `serve` rows; it has no replay, so the storm only lists
            // it as such. Not many-topics either: a topic lives only while it has subscribers,
            // so it has nothing to expire. In the smoke run (as every glibc row of this crate):
            // a few seconds, one thread that does next to nothing.
            only: SERVE_SCENARIOS,
            ..rust("floor", "floor", false, Allocator::Glibc)
        },
        Server {
            name: "nchan",
            command: s(&["bash", "bench/peers/nchan/start.sh", "{ADDR}", "{DIR}"]),
            env: vec![],
            needs: s(&["bench/peers/nchan/start.sh"]),
            preload: None,
            only: &[],
            // Its publish reply names the message ("last message id: …"), which
            // `Last-Event-ID` resumes after.
            replay: true,
            smoke: false,
            status: Some("/nchan_status"),
        },
        Server {
            name: "better-sse",
            command: s(&["bash", "bench/peers/better-sse/start.sh", "{ADDR}"]),
            env: vec![],
            needs: s(&["bench/peers/better-sse/start.sh"]),
            preload: None,
            only: &[],
            replay: false,
            smoke: false,
            status: None,
        },
    ]
}
