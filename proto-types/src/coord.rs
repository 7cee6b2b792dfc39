//! The node API of the coordinator: what a node sends (heartbeats carrying
//! the names of its configured credentials, a goodbye on graceful shutdown)
//! and what it learns back (every credential's owner and assignment epoch).
//! Bodies cross the wire in the [`crate::codec`] encoding (`application/octet-stream`);
//! errors are Rhizome's JSON errors. Raft's own RPCs use openraft's types and
//! live in the coordinator.

use serde::{Deserialize, Serialize};

/// `POST` a [`Heartbeat`], answered with a [`HeartbeatReply`].
pub const HEARTBEAT_PATH: &str = "/v1/heartbeat";
/// `POST` a [`Leave`], answered with a [`HeartbeatReply`] (the assignments after it).
pub const LEAVE_PATH: &str = "/v1/leave";
/// Largest node-API body a coordinator reads; larger bodies get 400.
pub const MAX_NODE_BODY: usize = 1 << 20;
/// Content type of codec-encoded bodies.
pub const CONTENT_TYPE: &str = "application/octet-stream";
/// Header a follower sets when it forwarded the call to the leader, so a
/// forwarded call is never forwarded again.
pub const FORWARDED_HEADER: &str = "rhizome-forwarded";

/// A node says it is alive, which credentials it serves and how long its
/// silence may last before its credentials move (its own `node_ttl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node's id (`node.id`).
    pub node: String,
    /// Names of the credentials configured on the node, sorted.
    pub credentials: Vec<String>,
    /// The node's `coordinator.node_ttl`, in milliseconds.
    pub node_ttl_ms: u64,
    /// `applied` of the last reply the node acted on (0: none yet). Once
    /// the previous owners have seen a move, the move's new owner may act.
    pub seen: u64,
}

/// A node leaves gracefully: its credentials move at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// The node's id.
    pub node: String,
}

/// Who owns one credential, and since which committed log index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Credential name.
    pub credential: String,
    /// Owner node id.
    pub node: String,
    /// Raft log index that committed this assignment: the first half of the
    /// owner's fencing epoch.
    pub epoch: u64,
    /// Log index at which the credential moved to this owner.
    pub since: u64,
    /// True once every live previous owner has seen the move (so none of them
    /// still acts as owner): only then may the owner start. An owner that
    /// once saw its assignment active keeps it while `since` is unchanged.
    pub active: bool,
}

/// The leader's answer to a heartbeat or a goodbye.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The leader's replica id.
    pub leader: u64,
    /// The leader's URL, for the node's next call.
    pub leader_url: String,
    /// The leader's raft term.
    pub term: u64,
    /// Applied log index the answer was built from (sent back as `seen`).
    pub applied: u64,
    /// Every assigned credential's owner, sorted by credential.
    pub assignments: Vec<Assignment>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn messages_round_trip_and_garbage_is_an_error() {
        let hb = Heartbeat {
            node: "node-1".into(),
            credentials: vec!["a".into(), "b".into()],
            node_ttl_ms: 3000,
            seen: 12,
        };
        assert_eq!(
            decode::<Heartbeat>(&encode(&hb).expect("encode")).expect("decode"),
            hb
        );
        let reply = HeartbeatReply {
            leader: 2,
            leader_url: "http://127.0.0.1:7071".into(),
            term: 4,
            applied: 19,
            assignments: vec![Assignment {
                credential: "a".into(),
                node: "node-1".into(),
                epoch: 17,
                since: 15,
                active: true,
            }],
        };
        assert_eq!(
            decode::<HeartbeatReply>(&encode(&reply).expect("encode")).expect("decode"),
            reply
        );
        assert!(decode::<Heartbeat>(b"\xff\xff\xff\xff").is_err());
    }
}
