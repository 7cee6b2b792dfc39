//! The per-credential token cache: the hot path reads the current token under a
//! short read lock (no I/O); obtaining one is single-flight. A caller that finds
//! no usable token waits for the one fetch in progress and shares its outcome,
//! success or failure, so a cold cache hit by 100 requests makes one token call
//! and a failing endpoint is not hammered by every waiter in turn. Versions
//! grow by one per stored token; invalidation is compare-and-set on the version,
//! so a storm of 401s for version v invalidates once.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use parking_lot::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::source::{unix_ms, Minted, TokenError};

fn digest(value: &SecretString) -> [u8; 32] {
    Sha256::digest(value.expose_secret().as_bytes()).into()
}

/// When a token is refreshed ahead and when it stops being handed out, in
/// Unix milliseconds. Every node computes the same schedule from a shared
/// record, so refreshes line up cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Refresh ahead from here: `refresh_margin` before expiry, at most half-way.
    pub refresh_at_ms: Option<u64>,
    /// Not handed out from here: half the margin (at most a quarter of the life) before expiry.
    pub stale_at_ms: Option<u64>,
}

/// The shortest lifetime a token is scheduled with. An IdP answering
/// `expires_in: 0` would otherwise make every request fetch a token; with the
/// floor a credential costs at most one token call per this period. Real
/// lifetimes above it are scheduled as they are.
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(1);

/// The schedule of a token obtained at `obtained_ms` expiring at `expires_ms`
/// (a lifetime below [`MIN_TOKEN_LIFETIME`] is scheduled as that floor).
pub fn schedule(obtained_ms: u64, expires_ms: Option<u64>, margin: Duration) -> Schedule {
    let margin_ms = u64::try_from(margin.as_millis()).unwrap_or(u64::MAX);
    let floor_ms = u64::try_from(MIN_TOKEN_LIFETIME.as_millis()).unwrap_or(u64::MAX);
    match expires_ms {
        None => Schedule {
            refresh_at_ms: None,
            stale_at_ms: None,
        },
        Some(exp) => {
            let life = exp.saturating_sub(obtained_ms).max(floor_ms);
            let exp = obtained_ms.saturating_add(life);
            Schedule {
                refresh_at_ms: Some(obtained_ms + life.saturating_sub(margin_ms).max(life / 2)),
                stale_at_ms: Some(exp - (margin_ms / 2).min(life / 4)),
            }
        }
    }
}

/// A token as held in the cache.
#[derive(Debug)]
pub struct Token {
    /// The token value (never logged: `SecretString` prints nothing).
    pub value: SecretString,
    /// Grows by one per token stored for this credential.
    pub version: u64,
    /// Monotonic expiry, when the token has one.
    pub expires_at: Option<Instant>,
    /// When the owner refreshes it ahead of expiry.
    refresh_at: Option<Instant>,
    /// From when it is no longer handed out to requests.
    stale_at: Option<Instant>,
    /// Wall-clock expiry, for the admin view.
    pub expires_at_wall: Option<SystemTime>,
    /// When it was obtained (Unix ms): with the version, the order in which
    /// tokens supersede each other (a lost shared record restarts versions).
    obtained_ms: u64,
    /// Non-secret claims (for JWTs), for the admin view.
    pub claims: Option<serde_json::Value>,
    /// SHA-256 of the value, to recognise a rejected token without keeping it twice.
    digest: [u8; 32],
    /// Set when a request used this token: an unused token is not refreshed ahead.
    used: AtomicBool,
    /// Set once upstream answered something other than 401 with it.
    accepted: AtomicBool,
    /// The header value injected with this token, built on first use (the
    /// token belongs to one credential, so to one inject template).
    header: OnceLock<HeaderValue>,
}

impl Token {
    /// Marks the token as used by a request.
    pub fn mark_used(&self) {
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }

    /// Records that upstream accepted this token.
    pub fn mark_accepted(&self) {
        if !self.accepted.load(Ordering::Relaxed) {
            self.accepted.store(true, Ordering::Relaxed);
        }
    }

    /// The header value carrying this token, `build` on first use and kept.
    pub fn header_value<E>(
        &self,
        build: impl FnOnce(&str) -> Result<HeaderValue, E>,
    ) -> Result<HeaderValue, E> {
        if let Some(v) = self.header.get() {
            return Ok(v.clone());
        }
        let v = build(self.value.expose_secret())?;
        Ok(self.header.get_or_init(|| v).clone())
    }

    /// True once upstream accepted this token on some request.
    pub fn was_accepted(&self) -> bool {
        self.accepted.load(Ordering::Relaxed)
    }

    /// True while the token has not reached its real expiry (G6: with shared
    /// state unreachable, a token past its refresh schedule is still served
    /// until then).
    pub fn is_unexpired(&self) -> bool {
        self.expires_at.is_none_or(|e| Instant::now() < e)
    }

    /// True when this token should replace `cur`: it was obtained later, or
    /// at the same time with a higher version.
    fn supersedes(&self, cur: &Token) -> bool {
        (self.obtained_ms, self.version) > (cur.obtained_ms, cur.version)
    }
}

/// The cache of one credential.
#[derive(Debug)]
pub struct TokenCache {
    current: RwLock<Option<Arc<Token>>>,
    fetch_lock: Arc<tokio::sync::Mutex<()>>,
    /// Digest of the token last invalidated by a 401.
    rejected: Mutex<Option<[u8; 32]>>,
    attempts: AtomicU64,
    last_outcome: Mutex<Option<Result<Arc<Token>, TokenError>>>,
    next_version: AtomicU64,
    refresh_margin: Duration,
    changed: watch::Sender<u64>,
}

impl TokenCache {
    /// A cache refreshing `refresh_margin` before expiry (at most half-way
    /// through a token's life, so short-lived tokens do not spin). Requests keep
    /// using the current token until half the margin (at most a quarter of its
    /// life) is left, so the refresher normally replaces it before anyone waits.
    pub fn new(refresh_margin: Duration) -> Self {
        TokenCache {
            current: RwLock::new(None),
            fetch_lock: Arc::new(tokio::sync::Mutex::new(())),
            rejected: Mutex::new(None),
            attempts: AtomicU64::new(0),
            last_outcome: Mutex::new(None),
            next_version: AtomicU64::new(1),
            refresh_margin,
            changed: watch::channel(0).0,
        }
    }

    /// The current token if it can still be handed out.
    pub fn usable(&self) -> Option<Arc<Token>> {
        let cur = self.current.read();
        let t = cur.as_ref()?;
        match t.stale_at {
            Some(stale) if Instant::now() >= stale => None,
            _ => Some(t.clone()),
        }
    }

    /// The current token, usable or not (admin view).
    pub fn peek(&self) -> Option<Arc<Token>> {
        self.current.read().clone()
    }

    /// When the current token should be refreshed ahead, and whether a request
    /// has used it (an unused token is left to lapse).
    pub fn refresh_due(&self) -> Option<(Instant, bool)> {
        let cur = self.current.read();
        let t = cur.as_ref()?;
        t.refresh_at.map(|at| (at, t.used.load(Ordering::Relaxed)))
    }

    /// True while a fetch for this credential is under way.
    pub fn fetching(&self) -> bool {
        self.fetch_lock.try_lock().is_err()
    }

    /// Subscribes to token changes (stores and invalidations).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Returns a usable token, or obtains one through `fetch`, single-flight.
    /// With `force`, obtains a new one unless a fetch completed while waiting.
    ///
    /// The fetch runs detached from the caller: a caller that goes away
    /// (client disconnect, intent timeout) cancels neither the fetch, nor the
    /// shared lock it may hold, nor the storing of its result.
    pub async fn obtain<F, Fut>(
        self: &Arc<Self>,
        force: bool,
        fetch: F,
    ) -> Result<Arc<Token>, TokenError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Minted, TokenError>> + Send + 'static,
    {
        let seen = self.attempts.load(Ordering::Acquire);
        if !force {
            if let Some(t) = self.usable() {
                return Ok(t);
            }
        }
        let guard = self.fetch_lock.clone().lock_owned().await;
        if self.attempts.load(Ordering::Acquire) != seen {
            // The fetch we waited for is shared, unless its token was
            // invalidated (or replaced) meanwhile: then fetch again.
            match self.last_outcome.lock().clone() {
                Some(Ok(t)) if self.is_current(&t) => return Ok(t),
                Some(Err(e)) => return Err(e),
                _ => {}
            }
        }
        if !force {
            if let Some(t) = self.usable() {
                return Ok(t);
            }
        }
        let this = self.clone();
        let fut = fetch();
        let task = tokio::spawn(async move {
            let outcome = fut.await.map(|minted| this.store(minted));
            *this.last_outcome.lock() = Some(outcome.clone());
            this.attempts.fetch_add(1, Ordering::Release);
            drop(guard);
            outcome
        });
        task.await
            .unwrap_or_else(|e| Err(TokenError::Transport(format!("token task failed: {e}"))))
    }

    /// True when `value` is the token last invalidated by a 401: a shared
    /// record still holding it must not be taken back before its
    /// invalidation lands in shared state.
    pub fn is_rejected(&self, value: &SecretString) -> bool {
        let rejected = *self.rejected.lock();
        rejected.is_some_and(|r| r == digest(value))
    }

    /// The refresh margin this cache schedules with.
    pub fn refresh_margin(&self) -> Duration {
        self.refresh_margin
    }

    /// Stores a token learned from shared state if it supersedes the current
    /// one; returns whether it was stored.
    pub fn store_newer(&self, minted: Minted) -> bool {
        if self.is_rejected(&minted.value) {
            return false;
        }
        let mut cur = self.current.write();
        let token = self.build(minted, cur.as_deref());
        let version = token.version;
        // The same token under its shared version (written after an outage)
        // is adopted, so that 401 invalidation matches the record.
        if cur
            .as_ref()
            .is_some_and(|c| !token.supersedes(c) && c.digest != token.digest)
        {
            return false;
        }
        *cur = Some(token);
        drop(cur);
        self.changed.send_replace(version);
        true
    }

    /// Stores a token obtained by a fetch and returns what callers should use.
    /// The check and the write happen under one lock, so concurrent stores
    /// cannot move the cache backwards. A token from shared state that does
    /// not supersede a still-usable current one leaves the current one.
    fn store(&self, minted: Minted) -> Arc<Token> {
        let shared = minted.version.is_some();
        let mut cur = self.current.write();
        let token = self.build(minted, cur.as_deref());
        if let Some(c) = cur.as_ref() {
            let usable = c.stale_at.is_none_or(|s| Instant::now() < s);
            if shared && usable && !token.supersedes(c) {
                return c.clone();
            }
        }
        *cur = Some(token.clone());
        drop(cur);
        self.changed.send_replace(token.version);
        token
    }

    /// The cache entry for `minted`. A token obtained by this node alone gets
    /// a local version above the current one, so versions never collide.
    fn build(&self, minted: Minted, cur: Option<&Token>) -> Arc<Token> {
        let version = minted.version.unwrap_or_else(|| {
            let floor = cur.map_or(0, |c| c.version + 1);
            let v = self.next_version.fetch_add(1, Ordering::Relaxed).max(floor);
            self.next_version.fetch_max(v + 1, Ordering::Relaxed);
            v
        });
        let sched = schedule(minted.obtained_ms, minted.expires_ms, self.refresh_margin);
        let now_ms = unix_ms();
        let now = Instant::now();
        let at = |ms: u64| {
            // Wall-clock instants of the record, mapped onto the monotonic clock.
            let ahead = Duration::from_millis(ms.saturating_sub(now_ms));
            now + ahead
        };
        Arc::new(Token {
            digest: digest(&minted.value),
            value: minted.value,
            version,
            expires_at: minted.expires_ms.map(at),
            refresh_at: sched.refresh_at_ms.map(at),
            stale_at: sched.stale_at_ms.map(at),
            expires_at_wall: minted
                .expires_ms
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
            obtained_ms: minted.obtained_ms,
            claims: minted.claims,
            used: AtomicBool::new(false),
            accepted: AtomicBool::new(false),
            header: OnceLock::new(),
        })
    }

    /// True when `token` is still the cached token (not replaced, not invalidated).
    pub fn is_current(&self, token: &Arc<Token>) -> bool {
        self.current
            .read()
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, token))
    }

    /// Drops the current token if it is still `version` (compare-and-set).
    /// Returns true when this call invalidated it.
    pub fn invalidate(&self, version: u64) -> bool {
        let mut cur = self.current.write();
        if let Some(t) = cur.as_ref().filter(|t| t.version == version) {
            *self.rejected.lock() = Some(t.digest);
            *cur = None;
            drop(cur);
            self.changed.send_replace(version);
            true
        } else {
            false
        }
    }

    /// Drops the current token whatever its version (admin `DELETE`).
    pub fn clear(&self) -> Option<u64> {
        let old = self.current.write().take().map(|t| t.version);
        if let Some(v) = old {
            self.changed.send_replace(v);
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn minted(secs: u64) -> Minted {
        Minted::new(
            SecretString::from("t".to_string()),
            Some(Duration::from_secs(secs)),
            None,
        )
    }

    #[tokio::test]
    async fn concurrent_cold_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(10)));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                let c = calls.clone();
                cache
                    .obtain(false, move || async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok(minted(3600))
                    })
                    .await
                    .map(|t| t.version)
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("join").expect("token"), 1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failures_are_shared_not_repeated_by_waiters() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(10)));
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let first = {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            tokio::spawn(async move {
                let c = calls.clone();
                cache
                    .obtain(false, move || async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Err(TokenError::Endpoint {
                            status: 500,
                            error: None,
                        })
                    })
                    .await
            })
        };
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let waiter = {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                let c = calls.clone();
                cache
                    .obtain(false, move || async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        Ok(minted(3600))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        gate.notify_one();
        assert!(first.await.expect("join").is_err());
        assert!(
            waiter.await.expect("join").is_err(),
            "waiter shares the failure"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn invalidate_is_compare_and_set() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(10)));
        let t = cache
            .obtain(false, || async { Ok(minted(3600)) })
            .await
            .expect("token");
        assert!(cache.invalidate(t.version));
        assert!(
            !cache.invalidate(t.version),
            "second invalidation of v is a no-op"
        );
        let t2 = cache
            .obtain(false, || async { Ok(minted(3600)) })
            .await
            .expect("token");
        assert_eq!(t2.version, t.version + 1);
        assert!(
            !cache.invalidate(t.version),
            "stale version leaves the new token"
        );
        assert!(cache.usable().is_some());
    }

    #[tokio::test]
    async fn a_cancelled_caller_does_not_cancel_the_fetch() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(10)));
        let gate = Arc::new(tokio::sync::Notify::new());
        let caller = {
            let (cache, gate) = (cache.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .obtain(false, move || async move {
                        gate.notified().await;
                        Ok(minted(3600))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        caller.abort();
        gate.notify_one();
        let t = cache
            .obtain(false, || async {
                Err(TokenError::Transport("must not be called".into()))
            })
            .await
            .expect("the detached fetch stored its token");
        assert_eq!(t.version, 1);
    }

    #[tokio::test]
    async fn a_rejected_token_is_recognised() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(10)));
        let t = cache
            .obtain(false, || async { Ok(minted(3600)) })
            .await
            .expect("token");
        assert!(!cache.is_rejected(&t.value));
        cache.invalidate(t.version);
        assert!(cache.is_rejected(&SecretString::from("t".to_string())));
        let mut again = minted(3600);
        again.version = Some(99);
        assert!(
            !cache.store_newer(again),
            "a rejected value is not taken back from shared state"
        );
    }

    #[tokio::test]
    async fn short_lived_tokens_are_refreshed_half_way() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(10)));
        cache
            .obtain(false, || async { Ok(minted(4)) })
            .await
            .expect("token");
        assert!(
            cache.usable().is_some(),
            "a fresh 4s token is usable for 3s"
        );
        let (due, used) = cache.refresh_due().expect("due");
        assert!(!used);
        assert!(
            due > Instant::now() + Duration::from_millis(1500),
            "refreshed half-way, not at once"
        );
    }

    fn shared(version: u64, obtained_ms: u64) -> Minted {
        let mut m = minted(3600);
        m.value = SecretString::from(format!("t{version}-{obtained_ms}"));
        m.version = Some(version);
        m.obtained_ms = obtained_ms;
        m.expires_ms = Some(obtained_ms + 3_600_000);
        m
    }

    #[test]
    fn concurrent_stores_never_move_the_cache_backwards() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(10)));
        let base = unix_ms();
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..500u64 {
                        let v = 1 + (i * 8 + t);
                        cache.store_newer(shared(v, base + v));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        assert_eq!(cache.peek().expect("token").version, 4000);
    }

    #[tokio::test]
    async fn a_waiter_is_not_handed_a_token_invalidated_while_it_waited() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(10)));
        // A fetch is under way: the waiter queues behind it.
        let guard = cache.fetch_lock.clone().lock_owned().await;
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .obtain(false, || async {
                        let mut m = minted(3600);
                        m.value = SecretString::from("fresh".to_string());
                        Ok(m)
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        // The fetch completes, then a 401 invalidates its token before the
        // waiter wakes up.
        let t = cache.store(minted(3600));
        *cache.last_outcome.lock() = Some(Ok(t.clone()));
        cache.attempts.fetch_add(1, Ordering::Release);
        assert!(cache.invalidate(t.version));
        drop(guard);
        let got = waiter.await.expect("join").expect("token");
        assert_ne!(
            got.version, t.version,
            "the invalidated token is not handed out"
        );
        assert_eq!(got.value.expose_secret(), "fresh");
    }

    #[test]
    fn a_rewound_shared_record_with_a_newer_token_replaces_the_cached_one() {
        let cache = TokenCache::new(Duration::from_secs(10));
        let now = unix_ms();
        assert!(cache.store_newer(shared(7, now - 1000)));
        // The record was lost and rewritten: its version restarts at 1.
        assert!(cache.store_newer(shared(1, now)));
        assert_eq!(cache.peek().expect("token").version, 1);
        assert!(
            !cache.store_newer(shared(6, now - 2000)),
            "an older token never wins"
        );
    }

    #[tokio::test]
    async fn a_token_reported_to_expire_at_once_is_reused_for_the_floor() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(60)));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..20 {
            let c = calls.clone();
            cache
                .obtain(false, move || async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    Ok(minted(0))
                })
                .await
                .expect("token");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
