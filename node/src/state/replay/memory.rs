//! Replay buffers in this process: the embedded default, for one node. The
//! same rules as in Redis — fenced producer epochs, retention by count and
//! age, idle expiry — on tokio's clock, so tests can pause time. Bounded: at
//! most `max_streams` streams (the one idle longest is evicted for a new
//! one) and `max_events` events each.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use parking_lot::Mutex;
use rhizome_proto::records::StreamMeta;
use tokio::sync::broadcast;
use tokio::time::{Duration, Instant};

use super::{
    add_lost, check_batch, hole, Appended, ProducerLease, ReplayStore, Retention, StoreFuture,
    StoredEvent, StreamPage, StreamState,
};

/// Wake-up hints buffered per receiver.
const WAKE_CAPACITY: usize = 1024;

/// A held producer lease.
#[derive(Debug)]
struct Held {
    owner: String,
    node: String,
    until: Instant,
}

#[derive(Debug)]
struct Stream {
    meta: StreamMeta,
    events: VecDeque<StoredEvent>,
    last_seq: u64,
    last_upstream_id: Option<String>,
    lost: Vec<(u64, u64)>,
    epoch: u64,
    lease: Option<Held>,
    /// The upstream ended it.
    finished: bool,
    /// The stream disappears at this instant unless appended to.
    expires: Instant,
    /// Last create or append (eviction picks the smallest).
    touched: Instant,
}

impl Stream {
    fn producer(&self, now: Instant) -> Option<&Held> {
        self.lease.as_ref().filter(|h| h.until > now)
    }

    fn state(&self, now: Instant) -> StreamState {
        StreamState {
            meta: self.meta.clone(),
            last_seq: self.last_seq,
            oldest_seq: self.events.front().map(|e| e.seq),
            last_upstream_id: self.last_upstream_id.clone(),
            lost: self.lost.clone(),
            epoch: self.epoch,
            producer: self.producer(now).map(|h| h.node.clone()),
            finished: self.finished,
        }
    }

    /// `Fenced` or `Gone` when `epoch` is not the stream's.
    fn fence(&self, epoch: u64) -> Option<Appended> {
        match epoch.cmp(&self.epoch) {
            std::cmp::Ordering::Less => Some(Appended::Fenced),
            std::cmp::Ordering::Greater => Some(Appended::Gone),
            std::cmp::Ordering::Equal => None,
        }
    }

    /// Trims to `max_events`, and drops events whose `at_ms` is more than
    /// `ttl` before `now_ms`.
    fn trim(&mut self, retention: Retention, now_ms: u64) {
        let max = usize::try_from(retention.max_events).unwrap_or(usize::MAX);
        while self.events.len() > max {
            self.events.pop_front();
        }
        let ttl = u64::try_from(retention.ttl.as_millis()).unwrap_or(u64::MAX);
        while self
            .events
            .front()
            .is_some_and(|e| e.at_ms.saturating_add(ttl) < now_ms)
        {
            self.events.pop_front();
        }
    }
}

/// Replay buffers in memory.
#[derive(Debug)]
pub struct MemoryReplayStore {
    max_streams: usize,
    id_key: [u8; 32],
    /// Unix ms at `started`: the store's clock (age trimming) is Unix time
    /// advancing with tokio's clock, so tests can pause it.
    unix_at_start: u64,
    started: Instant,
    streams: Mutex<BTreeMap<String, Stream>>,
    wakes: broadcast::Sender<String>,
}

impl MemoryReplayStore {
    /// A store holding at most `max_streams` streams, with a fresh random id key.
    pub fn new(max_streams: usize) -> Self {
        MemoryReplayStore {
            max_streams: max_streams.max(1),
            id_key: rand::random(),
            unix_at_start: crate::credentials::source::unix_ms(),
            started: Instant::now(),
            streams: Mutex::new(BTreeMap::new()),
            wakes: broadcast::channel(WAKE_CAPACITY).0,
        }
    }

    /// The store's clock, Unix ms: what `at_ms` is compared with.
    pub fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.unix_at_start.saturating_add(elapsed)
    }

    /// Runs `f` on the live stream `stream` (an expired one is dropped first).
    fn with_live<T>(&self, stream: &str, f: impl FnOnce(&mut Stream, Instant) -> T) -> Option<T> {
        let now = Instant::now();
        let mut streams = self.streams.lock();
        if streams.get(stream).is_some_and(|s| s.expires <= now) {
            streams.remove(stream);
        }
        streams.get_mut(stream).map(|s| f(s, now))
    }

    /// Makes room for one more stream: drops expired ones, then the one idle longest.
    fn make_room(&self, streams: &mut BTreeMap<String, Stream>, now: Instant) {
        if streams.len() < self.max_streams {
            return;
        }
        streams.retain(|_, s| s.expires > now);
        if streams.len() >= self.max_streams {
            let idlest = streams
                .iter()
                .min_by_key(|(_, s)| s.touched)
                .map(|(id, _)| id.clone());
            if let Some(id) = idlest {
                tracing::debug!(stream = %id, "replay store full; evicting the stream idle longest");
                streams.remove(&id);
            }
        }
    }
}

fn ready<'a, T: Send + 'a>(v: Result<T, super::StateError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

impl ReplayStore for MemoryReplayStore {
    fn id_key(&self) -> StoreFuture<'_, [u8; 32]> {
        ready(Ok(self.id_key))
    }

    fn create<'a>(
        &'a self,
        stream: &'a str,
        meta: &'a StreamMeta,
        retention: Retention,
    ) -> StoreFuture<'a, bool> {
        let now = Instant::now();
        let mut streams = self.streams.lock();
        if streams.get(stream).is_some_and(|s| s.expires > now) {
            return ready(Ok(false));
        }
        streams.remove(stream);
        self.make_room(&mut streams, now);
        streams.insert(
            stream.to_string(),
            Stream {
                meta: meta.clone(),
                events: VecDeque::new(),
                last_seq: 0,
                last_upstream_id: None,
                lost: Vec::new(),
                epoch: 0,
                lease: None,
                finished: false,
                expires: now + retention.ttl,
                touched: now,
            },
        );
        ready(Ok(true))
    }

    fn state<'a>(&'a self, stream: &'a str) -> StoreFuture<'a, Option<StreamState>> {
        ready(Ok(self.with_live(stream, |s, now| s.state(now))))
    }

    fn acquire<'a>(
        &'a self,
        stream: &'a str,
        node: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<ProducerLease>> {
        let taken = self.with_live(stream, |s, now| {
            if s.producer(now).is_some() {
                return None;
            }
            s.epoch += 1;
            let owner = hex::encode(rand::random::<[u8; 16]>());
            s.lease = Some(Held {
                owner: owner.clone(),
                node: node.to_string(),
                until: now + ttl,
            });
            Some(ProducerLease {
                epoch: s.epoch,
                owner,
            })
        });
        ready(Ok(taken.flatten()))
    }

    fn renew<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        let renewed = self.with_live(stream, |s, now| match &mut s.lease {
            Some(held) if held.owner == lease.owner && held.until > now => {
                held.until = now + ttl;
                true
            }
            _ => false,
        });
        ready(Ok(renewed.unwrap_or(false)))
    }

    fn release<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        finished: bool,
    ) -> StoreFuture<'a, ()> {
        self.with_live(stream, |s, _| {
            if s.lease.as_ref().is_some_and(|h| h.owner == lease.owner) {
                s.lease = None;
                s.finished |= finished;
            }
        });
        ready(Ok(()))
    }

    fn append<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        events: &'a [StoredEvent],
        retention: Retention,
    ) -> StoreFuture<'a, Appended> {
        if let Err(e) = check_batch(events) {
            return ready(Err(e));
        }
        let appended = self.with_live(stream, |s, now| {
            if let Some(refused) = s.fence(lease.epoch) {
                return Ok(refused);
            }
            let fresh: Vec<&StoredEvent> = events.iter().filter(|e| e.seq > s.last_seq).collect();
            let Some(first) = fresh.first() else {
                return Ok(Appended::Stored(s.last_seq));
            };
            if first.seq != s.last_seq + 1 {
                return Err(hole("append", first.seq, s.last_seq));
            }
            for event in fresh {
                if event.upstream_id.is_some() {
                    s.last_upstream_id.clone_from(&event.upstream_id);
                }
                s.last_seq = event.seq;
                s.events.push_back(event.clone());
            }
            s.trim(retention, self.now_ms());
            s.expires = now + retention.ttl;
            s.touched = now;
            Ok(Appended::Stored(s.last_seq))
        });
        let appended = appended.unwrap_or(Ok(Appended::Gone));
        if matches!(appended, Ok(Appended::Stored(_))) {
            // Nobody listening is fine.
            let _ = self.wakes.send(stream.to_string());
        }
        ready(appended)
    }

    fn mark_lost<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        from: u64,
        to: u64,
    ) -> StoreFuture<'a, Appended> {
        if to < from || from == 0 {
            return ready(Err(super::StateError::Protocol(format!(
                "mark_lost: bad range {from}..={to}"
            ))));
        }
        let marked = self.with_live(stream, |s, _| {
            if let Some(refused) = s.fence(lease.epoch) {
                return Ok(refused);
            }
            if to <= s.last_seq {
                return Ok(Appended::Stored(s.last_seq));
            }
            if from > s.last_seq + 1 {
                return Err(hole("mark_lost", from, s.last_seq));
            }
            add_lost(&mut s.lost, from.max(s.last_seq + 1), to);
            s.last_seq = to;
            Ok(Appended::Stored(to))
        });
        let marked = marked.unwrap_or(Ok(Appended::Gone));
        if matches!(marked, Ok(Appended::Stored(_))) {
            // Readers tailing learn of the gap at once.
            let _ = self.wakes.send(stream.to_string());
        }
        ready(marked)
    }

    fn read_after<'a>(
        &'a self,
        stream: &'a str,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredEvent>> {
        let events = self.with_live(stream, |s, _| {
            // Seqs grow (with holes where events were lost): binary search.
            let start = s.events.partition_point(|e| e.seq <= after);
            s.events.range(start..).take(limit).cloned().collect()
        });
        ready(Ok(events.unwrap_or_default()))
    }

    fn wakeups(&self) -> broadcast::Receiver<String> {
        self.wakes.subscribe()
    }

    fn list<'a>(&'a self, cursor: Option<&'a str>, limit: usize) -> StoreFuture<'a, StreamPage> {
        let now = Instant::now();
        let streams = self.streams.lock();
        let start = cursor.map_or(Bound::Unbounded, |c| Bound::Excluded(c.to_string()));
        let mut page = StreamPage::default();
        for (id, s) in streams.range((start, Bound::Unbounded)) {
            if s.expires <= now || s.producer(now).is_none() {
                continue;
            }
            if page.items.len() == limit {
                page.next = page.items.last().map(|(id, _)| id.clone());
                break;
            }
            page.items.push((id.clone(), s.state(now)));
        }
        ready(Ok(page))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rhizome_proto::records::ReopenRequest;

    use super::*;
    use crate::state::redis::StateError;

    const TTL: Duration = Duration::from_secs(10);

    fn meta() -> StreamMeta {
        StreamMeta {
            client: "c".into(),
            route: "r".into(),
            session: None,
            reopen: ReopenRequest {
                method: "GET".into(),
                path: "/events".into(),
                headers: Vec::new(),
                body: Vec::new(),
            },
            created_ms: 1,
        }
    }

    fn retention(max_events: u64) -> Retention {
        Retention {
            max_events,
            ttl: TTL,
        }
    }

    fn event(seq: u64, epoch: u64, at_ms: u64) -> StoredEvent {
        StoredEvent {
            seq,
            epoch,
            upstream_id: Some(format!("u{seq}")),
            fields: Bytes::from(format!("data: {seq}")),
            at_ms,
        }
    }

    /// Events `seqs`, stamped now on the store's clock.
    fn batch(
        store: &MemoryReplayStore,
        seqs: std::ops::RangeInclusive<u64>,
        epoch: u64,
    ) -> Vec<StoredEvent> {
        seqs.map(|s| event(s, epoch, store.now_ms())).collect()
    }

    async fn stream(store: &MemoryReplayStore, id: &str) {
        assert!(store
            .create(id, &meta(), retention(100))
            .await
            .expect("create"));
    }

    fn seqs(events: &[StoredEvent]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_is_taken_with_a_higher_epoch_and_fences_the_old_producer() {
        let store = MemoryReplayStore::new(10);
        stream(&store, "s").await;
        let a = store
            .acquire("s", "a", Duration::from_secs(1))
            .await
            .expect("acquire")
            .expect("free");
        assert!(store
            .acquire("s", "b", Duration::from_secs(1))
            .await
            .expect("acquire")
            .is_none());
        let appended = store
            .append("s", &a, &batch(&store, 1..=2, a.epoch), retention(100))
            .await;
        assert_eq!(appended.expect("append"), Appended::Stored(2));

        tokio::time::advance(Duration::from_millis(1_100)).await;
        let b = store
            .acquire("s", "b", Duration::from_secs(1))
            .await
            .expect("acquire")
            .expect("expired");
        assert!(b.epoch > a.epoch);
        assert!(
            !store.renew("s", &a, TTL).await.expect("renew"),
            "a lost it"
        );
        let stale = store
            .append("s", &a, &batch(&store, 3..=3, a.epoch), retention(100))
            .await;
        assert_eq!(stale.expect("append"), Appended::Fenced);
        assert_eq!(
            store.mark_lost("s", &a, 3, 4).await.expect("lost"),
            Appended::Fenced
        );
        let state = store.state("s").await.expect("state").expect("live");
        assert_eq!((state.epoch, state.last_seq), (b.epoch, 2));
        assert_eq!(state.producer.as_deref(), Some("b"));
        let fresh = store
            .append("s", &b, &batch(&store, 3..=3, b.epoch), retention(100))
            .await;
        assert_eq!(fresh.expect("append"), Appended::Stored(3));
        store.release("s", &a, false).await.expect("release");
        assert!(
            store.renew("s", &b, TTL).await.expect("renew"),
            "a released nothing of b's"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn events_are_trimmed_by_count_and_age_and_an_idle_stream_expires() {
        let store = MemoryReplayStore::new(10);
        stream(&store, "s").await;
        let p = producer(&store, "s").await;
        store
            .append("s", &p, &batch(&store, 1..=12, p.epoch), retention(5))
            .await
            .expect("append");
        let kept = store.read_after("s", 0, 100).await.expect("read");
        assert_eq!(seqs(&kept), vec![8, 9, 10, 11, 12]);

        tokio::time::advance(Duration::from_secs(6)).await;
        store
            .append("s", &p, &batch(&store, 13..=13, p.epoch), retention(5))
            .await
            .expect("append");
        tokio::time::advance(Duration::from_secs(6)).await;
        store
            .append("s", &p, &batch(&store, 14..=14, p.epoch), retention(5))
            .await
            .expect("append");
        let state = store.state("s").await.expect("state").expect("live");
        assert_eq!(state.oldest_seq, Some(13), "8..=12 are 12 s old");
        assert_eq!(
            seqs(&store.read_after("s", 0, 100).await.expect("read")),
            vec![13, 14]
        );

        tokio::time::advance(TTL).await;
        assert_eq!(store.state("s").await.expect("state"), None);
        assert!(store.read_after("s", 0, 10).await.expect("read").is_empty());
        let gone = store
            .append("s", &p, &batch(&store, 15..=15, p.epoch), retention(5))
            .await;
        assert_eq!(gone.expect("append"), Appended::Gone);
    }

    /// Node "a" takes the lease of `stream`.
    async fn producer(store: &MemoryReplayStore, stream: &str) -> ProducerLease {
        store
            .acquire(stream, "a", TTL)
            .await
            .expect("acquire")
            .expect("free")
    }

    #[tokio::test]
    async fn batches_continue_the_stream_and_a_retried_batch_stores_nothing_twice() {
        let store = MemoryReplayStore::new(10);
        stream(&store, "s").await;
        let p = producer(&store, "s").await;
        store
            .append("s", &p, &batch(&store, 1..=3, p.epoch), retention(100))
            .await
            .expect("append");
        let hole = store
            .append("s", &p, &batch(&store, 5..=6, p.epoch), retention(100))
            .await;
        assert!(matches!(hole, Err(StateError::Protocol(_))), "{hole:?}");
        let mut unordered = batch(&store, 4..=5, p.epoch);
        unordered.swap(0, 1);
        let bad = store.append("s", &p, &unordered, retention(100)).await;
        assert!(matches!(bad, Err(StateError::Protocol(_))), "{bad:?}");
        let retried = store
            .append("s", &p, &batch(&store, 2..=5, p.epoch), retention(100))
            .await;
        assert_eq!(retried.expect("append"), Appended::Stored(5));
        let all = store.read_after("s", 0, 100).await.expect("read");
        assert_eq!(seqs(&all), vec![1, 2, 3, 4, 5]);
        assert_eq!(
            seqs(&store.read_after("s", 3, 1).await.expect("read")),
            vec![4]
        );
    }

    #[tokio::test]
    async fn lost_ranges_merge_when_adjacent_and_are_bounded() {
        let store = MemoryReplayStore::new(10);
        stream(&store, "s").await;
        let p = producer(&store, "s").await;
        store
            .append("s", &p, &batch(&store, 1..=2, p.epoch), retention(100))
            .await
            .expect("append");
        assert_eq!(
            store.mark_lost("s", &p, 3, 4).await.expect("lost"),
            Appended::Stored(4)
        );
        assert_eq!(
            store.mark_lost("s", &p, 5, 6).await.expect("lost"),
            Appended::Stored(6)
        );
        assert!(store.mark_lost("s", &p, 9, 9).await.is_err(), "a hole");
        store
            .append("s", &p, &batch(&store, 7..=7, p.epoch), retention(100))
            .await
            .expect("append");
        let state = store.state("s").await.expect("state").expect("live");
        assert_eq!((state.lost.clone(), state.last_seq), (vec![(3, 6)], 7));
        assert_eq!(
            seqs(&store.read_after("s", 2, 10).await.expect("read")),
            vec![7]
        );
        for n in 0..100 {
            let seq = 9 + 2 * n;
            store
                .append(
                    "s",
                    &p,
                    &batch(&store, seq - 1..=seq - 1, p.epoch),
                    retention(100),
                )
                .await
                .expect("append");
            store.mark_lost("s", &p, seq, seq).await.expect("lost");
        }
        let lost = store.state("s").await.expect("state").expect("live").lost;
        assert_eq!(lost.len(), super::super::MAX_LOST_RANGES);
        assert_eq!(lost.last(), Some(&(207, 207)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_store_evicts_the_stream_idle_longest() {
        let store = MemoryReplayStore::new(2);
        stream(&store, "a").await;
        tokio::time::advance(Duration::from_secs(1)).await;
        stream(&store, "b").await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let p = store
            .acquire("a", "n", TTL)
            .await
            .expect("acquire")
            .expect("free");
        store
            .append("a", &p, &batch(&store, 1..=1, p.epoch), retention(10))
            .await
            .expect("append");
        stream(&store, "c").await;
        assert!(
            store.state("a").await.expect("state").is_some(),
            "appended to last"
        );
        assert!(
            store.state("b").await.expect("state").is_none(),
            "idle longest"
        );
        assert!(
            !store
                .create("a", &meta(), retention(10))
                .await
                .expect("create"),
            "exists"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_listing_shows_streams_with_a_live_producer_page_by_page() {
        let store = MemoryReplayStore::new(10);
        for id in ["s1", "s2", "s3", "idle"] {
            stream(&store, id).await;
        }
        for id in ["s1", "s2", "s3"] {
            store
                .acquire(id, "n", Duration::from_secs(1))
                .await
                .expect("acquire")
                .expect("free");
        }
        let first = store.list(None, 2).await.expect("list");
        let ids: Vec<&str> = first.items.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, vec!["s1", "s2"]);
        let rest = store.list(first.next.as_deref(), 2).await.expect("list");
        assert_eq!(rest.items.len(), 1);
        assert!(rest.next.is_none());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            store.list(None, 10).await.expect("list").items.is_empty(),
            "leases expired"
        );
    }
}
