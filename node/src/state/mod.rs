//! Where a node's shared state lives: in this process on the
//! embedded default, or in Redis for a cluster. [`SharedState`] bundles the
//! session store and the SSE replay buffers every route uses, and — with
//! Redis — the token records and the event subscription that keeps local
//! caches fresh.

pub mod events;
pub mod lease;
pub mod redis;
pub mod redis_tls;
pub mod replay;
pub mod sessions;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use rhizome_proto::config::{
    url_uses_tls, ConfigError, CoordinatorMode, StateBackend, StateConfig,
};
use secrecy::SecretString;

use crate::credentials::source::TOKEN_FETCH_TIMEOUT;
use redis::Redis;
use replay::{MemoryReplayStore, RedisReplayStore, ReplayStore};
use sessions::{MemorySessionStore, RedisSessionStore, SessionStore};
use tokens::SharedTokens;

/// Sessions kept at most by the in-memory store.
const MAX_MEMORY_SESSIONS: usize = 100_000;
/// SSE streams kept at most by the in-memory replay store.
const MAX_MEMORY_STREAMS: usize = 10_000;

/// The shared state of one node.
#[derive(Debug)]
pub struct SharedState {
    /// MCP proxy sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// SSE replay buffers.
    pub replay: Arc<dyn ReplayStore>,
    /// The Redis client, when `backend = "redis"`.
    pub redis: Option<Arc<Redis>>,
    /// Token records in Redis, when tokens are shared (`redis-lock`).
    pub tokens: Option<Arc<SharedTokens>>,
}

impl SharedState {
    /// Builds the state backend (no I/O: connections start in [`SharedState::start`]).
    pub fn build(
        cfg: &StateConfig,
        mode: CoordinatorMode,
        node_id: &str,
        encryption_key: Option<&SecretString>,
    ) -> Result<Self, ConfigError> {
        match cfg.backend {
            StateBackend::Memory => Ok(SharedState {
                sessions: Arc::new(MemorySessionStore::new(MAX_MEMORY_SESSIONS)),
                replay: Arc::new(MemoryReplayStore::new(MAX_MEMORY_STREAMS)),
                redis: None,
                tokens: None,
            }),
            StateBackend::Redis => {
                let tls = match url_uses_tls(&cfg.redis_url) {
                    true => Some(redis_tls::client_config(cfg.tls.as_ref())?),
                    false => None,
                };
                let redis = Arc::new(
                    Redis::new(cfg, tls)
                        .map_err(|e| ConfigError::new("state.redis_url", e.to_string()))?,
                );
                let tokens = match mode {
                    CoordinatorMode::RedisLock | CoordinatorMode::Cluster => Some(Arc::new(
                        SharedTokens::new(
                            redis.clone(),
                            node_id,
                            encryption_key,
                            // The holder's worst case: read, fetch, write, publish.
                            TOKEN_FETCH_TIMEOUT + cfg.op_timeout * 4 + Duration::from_secs(1),
                        )
                        .map_err(|e| ConfigError::new("state.encryption_key", e.to_string()))?,
                    )),
                    _ => None,
                };
                Ok(SharedState {
                    sessions: Arc::new(RedisSessionStore::new(redis.clone())),
                    // Its scripts load on first use (`NOSCRIPT`).
                    replay: Arc::new(RedisReplayStore::new(redis.clone())),
                    redis: Some(redis),
                    tokens,
                })
            }
        }
    }

    /// True once the state backend has answered since start (always, in
    /// memory). A later outage does not make the node unready: requests that
    /// need no shared state keep being served (G6), the others get 503.
    pub fn reached(&self) -> bool {
        self.redis.as_ref().is_none_or(|r| r.reached())
    }
}
