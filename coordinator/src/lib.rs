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

pub mod assign;
pub mod store;
pub mod types;
