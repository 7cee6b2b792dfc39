//! A cluster of real `rhizome-coordinator` processes on 127.0.0.1: each
//! replica with its own port (fixed for its lifetime, since peers know each
//! other by URL) and its own data directory inside the test's [`Env`]
//! directory, its log captured to `coord-<id>.log` (a restarted replica
//! appends to the same file). Replicas can be killed (SIGKILL), stopped
//! (SIGTERM) and restarted on the same port and data directory.
//!
//! Ports are chosen up front below the kernel's ephemeral range, so no
//! outgoing connection can hold a dead replica's port when it restarts.
//!
//! Raft timings are short so that tests stay quick, but not so short that a
//! loaded 2-core machine flaps ([`Timings::TEST`]). openraft lets a follower
//! that heard from a leader refuse other candidates for
//! `election_timeout_max` (its lease) and then waits its own randomised
//! election timeout, so a killed leader is replaced after about
//! `max + [min, max)` plus a tick of 1.5 heartbeats.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Output};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use super::http::Resp;
use super::{bin, listening_addr, wait_for, Env, Proc};

/// How long one status call to a replica may take before it counts as not
/// answering.
pub const CALL_DEADLINE: Duration = Duration::from_secs(2);
/// Deadline for a cluster to agree on a leader.
pub const LEADER_DEADLINE: Duration = Duration::from_secs(30);

/// Raft timings given to every replica (through `RHIZOME_COORD__RAFT__*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// `raft.heartbeat_interval`.
    pub heartbeat: Duration,
    /// `raft.election_timeout_min`.
    pub election_min: Duration,
    /// `raft.election_timeout_max`.
    pub election_max: Duration,
}

impl Timings {
    /// The tests' timings: the coordinator's defaults (100 ms heartbeats,
    /// elections after 300–600 ms), so a failover fits in a node's fence.
    pub const TEST: Timings = Timings {
        heartbeat: Duration::from_millis(100),
        election_min: Duration::from_millis(300),
        election_max: Duration::from_millis(600),
    };

    /// How long replacing a killed leader may take: the followers' lease
    /// (`election_timeout_max`) then an election timeout (below the max),
    /// plus openraft's tick (1.5 heartbeats) and a second for a loaded
    /// machine to notice and answer.
    pub fn failover_bound(&self) -> Duration {
        2 * self.election_max + self.heartbeat * 3 / 2 + Duration::from_secs(1)
    }

    fn env(&self) -> Vec<(String, String)> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        vec![
            (
                "RHIZOME_COORD__RAFT__HEARTBEAT_INTERVAL".into(),
                ms(self.heartbeat),
            ),
            (
                "RHIZOME_COORD__RAFT__ELECTION_TIMEOUT_MIN".into(),
                ms(self.election_min),
            ),
            (
                "RHIZOME_COORD__RAFT__ELECTION_TIMEOUT_MAX".into(),
                ms(self.election_max),
            ),
        ]
    }
}

/// One replica: where it listens and keeps its data, and its process while
/// it runs.
#[derive(Debug)]
pub struct Replica {
    /// Raft id.
    pub id: u64,
    /// Listener address (the same across restarts).
    pub addr: SocketAddr,
    /// Data directory (the same across restarts).
    pub data_dir: PathBuf,
    /// Captured log.
    pub log: PathBuf,
    /// The process, while it runs (a killed or stopped replica keeps its
    /// exited process here until restarted).
    pub proc: Option<Proc>,
    running: bool,
}

impl Replica {
    /// `http://addr`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A running coordinator cluster.
#[derive(Debug)]
pub struct Coordinators {
    replicas: BTreeMap<u64, Replica>,
    peers: String,
    timings: Timings,
}

impl Coordinators {
    /// Starts `n` replicas (ids 1..=n) at once with [`Timings::TEST`] and
    /// waits until each listens (not for a leader: see [`Self::leader`]).
    pub async fn start(env: &Env, n: usize) -> Coordinators {
        Self::start_with(env, n, Timings::TEST).await
    }

    /// Like [`Self::start`] with other raft timings.
    pub async fn start_with(env: &Env, n: usize, timings: Timings) -> Coordinators {
        let ports = free_ports(n);
        let replicas: BTreeMap<u64, Replica> = (1..=n as u64)
            .zip(ports)
            .map(|(id, port)| {
                let replica = Replica {
                    id,
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    data_dir: env.path(&format!("coord-{id}-data")),
                    log: env.path(&format!("coord-{id}.log")),
                    proc: None,
                    running: false,
                };
                (id, replica)
            })
            .collect();
        let peers = replicas
            .values()
            .map(|r| format!("{}={}", r.id, r.base()))
            .collect::<Vec<_>>()
            .join(",");
        let mut coords = Coordinators {
            replicas,
            peers,
            timings,
        };
        let spawned: Vec<Proc> =
            futures_util::future::join_all(coords.ids().into_iter().map(|id| coords.spawn(id)))
                .await;
        for (id, proc) in coords.ids().into_iter().zip(spawned) {
            let replica = coords.replica_mut(id);
            replica.proc = Some(proc);
            replica.running = true;
        }
        coords
    }

    /// Spawns replica `id` and waits for its `listening` line.
    async fn spawn(&self, id: u64) -> Proc {
        let r = self.replica(id);
        let args: Vec<String> = [
            "--id",
            &id.to_string(),
            "--listen",
            &r.addr.to_string(),
            "--data-dir",
            &r.data_dir.display().to_string(),
            "--peers",
            &self.peers,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let env = self.timings.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut proc = Proc::spawn(&bin("rhizome-coordinator"), &args, &env, &r.log).await;
        let line = proc
            .wait_line(|v| v.get("message") == Some(&Value::from("listening")))
            .await;
        assert_eq!(
            listening_addr(&line),
            r.addr,
            "replica {id} listens elsewhere"
        );
        proc
    }

    /// Replica ids.
    pub fn ids(&self) -> Vec<u64> {
        self.replicas.keys().copied().collect()
    }

    /// Ids of the replicas the harness started and has not killed or stopped.
    pub fn running(&self) -> Vec<u64> {
        self.replicas
            .values()
            .filter(|r| r.running)
            .map(|r| r.id)
            .collect()
    }

    /// Replica `id`.
    pub fn replica(&self, id: u64) -> &Replica {
        self.replicas
            .get(&id)
            .unwrap_or_else(|| panic!("no replica {id}"))
    }

    fn replica_mut(&mut self, id: u64) -> &mut Replica {
        self.replicas
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no replica {id}"))
    }

    /// Every replica's base URL (what nodes list as `coordinator.endpoints`).
    pub fn endpoints(&self) -> Vec<String> {
        self.replicas.values().map(Replica::base).collect()
    }

    /// `http://addr` of replica `id` + `path`.
    pub fn url(&self, id: u64, path: &str) -> String {
        format!("{}{path}", self.replica(id).base())
    }

    /// The raft timings the replicas run with.
    pub fn timings(&self) -> Timings {
        self.timings
    }

    /// `raft.election_timeout_max` of the replicas.
    pub fn election_timeout_max(&self) -> Duration {
        self.timings.election_max
    }

    /// The captured log of replica `id` so far.
    pub fn log_text(&self, id: u64) -> String {
        std::fs::read_to_string(&self.replica(id).log).unwrap_or_default()
    }

    /// SIGKILLs replica `id` (its port and data directory stay reserved).
    pub fn kill(&mut self, id: u64) {
        let r = self.replica_mut(id);
        if let Some(proc) = &r.proc {
            proc.signal("KILL");
        }
        r.running = false;
    }

    /// SIGTERMs replica `id` and waits for it to exit.
    pub async fn stop(&mut self, id: u64) -> ExitStatus {
        let r = self.replica_mut(id);
        r.running = false;
        let proc = r.proc.as_mut().expect("replica was started");
        proc.signal("TERM");
        proc.wait_exit(Duration::from_secs(20)).await
    }

    /// Starts replica `id` again on the same port and data directory (after
    /// [`Self::kill`] or [`Self::stop`]) and waits until it listens.
    pub async fn restart(&mut self, id: u64) {
        if let Some(mut old) = self.replica_mut(id).proc.take() {
            if old.is_running() {
                old.signal("KILL");
            }
            old.wait_exit(Duration::from_secs(10)).await;
        }
        let proc = self.spawn(id).await;
        let r = self.replica_mut(id);
        r.proc = Some(proc);
        r.running = true;
    }

    /// `GET /v1/cluster` of replica `id`; `None` when it does not answer
    /// 200 within [`CALL_DEADLINE`].
    pub async fn cluster(&self, id: u64) -> Option<Value> {
        let resp = send(Method::GET, &self.url(id, "/v1/cluster"), &[], Bytes::new()).await?;
        (resp.status == 200).then(|| resp.json())
    }

    /// The views of every running replica that answered.
    pub async fn views(&self) -> BTreeMap<u64, Value> {
        let running = self.running();
        let answers =
            futures_util::future::join_all(running.iter().map(|id| self.cluster(*id))).await;
        running
            .into_iter()
            .zip(answers)
            .filter_map(|(id, v)| v.map(|v| (id, v)))
            .collect()
    }

    /// The current leader, once every running replica answers, all name the
    /// same running replica, and that one says it leads (deadline
    /// [`LEADER_DEADLINE`]).
    pub async fn leader(&self) -> u64 {
        wait_for(
            "the coordinators to agree on a leader",
            LEADER_DEADLINE,
            || async {
                let running = self.running();
                let views = self.views().await;
                let leaders: BTreeSet<Option<u64>> =
                    views.values().map(|v| v["leader"].as_u64()).collect();
                let leader = match leaders.into_iter().collect::<Vec<_>>().as_slice() {
                    [Some(l)] => *l,
                    _ => return None,
                };
                (views.len() == running.len() && running.contains(&leader)).then_some(leader)
            },
        )
        .await
    }

    /// Waits until replica `id` has applied at least what the leader had
    /// applied when this was called.
    pub async fn wait_caught_up(&self, id: u64) {
        let leader = self.leader().await;
        let target = wait_for("the leader's applied index", LEADER_DEADLINE, || async {
            self.cluster(leader).await?["applied"].as_u64()
        })
        .await;
        wait_for(
            &format!("replica {id} to apply up to index {target}"),
            LEADER_DEADLINE,
            || async { (self.cluster(id).await?["applied"].as_u64()? >= target).then_some(()) },
        )
        .await
    }

    /// `POST` `body` to `path` on replica `id` as a node would (codec
    /// content type); `None` when the replica does not answer.
    pub async fn post(&self, id: u64, path: &str, body: impl Into<Bytes>) -> Option<Resp> {
        post(&self.url(id, path), &[], body.into()).await
    }
}

/// `POST` codec bytes to `url` with `headers`; `None` when nothing answers
/// within [`CALL_DEADLINE`] (a killed or frozen replica).
pub async fn post(url: &str, headers: &[(&str, &str)], body: Bytes) -> Option<Resp> {
    let mut all = vec![("content-type", "application/octet-stream")];
    all.extend_from_slice(headers);
    send(Method::POST, url, &all, body).await
}

/// One request on a fresh client; `None` on any failure or after
/// [`CALL_DEADLINE`].
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Option<Resp> {
    super::http::Client::new()
        .try_send(method, url, headers, body, CALL_DEADLINE)
        .await
}

/// Credential → owner node in a `/v1/cluster` view.
pub fn owners(view: &Value) -> BTreeMap<String, String> {
    view["assignments"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(c, o)| Some((c.clone(), o["node"].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Node ids in a `/v1/cluster` view.
pub fn nodes(view: &Value) -> BTreeSet<String> {
    view["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `rhizome-coordinator ARGS` to completion (`check-config`,
/// `healthcheck`).
pub fn run_coordinator(args: &[&str]) -> Output {
    std::process::Command::new(bin("rhizome-coordinator"))
        .args(args)
        .output()
        .expect("run rhizome-coordinator")
}

/// `n` distinct loopback ports that are free now, below the ephemeral range
/// (so outgoing connections never take one while its replica is down).
pub fn free_ports(n: usize) -> Vec<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..10_000 {
        if ports.len() == n {
            break;
        }
        let port = if low > 11_000 {
            rand::random_range(10_000..low)
        } else {
            0
        };
        let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        let port = l.local_addr().expect("bound address").port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    assert_eq!(ports.len(), n, "no {n} free ports");
    ports
}
