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
//! - [`credentials`]: token sources, the single-flight token cache, cooldown,
//!   pools and the owner's refresh-ahead loop.
//! - [`upstream`]: the one pooled HTTP client, targets and passive ejection,
//!   header hygiene.
//! - [`sse`]: incremental SSE parser and the relay that forwards events as
//!   soon as they are complete.
//! - [`admin`]: health, metrics, credential admin API, OpenAPI document.
//! - [`metrics`]: every metric's name, help and labels.
//! - [`shutdown`], [`telemetry`], [`error`]: process plumbing.

pub mod admin;
pub mod auth;
pub mod config;
pub mod credentials;
pub mod error;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod shutdown;
pub mod sse;
pub mod telemetry;
pub mod upstream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use rhizome_proto::config::ConfigError;
use rhizome_proto::Config;
use tokio::net::TcpListener;

use crate::auth::ClientKeys;
use crate::credentials::Credentials;
use crate::routing::Router;
use crate::shutdown::Shutdown;
use crate::upstream::Upstream;

/// Error type of bodies on the proxy path.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type on the proxy path.
pub type BoxBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

/// Everything a running node shares between its listeners and tasks.
#[derive(Debug)]
pub struct App {
    /// This node's id.
    pub node_id: String,
    /// Path of the request-intent API.
    pub intent_path: String,
    /// Global body limit (`limits.max_body`).
    pub max_body: u64,
    /// Routes.
    pub router: Router,
    /// Credentials.
    pub credentials: Credentials,
    /// Client keys.
    pub clients: ClientKeys,
    /// Digest of the admin token, if one is set.
    pub admin_token_digest: Option<[u8; 32]>,
    /// Metrics exposition, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// The node's shutdown signal.
    pub shutdown: Shutdown,
    ready: AtomicBool,
}

impl App {
    /// Builds the node's state from a validated config: resolves secrets,
    /// parses URLs and keys. Performs no network I/O; errors name the field.
    pub fn build(
        config: &Config,
        metrics: Option<PrometheusHandle>,
        shutdown: Shutdown,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let token_client = upstream::client::build(&upstream::client::ClientSettings::default())
            .map_err(|e| vec![ConfigError::new("(tls)", e.to_string())])?;
        let mut upstreams = HashMap::new();
        for (i, u) in config.upstreams.iter().enumerate() {
            match Upstream::from_config(i, u) {
                Ok(up) => {
                    upstreams.insert(u.name.clone(), Arc::new(up));
                }
                Err(e) => errors.extend(e),
            }
        }
        let credentials = Credentials::from_config(&config.credentials, &token_client)
            .unwrap_or_else(|e| {
                errors.extend(e);
                Credentials::default()
            });
        let clients = ClientKeys::from_config(&config.clients).unwrap_or_else(|e| {
            errors.extend(e);
            ClientKeys::default()
        });
        let admin_token = config::resolve_optional(config.node.admin_token.as_ref())
            .unwrap_or_else(|e| {
                errors.push(ConfigError::new("node.admin_token", e.to_string()));
                None
            });
        if !errors.is_empty() {
            return Err(errors);
        }
        let router = Router::from_config(
            &config.routes,
            &upstreams,
            &credentials,
            config.limits.max_body.as_u64(),
        )?;
        Ok(App {
            node_id: config::node_id(config),
            intent_path: config.node.intent_path.clone(),
            max_body: config.limits.max_body.as_u64(),
            router,
            credentials,
            clients,
            admin_token_digest: admin_token.as_ref().map(admin::token_digest),
            metrics,
            shutdown,
            ready: AtomicBool::new(false),
        })
    }

    /// True once the node serves traffic and until it starts shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutdown.is_triggered()
    }
}

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

    // Embedded mode: this node owns every credential and refreshes them ahead.
    crate::metrics::ownership_embedded();
    for cred in app.credentials.iter() {
        crate::metrics::credential_owned(&cred.name, true);
        shutdown
            .tasks()
            .spawn(cred.clone().refresh_ahead(shutdown.token()));
    }

    let admin = axum::serve(listeners.admin, admin::router(app.clone())).with_graceful_shutdown({
        let s = shutdown.clone();
        async move { s.triggered().await }
    });
    let admin = tokio::spawn(async move { admin.await });

    tracing::info!(listener = "proxy", addr = %proxy_addr, "listening");
    tracing::info!(listener = "admin", addr = %admin_addr, "listening");
    tracing::info!(node = %app.node_id, routes = config.routes.len(), credentials = config.credentials.len(), "node ready");
    app.ready.store(true, Ordering::Release);

    server::serve(
        listeners.proxy,
        proxy::Proxy::new(app.clone()),
        &config.limits,
        shutdown.clone(),
        config.node.shutdown_grace,
    )
    .await;
    shutdown.tasks().close();
    if tokio::time::timeout(config.node.shutdown_grace, shutdown.tasks().wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks still running at the end of the grace period");
    }
    match admin.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "admin listener failed"),
        Err(e) => tracing::warn!(error = %e, "admin task failed"),
    }
    tracing::info!("node stopped");
    Ok(())
}
