//! The subscription to `rz:tok-events` on the dedicated pub/sub connection.
//! Events keep local caches fresh (new token versions, invalidations, deleted
//! sessions). Pub/sub is at most once, so after every (re)subscribe — and
//! whenever the receiver lagged — the sink re-reads everything it caches.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fred::types::Message;
use rhizome_proto::codec;
use rhizome_proto::records::{StateEvent, TOKEN_EVENTS};
use tokio::sync::broadcast;
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
        let messages = redis.messages();
        let reconnects = redis.resubscribed();
        let recoveries = redis.recoveries();
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
        let live = || redis.mark_subscribed();
        let channels = Channels {
            messages,
            reconnects,
            recoveries,
        };
        follow(channels, sink.as_ref(), live, shutdown).await;
    });
}

/// What the event loop listens to.
struct Channels<N> {
    /// Pub/sub messages.
    messages: broadcast::Receiver<Message>,
    /// A notice per connection of the subscriber.
    reconnects: broadcast::Receiver<N>,
    /// Changes each time Redis answers again after an outage.
    recoveries: tokio::sync::watch::Receiver<u64>,
}

/// Resyncs, calls `live` (the subscription is up and caches are fresh), then
/// feeds `sink` until `shutdown` or until a channel closes. `reconnects`
/// carries a notice per connection of the subscriber, the first one
/// included: notices already received are covered by the initial resync,
/// so only later ones are reconnects.
async fn follow<N: Clone>(
    channels: Channels<N>,
    sink: &dyn EventSink,
    live: impl FnOnce(),
    shutdown: CancellationToken,
) {
    let Channels {
        mut messages,
        mut reconnects,
        mut recoveries,
    } = channels;
    while !matches!(
        reconnects.try_recv(),
        Err(TryRecvError::Empty | TryRecvError::Closed)
    ) {}
    sink.resync().await;
    live();
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
            changed = recoveries.changed() => {
                if changed.is_err() {
                    return;
                }
                // Events published during the outage may be lost, and
                // tokens kept through it are written now.
                sink.resync().await;
            }
            re = reconnects.recv() => {
                if matches!(re, Err(RecvError::Closed)) {
                    return;
                }
                tracing::info!("pub/sub reconnected; re-reading shared state");
                sink.resync().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counting {
        resyncs: AtomicUsize,
    }

    impl EventSink for Counting {
        fn event(&self, _: StateEvent) -> Work<'_> {
            Box::pin(async {})
        }
        fn resync(&self) -> Work<'_> {
            self.resyncs.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn the_first_connection_is_not_a_reconnect() {
        let (_msg_tx, messages) = broadcast::channel::<Message>(4);
        let (notices, reconnects) = broadcast::channel::<()>(4);
        // fred's notice for the first connection, received before the resync.
        notices.send(()).expect("send");
        let sink = Arc::new(Counting::default());
        let live = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (sink, live) = (sink.clone(), live.clone());
            async move {
                let up = || live.store(true, Ordering::SeqCst);
                let (_recovered, recoveries) = tokio::sync::watch::channel(0);
                let channels = Channels {
                    messages,
                    reconnects,
                    recoveries,
                };
                follow(channels, sink.as_ref(), up, CancellationToken::new()).await;
            }
        });
        while !live.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        // A real reconnect, then the channel closes and the loop ends.
        notices.send(()).expect("send");
        drop(notices);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("follow ends when its channel closes")
            .expect("join");
        assert_eq!(
            sink.resyncs.load(Ordering::SeqCst),
            2,
            "the initial resync and one for the reconnect, none for the first connection"
        );
    }
}
