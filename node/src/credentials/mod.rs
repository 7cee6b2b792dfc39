//! Upstream credentials: how each obtains its token ([`source`]), the per-node
//! token cache ([`cache`]), health and cooldown ([`health`]), what a 401 may
//! cost ([`reauth`]), the round-robin [`Pool`] a route picks from, tokens
//! shared through Redis (`shared`), and the refresh-ahead loop that renews a
//! token `refresh_margin` before expiry on the node that owns it (which node
//! that is, is for `crate::ownership` to say).

pub mod cache;
pub mod health;
mod pool;
pub mod reauth;
mod shared;
pub mod source;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use rhizome_proto::config::{ConfigError, CredentialConfig, CredentialKind};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::ownership::Owner;
use crate::state::redis::StateError;
use crate::state::tokens::{Lease, SharedTokens};
use crate::upstream::HttpClient;
pub use cache::Token;
use cache::TokenCache;
use health::Health;
pub use pool::Pool;
use reauth::Reauth;
use rhizome_proto::records::StateEvent;
use shared::Want;
use source::{TokenError, TokenSource};

/// What this node may do with a credential's token endpoint right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Any node may refresh, one at a time under the fenced Redis lock
    /// (`embedded`, `redis-lock`; cluster mode while degraded or before the
    /// coordinator assigned the credential).
    Any,
    /// This node owns the credential (cluster mode): it alone refreshes.
    Owner,
    /// Another node owns it: read the shared record, ask the owner to refresh.
    Reader,
}

/// Says which [`Role`] this node has for a credential; set by the ownership
/// policy of cluster mode and asked on every token fetch, so a node that
/// lost ownership (self-fenced, reassigned) stops fetching at once.
pub trait Authority: Send + Sync + std::fmt::Debug {
    /// This node's role for `credential` now.
    fn role(&self, credential: &str) -> Role;
}

/// One configured credential and its live state.
#[derive(Debug)]
pub struct Credential {
    /// Name from the config.
    pub name: String,
    /// Its kind.
    pub kind: CredentialKind,
    inject_header: HeaderName,
    inject_template: String,
    source: TokenSource,
    cache: Arc<TokenCache>,
    health: Health,
    http: HttpClient,
    /// Token records in Redis, when tokens are shared cluster-wide.
    shared: Option<Arc<SharedTokens>>,
    /// What a 401 may still cost (replacement token, sticky paths, budget).
    reauth: Reauth,
    /// A token obtained while shared state could not take it (G6): served
    /// locally and written once Redis answers again.
    unsynced: Mutex<Option<(source::Minted, Lease)>>,
    /// Raft index of the assignment this node refreshes under (0 without a
    /// coordinator); the first half of every fencing epoch it takes.
    assignment: AtomicU64,
    /// Who may fetch (cluster mode); absent: [`Role::Any`].
    authority: OnceLock<Arc<dyn Authority>>,
    /// When this node last asked the owner for a token (Unix ms).
    asked_ms: AtomicU64,
    /// When this node last heard a peer ask for one (Unix ms).
    peer_asked_ms: AtomicU64,
}

/// What to do after upstream answered 401 to a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnauthorized {
    /// The token was (or already had been) invalidated: retry with a fresh one.
    Retry,
    /// A fresh token would not help, or the refresh budget is spent: answer
    /// upstream's 401 as it is.
    GiveUp,
}

/// What the admin API shows of a credential; never the token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialView {
    /// Name.
    pub name: String,
    /// Kind (`static`, `oauth2_client_credentials`, `jwt`).
    pub kind: String,
    /// Node that refreshes it.
    pub owner: String,
    /// Fencing epoch of its refreshes, `assignment.lock` (the raft index of
    /// the assignment, 0 without a coordinator).
    pub epoch: String,
    /// Whether a token is cached.
    pub has_token: bool,
    /// Seconds until the cached token expires.
    pub expires_in: Option<u64>,
    /// Expiry as a Unix timestamp.
    pub expires_at: Option<u64>,
    /// Version of the cached token.
    pub version: Option<u64>,
    /// Seconds of cooldown left.
    pub cooldown: Option<f64>,
    /// Consecutive failures.
    pub failures: u32,
    /// Non-secret JWT claims (`iss`, `sub`, `aud`, `scope`, `exp`...).
    #[schema(value_type = Option<Object>)]
    pub claims: Option<serde_json::Value>,
}

impl Credential {
    /// Builds credential `index` of the config, resolving its secrets.
    pub fn from_config(
        index: usize,
        cfg: &CredentialConfig,
        http: HttpClient,
        shared: Option<Arc<SharedTokens>>,
    ) -> Result<Self, ConfigError> {
        let path = format!("credentials[{index}]");
        let spec = cfg.spec(&path).map_err(|errs| {
            errs.into_iter()
                .next()
                .unwrap_or_else(|| ConfigError::new(path.clone(), "invalid credential"))
        })?;
        let source = TokenSource::from_spec(&spec)
            .map_err(|e| ConfigError::new(path.clone(), e.to_string()))?;
        let inject_header = HeaderName::from_bytes(cfg.inject.header.as_bytes())
            .map_err(|e| ConfigError::new(format!("{path}.inject.header"), e.to_string()))?;
        Ok(Credential {
            name: cfg.name.clone(),
            kind: cfg.kind,
            inject_header,
            inject_template: cfg.inject.value.clone(),
            source,
            cache: Arc::new(TokenCache::new(cfg.refresh_margin)),
            health: Health::new(cfg.failure_threshold, cfg.cooldown_max),
            http,
            shared,
            reauth: Reauth::default(),
            unsynced: Mutex::new(None),
            assignment: AtomicU64::new(0),
            authority: OnceLock::new(),
            asked_ms: AtomicU64::new(0),
            peer_asked_ms: AtomicU64::new(0),
        })
    }

    /// A usable token: from the cache, or obtained now (single-flight).
    /// When shared state fails, a cached token still within its real
    /// lifetime is served (G6) instead of an error.
    pub async fn token(self: &Arc<Self>) -> Result<Arc<Token>, TokenError> {
        let me = self.clone();
        let token = match self
            .cache
            .obtain(
                false,
                move || async move { me.fetch(true, Want::Usable).await },
            )
            .await
        {
            Ok(token) => token,
            Err(e) if e.is_shared_state() => match self.cache.peek() {
                Some(t) if t.is_unexpired() => {
                    tracing::debug!(credential = %self.name, error = %e, "shared state unavailable; serving the cached token until it expires");
                    t
                }
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        };
        token.mark_used();
        Ok(token)
    }

    /// The cached token if it can be handed out now (no I/O).
    pub fn cached(&self) -> Option<Arc<Token>> {
        let token = self.cache.usable()?;
        token.mark_used();
        Some(token)
    }

    /// The assignment this node refreshes the credential under.
    pub fn assignment(&self) -> u64 {
        self.assignment.load(Ordering::Acquire)
    }

    /// Acts under assignment `index` from now on (set by the ownership policy).
    pub fn set_assignment(&self, index: u64) {
        self.assignment.store(index, Ordering::Release);
    }

    /// Lets `authority` decide who fetches from now on (set once).
    pub fn set_authority(&self, authority: Arc<dyn Authority>) {
        if self.authority.set(authority).is_err() {
            tracing::warn!(credential = %self.name, "authority already set; kept the first");
        }
    }

    /// This node's role for the credential now.
    pub fn role(&self) -> Role {
        self.authority
            .get()
            .map_or(Role::Any, |a| a.role(&self.name))
    }

    /// True when tokens of this credential are shared through Redis (and so
    /// refreshed by one node for the cluster).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The owner's (or, asked, a lock-protocol node's) answer to a peer's `refresh-request` or to an
    /// invalidation: makes sure the shared record holds a usable token,
    /// calling the token endpoint only if it does not (the lock and the
    /// re-read under it keep that to one call however many ask).
    pub async fn serve_peers(self: Arc<Self>) {
        if self.role() == Role::Reader {
            return;
        }
        let me = self.clone();
        let result = self
            .cache
            .obtain(
                true,
                move || async move { me.fetch(false, Want::Usable).await },
            )
            .await;
        if let Err(e) = result {
            tracing::warn!(credential = %self.name, error = %e, "refreshing for the cluster failed");
        }
    }

    /// Notes that a peer asked for a token (`refresh-request`, or an
    /// invalidation) while this node was not the owner.
    pub fn note_peer_ask(&self) {
        self.peer_asked_ms
            .store(source::unix_ms(), Ordering::Relaxed);
    }

    /// True when a peer asked for a token within the last second: readers
    /// ask again every 500 ms while they wait, so somebody is waiting.
    pub fn peers_waiting(&self) -> bool {
        let last = self.peer_asked_ms.load(Ordering::Relaxed);
        last > 0 && source::unix_ms().saturating_sub(last) < 1_000
    }

    /// True while a token fetch for this credential is under way.
    pub fn fetching(&self) -> bool {
        self.cache.fetching()
    }

    /// Keeps a token that shared state could not take (G6).
    /// It is written later under the same lease: its epoch fences it out
    /// if another node wrote meanwhile.
    fn keep_unsynced(&self, minted: source::Minted, lease: Lease) {
        *self.unsynced.lock() = Some((minted, lease));
    }

    /// Takes the token kept during an outage, if any.
    fn take_unsynced(&self) -> Option<(source::Minted, Lease)> {
        self.unsynced.lock().take()
    }

    /// Decides what a 401 to `token` on `path` (a [`reauth::path_key`])
    /// means, by the policy of [`reauth`]. A token already replaced means a
    /// concurrent 401 did the work: retry with the new one (G2). Otherwise
    /// the token is invalidated (compare-and-set) unless the path or the
    /// token is known to answer 401 anyway, or the budget is spent.
    pub async fn on_unauthorized(&self, token: &Arc<Token>, path: u64) -> OnUnauthorized {
        if !self.cache.is_current(token) {
            return OnUnauthorized::Retry;
        }
        let refused_fresh = self.reauth.is_replacement(token.version) && !token.was_accepted();
        if refused_fresh || self.reauth.is_sticky(path) || !self.reauth.has_budget() {
            // A concurrent winner invalidates before it spends: if it
            // invalidated this very token, retry with its fresh one.
            return if self.cache.is_current(token) {
                OnUnauthorized::GiveUp
            } else {
                OnUnauthorized::Retry
            };
        }
        if self.invalidate(token.version).await {
            self.reauth.spend();
        }
        OnUnauthorized::Retry
    }

    /// A fresh token to retry a request that got a 401, remembered as the
    /// replacement so that a 401 to it is not refreshed again.
    pub async fn token_after_401(self: &Arc<Self>) -> Result<Arc<Token>, TokenError> {
        let fresh = self.token().await?;
        if !fresh.was_accepted() {
            self.reauth.set_replacement(fresh.version);
        }
        Ok(fresh)
    }

    /// Obtains a new token now, unless one was obtained while waiting.
    /// With shared tokens the whole cluster gets the new one; on a node that
    /// does not own the credential (cluster mode) that is done by
    /// invalidating the shared record, which makes its owner refresh.
    pub async fn refresh(self: &Arc<Self>) -> Result<Arc<Token>, TokenError> {
        let mut seen = self.cache.peek().map_or(0, |t| t.version);
        if let Some(shared) = &self.shared {
            let record = shared
                .read(&self.name)
                .await
                .map_err(TokenError::StateStore)?;
            seen = seen.max(record.map_or(0, |r| r.version));
            if self.role() == Role::Reader {
                self.invalidate_shared(shared, seen).await;
            }
        }
        let me = self.clone();
        self.cache
            .obtain(true, move || async move {
                me.fetch(true, Want::NewerThan(seen)).await
            })
            .await
    }

    /// Obtains a token: from the token endpoint, or through shared state.
    async fn fetch(&self, counts: bool, want: Want) -> Result<source::Minted, TokenError> {
        match &self.shared {
            Some(s) => shared::obtain(self, s, want, counts).await,
            None => self.call_endpoint(counts).await,
        }
    }

    /// Fetches a token. A failed refresh ahead of expiry (`counts` false) does
    /// not cool the credential down: its current token still works, and once
    /// that lapses a failing fetch on the request path counts.
    async fn call_endpoint(&self, counts: bool) -> Result<source::Minted, TokenError> {
        let result = self.source.fetch(&self.http).await;
        match &result {
            Ok(_) => {
                metrics::token_refresh(&self.name, "success");
                tracing::info!(credential = %self.name, "token obtained");
            }
            Err(e) => {
                metrics::token_refresh(&self.name, "failure");
                let cooldown = if counts { self.health.failure() } else { None };
                if counts {
                    metrics::credential_cooldown(&self.name, cooldown.is_some());
                }
                tracing::warn!(credential = %self.name, error = %e, cooldown_secs = cooldown.map(|d| d.as_secs()), "token fetch failed");
            }
        }
        result
    }

    /// Drops token `version` after a 401: compare-and-set locally, then in
    /// shared state, so a storm of 401s invalidates once per node and once
    /// cluster-wide. Returns true if this call invalidated it locally.
    pub async fn invalidate(&self, version: u64) -> bool {
        let local = self.cache.invalidate(version);
        if let (true, Some(shared)) = (local, &self.shared) {
            self.invalidate_shared(shared, version).await;
        }
        local
    }

    /// Invalidates `version` in shared state (compare-and-set) and
    /// announces it; failures are logged, the caller carries on.
    async fn invalidate_shared(&self, shared: &SharedTokens, version: u64) {
        match shared.invalidate(&self.name, version).await {
            Ok(true) => {
                let event = StateEvent::Invalidated {
                    credential: self.name.clone(),
                    version,
                };
                crate::state::events::publish(shared.redis(), &event).await
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(credential = %self.name, error = %e, "shared invalidation failed")
            }
        }
    }

    /// Version of the cached token, if any.
    pub fn cached_version(&self) -> Option<u64> {
        self.cache.peek().map(|t| t.version)
    }

    /// Shared state says `version` was invalidated elsewhere.
    pub fn invalidated_elsewhere(&self, version: u64) {
        self.cache.invalidate(version);
    }

    /// Loads the shared record into the local cache if it is newer, after
    /// writing a token this node kept through an outage.
    pub async fn load_shared(&self) {
        let Some(shared) = &self.shared else { return };
        if let Err(e) = shared::flush_unsynced(self, shared).await {
            tracing::debug!(credential = %self.name, error = %e, "writing the token kept through the outage failed; kept");
        }
        match shared.read(&self.name).await {
            Ok(Some(rec)) => {
                self.cache.store_newer(shared::into_minted(rec));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(credential = %self.name, error = %e, "loading the shared token failed")
            }
        }
    }

    /// Drops the cached token whatever its version.
    /// With shared tokens the shared record is invalidated too, so the next
    /// request on any node obtains a new token.
    pub async fn clear(&self) -> Result<Option<u64>, StateError> {
        let local = self.cache.clear();
        let Some(shared) = &self.shared else {
            return Ok(local);
        };
        let Some(record) = shared.read(&self.name).await? else {
            return Ok(local);
        };
        if shared.invalidate(&self.name, record.version).await? {
            let event = StateEvent::Invalidated {
                credential: self.name.clone(),
                version: record.version,
            };
            crate::state::events::publish(shared.redis(), &event).await;
        }
        Ok(Some(record.version))
    }

    /// Records that upstream accepted `token` of this credential.
    pub fn upstream_accepted(&self, token: &Token) {
        token.mark_accepted();
        if self.health.success() {
            metrics::credential_cooldown(&self.name, false);
        }
    }

    /// Records a 401 that no fresh token will cure: on `sticky_path` (a
    /// fresh token was refused there) the path is not refreshed for again for
    /// a while. The failure counts only while upstream accepts nothing else
    /// from this credential, so a working credential never cools down.
    pub fn upstream_rejected(&self, sticky_path: Option<u64>) {
        if let Some(path) = sticky_path {
            self.reauth.mark_sticky(path);
        }
        if let Some(cooldown) = self.health.rejected() {
            metrics::credential_cooldown(&self.name, true);
            tracing::warn!(credential = %self.name, cooldown_secs = cooldown.as_secs(), "upstream rejects fresh tokens of this credential; cooling down");
        }
    }

    /// Time left in cooldown, if cooling down.
    pub fn cooldown_left(&self) -> Option<Duration> {
        self.health.cooldown_left()
    }

    /// Writes the token into `headers` as configured. The value is built
    /// once per token and kept on it.
    pub fn inject(
        &self,
        headers: &mut HeaderMap,
        token: &Token,
    ) -> Result<(), http::header::InvalidHeaderValue> {
        let value = token.header_value(|secret| {
            let mut v = HeaderValue::try_from(self.inject_template.replace("{token}", secret))?;
            v.set_sensitive(true);
            Ok(v)
        })?;
        headers.insert(self.inject_header.clone(), value);
        Ok(())
    }

    /// The admin view.
    pub fn view(&self, owner: &Owner) -> CredentialView {
        let token = self.cache.peek();
        let now = SystemTime::now();
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .ok()
        };
        CredentialView {
            name: self.name.clone(),
            kind: self.kind.as_str().into(),
            owner: owner.node.clone(),
            epoch: owner.epoch.to_string(),
            has_token: token.is_some(),
            expires_in: token
                .as_ref()
                .and_then(|t| t.expires_at_wall)
                .map(|e| e.duration_since(now).map(|d| d.as_secs()).unwrap_or(0)),
            expires_at: token
                .as_ref()
                .and_then(|t| t.expires_at_wall)
                .and_then(unix),
            version: token.as_ref().map(|t| t.version),
            cooldown: self.cooldown_left().map(|d| d.as_secs_f64()),
            failures: self.health.failures(),
            claims: token.as_ref().and_then(|t| t.claims.clone()),
        }
    }

    /// The owner's loop: refresh each used token `refresh_margin` before expiry,
    /// retrying failures with backoff while the old token is still valid.
    /// With `keep_fresh` (a cluster owner, which cannot see the requests
    /// other nodes serve) every token is refreshed, used here or not, starting
    /// from the shared record.
    pub async fn refresh_ahead(self: Arc<Self>, keep_fresh: bool, shutdown: CancellationToken) {
        if !self.source.expires() {
            return;
        }
        if keep_fresh {
            self.load_shared().await;
        }
        let mut changes = self.cache.subscribe();
        let mut backoff = Duration::from_secs(1);
        loop {
            let due = self.cache.refresh_due();
            let wait = async {
                match due {
                    Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() { return; }
                    continue;
                }
                _ = wait => {}
            }
            if !keep_fresh && !matches!(self.cache.refresh_due(), Some((_, true))) {
                // Unused since obtained: let it lapse; the next request fetches.
                if changes.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let me = self.clone();
            match self
                .cache
                .obtain(
                    true,
                    move || async move { me.fetch(false, Want::Ahead).await },
                )
                .await
            {
                // A token that is still due (a shared record that does not
                // supersede ours) is no progress: back off instead of spinning.
                Ok(_) if !self.refresh_still_due() => backoff = Duration::from_secs(1),
                _ => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

impl Credential {
    fn refresh_still_due(&self) -> bool {
        matches!(self.cache.refresh_due(), Some((at, _)) if at <= std::time::Instant::now())
    }
}

/// Every configured credential, by name.
#[derive(Debug, Default)]
pub struct Credentials {
    by_name: HashMap<String, Arc<Credential>>,
    order: Vec<Arc<Credential>>,
}

impl Credentials {
    /// Builds all credentials; errors name the field.
    pub fn from_config(
        cfgs: &[CredentialConfig],
        http: &HttpClient,
        shared: Option<&Arc<SharedTokens>>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut out = Credentials::default();
        for (i, c) in cfgs.iter().enumerate() {
            // Only token-endpoint credentials are shared: static keys need no
            // refresh and JWTs are minted by each node for itself.
            let shared = shared.filter(|_| c.kind == CredentialKind::Oauth2ClientCredentials);
            match Credential::from_config(i, c, http.clone(), shared.cloned()) {
                Ok(cred) => {
                    let cred = Arc::new(cred);
                    out.by_name.insert(cred.name.clone(), cred.clone());
                    out.order.push(cred);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// The credential called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Credential>> {
        self.by_name.get(name)
    }

    /// All credentials in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Credential>> {
        self.order.iter()
    }
}
