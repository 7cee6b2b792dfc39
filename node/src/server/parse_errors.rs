//! hyper answers a request head it cannot parse by itself, before any service
//! runs: 400 for a malformed head, 431 for one over the head limit (bytes or
//! header count). hyper 1.x has no hook for these answers: its server role
//! writes a bare head with an empty body and closes the connection
//! (`on_parse_error` in `proto/h1/conn.rs`; no builder option changes the
//! body). So the connection's writer ([`Guarded`]) recognizes that one write
//! and sends Rhizome's JSON error in its place.
//!
//! Recognition is deliberately narrow: the write starts with a response head
//! of status 400 or 431, holds exactly that one bodiless head
//! (`content-length: 0`), and comes while every request the service was called
//! for ([`Counted`]) already had its own head written — hyper answers a parse
//! error only between exchanges. A service head is counted when seen at the
//! start of a write; one that hyper merged into a write after other bytes is
//! missed, which only makes recognition on that connection fail safe (hyper's
//! bare answer goes out unchanged). 414 (a URI over 64 KiB, reachable only
//! with `max_header_bytes` above that) is left to hyper: no error code fits.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rhizome_proto::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ProxyError;

/// Requests handed to the service on one connection.
#[derive(Debug, Default)]
pub struct Calls(AtomicU64);

/// A service that counts the requests it is called for.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    calls: Arc<Calls>,
}

impl<S> Counted<S> {
    /// Wraps `inner`, counting into `calls`.
    pub fn new(inner: S, calls: Arc<Calls>) -> Self {
        Counted { inner, calls }
    }
}

impl<S: hyper::service::Service<Request<Incoming>>> hyper::service::Service<Request<Incoming>>
    for Counted<S>
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.calls.0.fetch_add(1, Ordering::Relaxed);
        self.inner.call(req)
    }
}

/// A connection's IO whose writes are watched for hyper's own 400/431.
#[derive(Debug)]
pub struct Guarded<IO> {
    io: IO,
    calls: Arc<Calls>,
    /// Service response heads seen written.
    heads: u64,
    /// `max_header_bytes`, for the 431 message.
    head_limit: usize,
    replacing: Option<Replacement>,
}

/// The JSON answer being written in place of hyper's.
#[derive(Debug)]
struct Replacement {
    bytes: Bytes,
    written: usize,
    /// Length of hyper's write, reported back once the answer is out.
    claimed: usize,
}

impl<IO> Guarded<IO> {
    /// Wraps `io`; `calls` is shared with the connection's [`Counted`] service.
    pub fn new(io: IO, calls: Arc<Calls>, head_limit: usize) -> Self {
        Guarded {
            io,
            calls,
            heads: 0,
            head_limit,
            replacing: None,
        }
    }

    /// The wrapped IO (for the fuzz target, which writes into memory).
    #[doc(hidden)]
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Decides about a write whose first non-empty slice is `first`; `whole`
    /// says it is the only one. Returns the error to answer in its place.
    fn classify(&mut self, first: &[u8], whole: bool) -> Option<ErrorCode> {
        let status = head_status(first)?;
        if status < 200 {
            return None; // 100 Continue: not a final answer
        }
        if self.calls.0.load(Ordering::Relaxed) > self.heads {
            self.heads += 1;
            return None;
        }
        if !whole || !is_bare_head(first) {
            return None;
        }
        match status {
            400 => Some(ErrorCode::BadRequest),
            431 => Some(ErrorCode::HeadersTooLarge),
            _ => None,
        }
    }

    fn replace(&mut self, code: ErrorCode, claimed: usize) {
        let message = match code {
            ErrorCode::HeadersTooLarge => format!(
                "the request head is larger than this node accepts ({} bytes, or too many header fields)",
                self.head_limit
            ),
            _ => "the request is not valid HTTP".to_string(),
        };
        let request_id = hex::encode(rand::random::<[u8; 12]>());
        tracing::info!(request_id = %request_id, status = code.status(), error = code.as_str(), "request head rejected");
        self.replacing = Some(Replacement {
            bytes: json_response(&ProxyError::new(code, message), &request_id),
            written: 0,
            claimed,
        });
    }
}

impl<IO: AsyncWrite + Unpin> Guarded<IO> {
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(r) = &mut self.replacing else {
            return Poll::Ready(Ok(0));
        };
        while r.written < r.bytes.len() {
            let n =
                std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &r.bytes[r.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            r.written += n;
        }
        let claimed = r.claimed;
        self.replacing = None;
        Poll::Ready(Ok(claimed))
    }
}

/// The status of a response head starting `buf` (`HTTP/1.x NNN `).
fn head_status(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// True when `buf` is exactly one head announcing an empty body.
fn is_bare_head(buf: &[u8]) -> bool {
    memchr::memmem::find(buf, b"\r\n\r\n") == Some(buf.len().saturating_sub(4))
        && memchr::memmem::find(buf, b"\r\ncontent-length: 0\r\n").is_some()
}

/// The whole HTTP/1.1 response for `err`: the JSON body of every Rhizome
/// error, and `connection: close` (hyper closes after a parse error).
fn json_response(err: &ProxyError, request_id: &str) -> Bytes {
    // The body is a complete `Full`: collecting it is ready at once.
    let body = err
        .to_response(request_id)
        .into_body()
        .collect()
        .now_or_never()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let status = err.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nx-request-id: {request_id}\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Bytes::from(out)
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            match this.classify(buf, true) {
                Some(code) => this.replace(code, buf.len()),
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
            }
        }
        this.poll_replacement(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            match this.classify(first, first.len() == total) {
                Some(code) => this.replace(code, total),
                None => return Pin::new(&mut this.io).poll_write_vectored(cx, bufs),
            }
        }
        this.poll_replacement(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const BARE_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
    const PROXIED_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";

    fn guarded() -> (Guarded<Vec<u8>>, Arc<Calls>) {
        let calls = Arc::new(Calls::default());
        (Guarded::new(Vec::new(), calls.clone(), 8192), calls)
    }

    #[tokio::test]
    async fn hypers_own_answer_becomes_rhizome_json() {
        let (mut io, _) = guarded();
        io.write_all(BARE_431).await.expect("write");
        let out = String::from_utf8(io.io).expect("utf8");
        let (head, body) = out.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("\r\ncontent-type: application/json"));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["code"], "headers_too_large");
        assert!(head.contains(v["error"]["request_id"].as_str().expect("id")));
    }

    #[tokio::test]
    async fn a_service_answer_passes_untouched() {
        let (mut io, calls) = guarded();
        calls.0.fetch_add(1, Ordering::Relaxed);
        io.write_all(PROXIED_400).await.expect("write");
        // The next head with no request behind it is hyper's.
        io.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await
            .expect("write");
        let out = String::from_utf8(io.io).expect("utf8");
        assert!(out.starts_with(std::str::from_utf8(PROXIED_400).expect("utf8")));
        assert!(out.contains("\"bad_request\""), "{out}");
    }

    #[tokio::test]
    async fn interim_and_body_writes_pass_untouched() {
        let (mut io, calls) = guarded();
        calls.0.fetch_add(1, Ordering::Relaxed);
        io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .expect("write");
        io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            .await
            .expect("write");
        io.write_all(b"hello").await.expect("write");
        assert!(io.io.ends_with(b"hello"));
        assert_eq!(io.heads, 1);
    }
}
