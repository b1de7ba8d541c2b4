//! The modes of a run and the counts each measures at.

/// How much a run measures: `--smoke` (CI: tiny counts, tower-sse and the baseline), `--quick`
/// (the default) or `--full` (every count of issue 6).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Smoke,
    Quick,
    Full,
}

/// The counts, rates and durations of each scenario in one mode.
pub(crate) struct Plan {
    /// Streams of each idle run (one shared topic, and a topic each).
    pub(crate) idle: Vec<u64>,
    /// Subscribers of each fan-out run.
    pub(crate) subscribers: Vec<u64>,
    /// Events per second of the fan-out rows.
    pub(crate) rates: Vec<f64>,
    /// Event data sizes of the fan-out rows, bytes.
    pub(crate) sizes: Vec<usize>,
    /// How long each fan-out row (and compression round) publishes, s.
    pub(crate) publish_secs: f64,
    /// Clients of the replay storm, and how many events each is behind.
    pub(crate) storm_clients: u64,
    pub(crate) storm_behind: u64,
    /// How long the churn loops and each `/plain` run go on, s.
    pub(crate) churn_secs: f64,
    pub(crate) plain_secs: f64,
    /// Distinct topics of the many-topics scenario, one event each.
    pub(crate) many_topics: u64,
    /// Clients that never read, in each phase of the stalled scenario.
    pub(crate) stalled: u64,
    /// Open streams in the shutdown scenario.
    pub(crate) shutdown_streams: u64,
    /// Subscribers of the multi-node scenario (spread over the nodes), and how long each of its
    /// rounds publishes, s.
    pub(crate) multi_node_subscribers: u64,
    pub(crate) multi_node_secs: f64,
}

impl Plan {
    /// The plan of `mode`.
    pub(crate) fn of(mode: Mode) -> Plan {
        match mode {
            Mode::Smoke => Plan {
                idle: vec![100],
                subscribers: vec![50],
                rates: vec![10.0],
                sizes: vec![64],
                publish_secs: 2.0,
                storm_clients: 50,
                storm_behind: 100,
                churn_secs: 1.0,
                plain_secs: 1.0,
                many_topics: 2_000,
                stalled: 50,
                shutdown_streams: 200,
                multi_node_subscribers: 30,
                multi_node_secs: 1.0,
            },
            Mode::Quick => Plan {
                idle: vec![1000],
                subscribers: vec![100, 1000],
                rates: vec![10.0],
                sizes: vec![64],
                publish_secs: 5.0,
                storm_clients: 1000,
                storm_behind: 1000,
                churn_secs: 3.0,
                plain_secs: 3.0,
                many_topics: 20_000,
                stalled: 200,
                shutdown_streams: 2_000,
                multi_node_subscribers: 1000,
                multi_node_secs: 5.0,
            },
            Mode::Full => Plan {
                idle: vec![1000, 5000, 19000],
                subscribers: vec![100, 1000, 10000],
                rates: vec![1.0, 10.0, 100.0],
                sizes: vec![64, 1024],
                publish_secs: 5.0,
                storm_clients: 1000,
                storm_behind: 1000,
                churn_secs: 5.0,
                plain_secs: 5.0,
                many_topics: 1_000_000,
                stalled: 1000,
                shutdown_streams: 10_000,
                multi_node_subscribers: 10_000,
                multi_node_secs: 10.0,
            },
        }
    }
}
