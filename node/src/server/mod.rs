//! The listeners (proxy and admin): accept TCP connections and serve
//! HTTP/1.1 and h2c on the same port under the limits of `[limits]`. The
//! first byte decides: only a `P` can start the h2c preface (`PRI * HTTP/2.0`),
//! so any other connection goes straight to hyper's HTTP/1 server, and only
//! `P…` connections (the preface, or `POST`/`PUT`/`PATCH`) go through
//! hyper-util's auto builder, which reads the preface to choose (and costs a
//! buffer per connection). Limits:
//! - a connection that sends nothing within `header_read_timeout` is closed
//!   (covers the protocol sniffing that precedes hyper's own head timeout);
//! - heads larger than `max_header_bytes` get 431, unparseable ones 400, both
//!   as Rhizome's JSON error (hyper's own bare answers are replaced: see
//!   [`parse_errors`]);
//! - at most `max_connections` connections are served at once; beyond that
//!   the listener stops accepting and the kernel backlog holds the rest.
//!
//! On shutdown it stops accepting, asks every connection to finish gracefully
//! (keep-alive ends, in-flight requests complete, SSE streams are ended by the
//! relay) and gives them `grace` before returning.

#[doc(hidden)] // public for the fuzz target only
pub mod parse_errors;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rhizome_proto::config::Limits;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;
use crate::BoxError;
use parse_errors::{Calls, Counted, Guarded};

/// Serves the services made by `make` (one per connection, given the peer)
/// on `listener` until `shutdown` triggers, then drains for up to `grace`.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    make: M,
    limits: Limits,
    shutdown: Shutdown,
    grace: Duration,
) where
    M: Fn(SocketAddr) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let head_limit = limits.max_header_bytes.max(8192);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(head_limit);
    // `max_header_size` too: without the auto builder's first read, one read
    // can bring in a whole head larger than `max_buf_size` and hyper parses
    // it; this limit is checked on every parsed head.
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(head_limit)
        .max_header_size(head_limit);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let first_byte = limits.header_read_timeout;
    loop {
        let permit = tokio::select! {
            _ = shutdown.triggered() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.triggered() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (service, watcher) = (make(peer), graceful.watcher());
        let (builder, http1) = (builder.clone(), http1.clone());
        shutdown.tasks().spawn(async move {
            let _permit = permit;
            // A connection that never sends a byte is closed after the head
            // timeout (hyper's own timeout starts only once HTTP/1 is chosen).
            let mut probe = [0u8; 1];
            match tokio::time::timeout(first_byte, stream.peek(&mut probe)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let calls = Arc::new(Calls::default());
            let io = TokioIo::new(Guarded::new(stream, calls.clone(), head_limit));
            let service = Counted::new(service, calls);
            let ended = if probe[0] == b'P' {
                let conn = builder.serve_connection(io, service).into_owned();
                watcher.watch(conn).await
            } else {
                let conn = http1.serve_connection(io, service);
                watcher.watch(conn).await.map_err(BoxError::from)
            };
            if let Err(e) = ended {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with connections still open");
    }
}

/// Binds a listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
