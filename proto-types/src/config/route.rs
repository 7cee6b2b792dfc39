//! `[[upstreams]]` and `[[routes]]`: where requests go and with which credentials.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

/// Protocol spoken to an upstream's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 for `http://`, ALPN (h2 or HTTP/1.1) for `https://`.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only: prior knowledge (h2c) for `http://`, ALPN h2 for `https://`.
    Http2,
}

/// `[[upstreams]]`: a named group of interchangeable targets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name used by routes.
    pub name: String,
    /// Base URLs (`http://` or `https://`, optional base path).
    pub targets: Vec<String>,
    /// Protocol to speak.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Upper bound of establishing a connection (TCP and TLS).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Extra PEM roots trusted for this upstream (besides the Web PKI roots);
    /// only with an `https://` target.
    pub ca_file: Option<PathBuf>,
    /// Consecutive connect errors or 5xx answers that eject a target.
    #[serde(default = "default_eject_after")]
    pub eject_after: u32,
    /// Base ejection time; it doubles for each repeated ejection, up to 8×.
    #[serde(default = "default_eject_time", with = "humantime_serde")]
    pub eject_time: Duration,
    /// Idle pooled connections are closed after this.
    #[serde(default = "default_pool_idle_timeout", with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per target.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle_per_target: usize,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_eject_after() -> u32 {
    5
}
fn default_eject_time() -> Duration {
    Duration::from_secs(10)
}
fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_pool_max_idle() -> usize {
    64
}

/// `session` of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// No session handling.
    #[default]
    None,
    /// MCP Streamable HTTP session mapping.
    Mcp,
}

/// What happens to the upstream when an SSE client goes away. The default is
/// what this build does: cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectPolicy {
    /// Keep reading upstream into the replay buffer for `detach_grace`
    /// (only with `replay = true`).
    Detach,
    /// Close the upstream at once.
    #[default]
    Cancel,
}

/// `[routes.sse]`. With `replay = true` streams are recorded for
/// `Last-Event-ID` resumes on any node; `buffer_events`, `buffer_ttl`,
/// `on_client_disconnect = "detach"`, `detach_grace` and `producer_lease`
/// only apply then (refused otherwise).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SseConfig {
    /// Keep a replay buffer for `Last-Event-ID` resumption.
    pub replay: bool,
    /// Events kept per stream.
    pub buffer_events: usize,
    /// Age after which buffered events are dropped.
    #[serde(with = "humantime_serde")]
    pub buffer_ttl: Duration,
    /// Upstream behaviour when the client disconnects.
    pub on_client_disconnect: DisconnectPolicy,
    /// How long a detached upstream keeps being read.
    #[serde(with = "humantime_serde")]
    pub detach_grace: Duration,
    /// A dead producer's stream is taken over after this.
    #[serde(with = "humantime_serde")]
    pub producer_lease: Duration,
    /// A stream with no upstream bytes for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A `:` comment is sent to the client after this much silence.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Largest single event (or line) accepted from upstream; larger closes the stream.
    pub max_event_bytes: ByteSize,
}

impl Default for SseConfig {
    fn default() -> Self {
        SseConfig {
            replay: false,
            buffer_events: 1000,
            buffer_ttl: Duration::from_secs(300),
            on_client_disconnect: DisconnectPolicy::Cancel,
            detach_grace: Duration::from_secs(30),
            producer_lease: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(15),
            max_event_bytes: ByteSize::mib(1),
        }
    }
}

/// `[[routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used by the intent API, logs and metrics.
    pub name: String,
    /// Requests whose path starts with this go here (longest prefix wins).
    pub path_prefix: String,
    /// Only requests for this host (without port) match, when set.
    pub host: Option<String>,
    /// Remove `path_prefix` (keeping a leading `/`) before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Name of the upstream.
    pub upstream: String,
    /// Credential pool, used round-robin; empty means nothing is injected.
    #[serde(default)]
    pub credentials: Vec<String>,
    /// Paths that skip client auth: exact, or a prefix when ending in `/` or `*`.
    #[serde(default)]
    pub public_paths: Vec<String>,
    /// Upper bound from sending the request to receiving the response head.
    #[serde(default = "default_route_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Bodies up to this size are kept so a 401 can be retried with a fresh token.
    #[serde(default = "default_retry_body_limit")]
    pub retry_body_limit: ByteSize,
    /// Largest request body on this route; at most `limits.max_body`.
    pub max_body: Option<ByteSize>,
    /// Session handling.
    #[serde(default)]
    pub session: SessionMode,
    /// MCP sessions unused this long expire (sliding); only with `session = "mcp"`.
    #[serde(default = "default_session_idle_ttl", with = "humantime_serde")]
    pub session_idle_ttl: Duration,
    /// Server-sent events handling.
    #[serde(default)]
    pub sse: SseConfig,
}

fn default_route_timeout() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_session_idle_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_retry_body_limit() -> ByteSize {
    ByteSize::mib(1)
}
