//! The scenarios, one file each: how it runs (it starts the server it measures, drives `loadgen`
//! and adds its rows to [`Results`]) and its section of the report.

pub(crate) mod churn;
pub(crate) mod compression;
pub(crate) mod fan_out;
pub(crate) mod idle;
pub(crate) mod many_topics;
pub(crate) mod multi_node;
pub(crate) mod plain;
pub(crate) mod shutdown;
pub(crate) mod stalled;
pub(crate) mod storm;

/// What a run measured, and which servers it measured.
#[derive(Default)]
pub(crate) struct Results {
    pub(crate) idle: Vec<idle::IdleRow>,
    pub(crate) fan: Vec<fan_out::FanRow>,
    pub(crate) storm: Vec<storm::StormRow>,
    pub(crate) churn: Vec<churn::ChurnRow>,
    pub(crate) plain: Vec<plain::PlainRow>,
    pub(crate) many: Vec<many_topics::ManyRow>,
    pub(crate) compression: Vec<compression::CompressionRow>,
    pub(crate) stalled: Option<stalled::StalledRun>,
    pub(crate) shutdown: Option<shutdown::ShutdownRow>,
    pub(crate) multi_node: multi_node::MultiNode,
    /// Servers not measured, and why.
    pub(crate) skipped: Vec<(String, String)>,
    pub(crate) measured: Vec<String>,
    /// Measured servers with a library preloaded into them, and how (`LD_PRELOAD=…` and the
    /// rest of their environment).
    pub(crate) preloaded: Vec<(String, String)>,
    /// Servers without replay, so not in the replay storm.
    pub(crate) no_replay: Vec<String>,
}

#[cfg(test)]
impl Results {
    /// Nothing measured yet, of the servers `names`.
    pub(crate) fn measuring(names: &[&str]) -> Results {
        Results {
            measured: names.iter().map(|&n| n.to_owned()).collect(),
            ..Results::default()
        }
    }
}
