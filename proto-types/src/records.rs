//! Records Rhizome keeps in shared state and the events nodes
//! exchange about them. Keys are prefixed `rz:` and carry a hash tag so that
//! one credential's or one session's keys share a Redis Cluster slot.

use serde::{Deserialize, Serialize};

/// Key of a credential's token record (a hash).
pub fn token_key(credential: &str) -> String {
    format!("rz:tok:{{{credential}}}")
}

/// Key of a credential's refresh lock (`SET NX PX`).
pub fn lock_key(credential: &str) -> String {
    format!("rz:lock:{{{credential}}}")
}

/// Key of a credential's fencing counter: every lock acquisition takes the next value.
pub fn fence_key(credential: &str) -> String {
    format!("rz:fence:{{{credential}}}")
}

/// Key of an MCP proxy session.
pub fn session_key(id: &str) -> String {
    format!("rz:sess:{{{id}}}")
}

/// Pub/sub channel of token events.
pub const TOKEN_EVENTS: &str = "rz:tok-events";

/// Key of an SSE stream's replay log (a Redis Stream; entry ids are
/// `<seq>-0`, so reading after a sequence number is one `XRANGE`).
pub fn sse_log_key(stream: &str) -> String {
    format!("rz:sse:{{{stream}}}:log")
}

/// Key of an SSE stream's meta record (a hash: the [`StreamMeta`], the last
/// sequence number and upstream id, lost ranges, the producer's epoch).
pub fn sse_meta_key(stream: &str) -> String {
    format!("rz:sse:{{{stream}}}:meta")
}

/// Key of an SSE stream's producer lease (`SET NX PX`).
pub fn sse_lease_key(stream: &str) -> String {
    format!("rz:sse:{{{stream}}}:lease")
}

/// Key of the cluster's key for client-facing SSE event ids (32 random
/// bytes, created once by whichever node needs it first).
pub const SSE_ID_KEY: &str = "rz:sse-id-key";

/// Pub/sub channel of SSE wake-up hints (payload: the stream id). Hints only:
/// readers also poll.
pub const SSE_WAKE: &str = "rz:sse-wake";

/// What a replayed SSE stream stands for: who may resume it, and the request
/// that reopens it upstream after a takeover. Never holds client secrets: the
/// client's key headers are not kept, and the credential is picked anew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// Client that opened the stream; nobody else may resume it.
    pub client: String,
    /// Route it belongs to.
    pub route: String,
    /// MCP proxy session the stream belongs to, if any.
    pub session: Option<String>,
    /// The request that reopens the stream upstream.
    pub reopen: ReopenRequest,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
}

/// An upstream request as it can be sent again, without client secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReopenRequest {
    /// Method.
    pub method: String,
    /// Path and query sent upstream.
    pub path: String,
    /// Headers sent upstream, the credential and client keys excluded.
    pub headers: Vec<(String, String)>,
    /// The request body (bounded by the route's `retry_body_limit`).
    pub body: Vec<u8>,
}

/// An MCP proxy session: what a proxy session id `P` stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The upstream's own `Mcp-Session-Id` (`U`); never shown to clients or admins.
    pub upstream_session: String,
    /// Route the session belongs to.
    pub route: String,
    /// Upstream target the session is pinned to (its base URL).
    pub target: String,
    /// Client that created it; nobody else may use it.
    pub client: String,
    /// Creation time, Unix milliseconds. (Last use is what the sliding TTL
    /// measures: the record expires `session_idle_ttl` after it.)
    pub created_ms: u64,
}

/// Token and session events on [`TOKEN_EVENTS`]. Pub/sub is at most once:
/// receivers re-read state after every resubscribe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateEvent {
    /// A new token `version` of `credential` was written.
    Updated {
        /// Credential name.
        credential: String,
        /// Version written.
        version: u64,
    },
    /// Token `version` of `credential` was invalidated (upstream 401).
    Invalidated {
        /// Credential name.
        credential: String,
        /// Version invalidated.
        version: u64,
    },
    /// Somebody asks the credential's owner to refresh it.
    RefreshRequest {
        /// Credential name.
        credential: String,
    },
    /// A session was deleted; drop it from local caches.
    SessionDeleted {
        /// Proxy session id.
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn keys_share_a_hash_tag_per_credential() {
        assert_eq!(token_key("a"), "rz:tok:{a}");
        assert_eq!(lock_key("a"), "rz:lock:{a}");
        assert_eq!(fence_key("a"), "rz:fence:{a}");
    }

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        let rec = SessionRecord {
            upstream_session: "u".into(),
            route: "r".into(),
            target: "http://t".into(),
            client: "c".into(),
            created_ms: 1,
        };
        assert_eq!(
            decode::<SessionRecord>(&encode(&rec).expect("encode")).expect("decode"),
            rec
        );
        let ev = StateEvent::Updated {
            credential: "a".into(),
            version: 7,
        };
        assert_eq!(
            decode::<StateEvent>(&encode(&ev).expect("encode")).expect("decode"),
            ev
        );
        assert!(decode::<SessionRecord>(b"\xff\xff\xff").is_err());
        let mut long = encode(&ev).expect("encode");
        long.push(0);
        assert!(decode::<StateEvent>(&long).is_err());
    }
}
