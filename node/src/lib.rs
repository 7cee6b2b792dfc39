//! Rhizome node: a credential-injecting reverse proxy. Clients send plain HTTP;
//! the node authenticates them, picks an upstream credential, injects its token,
//! forwards, retries once on 401 with a fresh token and streams the answer back.
//!
//! # Layout
//! - [`config`]: loading (file < env < CLI) and secret resolution; the model
//!   itself lives in `rhizome_proto::config`.
//! - [`server`]: the proxy listener (HTTP/1.1 + h2c, limits, graceful drain).
//! - [`proxy`]: the request path as named phases, and the request-intent API.
//! - [`routing`]: the route table (longest prefix, optional host).
//! - [`auth`]: client keys, compared as SHA-256 digests in constant time.
//! - [`limits`]: per-client request rates and stream caps (local or in Redis).
//! - [`credentials`]: token sources, the single-flight token cache, cooldown,
//!   pools and the owner's refresh-ahead loop.
//! - [`upstream`]: the one pooled HTTP client, targets and passive ejection,
//!   header hygiene.
//! - [`sse`]: incremental SSE parser and the relay that forwards events as
//!   soon as they are complete.
//! - [`ownership`]: who refreshes which credential (embedded, redis-lock),
//!   under which fencing epoch; starts and stops refresh work per credential.
//! - [`session`]: MCP session mapping (proxy ids, pinned targets, local cache).
//! - [`state`]: shared state: sessions (memory or Redis), token records,
//!   locks and events in Redis.
//! - [`admin`]: health, metrics, credential and session admin API, OpenAPI document.
//! - [`metrics`]: every metric's name, help and labels.
//! - [`shutdown`], [`telemetry`], [`error`]: process plumbing.

pub mod admin;
pub mod auth;
pub mod config;
pub mod credentials;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod ownership;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod sse;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;

mod app;

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use rhizome_proto::config::ConfigError;
use rhizome_proto::Config;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;
pub use app::App;

/// Error type of bodies on the proxy path.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type on the proxy path.
pub type BoxBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

/// The bound listeners of a node.
#[derive(Debug)]
pub struct Listeners {
    /// Proxy traffic.
    pub proxy: TcpListener,
    /// Admin, health and metrics.
    pub admin: TcpListener,
}

/// Why a node could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigError>),
    /// A listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs a node on bound listeners until `shutdown` triggers, then drains
/// in-flight requests for up to `node.shutdown_grace`.
pub async fn run(
    config: Config,
    listeners: Listeners,
    metrics: Option<PrometheusHandle>,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let app = Arc::new(App::build(&config, metrics, shutdown.clone()).map_err(RunError::Config)?);
    let proxy_addr = listeners.proxy.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;

    if let Some(redis) = &app.state.redis {
        redis
            .check_tls()
            .await
            .map_err(|e| RunError::Config(vec![e]))?;
        redis.start(shutdown.token());
        state::events::spawn(
            redis.clone(),
            app.state.tokens.clone(),
            app.clone(),
            shutdown.token(),
        );
    }
    shutdown
        .tasks()
        .spawn(app.sessions.clone().run_gauge(shutdown.token()));
    app.ownership.start(&shutdown.token());
    app.limits.start(shutdown.tasks(), shutdown.token());

    let grace = config.node.shutdown_grace;
    let router = admin::router(app.clone());
    let admin = tokio::spawn(server::serve(
        listeners.admin,
        move |_| hyper_util::service::TowerToHyperService::new(router.clone()),
        config.limits.clone(),
        shutdown.clone(),
        grace,
    ));

    tracing::info!(listener = "proxy", addr = %proxy_addr, "listening");
    tracing::info!(listener = "admin", addr = %admin_addr, "listening");
    tracing::info!(node = %app.node_id, routes = config.routes.len(), credentials = config.credentials.len(), "node ready");
    app.mark_ready();

    let proxy = proxy::Proxy::new(app.clone());
    let make = move |peer| {
        let proxy = proxy.clone();
        hyper::service::service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, peer).await) }
        })
    };
    // Both listeners drain within the same grace period (they run side by
    // side); what is left after it gets a short, bounded wait.
    server::serve(
        listeners.proxy,
        make,
        config.limits.clone(),
        shutdown.clone(),
        grace,
    )
    .await;
    let leftover = std::time::Duration::from_secs(2);
    if tokio::time::timeout(leftover, admin).await.is_err() {
        tracing::warn!("admin listener still draining at exit");
    }
    shutdown.tasks().close();
    if tokio::time::timeout(leftover, shutdown.tasks().wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks still running at exit");
    }
    tracing::info!("node stopped");
    Ok(())
}
