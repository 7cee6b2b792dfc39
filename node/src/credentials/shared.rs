//! Obtaining a token through shared state (`state.backend = "redis"`,
//! `coordinator.mode = "redis-lock"`): read the record; if it does not serve,
//! take the credential's fenced refresh lock, re-read (somebody may have just
//! refreshed), fetch from the token endpoint, write under the lock's epoch and
//! publish `updated`. A node that finds the lock taken waits for the holder's
//! token (pub/sub, with polling as the fallback since pub/sub is at most once).
//! So each refresh is one token-endpoint call cluster-wide (G1, G2).
//!
//! In cluster mode a node that does not own the credential ([`Role::Reader`])
//! never takes the lock: it asks the owner with a `refresh-request` and waits
//! for the owner's token the same way.

use std::time::{Duration, Instant};

use rhizome_proto::records::StateEvent;

use super::cache::schedule;
use super::source::{unix_ms, Minted, TokenError};
use super::{Credential, Role};
use crate::state::events;
use crate::state::redis::StateError;
use crate::state::tokens::{Record, SharedTokens};

/// How often a waiting node re-reads the record when no event arrives.
const POLL: Duration = Duration::from_millis(100);

/// What the caller needs from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A token that may still be handed out.
    Usable,
    /// A token not yet due for its ahead-of-expiry refresh.
    Ahead,
    /// A token newer than `version` (admin refresh).
    NewerThan(u64),
}

fn state_err(e: StateError) -> TokenError {
    TokenError::StateStore(e)
}

fn serves(cred: &Credential, rec: &Record, want: Want, margin: Duration) -> bool {
    // A token this node saw rejected (401) is not taken back while its shared
    // invalidation may still be on its way.
    if cred.cache.is_rejected(&rec.value) {
        return false;
    }
    let sched = schedule(rec.obtained_ms, rec.expires_ms, margin);
    let now = unix_ms();
    match want {
        Want::Usable => sched.stale_at_ms.is_none_or(|s| now < s),
        Want::Ahead => sched.refresh_at_ms.is_none_or(|r| now < r),
        Want::NewerThan(v) => rec.version > v,
    }
}

/// A shared record as a cache entry.
pub fn into_minted(rec: Record) -> Minted {
    Minted {
        value: rec.value,
        obtained_ms: rec.obtained_ms,
        expires_ms: rec.expires_ms,
        claims: rec.claims,
        version: Some(rec.version),
    }
}

/// Obtains a token for `cred` through `shared` as `want` asks.
pub async fn obtain(
    cred: &Credential,
    shared: &SharedTokens,
    want: Want,
    counts: bool,
) -> Result<Minted, TokenError> {
    flush_unsynced(cred, shared).await?;
    let margin = cred.cache.refresh_margin();
    let wait_limit = super::source::TOKEN_FETCH_TIMEOUT + Duration::from_secs(5);
    let deadline = Instant::now() + wait_limit;
    let mut changes = cred.cache.subscribe();
    loop {
        if let Some(rec) = shared.read(&cred.name).await.map_err(state_err)? {
            if serves(cred, &rec, want, margin) {
                return Ok(into_minted(rec));
            }
        }
        if cred.role() == Role::Reader {
            ask_owner(cred, shared).await;
        } else if let Some(lease) = shared
            .try_lock(&cred.name, cred.assignment())
            .await
            .map_err(state_err)?
        {
            let result = refresh_locked(cred, shared, want, margin, &lease, counts).await;
            shared.unlock(&cred.name, &lease).await;
            if let Some(minted) = result? {
                return Ok(minted);
            }
            // Fenced out by a newer writer: wait a little, then read what it wrote.
        } else if adopt_stored_assignment(cred, shared).await? {
            continue;
        }
        if Instant::now() >= deadline {
            return Err(TokenError::WaitedForPeer(wait_limit));
        }
        // Another node is refreshing: its `updated` event wakes us, or we poll.
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Under the lock protocol (any node may refresh: `redis-lock`, or cluster
/// mode while degraded) a node acting under an older assignment than the
/// record's is refused the lock for good: one started while no coordinator
/// answers knows none, and a mode switch leaves old assignments behind. It
/// adopts the record's assignment, and the lock counter orders the writers
/// from there. True when it did (try the lock again).
async fn adopt_stored_assignment(
    cred: &Credential,
    shared: &SharedTokens,
) -> Result<bool, TokenError> {
    if cred.role() != Role::Any {
        return Ok(false);
    }
    let stored = shared
        .stored_assignment(&cred.name)
        .await
        .map_err(state_err)?;
    if stored <= cred.assignment() {
        return Ok(false);
    }
    tracing::info!(credential = %cred.name, assignment = stored, "acting under the assignment the shared record was written with");
    cred.set_assignment(stored);
    Ok(true)
}

/// How often a reader asks the owner again while it waits.
const ASK_EVERY_MS: u64 = 500;

/// Asks the owner for a token (`refresh-request`), at most every
/// [`ASK_EVERY_MS`] per credential and node however many requests wait.
async fn ask_owner(cred: &Credential, shared: &SharedTokens) {
    let now = unix_ms();
    let last = cred.asked_ms.load(std::sync::atomic::Ordering::Relaxed);
    if now.saturating_sub(last) < ASK_EVERY_MS
        || cred
            .asked_ms
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_err()
    {
        return;
    }
    let event = StateEvent::RefreshRequest {
        credential: cred.name.clone(),
    };
    events::publish(shared.redis(), &event).await;
}

async fn refresh_locked(
    cred: &Credential,
    shared: &SharedTokens,
    want: Want,
    margin: Duration,
    lease: &crate::state::tokens::Lease,
    counts: bool,
) -> Result<Option<Minted>, TokenError> {
    if let Some(rec) = shared.read(&cred.name).await.map_err(state_err)? {
        if serves(cred, &rec, want, margin) {
            return Ok(Some(into_minted(rec)));
        }
    }
    let mut minted = cred.call_endpoint(counts).await?;
    let version = match write(cred, shared, lease, &minted).await {
        Ok(Some(version)) => version,
        Ok(None) => {
            tracing::warn!(credential = %cred.name, epoch = %lease.epoch, "token write fenced out by a newer epoch");
            return Ok(None);
        }
        Err(e) => {
            // G6: the token is good; serve it here and write it once Redis answers.
            tracing::warn!(credential = %cred.name, error = %e, "token obtained but shared state did not take it; serving it locally");
            cred.keep_unsynced(minted.clone(), lease.clone());
            return Ok(Some(minted));
        }
    };
    minted.version = Some(version);
    Ok(Some(minted))
}

/// Writes `minted` under `lease` and announces it; `None` when fenced out.
async fn write(
    cred: &Credential,
    shared: &SharedTokens,
    lease: &crate::state::tokens::Lease,
    minted: &Minted,
) -> Result<Option<u64>, StateError> {
    let written = shared
        .write(
            &cred.name,
            lease,
            &minted.value,
            minted.obtained_ms,
            minted.expires_ms,
            minted.claims.as_ref(),
        )
        .await?;
    if let Some(version) = written {
        let event = StateEvent::Updated {
            credential: cred.name.clone(),
            version,
        };
        events::publish(shared.redis(), &event).await;
    }
    Ok(written)
}

/// Writes the token this node kept through a Redis outage, under the lease
/// it was fetched with: a newer record, or a newer epoch written meanwhile,
/// wins and the kept token is dropped. An expired one is dropped; while Redis
/// still fails it is kept.
pub async fn flush_unsynced(cred: &Credential, shared: &SharedTokens) -> Result<(), TokenError> {
    let Some((mut minted, lease)) = cred.take_unsynced() else {
        return Ok(());
    };
    if minted.expires_ms.is_some_and(|e| e <= unix_ms()) {
        return Ok(());
    }
    let attempt = async {
        if let Some(rec) = shared.read(&cred.name).await? {
            if rec.obtained_ms >= minted.obtained_ms {
                return Ok(None);
            }
        }
        write(cred, shared, &lease, &minted).await
    };
    match attempt.await {
        Ok(written) => {
            shared.unlock(&cred.name, &lease).await;
            if let Some(version) = written {
                tracing::info!(credential = %cred.name, version, "token kept through the outage written to shared state");
                minted.version = Some(version);
                cred.cache.store_newer(minted);
            }
            Ok(())
        }
        Err(e) => {
            cred.keep_unsynced(minted, lease);
            Err(state_err(e))
        }
    }
}
