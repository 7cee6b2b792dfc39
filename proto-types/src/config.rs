//! The configuration model: one typed tree, deserialized from TOML, environment
//! and CLI layers by the node, then [`Config::validate`]d as a whole so that
//! `check-config` can report *every* problem with the path of its field
//! (`routes[1].credentials[0]: unknown credential "x"`). Unknown keys are
//! errors, and so is any key this build would accept and then ignore: one that
//! another backend, mode or kind uses, or one whose feature is not built yet
//! (the table in `unsupported.rs`).

mod coordinator;
mod credential;
mod limits;
mod log;
mod redis;
mod route;
mod unsupported;
mod validate;

use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

pub use credential::{
    ClientAuth, CredentialConfig, CredentialKind, CredentialSpec, InjectConfig, JwtAlgorithm,
};
pub use limits::{OnStoreError, Rate};
pub use log::{LogConfig, LogFormatSetting, Rotation, MIN_ROTATION_SIZE};
pub use redis::{
    client_url, deployment, url_uses_tls, RedisDeployment, RedisTls, REDIS_SCHEMES, SENTINEL_NODE,
    SENTINEL_SERVICE_NAME,
};
pub use route::{
    DisconnectPolicy, RouteConfig, SessionMode, SseConfig, UpstreamConfig, UpstreamProtocol,
};
pub use unsupported::unmodelled_key;
pub use validate::ConfigError;

use crate::Secret;

/// The whole configuration of a node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity, listeners and shutdown of this node.
    #[serde(default)]
    pub node: NodeConfig,
    /// Size and time limits on every read from clients.
    #[serde(default)]
    pub limits: Limits,
    /// Log format, and the log file with its rotation.
    #[serde(default)]
    pub log: LogConfig,
    /// Where shared state lives.
    #[serde(default)]
    pub state: StateConfig,
    /// Who owns the refreshing of each credential.
    #[serde(default)]
    pub coordinator: CoordinatorConfig,
    /// Clients allowed to use the proxy.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Upstream credentials whose tokens the node injects.
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
    /// Named groups of upstream targets.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// Path prefixes mapped to upstreams and credential pools.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// `[node]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Node identity in logs, admin output and the cluster; default: hostname.
    pub id: Option<String>,
    /// Proxy traffic listener.
    pub listen: SocketAddr,
    /// Admin, health and metrics listener.
    pub admin_listen: SocketAddr,
    /// Bearer token required by `/admin/v1/*`; none means the admin API is open.
    pub admin_token: Option<Secret>,
    /// Path of the request-intent API on the proxy listener, matched before routes.
    pub intent_path: String,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Also serve absolute-form requests (`curl -x`) as a forward proxy:
    /// routed by their host to routes that name one, anything else refused.
    pub forward_proxy: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            admin_token: None,
            intent_path: "/v1/proxy".into(),
            shutdown_grace: Duration::from_secs(30),
            forward_proxy: false,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line and headers) accepted; larger → 431.
    pub max_header_bytes: usize,
    /// Time a client has to send the whole request head.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request body; routes may lower it.
    pub max_body: ByteSize,
    /// Connections served at once per listener; beyond it, accepting pauses.
    pub max_connections: usize,
    /// What client rate and stream limits do while Redis is unreachable.
    pub on_store_error: OnStoreError,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 65536,
            header_read_timeout: Duration::from_secs(10),
            max_body: ByteSize::mib(10),
            max_connections: 10_000,
            on_store_error: OnStoreError::Open,
        }
    }
}

/// `state.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateBackend {
    /// In-process state: the embedded single-node default.
    Memory,
    /// Shared state in Redis, for a cluster.
    Redis,
}

/// `[state]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Where shared state lives.
    pub backend: StateBackend,
    /// Redis URL when `backend = "redis"`: one of [`REDIS_SCHEMES`].
    pub redis_url: String,
    /// Verification and client certificate of a `rediss://` connection.
    pub tls: Option<RedisTls>,
    /// Upper bound of one state-store operation.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// Optional key encrypting tokens at rest.
    pub encryption_key: Option<Secret>,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            tls: None,
            op_timeout: Duration::from_millis(250),
            encryption_key: None,
        }
    }
}

/// `coordinator.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoordinatorMode {
    /// A single node owns every credential.
    Embedded,
    /// Several nodes; each refresh single-flight under a fenced Redis lock.
    RedisLock,
    /// Ownership assigned by the raft coordinator.
    Cluster,
}

/// `[coordinator]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    /// How credential ownership is decided.
    pub mode: CoordinatorMode,
    /// Coordinator replicas (`http://host:port`), for `mode = "cluster"`.
    pub endpoints: Vec<String>,
    /// How often the node heartbeats the coordinator (cluster mode).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Silence after which the coordinator declares a node dead (cluster
    /// mode); the node itself steps down `node_ttl − 2 × heartbeat_interval`
    /// after its last acknowledged heartbeat.
    #[serde(with = "humantime_serde")]
    pub node_ttl: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            mode: CoordinatorMode::Embedded,
            endpoints: Vec::new(),
            heartbeat_interval: Duration::from_millis(500),
            node_ttl: Duration::from_secs(3),
        }
    }
}

/// `[[clients]]`: a client allowed to use the proxy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Client identity, used in logs and to bind sessions and streams.
    pub name: String,
    /// Hex SHA-256 digest of the client key (preferred: no key in the file).
    pub key_sha256: Option<String>,
    /// The key itself, usually as a secret reference.
    pub key: Option<Secret>,
    /// Sustained request rate (`"100/s"`, `"6000/m"`, `"10/h"`); none means
    /// unlimited, at no cost per request.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Requests the client may send at once on top of an idle period
    /// (GCRA burst); default: the rate per second, at least 1. Needs `rate`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Concurrent SSE (long-lived) responses the client may hold, cluster-wide
    /// with Redis; none means unlimited.
    #[serde(default)]
    pub max_streams: Option<u32>,
}

impl ClientConfig {
    /// The burst in effect: the configured one, else the rate per second.
    pub fn effective_burst(&self) -> Option<u32> {
        self.rate
            .map(|r| self.burst.unwrap_or_else(|| r.per_second()))
    }
}
