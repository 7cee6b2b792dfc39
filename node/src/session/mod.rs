//! MCP Streamable HTTP sessions. The upstream's `Mcp-Session-Id`
//! (`U`) is never shown to clients: the node answers with its own proxy id
//! (`P`, 128 random bits) and keeps `P → U` (plus the pinned target, route and
//! client identity) in the [`SessionStore`], so any node can serve the next
//! request. A small local cache keeps hits at zero state-store commands;
//! a miss is one command (GETEX, which also slides the TTL); the TTL of cached
//! sessions is slid in the background at most every quarter of the TTL.
//!
//! `rhizome_sessions_active` counts sessions in the store — every node's with
//! Redis — not this node's cache: [`Sessions::run_gauge`] recounts them every
//! [`COUNT_EVERY`] (a bounded cost; see [`crate::state::sessions`]).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use rhizome_proto::records::{SessionRecord, StateEvent};
use tokio_util::sync::CancellationToken;

use crate::credentials::source::unix_ms;
use crate::metrics;
use crate::state::events;
use crate::state::redis::{Redis, StateError};
use crate::state::sessions::{Page, SessionStore};

/// Header carrying the session id, both ways.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// Header carrying the MCP protocol revision.
pub const PROTOCOL_HEADER: &str = "mcp-protocol-version";
/// The stateless protocol revision: passed through without session mapping.
pub const STATELESS_REVISION: &str = "2026-07-28";
/// Entries kept at most in the local cache.
const MAX_CACHED: usize = 10_000;
/// A cached entry is trusted this long at most before it is read again.
const CACHE_FOR: Duration = Duration::from_secs(30);
/// How often `rhizome_sessions_active` is recounted from the store.
pub const COUNT_EVERY: Duration = Duration::from_secs(5);

/// Prefix of every proxy session id.
const ID_PREFIX: &str = "rzs-";

/// A new proxy session id: `rzs-` and 128 random bits in lowercase hex.
pub fn new_proxy_id() -> String {
    format!("{ID_PREFIX}{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// True when `id` has the shape of a proxy session id (what
/// [`new_proxy_id`] makes). Anything else cannot name a session, so it is
/// answered without asking the session store. Never panics, whatever the input.
pub fn is_proxy_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Sessions: the shared store plus this node's cache of it.
#[derive(Debug)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    redis: Option<Arc<Redis>>,
    cache: Mutex<HashMap<String, Cached>>,
}

#[derive(Debug, Clone)]
struct Cached {
    record: SessionRecord,
    cached_at: Instant,
}

/// Why a session cannot be used.
#[derive(Debug)]
pub enum Lookup {
    /// Found, and the caller may use it.
    Found(SessionRecord),
    /// Unknown, expired, or not this client's or route's: answer 404.
    NotFound,
}

impl Sessions {
    /// Sessions over `store`; `redis` publishes deletions to other nodes.
    pub fn new(store: Arc<dyn SessionStore>, redis: Option<Arc<Redis>>) -> Self {
        Sessions {
            store,
            redis,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, id: &str, record: SessionRecord) {
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED && !cache.contains_key(id) {
            let now = Instant::now();
            cache.retain(|_, c| now.duration_since(c.cached_at) < CACHE_FOR);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        let now = Instant::now();
        cache.insert(
            id.to_string(),
            Cached {
                record,
                cached_at: now,
            },
        );
    }

    /// The session `id` for `client` on `route`, sliding its TTL.
    pub async fn lookup(
        self: &Arc<Self>,
        id: &str,
        client: &str,
        route: &str,
        ttl: Duration,
    ) -> Result<Lookup, StateError> {
        // A cached entry is trusted for at most a quarter of the TTL (and 30 s);
        // the re-read after that is a GETEX, which also slides the TTL, so a
        // session in use never expires and a hit costs nothing.
        let cached = {
            let cache = self.cache.lock();
            cache
                .get(id)
                .filter(|c| c.cached_at.elapsed() < CACHE_FOR.min(ttl / 4))
                .map(|c| c.record.clone())
        };
        let record = match cached {
            Some(record) => record,
            None => match self.store.get(id, Some(ttl)).await? {
                Some(record) => {
                    self.remember(id, record.clone());
                    record
                }
                None => return Ok(Lookup::NotFound),
            },
        };
        if record.client != client || record.route != route {
            return Ok(Lookup::NotFound);
        }
        Ok(Lookup::Found(record))
    }

    /// Creates a proxy session for upstream session `upstream_session`.
    pub async fn create(
        &self,
        upstream_session: &str,
        route: &str,
        target: &str,
        client: &str,
        ttl: Duration,
    ) -> Result<String, StateError> {
        let id = new_proxy_id();
        let now = unix_ms();
        let record = SessionRecord {
            upstream_session: upstream_session.to_string(),
            route: route.to_string(),
            target: target.to_string(),
            client: client.to_string(),
            created_ms: now,
        };
        self.store.put(&id, &record, ttl).await?;
        self.remember(&id, record);
        metrics::session_created();
        Ok(id)
    }

    /// Ends session `id` everywhere.
    pub async fn remove(&self, id: &str) -> Result<bool, StateError> {
        self.forget_local(id);
        let existed = self.store.delete(id).await?;
        if let Some(redis) = &self.redis {
            events::publish(redis, &StateEvent::SessionDeleted { id: id.to_string() }).await;
        }
        Ok(existed)
    }

    /// Drops `id` from this node's cache (deleted elsewhere).
    pub fn forget_local(&self, id: &str) {
        self.cache.lock().remove(id);
    }

    /// Drops the whole local cache (events may have been missed).
    pub fn clear_local(&self) {
        self.cache.lock().clear();
    }

    /// Keeps `rhizome_sessions_active` at the store's count until `stop`.
    /// While the store does not answer the gauge keeps its last value.
    pub async fn run_gauge(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(COUNT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            match self.store.count().await {
                Ok(n) => metrics::sessions_active(n),
                Err(e) => tracing::debug!(error = %e, "sessions not counted"),
            }
        }
    }

    /// A page of sessions, for the admin API.
    pub async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Page, StateError> {
        self.store.list(cursor, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_ids_of_the_issued_shape_are_looked_up() {
        assert!(is_proxy_id(&new_proxy_id()));
        for id in [
            "",
            "rzs-",
            "rzs-0123456789abcdef0123456789ABCDEF",
            "rzs-0123456789abcdef0123456789abcde",
            "rzs-0123456789abcdef0123456789abcdef0",
            "RZS-0123456789abcdef0123456789abcdef",
            "rzs-0123456789abcdef0123456789abcdeé",
        ] {
            assert!(!is_proxy_id(id), "{id:?}");
        }
    }

    proptest! {
        #[test]
        fn shape_check_matches_the_format(id in "\\PC{0,40}|rzs-[0-9a-f]{32}") {
            let want = id.len() == 36
                && id.starts_with(ID_PREFIX)
                && id[4..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            prop_assert_eq!(is_proxy_id(&id), want);
        }
    }
}
