//! The raft type configuration of the coordinator: log entries carry
//! [`Command`]s, applying one answers an [`Applied`]; replica ids are `u64`
//! and replicas are addressed by URL ([`openraft::BasicNode`]).

use std::io::Cursor;

use crate::assign::{Applied, Command};

openraft::declare_raft_types!(
    /// Raft types of the coordinator.
    pub TypeConfig:
        D = Command,
        R = Applied,
);

/// A replica id (`--id`).
pub type NodeId = u64;
/// The coordinator's raft instance.
pub type Raft = openraft::Raft<TypeConfig>;
/// A replica's address as raft stores it (`addr` is its base URL).
pub type Member = openraft::BasicNode;
