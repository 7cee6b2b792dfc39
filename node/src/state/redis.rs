//! The Redis connection of a node (crate `fred`): a pool for commands, a
//! dedicated subscriber for `rz:tok-events`, and the discipline that keeps an
//! outage from turning into a hang. Every operation goes through [`Redis::run`]:
//! a hard `op_timeout` (fred ignores per-command timeouts for scripts), a
//! circuit breaker that fails fast while Redis is down and lets one probe
//! through every [`PROBE_INTERVAL`], and the `rhizome_redis_up` /
//! `rhizome_redis_op_duration_seconds` metrics. fred reconnects by itself with
//! an exponential policy; its command buffer is bounded.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::clients::{Pool, SubscriberClient};
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::config::{Config as FredConfig, ReconnectPolicy, UnresponsiveConfig};
use fred::types::Builder;
use rhizome_proto::config::StateConfig;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// While Redis is down, one operation per interval is let through as a probe.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How often the health probe pings.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(250);
/// Commands queued while disconnected, at most; beyond that they fail at once.
const MAX_QUEUED_COMMANDS: usize = 1024;
const POOL_SIZE: usize = 4;

/// A state-store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    /// Redis did not answer within `op_timeout`, or is known to be down.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// Redis answered something unexpected.
    #[error("state store protocol error: {0}")]
    Protocol(String),
}

/// The node's Redis client.
#[derive(Debug)]
pub struct Redis {
    pool: Pool,
    subscriber: SubscriberClient,
    op_timeout: Duration,
    down: AtomicBool,
    /// Set once the first operation succeeded (readiness gate).
    reached: AtomicBool,
    /// Set once the event subscription is up and caches were resynced.
    subscribed: AtomicBool,
    last_probe_ms: AtomicU64,
    started: Instant,
    /// Counts returns from an outage: caches and kept tokens resync then.
    recoveries: tokio::sync::watch::Sender<u64>,
}

impl Redis {
    /// Builds (does not connect) a client for `cfg.redis_url`.
    pub fn new(cfg: &StateConfig) -> Result<Self, StateError> {
        let mut config = FredConfig::from_url(&cfg.redis_url)
            .map_err(|e| StateError::Protocol(format!("redis_url: {}", e.details())))?;
        // A node may start before Redis: keep reconnecting instead of giving up.
        config.fail_fast = false;
        let op_timeout = cfg.op_timeout;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = op_timeout.max(Duration::from_secs(1));
                c.internal_command_timeout = op_timeout.max(Duration::from_secs(1));
                c.max_command_buffer_len = MAX_QUEUED_COMMANDS;
                c.max_command_attempts = 1;
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(op_timeout.max(Duration::from_millis(500)) * 4),
                    interval: Duration::from_millis(250),
                };
            })
            .with_performance_config(|p| {
                p.default_command_timeout = op_timeout;
                p.broadcast_channel_capacity = 1024;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 1000, 2));
        let pool = builder
            .build_pool(POOL_SIZE)
            .map_err(|e| StateError::Protocol(e.details().to_string()))?;
        let subscriber = builder
            .build_subscriber_client()
            .map_err(|e| StateError::Protocol(e.details().to_string()))?;
        metrics::redis_up(false);
        Ok(Redis {
            pool,
            subscriber,
            op_timeout,
            down: AtomicBool::new(false),
            reached: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            last_probe_ms: AtomicU64::new(0),
            started: Instant::now(),
            recoveries: tokio::sync::watch::channel(0).0,
        })
    }

    /// Starts the connections and the health probe. Returns at once: a node
    /// starts even while Redis is down, and `/readyz` says so. The probe
    /// pings every [`HEALTH_INTERVAL`] so `rhizome_redis_up` and readiness
    /// follow reality even when no request needs Redis.
    pub fn start(self: &Arc<Self>, shutdown: CancellationToken) {
        let _connections = self.pool.connect_pool();
        let _subscriber = self.subscriber.connect();
        let _resubscriber = self.subscriber.manage_subscriptions();
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let ping = this.run("ping", this.pool.next().ping::<()>(None));
                let _ = ping.await;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
                }
            }
            let _ = this.pool.quit().await;
            let _ = this.subscriber.quit().await;
        });
    }

    /// Completes once every pooled connection is up (fred keeps retrying).
    pub async fn wait_connected(&self) {
        while self.pool.wait_for_connect().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The command pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// True once Redis has answered and the event subscription is up.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::Acquire) && self.subscribed.load(Ordering::Acquire)
    }

    /// Records that the event subscription is up (readiness gate).
    pub fn mark_subscribed(&self) {
        self.subscribed.store(true, Ordering::Release);
    }

    /// Runs one operation under the breaker, `op_timeout` and metrics.
    pub async fn run<T, F>(&self, op: &'static str, fut: F) -> Result<T, StateError>
    where
        F: Future<Output = Result<T, FredError>>,
    {
        if !self.allow() {
            return Err(StateError::Unavailable(
                "redis is down (failing fast)".into(),
            ));
        }
        let start = Instant::now();
        let result = tokio::time::timeout(self.op_timeout, fut).await;
        metrics::redis_op(op, start.elapsed());
        match result {
            Ok(Ok(v)) => {
                self.mark(true);
                Ok(v)
            }
            Ok(Err(e)) if is_unavailability(&e) => {
                self.mark(false);
                Err(StateError::Unavailable(format!("{op}: {}", e.details())))
            }
            Ok(Err(e)) => Err(StateError::Protocol(format!("{op}: {}", e.details()))),
            Err(_) => {
                self.mark(false);
                Err(StateError::Unavailable(format!(
                    "{op}: no answer within {:?}",
                    self.op_timeout
                )))
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn allow(&self) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return true;
        }
        let now = self.now_ms();
        let last = self.last_probe_ms.load(Ordering::Acquire);
        let interval = u64::try_from(PROBE_INTERVAL.as_millis()).unwrap_or(200);
        now.saturating_sub(last) >= interval
            && self
                .last_probe_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn mark(&self, up: bool) {
        let was_down = self.down.swap(!up, Ordering::AcqRel);
        if !up {
            self.last_probe_ms.store(self.now_ms(), Ordering::Release);
        }
        metrics::redis_up(up);
        if up {
            self.reached.store(true, Ordering::Release);
        }
        if was_down == up {
            if up {
                self.recoveries.send_modify(|n| *n += 1);
                tracing::info!("redis reachable");
            } else {
                tracing::warn!("redis unreachable; state operations fail fast until it answers");
            }
        }
    }

    /// Publishes `payload` on `channel`.
    pub async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<(), StateError> {
        self.run(
            "publish",
            self.pool.next().publish::<(), _, _>(channel, payload),
        )
        .await
    }

    /// Subscribes the dedicated connection to `channel`.
    pub async fn subscribe(&self, channel: &str) -> Result<(), StateError> {
        self.run("subscribe", self.subscriber.subscribe(channel))
            .await
    }

    /// Receives pub/sub messages.
    pub fn messages(&self) -> tokio::sync::broadcast::Receiver<fred::types::Message> {
        self.subscriber.message_rx()
    }

    /// Changes each time Redis answers again after an outage.
    pub fn recoveries(&self) -> tokio::sync::watch::Receiver<u64> {
        self.recoveries.subscribe()
    }

    /// Receives a notice each time the subscriber reconnects.
    pub fn resubscribed(&self) -> tokio::sync::broadcast::Receiver<fred::types::config::Server> {
        self.subscriber.reconnect_rx()
    }
}

fn is_unavailability(e: &FredError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::IO
            | ErrorKind::Timeout
            | ErrorKind::Canceled
            | ErrorKind::Backpressure
            | ErrorKind::Routing
    )
}
