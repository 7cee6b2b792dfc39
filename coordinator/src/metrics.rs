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

/// Sets the raft gauges: `term`, whether `leader` is this replica `id`,
/// and the `applied` index.
#[allow(clippy::cast_precision_loss)]
pub fn record_raft(term: u64, leader: Option<NodeId>, id: NodeId, applied: u64) {
    gauge!("rhizome_raft_term").set(term as f64);
    gauge!("rhizome_raft_is_leader").set(if leader == Some(id) { 1.0 } else { 0.0 });
    gauge!("rhizome_raft_applied_index").set(applied as f64);
}

/// Sets the live-node gauge.
#[allow(clippy::cast_precision_loss)]
pub fn record_nodes_live(live: usize) {
    gauge!("rhizome_cluster_nodes_live").set(live as f64);
}
