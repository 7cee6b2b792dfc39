//! The SSE relay: one task per stream reads the upstream body, parses it, and
//! hands each batch of complete events to the client through a small bounded
//! channel (backpressure instead of buffering). The task also owns the
//! heartbeat and idle timers and ends the stream on shutdown. When the client
//! goes away the channel closes, the task notices at once (`Sender::closed`)
//! and drops the upstream body, which closes the upstream connection.
//! How the stream ended is recorded in a [`StreamEnd`] that the access log
//! reads, so a stream cut by an idle timeout is not logged as `complete`.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use super::parser::SseParser;
use super::record::Recorder;
use crate::{metrics, BoxBody, BoxError};

/// Frames in flight between the relay task and the client connection.
const CHANNEL_FRAMES: usize = 8;
const HEARTBEAT: &[u8] = b": heartbeat\n\n";
/// A timer that does not fire (armed when a stream detaches).
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Settings of one relayed stream.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Route name, for logs and metrics.
    pub route: String,
    /// Request id, for logs.
    pub request_id: String,
    /// Close the stream after this long without upstream bytes.
    pub idle_timeout: Duration,
    /// Send a comment after this long without bytes to the client.
    pub heartbeat_interval: Duration,
    /// Largest event accepted from upstream.
    pub max_event_bytes: usize,
    /// With a recorder: how long upstream is still read (and recorded) after
    /// the client left (`on_client_disconnect = "detach"`); `None` cancels.
    pub detach_grace: Option<Duration>,
}

/// Wraps an upstream SSE body; the returned body is what the client reads,
/// and the [`StreamEnd`] says, once the relay has stopped, why it did.
/// With a `recorder` (`sse.replay = true`) each event is numbered, given
/// Rhizome's id and stored for replay on its way to the client.
pub fn relay(
    upstream: BoxBody,
    opts: RelayOptions,
    recorder: Option<Recorder>,
    shutdown: CancellationToken,
) -> (BoxBody, StreamEnd) {
    let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
    let end = StreamEnd::default();
    let task = Pump {
        tx,
        opts,
        recorder,
        shutdown,
        outcome: end.clone(),
    };
    tokio::spawn(task.run(upstream));
    (ChannelBody { rx }.boxed(), end)
}

/// Relays `upstream` into an existing client channel and returns when the
/// stream ends (a stream taken over by the node its client resumed on).
pub async fn relay_into(
    upstream: BoxBody,
    tx: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    opts: RelayOptions,
    recorder: Recorder,
    shutdown: CancellationToken,
) -> StreamEnd {
    let end = StreamEnd::default();
    let task = Pump {
        tx,
        opts,
        recorder: Some(recorder),
        shutdown,
        outcome: end.clone(),
    };
    task.run(upstream).await;
    end
}

/// How a relayed stream ended, as the access log's `outcome` names it. Set by
/// the relay task before it closes the client's body, so whoever sees the
/// body end also sees the reason.
#[derive(Debug, Clone, Default)]
pub struct StreamEnd(Arc<OnceLock<&'static str>>);

impl StreamEnd {
    /// The outcome, once the relay has stopped.
    pub fn outcome(&self) -> Option<&'static str> {
        self.0.get().copied()
    }

    fn set(&self, end: End) {
        let _ = self.0.set(end.as_str());
    }
}

/// Why a relayed stream ended; logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    UpstreamFinished,
    UpstreamError,
    ClientGone,
    ClientStalled,
    IdleTimeout,
    Shutdown,
    EventTooLarge,
    TakenOver,
}

impl End {
    /// The access log's `outcome` for this end.
    fn as_str(self) -> &'static str {
        match self {
            End::UpstreamFinished => "complete",
            End::UpstreamError => "upstream_error",
            End::ClientGone => "client_gone",
            End::ClientStalled => "client_stalled",
            End::IdleTimeout => "idle_timeout",
            End::Shutdown => "shutdown",
            End::EventTooLarge => "oversize",
            End::TakenOver => "taken_over",
        }
    }
}

/// The relay task of one stream.
struct Pump {
    tx: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    opts: RelayOptions,
    recorder: Option<Recorder>,
    shutdown: CancellationToken,
    outcome: StreamEnd,
}

impl Pump {
    /// Writes `events` as the client receives them.
    fn render(&mut self, events: &mut Vec<super::parser::SseEvent>) -> Bytes {
        let mut out = BytesMut::new();
        for ev in events.drain(..) {
            match self.recorder.as_mut() {
                Some(r) => r.record(&ev, &mut out),
                None => out.extend_from_slice(&ev.raw),
            }
        }
        out.freeze()
    }

    async fn run(mut self, upstream: BoxBody) {
        let end = self.relay(upstream).await;
        if let (End::UpstreamFinished, Some(recorder)) = (end, self.recorder.take()) {
            recorder.finish().await;
        }
        // Before `tx` drops: the client's body ends only after the reason is set.
        self.outcome.set(end);
        tracing::debug!(request_id = %self.opts.request_id, route = %self.opts.route, outcome = end.as_str(), "sse stream ended");
    }

    async fn relay(&mut self, mut upstream: BoxBody) -> End {
        let opts = self.opts.clone();
        let shutdown = self.shutdown.clone();
        let stopped = self
            .recorder
            .as_ref()
            .map_or_else(CancellationToken::new, |r| r.stopped().clone());
        let tx = self.tx.clone();
        let _active = metrics::SseStreamGuard::new(&opts.route);
        let mut parser = SseParser::new(opts.max_event_bytes);
        let mut events = Vec::new();
        // Set once the client left and the stream is kept recording
        // (`on_client_disconnect = "detach"`) until `detach_end`.
        let mut detached = false;
        let idle = sleep(opts.idle_timeout);
        let heartbeat = sleep(opts.heartbeat_interval);
        let detach_end = sleep(FAR_FUTURE);
        tokio::pin!(idle, heartbeat, detach_end);
        let end = loop {
            tokio::select! {
                biased;
                _ = tx.closed(), if !detached => match (opts.detach_grace, &self.recorder) {
                    (Some(grace), Some(_)) => {
                        detached = true;
                        detach_end.as_mut().reset(Instant::now() + grace);
                        tracing::debug!(request_id = %opts.request_id, grace_ms = grace.as_millis() as u64, "client gone; stream detached, still recording");
                    }
                    _ => break End::ClientGone,
                },
                _ = &mut detach_end, if detached => break End::ClientGone,
                _ = shutdown.cancelled() => break End::Shutdown,
                _ = stopped.cancelled() => break End::TakenOver,
                frame = upstream.frame() => {
                    let data = match frame {
                        None => break End::UpstreamFinished,
                        Some(Err(e)) => {
                            tracing::warn!(request_id = %opts.request_id, error = %e, "sse upstream read failed");
                            break End::UpstreamError;
                        }
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => data,
                            Err(_) => continue, // trailers carry nothing for SSE
                        },
                    };
                    idle.as_mut().reset(Instant::now() + opts.idle_timeout);
                    if let Err(e) = parser.push(&data, &mut events) {
                        tracing::warn!(request_id = %opts.request_id, route = %opts.route, reason = %e, "closing sse stream");
                        break End::EventTooLarge;
                    }
                    if events.is_empty() {
                        continue;
                    }
                    let count = events.len();
                    let out = self.render(&mut events);
                    metrics::sse_events(&opts.route, count as u64);
                    if detached {
                        continue; // recorded for a resume; nobody to send it to here
                    }
                    if let Err(end) = deliver(&tx, out, &shutdown, opts.idle_timeout).await {
                        break end;
                    }
                    heartbeat.as_mut().reset(Instant::now() + opts.heartbeat_interval);
                }
                _ = &mut idle => break End::IdleTimeout,
                _ = &mut heartbeat, if !detached => {
                    if let Err(end) = deliver(&tx, Bytes::from_static(HEARTBEAT), &shutdown, opts.idle_timeout).await {
                        break end;
                    }
                    heartbeat.as_mut().reset(Instant::now() + opts.heartbeat_interval);
                }
            }
        };
        if parser.pending_bytes() > 0 {
            tracing::debug!(request_id = %opts.request_id, bytes = parser.pending_bytes(), "dropped incomplete sse event at end of stream");
        }
        end
    }
}

/// Hands bytes to the client. A client that stops reading for `patience`, or
/// a shutdown, ends the stream instead of holding the upstream forever.
async fn deliver(
    tx: &mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    bytes: Bytes,
    shutdown: &CancellationToken,
    patience: Duration,
) -> Result<(), End> {
    tokio::select! {
        sent = tx.send(Ok(Frame::data(bytes))) => sent.map_err(|_| End::ClientGone),
        _ = shutdown.cancelled() => Err(End::Shutdown),
        _ = tokio::time::sleep(patience) => Err(End::ClientStalled),
    }
}

/// A response body fed by a task through a bounded channel.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl ChannelBody {
    /// The body fed through `rx`.
    pub fn new(rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>) -> Self {
        ChannelBody { rx }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn opts() -> RelayOptions {
        RelayOptions {
            route: "r".into(),
            request_id: "t".into(),
            idle_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(15),
            max_event_bytes: 1024,
            detach_grace: None,
        }
    }

    fn upstream() -> (mpsc::Sender<Result<Frame<Bytes>, BoxError>>, BoxBody) {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (tx, StreamBody::new(stream).boxed())
    }

    async fn next_data(client: &mut BoxBody) -> Bytes {
        let frame = client.frame().await.expect("frame").expect("ok");
        frame.into_data().expect("data")
    }

    #[tokio::test(start_paused = true)]
    async fn forwards_complete_events_only_and_sends_heartbeats() {
        let (up, body) = upstream();
        let (mut client, end) = relay(body, opts(), None, CancellationToken::new());
        up.send(Ok(Frame::data(Bytes::from_static(b"data: 1\n\ndata: par"))))
            .await
            .expect("send");
        let f = next_data(&mut client).await;
        assert_eq!(&f[..], b"data: 1\n\n");
        // Nothing more until the heartbeat interval passes (paused clock advances).
        let f = next_data(&mut client).await;
        assert_eq!(&f[..], HEARTBEAT);
        up.send(Ok(Frame::data(Bytes::from_static(b"tial\n\n"))))
            .await
            .expect("send");
        let f = next_data(&mut client).await;
        assert_eq!(&f[..], b"data: partial\n\n");
        drop(up);
        assert!(client.frame().await.is_none());
        assert_eq!(end.outcome(), Some("complete"));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_upstream_ends_the_stream() {
        let (_up, body) = upstream();
        let mut o = opts();
        o.heartbeat_interval = Duration::from_secs(3600);
        let (mut client, end) = relay(body, o, None, CancellationToken::new());
        assert!(client.frame().await.is_none());
        assert_eq!(end.outcome(), Some("idle_timeout"));
    }

    #[tokio::test]
    async fn each_end_is_named_for_what_it_was() {
        // Upstream read error.
        let (up, body) = upstream();
        let (mut client, end) = relay(body, opts(), None, CancellationToken::new());
        up.send(Err("reset".into())).await.expect("send");
        assert!(client.frame().await.is_none());
        assert_eq!(end.outcome(), Some("upstream_error"));
        // An event larger than max_event_bytes.
        let (up, body) = upstream();
        let (mut client, end) = relay(body, opts(), None, CancellationToken::new());
        let big = Bytes::from(vec![b'x'; 2048]);
        up.send(Ok(Frame::data(big))).await.expect("send");
        assert!(client.frame().await.is_none());
        assert_eq!(end.outcome(), Some("oversize"));
        // Shutdown.
        let (_up, body) = upstream();
        let stop = CancellationToken::new();
        let (mut client, end) = relay(body, opts(), None, stop.clone());
        stop.cancel();
        assert!(client.frame().await.is_none());
        assert_eq!(end.outcome(), Some("shutdown"));
    }

    #[tokio::test]
    async fn client_gone_drops_the_upstream() {
        let (up, body) = upstream();
        let (client, end) = relay(body, opts(), None, CancellationToken::new());
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), up.closed())
            .await
            .expect("upstream body dropped after the client went away");
        assert_eq!(end.outcome(), Some("client_gone"));
    }
}
