//! A Redis Sentinel deployment per test: a master, one replica of it and
//! three sentinels (`redis-server --sentinel`, quorum 2, a master declared
//! down after [`DOWN_AFTER_MS`]) on free loopback ports. Each sentinel has
//! its own config file in the test's directory, which it rewrites as it
//! learns. The harness asks the sentinels who the master is, the way a
//! client does, and can make sure a write reached the replica before the
//! master is killed.

use std::path::Path;
use std::time::Duration;

use super::redis::RedisServer;
use super::{wait_for, Env, Proc};

/// The master name the sentinels monitor (`sentinelServiceName`).
pub const MASTER_NAME: &str = "m";
/// `sentinel down-after-milliseconds`: silence before a master is down.
pub const DOWN_AFTER_MS: u64 = 1000;
/// `sentinel failover-timeout`.
pub const FAILOVER_TIMEOUT_MS: u64 = 3000;
/// How long the sentinels may take to find each other and the replica.
const SETTLE: Duration = Duration::from_secs(60);

/// One running sentinel.
#[derive(Debug)]
pub struct Sentinel {
    /// The process.
    pub proc: Proc,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// A master, its replica and three sentinels watching them.
#[derive(Debug)]
pub struct SentinelSet {
    /// The servers: `[0]` started as the master, `[1]` as its replica.
    pub servers: Vec<RedisServer>,
    /// The three sentinels.
    pub sentinels: Vec<Sentinel>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("addr").port()
}

/// `redis-cli -p port args…`, its output (empty if it could not run).
fn cli(port: u16, args: &[&str]) -> String {
    std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn sentinel_conf(port: u16, dir: &Path, master_port: u16) -> String {
    format!(
        "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir \"{}\"\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n",
        dir.display()
    )
}

impl Env {
    /// Starts a master, a replica in sync with it, and three sentinels, and
    /// waits until every sentinel knows the replica and the other two.
    pub async fn sentinel_set(&self) -> SentinelSet {
        let master = self.redis_in("redis-master", &[]).await;
        let replicaof = [
            "--replicaof".to_string(),
            "127.0.0.1".to_string(),
            master.port.to_string(),
        ];
        let replica = self.redis_in("redis-replica", &replicaof).await;
        // Linked before the sentinels start: their first look finds it.
        wait_for("the replica in sync", SETTLE, || async {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
                .then_some(())
        })
        .await;
        let mut sentinels = Vec::new();
        for i in 0..3 {
            sentinels.push(self.sentinel(i, master.port).await);
        }
        let set = SentinelSet {
            servers: vec![master, replica],
            sentinels,
        };
        set.wait_settled().await;
        set
    }

    async fn sentinel(&self, i: usize, master_port: u16) -> Sentinel {
        let dir = self.path(&format!("sentinel-{i}"));
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        for attempt in 0..5 {
            let port = free_port();
            let conf = self.write(
                &format!("sentinel-{i}/sentinel.conf"),
                sentinel_conf(port, &dir, master_port),
            );
            let log = self.path(&format!("sentinel-{i}-{attempt}.log"));
            let args = [conf.display().to_string(), "--sentinel".to_string()];
            let mut proc = Proc::spawn(Path::new("redis-server"), &args, &[], &log).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while proc.is_running() && tokio::time::Instant::now() < deadline {
                if proc.log_text().contains("+monitor master") {
                    return Sentinel { proc, port };
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("sentinel {i} did not start; logs in {}", self.dir.display());
    }
}

impl SentinelSet {
    /// `redis+sentinel://` naming every sentinel and the master name.
    pub fn url(&self) -> String {
        let mut ports = self.sentinels.iter().map(|s| s.port);
        let first = ports.next().expect("a sentinel");
        let others: String = ports.map(|p| format!("&node=127.0.0.1:{p}")).collect();
        format!("redis+sentinel://127.0.0.1:{first}?sentinelServiceName={MASTER_NAME}{others}")
    }

    /// The master's port as the first answering sentinel reports it
    /// (`SENTINEL get-master-addr-by-name`).
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let out = cli(
                s.port,
                &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
            );
            out.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// The server currently on `port`.
    pub fn server(&self, port: u16) -> &RedisServer {
        self.servers
            .iter()
            .find(|s| s.port == port)
            .unwrap_or_else(|| panic!("no server of the set on {port}"))
    }

    /// Waits until the master's writes so far reached the replica (`WAIT`).
    pub fn wait_replicated(&self, master: &RedisServer) {
        let acked = master.cli(&["WAIT", "1", "10000"]);
        assert_eq!(acked.trim(), "1", "the replica acknowledged the writes");
    }

    /// What sentinel `s` reports about the master (`SENTINEL master`), as
    /// field → value.
    fn master_fields(s: &Sentinel) -> std::collections::HashMap<String, String> {
        let out = cli(s.port, &["SENTINEL", "master", MASTER_NAME]);
        let lines: Vec<&str> = out.lines().collect();
        lines
            .chunks(2)
            .filter_map(|kv| Some((kv.first()?.to_string(), kv.get(1)?.to_string())))
            .collect()
    }

    async fn wait_settled(&self) {
        wait_for(
            "every sentinel to know the replica and the two other sentinels",
            SETTLE,
            || async {
                self.sentinels
                    .iter()
                    .all(|s| {
                        let f = Self::master_fields(s);
                        f.get("num-slaves").map(String::as_str) == Some("1")
                            && f.get("num-other-sentinels").map(String::as_str) == Some("2")
                    })
                    .then_some(())
            },
        )
        .await;
    }
}
