//! `GET /admin/v1/cluster`: this node's view of the cluster — its ownership
//! mode and whether that runs degraded, what it last heard from the raft
//! coordinator (leader, term, the nodes and assignments with their epochs),
//! who owns each of its credentials under which epoch, and whether its Redis
//! answers (one `PING` under the state store's breaker and timeout). It is
//! what the node knows, not the coordinator's own `GET /v1/cluster`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use fred::interfaces::ClientLike;
use rhizome_proto::config::CoordinatorMode;
use serde::Serialize;

use crate::App;

/// The node's view of the cluster.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// This node's id.
    pub node: String,
    /// `coordinator.mode`: `embedded`, `redis-lock` or `cluster`.
    pub mode: &'static str,
    /// True while no coordinator answers and refreshes run under the Redis
    /// lock (cluster mode only).
    pub degraded: bool,
    /// What the coordinator last answered; absent outside cluster mode and
    /// before the first answer.
    pub coordinator: Option<CoordinatorInfo>,
    /// Nodes this node knows of: itself and every node the coordinator
    /// assigned a credential to.
    pub nodes: Vec<String>,
    /// Who refreshes each credential of this node, under which epoch.
    pub ownership: Vec<OwnershipView>,
    /// The shared state backend.
    pub redis: RedisView,
}

/// The coordinator's last answer, as this node acted on it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CoordinatorInfo {
    /// The leader's replica id.
    pub leader: u64,
    /// The leader's URL.
    pub leader_url: String,
    /// The leader's raft term.
    pub term: u64,
    /// Applied raft log index of that answer.
    pub applied: u64,
    /// Milliseconds since the last acknowledged heartbeat was sent.
    pub acked_ms_ago: Option<u64>,
}

/// One credential's owner.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OwnershipView {
    /// Credential name.
    pub credential: String,
    /// Node that refreshes it, or who may (`any node (redis-lock)`).
    pub owner: String,
    /// Fencing epoch of its refreshes.
    pub epoch: String,
    /// Whether the coordinator's assignment is active (every previous owner
    /// has seen the move); absent when the coordinator assigned nothing.
    pub active: Option<bool>,
}

/// The shared state backend's health.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedisView {
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// Whether Redis answered a `PING` just now; absent with `memory`.
    pub up: Option<bool>,
    /// Round trip of that `PING`, in milliseconds.
    pub latency_ms: Option<f64>,
    /// True once Redis has answered and the subscriptions are up.
    pub reached: bool,
}

/// This node's view of the cluster: mode, coordinator, ownership, Redis.
#[utoipa::path(get, path = "/admin/v1/cluster", tag = "admin",
    responses((status = 200, body = ClusterView), (status = 401, description = "`admin_unauthorized`")),
    security(("admin_token" = [])))]
pub(super) async fn cluster_view(State(app): State<Arc<App>>) -> Json<ClusterView> {
    let ownership = &app.ownership;
    let coordinator = ownership.coordinator();
    let mut nodes = BTreeSet::from([app.node_id.clone()]);
    let owners = coordinator
        .as_ref()
        .map(|c| c.assignments.as_slice())
        .unwrap_or_default();
    nodes.extend(owners.iter().map(|a| a.node.clone()));
    let credentials = app
        .credentials
        .iter()
        .map(|c| {
            let owner = ownership.owner(c);
            OwnershipView {
                credential: c.name.clone(),
                owner: owner.node,
                epoch: owner.epoch.to_string(),
                active: owners
                    .iter()
                    .find(|a| a.credential == c.name)
                    .map(|a| a.active),
            }
        })
        .collect();
    Json(ClusterView {
        node: app.node_id.clone(),
        mode: match ownership.mode() {
            CoordinatorMode::Embedded => "embedded",
            CoordinatorMode::RedisLock => "redis-lock",
            CoordinatorMode::Cluster => "cluster",
        },
        degraded: ownership.degraded(),
        coordinator: coordinator.map(|c| CoordinatorInfo {
            leader: c.leader,
            leader_url: c.leader_url,
            term: c.term,
            applied: c.applied,
            acked_ms_ago: c
                .acked_ago
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }),
        nodes: nodes.into_iter().collect(),
        ownership: credentials,
        redis: redis_view(&app).await,
    })
}

async fn redis_view(app: &App) -> RedisView {
    let Some(redis) = &app.state.redis else {
        return RedisView {
            backend: "memory",
            up: None,
            latency_ms: None,
            reached: true,
        };
    };
    let start = Instant::now();
    let up = redis
        .run("ping", redis.client().ping::<()>(None))
        .await
        .is_ok();
    RedisView {
        backend: "redis",
        up: Some(up),
        latency_ms: up.then(|| start.elapsed().as_secs_f64() * 1000.0),
        reached: redis.reached(),
    }
}
