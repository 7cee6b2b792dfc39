//! Status routes: `GET /v1/cluster` (this replica's view: leader, term,
//! members, live nodes and owners), `GET /metrics` (Prometheus text,
//! gauges refreshed on scrape) and `GET /healthz` (200 while raft runs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use crate::app::App;
use crate::types::NodeId;

/// `GET /v1/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// This replica.
    pub id: NodeId,
    /// The leader this replica knows of.
    pub leader: Option<NodeId>,
    /// This replica's term.
    pub term: u64,
    /// Voting members.
    pub members: Vec<NodeId>,
    /// Index of the last entry applied here.
    pub applied: u64,
    /// Nodes of the replicated state; `live` by the leader's timers on the
    /// leader, always true elsewhere.
    pub nodes: Vec<NodeView>,
    /// Owner of each credential.
    pub assignments: BTreeMap<String, OwnerView>,
}

/// A node in [`ClusterView`].
#[derive(Debug, Serialize)]
pub struct NodeView {
    /// Node id.
    pub id: String,
    /// Whether the node counts as live.
    pub live: bool,
}

/// An owner in [`ClusterView`].
#[derive(Debug, Serialize)]
pub struct OwnerView {
    /// Owner node id.
    pub node: String,
    /// Log index that committed the assignment.
    pub epoch: u64,
    /// Log index at which the credential moved to this node.
    pub since: u64,
}

/// `GET /v1/cluster`.
pub async fn cluster(State(app): State<Arc<App>>) -> Json<ClusterView> {
    let m = app.raft_metrics();
    let leading = app.leading_term().is_some();
    let assignments = app.sm.assignments();
    let now = Instant::now();
    let nodes = assignments
        .nodes()
        .iter()
        .map(|(id, info)| NodeView {
            id: id.clone(),
            live: !leading
                || app
                    .liveness
                    .is_live(id, Duration::from_millis(info.node_ttl_ms), now),
        })
        .collect();
    let owners = assignments
        .owners()
        .iter()
        .map(|(cred, o)| {
            let view = OwnerView {
                node: o.node.clone(),
                epoch: o.epoch,
                since: o.since,
            };
            (cred.clone(), view)
        })
        .collect();
    Json(ClusterView {
        id: app.config.id,
        leader: m.current_leader,
        term: m.current_term,
        members: m.membership_config.membership().voter_ids().collect(),
        applied: app.sm.applied_index(),
        nodes,
        assignments: owners,
    })
}

/// `GET /healthz`.
pub async fn healthz(State(app): State<Arc<App>>) -> impl IntoResponse {
    let m = app.raft_metrics();
    let (status, word) = if m.running_state.is_ok() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "failed")
    };
    let body = serde_json::json!({"status": word, "id": app.config.id, "leader": m.current_leader});
    (status, Json(body))
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    app.record_metrics();
    let text = app.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
