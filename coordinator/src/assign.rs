//! The coordinator's replicated state and the only code that changes it:
//! which nodes are live (with the credentials each has configured and its
//! `node_ttl`), and which node owns each credential under which epoch.
//!
//! Every replica applies the same committed [`Command`]s in the same order,
//! so this code is deterministic: no clocks, no randomness, ordered maps.
//! Owners are chosen by rendezvous (highest random weight) hashing over the
//! live nodes that have the credential configured, so a node joining takes
//! only its share of credentials and a node leaving gives up only its own.
//! An assignment's epoch is the log index of the entry that made it; a new
//! leader's first (blank) entry recommits every assignment under its own
//! index ([`Assignments::renew`]), so whatever was written while no leader
//! answered is fenced out by the next leader's owners.
//!
//! A move is published *inactive* until every live node that owned the
//! credential before has acknowledged an answer that shows it lost it
//! ([`Assignments::published`]): the old owner stops before the new one
//! starts, so two nodes never act as owner at once, not even for a
//! heartbeat. A move away from a dead node is active at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rhizome_proto::coord::Assignment;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A change to the replicated state, as committed in the raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A node joins, or rejoins with other credentials or another ttl.
    Join {
        /// Node id.
        node: String,
        /// Its configured credentials.
        credentials: Vec<String>,
        /// Its `node_ttl`, in milliseconds.
        node_ttl_ms: u64,
    },
    /// A node left gracefully.
    Leave {
        /// Node id.
        node: String,
    },
    /// The leader heard nothing from a node for its ttl.
    Dead {
        /// Node id.
        node: String,
    },
    /// A leader took office: every assignment is recommitted under this
    /// entry's index (a leader restarted in its old term appends no blank
    /// entry, so the leader proposes this itself).
    Renew,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Join { node, .. } => write!(f, "join {node}"),
            Command::Leave { node } => write!(f, "leave {node}"),
            Command::Dead { node } => write!(f, "dead {node}"),
            Command::Renew => write!(f, "renew"),
        }
    }
}

/// What applying a command did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Credentials whose owner changed (assigned, moved or dropped).
    pub moved: u32,
}

/// A live node as the state machine knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its configured credentials.
    pub credentials: BTreeSet<String>,
    /// Its `node_ttl`, in milliseconds.
    pub node_ttl_ms: u64,
}

/// The owner of a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Node id.
    pub node: String,
    /// Log index that committed this assignment.
    pub epoch: u64,
    /// Log index at which the credential moved to this node.
    pub since: u64,
    /// Live nodes that owned the credential before, with the index at which
    /// each lost it: only they could still act as its owner, so the move is
    /// active once each has seen that index. Dead and departed nodes are
    /// dropped (they act on nothing any more).
    pub previous: BTreeMap<String, u64>,
}

/// Live nodes and credential owners.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    nodes: BTreeMap<String, NodeInfo>,
    owners: BTreeMap<String, Owner>,
}

impl Assignments {
    /// Applies `cmd`, committed at log `index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Applied {
        match cmd {
            Command::Join {
                node,
                credentials,
                node_ttl_ms,
            } => {
                let info = NodeInfo {
                    credentials: credentials.iter().cloned().collect(),
                    node_ttl_ms: *node_ttl_ms,
                };
                self.nodes.insert(node.clone(), info);
            }
            Command::Leave { node } | Command::Dead { node } => {
                self.nodes.remove(node);
            }
            Command::Renew => {
                self.renew(index);
                return Applied::default();
            }
        }
        self.reassign(index)
    }

    /// A new leader's first entry, committed at `index`: every assignment is
    /// recommitted under it, owners unchanged.
    pub fn renew(&mut self, index: u64) {
        for owner in self.owners.values_mut() {
            owner.epoch = index;
        }
    }

    /// True when a heartbeat with these facts needs no [`Command::Join`].
    pub fn knows(&self, node: &str, credentials: &[String], node_ttl_ms: u64) -> bool {
        self.nodes.get(node).is_some_and(|info| {
            info.node_ttl_ms == node_ttl_ms
                && info.credentials.len() == credentials.len()
                && credentials.iter().all(|c| info.credentials.contains(c))
        })
    }

    /// Live nodes.
    pub fn nodes(&self) -> &BTreeMap<String, NodeInfo> {
        &self.nodes
    }

    /// Owners by credential.
    pub fn owners(&self) -> &BTreeMap<String, Owner> {
        &self.owners
    }

    /// Every owner as the node API publishes it. `seen` holds, per node,
    /// the applied index of the last answer it acknowledged; a move is
    /// active once every live previous owner has seen the index at which it
    /// lost the credential.
    pub fn published(&self, seen: &HashMap<String, u64>) -> Vec<Assignment> {
        self.owners
            .iter()
            .map(|(cred, owner)| Assignment {
                credential: cred.clone(),
                node: owner.node.clone(),
                epoch: owner.epoch,
                since: owner.since,
                active: owner
                    .previous
                    .iter()
                    .all(|(n, lost)| seen.get(n).is_some_and(|s| s >= lost)),
            })
            .collect()
    }

    fn reassign(&mut self, index: u64) -> Applied {
        let mut wanted: BTreeMap<&str, &str> = BTreeMap::new();
        for (node, info) in &self.nodes {
            for cred in &info.credentials {
                let better = wanted
                    .get(cred.as_str())
                    .is_none_or(|best| score(cred, node) > score(cred, best));
                if better {
                    wanted.insert(cred, node);
                }
            }
        }
        let mut moved = 0;
        let mut owners = BTreeMap::new();
        for (cred, node) in wanted {
            let mut owner = match self.owners.get(cred) {
                Some(old) if old.node == node => old.clone(),
                old => {
                    moved += 1;
                    let mut previous = old.map(|o| o.previous.clone()).unwrap_or_default();
                    if let Some(o) = old {
                        previous.insert(o.node.clone(), index);
                    }
                    previous.remove(node);
                    Owner {
                        node: node.to_string(),
                        epoch: index,
                        since: index,
                        previous,
                    }
                }
            };
            owner.previous.retain(|n, _| self.nodes.contains_key(n));
            owners.insert(cred.to_string(), owner);
        }
        moved += self
            .owners
            .keys()
            .filter(|c| !owners.contains_key(*c))
            .count();
        self.owners = owners;
        Applied {
            moved: u32::try_from(moved).unwrap_or(u32::MAX),
        }
    }
}

/// Rendezvous weight of `node` for `credential`.
fn score(credential: &str, node: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(credential.as_bytes());
    h.update([0]);
    h.update(node.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(node: &str, creds: &[String]) -> Command {
        Command::Join {
            node: node.into(),
            credentials: creds.to_vec(),
            node_ttl_ms: 3000,
        }
    }

    fn creds(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("cred-{i}")).collect()
    }

    fn owner_map(a: &Assignments) -> BTreeMap<String, String> {
        a.owners()
            .iter()
            .map(|(c, o)| (c.clone(), o.node.clone()))
            .collect()
    }

    #[test]
    fn a_joining_node_takes_only_its_share_and_the_epoch_is_the_index() {
        let all = creds(300);
        let mut a = Assignments::default();
        a.apply(1, &join("n1", &all));
        a.apply(2, &join("n2", &all));
        assert!(a.owners().values().all(|o| o.epoch <= 2));
        let before = owner_map(&a);
        let applied = a.apply(3, &join("n3", &all));
        let after = owner_map(&a);
        let changed: Vec<_> = before
            .iter()
            .filter(|(c, n)| after.get(*c) != Some(*n))
            .collect();
        assert!(
            changed.iter().all(|(c, _)| after[*c] == "n3"),
            "moves go to the new node only"
        );
        assert_eq!(applied.moved as usize, changed.len());
        assert!(
            (60..=140).contains(&changed.len()),
            "about a third moved: {}",
            changed.len()
        );
        for (c, o) in a.owners() {
            assert_eq!(o.epoch == 3, changed.iter().any(|(m, _)| *m == c));
        }
    }

    #[test]
    fn a_leaving_node_gives_up_only_its_own_and_owners_need_the_credential() {
        let all = creds(100);
        let mut a = Assignments::default();
        for (i, n) in ["n1", "n2", "n3"].into_iter().enumerate() {
            a.apply(i as u64 + 1, &join(n, &all));
        }
        a.apply(4, &join("n4", &all[..10]));
        let before = owner_map(&a);
        a.apply(5, &Command::Dead { node: "n2".into() });
        for (c, n) in owner_map(&a) {
            if before[&c] != "n2" {
                assert_eq!(before[&c], n, "{c} stayed");
            }
            assert_ne!(n, "n2");
        }
        assert!(a
            .owners()
            .iter()
            .filter(|(_, o)| o.node == "n4")
            .all(|(c, _)| all[..10].contains(c)));
        a.apply(6, &Command::Leave { node: "n1".into() });
        a.apply(7, &Command::Leave { node: "n3".into() });
        assert_eq!(a.owners().len(), 10, "only n4's credentials stay assigned");
        a.apply(8, &Command::Leave { node: "n4".into() });
        assert!(a.owners().is_empty() && a.nodes().is_empty());
    }

    #[test]
    fn a_move_is_active_once_every_live_previous_owner_has_seen_it() {
        let all = creds(20);
        let mut a = Assignments::default();
        a.apply(1, &join("n1", &all));
        let alone = a.published(&HashMap::new());
        assert!(
            alone.iter().all(|x| x.active),
            "a first assignment has nobody to wait for"
        );
        a.apply(2, &join("n2", &all));
        let mut seen = HashMap::from([("n1".to_string(), 1), ("n2".to_string(), 2)]);
        let moved: Vec<_> = a
            .published(&seen)
            .into_iter()
            .filter(|x| x.node == "n2")
            .collect();
        assert!(!moved.is_empty());
        assert!(
            moved.iter().all(|x| !x.active && x.since == 2),
            "n1 has not seen the move"
        );
        let kept = a.published(&seen).into_iter().filter(|x| x.node == "n1");
        assert!(kept.into_iter().all(|x| x.active && x.since == 1));
        seen.insert("n1".into(), 2);
        assert!(a.published(&seen).iter().all(|x| x.active));
        a.renew(3);
        let renewed = a.published(&seen);
        assert!(
            renewed
                .iter()
                .all(|x| x.active && x.epoch == 3 && x.since <= 2),
            "a renewal moves nothing, so it needs no acknowledgement"
        );
        // n1 dies: what it owned moves, active at once (nobody alive owned it).
        a.apply(4, &Command::Dead { node: "n1".into() });
        assert!(a
            .published(&HashMap::new())
            .iter()
            .all(|x| x.active && x.node == "n2"));
    }

    #[test]
    fn a_chain_of_moves_waits_for_every_live_previous_owner() {
        let all = creds(30);
        let mut a = Assignments::default();
        a.apply(1, &join("n1", &all));
        a.apply(2, &join("n2", &all));
        a.apply(3, &join("n3", &all));
        // Credentials that went n1 → n3, or n1 → n2 → n3.
        let seen = HashMap::from([("n1".to_string(), 1), ("n2".to_string(), 3)]);
        for x in a.published(&seen).iter().filter(|x| x.node == "n3") {
            assert!(
                !x.active,
                "{}: n1 never saw it lose the credential",
                x.credential
            );
        }
        let seen = HashMap::from([("n1".to_string(), 3), ("n2".to_string(), 3)]);
        assert!(a.published(&seen).iter().all(|x| x.active));
    }

    #[test]
    fn renew_recommits_every_assignment_and_knows_compares_sets() {
        let all = creds(5);
        let mut a = Assignments::default();
        a.apply(1, &join("n1", &all));
        a.renew(9);
        assert!(a.owners().values().all(|o| o.epoch == 9 && o.node == "n1"));
        let mut shuffled = all.clone();
        shuffled.reverse();
        assert!(a.knows("n1", &shuffled, 3000));
        assert!(!a.knows("n1", &all[..4], 3000));
        assert!(!a.knows("n1", &all, 5000));
        assert!(!a.knows("n2", &all, 3000));
        let same = a.apply(10, &join("n1", &all));
        assert_eq!(same.moved, 0, "a rejoin with the same facts moves nothing");
    }
}
