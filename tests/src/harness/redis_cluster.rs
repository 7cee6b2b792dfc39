//! A Redis Cluster per test: three masters (`redis-server --cluster-enabled
//! yes`, each with its own data directory and `nodes.conf`) on free loopback
//! ports, optionally each with a replica, joined with `redis-cli --cluster
//! create` so that the 16384 slots are split between the masters. The test
//! waits until every node reports `cluster_state:ok` and every replica is in
//! sync. A master silent for [`NODE_TIMEOUT_MS`] is failed over.

use std::time::Duration;

use super::redis::RedisServer;
use super::{wait_for, Env};

/// `cluster-node-timeout`: silence before a master is failed over.
pub const NODE_TIMEOUT_MS: u64 = 2000;

/// The servers of a running cluster.
#[derive(Debug)]
pub struct RedisCluster {
    /// The three servers created as masters.
    pub masters: Vec<RedisServer>,
    /// Their replicas, if any (one per master, in no particular pairing).
    pub replicas: Vec<RedisServer>,
}

impl Env {
    /// Starts three cluster-enabled masters, creates the cluster and waits
    /// until it serves every slot.
    pub async fn redis_cluster(&self) -> RedisCluster {
        self.redis_cluster_with(false).await
    }

    /// Three masters, each with one replica when `replicas`.
    pub async fn redis_cluster_with(&self, replicas: bool) -> RedisCluster {
        let timeout = NODE_TIMEOUT_MS.to_string();
        let args: Vec<String> = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &timeout,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let count = if replicas { 6 } else { 3 };
        let mut servers = Vec::new();
        for i in 0..count {
            servers.push(self.redis_in(&format!("redis-cluster-{i}"), &args).await);
        }
        let mut create = std::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for m in &servers {
            create.arg(format!("127.0.0.1:{}", m.port));
        }
        let per_master = if replicas { "1" } else { "0" };
        let out = create
            .args(["--cluster-replicas", per_master, "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // redis-cli makes the first three masters and the rest replicas.
        let replicas = servers.split_off(3);
        let cluster = RedisCluster {
            masters: servers,
            replicas,
        };
        wait_for(
            "the cluster to serve every slot, replicas in sync",
            Duration::from_secs(30),
            || async { cluster.healthy().then_some(()) },
        )
        .await;
        cluster
    }
}

impl RedisCluster {
    /// Every server, masters first.
    pub fn servers(&self) -> impl Iterator<Item = &RedisServer> {
        self.masters.iter().chain(&self.replicas)
    }

    /// Every running server reports `cluster_state:ok` and every replica's
    /// link to its master is up.
    fn healthy(&self) -> bool {
        let ok = self
            .servers()
            .all(|m| m.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
        let synced = self.replicas.iter().all(|r| {
            r.cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        ok && synced
    }

    /// `redis-cluster://` naming every initial master as a seed node.
    pub fn url(&self) -> String {
        let mut ports = self.masters.iter().map(|m| m.port);
        let first = ports.next().expect("a master");
        let others: Vec<String> = ports.map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis-cluster://127.0.0.1:{first}?{}", others.join("&"))
    }

    /// Keys stored per initial master (`DBSIZE`): where the data landed.
    pub fn keys_per_master(&self) -> Vec<u64> {
        self.masters
            .iter()
            .map(|m| m.cli(&["DBSIZE"]).trim().parse().unwrap_or(0))
            .collect()
    }

    /// The index in [`RedisCluster::masters`] of the master holding `key`.
    pub fn master_of(&self, key: &str) -> Option<usize> {
        self.masters
            .iter()
            .position(|m| m.cli(&["EXISTS", key]).trim() == "1")
    }

    /// Whether the replica on `port` now reports itself a master.
    pub fn is_master(&self, port: u16) -> bool {
        self.servers()
            .find(|s| s.port == port)
            .is_some_and(|s| s.cli(&["ROLE"]).lines().next() == Some("master"))
    }

    /// The port of the replica of the master on `master_port`.
    pub fn replica_of(&self, master_port: u16) -> Option<u16> {
        self.replicas
            .iter()
            .find(|r| {
                r.cli(&["INFO", "replication"])
                    .contains(&format!("master_port:{master_port}"))
            })
            .map(|r| r.port)
    }
}
