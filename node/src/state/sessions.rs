//! MCP proxy sessions in shared state: one [`SessionStore`] trait (async, with
//! TTL, batch operations and cursor pagination) and its two implementations,
//! in memory (the embedded default) and in Redis. The rest of the node holds
//! an `Arc<dyn SessionStore>` and never knows which one it has.
//!
//! Counting live sessions (`rhizome_sessions_active`) must not cost a SCAN of
//! the keyspace, so Redis keeps an index next to the records: the sorted set
//! [`SESSION_INDEX`] of proxy ids scored by the expiry last written (unix ms).
//! Create adds, delete removes; a sliding TTL does not touch it (the hot path
//! stays one command). Counting re-checks, a bounded batch at a time, entries
//! whose recorded expiry has passed: gone ones leave the index, live ones get
//! their real expiry. The count is the index's size.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::{ClusterHash, CustomCommand, Expiration, Value};
use rhizome_proto::codec;
use rhizome_proto::records::{session_key, SessionRecord};

use super::redis::{Redis, StateError};

/// A boxed store future (object-safe async).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// One page of a session listing.
#[derive(Debug, Default)]
pub struct Page {
    /// Sessions on this page, by proxy id.
    pub items: Vec<(String, SessionRecord)>,
    /// Cursor of the next page; `None` at the end.
    pub next: Option<String>,
}

/// Where MCP proxy sessions live.
pub trait SessionStore: Send + Sync + Debug {
    /// The session `id`, if it exists and has not expired; with `touch`, its
    /// expiry is pushed to that long from now in the same operation.
    fn get<'a>(
        &'a self,
        id: &'a str,
        touch: Option<Duration>,
    ) -> StoreFuture<'a, Option<SessionRecord>>;
    /// Several sessions at once, in order.
    fn get_many<'a>(&'a self, ids: &'a [String]) -> StoreFuture<'a, Vec<Option<SessionRecord>>>;
    /// Creates or replaces `id`, expiring after `ttl` without a touch.
    fn put<'a>(
        &'a self,
        id: &'a str,
        record: &'a SessionRecord,
        ttl: Duration,
    ) -> StoreFuture<'a, ()>;
    /// Pushes the expiry of `id` to `ttl` from now; false when it is gone.
    fn touch<'a>(&'a self, id: &'a str, ttl: Duration) -> StoreFuture<'a, bool>;
    /// Removes `id`; false when it did not exist.
    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool>;
    /// Removes several sessions; returns how many existed.
    fn delete_many<'a>(&'a self, ids: &'a [String]) -> StoreFuture<'a, u64>;
    /// A page of at most about `limit` sessions after `cursor`.
    fn list<'a>(&'a self, cursor: Option<&'a str>, limit: usize) -> StoreFuture<'a, Page>;
    /// Live sessions, every node's. With Redis, sessions that expired may be
    /// counted until a few counts have caught up with them.
    fn count(&self) -> StoreFuture<'_, u64>;
}

/// Sessions in this process: the embedded default.
#[derive(Debug)]
pub struct MemorySessionStore {
    max_sessions: usize,
    map: Mutex<BTreeMap<String, (SessionRecord, Instant)>>,
}

impl MemorySessionStore {
    /// A store holding at most `max_sessions` live sessions.
    pub fn new(max_sessions: usize) -> Self {
        MemorySessionStore {
            max_sessions,
            map: Mutex::new(BTreeMap::new()),
        }
    }

    fn live(&self, id: &str) -> Option<SessionRecord> {
        let mut map = self.map.lock();
        match map.get(id) {
            Some((rec, exp)) if *exp > Instant::now() => Some(rec.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }
}

fn ready<'a, T: Send + 'a>(v: Result<T, StateError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

impl SessionStore for MemorySessionStore {
    fn get<'a>(
        &'a self,
        id: &'a str,
        touch: Option<Duration>,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        let rec = self.live(id);
        if let (Some(_), Some(ttl)) = (&rec, touch) {
            if let Some((_, exp)) = self.map.lock().get_mut(id) {
                *exp = Instant::now() + ttl;
            }
        }
        ready(Ok(rec))
    }

    fn get_many<'a>(&'a self, ids: &'a [String]) -> StoreFuture<'a, Vec<Option<SessionRecord>>> {
        ready(Ok(ids.iter().map(|id| self.live(id)).collect()))
    }

    fn put<'a>(
        &'a self,
        id: &'a str,
        record: &'a SessionRecord,
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        let mut map = self.map.lock();
        let now = Instant::now();
        if map.len() >= self.max_sessions && !map.contains_key(id) {
            map.retain(|_, (_, exp)| *exp > now);
            if map.len() >= self.max_sessions {
                return ready(Err(StateError::Unavailable(format!(
                    "session store full ({} sessions)",
                    self.max_sessions
                ))));
            }
        }
        map.insert(id.to_string(), (record.clone(), now + ttl));
        ready(Ok(()))
    }

    fn touch<'a>(&'a self, id: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        let now = Instant::now();
        let touched = match self.map.lock().get_mut(id) {
            Some((_, exp)) if *exp > now => {
                *exp = now + ttl;
                true
            }
            _ => false,
        };
        ready(Ok(touched))
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        ready(Ok(self.map.lock().remove(id).is_some()))
    }

    fn delete_many<'a>(&'a self, ids: &'a [String]) -> StoreFuture<'a, u64> {
        let mut map = self.map.lock();
        ready(Ok(ids
            .iter()
            .filter(|id| map.remove(id.as_str()).is_some())
            .count() as u64))
    }

    fn list<'a>(&'a self, cursor: Option<&'a str>, limit: usize) -> StoreFuture<'a, Page> {
        use std::ops::Bound;
        let now = Instant::now();
        let map = self.map.lock();
        let start = cursor.map_or(Bound::Unbounded, |c| Bound::Excluded(c.to_string()));
        let mut items = Vec::new();
        let mut next = None;
        for (id, (rec, exp)) in map.range((start, Bound::Unbounded)) {
            if *exp <= now {
                continue;
            }
            if items.len() == limit {
                next = items
                    .last()
                    .map(|(id, _): &(String, SessionRecord)| id.clone());
                break;
            }
            items.push((id.clone(), rec.clone()));
        }
        ready(Ok(Page { items, next }))
    }

    fn count(&self) -> StoreFuture<'_, u64> {
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, (_, exp)| *exp > now);
        ready(Ok(map.len() as u64))
    }
}

/// The sorted set indexing live sessions for counting (see the module doc).
pub const SESSION_INDEX: &str = "rz:sess-index";
/// Index entries past their recorded expiry re-checked per count, at most:
/// one `PTTL` each, then one `ZADD` and one `ZREM` for the batch.
const RECONCILE_BATCH: usize = 128;

/// Sessions in Redis: `rz:sess:{P}` → encoded [`SessionRecord`] with a TTL.
#[derive(Debug)]
pub struct RedisSessionStore {
    redis: Arc<Redis>,
}

impl RedisSessionStore {
    /// A store over `redis`.
    pub fn new(redis: Arc<Redis>) -> Self {
        RedisSessionStore { redis }
    }

    /// One sorted-set command on the index (the enabled fred interfaces have
    /// no sorted sets).
    async fn index<R: fred::types::FromValue + Send>(
        &self,
        op: &'static str,
        cmd: &'static str,
        args: Vec<String>,
    ) -> Result<R, StateError> {
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(SESSION_INDEX.to_string());
        all.extend(args);
        let cmd = CustomCommand::new_static(cmd, ClusterHash::FirstKey, false);
        let client = self.redis.client();
        self.redis
            .run(op, client.custom::<R, String>(cmd, all))
            .await
    }

    async fn unindex(&self, ids: &[String]) -> Result<(), StateError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.index::<i64>("session_unindex", "ZREM", ids.to_vec())
            .await
            .map(drop)
    }

    /// One `ZSCAN` page of [`SESSION_INDEX`]: the next cursor and the ids.
    async fn index_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(String, Vec<String>), StateError> {
        let args = vec![
            cursor.unwrap_or("0").to_string(),
            "COUNT".to_string(),
            limit.max(1).to_string(),
        ];
        let reply: Value = self.index("session_list", "ZSCAN", args).await?;
        let bad = || StateError::Protocol("session_list: unexpected ZSCAN answer".into());
        let mut reply = reply.into_array().into_iter();
        let (Some(next), Some(members)) = (reply.next(), reply.next()) else {
            return Err(bad());
        };
        let next = next.as_string().ok_or_else(bad)?;
        let ids = members
            .into_array()
            .chunks(2)
            .filter_map(|pair| pair.first().and_then(Value::as_string))
            .collect();
        Ok((next, ids))
    }

    /// Re-checks up to [`RECONCILE_BATCH`] entries whose recorded expiry passed.
    async fn reconcile(&self) -> Result<(), StateError> {
        let now = crate::credentials::source::unix_ms();
        let due: Vec<String> = self
            .index(
                "session_index_due",
                "ZRANGEBYSCORE",
                vec![
                    "-inf".into(),
                    now.to_string(),
                    "LIMIT".into(),
                    "0".into(),
                    RECONCILE_BATCH.to_string(),
                ],
            )
            .await?;
        let client = self.redis.client();
        let ttls = futures_util::future::join_all(due.iter().map(|id| {
            self.redis
                .run("session_pttl", client.pttl::<i64, _>(session_key(id)))
        }))
        .await;
        let mut gone = Vec::new();
        let mut live = Vec::new();
        for (id, ttl) in due.into_iter().zip(ttls) {
            match ttl? {
                -2 => gone.push(id),
                // No expiry at all (set by hand): never due again.
                -1 => live.extend(["+inf".to_string(), id]),
                ms => live.extend([now.saturating_add(ms.unsigned_abs()).to_string(), id]),
            }
        }
        if !live.is_empty() {
            let mut args = vec!["XX".to_string()];
            args.extend(live);
            self.index::<i64>("session_index", "ZADD", args).await?;
        }
        self.unindex(&gone).await
    }
}

/// A stored value that does not decode (an older record format, a foreign
/// key) is treated as absent: the client gets 404 and initializes again.
fn decode(bytes: Option<Vec<u8>>) -> Result<Option<SessionRecord>, StateError> {
    Ok(bytes.and_then(|b| match codec::decode(&b) {
        Ok(rec) => Some(rec),
        Err(e) => {
            tracing::warn!(error = %e, "undecodable session record ignored");
            None
        }
    }))
}

fn secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX)
}

impl SessionStore for RedisSessionStore {
    fn get<'a>(
        &'a self,
        id: &'a str,
        touch: Option<Duration>,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(async move {
            let client = self.redis.client();
            let key = session_key(id);
            let value = match touch {
                // GETEX reads and slides the TTL in one command.
                Some(ttl) => {
                    let args = vec![key, "EX".to_string(), secs(ttl).to_string()];
                    let cmd = CustomCommand::new_static("GETEX", ClusterHash::FirstKey, false);
                    self.redis
                        .run(
                            "session_get",
                            client.custom::<Option<Vec<u8>>, String>(cmd, args),
                        )
                        .await?
                }
                None => {
                    self.redis
                        .run("session_get", client.get::<Option<Vec<u8>>, _>(key))
                        .await?
                }
            };
            decode(value)
        })
    }

    fn get_many<'a>(&'a self, ids: &'a [String]) -> StoreFuture<'a, Vec<Option<SessionRecord>>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            // One GET per key, not MGET: on Redis Cluster each session key
            // has its own slot (fred pipelines them on one connection anyway).
            let client = self.redis.client();
            let values = futures_util::future::join_all(ids.iter().map(|id| {
                self.redis.run(
                    "session_get",
                    client.get::<Option<Vec<u8>>, _>(session_key(id)),
                )
            }))
            .await;
            values.into_iter().map(|v| decode(v?)).collect()
        })
    }

    fn put<'a>(
        &'a self,
        id: &'a str,
        record: &'a SessionRecord,
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let bytes = codec::encode(record).map_err(|e| StateError::Protocol(e.to_string()))?;
            let client = self.redis.client();
            self.redis
                .run(
                    "session_put",
                    client.set::<(), _, _>(
                        session_key(id),
                        bytes,
                        Some(Expiration::EX(secs(ttl))),
                        None,
                        false,
                    ),
                )
                .await?;
            let expires = crate::credentials::source::unix_ms()
                .saturating_add(u64::try_from(secs(ttl)).unwrap_or(0).saturating_mul(1000));
            self.index::<i64>(
                "session_index",
                "ZADD",
                vec![expires.to_string(), id.to_string()],
            )
            .await
            .map(drop)
        })
    }

    fn touch<'a>(&'a self, id: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let client = self.redis.client();
            self.redis
                .run(
                    "session_touch",
                    client.expire::<bool, _>(session_key(id), secs(ttl), None),
                )
                .await
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let client = self.redis.client();
            let n: u64 = self
                .redis
                .run("session_delete", client.del(session_key(id)))
                .await?;
            self.unindex(&[id.to_string()]).await?;
            Ok(n > 0)
        })
    }

    fn delete_many<'a>(&'a self, ids: &'a [String]) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(0);
            }
            // One DEL per key (each key its own Cluster slot).
            let client = self.redis.client();
            let deleted = futures_util::future::join_all(ids.iter().map(|id| {
                self.redis
                    .run("session_delete", client.del::<u64, _>(session_key(id)))
            }))
            .await;
            let mut n = 0;
            for d in deleted {
                n += d?;
            }
            self.unindex(ids).await?;
            Ok(n)
        })
    }

    fn list<'a>(&'a self, cursor: Option<&'a str>, limit: usize) -> StoreFuture<'a, Page> {
        Box::pin(async move {
            // The index, not a SCAN of the keyspace: one key, so one page
            // covers every shard of a Redis Cluster.
            let (next, ids) = self.index_page(cursor, limit).await?;
            let records = self.get_many(&ids).await?;
            let items = ids
                .into_iter()
                .zip(records)
                .filter_map(|(id, rec)| rec.map(|r| (id, r)))
                .collect();
            Ok(Page {
                items,
                next: (next != "0").then_some(next),
            })
        })
    }

    fn count(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.reconcile().await?;
            self.index("session_count", "ZCARD", Vec::new()).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> SessionRecord {
        SessionRecord {
            upstream_session: format!("u{n}"),
            route: "r".into(),
            target: "http://t".into(),
            client: "c".into(),
            created_ms: n,
        }
    }

    #[tokio::test]
    async fn memory_store_ttl_batch_and_pagination() {
        let s = MemorySessionStore::new(100);
        for n in 0..5 {
            s.put(&format!("p{n}"), &rec(n), Duration::from_secs(60))
                .await
                .expect("put");
        }
        s.put("short", &rec(9), Duration::from_millis(1))
            .await
            .expect("put");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(s.get("short", None).await.expect("get"), None, "expired");
        assert!(!s
            .touch("short", Duration::from_secs(1))
            .await
            .expect("touch"));
        let many = s
            .get_many(&["p1".into(), "nope".into()])
            .await
            .expect("mget");
        assert_eq!(many, vec![Some(rec(1)), None]);
        let first = s.list(None, 2).await.expect("page");
        assert_eq!(first.items.len(), 2);
        let cursor = first.next.expect("more");
        let second = s.list(Some(&cursor), 10).await.expect("page");
        assert_eq!(second.items.len(), 3);
        assert!(second.next.is_none());
        assert_eq!(
            s.delete_many(&["p0".into(), "p1".into(), "x".into()])
                .await
                .expect("del"),
            2
        );
        assert!(s.delete("p2").await.expect("del"));
        assert!(!s.delete("p2").await.expect("del"));
        assert_eq!(s.count().await.expect("count"), 2, "p3, p4; short expired");
    }

    #[tokio::test]
    async fn memory_store_is_bounded() {
        let s = MemorySessionStore::new(2);
        s.put("a", &rec(1), Duration::from_secs(60))
            .await
            .expect("put");
        s.put("b", &rec(2), Duration::from_secs(60))
            .await
            .expect("put");
        assert!(s.put("c", &rec(3), Duration::from_secs(60)).await.is_err());
        s.put("a", &rec(4), Duration::from_secs(60))
            .await
            .expect("replace is fine");
    }
}
