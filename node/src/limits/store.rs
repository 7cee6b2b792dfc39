//! The limiter's state in Redis, shared by every node of a cluster.
//!
//! - **Rate**: one key per client, `rz:rl:{<client>}`, holding its GCRA
//!   theoretical arrival time in microseconds of Redis's clock. One
//!   `EVALSHA` per request decides and updates it atomically (the same
//!   arithmetic as [`super::gcra::decide`]); the key expires once the
//!   client's whole burst is available again, so idle clients cost no memory.
//! - **Streams**: one sorted set per client, `rz:st:{<client>}`, with one
//!   member per open stream (a lease id) scored by its expiry on Redis's
//!   clock. Opening a stream drops expired members, counts, and adds one in
//!   one script; closing removes the member (`ZREM`); while a stream is open
//!   its node pushes the expiry forward every [`LEASE_REFRESH`]. A node that
//!   dies stops refreshing, so its slots free themselves after [`LEASE_TTL`].
//!
//! All calls go through [`Redis::eval`]/[`Redis::run`]: `op_timeout`, the
//! circuit breaker and the Redis metrics apply; what an error means for the
//! request (`limits.on_store_error`) is decided by the caller.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::gcra::Decision;
use crate::state::redis::{Redis, Script, StateError};

/// How long a stream lease lives without a refresh.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often the leases of open streams are refreshed.
pub const LEASE_REFRESH: Duration = Duration::from_secs(3);

/// GCRA on Redis's clock. `ARGV`: interval µs, burst. Returns
/// `{allowed (0|1), remaining, wait µs}`.
const RATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
local limit = burst * interval
if ahead > limit then
  return {0, 0, ahead - limit}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor(ahead / 1000) + 1)
return {1, math.floor((limit - ahead) / interval), ahead}
";

/// Opens a stream lease. `ARGV`: max streams, lease id, ttl ms. Returns
/// `{opened (0|1), streams open now}`.
const OPEN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then
  return {0, n}
end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, n + 1}
";

/// Pushes the expiry of this node's open leases forward. `ARGV`: ttl ms,
/// then the lease ids. Only leases still present are refreshed (`XX`): one
/// closed meanwhile stays closed.
const REFRESH: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
";

fn rate_key(client: &str) -> String {
    format!("rz:rl:{{{client}}}")
}

fn streams_key(client: &str) -> String {
    format!("rz:st:{{{client}}}")
}

/// The limiter's Redis side and the stream leases this node holds.
#[derive(Debug)]
pub struct RedisLimits {
    redis: Arc<Redis>,
    rate: Script,
    open: Script,
    refresh: Script,
    /// Open leases by client, refreshed together.
    held: Mutex<HashMap<Arc<str>, HashSet<String>>>,
    node_id: String,
}

impl RedisLimits {
    /// The limiter's store on `redis`; lease ids start with `node_id`.
    pub fn new(redis: Arc<Redis>, node_id: &str) -> Self {
        RedisLimits {
            redis,
            rate: Script::new(RATE),
            // A lease taken after its caller gave up would hold a slot that
            // nobody refreshes or frees until it expires.
            open: Script::with_deadline(OPEN),
            refresh: Script::new(REFRESH),
            held: Mutex::new(HashMap::new()),
            node_id: node_id.to_string(),
        }
    }

    /// Decides one request of `client` (one `EVALSHA`).
    pub async fn check_rate(
        &self,
        client: &str,
        interval: u64,
        burst: u64,
    ) -> Result<Decision, StateError> {
        let args = vec![interval.to_string(), burst.to_string()];
        let reply: Vec<i64> = self
            .redis
            .eval("rate_limit", &self.rate, vec![rate_key(client)], args)
            .await?;
        let [allowed, remaining, wait] = reply.as_slice() else {
            return Err(StateError::Protocol(format!("rate_limit: {reply:?}")));
        };
        let non_negative = |v: &i64| u64::try_from(*v).unwrap_or(0);
        Ok(Decision {
            allowed: *allowed == 1,
            remaining: non_negative(remaining),
            wait_micros: non_negative(wait),
        })
    }

    /// Takes a stream slot of `client` if fewer than `max` are open
    /// cluster-wide: the lease id, or `None` when all are taken.
    pub async fn open_stream(
        &self,
        client: &Arc<str>,
        max: u32,
    ) -> Result<Option<String>, StateError> {
        let lease = format!(
            "{}:{}",
            self.node_id,
            hex::encode(rand::random::<[u8; 8]>())
        );
        let ttl = LEASE_TTL.as_millis().to_string();
        let args = vec![max.to_string(), lease.clone(), ttl];
        let reply: Vec<i64> = self
            .redis
            .eval("stream_open", &self.open, vec![streams_key(client)], args)
            .await?;
        if reply.first() != Some(&1) {
            return Ok(None);
        }
        self.held
            .lock()
            .entry(client.clone())
            .or_default()
            .insert(lease.clone());
        Ok(Some(lease))
    }

    /// Gives the slot back (one `ZREM`); if Redis does not answer, the
    /// lease expires by itself once it is no longer refreshed.
    pub async fn close_stream(&self, client: &str, lease: String) {
        {
            let mut held = self.held.lock();
            if let Some(set) = held.get_mut(client) {
                set.remove(&lease);
                if set.is_empty() {
                    held.remove(client);
                }
            }
        }
        let zrem = CustomCommand::new_static("ZREM", ClusterHash::FirstKey, false);
        let args = vec![streams_key(client), lease];
        let redis = self.redis.client();
        let removed = self
            .redis
            .run("stream_close", redis.custom::<i64, String>(zrem, args))
            .await;
        if let Err(e) = removed {
            tracing::debug!(client, error = %e, "stream lease not removed; it expires by itself");
        }
    }

    /// Refreshes every lease this node holds, every [`LEASE_REFRESH`], until
    /// `shutdown`.
    pub async fn refresh_leases(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(LEASE_REFRESH);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let snapshot: Vec<(Arc<str>, Vec<String>)> = self
                .held
                .lock()
                .iter()
                .map(|(c, set)| (c.clone(), set.iter().cloned().collect()))
                .collect();
            for (client, leases) in snapshot {
                let mut args = vec![LEASE_TTL.as_millis().to_string()];
                args.extend(leases);
                let refreshed: Result<i64, _> = self
                    .redis
                    .eval(
                        "stream_refresh",
                        &self.refresh,
                        vec![streams_key(&client)],
                        args,
                    )
                    .await;
                if let Err(e) = refreshed {
                    tracing::debug!(client = %client, error = %e, "stream leases not refreshed");
                }
            }
        }
    }
}
