//! The Redis connection of a node (crate `fred`): a pool for commands, a
//! dedicated subscriber for `rz:tok-events`, a second one for SSE wake-up
//! hints (`rz:sse-wake`: one message per append batch cluster-wide, kept off
//! the token-event connection so a burst of hints never makes the token-event
//! receiver lag into a full resync), and the discipline that keeps an
//! outage from turning into a hang or into a write nobody waits for. Every
//! operation goes through [`Redis::run`]: a hard `op_timeout`, a circuit
//! breaker that fails fast while Redis is down and lets one probe through
//! every [`PROBE_INTERVAL`], and the `rhizome_redis_up` /
//! `rhizome_redis_op_duration_seconds` metrics. fred reconnects by itself with
//! an exponential policy, also when Redis is not up at start. Behind
//! Sentinel (`redis+sentinel://`) each connection attempt first asks a
//! sentinel for the master and checks its `ROLE`, so after a failover the
//! reconnections land on the promoted replica; until then the node is in an
//! ordinary outage. On a Redis Cluster (`redis-cluster://`) fred routes each
//! command by its key's slot and follows the cluster's slot map; a script
//! runs on the node of its first key ([`Redis::eval`]).
//!
//! # A command its caller gave up on does not act later
//!
//! A caller gives up after `op_timeout` (G6). A lock taken after that would
//! hold the refresh lock for its whole lease with nobody to use or release it;
//! a token written after that would be stored although its writer reported a
//! failure. What holds, and why:
//! - **Nothing waits in fred while it knows Redis is gone.** Commands go
//!   through [`Redis::client`], which sets fred's per-command `fail_fast`:
//!   while its connection is down fred answers `Canceled` at once instead of
//!   queueing the command until it reconnects. (The config-level
//!   `fail_fast = false` only makes the client keep trying to connect when
//!   Redis is not up at start.)
//! - **A command still queued when its caller gives up is dropped.** Between
//!   a connection breaking and fred's first reconnection attempt (up to its
//!   first back-off, ~150 ms) the client still counts as connected, and
//!   commands queue behind the reconnection. fred skips, when it would write
//!   or retry a command, one whose own timeout fired (its `timed_out` flag).
//!   So fred's timeout ([`command_timeout`]) ends before `run`'s, whose
//!   `op_timeout` is only a backstop, and a script's steps share one budget
//!   that ends before `run` gives up. A command whose future was merely
//!   dropped (a cancelled task) is not marked, and fred sends it after the
//!   reconnection.
//! - **Nothing is re-sent.** A command written on a connection that then broke
//!   fails; it is not replayed after the reconnection (`max_attempts = 1`).
//! - **Taking the lock and writing a token refuse to act late**, whatever
//!   happened on the way: a dropped future as above, or bytes already written
//!   that a frozen Redis (SIGSTOP, a stalled network) runs when it resumes —
//!   no client can recall those. These scripts are [`Script::with_deadline`]:
//!   [`Redis::eval`] first reads Redis's clock (`TIME`) and passes the last
//!   Redis-clock microsecond at which its caller still waits; the script
//!   refuses to act after it. Both ends of that comparison are Redis's clock,
//!   so no synchronized clocks are needed, only one that does not step back
//!   meanwhile.
//! - Everything else is harmless when it lands late (only a frozen server or
//!   a dropped future can make it): unlocking checks the owner,
//!   invalidation compares the version, events are hints receivers re-read
//!   after, a session written or touched late expires by its TTL.
//!
//! A command that acts just before its caller gives up but whose answer comes
//! back after is reported as failed although it acted: no timeout can tell
//! the two apart. A lock taken that way ends with its lease.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::clients::{Client, Pool, SubscriberClient, WithOptions};
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::config::{
    Config as FredConfig, Options, ReconnectPolicy, ServerConfig, TlsConnector, UnresponsiveConfig,
};
use fred::types::{Builder, ClusterHash, CustomCommand, FromValue, Value};
use fred::util::{redis_keyslot, sha1_hash};
use rhizome_proto::config::{client_url, ConfigError, StateConfig};
use rhizome_proto::records::SSE_WAKE;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::redis_tls;
use crate::metrics;

/// A boxed, sendable future (see [`Redis::run`]).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// While Redis is down, one operation per interval is let through as a probe.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How often the health probe pings.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(250);
/// Commands queued in fred (its channel to the connection task), at most;
/// beyond that they fail at once.
const MAX_QUEUED_COMMANDS: usize = 1024;
const POOL_SIZE: usize = 4;
/// SSE wake-up hints buffered per receiver; a receiver that lags further
/// misses hints (readers also poll).
const WAKE_CAPACITY: usize = 1024;
/// How a script with a deadline says it ran too late.
const LATE: &str = "LATE";
/// Prepended to a script with a deadline: `ARGV[#ARGV]` is the last Redis-clock
/// microsecond at which its caller still waits.
const DEADLINE_GUARD: &str = r"
local rz_now = redis.call('TIME')
if tonumber(rz_now[1]) * 1000000 + tonumber(rz_now[2]) > tonumber(ARGV[#ARGV]) then
  return redis.error_reply('LATE its caller had given up')
end
";

/// A state-store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Redis did not answer within `op_timeout`, or is known to be down.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// Redis answered something unexpected.
    #[error("state store protocol error: {0}")]
    Protocol(String),
}

/// fred's own timeout for one command: a little shorter than `op_timeout`,
/// so that fred's fires first and marks the command abandoned (see the module
/// docs); `run` polls fred's future first, so ties go to fred too.
pub fn command_timeout(op_timeout: Duration) -> Duration {
    op_timeout - (op_timeout / 10).min(Duration::from_millis(20))
}

/// A Lua script run by [`Redis::eval`] (`EVALSHA`, loaded again on `NOSCRIPT`).
#[derive(Debug)]
pub struct Script {
    lua: String,
    sha1: String,
    deadline: bool,
}

impl Script {
    /// A script that may act late without harm (it checks what it changes).
    pub fn new(lua: &str) -> Self {
        Script::build(lua.to_string(), false)
    }

    /// A script that must not act once its caller has given up: it receives,
    /// after its own arguments, the deadline [`Redis::eval`] computes, and
    /// fails with `LATE` past it. Its own arguments are `ARGV[1]` onwards as
    /// usual; it must not read `ARGV[#ARGV]`.
    pub fn with_deadline(lua: &str) -> Self {
        Script::build(format!("{DEADLINE_GUARD}{lua}"), true)
    }

    fn build(lua: String, deadline: bool) -> Self {
        Script {
            sha1: sha1_hash(&lua),
            lua,
            deadline,
        }
    }
}

/// The node's Redis client.
#[derive(Debug)]
pub struct Redis {
    pool: Pool,
    subscriber: SubscriberClient,
    /// Subscribed to [`SSE_WAKE`] only.
    hints: SubscriberClient,
    /// The stream ids received on [`SSE_WAKE`].
    wakes: broadcast::Sender<String>,
    op_timeout: Duration,
    command_timeout: Duration,
    down: AtomicBool,
    /// Set once the first operation succeeded (readiness gate).
    reached: AtomicBool,
    /// Set once the event subscription is up and caches were resynced.
    subscribed: AtomicBool,
    /// Set once the hint connection subscribed to [`SSE_WAKE`].
    hinted: AtomicBool,
    last_probe_ms: AtomicU64,
    started: Instant,
    /// Counts returns from an outage: caches and kept tokens resync then.
    recoveries: tokio::sync::watch::Sender<u64>,
    /// What [`Redis::check_tls`] connects to, over TLS only.
    tls_check: Option<TlsCheck>,
}

/// The TLS settings and the first address of a `rediss://` deployment.
struct TlsCheck {
    tls: Arc<rustls::ClientConfig>,
    host: String,
    port: u16,
}

impl std::fmt::Debug for TlsCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsCheck({}:{})", self.host, self.port)
    }
}

/// The server of a plain URL, or the first sentinel of a Sentinel URL.
fn first_host(server: &ServerConfig) -> Option<(String, u16)> {
    let first = match server {
        ServerConfig::Centralized { server } => Some(server),
        ServerConfig::Sentinel { hosts, .. } | ServerConfig::Clustered { hosts, .. } => {
            hosts.first()
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }?;
    Some((first.host.to_string(), first.port))
}

/// fred's config for `url`: a server, or (Sentinel) the sentinels to ask
/// for the master, asked again after every reconnection, so a node follows
/// a promoted replica by itself.
fn fred_config(url: &str) -> Result<FredConfig, StateError> {
    FredConfig::from_url(&client_url(url))
        .map_err(|e| StateError::Protocol(format!("redis_url: {}", e.details())))
}

impl Redis {
    /// Builds (does not connect) a client for `cfg.redis_url`, over TLS with
    /// `tls` when the URL asks for it.
    pub fn new(
        cfg: &StateConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, StateError> {
        let mut config = fred_config(&cfg.redis_url)?;
        let tls_check = match tls {
            Some(tls) => {
                config.tls =
                    Some(TlsConnector::from(tokio_rustls::TlsConnector::from(tls.clone())).into());
                first_host(&config.server).map(|(host, port)| TlsCheck { tls, host, port })
            }
            None => None,
        };
        // A node may start before Redis: keep reconnecting instead of giving up.
        config.fail_fast = false;
        let op_timeout = cfg.op_timeout;
        let command_timeout = command_timeout(op_timeout);
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = op_timeout.max(Duration::from_secs(1));
                c.internal_command_timeout = op_timeout.max(Duration::from_secs(1));
                c.max_command_buffer_len = MAX_QUEUED_COMMANDS;
                // Never replay a command written on a connection that broke.
                c.max_command_attempts = 1;
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(op_timeout.max(Duration::from_millis(500)) * 4),
                    interval: Duration::from_millis(250),
                };
            })
            .with_performance_config(|p| {
                // For the few commands not sent through `client()` (subscribe).
                p.default_command_timeout = command_timeout;
                p.broadcast_channel_capacity = 1024;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 1000, 2));
        let pool = builder
            .build_pool(POOL_SIZE)
            .map_err(|e| StateError::Protocol(e.details().to_string()))?;
        let subscriber = builder
            .build_subscriber_client()
            .map_err(|e| StateError::Protocol(e.details().to_string()))?;
        let hints = builder
            .build_subscriber_client()
            .map_err(|e| StateError::Protocol(e.details().to_string()))?;
        metrics::redis_up(false);
        Ok(Redis {
            pool,
            subscriber,
            hints,
            wakes: broadcast::channel(WAKE_CAPACITY).0,
            op_timeout,
            command_timeout,
            down: AtomicBool::new(false),
            reached: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            hinted: AtomicBool::new(false),
            last_probe_ms: AtomicU64::new(0),
            started: Instant::now(),
            recoveries: tokio::sync::watch::channel(0).0,
            tls_check,
        })
    }

    /// Over TLS, checks once that the first server (or sentinel) and this
    /// node accept each other's certificates ([`redis_tls::check`]).
    pub async fn check_tls(&self) -> Result<(), ConfigError> {
        match &self.tls_check {
            Some(c) => redis_tls::check(c.tls.clone(), &c.host, c.port).await,
            None => Ok(()),
        }
    }

    /// Starts the connections and the health probe. Returns at once: a node
    /// starts even while Redis is down, and `/readyz` says so. Once connected,
    /// the probe pings every [`HEALTH_INTERVAL`] so `rhizome_redis_up` and
    /// readiness follow reality even when no request needs Redis.
    pub fn start(self: &Arc<Self>, shutdown: CancellationToken) {
        let _connections = self.pool.connect_pool();
        let _subscriber = self.subscriber.connect();
        let _resubscriber = self.subscriber.manage_subscriptions();
        let _hints = self.hints.connect();
        let _rehints = self.hints.manage_subscriptions();
        tokio::spawn(self.clone().forward_wakes(shutdown.clone()));
        let this = self.clone();
        tokio::spawn(async move {
            // Until fred first connects, a (fail-fast) ping is only refused.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = this.wait_connected() => {}
            }
            loop {
                let client = this.client();
                let _ = this.run("ping", client.ping::<()>(None)).await;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
                }
            }
            let _ = this.pool.quit().await;
            let _ = this.subscriber.quit().await;
        });
    }

    /// Subscribes the hint connection to [`SSE_WAKE`] (fred resubscribes it
    /// after every reconnection) and forwards each stream id to
    /// [`Redis::wakeups`] receivers until `shutdown`.
    async fn forward_wakes(self: Arc<Self>, shutdown: CancellationToken) {
        let mut messages = self.hints.message_rx();
        let mut backoff = Duration::from_millis(100);
        loop {
            let subscribed = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.hints.subscribe(SSE_WAKE) => r,
            };
            match subscribed {
                Ok(()) => {
                    self.hinted.store(true, Ordering::Release);
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e.details(), "subscribing to SSE wake-ups failed; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = messages.recv() => m,
            };
            match message {
                Ok(m) if m.channel == SSE_WAKE => {
                    if let Some(stream) = m.value.as_string() {
                        // No receiver is fine: nobody is tailing right now.
                        let _ = self.wakes.send(stream);
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        let _ = self.hints.quit().await;
    }

    /// Receives SSE wake-up hints: the id of each stream appended to, on any
    /// node. At most once: a lagging receiver misses some.
    pub fn wakeups(&self) -> broadcast::Receiver<String> {
        self.wakes.subscribe()
    }

    /// Completes once every pooled connection is up (fred keeps retrying).
    pub async fn wait_connected(&self) {
        while self.pool.wait_for_connect().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client for one command run under [`Redis::run`]: a connected one of
    /// the pool, with fred's per-command `fail_fast`, no second attempt and
    /// fred's own timeout ending before `run`'s (see the module docs).
    pub fn client(&self) -> WithOptions<Client> {
        self.client_for(self.command_timeout)
    }

    fn client_for(&self, timeout: Duration) -> WithOptions<Client> {
        self.pool.next_connected().with_options(&Options {
            fail_fast: true,
            max_attempts: Some(1),
            timeout: Some(timeout),
            ..Options::default()
        })
    }

    /// A client whose command fred gives up at `give_up`; an error when that
    /// has passed (fred reads a zero timeout as none).
    fn client_until(&self, give_up: Instant) -> Result<WithOptions<Client>, FredError> {
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FredError::new(ErrorKind::Timeout, "no time left"));
        }
        Ok(self.client_for(left))
    }

    /// True once Redis has answered and both subscriptions are up.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::Acquire)
            && self.subscribed.load(Ordering::Acquire)
            && self.hinted.load(Ordering::Acquire)
    }

    /// Records that the event subscription is up (readiness gate).
    pub fn mark_subscribed(&self) {
        self.subscribed.store(true, Ordering::Release);
    }

    /// Runs one operation under the breaker, `op_timeout` and metrics. Its
    /// commands come from [`Redis::client`], so fred gives them up first.
    ///
    /// The operation runs boxed: a fred command's future is about 15 KiB, and
    /// held inline it would make every future that may await a Redis
    /// operation that large — the proxy's request future included, copied
    /// whole each time it moves, on every request, Redis or not.
    pub fn run<'a, T, F>(&'a self, op: &'static str, fut: F) -> BoxFuture<'a, Result<T, StateError>>
    where
        F: Future<Output = Result<T, FredError>> + Send + 'a,
        T: Send + 'a,
    {
        Box::pin(self.run_inline(op, fut))
    }

    async fn run_inline<T, F>(&self, op: &'static str, fut: F) -> Result<T, StateError>
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

    /// Runs `script` on `keys` and `args` under [`Redis::run`]. All its steps
    /// (`TIME` for a deadline, `EVALSHA`, `SCRIPT LOAD` and `EVALSHA` again
    /// after `NOSCRIPT`) share one budget that fred ends before `run` does.
    /// Arguments may be binary (`Bytes`, `Vec<u8>`) as well as text.
    pub async fn eval<R: FromValue + Send>(
        &self,
        op: &'static str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<impl Into<Value>>,
    ) -> Result<R, StateError> {
        let args = args.into_iter().map(Into::into).collect();
        // Taken before `run` starts its clock, so it falls before run's end.
        let give_up = Instant::now() + self.command_timeout;
        // Every step goes to the node that holds the keys (Redis Cluster).
        let node = keys.first().map_or(ClusterHash::Random, |k| {
            ClusterHash::Custom(redis_keyslot(k.as_bytes()))
        });
        self.run(op, self.eval_steps(script, keys, args, give_up, node))
            .await
    }

    async fn eval_steps<R: FromValue + Send>(
        &self,
        script: &Script,
        keys: Vec<String>,
        mut args: Vec<Value>,
        give_up: Instant,
        node: ClusterHash,
    ) -> Result<R, FredError> {
        if script.deadline {
            args.push(
                self.redis_deadline(give_up, &node)
                    .await?
                    .to_string()
                    .into(),
            );
        }
        let mut call: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
        call.push(script.sha1.clone().into());
        call.push(keys.len().to_string().into());
        call.extend(keys.into_iter().map(Value::from));
        call.extend(args);
        let evalsha = || CustomCommand::new_static("EVALSHA", node.clone(), false);
        let first = self
            .client_until(give_up)?
            .custom(evalsha(), call.clone())
            .await;
        let result = match first {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                let load = CustomCommand::new_static("SCRIPT", node.clone(), false);
                let lua = vec!["LOAD".to_string(), script.lua.clone()];
                self.client_until(give_up)?
                    .custom::<Value, _>(load, lua)
                    .await?;
                self.client_until(give_up)?.custom(evalsha(), call).await
            }
            other => other,
        };
        result.map_err(|e| {
            if e.details().starts_with(LATE) {
                FredError::new(
                    ErrorKind::Timeout,
                    "the script ran after its caller gave up",
                )
            } else {
                e
            }
        })
    }

    /// The last Redis-clock microsecond at which a caller giving up at
    /// `give_up` still waits: Redis's `TIME` plus what is left of the budget
    /// once the answer is back. Redis read its clock before that, so this is
    /// never later than the real give-up, whatever the local clock says.
    async fn redis_deadline(&self, give_up: Instant, node: &ClusterHash) -> Result<u64, FredError> {
        let time = CustomCommand::new_static("TIME", node.clone(), false);
        let now: Vec<String> = self
            .client_until(give_up)?
            .custom(time, Vec::<String>::new())
            .await?;
        let left = give_up.saturating_duration_since(Instant::now());
        let bad = || FredError::new(ErrorKind::Protocol, "unexpected TIME answer");
        let [secs, micros] = now.as_slice() else {
            return Err(bad());
        };
        let secs: u64 = secs.parse().map_err(|_| bad())?;
        let micros: u64 = micros.parse().map_err(|_| bad())?;
        let left = u64::try_from(left.as_micros()).unwrap_or(u64::MAX);
        Ok(secs
            .saturating_mul(1_000_000)
            .saturating_add(micros)
            .saturating_add(left))
    }

    /// Loads `script` (`SCRIPT LOAD`, on every primary of a cluster) so that
    /// its calls are a plain `EVALSHA`. A late load is harmless.
    pub async fn load(&self, script: &Script) -> Result<(), StateError> {
        use fred::interfaces::LuaInterface;
        let client = self.pool.next_connected();
        self.run(
            "script_load",
            client.script_load_cluster::<(), _>(script.lua.clone()),
        )
        .await
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
        let client = self.client();
        self.run("publish", client.publish::<(), _, _>(channel, payload))
            .await
    }

    /// Subscribes the dedicated connection to `channel`. (Resubscribing is
    /// what the subscriber does after every reconnection anyway, so a late
    /// `SUBSCRIBE` is harmless.)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fred_gives_up_before_run_and_never_waits_forever() {
        for ms in [1, 10, 250, 5_000] {
            let op = Duration::from_millis(ms);
            let fred = command_timeout(op);
            // Zero would mean "no timeout" to fred.
            assert!(!fred.is_zero() && fred < op, "{op:?} -> {fred:?}");
        }
        assert_eq!(
            command_timeout(Duration::from_millis(250)),
            Duration::from_millis(230)
        );
    }

    #[test]
    fn a_sentinel_url_in_either_spelling_asks_every_sentinel_named() {
        for url in [
            "redis+sentinel://:pw@s1:26379/2?sentinelServiceName=m&node=s2:26380",
            "redis-sentinel://:pw@s1:26379/2?sentinelServiceName=m&node=s2:26380",
        ] {
            let config = fred_config(url).expect("a sentinel config");
            let ServerConfig::Sentinel {
                hosts,
                service_name,
            } = &config.server
            else {
                panic!("{url}: not a sentinel config: {:?}", config.server);
            };
            assert_eq!(service_name, "m");
            let hosts: Vec<(String, u16)> =
                hosts.iter().map(|h| (h.host.to_string(), h.port)).collect();
            assert!(hosts.contains(&("s1".into(), 26379)), "{hosts:?}");
            assert!(hosts.contains(&("s2".into(), 26380)), "{hosts:?}");
            assert_eq!(config.database, Some(2));
            assert_eq!(config.password.as_deref(), Some("pw"));
        }
    }

    #[test]
    fn a_cluster_url_seeds_from_every_node_named() {
        let config = fred_config("redis-cluster://:pw@h1:7000?node=h2:7001&node=h3:7002")
            .expect("a cluster config");
        let ServerConfig::Clustered { hosts, .. } = &config.server else {
            panic!("not a cluster config: {:?}", config.server);
        };
        let mut ports: Vec<u16> = hosts.iter().map(|h| h.port).collect();
        ports.sort_unstable();
        assert_eq!(ports, vec![7000, 7001, 7002]);
        assert_eq!(config.password.as_deref(), Some("pw"));
    }
}
