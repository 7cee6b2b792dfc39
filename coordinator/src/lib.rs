//! The Rhizome coordinator: a small openraft cluster (3 or 5 replicas) that
//! assigns each credential to exactly one live node, which alone refreshes
//! its token. Nodes heartbeat any replica; the leader keeps liveness timers
//! in memory and commits only joins, departures and deaths, each of which
//! moves the fewest credentials (rendezvous hashing). An assignment's epoch
//! is the log index that committed it, so epochs only grow and fence stale
//! owners out of the shared token records.
//!
//! # Layout
//! - [`assign`]: the replicated state (live nodes, credentials, owners) and
//!   the commands that change it: pure, deterministic code.
//! - [`types`]: the raft type configuration.
//! - [`store`]: the log, vote and snapshots in redb under `--data-dir`, and
//!   the state machine applying [`assign::Command`]s.
//! - [`config`]: loading (defaults < file < `RHIZOME_COORD__*` < flags) and
//!   validation of a replica's configuration.
//! - [`network`]: raft RPCs to the other replicas over pooled HTTP/1.1.
//! - [`app`]: a running replica (raft, state, liveness) and its bootstrap.
//! - [`api`]: the one listener: raft RPC handlers, the node API (answered
//!   by the leader, forwarded by followers), `/v1/cluster`, `/metrics`,
//!   `/healthz`.
//! - [`liveness`]: the leader's in-memory node timers and the loop that
//!   declares silent nodes dead.
//! - [`server`]: running a replica until shutdown.
//! - [`metrics`], [`telemetry`]: gauges and logging.

pub mod api;
pub mod app;
pub mod assign;
pub mod config;
pub mod liveness;
pub mod metrics;
pub mod network;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod types;

pub use server::run;

/// Why a replica could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The raft settings were refused by openraft.
    #[error("raft configuration: {0}")]
    RaftConfig(#[from] Box<openraft::ConfigError>),
    /// The raft storage could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Raft failed to start or to bootstrap.
    #[error("raft: {0}")]
    Raft(String),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}
