//! Cluster mode: the raft coordinator assigns each shared credential to one
//! live node. This node heartbeats every `heartbeat_interval`, learns every
//! owner and assignment epoch from the answers, refreshes what it owns and
//! reads the rest.
//!
//! Safety does not rest on timing alone, but timing keeps owners apart:
//! the node acts as owner only until `node_ttl − 2 × heartbeat_interval`
//! after the *send* time of its last acknowledged heartbeat, while the
//! leader reassigns only after `node_ttl` of silence counted from when it
//! *received* one, so a silent node has stepped down before anybody steps up
//! — without synchronised clocks. Every token fetch asks for the role again
//! ([`Authority`]), so a node frozen and resumed stops fetching at once, and
//! what it might still write carries its old epoch, which the token
//! record's script refuses.
//!
//! With no coordinator answering after the fence ran out, the node falls
//! back to the `redis-lock` protocol (every node may refresh, one at a time
//! under the fenced lock, with the last assignment it knew) and reports
//! `rhizome_ownership_degraded 1`; the first answer of a leader ends that.
//! On shutdown the node steps down and says goodbye, so its credentials move
//! at once instead of after `node_ttl`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rhizome_proto::config::{CoordinatorConfig, CoordinatorMode};
use rhizome_proto::coord::{
    Assignment, Heartbeat, HeartbeatReply, Leave, HEARTBEAT_PATH, LEAVE_PATH,
};
use rhizome_proto::Epoch;
use tokio_util::sync::CancellationToken;

use super::client::CoordinatorClient;
use super::{CoordinatorView, Owner, Ownership, Refreshers};
use crate::credentials::{Authority, Credential, Role};
use crate::metrics;

/// How soon a heartbeat nobody acknowledged is tried again, and how soon
/// a change is acknowledged.
const RETRY: Duration = Duration::from_millis(100);

/// What this node knows of the coordinator's decisions.
#[derive(Debug, Default)]
struct View {
    /// Owner by credential, from the last answer.
    owners: HashMap<String, Assignment>,
    /// The move (`since`) under which this node saw each of its own
    /// assignments active: it keeps acting on it while `since` holds, even
    /// if a new leader, not yet knowing who has seen what, says inactive.
    activated: HashMap<String, u64>,
    /// `applied` of the last answer acted on.
    seen: u64,
    /// (term, applied) of the last answer acted on: an older answer (a
    /// deposed leader's, or one delayed in a forward) is never acted on.
    newest: (u64, u64),
    /// Send time of the last acknowledged heartbeat.
    acked_sent: Option<Instant>,
    /// No coordinator answered within the fence: the lock protocol rules.
    degraded: bool,
    /// Shutting down: owns nothing any more.
    leaving: bool,
    /// The leader of the last answer acted on: replica id and URL.
    leader: Option<(u64, String)>,
}

/// The node's side of the coordinator, shared with its credentials.
#[derive(Debug)]
struct Shared {
    node_id: String,
    /// How long after an acknowledged heartbeat's send time ownership holds.
    fence: Duration,
    view: Mutex<View>,
}

impl Shared {
    fn holds_fence(&self, view: &View) -> bool {
        view.acked_sent
            .is_some_and(|sent| sent.elapsed() < self.fence)
    }

    fn owns(&self, view: &View, credential: &str) -> bool {
        !view.leaving
            && !view.degraded
            && self.holds_fence(view)
            && view.owners.get(credential).is_some_and(|a| {
                a.node == self.node_id
                    && (a.active || view.activated.get(credential) == Some(&a.since))
            })
    }
}

impl Authority for Shared {
    fn role(&self, credential: &str) -> Role {
        let view = self.view.lock();
        if self.owns(&view, credential) {
            Role::Owner
        } else if view.leaving || view.owners.contains_key(credential) && !view.degraded {
            Role::Reader
        } else {
            // Degraded, or not assigned yet (the first heartbeat is under way).
            Role::Any
        }
    }
}

/// Ownership assigned by the raft coordinator.
#[derive(Debug)]
pub struct Cluster {
    shared: Arc<Shared>,
    client: CoordinatorClient,
    heartbeat: Heartbeat,
    interval: Duration,
    refreshers: Refreshers,
}

impl Cluster {
    /// Cluster ownership of `refreshers`' credentials under `cfg`.
    pub fn new(cfg: &CoordinatorConfig, node_id: &str, refreshers: Refreshers) -> Self {
        let shared = Arc::new(Shared {
            node_id: node_id.to_string(),
            fence: cfg
                .node_ttl
                .saturating_sub(cfg.heartbeat_interval.saturating_mul(2)),
            view: Mutex::new(View::default()),
        });
        let mut credentials = Vec::new();
        for cred in refreshers.credentials().filter(|c| c.is_shared()) {
            cred.set_authority(shared.clone());
            credentials.push(cred.name.clone());
        }
        credentials.sort();
        let attempt = cfg.heartbeat_interval.max(Duration::from_millis(200));
        Cluster {
            shared,
            client: CoordinatorClient::new(&cfg.endpoints, attempt),
            heartbeat: Heartbeat {
                node: node_id.to_string(),
                credentials,
                node_ttl_ms: u64::try_from(cfg.node_ttl.as_millis()).unwrap_or(u64::MAX),
                seen: 0,
            },
            interval: cfg.heartbeat_interval,
            refreshers,
        }
    }

    /// Heartbeats until `shutdown`, then steps down and says goodbye. After
    /// a heartbeat nobody acknowledged, the next one goes out after
    /// [`RETRY`] rather than a whole interval: during a raft election the
    /// new leader is heard from as soon as it is there, well within the fence.
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
            }
            let heartbeat = Heartbeat {
                seen: self.shared.view.lock().seen,
                ..self.heartbeat.clone()
            };
            let sent = Instant::now();
            match self.client.call(HEARTBEAT_PATH, &heartbeat).await {
                Ok(reply) if (reply.term, reply.applied) < self.shared.view.lock().newest => {
                    self.silence("an answer older than one already acted on", &shutdown);
                    next = tokio::time::Instant::now() + self.interval.min(RETRY);
                }
                Ok(reply) => {
                    // Something moved: acknowledge it soon, so that moves
                    // waiting for everybody to have seen them become active.
                    let pace = if reply.applied > heartbeat.seen {
                        self.interval.min(RETRY)
                    } else {
                        self.interval
                    };
                    self.learn(sent, &reply, &shutdown);
                    next = tokio::time::Instant::from_std(sent) + pace;
                }
                Err(e) => {
                    self.silence(&e.to_string(), &shutdown);
                    next = tokio::time::Instant::now() + self.interval.min(RETRY);
                }
            }
        }
        self.leave().await;
    }

    /// A heartbeat sent at `sent` was acknowledged with `reply`.
    fn learn(&self, sent: Instant, reply: &HeartbeatReply, shutdown: &CancellationToken) {
        let owners: HashMap<String, Assignment> = reply
            .assignments
            .iter()
            .map(|a| (a.credential.clone(), a.clone()))
            .collect();
        let (before, was_degraded) = {
            let mut view = self.shared.view.lock();
            if view.leaving {
                return;
            }
            let before: Vec<bool> = self
                .shared_credentials()
                .map(|c| self.shared.owns(&view, &c.name))
                .collect();
            let was_degraded = std::mem::take(&mut view.degraded);
            view.acked_sent = Some(sent);
            view.seen = view.seen.max(reply.applied);
            view.newest = view.newest.max((reply.term, reply.applied));
            view.leader = Some((reply.leader, reply.leader_url.clone()));
            let node_id = &self.shared.node_id;
            view.activated.retain(|c, since| {
                owners
                    .get(c)
                    .is_some_and(|a| a.node == *node_id && a.since == *since)
            });
            for a in owners.values().filter(|a| a.active && a.node == *node_id) {
                view.activated.insert(a.credential.clone(), a.since);
            }
            view.owners = owners;
            (before, was_degraded)
        };
        if was_degraded {
            tracing::info!(
                leader = reply.leader,
                term = reply.term,
                "coordinator answers again; ownership back to normal"
            );
            metrics::ownership_degraded(false);
            self.stop_shared();
        }
        let view = self.shared.view.lock();
        for (cred, owned_before) in self.shared_credentials().zip(before) {
            if let Some(a) = view.owners.get(&cred.name) {
                cred.set_assignment(a.epoch);
            }
            let owned = self.shared.owns(&view, &cred.name);
            metrics::credential_owned(&cred.name, owned);
            if owned != owned_before || was_degraded {
                self.owner_changed(cred, owned, &view, shutdown);
            }
        }
    }

    /// Starts or stops refreshing `cred` as this node gained or lost it.
    fn owner_changed(
        &self,
        cred: &Arc<Credential>,
        owned: bool,
        view: &View,
        shutdown: &CancellationToken,
    ) {
        let (owner, epoch) = view
            .owners
            .get(&cred.name)
            .map(|a| (a.node.clone(), a.epoch))
            .unwrap_or_default();
        if owned {
            tracing::info!(credential = %cred.name, epoch, "this node owns the credential");
            self.refreshers.start(&cred.name, true, shutdown);
            // Readers may be waiting for a token the previous owner never
            // wrote: serve them now rather than on their next ask.
            if cred.peers_waiting() {
                self.refreshers.tasks().spawn(cred.clone().serve_peers());
            }
        } else {
            tracing::info!(credential = %cred.name, owner = %owner, epoch, "credential owned elsewhere");
            self.refreshers.stop(&cred.name);
        }
        metrics::ownership_changed();
    }

    /// No coordinator answered. Once the fence ran out, owned credentials
    /// are given up and the lock protocol takes over until one answers.
    fn silence(&self, error: &str, shutdown: &CancellationToken) {
        let mut view = self.shared.view.lock();
        if view.degraded || view.leaving || self.shared.holds_fence(&view) {
            tracing::debug!(error, "heartbeat not acknowledged");
            return;
        }
        view.degraded = true;
        drop(view);
        tracing::warn!(error, "no coordinator answered within node_ttl - 2 x heartbeat_interval; degraded: refreshing under the Redis lock");
        metrics::ownership_degraded(true);
        self.stop_shared();
        for cred in self.shared_credentials() {
            metrics::credential_owned(&cred.name, false);
            self.refreshers.start(&cred.name, false, shutdown);
        }
    }

    /// Steps down and tells the coordinator, so that the credentials move now.
    async fn leave(&self) {
        self.give_up();
        let goodbye = Leave {
            node: self.heartbeat.node.clone(),
        };
        match self.client.call(LEAVE_PATH, &goodbye).await {
            Ok(_) => tracing::info!("left the coordinator: credentials handed over"),
            Err(e) => {
                tracing::warn!(error = %e, "could not say goodbye; credentials move after node_ttl")
            }
        }
    }

    /// Stops the refreshers of the shared credentials (those of static keys
    /// and JWTs, which every node runs for itself, keep running).
    fn stop_shared(&self) {
        for cred in self.shared_credentials() {
            self.refreshers.stop(&cred.name);
        }
    }

    /// Owns nothing from now on.
    fn give_up(&self) {
        self.shared.view.lock().leaving = true;
        self.refreshers.stop_all();
        for cred in self.shared_credentials() {
            metrics::credential_owned(&cred.name, false);
        }
    }

    fn shared_credentials(&self) -> impl Iterator<Item = &Arc<Credential>> {
        self.heartbeat
            .credentials
            .iter()
            .filter_map(|name| self.refreshers.credential(name))
    }
}

impl Ownership for Arc<Cluster> {
    fn mode(&self) -> CoordinatorMode {
        CoordinatorMode::Cluster
    }

    fn owner(&self, credential: &Credential) -> Owner {
        if !credential.is_shared() {
            // Static keys and locally minted JWTs: each node has its own.
            return Owner {
                node: self.shared.node_id.clone(),
                epoch: Epoch::default(),
            };
        }
        let view = self.shared.view.lock();
        let epoch = Epoch::new(credential.assignment(), 0);
        let node = if view.degraded {
            "any node (degraded: redis-lock)".to_string()
        } else {
            match view.owners.get(&credential.name) {
                Some(a)
                    if a.node == self.shared.node_id
                        && !self.shared.owns(&view, &credential.name) =>
                {
                    format!(
                        "{} (not acting: handover pending or no acknowledged heartbeat)",
                        a.node
                    )
                }
                Some(a) => a.node.clone(),
                None => "unassigned".to_string(),
            }
        };
        Owner { node, epoch }
    }

    fn start(&self, shutdown: &CancellationToken) {
        metrics::ownership_degraded(false);
        for cred in self.refreshers.credentials().filter(|c| !c.is_shared()) {
            self.refreshers.start(&cred.name, false, shutdown);
        }
        for cred in self.shared_credentials() {
            metrics::credential_owned(&cred.name, false);
        }
        // Tracked: the node waits for the goodbye when it shuts down.
        self.refreshers
            .tasks()
            .spawn(self.clone().run(shutdown.clone()));
    }

    fn step_down(&self) {
        self.give_up();
    }

    fn degraded(&self) -> bool {
        self.shared.view.lock().degraded
    }

    fn coordinator(&self) -> Option<CoordinatorView> {
        let view = self.shared.view.lock();
        let (leader, leader_url) = view.leader.clone()?;
        let mut assignments: Vec<Assignment> = view.owners.values().cloned().collect();
        assignments.sort_by(|a, b| a.credential.cmp(&b.credential));
        Some(CoordinatorView {
            leader,
            leader_url,
            term: view.newest.0,
            applied: view.newest.1,
            acked_ago: view.acked_sent.map(|t| t.elapsed()),
            assignments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(cred: &str, node: &str, since: u64, active: bool) -> Assignment {
        Assignment {
            credential: cred.into(),
            node: node.into(),
            epoch: since,
            since,
            active,
        }
    }

    fn shared(owners: Vec<Assignment>, acked_ago: Duration) -> Shared {
        let view = View {
            owners: owners
                .into_iter()
                .map(|a| (a.credential.clone(), a))
                .collect(),
            acked_sent: Instant::now().checked_sub(acked_ago),
            ..View::default()
        };
        Shared {
            node_id: "me".into(),
            fence: Duration::from_secs(2),
            view: Mutex::new(view),
        }
    }

    #[test]
    fn a_node_owns_only_active_assignments_within_its_fence() {
        let s = shared(
            vec![
                assignment("mine", "me", 5, true),
                assignment("pending", "me", 7, false),
                assignment("theirs", "other", 3, true),
            ],
            Duration::from_millis(100),
        );
        assert_eq!(s.role("mine"), Role::Owner);
        assert_eq!(
            s.role("pending"),
            Role::Reader,
            "a move nobody confirmed yet"
        );
        assert_eq!(s.role("theirs"), Role::Reader);
        assert_eq!(
            s.role("unassigned"),
            Role::Any,
            "the lock protocol until assigned"
        );
        s.view.lock().activated.insert("pending".into(), 7);
        assert_eq!(s.role("pending"), Role::Owner, "once seen active, kept");
        s.view.lock().activated.insert("pending".into(), 6);
        assert_eq!(
            s.role("pending"),
            Role::Reader,
            "an older activation does not count"
        );
    }

    #[test]
    fn the_fence_runs_from_the_send_time_of_the_last_acknowledged_heartbeat() {
        let s = shared(
            vec![assignment("mine", "me", 5, true)],
            Duration::from_millis(2100),
        );
        assert_eq!(s.role("mine"), Role::Reader, "stepped down after the fence");
        s.view.lock().acked_sent = None;
        assert_eq!(
            s.role("mine"),
            Role::Reader,
            "never acknowledged: never owner"
        );
        s.view.lock().degraded = true;
        assert_eq!(s.role("mine"), Role::Any, "degraded: the lock protocol");
        s.view.lock().leaving = true;
        assert_eq!(s.role("mine"), Role::Reader, "leaving: owns nothing");
    }
}
