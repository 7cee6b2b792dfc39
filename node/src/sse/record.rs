//! Recording a produced stream for replay (`sse.replay = true`). The relay
//! hands every complete upstream event to a [`Recorder`], which numbers it,
//! gives it Rhizome's own client-facing id (the upstream's id is kept beside
//! it, never shown), writes what the client receives, and queues the event
//! for the store. Storing happens off the relay path in an appender task that
//! batches whatever queued up into one append, renews the producer lease, and
//! stops the producer when a newer one fenced it out. Nothing on the relay
//! path waits for Redis: when the queue is full or appends fail, the events
//! are recorded as lost (a later resume that needs them gets a gap signal,
//! never a silent hole) and the live stream keeps flowing.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ids::{EventPos, IdCodec, StreamId};
use super::parser::SseEvent;
use crate::credentials::source::unix_ms;
use crate::state::replay::{Appended, ProducerLease, ReplayStore, Retention, StoredEvent};

/// Events queued for the store, at most.
const QUEUE: usize = 1024;
/// Events in one append, at most.
const BATCH: usize = 256;

/// What the appender stores, in stream order.
#[derive(Debug)]
enum Item {
    Event(StoredEvent),
    Lost(u64, u64),
    /// The upstream ended the stream.
    Finished,
}

/// Numbers, rewrites and queues the events of one produced stream.
#[derive(Debug)]
pub struct Recorder {
    stream: StreamId,
    codec: Arc<IdCodec>,
    epoch: u64,
    next_seq: u64,
    queue: mpsc::Sender<Item>,
    /// Events that could not be queued, not yet reported as lost.
    unqueued: Option<(u64, u64)>,
    /// Cancelled when this producer must stop (fenced out, lease lost).
    stop: CancellationToken,
    /// Upstream ids already stored: a reopened upstream that sends them
    /// again is not recorded twice.
    seen: std::collections::HashSet<String>,
    /// Events up to this seq are stored but not written for the client.
    quiet_until: u64,
}

/// Everything the appender task needs.
#[derive(Debug)]
pub struct Appender {
    /// The store.
    pub store: Arc<dyn ReplayStore>,
    /// The stream.
    pub stream: StreamId,
    /// The producer's lease.
    pub lease: ProducerLease,
    /// This node (the lease names its holder).
    pub node: String,
    /// Its length; renewed every third of it.
    pub lease_ttl: Duration,
    /// Retention of the stream.
    pub retention: Retention,
}

impl Recorder {
    /// Starts recording `stream` after `last_seq` under `appender.lease`; the
    /// appender runs until the recorder is dropped. `stop` is cancelled when
    /// this producer is fenced out or loses its lease.
    pub fn start(
        codec: Arc<IdCodec>,
        last_seq: u64,
        appender: Appender,
        stop: CancellationToken,
    ) -> Recorder {
        let (queue, rx) = mpsc::channel(QUEUE);
        let recorder = Recorder {
            stream: appender.stream.clone(),
            codec,
            epoch: appender.lease.epoch,
            next_seq: last_seq + 1,
            queue,
            unqueued: None,
            stop: stop.clone(),
            seen: std::collections::HashSet::new(),
            quiet_until: 0,
        };
        tokio::spawn(run_appender(appender, rx, stop));
        recorder
    }

    /// Stores, but does not write for this client, events up to `seq`: it
    /// already received them live from the producer that died before
    /// storing them.
    pub fn quiet_until(mut self, seq: u64) -> Self {
        self.quiet_until = seq;
        self
    }

    /// Skips events whose upstream id is one of `ids` (a takeover's reopened
    /// upstream may send again what the dead producer stored).
    pub fn skip_upstream_ids(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.seen.extend(ids);
        self
    }

    /// True once this producer must stop producing.
    pub fn stopped(&self) -> &CancellationToken {
        &self.stop
    }

    /// Records `event` and writes what the client receives into `out`:
    /// `id: <Rhizome id>`, then its fields without upstream `id` lines. A
    /// block without data (comments, `retry`) is passed on without an id and
    /// not stored.
    pub fn record(&mut self, event: &SseEvent, out: &mut BytesMut) {
        if event.id.as_ref().is_some_and(|id| self.seen.contains(id)) {
            return;
        }
        let fields = fields_without_id(&event.raw);
        if event.data.is_none() {
            if !fields.is_empty() {
                out.extend_from_slice(&fields);
                out.extend_from_slice(b"\n\n");
            }
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let pos = EventPos {
            stream: self.stream.clone(),
            epoch: self.epoch,
            seq,
        };
        if seq > self.quiet_until {
            write_event(out, &self.codec.encode(&pos), &fields);
        }
        let stored = StoredEvent {
            seq,
            epoch: self.epoch,
            upstream_id: event.id.clone(),
            fields,
            at_ms: unix_ms(),
        };
        self.enqueue(stored);
    }

    fn enqueue(&mut self, stored: StoredEvent) {
        if let Some((from, to)) = self.unqueued {
            if self.queue.try_send(Item::Lost(from, to)).is_ok() {
                self.unqueued = None;
            }
        }
        let seq = stored.seq;
        if self.unqueued.is_some() || self.queue.try_send(Item::Event(stored)).is_err() {
            // The store is behind: the client still gets the event live.
            let from = self.unqueued.map_or(seq, |(from, _)| from);
            self.unqueued = Some((from, seq));
        }
    }
}

impl Recorder {
    /// The upstream ended the stream: once everything queued is stored, the
    /// stream is marked finished (readers end; nobody takes it over).
    pub async fn finish(mut self) {
        if let Some((from, to)) = self.unqueued.take() {
            let _ = self.queue.send(Item::Lost(from, to)).await;
        }
        let _ = self.queue.send(Item::Finished).await;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some((from, to)) = self.unqueued.take() {
            let _ = self.queue.try_send(Item::Lost(from, to));
        }
    }
}

/// Writes one event as the client receives it.
pub fn write_event(out: &mut BytesMut, id: &str, fields: &[u8]) {
    out.reserve(id.len() + fields.len() + 8);
    out.put_slice(b"id: ");
    out.put_slice(id.as_bytes());
    out.put_u8(b'\n');
    if !fields.is_empty() {
        out.put_slice(fields);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

/// The lines of an event block except `id` fields and the blank line that
/// ends it, joined with `\n` (CR, LF and CRLF endings all accepted).
pub fn fields_without_id(raw: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(raw.len());
    let mut rest = raw;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        let line = &rest[..end];
        let mut next = end;
        if next < rest.len() {
            next += if rest[next] == b'\r' && rest.get(next + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
        }
        rest = &rest[next..];
        let is_id = line == b"id" || line.starts_with(b"id:");
        if line.is_empty() || is_id {
            continue;
        }
        if !out.is_empty() {
            out.put_u8(b'\n');
        }
        out.put_slice(line);
    }
    out.freeze()
}

async fn run_appender(mut a: Appender, mut rx: mpsc::Receiver<Item>, stop: CancellationToken) {
    let mut renew = tokio::time::interval(a.lease_ttl / 3);
    renew.tick().await;
    let mut lost: Option<(u64, u64)> = None;
    let mut finished = false;
    loop {
        tokio::select! {
            _ = renew.tick() => {
                match keep_lease(&mut a).await {
                    Lease::Kept => {}
                    Lease::Superseded => {
                        tracing::warn!(stream = %a.stream, why = "lease held by another node", "producer superseded; stopping");
                        stop.cancel();
                        break;
                    }
                    Lease::StreamGone => {
                        tracing::info!(stream = %a.stream, "replay buffer gone (expired or evicted); relaying on unrecorded");
                        break;
                    }
                }
            }
            item = rx.recv() => {
                let Some(item) = item else { break };
                let mut batch = Vec::new();
                finished |= absorb(item, &mut batch, &mut lost);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(item) => finished |= absorb(item, &mut batch, &mut lost),
                        Err(_) => break,
                    }
                }
                match store_batch(&a, &mut batch, &mut lost).await {
                    Ok(()) => {}
                    Err(Appended::Gone) => {
                        tracing::info!(stream = %a.stream, "replay buffer gone (expired or evicted); relaying on unrecorded");
                        break;
                    }
                    Err(_) => {
                        stop.cancel();
                        break;
                    }
                }
            }
        }
    }
    if let Some((from, to)) = lost {
        let _ = a
            .store
            .mark_lost(a.stream.as_str(), &a.lease, from, to)
            .await;
    }
    let _ = a.store.release(a.stream.as_str(), &a.lease, finished).await;
}

/// What renewing the producer lease found.
enum Lease {
    /// Still held (or shared state unreachable: keep going).
    Kept,
    /// Another producer holds or held the stream: stop producing.
    Superseded,
    /// The stream's buffer expired or was evicted: stop recording only.
    StreamGone,
}

/// Renews the producer lease. One that lapsed while shared state was
/// unreachable is taken again if nobody else produced meanwhile (the live
/// stream goes on).
async fn keep_lease(a: &mut Appender) -> Lease {
    let stream = a.stream.as_str();
    match a.store.renew(stream, &a.lease, a.lease_ttl).await {
        Ok(true) | Err(_) => Lease::Kept,
        Ok(false) => match a.store.state(stream).await {
            Ok(Some(s)) if s.epoch == a.lease.epoch && !s.finished => {
                if retake(a).await {
                    Lease::Kept
                } else {
                    Lease::Superseded
                }
            }
            Ok(None) => Lease::StreamGone,
            Err(_) => Lease::Kept,
            Ok(Some(_)) => Lease::Superseded,
        },
    }
}

/// Takes the lease again after it lapsed; false when somebody else has it.
async fn retake(a: &mut Appender) -> bool {
    match a
        .store
        .acquire(a.stream.as_str(), &a.node, a.lease_ttl)
        .await
    {
        Ok(Some(lease)) => {
            tracing::info!(stream = %a.stream, epoch = lease.epoch, "producer lease lapsed during an outage; taken again");
            a.lease = lease;
            true
        }
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Adds `item` to what the next store call carries; true for `Finished`.
fn absorb(item: Item, batch: &mut Vec<StoredEvent>, lost: &mut Option<(u64, u64)>) -> bool {
    match item {
        Item::Event(e) => batch.push(e),
        Item::Lost(from, to) => extend(lost, from, to),
        Item::Finished => return true,
    }
    false
}

fn extend(lost: &mut Option<(u64, u64)>, from: u64, to: u64) {
    *lost = Some(match *lost {
        Some((a, b)) => (a.min(from), b.max(to)),
        None => (from, to),
    });
}

/// Stores `batch` after reporting what was lost before it; a failure turns
/// the batch into lost events. `Err(Fenced)` when this producer was fenced
/// out, `Err(Gone)` when the stream's buffer is gone.
async fn store_batch(
    a: &Appender,
    batch: &mut Vec<StoredEvent>,
    lost: &mut Option<(u64, u64)>,
) -> Result<(), Appended> {
    let stream = a.stream.as_str();
    if let Some((from, to)) = *lost {
        match a.store.mark_lost(stream, &a.lease, from, to).await {
            Ok(Appended::Stored(_)) => *lost = None,
            Ok(refused) => return Err(refused),
            Err(_) => {}
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    let (first, last) = (batch[0].seq, batch[batch.len() - 1].seq);
    if lost.is_some() {
        // Still cannot report the earlier loss: these are lost as well.
        extend(lost, first, last);
        batch.clear();
        return Ok(());
    }
    match a.store.append(stream, &a.lease, batch, a.retention).await {
        Ok(Appended::Stored(_)) => {}
        Ok(Appended::Gone) => return Err(Appended::Gone),
        Ok(Appended::Fenced) => {
            tracing::warn!(stream = %a.stream, epoch = a.lease.epoch, why = "fenced out by a newer epoch", "producer superseded; stopping");
            return Err(Appended::Fenced);
        }
        Err(e) => {
            tracing::debug!(stream = %a.stream, error = %e, "append failed; events marked lost");
            extend(lost, first, last);
        }
    }
    batch.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lines_and_the_blank_line_are_dropped_whatever_the_line_endings() {
        for raw in [
            &b"id: 7\nevent: tick\ndata: a\ndata: b\n\n"[..],
            b"event: tick\r\nid:7\r\ndata: a\r\ndata: b\r\n\r\n",
            b"event: tick\rdata: a\rid\rdata: b\r\r",
        ] {
            assert_eq!(
                &fields_without_id(raw)[..],
                b"event: tick\ndata: a\ndata: b",
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(&fields_without_id(b"identity: x\n\n")[..], b"identity: x");
    }

    #[test]
    fn an_event_is_written_with_its_rhizome_id() {
        let mut out = BytesMut::new();
        write_event(&mut out, "v1.x", b"data: a");
        assert_eq!(&out[..], b"id: v1.x\ndata: a\n\n");
    }
}
