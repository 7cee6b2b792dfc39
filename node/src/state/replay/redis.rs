//! Replay buffers in Redis, shared by a cluster. A stream's keys share the
//! `{stream}` hash tag (one Cluster slot): the log is a Redis Stream whose
//! entry ids are `<seq>-0` (fields `e` epoch, `u` upstream id if any, `f` the
//! event's bytes, `t` append time in Unix ms), the meta hash holds the
//! encoded [`StreamMeta`] (`meta`), `last_seq`, `last_uid` (`+<id>`, so an
//! empty upstream id differs from none), `lost` (`a-b,c-d`), `epoch` and
//! `producer`, and the lease key holds the producer's owner token.
//!
//! Every write is one Lua script, so a check and what it guards cannot be
//! interleaved: taking the lease bumps the meta's `epoch` in the same step, so
//! from then on an append or lost range carrying an older epoch is refused,
//! whether or not the new producer wrote anything yet. Acquire, renew, append
//! and mark-lost carry a deadline ([`Script::with_deadline`]): run after their
//! caller gave up (a frozen Redis resuming), they do nothing.
//!
//! Listing live producers must not SCAN the keyspace, so the sorted set
//! [`SSE_ACTIVE`] (another slot, hence separate commands) holds stream ids
//! scored by lease expiry (Redis clock, ms): acquire and renew add, release
//! removes, and every update drops a bounded batch of expired entries. It is
//! an admin index only; the lease keys stay the truth.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::{ClusterHash, CustomCommand, SetOptions, Value};
use rhizome_proto::codec;
use rhizome_proto::records::{
    sse_lease_key, sse_log_key, sse_meta_key, StreamMeta, SSE_ID_KEY, SSE_WAKE,
};
use tokio::sync::broadcast;

use super::{
    check_batch, hole, Appended, ProducerLease, ReplayStore, Retention, StateError, StoreFuture,
    StoredEvent, StreamPage, StreamState, MAX_LOST_RANGES,
};
use crate::state::redis::{Redis, Script};

/// The sorted set of streams with a producer lease (see the module doc).
pub const SSE_ACTIVE: &str = "rz:sse-active";

/// Creates the meta once (and clears leftovers of an expired namesake).
/// KEYS: meta, lease, log. ARGV: meta bytes, ttl ms.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'meta', ARGV[1], 'last_seq', '0', 'epoch', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1";

/// The meta fields, the producer while the lease lives, the oldest entry id.
/// KEYS: meta, lease, log.
const STATE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'meta', 'last_seq', 'last_uid', 'lost', 'epoch', 'producer', 'finished')
if not h[1] then return false end
local producer = ''
if redis.call('EXISTS', KEYS[2]) == 1 then producer = h[6] or '' end
local oldest = ''
local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
if #first > 0 then oldest = first[1][1] end
return {h[1], h[2] or '0', h[3] or '', h[4] or '', h[5] or '0', producer, oldest, h[7] or '0'}";

/// Takes the lease and the next epoch: -1 while held, -2 when the stream is
/// gone. KEYS: meta, lease. ARGV: owner, ttl ms, node.
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
local e = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'producer', ARGV[3])
return e";

/// Extends the lease if this owner holds it and the stream lives.
/// KEYS: meta, lease. ARGV: owner, ttl ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1";

/// Releases the lease only if this owner still holds it, marking the stream
/// finished when ARGV[2] is '1'. KEYS: lease, meta. ARGV: owner, finished.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'finished', '1')
end
return redis.call('DEL', KEYS[1])";

/// Updates [`SSE_ACTIVE`]: drops a bounded batch of expired entries, then
/// adds the stream for ttl ms, or removes it when ttl is 0.
/// KEYS: the index. ARGV: stream, ttl ms.
const INDEX: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now), 'LIMIT', 0, 64)
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
if ARGV[2] == '0' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
end
return 0";

/// The epoch check every producer write starts with (a Lua fragment):
/// returns `{1}` when fenced, `{2}` when gone; sets `last`.
const FENCE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {2, 0} end
local se = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
local e = tonumber(ARGV[1])
if e < se then return {1, 0} end
if e > se then return {2, 0} end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0')
";

/// Appends a batch, trims by count and (a bounded batch per call) by age,
/// pushes the expiry and wakes readers. Returns `{code, seq}`: 0 stored
/// (the new last seq), 1 fenced, 2 gone, 3 a hole after `last_seq`.
/// KEYS: meta, lease, log. ARGV: epoch, max events, ttl ms, stream, channel,
/// then per event: seq, `+<upstream id>` or empty, fields, at ms.
const APPEND: &str = r"
local first = nil
for i = 6, #ARGV - 1, 4 do
  if tonumber(ARGV[i]) > last then
    first = i
    break
  end
end
if not first then return {0, last} end
if tonumber(ARGV[first]) ~= last + 1 then return {3, last} end
local uid = nil
local seq = nil
for i = first, #ARGV - 1, 4 do
  if ARGV[i + 1] ~= '' then
    uid = ARGV[i + 1]
    redis.call('XADD', KEYS[3], ARGV[i] .. '-0', 'e', ARGV[1], 'u', string.sub(uid, 2),
      'f', ARGV[i + 2], 't', ARGV[i + 3])
  else
    redis.call('XADD', KEYS[3], ARGV[i] .. '-0', 'e', ARGV[1], 'f', ARGV[i + 2], 't', ARGV[i + 3])
  end
  seq = ARGV[i]
end
redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', ARGV[2])
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
local function at(entry)
  local f = entry[2]
  for j = 1, #f, 2 do
    if f[j] == 't' then return tonumber(f[j + 1]) end
  end
  return 0
end
local old = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
if #old > 0 and at(old[1]) < cutoff then
  old = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 64)
  local keep = nil
  for _, entry in ipairs(old) do
    if at(entry) >= cutoff then
      keep = entry[1]
      break
    end
  end
  if not keep then
    keep = string.format('%d-0', tonumber(string.match(old[#old][1], '^(%d+)')) + 1)
  end
  redis.call('XTRIM', KEYS[3], 'MINID', keep)
end
if uid then
  redis.call('HSET', KEYS[1], 'last_seq', seq, 'last_uid', uid)
else
  redis.call('HSET', KEYS[1], 'last_seq', seq)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[4])
return {0, tonumber(seq)}";

/// Records a lost range (merging with the newest when adjacent, keeping the
/// newest few) and moves `last_seq` to its end; answers like [`APPEND`].
/// KEYS: meta. ARGV: epoch, from, to, ranges kept, stream, channel.
const LOST: &str = r"
local from, to = tonumber(ARGV[2]), tonumber(ARGV[3])
if to <= last then return {0, last} end
if from > last + 1 then return {3, last} end
if from <= last then from = last + 1 end
local ranges = {}
for a, b in string.gmatch(redis.call('HGET', KEYS[1], 'lost') or '', '(%d+)-(%d+)') do
  ranges[#ranges + 1] = {tonumber(a), tonumber(b)}
end
if #ranges > 0 and ranges[#ranges][2] + 1 == from then
  ranges[#ranges][2] = to
else
  ranges[#ranges + 1] = {from, to}
end
while #ranges > tonumber(ARGV[4]) do table.remove(ranges, 1) end
local parts = {}
for i, r in ipairs(ranges) do parts[i] = string.format('%d-%d', r[1], r[2]) end
redis.call('HSET', KEYS[1], 'lost', table.concat(parts, ','), 'last_seq', ARGV[3])
redis.call('PUBLISH', ARGV[6], ARGV[5])
return {0, to}";

/// Replay buffers in Redis.
#[derive(Debug)]
pub struct RedisReplayStore {
    redis: Arc<Redis>,
    id_key: OnceLock<[u8; 32]>,
    create: Script,
    state: Script,
    acquire: Script,
    renew: Script,
    release: Script,
    index: Script,
    append: Script,
    lost: Script,
}

/// The keys one stream's scripts take, the meta first (it names the slot).
fn keys(stream: &str) -> Vec<String> {
    vec![
        sse_meta_key(stream),
        sse_lease_key(stream),
        sse_log_key(stream),
    ]
}

fn ms(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

fn bad(what: &str) -> StateError {
    StateError::Protocol(format!("unexpected replay store answer: {what}"))
}

impl RedisReplayStore {
    /// A store over `redis`.
    pub fn new(redis: Arc<Redis>) -> Self {
        RedisReplayStore {
            redis,
            id_key: OnceLock::new(),
            // A late create makes a stream nobody uses; it expires.
            create: Script::new(CREATE),
            state: Script::new(STATE),
            // A late run must not take or extend a lease nobody waits for.
            acquire: Script::with_deadline(ACQUIRE),
            renew: Script::with_deadline(RENEW),
            // Checks the owner: a late run releases nobody else's lease.
            release: Script::new(RELEASE),
            // An admin index, re-checked against the leases when listed.
            index: Script::new(INDEX),
            append: Script::with_deadline(&format!("{FENCE}{APPEND}")),
            lost: Script::with_deadline(&format!("{FENCE}{LOST}")),
        }
    }

    /// Loads the Lua scripts (`SCRIPT LOAD`) so later calls are plain
    /// `EVALSHA`; a script flushed later is reloaded on `NOSCRIPT`.
    pub async fn preload(&self) -> Result<(), StateError> {
        for script in [
            &self.create,
            &self.state,
            &self.acquire,
            &self.renew,
            &self.release,
            &self.index,
            &self.append,
            &self.lost,
        ] {
            self.redis.load(script).await?;
        }
        Ok(())
    }

    /// Adds `stream` to [`SSE_ACTIVE`] for `ttl`, or removes it (`None`).
    /// Best effort: the index only serves the admin listing.
    async fn index(&self, stream: &str, ttl: Option<Duration>) {
        let ttl = ttl.map_or_else(|| "0".to_string(), ms);
        let updated = self
            .redis
            .eval::<i64>(
                "sse_index",
                &self.index,
                vec![SSE_ACTIVE.to_string()],
                vec![stream.to_string(), ttl],
            )
            .await;
        if let Err(e) = updated {
            tracing::debug!(error = %e, "updating the SSE stream index failed");
        }
    }

    /// Runs a fenced producer write and maps its `{code, seq}` answer.
    /// `first` is the batch's first seq (for the error of a hole).
    async fn fenced(
        &self,
        op: &'static str,
        script: &Script,
        first: u64,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Appended, StateError> {
        let answer: Vec<i64> = self.redis.eval(op, script, keys, args).await?;
        let (code, seq) = match answer.as_slice() {
            [code, seq] => (*code, u64::try_from(*seq).map_err(|_| bad(op))?),
            _ => return Err(bad(op)),
        };
        match code {
            0 => Ok(Appended::Stored(seq)),
            1 => Ok(Appended::Fenced),
            2 => Ok(Appended::Gone),
            3 => Err(hole(op, first, seq)),
            _ => Err(bad(op)),
        }
    }

    async fn read_state(&self, stream: &str) -> Result<Option<StreamState>, StateError> {
        let reply: Value = self
            .redis
            .eval("sse_state", &self.state, keys(stream), Vec::<String>::new())
            .await?;
        if reply.is_null() {
            return Ok(None);
        }
        let fields = reply.into_array();
        let [meta, last_seq, last_uid, lost, epoch, producer, oldest, finished] = fields.as_slice()
        else {
            return Err(bad("state"));
        };
        let meta = match codec::decode::<StreamMeta>(meta.as_bytes().unwrap_or_default()) {
            Ok(meta) => meta,
            Err(e) => {
                // An older record format: treated as absent (the client gets a gap).
                tracing::warn!(error = %e, "undecodable SSE stream meta ignored");
                return Ok(None);
            }
        };
        let text = |v: &Value| v.as_string().unwrap_or_default();
        let num = |v: &Value| text(v).parse::<u64>().map_err(|_| bad("number"));
        let oldest = text(oldest);
        Ok(Some(StreamState {
            meta,
            last_seq: num(last_seq)?,
            oldest_seq: entry_seq(&oldest),
            last_upstream_id: text(last_uid).strip_prefix('+').map(str::to_string),
            lost: parse_lost(&text(lost)),
            epoch: num(epoch)?,
            producer: Some(text(producer)).filter(|p| !p.is_empty()),
            finished: text(finished) == "1",
        }))
    }
}

/// The seq of a log entry id `<seq>-0`.
fn entry_seq(id: &str) -> Option<u64> {
    id.split_once('-').and_then(|(seq, _)| seq.parse().ok())
}

/// Lost ranges stored as `a-b,c-d`.
fn parse_lost(s: &str) -> Vec<(u64, u64)> {
    s.split(',')
        .filter_map(|r| {
            let (a, b) = r.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

/// One `XRANGE` entry: `[id, [field, value, …]]`.
fn parse_entry(entry: Value) -> Result<StoredEvent, StateError> {
    let mut parts = entry.into_array().into_iter();
    let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
        return Err(bad("log entry"));
    };
    let seq = id
        .as_string()
        .as_deref()
        .and_then(entry_seq)
        .ok_or_else(|| bad("log entry id"))?;
    let mut event = StoredEvent {
        seq,
        epoch: 0,
        upstream_id: None,
        fields: Bytes::new(),
        at_ms: 0,
    };
    let fields = fields.into_array();
    for pair in fields.chunks(2) {
        let [name, value] = pair else {
            return Err(bad("log entry fields"));
        };
        let num = || value.as_string().and_then(|v| v.parse().ok());
        match name.as_string().as_deref() {
            Some("e") => event.epoch = num().ok_or_else(|| bad("epoch"))?,
            Some("t") => event.at_ms = num().ok_or_else(|| bad("time"))?,
            Some("u") => event.upstream_id = value.as_string(),
            Some("f") => {
                event.fields = Bytes::copy_from_slice(value.as_bytes().unwrap_or_default())
            }
            _ => {}
        }
    }
    Ok(event)
}

impl ReplayStore for RedisReplayStore {
    fn id_key(&self) -> StoreFuture<'_, [u8; 32]> {
        Box::pin(async move {
            if let Some(key) = self.id_key.get() {
                return Ok(*key);
            }
            let fresh = hex::encode(rand::random::<[u8; 32]>());
            let client = self.redis.client();
            self.redis
                .run(
                    "sse_id_key",
                    client.set::<Value, _, _>(SSE_ID_KEY, fresh, None, Some(SetOptions::NX), false),
                )
                .await?;
            let stored: Option<String> =
                self.redis.run("sse_id_key", client.get(SSE_ID_KEY)).await?;
            let key: [u8; 32] = stored
                .and_then(|s| hex::decode(s).ok())
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad(SSE_ID_KEY))?;
            Ok(*self.id_key.get_or_init(|| key))
        })
    }

    fn create<'a>(
        &'a self,
        stream: &'a str,
        meta: &'a StreamMeta,
        retention: Retention,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let bytes = codec::encode(meta).map_err(|e| StateError::Protocol(e.to_string()))?;
            let args = vec![Value::Bytes(bytes.into()), ms(retention.ttl).into()];
            let created: i64 = self
                .redis
                .eval("sse_create", &self.create, keys(stream), args)
                .await?;
            Ok(created == 1)
        })
    }

    fn state<'a>(&'a self, stream: &'a str) -> StoreFuture<'a, Option<StreamState>> {
        Box::pin(self.read_state(stream))
    }

    fn acquire<'a>(
        &'a self,
        stream: &'a str,
        node: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<ProducerLease>> {
        Box::pin(async move {
            let owner = hex::encode(rand::random::<[u8; 16]>());
            let args = vec![owner.clone(), ms(ttl), node.to_string()];
            let epoch: i64 = self
                .redis
                .eval("sse_acquire", &self.acquire, keys(stream), args)
                .await?;
            let Ok(epoch) = u64::try_from(epoch) else {
                return Ok(None);
            };
            self.index(stream, Some(ttl)).await;
            Ok(Some(ProducerLease { epoch, owner }))
        })
    }

    fn renew<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let args = vec![lease.owner.clone(), ms(ttl)];
            let renewed: i64 = self
                .redis
                .eval("sse_renew", &self.renew, keys(stream), args)
                .await?;
            if renewed == 1 {
                self.index(stream, Some(ttl)).await;
            }
            Ok(renewed == 1)
        })
    }

    fn release<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        finished: bool,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let released: i64 = self
                .redis
                .eval(
                    "sse_release",
                    &self.release,
                    vec![sse_lease_key(stream), sse_meta_key(stream)],
                    vec![
                        lease.owner.clone(),
                        if finished { "1" } else { "0" }.to_string(),
                    ],
                )
                .await?;
            if released == 1 {
                self.index(stream, None).await;
            }
            Ok(())
        })
    }

    fn append<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        events: &'a [StoredEvent],
        retention: Retention,
    ) -> StoreFuture<'a, Appended> {
        Box::pin(async move {
            check_batch(events)?;
            let mut args: Vec<Value> = Vec::with_capacity(5 + 4 * events.len());
            args.extend([
                lease.epoch.to_string().into(),
                retention.max_events.max(1).to_string().into(),
                ms(retention.ttl).into(),
                stream.to_string().into(),
                SSE_WAKE.to_string().into(),
            ]);
            for e in events {
                let uid = e
                    .upstream_id
                    .as_ref()
                    .map_or_else(String::new, |u| format!("+{u}"));
                args.extend([
                    e.seq.to_string().into(),
                    uid.into(),
                    Value::Bytes(e.fields.clone()),
                    e.at_ms.to_string().into(),
                ]);
            }
            let first = events.first().map_or(0, |e| e.seq);
            self.fenced("sse_append", &self.append, first, keys(stream), args)
                .await
        })
    }

    fn mark_lost<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        from: u64,
        to: u64,
    ) -> StoreFuture<'a, Appended> {
        Box::pin(async move {
            if to < from || from == 0 {
                return Err(StateError::Protocol(format!(
                    "mark_lost: bad range {from}..={to}"
                )));
            }
            let args: Vec<Value> = [
                lease.epoch.to_string(),
                from.to_string(),
                to.to_string(),
                MAX_LOST_RANGES.to_string(),
                stream.to_string(),
                SSE_WAKE.to_string(),
            ]
            .into_iter()
            .map(Value::from)
            .collect();
            let keys = vec![sse_meta_key(stream)];
            self.fenced("sse_mark_lost", &self.lost, from, keys, args)
                .await
        })
    }

    fn read_after<'a>(
        &'a self,
        stream: &'a str,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredEvent>> {
        Box::pin(async move {
            let Some(start) = after.checked_add(1) else {
                return Ok(Vec::new());
            };
            if limit == 0 {
                return Ok(Vec::new());
            }
            let args = vec![
                sse_log_key(stream),
                format!("{start}-0"),
                "+".to_string(),
                "COUNT".to_string(),
                limit.to_string(),
            ];
            let cmd = CustomCommand::new_static("XRANGE", ClusterHash::FirstKey, false);
            let client = self.redis.client();
            let entries: Value = self.redis.run("sse_read", client.custom(cmd, args)).await?;
            entries.into_array().into_iter().map(parse_entry).collect()
        })
    }

    fn wakeups(&self) -> broadcast::Receiver<String> {
        self.redis.wakeups()
    }

    fn list<'a>(&'a self, cursor: Option<&'a str>, limit: usize) -> StoreFuture<'a, StreamPage> {
        Box::pin(async move {
            let args = vec![
                SSE_ACTIVE.to_string(),
                cursor.unwrap_or("0").to_string(),
                "COUNT".to_string(),
                limit.max(1).to_string(),
            ];
            let cmd = CustomCommand::new_static("ZSCAN", ClusterHash::FirstKey, false);
            let client = self.redis.client();
            let reply: Value = self.redis.run("sse_list", client.custom(cmd, args)).await?;
            let mut reply = reply.into_array().into_iter();
            let (Some(next), Some(members)) = (reply.next(), reply.next()) else {
                return Err(bad("ZSCAN"));
            };
            let next = next.as_string().ok_or_else(|| bad("ZSCAN cursor"))?;
            let ids: Vec<String> = members
                .into_array()
                .chunks(2)
                .filter_map(|pair| pair.first().and_then(Value::as_string))
                .collect();
            let states =
                futures_util::future::join_all(ids.iter().map(|id| self.read_state(id))).await;
            let mut items = Vec::new();
            for (id, state) in ids.into_iter().zip(states) {
                if let Some(state) = state?.filter(|s| s.producer.is_some()) {
                    items.push((id, state));
                }
            }
            Ok(StreamPage {
                items,
                next: (next != "0").then_some(next),
            })
        })
    }
}
