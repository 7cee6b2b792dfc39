//! A fenced lease in Redis: one holder at a time for a resource (a
//! credential's refresh, next an SSE stream's producer), taken with `SET NX
//! PX` and handing out a fencing [`Epoch`] with it. The lease itself only
//! keeps honest holders apart; what keeps a paused-then-resumed holder from
//! doing harm is that every write to the guarded record compares its epoch
//! with the record's (the record's own script does that).
//!
//! The lock counter lives in its own key and may be lost (eviction, FLUSH)
//! while the record survives: the counter handed out is therefore never at
//! or below the record's epoch within the same assignment, or every later
//! write would be fenced out. A holder acting under an older assignment than
//! the record's is refused the lease outright.
//!
//! Keys: `<lease>` holds the owner token, `<fence>` the counter, and the
//! guarded record is a hash with `epoch_a` (assignment) and `epoch_l` (lock);
//! all three share one hash tag, so one resource stays in one Cluster slot.

use std::sync::Arc;
use std::time::Duration;

use rhizome_proto::Epoch;

use super::redis::{Redis, Script, StateError};

/// Takes the lease and the next lock counter; -1 when held, -2 when the
/// caller's assignment is older than the record's. Run with a deadline.
const ACQUIRE: &str = r"
local a = tonumber(ARGV[3])
local sa = tonumber(redis.call('HGET', KEYS[3], 'epoch_a') or '0')
if a < sa then return -2 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
local e = redis.call('INCR', KEYS[2])
if a == sa then
  local sl = tonumber(redis.call('HGET', KEYS[3], 'epoch_l') or '0')
  if e <= sl then
    e = sl + 1
    redis.call('SET', KEYS[2], e)
  end
end
return e";

/// Releases the lease only if this owner still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// The Redis keys of one leased resource.
#[derive(Debug, Clone)]
pub struct LeaseKeys {
    /// Holds the owner token while the lease is held.
    pub lease: String,
    /// The lock counter.
    pub fence: String,
    /// The guarded record (a hash with `epoch_a` and `epoch_l`).
    pub record: String,
}

/// A held lease.
#[derive(Debug, Clone)]
pub struct Lease {
    owner: String,
    /// Fencing epoch taken with the lease.
    pub epoch: Epoch,
}

/// Why a lease was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Somebody else holds it.
    Held,
    /// The record was written under a newer assignment than the caller knows.
    Stale,
}

/// Fenced leases of one kind of resource.
#[derive(Debug)]
pub struct FencedLeases {
    redis: Arc<Redis>,
    node_id: String,
    ttl: Duration,
    acquire: Script,
    release: Script,
}

impl FencedLeases {
    /// Leases held by `node_id` for `ttl` (how long a dead holder blocks others).
    pub fn new(redis: Arc<Redis>, node_id: &str, ttl: Duration) -> Self {
        FencedLeases {
            redis,
            node_id: node_id.to_string(),
            ttl,
            // A late run must not take a lease nobody waits for.
            acquire: Script::with_deadline(ACQUIRE),
            // Checks the owner: a late run releases nobody else's lease.
            release: Script::new(RELEASE),
        }
    }

    /// The scripts, for preloading.
    pub fn scripts(&self) -> [&Script; 2] {
        [&self.acquire, &self.release]
    }

    /// Tries to take the lease of `keys` acting under `assignment`.
    pub async fn try_acquire(
        &self,
        keys: &LeaseKeys,
        assignment: u64,
    ) -> Result<Result<Lease, Refused>, StateError> {
        let owner = format!(
            "{}:{}",
            self.node_id,
            hex::encode(rand::random::<[u8; 8]>())
        );
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let counter: i64 = self
            .redis
            .eval(
                "lease_acquire",
                &self.acquire,
                vec![keys.lease.clone(), keys.fence.clone(), keys.record.clone()],
                vec![owner.clone(), ttl_ms.to_string(), assignment.to_string()],
            )
            .await?;
        Ok(match counter {
            -2 => Err(Refused::Stale),
            c => match u64::try_from(c) {
                Ok(lock) => Ok(Lease {
                    owner,
                    epoch: Epoch::new(assignment, lock),
                }),
                Err(_) => Err(Refused::Held),
            },
        })
    }

    /// Releases a lease this node holds (best effort: it also expires).
    pub async fn release(&self, keys: &LeaseKeys, lease: &Lease) {
        let released = self
            .redis
            .eval::<i64>(
                "lease_release",
                &self.release,
                vec![keys.lease.clone()],
                vec![lease.owner.clone()],
            )
            .await;
        if let Err(e) = released {
            tracing::debug!(lease = %keys.lease, error = %e, "release failed; the lease will expire");
        }
    }
}
