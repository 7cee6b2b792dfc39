//! A route's credential pool: round-robin over members
//! not in cooldown. Acquisition is bounded by the request's deadline and never
//! lets one slow token endpoint hold up a request that another member could
//! serve: in round-robin order a member with a cached token is taken at once;
//! one without is asked for a token for at most [`FAILOVER_AFTER`] (the last
//! one left gets the rest of the deadline); a member whose fetch is already
//! under way is only waited for once the others have been tried. A fetch
//! abandoned by a request keeps running detached and serves later requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rhizome_proto::ErrorCode;
use tokio::time::Instant;

use super::source::TokenError;
use super::{Credential, Token};
use crate::error::ProxyError;

/// How long a request waits for one member's token before trying the next.
pub const FAILOVER_AFTER: Duration = Duration::from_secs(2);

/// A route's credential pool, used round-robin.
#[derive(Debug, Default)]
pub struct Pool {
    members: Vec<Arc<Credential>>,
    next: AtomicUsize,
}

impl Pool {
    /// A pool of `members`.
    pub fn new(members: Vec<Arc<Credential>>) -> Self {
        Pool {
            members,
            next: AtomicUsize::new(0),
        }
    }

    /// True when the route injects nothing.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Picks the next credential not in cooldown that yields a token before
    /// `deadline`. All cooling down or failing → 503 `no_healthy_credential`
    /// with `Retry-After`; shared state failing with no usable cached token →
    /// 503 `state_store_unavailable`.
    pub async fn acquire(
        &self,
        deadline: Instant,
    ) -> Result<(Arc<Credential>, Arc<Token>), ProxyError> {
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..n)
            .map(|k| &self.members[(start + k) % n])
            .filter(|c| c.cooldown_left().is_none());
        let eligible: Vec<_> = order.collect();
        let mut deferred = Vec::new();
        let mut last_error = None;
        for (i, cred) in eligible.iter().enumerate() {
            if let Some(token) = cred.cached() {
                return Ok(((*cred).clone(), token));
            }
            if cred.fetching() {
                deferred.push(*cred);
                continue;
            }
            // The last hope gets the whole deadline.
            let share = if i + 1 == eligible.len() && deferred.is_empty() {
                Duration::MAX
            } else {
                FAILOVER_AFTER
            };
            match Self::try_member(cred, deadline, share).await {
                Ok(token) => return Ok(((*cred).clone(), token)),
                Err(e) => last_error = Some(e),
            }
        }
        // Members busy fetching get what is left; the last one all of it.
        let left = deferred.len();
        for (i, cred) in deferred.into_iter().enumerate() {
            let share = if i + 1 == left {
                Duration::MAX
            } else {
                FAILOVER_AFTER
            };
            match Self::try_member(cred, deadline, share).await {
                Ok(token) => return Ok((cred.clone(), token)),
                Err(e) => last_error = Some(e),
            }
        }
        Err(self.exhausted(last_error))
    }

    /// Asks `cred` for a token for at most `share`, and never past `deadline`.
    async fn try_member(
        cred: &Arc<Credential>,
        deadline: Instant,
        share: Duration,
    ) -> Result<Arc<Token>, TokenError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(TokenError::Deadline);
        }
        let budget = (deadline - now).min(share);
        match tokio::time::timeout(budget, cred.token()).await {
            Ok(result) => result,
            Err(_) => {
                tracing::debug!(credential = %cred.name, "token not ready in time; trying the next credential");
                Err(TokenError::Deadline)
            }
        }
    }

    fn exhausted(&self, last_error: Option<TokenError>) -> ProxyError {
        if let Some(TokenError::StateStore(e)) = last_error {
            return ProxyError::from(e);
        }
        let retry_after = self
            .members
            .iter()
            .filter_map(|c| c.cooldown_left())
            .min()
            .unwrap_or(Duration::from_secs(1));
        let mut err = ProxyError::new(
            ErrorCode::NoHealthyCredential,
            "no credential of this route can currently obtain a token",
        )
        .with_retry_after(retry_after);
        if let Some(e) = last_error {
            err = err.with_source(e);
        }
        err
    }
}
