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

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body::Frame;
use rhizome_proto::ErrorCode;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::ids::{EventPos, IdCodec, StreamId};
use super::record::write_event;
use super::relay::ChannelBody;
use crate::error::ProxyError;
use crate::state::replay::{ReplayStore, StreamState};
use crate::{metrics, BoxBody, BoxError};

/// How often a reader re-reads the log when no wake-up arrives.
const POLL: Duration = Duration::from_millis(250);
/// Events read from the store at once.
const PAGE: usize = 256;
/// Frames in flight to the client.
const CHANNEL_FRAMES: usize = 8;

/// Who asks to resume, and where.
#[derive(Debug, Clone)]
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
            // The producer finished or died and everything is delivered.
            match self.store.state(self.stream.as_str()).await {
                Ok(Some(s)) if s.producer.is_none() && cursor >= s.last_seq => return,
                Ok(None) => return,
                _ => {}
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
        let data = serde_json::json!({
            "requested": self.codec.encode(pos),
            "oldest": oldest,
            "reason": reason.as_str(),
        });
        Bytes::from(format!("event: rhizome-gap\ndata: {data}\n\n"))
    }

    async fn send(&self, bytes: Bytes) -> bool {
        tokio::select! {
            sent = self.tx.send(Ok(Frame::data(bytes))) => sent.is_ok(),
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(self.who.idle_timeout) => false,
        }
    }
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
