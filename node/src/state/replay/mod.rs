//! Where SSE replay buffers live: one [`ReplayStore`] trait with an in-memory
//! implementation (the embedded default, one node) and a Redis one (a
//! cluster). The replay engine in `crate::sse` holds an `Arc<dyn
//! ReplayStore>` and never knows which it has, so the merge, gap and takeover
//! logic exists once.
//!
//! A stream is a log of events numbered by `seq` (1, 2, … with no holes in
//! what the producer appended) plus a meta record: who may resume it, the
//! request that reopens it upstream, the last sequence number and upstream
//! event id, ranges of events that were produced but could not be stored
//! (`lost`), and the producer's lease. The producer appends under a fenced
//! lease: its epoch is taken with the lease, and an append carrying an older
//! epoch than the stream's is refused, so a paused-then-resumed old producer
//! can never add to a stream another node took over.
//!
//! Retention: at most about `buffer_events` events are kept, none older than
//! `buffer_ttl`, and a stream nobody appends to for `buffer_ttl` disappears
//! (every append pushes the expiry of all its keys).

pub mod memory;
pub mod redis;

use std::fmt::Debug;
use std::time::Duration;

use bytes::Bytes;
use rhizome_proto::records::StreamMeta;
use tokio::sync::broadcast;

pub use super::redis::StateError;
pub use super::sessions::StoreFuture;
pub use memory::MemoryReplayStore;
pub use redis::RedisReplayStore;

/// Lost ranges kept per stream, the newest; a resume needing an older one is
/// beyond retention anyway.
pub const MAX_LOST_RANGES: usize = 64;

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the stream, from 1.
    pub seq: u64,
    /// Producer epoch that appended it.
    pub epoch: u64,
    /// The upstream's own event id, if it sent one.
    pub upstream_id: Option<String>,
    /// The event's fields as upstream sent them, without `id` lines and
    /// without the blank line that ends it (the relay adds Rhizome's own id).
    pub fields: Bytes,
    /// When it was appended, Unix milliseconds, stamped by the producer:
    /// age trimming compares it with the store's clock (Redis's own `TIME`;
    /// in memory, Unix time advancing with tokio's clock).
    pub at_ms: u64,
}

/// What the store knows of a stream besides its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// The stream's identity and reopen request.
    pub meta: StreamMeta,
    /// Highest sequence number produced (stored or lost); 0 before the first.
    pub last_seq: u64,
    /// Lowest sequence number still stored, if any.
    pub oldest_seq: Option<u64>,
    /// The upstream id of the last event that carried one.
    pub last_upstream_id: Option<String>,
    /// Sequence ranges (inclusive) produced but not stored.
    pub lost: Vec<(u64, u64)>,
    /// The current producer epoch (0 before the first lease).
    pub epoch: u64,
    /// Node holding the producer lease, while it is held.
    pub producer: Option<String>,
    /// The upstream ended the stream: nothing more will be produced, and a
    /// lapsed lease is not a dead producer to take over from.
    pub finished: bool,
}

/// A held producer lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerLease {
    /// The producer's epoch: greater than every earlier producer's.
    pub epoch: u64,
    /// Secret owner token (releases and renewals check it).
    pub owner: String,
}

/// How an append went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored; the stream's last sequence number is now this.
    Stored(u64),
    /// Refused: a newer producer epoch owns the stream (this producer must stop).
    Fenced,
    /// Refused: the stream is gone (expired or never created).
    Gone,
}

/// Retention of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// About this many events are kept (`buffer_events`; trimming may keep
    /// a few more).
    pub max_events: u64,
    /// Events older than this are trimmed, and a stream without appends for
    /// this long expires whole (`buffer_ttl`).
    pub ttl: Duration,
}

/// A page of active streams for the admin API (never event data).
#[derive(Debug, Default)]
pub struct StreamPage {
    /// Stream ids and their state.
    pub items: Vec<(String, StreamState)>,
    /// Cursor of the next page; `None` at the end.
    pub next: Option<String>,
}

/// Where replay buffers live.
pub trait ReplayStore: Send + Sync + Debug {
    /// The cluster's key for client-facing event ids: 32 bytes, the same on
    /// every node sharing this store (created on first use).
    fn id_key(&self) -> StoreFuture<'_, [u8; 32]>;
    /// Creates stream `stream` with `meta`; false if it already exists.
    fn create<'a>(
        &'a self,
        stream: &'a str,
        meta: &'a StreamMeta,
        retention: Retention,
    ) -> StoreFuture<'a, bool>;
    /// The stream's state, if it exists.
    fn state<'a>(&'a self, stream: &'a str) -> StoreFuture<'a, Option<StreamState>>;
    /// Takes the producer lease for `ttl` as `node`, with the next epoch;
    /// `None` while another producer holds it (or the stream is gone).
    fn acquire<'a>(
        &'a self,
        stream: &'a str,
        node: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<ProducerLease>>;
    /// Extends a held lease by `ttl`; false when it was lost (stop producing).
    fn renew<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;
    /// Gives up a held lease (best effort; it also expires); with
    /// `finished`, the upstream ended the stream.
    fn release<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        finished: bool,
    ) -> StoreFuture<'a, ()>;
    /// Appends `events` (consecutive, continuing the stream's `last_seq`)
    /// under `lease`, trims by `retention`, pushes the expiry, and wakes
    /// readers. One round trip however many events. Events at or below
    /// `last_seq` are skipped, so retrying a batch whose first attempt acted
    /// but reported a failure stores nothing twice; a batch that is not
    /// consecutive or leaves a hole after `last_seq` is a
    /// [`StateError::Protocol`]. An epoch older than the stream's is
    /// `Fenced`; a newer one (the stream was recreated) is `Gone`.
    fn append<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        events: &'a [StoredEvent],
        retention: Retention,
    ) -> StoreFuture<'a, Appended>;
    /// Records that events `from..=to` were produced but not stored (shared
    /// state failed meanwhile), so a resume that needs them gets a gap; the
    /// stream's `last_seq` becomes `to`. Like `append`, the part at or below
    /// `last_seq` is skipped (it was stored after all), and a hole after
    /// `last_seq` or `to < from` is a [`StateError::Protocol`]. At most
    /// [`MAX_LOST_RANGES`] ranges are kept (adjacent ones merge).
    fn mark_lost<'a>(
        &'a self,
        stream: &'a str,
        lease: &'a ProducerLease,
        from: u64,
        to: u64,
    ) -> StoreFuture<'a, Appended>;
    /// At most `limit` stored events with `seq > after`, in order.
    fn read_after<'a>(
        &'a self,
        stream: &'a str,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredEvent>>;
    /// Wake-up hints: the id of each stream something was appended to.
    /// Hints may be lost (pub/sub is at most once): readers also poll.
    fn wakeups(&self) -> broadcast::Receiver<String>;
    /// A page of about `limit` streams with a live producer, for the admin
    /// API. A stream may appear on two pages (its lease moved meanwhile);
    /// one live for the whole listing is never skipped.
    fn list<'a>(&'a self, cursor: Option<&'a str>, limit: usize) -> StoreFuture<'a, StreamPage>;
}

/// Checks that `events` is non-empty and consecutive (both stores refuse
/// anything else before touching state).
pub(crate) fn check_batch(events: &[StoredEvent]) -> Result<(), StateError> {
    let Some(first) = events.first() else {
        return Err(StateError::Protocol("append: no events".into()));
    };
    if first.seq == 0 {
        return Err(StateError::Protocol("append: seq starts at 1".into()));
    }
    for (i, pair) in events.windows(2).enumerate() {
        if pair[1].seq != pair[0].seq.saturating_add(1) {
            return Err(StateError::Protocol(format!(
                "append: event {} has seq {} after {}",
                i + 1,
                pair[1].seq,
                pair[0].seq
            )));
        }
    }
    Ok(())
}

/// The error of a batch or lost range that does not continue `last_seq`.
pub(crate) fn hole(what: &str, first: u64, last_seq: u64) -> StateError {
    StateError::Protocol(format!(
        "{what}: seq {first} does not continue the stream's last seq {last_seq}"
    ))
}

/// Adds `from..=to` to `lost`, merging with the newest range when adjacent
/// and keeping the newest [`MAX_LOST_RANGES`].
pub(crate) fn add_lost(lost: &mut Vec<(u64, u64)>, from: u64, to: u64) {
    match lost.last_mut() {
        Some(last) if last.1.saturating_add(1) == from => last.1 = to,
        _ => lost.push((from, to)),
    }
    if lost.len() > MAX_LOST_RANGES {
        lost.drain(..lost.len() - MAX_LOST_RANGES);
    }
}
