//! The node's shared runtime state ([`App`]): routes, credentials, client
//! keys, sessions and the state backend, built once from a validated config,
//! and the handling of shared-state events that keep local caches fresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use rhizome_proto::config::ConfigError;
use rhizome_proto::records::StateEvent;
use rhizome_proto::Config;

use crate::auth::ClientKeys;
use crate::credentials::{Credential, Credentials, Role};
use crate::limits::Limiter;
use crate::ownership::{self, Ownership};
use crate::routing::Router;
use crate::session::Sessions;
use crate::shutdown::Shutdown;
use crate::sse::replay::Replay;
use crate::state::events::{EventSink, Work};
use crate::state::SharedState;
use crate::upstream::Upstream;
use crate::{admin, config, upstream};

/// Everything a running node shares between its listeners and tasks.
#[derive(Debug)]
pub struct App {
    /// This node's id.
    pub node_id: String,
    /// Path of the request-intent API.
    pub intent_path: String,
    /// Absolute-form requests are served as a forward proxy.
    pub forward_proxy: bool,
    /// Global body limit (`limits.max_body`).
    pub max_body: u64,
    /// Routes.
    pub router: Router,
    /// Credentials.
    pub credentials: Credentials,
    /// Client keys.
    pub clients: ClientKeys,
    /// Per-client rate and stream limits.
    pub limits: Limiter,
    /// Digest of the admin token, if one is set.
    pub admin_token_digest: Option<[u8; 32]>,
    /// Metrics exposition, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// The node's shutdown signal.
    pub shutdown: Shutdown,
    /// Sessions, tokens and events in shared state.
    pub state: SharedState,
    /// MCP sessions.
    pub sessions: Arc<Sessions>,
    /// Who refreshes which credential.
    pub ownership: Arc<dyn Ownership>,
    /// Recorded SSE streams and resumes (`sse.replay = true` routes).
    pub replay: Replay,
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
        let node_id = config::node_id(config);
        let encryption_key = config::resolve_optional(config.state.encryption_key.as_ref())
            .map_err(|e| vec![ConfigError::new("state.encryption_key", e.to_string())])?;
        let state = SharedState::build(
            &config.state,
            config.coordinator.mode,
            &node_id,
            encryption_key.as_ref(),
        )
        .map_err(|e| vec![e])?;
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
        let credentials =
            Credentials::from_config(&config.credentials, &token_client, state.tokens.as_ref())
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
        let limits = Limiter::new(
            &config.clients,
            config.limits.on_store_error,
            state.redis.clone(),
            &node_id,
        );
        let sessions = Arc::new(Sessions::new(state.sessions.clone(), state.redis.clone()));
        let replay = Replay::new(state.replay.clone(), &node_id);
        let ownership = ownership::build(
            &config.coordinator,
            &node_id,
            credentials.iter().cloned().collect(),
            shutdown.tasks().clone(),
        );
        Ok(App {
            node_id,
            intent_path: config.node.intent_path.clone(),
            forward_proxy: config.node.forward_proxy,
            max_body: config.limits.max_body.as_u64(),
            router,
            credentials,
            clients,
            limits,
            admin_token_digest: admin_token.as_ref().map(admin::token_digest),
            metrics,
            shutdown,
            state,
            sessions,
            ownership,
            replay,
            ready: AtomicBool::new(false),
        })
    }

    /// Marks the node as serving.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// True once the node serves traffic and its state backend has answered,
    /// until it starts shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutdown.is_triggered() && self.state.reached()
    }
}

impl App {
    /// The owner of `cred` (cluster mode) refreshes for the cluster, in the
    /// background so that events keep flowing; another node remembers that
    /// peers are waiting, in case it becomes the owner next. A node on the
    /// lock protocol (degraded) answers an explicit ask too (`asked`): a
    /// reader elsewhere may be waiting for an owner cut off from the
    /// coordinator.
    fn serve_peers(&self, cred: &Arc<Credential>, asked: bool) {
        let role = cred.role();
        if role == Role::Owner || (asked && role == Role::Any) {
            self.shutdown.tasks().spawn(cred.clone().serve_peers());
        } else {
            cred.note_peer_ask();
        }
    }
}

impl EventSink for App {
    fn event(&self, event: StateEvent) -> Work<'_> {
        Box::pin(async move {
            match event {
                StateEvent::Updated {
                    credential,
                    version,
                } => {
                    if let Some(c) = self.credentials.get(&credential) {
                        if c.cached_version() != Some(version) {
                            c.load_shared().await;
                        }
                    }
                }
                StateEvent::Invalidated {
                    credential,
                    version,
                } => {
                    if let Some(c) = self.credentials.get(&credential) {
                        c.invalidated_elsewhere(version);
                        self.serve_peers(c, false);
                    }
                }
                StateEvent::RefreshRequest { credential } => {
                    if let Some(c) = self.credentials.get(&credential) {
                        self.serve_peers(c, true);
                    }
                }
                StateEvent::SessionDeleted { id } => self.sessions.forget_local(&id),
            }
        })
    }

    fn resync(&self) -> Work<'_> {
        Box::pin(async move {
            self.sessions.clear_local();
            for c in self.credentials.iter() {
                c.load_shared().await;
            }
        })
    }
}
