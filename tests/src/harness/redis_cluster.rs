//! A Redis Cluster per test: three masters (`redis-server --cluster-enabled
//! yes`, each with its own data directory and `nodes.conf`) on free loopback
//! ports, joined with `redis-cli --cluster create` so that the 16384 slots
//! are split between them. The test waits until every node reports
//! `cluster_state:ok`.

use std::time::Duration;

use super::redis::RedisServer;
use super::{wait_for, Env};

/// The masters of a running cluster.
#[derive(Debug)]
pub struct RedisCluster {
    /// The three masters.
    pub masters: Vec<RedisServer>,
}

impl Env {
    /// Starts three cluster-enabled servers, creates the cluster and waits
    /// until it serves every slot.
    pub async fn redis_cluster(&self) -> RedisCluster {
        let args: Vec<String> = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut masters = Vec::new();
        for i in 0..3 {
            masters.push(self.redis_in(&format!("redis-cluster-{i}"), &args).await);
        }
        let mut create = std::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for m in &masters {
            create.arg(format!("127.0.0.1:{}", m.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { masters };
        wait_for(
            "the cluster to serve every slot",
            Duration::from_secs(30),
            || async {
                cluster
                    .masters
                    .iter()
                    .all(|m| m.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
                    .then_some(())
            },
        )
        .await;
        cluster
    }
}

impl RedisCluster {
    /// `redis-cluster://` naming every master as a seed node.
    pub fn url(&self) -> String {
        let mut ports = self.masters.iter().map(|m| m.port);
        let first = ports.next().expect("a master");
        let others: Vec<String> = ports.map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis-cluster://127.0.0.1:{first}?{}", others.join("&"))
    }

    /// Keys stored per master (`DBSIZE`): where the data landed.
    pub fn keys_per_master(&self) -> Vec<u64> {
        self.masters
            .iter()
            .map(|m| m.cli(&["DBSIZE"]).trim().parse().unwrap_or(0))
            .collect()
    }
}
