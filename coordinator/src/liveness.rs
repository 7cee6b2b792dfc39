//! Node liveness, in the leader's memory only (never in the log): when each
//! node was last heard from, and the `seen` index its last heartbeat
//! reported (which makes moves active, see [`crate::assign`]).
//!
//! A replica that becomes leader *takes office* once per term: it commits
//! [`Command::Renew`] (a leader restarted in its old term appends no blank
//! entry of its own, so epochs are renewed explicitly), then starts every
//! live node's timer, so a new leader waits a node's whole `node_ttl` before
//! declaring it dead; a node that shows up in the state machine later starts
//! its timer when it is first looked at. Node calls wait for the office
//! ([`Liveness::in_office`]), so every answer of a term carries renewed
//! epochs. Losing leadership clears everything. [`run`] checks the timers
//! every [`CHECK_EVERY`] while this replica leads and commits
//! [`Command::Dead`] for every node silent longer than its ttl.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::assign::{Command, NodeInfo};

/// How often the leader looks for silent nodes.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The leader's view of which nodes are alive.
#[derive(Debug)]
pub struct Liveness {
    inner: Mutex<Inner>,
    /// Term in which this replica took office; `None` while not leading.
    office: watch::Sender<Option<u64>>,
}

#[derive(Debug, Default)]
struct Inner {
    last_seen: HashMap<String, Instant>,
    seen: HashMap<String, u64>,
    /// Nodes whose death is being committed: their heartbeats are refused
    /// until it applies (an acknowledgement now would let a node act as
    /// owner of credentials that are about to move).
    dying: std::collections::HashSet<String>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            inner: Mutex::default(),
            office: watch::Sender::new(None),
        }
    }
}

impl Liveness {
    /// True when this replica took office in `term`.
    pub fn in_office(&self, term: u64) -> bool {
        *self.office.borrow() == Some(term)
    }

    /// A receiver that changes when this replica takes or leaves office.
    pub fn watch_office(&self) -> watch::Receiver<Option<u64>> {
        self.office.subscribe()
    }

    /// Records a heartbeat of `node` reporting `seen`; false (nothing
    /// recorded) while the node's death is being committed.
    pub fn heartbeat(&self, node: &str, seen: u64) -> bool {
        let mut inner = self.inner.lock();
        if inner.dying.contains(node) {
            return false;
        }
        inner.last_seen.insert(node.to_string(), Instant::now());
        inner.seen.insert(node.to_string(), seen);
        true
    }

    /// Marks `node` dying if it is still silent for longer than `ttl` at
    /// `now`, atomically with [`Liveness::heartbeat`]; true when marked.
    pub fn mark_dying(&self, node: &str, ttl: Duration, now: Instant) -> bool {
        let mut inner = self.inner.lock();
        let silent = inner
            .last_seen
            .get(node)
            .is_some_and(|t| now.saturating_duration_since(*t) > ttl);
        if silent {
            inner.dying.insert(node.to_string());
        }
        silent
    }

    /// The death of `node` was not committed: its heartbeats count again.
    pub fn unmark_dying(&self, node: &str) {
        self.inner.lock().dying.remove(node);
    }

    /// Forgets `node` (it left or was declared dead).
    pub fn forget(&self, node: &str) {
        let mut inner = self.inner.lock();
        inner.last_seen.remove(node);
        inner.seen.remove(node);
        inner.dying.remove(node);
    }

    /// The `seen` index each node last reported.
    pub fn seen(&self) -> HashMap<String, u64> {
        self.inner.lock().seen.clone()
    }

    /// Called while this replica leads in `term`: the first call of a term
    /// starts every timer of `nodes` now; true on that first call. The
    /// `seen` indices heartbeats reported meanwhile stay: they are facts.
    pub fn take_office<'a>(&self, term: u64, nodes: impl Iterator<Item = &'a String>) -> bool {
        if self.in_office(term) {
            return false;
        }
        let now = Instant::now();
        self.inner.lock().last_seen = nodes.map(|n| (n.clone(), now)).collect();
        self.office.send_replace(Some(term));
        true
    }

    /// Called while this replica does not lead: forgets everything. True
    /// when it led until now.
    pub fn step_down(&self) -> bool {
        let was = self.office.send_replace(None).is_some();
        let mut inner = self.inner.lock();
        inner.last_seen.clear();
        inner.seen.clear();
        inner.dying.clear();
        was
    }

    /// The nodes of `nodes` silent for longer than their ttl at `now`, with
    /// their silence. Nodes without a timer get one starting `now`; timers of
    /// nodes no longer live are dropped.
    pub fn expired(
        &self,
        nodes: &BTreeMap<String, NodeInfo>,
        now: Instant,
    ) -> Vec<(String, Duration)> {
        let mut inner = self.inner.lock();
        inner.last_seen.retain(|n, _| nodes.contains_key(n));
        let mut out = Vec::new();
        for (node, info) in nodes {
            let since = *inner.last_seen.entry(node.clone()).or_insert(now);
            let silent = now.saturating_duration_since(since);
            if silent > Duration::from_millis(info.node_ttl_ms) {
                out.push((node.clone(), silent));
            }
        }
        out
    }

    /// True unless the leader has heard nothing from `node` for `ttl`.
    pub fn is_live(&self, node: &str, ttl: Duration, now: Instant) -> bool {
        self.inner
            .lock()
            .last_seen
            .get(node)
            .is_none_or(|t| now.saturating_duration_since(*t) <= ttl)
    }

    /// Live nodes among `nodes` by the leader's timers.
    pub fn count_live(&self, nodes: &BTreeMap<String, NodeInfo>, now: Instant) -> usize {
        nodes
            .iter()
            .filter(|(n, i)| self.is_live(n, Duration::from_millis(i.node_ttl_ms), now))
            .count()
    }
}

/// Every [`CHECK_EVERY`] (and at once when raft's state moves while this
/// replica is not in office) until `shutdown`: while this replica leads,
/// takes office once per term and declares silent nodes dead; otherwise
/// forgets. Keeps the metrics gauges current on the way.
pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut raft = app.raft.metrics();
    loop {
        let waiting = app
            .leading_term()
            .is_none_or(|term| !app.liveness.in_office(term));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
            changed = raft.changed(), if waiting => if changed.is_err() { return },
        }
        check(&app).await;
        app.record_metrics();
    }
}

async fn check(app: &App) {
    let Some(term) = app.leading_term() else {
        if app.liveness.step_down() {
            tracing::info!("no longer the leader: liveness timers dropped");
        }
        return;
    };
    if !app.liveness.in_office(term) && !take_office(app, term).await {
        return;
    }
    let nodes = app.sm.assignments().nodes().clone();
    for (node, silent) in app.liveness.expired(&nodes, Instant::now()) {
        let ttl_ms = nodes.get(&node).map_or(0, |i| i.node_ttl_ms);
        if !app
            .liveness
            .mark_dying(&node, Duration::from_millis(ttl_ms), Instant::now())
        {
            continue; // heard from while an earlier death was committed
        }
        match app.write(Command::Dead { node: node.clone() }).await {
            Ok(applied) => {
                app.liveness.forget(&node);
                tracing::info!(
                    node = %node,
                    silent_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX),
                    ttl_ms,
                    moved = applied.moved,
                    "node declared dead"
                );
            }
            Err(e) => {
                app.liveness.unmark_dying(&node);
                tracing::warn!(node = %node, error = %e, "could not declare a silent node dead");
                return;
            }
        }
    }
}

/// Renews every assignment under this term, then starts the node timers;
/// false when the renewal did not commit (tried again on the next check).
async fn take_office(app: &App, term: u64) -> bool {
    if let Err(e) = app.write(Command::Renew).await {
        tracing::warn!(term, error = %e, "could not renew the assignments on taking office");
        return false;
    }
    let nodes = app.sm.assignments().nodes().clone();
    if app.liveness.take_office(term, nodes.keys()) {
        tracing::info!(
            term,
            nodes = nodes.len(),
            applied = app.sm.applied_index(),
            "took office: assignments renewed, every node's timer starts now"
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn info(ttl_ms: u64) -> NodeInfo {
        NodeInfo {
            credentials: BTreeSet::new(),
            node_ttl_ms: ttl_ms,
        }
    }

    #[test]
    fn a_node_being_declared_dead_gets_no_acknowledgement_until_it_is_forgotten() {
        let l = Liveness::default();
        let ttl = Duration::from_secs(3);
        assert!(l.heartbeat("n1", 4));
        let later = Instant::now() + Duration::from_secs(4);
        assert!(
            !l.mark_dying("n1", Duration::from_secs(10), later),
            "not silent for 10 s"
        );
        assert!(
            l.mark_dying("n1", ttl, later),
            "silent for longer than its ttl"
        );
        assert!(!l.heartbeat("n1", 5), "refused while its death commits");
        l.unmark_dying("n1");
        assert!(
            l.heartbeat("n1", 5),
            "a death that did not commit changes nothing"
        );
        assert!(l.mark_dying("n1", ttl, Instant::now() + Duration::from_secs(4)));
        l.forget("n1");
        assert!(
            l.heartbeat("n1", 6),
            "once dead and forgotten it may rejoin"
        );
    }

    #[test]
    fn a_new_term_starts_every_timer_and_silence_expires_by_the_nodes_own_ttl() {
        let l = Liveness::default();
        let nodes = BTreeMap::from([("a".to_string(), info(1000)), ("b".to_string(), info(5000))]);
        assert!(l.take_office(3, nodes.keys()));
        assert!(!l.take_office(3, nodes.keys()), "once per term");
        let now = Instant::now();
        assert!(l.expired(&nodes, now).is_empty());
        let later = now + Duration::from_millis(2000);
        l.heartbeat("b", 7);
        let dead: Vec<String> = l
            .expired(&nodes, later)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(dead, ["a"]);
        assert!(!l.is_live("a", Duration::from_millis(1000), later));
        assert!(l.is_live("b", Duration::from_millis(5000), later));
        assert_eq!(l.count_live(&nodes, later), 1);
        assert_eq!(l.seen().get("b"), Some(&7));
    }

    #[test]
    fn a_node_first_looked_at_gets_a_full_ttl_and_stepping_down_forgets() {
        let l = Liveness::default();
        assert!(l.take_office(1, std::iter::empty()));
        let nodes = BTreeMap::from([("late".to_string(), info(1000))]);
        let t0 = Instant::now() + Duration::from_secs(60);
        assert!(
            l.expired(&nodes, t0).is_empty(),
            "timer starts when first seen"
        );
        assert!(l
            .expired(&nodes, t0 + Duration::from_millis(900))
            .is_empty());
        assert_eq!(l.expired(&nodes, t0 + Duration::from_millis(1100)).len(), 1);
        l.heartbeat("late", 2);
        assert!(l.step_down());
        assert!(!l.step_down());
        assert!(l.seen().is_empty());
        assert!(
            l.take_office(2, nodes.keys()),
            "a new term takes office again"
        );
    }
}
