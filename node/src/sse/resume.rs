//! Resuming a replayed stream on any node: a `GET` to the route with
//! `Last-Event-ID: <Rhizome id>`. The id is checked (a malformed or forged
//! id is 400), the stream must belong to the same client, route and MCP
//! session (otherwise 404, the same answer as for a stream that does not
//! exist, so nothing leaks), then the reader subscribes to wake-ups *before*
//! reading history, so no event appended meanwhile is missed; it sends every
//! stored event after the id in sequence order and goes on tailing the log
//! while a producer holds the stream. History that is no longer complete
//! (trimmed by retention, or lost while shared state failed) is never
//! replayed silently in part: the client gets `event: rhizome-gap` with
//! `{"requested","oldest","reason"}` and the header
//! `rhizome-last-event-id: earliest`, and the stream goes on from its
//! current end.
//!
//! Takeover: when the producer's lease has lapsed and the upstream did not
//! end the stream, the producer died. The reader takes the lease (fenced: of
//! several racing readers exactly one wins, the others go on tailing), reopens
//! the upstream with the recorded request and `Last-Event-ID: <last upstream
//! id>`, and becomes the producer, its client the live client; events whose
//! upstream id is already stored are dropped. An upstream that sent no ids
//! cannot be resumed: the client gets every buffered event, then a gap.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body::Frame;
use rhizome_proto::config::{DisconnectPolicy, SseConfig};
use rhizome_proto::records::StreamMeta;
use rhizome_proto::ErrorCode;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::ids::{EventPos, IdCodec, StreamId};
use super::record::{write_event, Appender, Recorder};
use super::relay::{relay_into, ChannelBody, RelayOptions};
use super::replay::retention;
use crate::error::ProxyError;
use crate::state::replay::{ProducerLease, ReplayStore, StreamState};
use crate::{metrics, BoxBody, BoxError};

/// How often a reader re-reads the log when no wake-up arrives.
const POLL: Duration = Duration::from_millis(250);
/// Events read from the store at once.
const PAGE: usize = 256;
/// Frames in flight to the client.
const CHANNEL_FRAMES: usize = 8;

/// Opens a recorded stream upstream again (the proxy does it: a credential
/// is picked anew and injected).
pub trait Reopen: Send + Sync {
    /// The upstream's SSE body for `meta`'s request, sent with
    /// `Last-Event-ID: last_upstream_id`.
    fn reopen<'a>(
        &'a self,
        meta: &'a StreamMeta,
        last_upstream_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<BoxBody, ProxyError>> + Send + 'a>>;
}

/// Who asks to resume, and where.
#[derive(Clone)]
pub struct Resumer {
    /// The authenticated client's name.
    pub client: String,
    /// The route's name.
    pub route: String,
    /// The MCP proxy session of the request, if any.
    pub session: Option<String>,
    /// Heartbeat comment after this long without bytes.
    pub heartbeat: Duration,
    /// The stream ends after this long without new events.
    pub idle_timeout: Duration,
    /// This node (a takeover's lease names it).
    pub node: String,
    /// The route's SSE settings (lease, retention, relay limits).
    pub sse: SseConfig,
    /// Request id, for logs.
    pub request_id: String,
    /// Reopens the upstream on a takeover.
    pub reopen: Arc<dyn Reopen>,
}

impl std::fmt::Debug for Resumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumer")
            .field("client", &self.client)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

/// Why history cannot be replayed whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GapReason {
    /// Trimmed by retention (`buffer_events`, `buffer_ttl`).
    Expired,
    /// Produced while shared state failed, never stored.
    Lost,
}

impl GapReason {
    fn as_str(self) -> &'static str {
        match self {
            GapReason::Expired => "expired",
            GapReason::Lost => "lost",
        }
    }
}

/// Answers a resume request for `last_event_id`.
pub async fn resume(
    store: Arc<dyn ReplayStore>,
    codec: Arc<IdCodec>,
    last_event_id: &str,
    who: Resumer,
    shutdown: CancellationToken,
) -> Result<Response<BoxBody>, ProxyError> {
    let pos = codec
        .decode(last_event_id)
        .map_err(|_| ProxyError::new(ErrorCode::BadRequest, "invalid Last-Event-ID"))?;
    let unknown = || ProxyError::new(ErrorCode::NotFound, "unknown stream for this client");
    let stream = pos.stream.as_str();
    let state = store.state(stream).await?.ok_or_else(unknown)?;
    let meta = &state.meta;
    if meta.client != who.client || meta.route != who.route || meta.session != who.session {
        return Err(unknown());
    }
    // Subscribe first, then read: nothing appended in between is missed.
    let wake = store.wakeups();
    let state = store.state(stream).await?.ok_or_else(unknown)?;
    let gap = gap(&state, pos.seq);
    let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
    let mut resp = Response::new(http_body_util::BodyExt::boxed(ChannelBody::new(rx)));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if gap.is_some() {
        headers.insert(
            "rhizome-last-event-id",
            HeaderValue::from_static("earliest"),
        );
    }
    *resp.status_mut() = StatusCode::OK;
    let reader = Reader {
        store,
        codec,
        stream: pos.stream.clone(),
        who,
        tx,
        shutdown,
    };
    tokio::spawn(reader.run(pos, state, gap, wake));
    Ok(resp)
}

/// What is missing between the requested position and the stream's end.
fn gap(state: &StreamState, after: u64) -> Option<GapReason> {
    if after >= state.last_seq {
        return None;
    }
    if state
        .lost
        .iter()
        .any(|&(from, to)| to > after && from <= state.last_seq)
    {
        return Some(GapReason::Lost);
    }
    match state.oldest_seq {
        Some(oldest) if oldest <= after + 1 => None,
        _ => Some(GapReason::Expired),
    }
}

struct Reader {
    store: Arc<dyn ReplayStore>,
    codec: Arc<IdCodec>,
    stream: StreamId,
    who: Resumer,
    tx: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    shutdown: CancellationToken,
}

impl Reader {
    async fn run(
        self,
        pos: EventPos,
        state: StreamState,
        gap: Option<GapReason>,
        mut wake: broadcast::Receiver<String>,
    ) {
        let mut cursor = pos.seq;
        if let Some(reason) = gap {
            metrics::sse_gap(reason.as_str());
            let event = self.gap_event(&pos, &state, reason).await;
            if !self.send(event).await {
                return;
            }
            cursor = state.last_seq;
        }
        let mut idle_since = tokio::time::Instant::now();
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            match self.drain(&mut cursor).await {
                Ok(0) => {}
                Ok(_) => {
                    idle_since = tokio::time::Instant::now();
                    quiet_since = idle_since;
                }
                Err(()) => return,
            }
            if quiet_since.elapsed() >= self.who.heartbeat {
                if !self.send(Bytes::from_static(b": heartbeat\n\n")).await {
                    return;
                }
                quiet_since = tokio::time::Instant::now();
            }
            // The producer finished, or died: take over.
            let done = match self.store.state(self.stream.as_str()).await {
                Ok(Some(s)) if cursor < s.last_seq && self.lost_to_the_end(&s, cursor) => {
                    // Nothing stored after the cursor: the rest was lost.
                    let pos = EventPos {
                        stream: self.stream.clone(),
                        epoch: s.epoch,
                        seq: cursor,
                    };
                    metrics::sse_gap(GapReason::Lost.as_str());
                    let event = gap_frame(&s.meta, &self.codec.encode(&pos), None, "lost");
                    if !self.send(event).await {
                        return;
                    }
                    cursor = s.last_seq;
                    false
                }
                Ok(Some(s)) if s.producer.is_none() && cursor >= s.last_seq => {
                    s.finished || self.take_over(&s, cursor).await
                }
                Ok(None) => true,
                _ => false,
            };
            if done {
                return;
            }
            if idle_since.elapsed() >= self.who.idle_timeout {
                return;
            }
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = self.shutdown.cancelled() => return,
                _ = wait_for(&mut wake, self.stream.as_str()) => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Takes over a stream whose producer died; true when this reader is
    /// done (it produced the rest, or the stream cannot be resumed).
    async fn take_over(&self, seen_state: &StreamState, cursor: u64) -> bool {
        let stream = self.stream.as_str();
        let sse = &self.who.sse;
        let lease = match self
            .store
            .acquire(stream, &self.who.node, sse.producer_lease)
            .await
        {
            Ok(Some(lease)) => lease,
            // Another reader won (it produces; this one tails), or Redis fails.
            _ => return false,
        };
        // Taking the lease fenced the old producer out: only now is the
        // stream's end final.
        let state = match self.store.state(stream).await {
            Ok(Some(state)) => state,
            _ => seen_state.clone(),
        };
        let state = &state;
        let resumable = self.last_event_has_an_id(state).await;
        let upstream_id = match (state.last_upstream_id.as_deref(), resumable) {
            (Some(id), true) => id,
            // Upstream sent no ids (or events after the last one): it cannot
            // be resumed without a hole or a repeat.
            _ => return self.give_up(state, &lease).await,
        };
        let upstream = match self.who.reopen.reopen(&state.meta, upstream_id).await {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(stream = %self.stream, error = %e, "reopening the stream upstream failed");
                return self.give_up(state, &lease).await;
            }
        };
        metrics::sse_takeover(&self.who.route);
        tracing::info!(stream = %self.stream, epoch = lease.epoch, "took over a stream whose producer died");
        let seen = self.stored_upstream_ids(state.last_seq).await;
        let appender = Appender {
            store: self.store.clone(),
            stream: self.stream.clone(),
            lease,
            node: self.who.node.clone(),
            lease_ttl: sse.producer_lease,
            retention: retention(sse),
        };
        let recorder = Recorder::start(
            self.codec.clone(),
            state.last_seq,
            appender,
            CancellationToken::new(),
        )
        .skip_upstream_ids(seen)
        // The client may have received events the dead producer never stored.
        .quiet_until(cursor);
        let opts = RelayOptions {
            route: self.who.route.clone(),
            request_id: self.who.request_id.clone(),
            idle_timeout: sse.idle_timeout,
            heartbeat_interval: sse.heartbeat_interval,
            max_event_bytes: usize::try_from(sse.max_event_bytes.as_u64()).unwrap_or(usize::MAX),
            detach_grace: (sse.on_client_disconnect == DisconnectPolicy::Detach)
                .then_some(sse.detach_grace),
        };
        relay_into(
            upstream,
            self.tx.clone(),
            opts,
            recorder,
            self.shutdown.clone(),
        )
        .await;
        true
    }

    /// True when every event after `cursor` up to the stream's end was lost
    /// (so no stored event will ever move the cursor there).
    fn lost_to_the_end(&self, s: &StreamState, cursor: u64) -> bool {
        s.lost
            .iter()
            .any(|&(from, to)| from <= cursor + 1 && to >= s.last_seq)
    }

    /// True when the last stored event carried an upstream id (so the
    /// upstream can be reopened exactly after it).
    async fn last_event_has_an_id(&self, state: &StreamState) -> bool {
        let last = self
            .store
            .read_after(self.stream.as_str(), state.last_seq.saturating_sub(1), 1)
            .await
            .ok()
            .and_then(|e| e.into_iter().next());
        // Nothing stored (all trimmed or lost): the stored id is what counts.
        last.is_none_or(|e| e.upstream_id.is_some())
    }

    /// The stream cannot be continued: its buffer was sent, then a gap.
    async fn give_up(&self, state: &StreamState, lease: &ProducerLease) -> bool {
        metrics::sse_gap("producer_lost");
        let event = gap_after_producer(&self.codec, &self.stream, state);
        let _ = self.send(event).await;
        let _ = self.store.release(self.stream.as_str(), lease, true).await;
        true
    }

    /// Upstream ids of the last stored events (at most a page).
    async fn stored_upstream_ids(&self, last_seq: u64) -> Vec<String> {
        let from = last_seq.saturating_sub(PAGE as u64);
        self.store
            .read_after(self.stream.as_str(), from, PAGE)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| e.upstream_id)
            .collect()
    }

    /// Sends every stored event after `cursor`; the count sent, or `Err`
    /// when the client went away.
    async fn drain(&self, cursor: &mut u64) -> Result<usize, ()> {
        let mut sent = 0;
        loop {
            let Ok(events) = self
                .store
                .read_after(self.stream.as_str(), *cursor, PAGE)
                .await
            else {
                // Shared state failing: try again at the next wake-up or poll.
                return Ok(sent);
            };
            if events.is_empty() {
                return Ok(sent);
            }
            let mut out = BytesMut::new();
            let n = events.len();
            for e in events {
                let pos = EventPos {
                    stream: self.stream.clone(),
                    epoch: e.epoch,
                    seq: e.seq,
                };
                if e.seq != *cursor + 1 {
                    // A hole opened while tailing (lost, or trimmed under a
                    // slow reader): signalled, never skipped silently.
                    out.extend_from_slice(&self.hole(*cursor, &pos).await);
                }
                write_event(&mut out, &self.codec.encode(&pos), &e.fields);
                *cursor = e.seq;
            }
            metrics::sse_replayed(&self.who.route, n as u64);
            if !self.send(out.freeze()).await {
                return Err(());
            }
            sent += n;
            if n < PAGE {
                return Ok(sent);
            }
        }
    }

    /// The gap signal for the events between `cursor` and `next`.
    async fn hole(&self, cursor: u64, next: &EventPos) -> Bytes {
        let state = self.store.state(self.stream.as_str()).await.ok().flatten();
        let lost = state.as_ref().is_some_and(|s| {
            s.lost
                .iter()
                .any(|&(from, to)| from <= next.seq && to > cursor)
        });
        let reason = if lost {
            GapReason::Lost
        } else {
            GapReason::Expired
        };
        metrics::sse_gap(reason.as_str());
        let requested = self.codec.encode(&EventPos {
            stream: self.stream.clone(),
            epoch: next.epoch,
            seq: cursor,
        });
        let oldest = self.codec.encode(next);
        match &state {
            Some(s) => gap_frame(&s.meta, &requested, Some(&oldest), reason.as_str()),
            None => Bytes::new(),
        }
    }

    async fn gap_event(&self, pos: &EventPos, state: &StreamState, reason: GapReason) -> Bytes {
        let oldest = match state.oldest_seq {
            Some(seq) => self
                .store
                .read_after(self.stream.as_str(), seq - 1, 1)
                .await
                .ok()
                .and_then(|e| e.into_iter().next())
                .map(|e| {
                    self.codec.encode(&EventPos {
                        stream: self.stream.clone(),
                        epoch: e.epoch,
                        seq: e.seq,
                    })
                }),
            None => None,
        };
        let requested = self.codec.encode(pos);
        gap_frame(&state.meta, &requested, oldest.as_deref(), reason.as_str())
    }

    async fn send(&self, bytes: Bytes) -> bool {
        tokio::select! {
            sent = self.tx.send(Ok(Frame::data(bytes))) => sent.is_ok(),
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(self.who.idle_timeout) => false,
        }
    }
}

/// The gap signal after the buffered events of a stream whose producer died
/// and whose upstream cannot be resumed (it sent no event ids).
fn gap_after_producer(codec: &IdCodec, stream: &StreamId, state: &StreamState) -> Bytes {
    let last = codec.encode(&EventPos {
        stream: stream.clone(),
        epoch: state.epoch,
        seq: state.last_seq,
    });
    gap_frame(&state.meta, &last, None, "producer_lost")
}

/// JSON-RPC error code of a lost MCP stream history (implementation-defined
/// server error range).
const MCP_HISTORY_LOST: i64 = -32001;

/// The gap signal: `event: rhizome-gap` for plain SSE; for an MCP stream a
/// JSON-RPC error for the request that opened it (`id` null for a stream
/// opened by `GET`), since MCP clients only understand JSON-RPC messages.
fn gap_frame(meta: &StreamMeta, requested: &str, oldest: Option<&str>, reason: &str) -> Bytes {
    let info = serde_json::json!({"requested": requested, "oldest": oldest, "reason": reason});
    if meta.session.is_none() {
        return Bytes::from(format!("event: rhizome-gap\ndata: {info}\n\n"));
    }
    let id = serde_json::from_slice::<serde_json::Value>(&meta.reopen.body)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(serde_json::Value::Null);
    let error = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": MCP_HISTORY_LOST,
            "message": format!("stream history not replayable ({reason}); events may be missing"),
            "data": info,
        },
    });
    Bytes::from(format!("event: message\ndata: {error}\n\n"))
}

/// Completes when a wake-up for `stream` arrives (or hints were missed).
async fn wait_for(wake: &mut broadcast::Receiver<String>, stream: &str) {
    loop {
        match wake.recv().await {
            Ok(s) if s == stream => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}
