//! Who refreshes which credential. Exactly one party should call a token
//! endpoint ahead of expiry for each credential (G1); which party that is
//! depends on `coordinator.mode`, and this module is the one place that
//! decides it. An [`Ownership`] says which node owns a credential under which
//! [`Epoch`], starts and stops the refresh-ahead work of the credentials this
//! node owns, and steps down on demand (shutdown; a node that lost touch with
//! its coordinator steps down before anybody else steps up).
//!
//! Implementations:
//! - [`Embedded`]: one node owns every credential (the single-node default);
//! - [`RedisLock`]: every node runs the refresh-ahead timer from the shared
//!   record's schedule and the fenced lease in Redis lets exactly one token
//!   call through per refresh; nobody owns a credential for long.
//! - [`Cluster`]: the raft coordinator assigns each shared credential to one
//!   live node, which refreshes it under the assignment's epoch
//!   ([`Credential::set_assignment`]); with no coordinator answering, the
//!   `redis-lock` protocol takes over (degraded mode).

mod client;
mod cluster;
mod refreshers;

use std::sync::Arc;
use std::time::Duration;

use rhizome_proto::config::{CoordinatorConfig, CoordinatorMode};
use rhizome_proto::coord::Assignment;
use rhizome_proto::Epoch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::credentials::Credential;
use crate::metrics;
pub use cluster::Cluster;
pub use refreshers::Refreshers;

/// Who owns a credential, as the admin view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Node that refreshes it, or a description of who may.
    pub node: String,
    /// The epoch its refreshes are fenced with.
    pub epoch: Epoch,
}

/// What this node last heard from the raft coordinator, as the admin view
/// shows it (cluster mode only).
#[derive(Debug, Clone)]
pub struct CoordinatorView {
    /// The leader's replica id.
    pub leader: u64,
    /// The leader's URL.
    pub leader_url: String,
    /// The leader's raft term.
    pub term: u64,
    /// Applied log index of the last answer acted on.
    pub applied: u64,
    /// Time since the last acknowledged heartbeat was sent.
    pub acked_ago: Option<Duration>,
    /// Every assigned credential's owner, sorted by credential.
    pub assignments: Vec<Assignment>,
}

/// The credential-ownership policy of a node.
pub trait Ownership: Send + Sync + std::fmt::Debug {
    /// The configured mode, for logs and the admin view.
    fn mode(&self) -> CoordinatorMode;
    /// Who owns `credential`.
    fn owner(&self, credential: &Credential) -> Owner;
    /// Starts refresh work for what this node owns; stops with `shutdown`.
    fn start(&self, shutdown: &CancellationToken);
    /// Stops acting as owner of anything, at once.
    fn step_down(&self);
    /// True while no coordinator answers and the lock protocol rules.
    fn degraded(&self) -> bool {
        false
    }
    /// The coordinator's last answer, when there is a coordinator and it answered.
    fn coordinator(&self) -> Option<CoordinatorView> {
        None
    }
}

/// Builds the ownership policy of `cfg.mode` over `credentials`.
pub fn build(
    cfg: &CoordinatorConfig,
    node_id: &str,
    credentials: Vec<Arc<Credential>>,
    tasks: TaskTracker,
) -> Arc<dyn Ownership> {
    let refreshers = Refreshers::new(credentials, tasks);
    match cfg.mode {
        CoordinatorMode::RedisLock => Arc::new(RedisLock { refreshers }),
        CoordinatorMode::Cluster => Arc::new(Arc::new(Cluster::new(cfg, node_id, refreshers))),
        CoordinatorMode::Embedded => Arc::new(Embedded {
            node_id: node_id.to_string(),
            refreshers,
        }),
    }
}

/// Starts refreshing every credential ahead of expiry, with the fixed
/// ownership gauges of a mode that never moves credentials between nodes;
/// `owned` says whether this node shows as the owner of each.
fn refresh_every_credential(refreshers: &Refreshers, owned: bool, shutdown: &CancellationToken) {
    metrics::ownership_embedded();
    for name in refreshers.names() {
        metrics::credential_owned(&name, owned);
        refreshers.start(&name, false, shutdown);
    }
}

/// One node owns every credential.
#[derive(Debug)]
pub struct Embedded {
    node_id: String,
    refreshers: Refreshers,
}

impl Ownership for Embedded {
    fn mode(&self) -> CoordinatorMode {
        CoordinatorMode::Embedded
    }

    fn owner(&self, _credential: &Credential) -> Owner {
        Owner {
            node: self.node_id.clone(),
            epoch: Epoch::default(),
        }
    }

    fn start(&self, shutdown: &CancellationToken) {
        refresh_every_credential(&self.refreshers, true, shutdown);
    }

    fn step_down(&self) {
        self.refreshers.stop_all();
    }
}

/// Every node refreshes ahead; the fenced lease in Redis lets one through.
#[derive(Debug)]
pub struct RedisLock {
    refreshers: Refreshers,
}

impl Ownership for RedisLock {
    fn mode(&self) -> CoordinatorMode {
        CoordinatorMode::RedisLock
    }

    fn owner(&self, credential: &Credential) -> Owner {
        Owner {
            node: "any node (redis-lock)".into(),
            epoch: Epoch::new(credential.assignment(), 0),
        }
    }

    fn start(&self, shutdown: &CancellationToken) {
        refresh_every_credential(&self.refreshers, false, shutdown);
    }

    fn step_down(&self) {
        self.refreshers.stop_all();
    }
}
