//! Shared state of the mock: the fixed start-up configuration (clients, static
//! keys, JWT keys), the runtime-tunable configuration, the store of issued
//! OAuth tokens with their validity rules, the live MCP sessions, and the
//! counters behind `/_mock/stats`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::auth::JwtKeys;
use super::mcp::McpSessions;
use super::sse::ManualRegistry;

/// Locks a mutex, ignoring poisoning: the mock's state stays usable even if a
/// handler panicked while holding a lock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the handlers share, behind one `Arc`.
pub(crate) struct MockState {
    /// OAuth clients accepted by the token endpoint: id → secret.
    pub clients: HashMap<String, String>,
    /// Accepted static API keys.
    pub static_keys: HashSet<String>,
    /// Keys for verifying JWT bearer tokens.
    pub jwt: JwtKeys,
    pub config: Mutex<RuntimeConfig>,
    pub tokens: Mutex<TokenStore>,
    pub stats: Mutex<Stats>,
    pub manual: Mutex<ManualRegistry>,
    /// Live upstream sessions of the mock MCP server.
    pub mcp: Mutex<McpSessions>,
    /// Serialises manual SSE emits so event ids arrive in order.
    pub emit_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for MockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets and tokens stay out of any debug output.
        f.debug_struct("MockState")
            .field("clients", &self.clients.len())
            .field("static_keys", &self.static_keys.len())
            .finish_non_exhaustive()
    }
}

/// Configuration that `/_mock/config` can change at runtime.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RuntimeConfig {
    pub expires_in: u64,
    pub fail_clients: BTreeSet<String>,
    pub token_delay_ms: u64,
    /// Extra delay of token calls, per client id (one slow IdP tenant).
    pub slow_clients: std::collections::BTreeMap<String, u64>,
    /// Delay before an API request's credential is checked: keeps many
    /// requests in flight with the same token (401-storm tests).
    pub auth_delay_ms: u64,
    pub api_status: Option<u16>,
}

impl RuntimeConfig {
    pub fn new(expires_in: u64) -> Self {
        RuntimeConfig {
            expires_in,
            fail_clients: BTreeSet::new(),
            token_delay_ms: 0,
            slow_clients: std::collections::BTreeMap::new(),
            auth_delay_ms: 0,
            api_status: None,
        }
    }
}

/// Calls to the token endpoint per client-authentication method.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct AuthMethodCounts {
    pub basic: u64,
    pub body: u64,
}

/// The counters reported by `/_mock/stats` (except the per-name manual SSE
/// gauge, which lives in the [`ManualRegistry`], and the live MCP session
/// gauge, which lives in [`McpSessions`]).
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Stats {
    pub token_calls_total: u64,
    pub token_calls: BTreeMap<String, u64>,
    /// Token calls that started while another call of the same client was
    /// still being answered (two refreshes of one credential at once).
    pub token_overlaps: BTreeMap<String, u64>,
    /// Token calls being answered, by client.
    #[serde(skip)]
    pub token_in_flight: BTreeMap<String, u64>,
    pub token_auth_methods: AuthMethodCounts,
    pub api_requests: u64,
    pub rejected: u64,
    pub expired_seen: u64,
    pub sse_open: u64,
    pub sse_closed: u64,
    pub last_event_id_seen: Option<String>,
    pub requests_by_path: BTreeMap<String, u64>,
    pub mcp_sessions_created: u64,
    pub mcp_sessions_deleted: u64,
    pub mcp_stateless: u64,
    /// Requests per upstream MCP session, `initialize` included.
    pub mcp_requests: BTreeMap<String, u64>,
}

/// One token the mock issued.
#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    pub client_id: String,
    pub scope: Option<String>,
    pub expires_at: Instant,
    pub rotated: bool,
}

/// What a presented `mocktok-…` token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    Valid {
        client_id: String,
        scope: Option<String>,
    },
    Unknown,
    Expired,
    Rotated,
}

/// All tokens issued so far, keyed by their value.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    tokens: HashMap<String, TokenRecord>,
    seq: u64,
}

impl TokenStore {
    /// Issues a new token for `client_id` valid for `expires_in` from `now`.
    pub fn issue(
        &mut self,
        client_id: &str,
        scope: Option<String>,
        expires_in: Duration,
        now: Instant,
    ) -> String {
        self.seq += 1;
        let seq = self.seq;
        let token = format!("mocktok-{client_id}-{seq}-{:016x}", rand::random::<u64>());
        let record = TokenRecord {
            client_id: client_id.to_owned(),
            scope,
            expires_at: now + expires_in,
            rotated: false,
        };
        self.tokens.insert(token.clone(), record);
        token
    }

    /// Classifies `token` as seen at `now`. Rotation wins over expiry.
    pub fn check(&self, token: &str, now: Instant) -> TokenCheck {
        match self.tokens.get(token) {
            None => TokenCheck::Unknown,
            Some(r) if r.rotated => TokenCheck::Rotated,
            Some(r) if now >= r.expires_at => TokenCheck::Expired,
            Some(r) => TokenCheck::Valid {
                client_id: r.client_id.clone(),
                scope: r.scope.clone(),
            },
        }
    }

    /// Invalidates every token issued so far; returns how many were newly
    /// invalidated.
    pub fn rotate(&mut self) -> usize {
        let mut n = 0;
        for r in self.tokens.values_mut().filter(|r| !r.rotated) {
            r.rotated = true;
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_states() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        let a = store.issue("svc", Some("read".into()), Duration::from_secs(10), now);
        assert!(a.starts_with("mocktok-svc-1-"));
        assert_eq!(a.len(), "mocktok-svc-1-".len() + 16);
        assert_eq!(
            store.check(&a, now),
            TokenCheck::Valid {
                client_id: "svc".into(),
                scope: Some("read".into())
            }
        );
        assert_eq!(
            store.check(&a, now + Duration::from_secs(10)),
            TokenCheck::Expired
        );
        assert_eq!(store.check("mocktok-svc-9-00", now), TokenCheck::Unknown);

        assert_eq!(store.rotate(), 1);
        assert_eq!(store.check(&a, now), TokenCheck::Rotated);
        assert_eq!(store.rotate(), 0);

        let b = store.issue("svc", None, Duration::from_secs(10), now);
        assert!(b.starts_with("mocktok-svc-2-"));
        assert!(matches!(store.check(&b, now), TokenCheck::Valid { .. }));
    }
}
