//! One running replica: the raft instance over the store, the leader's
//! liveness view, the pooled HTTP client, and what the HTTP handlers and
//! background tasks ask of them (who leads, is the leader's state current,
//! commit a command, the answer to a node). Also the start-up: open the
//! store, start raft, bootstrap the cluster from `peers`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{RaftMetrics, ServerState};
use rhizome_proto::coord::HeartbeatReply;

use crate::assign::{Applied, Command};
use crate::config::Config;
use crate::liveness::Liveness;
use crate::metrics;
use crate::network::{self, HttpClient, Network};
use crate::store::{self, StateMachineStore};
use crate::types::{Member, NodeId, Raft};
use crate::RunError;

/// Longest a command may take to commit before the caller gives up.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a new leader's caller waits for its first entry to apply.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Who answers node calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// This replica leads.
    Leader,
    /// Another replica leads, reachable at `url`.
    Follower {
        /// The leader's id.
        leader: NodeId,
        /// Its base URL.
        url: String,
    },
    /// No leader is known.
    NoLeader,
}

/// A command could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This replica does not lead (any more), or no quorum answered in time.
    #[error("{0}")]
    NoLeader(String),
    /// Raft stopped.
    #[error("raft failed: {0}")]
    Fatal(String),
}

/// A running replica.
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// The raft instance.
    pub raft: Raft,
    /// The applied state.
    pub sm: StateMachineStore,
    /// The leader's liveness timers.
    pub liveness: Liveness,
    /// The pooled client (raft RPCs share it) used to forward node calls.
    pub http: HttpClient,
    /// Renders `/metrics`; `None` when no recorder is installed.
    pub metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("id", &self.config.id)
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Opens the store in `data_dir`, starts raft and bootstraps the cluster.
    pub async fn start(
        config: Config,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Arc<App>, RunError> {
        let raft_config = Arc::new(config.openraft()?);
        let (log, sm) = store::open(&config.data_dir).await?;
        let http = network::http_client();
        let raft = Raft::new(
            config.id,
            raft_config,
            Network::new(http.clone()),
            log,
            sm.clone(),
        )
        .await
        .map_err(|e| RunError::Raft(e.to_string()))?;
        let app = Arc::new(App {
            config,
            raft,
            sm,
            liveness: Liveness::default(),
            http,
            metrics,
        });
        app.bootstrap().await?;
        Ok(app)
    }

    /// Initializes raft with every peer unless it already has state. Every
    /// replica does this with the same membership, which openraft allows;
    /// `NotAllowed` means the cluster already formed.
    async fn bootstrap(&self) -> Result<(), RunError> {
        let fatal = |e: &dyn std::fmt::Display| RunError::Raft(e.to_string());
        if self.raft.is_initialized().await.map_err(|e| fatal(&e))? {
            self.warn_if_peers_differ();
            tracing::info!(
                applied = self.sm.applied_index(),
                "raft state found: rejoining"
            );
            return Ok(());
        }
        let members: BTreeMap<NodeId, Member> = self
            .config
            .peers
            .iter()
            .map(|(id, url)| (*id, Member::new(url)))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => tracing::info!(replicas = self.config.peers.len(), "cluster initialized"),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                tracing::info!("cluster already initialized")
            }
            Err(e) => return Err(fatal(&e)),
        }
        Ok(())
    }

    /// Peers are read at bootstrap only; later the stored membership rules.
    fn warn_if_peers_differ(&self) {
        let m = self.raft.metrics().borrow().clone();
        let stored: BTreeMap<NodeId, String> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        if stored != self.config.peers {
            tracing::warn!(
                stored = ?stored,
                configured = ?self.config.peers,
                "peers differ from the membership stored at bootstrap, which stays in force"
            );
        }
    }

    /// The current raft metrics.
    pub fn raft_metrics(&self) -> RaftMetrics<NodeId, Member> {
        self.raft.metrics().borrow().clone()
    }

    /// The term this replica leads in, if it leads.
    pub fn leading_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.state == ServerState::Leader && m.current_leader == Some(self.config.id))
            .then_some(m.current_term)
    }

    /// Who answers node calls now.
    pub fn role(&self) -> Role {
        let m = self.raft.metrics();
        let m = m.borrow();
        match m.current_leader {
            Some(id) if id == self.config.id && m.state == ServerState::Leader => Role::Leader,
            Some(id) if id != self.config.id => {
                match m.membership_config.membership().get_node(&id) {
                    Some(node) => Role::Follower {
                        leader: id,
                        url: node.addr.trim_end_matches('/').to_string(),
                    },
                    None => Role::NoLeader,
                }
            }
            _ => Role::NoLeader,
        }
    }

    /// True when this replica leads and has taken office in its term (its
    /// assignments renewed, see [`crate::liveness`]), so its state includes
    /// everything committed before.
    pub fn leader_ready(&self) -> bool {
        self.leading_term()
            .is_some_and(|term| self.liveness.in_office(term))
    }

    /// Waits (briefly) until [`App::leader_ready`]; an error when this
    /// replica does not lead.
    pub async fn wait_leader_ready(&self) -> Result<(), WriteError> {
        let mut raft = self.raft.metrics();
        let mut office = self.liveness.watch_office();
        let end = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if self.leader_ready() {
                return Ok(());
            }
            if self.leading_term().is_none() {
                return Err(WriteError::NoLeader(
                    "this replica is not the leader".into(),
                ));
            }
            let changed = async {
                tokio::select! {
                    r = raft.changed() => r.is_ok(),
                    r = office.changed() => r.is_ok(),
                }
            };
            match tokio::time::timeout_at(end, changed).await {
                Ok(true) => {}
                Ok(false) => return Err(WriteError::Fatal("raft stopped".into())),
                Err(_) => {
                    return Err(WriteError::NoLeader(format!(
                        "the new leader did not take office within {READY_TIMEOUT:?}"
                    )))
                }
            }
        }
    }

    /// Commits `cmd` and waits until it is applied here.
    pub async fn write(&self, cmd: Command) -> Result<Applied, WriteError> {
        match tokio::time::timeout(COMMIT_TIMEOUT, self.raft.client_write(cmd)).await {
            Err(_) => Err(WriteError::NoLeader(format!(
                "not committed within {COMMIT_TIMEOUT:?}"
            ))),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => Err(
                WriteError::NoLeader(format!("leadership moved (leader now {:?})", f.leader_id)),
            ),
            Ok(Err(e)) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    /// Confirms with a quorum, after the node's call arrived, that this
    /// replica still leads. A leader cut off from the others (openraft 0.9
    /// does not step down on its own) would otherwise keep acknowledging
    /// heartbeats, and so keep a node acting as owner of credentials the new
    /// leader has already moved.
    pub async fn confirm_leadership(&self) -> Result<(), WriteError> {
        match tokio::time::timeout(COMMIT_TIMEOUT, self.raft.ensure_linearizable()).await {
            Err(_) => Err(WriteError::NoLeader(format!(
                "leadership not confirmed within {COMMIT_TIMEOUT:?}"
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(WriteError::NoLeader(format!(
                "leadership not confirmed: {e}"
            ))),
        }
    }

    /// The leader's answer to a node: every owner in the applied state.
    /// The applied index is read before the state, so the answer never
    /// claims more than it shows (a node acknowledges `applied` as seen).
    pub fn reply(&self) -> HeartbeatReply {
        let term = self.raft.metrics().borrow().current_term;
        let applied = self.sm.applied_index();
        let assignments = self.sm.assignments();
        HeartbeatReply {
            leader: self.config.id,
            leader_url: self.config.own_url().to_string(),
            term,
            applied,
            assignments: assignments.published(&self.liveness.seen()),
        }
    }

    /// Live nodes: by the leader's timers on the leader, else every node
    /// of the applied state.
    pub fn nodes_live(&self) -> usize {
        let assignments = self.sm.assignments();
        if self.leading_term().is_some() {
            self.liveness
                .count_live(assignments.nodes(), Instant::now())
        } else {
            assignments.nodes().len()
        }
    }

    /// Sets the raft gauges (cheap: raft's metrics only).
    pub fn record_raft_metrics(&self) {
        let m = self.raft.metrics();
        let m = m.borrow();
        let applied = m.last_applied.map_or(0, |l| l.index);
        metrics::record_raft(m.current_term, m.current_leader, self.config.id, applied);
    }

    /// Sets every gauge (the live-node count reads the applied state).
    pub fn record_metrics(&self) {
        self.record_raft_metrics();
        metrics::record_nodes_live(self.nodes_live());
    }
}
