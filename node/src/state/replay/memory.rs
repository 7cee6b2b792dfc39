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
    /// Each event with the instant it was appended (age trimming).
    events: VecDeque<(StoredEvent, Instant)>,
    last_seq: u64,
    last_upstream_id: Option<String>,
    lost: Vec<(u64, u64)>,
    epoch: u64,
    lease: Option<Held>,
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
            oldest_seq: self.events.front().map(|(e, _)| e.seq),
            last_upstream_id: self.last_upstream_id.clone(),
            lost: self.lost.clone(),
            epoch: self.epoch,
            producer: self.producer(now).map(|h| h.node.clone()),
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

    fn trim(&mut self, retention: Retention, now: Instant) {
        let max = usize::try_from(retention.max_events).unwrap_or(usize::MAX);
        while self.events.len() > max {
            self.events.pop_front();
        }
        while self
            .events
            .front()
            .is_some_and(|(_, at)| *at + retention.ttl <= now)
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
    streams: Mutex<BTreeMap<String, Stream>>,
    wakes: broadcast::Sender<String>,
}

impl MemoryReplayStore {
    /// A store holding at most `max_streams` streams, with a fresh random id key.
    pub fn new(max_streams: usize) -> Self {
        MemoryReplayStore {
            max_streams: max_streams.max(1),
            id_key: rand::random(),
            streams: Mutex::new(BTreeMap::new()),
            wakes: broadcast::channel(WAKE_CAPACITY).0,
        }
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

    fn release<'a>(&'a self, stream: &'a str, lease: &'a ProducerLease) -> StoreFuture<'a, ()> {
        self.with_live(stream, |s, _| {
            if s.lease.as_ref().is_some_and(|h| h.owner == lease.owner) {
                s.lease = None;
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
                s.events.push_back((event.clone(), now));
            }
            s.trim(retention, now);
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
            let start = s.events.partition_point(|(e, _)| e.seq <= after);
            s.events
                .range(start..)
                .take(limit)
                .map(|(e, _)| e.clone())
                .collect()
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
