//! Request and response bodies on the proxy path. A request body small enough
//! (`retry_body_limit`) is read whole so a 401 can be retried with the same
//! bytes; a larger one streams and is not retried. Every body is held to the
//! route's `max_body`. The response side wraps the body in [`Observed`], which
//! counts bytes and writes the request's one access-log line and metrics when
//! the body ends or the client goes away.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use rhizome_proto::ErrorCode;

use super::access::{self, AccessLog, Ending};
use crate::error::{full, ProxyError};
use crate::routing::Route;
use crate::sse::relay::StreamEnd;
use crate::{metrics, BoxBody, BoxError};

/// A request body as forwarded upstream.
#[derive(Debug)]
pub enum OutBody {
    /// Read whole: can be sent again.
    Buffered(Bytes),
    /// Streaming: can be sent once.
    Streaming(Option<BoxBody>),
}

impl OutBody {
    /// The body for one attempt (`None` when a streaming body was already sent).
    pub fn attempt(&mut self) -> Option<BoxBody> {
        match self {
            OutBody::Buffered(b) => Some(full(b.clone())),
            OutBody::Streaming(s) => s.take(),
        }
    }

    /// True when the body can be sent again.
    pub fn replayable(&self) -> bool {
        matches!(self, OutBody::Buffered(_))
    }

    /// Bytes known so far (buffered size), for the log.
    pub fn buffered_len(&self) -> Option<usize> {
        match self {
            OutBody::Buffered(b) => Some(b.len()),
            OutBody::Streaming(_) => None,
        }
    }
}

fn too_large(max: u64) -> ProxyError {
    ProxyError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body exceeds {max} bytes"),
    )
}

/// Reads or wraps a client body: bodies up to `retry_limit` are buffered (within
/// `read_timeout`), larger ones stream; all are held to `max_body`.
pub async fn prepare<B>(
    headers: &HeaderMap,
    body: B,
    max_body: u64,
    retry_limit: u64,
    read_timeout: Duration,
) -> Result<OutBody, ProxyError>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(too_large(max_body));
    }
    if body.is_end_stream() {
        return Ok(OutBody::Buffered(Bytes::new()));
    }
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let mut body = Limited::new(body, limit);
    if declared.is_some_and(|n| n > retry_limit) {
        return Ok(OutBody::Streaming(Some(
            IdleTimeout::new(body.boxed(), read_timeout).boxed(),
        )));
    }
    // Read up to retry_limit; if the body ends first it is kept for a retry.
    let mut buf = BytesMut::new();
    let read = async {
        while (buf.len() as u64) <= retry_limit {
            match body.frame().await {
                None => return Ok(true),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(false)
    };
    let complete = tokio::time::timeout(read_timeout, read)
        .await
        .map_err(|_| ProxyError::new(ErrorCode::BadRequest, "timed out reading the request body"))?
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large(max_body)
            } else {
                ProxyError::new(ErrorCode::BadRequest, "could not read the request body")
                    .with_source(e)
            }
        })?;
    if complete {
        return Ok(OutBody::Buffered(buf.freeze()));
    }
    let prefix = Some(buf.freeze());
    let rest = IdleTimeout::new(body.boxed(), read_timeout).boxed();
    Ok(OutBody::Streaming(Some(Prefixed { prefix, rest }.boxed())))
}

/// A body whose first bytes were already read.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: BoxBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}

/// A body that fails when no frame arrives for `idle`: a stalled upstream
/// (or client) cannot hold a request open forever once its head is through.
pub struct IdleTimeout {
    inner: BoxBody,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimeout {
    /// Wraps `inner`.
    pub fn new(inner: BoxBody, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl Body for IdleTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + self.idle;
                self.timer.as_mut().reset(deadline);
                Poll::Ready(frame)
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(format!("body idle for {:?}", self.idle).into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// True when a client-side error chain says the body exceeded its limit.
pub fn is_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A response body that logs and counts the request when it ends or is dropped.
pub struct Observed {
    inner: BoxBody,
    bytes: u64,
    start: Instant,
    log: Option<AccessLog>,
    /// The matched route, whose metric handles count the request.
    route: Option<Arc<Route>>,
}

impl Observed {
    /// Wraps `inner`; `log` is written once, at the end, and the request
    /// counted on `route` (if one matched).
    pub fn new(inner: BoxBody, start: Instant, log: AccessLog, route: Option<Arc<Route>>) -> Self {
        Observed {
            inner,
            bytes: 0,
            start,
            log: Some(log),
            route,
        }
    }

    fn finish(&mut self, outcome: &'static str) {
        let Some(log) = self.log.take() else { return };
        let outcome = log
            .stream_end
            .as_ref()
            .and_then(StreamEnd::outcome)
            .unwrap_or(outcome);
        let elapsed = self.start.elapsed();
        match &self.route {
            Some(r) => r.metrics.request(&r.name, &log.method, log.status, elapsed),
            None => metrics::request(&log.route, &log.method, log.status, elapsed),
        }
        let ending = Ending {
            elapsed,
            bytes_out: self.bytes,
            outcome,
        };
        access::write(&log, ending);
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => self.finish("complete"),
            Poll::Ready(Some(Err(_))) => self.finish("body_error"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        let outcome = if self.inner.is_end_stream() {
            "complete"
        } else {
            "client_gone"
        };
        self.finish(outcome);
    }
}
