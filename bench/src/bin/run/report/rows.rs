//! Picking rows out of the results: a server's figure in a scenario at given settings, and the
//! pairs of rows the report compares.

use crate::scenarios::Results;
use crate::scenarios::fan_out::FanRow;
use crate::scenarios::idle::{IdleRow, Topics};
use crate::scenarios::storm::StormRow;
use crate::servers::{SERVE, SERVE_HYPER};

impl Results {
    /// The idle row of `server` with `n` streams on `topics`.
    pub(crate) fn idle_row(&self, server: &str, n: u64, topics: Topics) -> Option<&IdleRow> {
        self.idle
            .iter()
            .find(|r| r.server == server && r.connections == n && r.topics == topics)
    }

    /// Its RSS growth per stream, KiB.
    pub(crate) fn idle_rss(&self, server: &str, n: u64, topics: Topics) -> Option<f64> {
        self.idle_row(server, n, topics).map(|r| r.rss_kib_per_conn)
    }

    /// The fan-out row of `server` with `n` subscribers at `rate` and `size`.
    pub(crate) fn fan_row(&self, server: &str, n: u64, rate: f64, size: usize) -> Option<&FanRow> {
        self.fan
            .iter()
            .find(|r| r.server == server && r.subscribers == n && r.rate == rate && r.size == size)
    }

    /// The replay storm row of `server`.
    pub(crate) fn storm_row(&self, server: &str) -> Option<&StormRow> {
        self.storm.iter().find(|r| r.server == server)
    }

    /// The replay storm row of `server` if every client caught up: only then are its time and
    /// CPU those of a whole replay.
    pub(crate) fn storm_caught_up(&self, server: &str) -> Option<&StormRow> {
        self.storm_row(server).filter(|r| r.caught_up == r.clients)
    }

    /// Churn cycles per second of `server`.
    pub(crate) fn churn_per_s(&self, server: &str) -> Option<f64> {
        self.churn
            .iter()
            .find(|r| r.server == server)
            .map(|r| r.per_s)
    }

    /// `/plain` requests per second of the row `label` (a server, or an overhead variant).
    pub(crate) fn plain_rps(&self, label: &str) -> Option<f64> {
        self.plain.iter().find(|r| r.server == label).map(|r| r.rps)
    }

    /// The columns of the comparison: each measured peer, with the tower-sse row on the same
    /// allocator, where that was measured; then `tower-sse+serve` against `tower-sse` (served
    /// by `axum::serve`) and against `tower-sse+serve-hyper` (`serve` without its HTTP/1 fast
    /// path), where both were measured: (ours, peer).
    pub(crate) fn pairs(&self) -> Vec<(String, &str)> {
        let measured = |name: &str| self.measured.iter().any(|m| m == name);
        let peers = self.measured.iter().filter_map(|p| {
            let ours = on_allocator_of("tower-sse", p);
            (!p.starts_with("tower-sse") && measured(&ours)).then_some((ours, p.as_str()))
        });
        let serve = ["tower-sse", SERVE_HYPER]
            .into_iter()
            .filter(|p| measured(SERVE) && measured(p))
            .map(|p| (SERVE.to_owned(), p));
        peers.chain(serve).collect()
    }
}

/// The suffixes of the allocator rows (`servers.rs`): `tower-sse+jemalloc` is `tower-sse` on
/// jemalloc. Other suffixes name other ways of serving (`tower-sse+serve`), on glibc's malloc.
const ALLOCATORS: &[&str] = &["jemalloc", "jemalloc-bg"];

/// The allocator row `server` is on, if it is one: `jemalloc` for `baseline+jemalloc`.
pub(crate) fn allocator(server: &str) -> Option<&str> {
    server
        .split_once('+')
        .map(|(_, suffix)| suffix)
        .filter(|suffix| ALLOCATORS.contains(suffix))
}

/// The row of `server` on the allocator of the row `of`: `baseline+jemalloc` for `baseline` of
/// `tower-sse+jemalloc`, `tower-sse` for `tower-sse` of `nchan` (and of `tower-sse+serve`, which
/// is on glibc's malloc).
pub(crate) fn on_allocator_of(server: &str, of: &str) -> String {
    match allocator(of) {
        Some(allocator) => format!("{server}+{allocator}"),
        None => server.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_is_read_against_tower_sse_on_its_allocator() {
        assert_eq!(
            on_allocator_of("baseline", "tower-sse+jemalloc"),
            "baseline+jemalloc"
        );
        assert_eq!(on_allocator_of("tower-sse", "nchan"), "tower-sse");
        assert_eq!(
            on_allocator_of("baseline", "tower-sse+jemalloc-bg"),
            "baseline+jemalloc-bg"
        );
        // A way of serving is no allocator.
        assert_eq!(on_allocator_of("baseline", SERVE), "baseline");
        assert_eq!(allocator(SERVE_HYPER), None);
        let res = Results::measuring(&["tower-sse", "baseline", "baseline+jemalloc", "nchan"]);
        // `baseline+jemalloc` has no `tower-sse+jemalloc` to be read against.
        assert_eq!(
            res.pairs(),
            [
                ("tower-sse".to_owned(), "baseline"),
                ("tower-sse".to_owned(), "nchan")
            ]
        );
    }

    #[test]
    fn serve_is_read_against_tower_sse_and_without_its_fast_path() {
        let res = Results::measuring(&["tower-sse", SERVE, SERVE_HYPER, "baseline", "floor"]);
        assert_eq!(
            res.pairs(),
            [
                ("tower-sse".to_owned(), "baseline"),
                ("tower-sse".to_owned(), "floor"),
                (SERVE.to_owned(), "tower-sse"),
                (SERVE.to_owned(), SERVE_HYPER),
            ]
        );
        // Without `tower-sse`, only the fast path's column.
        let res = Results::measuring(&[SERVE, SERVE_HYPER, "floor"]);
        assert_eq!(res.pairs(), [(SERVE.to_owned(), SERVE_HYPER)]);
    }
}
