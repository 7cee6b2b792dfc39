//! The subscription to `rz:tok-events` on the dedicated pub/sub connection.
//! Events keep local caches fresh (new token versions, invalidations, deleted
//! sessions). Pub/sub is at most once, so after every (re)subscribe — and
//! whenever the receiver lagged — the sink re-reads everything it caches.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rhizome_proto::codec;
use rhizome_proto::records::{StateEvent, TOKEN_EVENTS};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use super::redis::Redis;
use super::tokens::SharedTokens;

/// A boxed unit future.
pub type Work<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What the node does with events.
pub trait EventSink: Send + Sync {
    /// One event arrived.
    fn event(&self, event: StateEvent) -> Work<'_>;
    /// Events may have been missed: re-read everything cached.
    fn resync(&self) -> Work<'_>;
}

/// Publishes `event` (best effort: receivers also poll and resync).
pub async fn publish(redis: &Redis, event: &StateEvent) {
    match codec::encode(event) {
        Ok(payload) => {
            if let Err(e) = redis.publish(TOKEN_EVENTS, payload).await {
                tracing::warn!(error = %e, "publishing a state event failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "encoding a state event failed"),
    }
}

/// Waits for every connection, preloads the Lua scripts, subscribes, resyncs
/// and only then marks the node's shared state ready; then feeds `sink`
/// until `shutdown`.
pub fn spawn(
    redis: Arc<Redis>,
    tokens: Option<Arc<SharedTokens>>,
    sink: Arc<dyn EventSink>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = redis.wait_connected() => {}
        }
        let mut messages = redis.messages();
        let mut reconnects = redis.resubscribed();
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = redis.subscribe(TOKEN_EVENTS).await {
            tracing::debug!(error = %e, "subscribing to token events failed; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        if let Some(tokens) = tokens {
            // Best effort: a script not loaded here is loaded on first NOSCRIPT.
            if let Err(e) = tokens.preload().await {
                tracing::debug!(error = %e, "preloading Lua scripts failed");
            }
        }
        // fred announces the subscriber's first connection on the same
        // channel as later reconnects; the resync below covers every notice
        // received so far, so only later ones are reconnects.
        while !matches!(
            reconnects.try_recv(),
            Err(TryRecvError::Empty | TryRecvError::Closed)
        ) {}
        sink.resync().await;
        redis.mark_subscribed();
        tracing::info!("subscribed to state events");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                msg = messages.recv() => match msg {
                    Ok(m) => {
                        let Some(bytes) = m.value.as_bytes() else { continue };
                        match codec::decode::<StateEvent>(bytes) {
                            Ok(ev) => sink.event(ev).await,
                            Err(e) => tracing::warn!(error = %e, "undecodable state event ignored"),
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "state events lagged; re-reading shared state");
                        sink.resync().await;
                    }
                    Err(RecvError::Closed) => return,
                },
                re = reconnects.recv() => {
                    if matches!(re, Err(RecvError::Closed)) {
                        return;
                    }
                    tracing::info!("pub/sub reconnected; re-reading shared state");
                    sink.resync().await;
                }
            }
        }
    });
}
