//! The coordinator's metrics, on the node's one stack: the `metrics` facade
//! in code and the Prometheus exporter rendering `/metrics` on scrape. Every
//! metric is described here and set through [`record`], so names live in one
//! place. They are gauges read from `raft.metrics()` and the leader's
//! liveness view, so no upkeep task is needed (no histograms).

use metrics::{describe_gauge, gauge};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

use crate::types::NodeId;

/// Installs the process-wide recorder and describes every metric.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    describe_gauge!("rhizome_raft_term", "This replica's current raft term.");
    describe_gauge!(
        "rhizome_raft_is_leader",
        "1 while this replica is the raft leader."
    );
    describe_gauge!(
        "rhizome_raft_applied_index",
        "Index of the last log entry applied to this replica's state machine."
    );
    describe_gauge!(
        "rhizome_cluster_nodes_live",
        "Live proxy nodes: the leader's timers on the leader, the replicated state elsewhere."
    );
    Ok(handle)
}

/// What the gauges show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Current term.
    pub term: u64,
    /// Current leader, if known.
    pub leader: Option<NodeId>,
    /// This replica.
    pub id: NodeId,
    /// Last applied index.
    pub applied: u64,
    /// Live nodes.
    pub nodes_live: usize,
}

/// Sets every gauge.
#[allow(clippy::cast_precision_loss)]
pub fn record(s: &Snapshot) {
    gauge!("rhizome_raft_term").set(s.term as f64);
    gauge!("rhizome_raft_is_leader").set(if s.leader == Some(s.id) { 1.0 } else { 0.0 });
    gauge!("rhizome_raft_applied_index").set(s.applied as f64);
    gauge!("rhizome_cluster_nodes_live").set(s.nodes_live as f64);
}
