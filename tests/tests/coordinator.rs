//! The coordinator end to end: real `rhizome-coordinator` processes on
//! loopback (see `harness::coordinator`), and fake nodes played by the test:
//! codec-encoded heartbeats and goodbyes sent exactly as a node sends them,
//! with the `seen` index of the last answer. Every wait has a deadline;
//! timing asserts stay within the contract's bounds plus a margin.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhizome_proto::codec;
use rhizome_proto::coord::{
    Heartbeat, HeartbeatReply, Leave, FORWARDED_HEADER, HEARTBEAT_PATH, LEAVE_PATH, MAX_NODE_BODY,
};
use rhizome_tests::harness::coordinator::{self, nodes, run_coordinator, Coordinators};
use rhizome_tests::harness::{wait_for, Env};
use serde_json::Value;

/// How often a fake node heartbeats.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);
/// `node_ttl` of the fake nodes that must stay alive.
const TTL_MS: u64 = 3000;
/// Deadline of waits for the cluster to settle.
const SETTLE: Duration = Duration::from_secs(20);

fn credentials(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("cred-{i:02}")).collect()
}

/// Credential → (owner, since) in a `/v1/cluster` view: a node declared
/// dead and rejoining gets the same owners back, but new `since` indices.
fn placements(view: &Value) -> BTreeMap<String, (String, u64)> {
    view["assignments"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(c, o)| {
                    Some((
                        c.clone(),
                        (o["node"].as_str()?.to_string(), o["since"].as_u64()?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// One node call: the reply on 200, else the status (0: no answer) and body.
async fn call(
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Result<HeartbeatReply, (u16, String)> {
    match coordinator::post(url, headers, Bytes::from(body)).await {
        Some(r) if r.status == 200 => {
            codec::decode(&r.body).map_err(|e| (200, format!("undecodable reply: {e}")))
        }
        Some(r) => Err((r.status, r.text())),
        None => Err((0, "no answer".into())),
    }
}

fn heartbeat(node: &str, credentials: &[String], node_ttl_ms: u64, seen: u64) -> Vec<u8> {
    codec::encode(&Heartbeat {
        node: node.into(),
        credentials: credentials.to_vec(),
        node_ttl_ms,
        seen,
    })
    .expect("encode")
}

fn goodbye(node: &str) -> Vec<u8> {
    codec::encode(&Leave { node: node.into() }).expect("encode")
}

/// What a fake node has heard.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// The last reply.
    reply: Option<HeartbeatReply>,
    /// When the heartbeat of that reply was sent.
    sent: Option<Instant>,
}

/// A node heartbeating in the background: the replica it prefers first
/// (if any), then the leader it last heard of, then every replica.
struct FakeNode {
    progress: Arc<Mutex<Progress>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeNode {
    fn spawn(
        name: &str,
        credentials: Vec<String>,
        ttl_ms: u64,
        endpoints: Vec<String>,
        prefer: Option<String>,
    ) -> FakeNode {
        let progress = Arc::new(Mutex::new(Progress::default()));
        let name = name.to_string();
        let shared = progress.clone();
        let task = tokio::spawn(async move {
            loop {
                let last = shared.lock().expect("progress").reply.clone();
                let seen = last.as_ref().map_or(0, |r| r.applied);
                let mut order: Vec<String> = prefer.iter().cloned().collect();
                order.extend(last.map(|r| r.leader_url));
                order.extend(endpoints.iter().cloned());
                let body = heartbeat(&name, &credentials, ttl_ms, seen);
                let sent = Instant::now();
                for base in order {
                    let url = format!("{base}{HEARTBEAT_PATH}");
                    if let Ok(reply) = call(&url, body.clone(), &[]).await {
                        *shared.lock().expect("progress") = Progress {
                            reply: Some(reply),
                            sent: Some(sent),
                        };
                        break;
                    }
                }
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        });
        FakeNode { progress, task }
    }

    fn progress(&self) -> Progress {
        self.progress.lock().expect("progress").clone()
    }

    /// Stops heartbeating; what it had heard.
    fn stop(self) -> Progress {
        self.task.abort();
        self.progress()
    }
}

/// Credential → owner, from [`placements`].
type Owners = BTreeMap<String, String>;
/// Credential → (owner, since).
type Placements = BTreeMap<String, (String, u64)>;

fn owners_of(p: &Placements) -> Owners {
    p.iter().map(|(c, (n, _))| (c.clone(), n.clone())).collect()
}

/// Waits until every running replica answers with the same placements and
/// nodes, and `done` holds for them; returns them.
async fn agreed(
    coords: &Coordinators,
    what: &str,
    done: impl Fn(&Owners, &BTreeSet<String>) -> bool,
) -> (Placements, BTreeSet<String>) {
    wait_for(what, SETTLE, || async {
        let views = coords.views().await;
        if views.len() != coords.running().len() {
            return None;
        }
        let seen: BTreeSet<(Placements, BTreeSet<String>)> =
            views.values().map(|v| (placements(v), nodes(v))).collect();
        let only = (seen.len() == 1).then(|| seen.into_iter().next())??;
        done(&owners_of(&only.0), &only.1).then_some(only)
    })
    .await
}

/// Starts `names` as fake nodes owning `creds` with [`TTL_MS`].
fn fleet(
    coords: &Coordinators,
    names: &[&str],
    creds: &[String],
    prefer: Option<String>,
) -> BTreeMap<String, FakeNode> {
    names
        .iter()
        .map(|n| {
            let node = FakeNode::spawn(
                n,
                creds.to_vec(),
                TTL_MS,
                coords.endpoints(),
                prefer.clone(),
            );
            (n.to_string(), node)
        })
        .collect()
}

#[tokio::test]
async fn three_replicas_started_at_once_bootstrap_one_cluster() {
    let env = Env::new("coord_bootstrap");
    let coords = Coordinators::start(&env, 3).await;
    let leader = coords.leader().await;
    let views = coords.views().await;
    assert_eq!(views.len(), 3);
    for (id, v) in &views {
        assert_eq!(v["leader"].as_u64(), Some(leader), "replica {id}: {v}");
        assert_eq!(
            v["members"],
            serde_json::json!([1, 2, 3]),
            "replica {id}: {v}"
        );
    }
    let terms: BTreeSet<u64> = views.values().filter_map(|v| v["term"].as_u64()).collect();
    assert_eq!(terms.len(), 1, "one term: {views:?}");
    for id in coords.ids() {
        let health = coordinator::send(
            http::Method::GET,
            &coords.url(id, "/healthz"),
            &[],
            Bytes::new(),
        )
        .await
        .expect("healthz answers");
        assert_eq!(health.status, 200);
        assert_eq!(health.json()["leader"].as_u64(), Some(leader));
        let metrics = coordinator::send(
            http::Method::GET,
            &coords.url(id, "/metrics"),
            &[],
            Bytes::new(),
        )
        .await
        .expect("metrics answer")
        .text();
        let is_leader = if id == leader { 1 } else { 0 };
        assert!(
            metrics.contains(&format!("rhizome_raft_is_leader {is_leader}")),
            "{metrics}"
        );
        for gauge in [
            "rhizome_raft_term",
            "rhizome_raft_applied_index",
            "rhizome_cluster_nodes_live",
        ] {
            assert!(metrics.contains(gauge), "{gauge} missing: {metrics}");
        }
    }
    let initialized = coords
        .ids()
        .iter()
        .filter(|id| coords.log_text(**id).contains("\"cluster initialized\""))
        .count();
    println!(
        "bootstrap: leader {leader}; {initialized} replicas initialized the cluster themselves"
    );
}

#[tokio::test]
async fn heartbeats_to_a_follower_assign_each_credential_once_and_moves_are_minimal() {
    let env = Env::new("coord_assign");
    let coords = Coordinators::start(&env, 3).await;
    let leader = coords.leader().await;
    let follower = coords
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let creds = credentials(40);
    for n in ["n1", "n2", "n3"] {
        let url = coords.url(follower, HEARTBEAT_PATH);
        let reply = call(&url, heartbeat(n, &creds, TTL_MS, 0), &[])
            .await
            .expect("forwarded");
        assert_eq!(
            reply.leader, leader,
            "the leader answers through the follower"
        );
        assert_eq!(reply.leader_url, coords.replica(leader).base());
    }
    let forwarded_twice = call(
        &coords.url(follower, HEARTBEAT_PATH),
        heartbeat("n1", &creds, TTL_MS, 0),
        &[(FORWARDED_HEADER, "9")],
    )
    .await;
    assert!(
        matches!(&forwarded_twice, Err((503, body)) if body.contains("no_leader")),
        "{forwarded_twice:?}"
    );

    let prefer = Some(coords.replica(follower).base());
    let mut fleet = fleet(&coords, &["n1", "n2", "n3"], &creds, prefer.clone());
    let (before, _) = agreed(&coords, "three nodes owning every credential", |o, n| {
        *n == names(&["n1", "n2", "n3"]) && o.len() == creds.len()
    })
    .await;
    let before = owners_of(&before);
    for n in ["n1", "n2", "n3"] {
        assert!(
            before.values().any(|o| o == n),
            "{n} owns some of 40: {before:?}"
        );
    }
    wait_for(
        "every move acknowledged by every node (all active)",
        SETTLE,
        || async {
            let p = fleet["n1"].progress();
            let reply = p.reply?;
            (reply.leader == leader
                && reply.assignments.len() == creds.len()
                && reply.assignments.iter().all(|a| a.active))
            .then_some(())
        },
    )
    .await;

    // A fourth node takes only its share.
    fleet.insert(
        "n4".into(),
        FakeNode::spawn("n4", creds.clone(), TTL_MS, coords.endpoints(), prefer),
    );
    let (after, _) = agreed(&coords, "n4 joined", |_, n| n.contains("n4")).await;
    let after = owners_of(&after);
    let moved: Vec<&String> = creds.iter().filter(|c| before[*c] != after[*c]).collect();
    assert!(
        moved.iter().all(|c| after[*c] == "n4"),
        "moves only to n4: {before:?} → {after:?}"
    );
    assert!(
        !moved.is_empty() && moved.len() < creds.len() / 2,
        "n4's share moved: {}",
        moved.len()
    );

    // A goodbye moves the node's credentials at once.
    fleet.remove("n2").expect("n2").stop();
    let reply = call(&coords.url(follower, LEAVE_PATH), goodbye("n2"), &[])
        .await
        .expect("leave answered");
    let left: BTreeMap<String, String> = reply
        .assignments
        .iter()
        .map(|a| (a.credential.clone(), a.node.clone()))
        .collect();
    assert_eq!(left.len(), creds.len(), "every credential still owned");
    for c in &creds {
        assert_ne!(left[c], "n2", "{c} moved off n2 in the goodbye's answer");
        if after[c] != "n2" {
            assert_eq!(left[c], after[c], "{c} did not belong to n2 and stayed");
        }
    }
    let (after_leave, _) = agreed(&coords, "n2 gone everywhere", |_, n| {
        *n == names(&["n1", "n3", "n4"])
    })
    .await;
    let after_leave = owners_of(&after_leave);
    assert_eq!(after_leave, left);

    // A node that stops heartbeating is declared dead after its ttl.
    let last = fleet.remove("n3").expect("n3").stop();
    let sent = last.sent.expect("n3 heartbeated");
    let (after_death, _) = agreed(&coords, "n3 declared dead", |_, n| !n.contains("n3")).await;
    let after_death = owners_of(&after_death);
    let silence = sent.elapsed();
    let ttl = Duration::from_millis(TTL_MS);
    assert!(
        silence >= ttl,
        "declared dead after {silence:?}, before its ttl"
    );
    assert!(
        silence <= ttl + Duration::from_secs(5),
        "declared dead only after {silence:?}"
    );
    for c in &creds {
        assert_ne!(after_death[c], "n3");
        if after_leave[c] != "n3" {
            assert_eq!(
                after_death[c], after_leave[c],
                "{c} did not belong to n3 and stayed"
            );
        }
    }
    assert!(coords.log_text(leader).contains("node declared dead"));
    println!(
        "assign: {} of 40 moved to n4; n3 declared dead after {silence:?} of silence",
        moved.len()
    );
    for (_, n) in fleet {
        n.stop();
    }
}

#[tokio::test]
async fn a_killed_leader_is_replaced_fast_owners_stay_and_it_catches_up_on_restart() {
    let env = Env::new("coord_failover");
    let mut coords = Coordinators::start(&env, 3).await;
    let old = coords.leader().await;
    let creds = credentials(30);
    let fleet = fleet(&coords, &["n1", "n2", "n3"], &creds, None);
    let all = names(&["n1", "n2", "n3"]);
    let (before, _) = agreed(&coords, "three nodes owning every credential", |o, n| {
        *n == all && o.len() == creds.len()
    })
    .await;

    coords.kill(old);
    let killed = Instant::now();
    let new = coords.leader().await;
    let took = killed.elapsed();
    assert_ne!(new, old);
    // openraft: the followers' lease (max) and then an election timeout
    // (< max), plus a tick (1.5 heartbeats) and the time to notice here.
    let bound = coords.timings().failover_bound();
    assert!(took <= bound, "new leader after {took:?} (bound {bound:?})");
    let elected = Instant::now();

    // Nodes that keep heartbeating keep their credentials, even once a whole
    // ttl has passed under the new leader.
    let ttl = Duration::from_millis(TTL_MS);
    wait_for(
        "every node answered by the new leader after a ttl in office",
        SETTLE,
        || async {
            fleet
                .values()
                .all(|n| {
                    let p = n.progress();
                    p.reply.is_some_and(|r| r.leader == new)
                        && p.sent.is_some_and(|s| s > elected + ttl)
                })
                .then_some(())
        },
    )
    .await;
    let (after, nodes_after) = agreed(&coords, "the survivors agree", |_, _| true).await;
    assert_eq!(nodes_after, all, "nobody declared dead");
    assert_eq!(
        after, before,
        "owners unchanged, nothing moved (same `since`)"
    );
    assert!(!coords.log_text(new).contains("node declared dead"));

    coords.restart(old).await;
    assert!(
        coords.log_text(old).contains("raft state found"),
        "restarted on its own log"
    );
    coords.wait_caught_up(old).await;
    let view = coords
        .cluster(old)
        .await
        .expect("restarted replica answers");
    assert_eq!(
        placements(&view),
        before,
        "the restarted replica has the assignments"
    );
    assert_eq!(view["leader"].as_u64(), Some(new));
    println!("failover: new leader {new} in {took:?} (bound {bound:?}); replica {old} caught up");
    for (_, n) in fleet {
        n.stop();
    }
}

#[tokio::test]
async fn every_replica_terminated_and_restarted_keeps_the_assignments() {
    let env = Env::new("coord_restart");
    let mut coords = Coordinators::start(&env, 3).await;
    let leader = coords.leader().await;
    let creds = credentials(30);
    // Silent from the stop on: what the restarted cluster shows is what it
    // kept, not what heartbeats told it again (a long ttl keeps the nodes
    // live meanwhile).
    let all = names(&["n1", "n2", "n3"]);
    for n in &all {
        let url = coords.url(leader, HEARTBEAT_PATH);
        call(&url, heartbeat(n, &creds, 60_000, 0), &[])
            .await
            .expect("joined");
    }
    let (before, _) = agreed(&coords, "three nodes owning every credential", |o, n| {
        *n == all && o.len() == creds.len()
    })
    .await;
    let applied = coords.cluster(leader).await.expect("leader view")["applied"]
        .as_u64()
        .expect("applied");
    for id in coords.ids() {
        let status = coords.stop(id).await;
        assert!(status.success(), "replica {id} exited with {status}");
        assert!(coords.log_text(id).contains("\"stopped\""));
    }
    for id in coords.ids() {
        coords.restart(id).await;
        assert!(coords.log_text(id).contains("raft state found"));
    }
    let leader = coords.leader().await;
    let (after, nodes_after) = agreed(&coords, "the assignments back on every replica", |o, n| {
        o.len() == creds.len() && *n == all
    })
    .await;
    assert_eq!(after, before, "same owners, same since");
    assert_eq!(nodes_after, all);
    for (id, view) in coords.views().await {
        let now = view["applied"].as_u64().expect("applied");
        assert!(
            now >= applied,
            "replica {id} applied {now}, before the stop {applied}"
        );
    }
    // The leader takes office by renewing every assignment under a new
    // index, even one that resumed its old term (no blank entry of its own).
    // A heartbeat's answer waits for that; the status view does not.
    let url = coords.url(leader, HEARTBEAT_PATH);
    let reply = wait_for("the leader answers a heartbeat", SETTLE, || async {
        call(&url, heartbeat("n1", &creds, 60_000, 0), &[])
            .await
            .ok()
    })
    .await;
    assert!(
        reply.assignments.iter().all(|a| a.epoch > applied),
        "{reply:?}"
    );
    wait_for("every assignment renewed", SETTLE, || async {
        let view = coords.cluster(leader).await?;
        let epochs = view["assignments"]
            .as_object()?
            .values()
            .map(|o| o["epoch"].as_u64());
        epochs
            .collect::<Option<Vec<u64>>>()?
            .iter()
            .all(|e| *e > applied)
            .then_some(())
    })
    .await;
}

fn error_code(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body).map_or(Value::Null, |v| v["error"]["code"].clone())
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_and_the_replica_keeps_serving() {
    let env = Env::new("coord_bodies");
    let coords = Coordinators::start(&env, 1).await;
    assert_eq!(coords.leader().await, 1);
    let garbage = Bytes::from_static(b"\xff\xff\xff\xff\xff");
    let cases = [
        (HEARTBEAT_PATH, garbage.clone()),
        (HEARTBEAT_PATH, Bytes::from(vec![0u8; MAX_NODE_BODY + 1])),
        (
            HEARTBEAT_PATH,
            Bytes::from(heartbeat("n1", &credentials(1), 10, 0)),
        ),
        (
            HEARTBEAT_PATH,
            Bytes::from(heartbeat("bad id", &credentials(1), TTL_MS, 0)),
        ),
        (LEAVE_PATH, garbage.clone()),
        ("/raft/append", garbage.clone()),
        ("/raft/append", Bytes::from(vec![0u8; (16 << 20) + 1])),
        ("/raft/vote", garbage),
    ];
    for (path, body) in cases {
        let len = body.len();
        let resp = coords
            .post(1, path, body)
            .await
            .unwrap_or_else(|| panic!("{path} ({len} bytes) answered"));
        assert_eq!(resp.status, 400, "{path} ({len} bytes): {}", resp.text());
        assert_eq!(
            error_code(&resp.body),
            "bad_request",
            "{path}: {}",
            resp.text()
        );
    }
    let health = coordinator::send(
        http::Method::GET,
        &coords.url(1, "/healthz"),
        &[],
        Bytes::new(),
    )
    .await
    .expect("still serving");
    assert_eq!(health.status, 200);
    let reply = call(
        &coords.url(1, HEARTBEAT_PATH),
        heartbeat("n1", &credentials(3), TTL_MS, 0),
        &[],
    )
    .await
    .expect("a valid heartbeat still works");
    assert_eq!(reply.assignments.len(), 3);
    assert!(reply.assignments.iter().all(|a| a.node == "n1" && a.active));
}

#[tokio::test]
async fn healthcheck_and_check_config_work_as_commands() {
    let env = Env::new("coord_cli");
    let coords = Coordinators::start(&env, 1).await;
    coords.leader().await;
    let live = coords.url(1, "/healthz");
    let ok = run_coordinator(&["healthcheck", "--url", &live]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let dead_port = coordinator::free_ports(1)[0];
    let dead = run_coordinator(&[
        "healthcheck",
        "--url",
        &format!("http://127.0.0.1:{dead_port}/healthz"),
    ]);
    assert!(
        !dead.status.success(),
        "healthcheck of a dead port succeeded"
    );

    let bad = env.write(
        "bad.toml",
        "id = 1\n[peers]\n1 = \"http://a:7070\"\n2 = \"https://b:7070\"\n3 = \"http://c:7070\"\n[raft]\nheartbeat = \"1s\"\n",
    );
    let out = run_coordinator(&["check-config", &bad.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check-config accepted a bad file");
    assert!(
        stderr.contains("peers.2: \"https://b:7070\" must start with http://"),
        "{stderr}"
    );
    assert!(stderr.contains("raft.heartbeat: unknown field"), "{stderr}");
    let good = env.write(
        "good.toml",
        "id = 2\n[peers]\n1 = \"http://a:7070\"\n2 = \"http://b:7070\"\n3 = \"http://c:7070\"\n",
    );
    let out = run_coordinator(&["check-config", &good.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (replica 2 of 3)"));
}
