//! The listeners (proxy and admin): accept TCP connections and serve
//! HTTP/1.1 and h2c on the same port (hyper-util's auto builder) under the
//! limits of `[limits]`:
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

mod parse_errors;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
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
        let (builder, service, watcher) = (builder.clone(), make(peer), graceful.watcher());
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
            let io = Guarded::new(stream, calls.clone(), head_limit);
            let conn = builder
                .serve_connection(TokioIo::new(io), Counted::new(service, calls))
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
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
