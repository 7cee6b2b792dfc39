//! Credential ownership in cluster mode, end to end: a real `redis-server`,
//! three real coordinators and real nodes in `coordinator.mode = "cluster"`.
//! One owner per credential at every sample, one token call per credential
//! per refresh cycle (G1), one refresh for a 401 storm (G2), failover when
//! the owner dies or freezes (G3), when the raft leader dies (G4) and when
//! every coordinator does (G5), rendezvous movement on join and an
//! immediate handover on SIGTERM.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::{steady_gets, Client};
use rhizome_tests::harness::ownership::{self, raft_world, RaftWorld, Sampler, POOL};
use rhizome_tests::harness::secrets::ADMIN_TOKEN;
use rhizome_tests::harness::wait_for;
use serde_json::json;

fn admin_auth() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

/// Sends `GET path` through node `i` and returns the status.
async fn get(world: &RaftWorld, i: usize, path: &str) -> u16 {
    let key = fixture::bearer();
    Client::new()
        .get(
            &world.nodes[i].url(path),
            &[("authorization", key.as_str())],
        )
        .await
        .status
}

/// The owner node's token record epoch (`epoch_a`, `epoch_l`) in Redis.
fn stored_epoch(world: &RaftWorld, cred: &str) -> (u64, u64) {
    let key = format!("rz:tok:{{{cred}}}");
    let a = world.redis.cli(&["HGET", &key, "epoch_a"]);
    let l = world.redis.cli(&["HGET", &key, "epoch_l"]);
    (a.trim().parse().unwrap_or(0), l.trim().parse().unwrap_or(0))
}

#[tokio::test]
async fn g1_one_token_call_per_credential_per_cycle_and_one_owner_at_every_sample() {
    let tuning = Tuning {
        refresh_margin: "2s",
        ..Tuning::default()
    };
    let mut world = raft_world("own_g1", &["--expires-in", "6"], 3, tuning).await;
    // Every token call takes 200 ms, so two overlapping refreshes of one
    // credential would be seen by the token server.
    let slow: BTreeMap<String, u64> = (1..=POOL).map(|i| (format!("svc-p{i}"), 200)).collect();
    world
        .mock
        .control("/_mock/config", json!({ "slow_clients": slow }))
        .await;
    let live = world.live();
    let sampler = Sampler::start(world.admin_bases(&live));
    let run = Duration::from_secs(60);
    let urls = (0..3)
        .flat_map(|n| (1..=POOL).map(move |p| (n, p)))
        .map(|(n, p)| world.nodes[n].url(&format!("/p{p}/n{n}")))
        .collect();
    let total = steady_gets(urls, &fixture::bearer(), run, Duration::from_millis(100)).await;
    let (samples, doubles) = sampler.finish().await;
    assert!(doubles.is_empty(), "two owners at once: {doubles:#?}");
    assert!(samples > 300, "sampled {samples} times");
    let stats = world.mock.stats().await;
    assert_eq!(stats["expired_seen"], 0, "{stats}");
    assert_eq!(stats["rejected"], 0, "{stats}");
    // 6 s tokens are refreshed 2 s (refresh_margin) before expiry, after
    // 4 s, plus the 200 ms of the call.
    let cycles = run.as_secs_f64() / 4.2;
    for p in 1..=POOL {
        let client = format!("svc-p{p}");
        let calls = stats["token_calls"][&client].as_u64().expect("calls") as f64;
        assert!(
            calls >= cycles - 3.0 && calls <= cycles + 2.0,
            "{client}: {calls} token calls for {cycles:.0} cycles ({total} requests): {stats}"
        );
        assert_eq!(
            stats["token_overlaps"].get(&client),
            None,
            "{client}: overlapping refreshes: {stats}"
        );
    }
    // The metric agrees: each shared credential is owned on exactly one node,
    // and every node shows the same owner and epoch.
    let mut views = Vec::new();
    for n in 0..3 {
        views.push(
            ownership::credentials_view(&world.nodes[n].admin_url(""))
                .await
                .expect("view"),
        );
    }
    for cred in ownership::shared_credentials() {
        let mut owned = 0.0;
        for n in 0..3 {
            let series = format!("rhizome_credential_owned{{credential=\"{cred}\"}}");
            owned += world.nodes[n].metric(&series).await.unwrap_or(0.0);
        }
        assert_eq!(owned, 1.0, "{cred} owned on exactly one node");
        let seen: Vec<(String, String)> = views
            .iter()
            .map(|v| {
                let c = v["credentials"]
                    .as_array()
                    .expect("list")
                    .iter()
                    .find(|c| c["name"] == cred.as_str())
                    .expect("listed");
                (
                    c["owner"].as_str().unwrap_or_default().to_string(),
                    c["epoch"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert!(
            seen.windows(2).all(|w| w[0].0 == w[1].0),
            "{cred}: owners differ: {seen:?}"
        );
    }
    println!(
        "G1: {samples} samples, no double owner; token calls {}",
        stats["token_calls"]
    );
    world.env.assert_logs_clean();
}

#[tokio::test]
async fn g2_a_rotation_hit_by_300_requests_on_3_nodes_is_refreshed_once() {
    let world = raft_world("own_g2", &[], 3, Tuning::default()).await;
    for n in 0..3 {
        assert_eq!(get(&world, n, "/a/warm").await, 200);
    }
    assert_eq!(world.mock.stats().await["token_calls"]["svc-a"], 1);
    world
        .mock
        .control("/_mock/config", json!({"auth_delay_ms": 300}))
        .await;
    world.mock.control("/_mock/rotate", json!({})).await;
    let key = fixture::bearer();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let url = world.nodes[i % 3].url(&format!("/a/storm/{i}"));
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            Client::new()
                .get(&url, &[("authorization", key.as_str())])
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.expect("join"),
            200,
            "every request succeeds after one retry"
        );
    }
    let stats = world.mock.stats().await;
    assert_eq!(
        stats["token_calls"]["svc-a"], 2,
        "exactly one refresh cluster-wide: {stats}"
    );
    assert_eq!(stats["rejected"], 300, "{stats}");
    world.env.assert_logs_clean();
}

/// Kills the owner of `cred` and returns how long until a request through
/// a survivor that needs a new token succeeded (the new owner's refresh).
async fn owner_failover(world: &mut RaftWorld, cred: &str, path: &str) -> Duration {
    let live = world.live();
    let owners = world.wait_owned(&live).await;
    let owner = owners[cred];
    let survivor = *live.iter().find(|i| **i != owner).expect("a survivor");
    world.nodes[owner].proc.signal("KILL");
    let killed = Instant::now();
    // The shared token is dropped: the survivor needs the owner to refresh.
    let r = Client::new()
        .send(
            http::Method::DELETE,
            &world.nodes[survivor].admin_url(&format!("/admin/v1/credentials/{cred}/token")),
            &[("authorization", admin_auth().as_str())],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let status = get(world, survivor, path).await;
    let took = killed.elapsed();
    assert_eq!(status, 200, "the request waited for the new owner's token");
    world.nodes[owner]
        .proc
        .wait_exit(Duration::from_secs(5))
        .await;
    took
}

#[tokio::test]
async fn g3_a_killed_owner_is_replaced_within_node_ttl_and_a_frozen_one_cannot_write() {
    let mut world = raft_world("own_g3", &[], 3, Tuning::default()).await;
    assert_eq!(get(&world, 0, "/p1/warm").await, 200);
    let sampler = Sampler::start(world.admin_bases(&[0, 1, 2]));
    let took = owner_failover(&mut world, "pool-1", "/p1/after-kill").await;
    assert!(
        took < Duration::from_secs(4),
        "node_ttl 3 s + 1 s: took {took:?}"
    );
    println!("G3: owner killed → new owner's refresh served in {took:?}");

    // Freeze the new owner until the credential moves, then let it run.
    let live = world.live();
    let owners = world.wait_owned(&live).await;
    let frozen = owners["pool-1"];
    let others: Vec<usize> = live.iter().copied().filter(|i| *i != frozen).collect();
    let before = stored_epoch(&world, "pool-1");
    world.nodes[frozen].proc.signal("STOP");
    let moved = world.wait_owned(&others).await;
    assert_ne!(moved["pool-1"], frozen);
    // The new owner refreshes under its newer assignment.
    assert_eq!(get(&world, others[0], "/p1/while-frozen").await, 200);
    let r = Client::new()
        .post(
            &world.nodes[others[0]].admin_url("/admin/v1/credentials/pool-1/refresh"),
            &[("authorization", admin_auth().as_str())],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let newer = stored_epoch(&world, "pool-1");
    assert!(
        newer > before,
        "new owner writes under a newer epoch: {before:?} → {newer:?}"
    );
    world.nodes[frozen].proc.signal("CONT");
    // Resumed, it asks for a refresh itself: the owner does it; the stored
    // epoch never goes back.
    let r = Client::new()
        .post(
            &world.nodes[frozen].admin_url("/admin/v1/credentials/pool-1/refresh"),
            &[("authorization", admin_auth().as_str())],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = stored_epoch(&world, "pool-1");
    assert!(
        after >= newer,
        "the stored epoch went back: {newer:?} → {after:?}"
    );
    let view = ownership::credentials_view(&world.nodes[frozen].admin_url(""))
        .await
        .expect("view");
    let own = view["credentials"]
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["name"] == "pool-1")
        .expect("pool-1")["owner"]
        .clone();
    assert_ne!(
        own,
        json!(world.name(frozen)),
        "the resumed node stepped down"
    );
    let (samples, doubles) = sampler.finish().await;
    assert!(doubles.is_empty(), "two owners at once: {doubles:#?}");
    println!("G3: {samples} samples without a double owner");
    world.env.assert_logs_clean();
}

#[tokio::test]
async fn g4_the_raft_leader_killed_keeps_owners_and_a_new_leader_comes_fast() {
    let mut world = raft_world("own_g4", &[], 3, Tuning::default()).await;
    let live = world.live();
    let before = world.wait_owned(&live).await;
    let sampler = Sampler::start(world.admin_bases(&live));
    let leader = world.coords.leader().await;
    world.coords.kill(leader);
    let killed = Instant::now();
    let new_leader = world.coords.leader().await;
    let took = killed.elapsed();
    assert_ne!(new_leader, leader);
    // Election timeouts of the harness: at most 2 × the maximum.
    let bound = world.coords.timings().failover_bound();
    assert!(took <= bound, "new leader after {took:?} (bound {bound:?})");
    for _ in 0..10 {
        assert_eq!(
            world.wait_owned(&live).await,
            before,
            "no ownership change for live nodes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get(&world, 0, "/a/after-leader-kill").await, 200);
    world.coords.restart(leader).await;
    world.coords.wait_caught_up(leader).await;
    let (_, doubles) = sampler.finish().await;
    assert!(doubles.is_empty(), "two owners at once: {doubles:#?}");
    println!("G4: new leader in {took:?}; owners unchanged");
    world.env.assert_logs_clean();
}

#[tokio::test]
async fn g5_without_any_coordinator_nodes_go_degraded_and_come_back() {
    let mut world = raft_world("own_g5", &[], 3, Tuning::default()).await;
    assert_eq!(get(&world, 0, "/p2/warm").await, 200);
    let epoch_before = stored_epoch(&world, "pool-2");
    for id in world.coords.ids() {
        world.coords.kill(id);
    }
    for n in 0..3 {
        let node = &world.nodes[n];
        wait_for(
            "degraded mode reported",
            Duration::from_secs(10),
            || async {
                (node.metric("rhizome_ownership_degraded").await == Some(1.0)).then_some(())
            },
        )
        .await;
    }
    // Proxying goes on, and a token that has to be replaced is, under the lock.
    let calls = world.mock.stats().await["token_calls"]["svc-p2"]
        .as_u64()
        .unwrap_or(0);
    let r = Client::new()
        .send(
            http::Method::DELETE,
            &world.nodes[1].admin_url("/admin/v1/credentials/pool-2/token"),
            &[("authorization", admin_auth().as_str())],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    for n in 0..3 {
        assert_eq!(get(&world, n, &format!("/p2/degraded/{n}")).await, 200);
    }
    let degraded_calls = world.mock.stats().await["token_calls"]["svc-p2"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        degraded_calls,
        calls + 1,
        "one refresh under the lock for three nodes"
    );
    // A node started while no coordinator answers knows no assignment, yet
    // the record was written under one: it still refreshes under the lock.
    let late = world.add_node("n9").await;
    let node = &world.nodes[late];
    wait_for(
        "the late node reports degraded mode",
        Duration::from_secs(10),
        || async { (node.metric("rhizome_ownership_degraded").await == Some(1.0)).then_some(()) },
    )
    .await;
    let r = Client::new()
        .send(
            http::Method::DELETE,
            &world.nodes[late].admin_url("/admin/v1/credentials/pool-2/token"),
            &[("authorization", admin_auth().as_str())],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        get(&world, late, "/p2/late").await,
        200,
        "the late node refreshed"
    );
    world.nodes[late].proc.signal("KILL");
    world.nodes[late]
        .proc
        .wait_exit(Duration::from_secs(5))
        .await;
    for id in world.coords.ids() {
        world.coords.restart(id).await;
    }
    for n in 0..3 {
        let node = &world.nodes[n];
        wait_for("normal mode again", Duration::from_secs(20), || async {
            (node.metric("rhizome_ownership_degraded").await == Some(0.0)).then_some(())
        })
        .await;
    }
    let live = world.live();
    world.wait_owned(&live).await;
    let r = Client::new()
        .post(
            &world.nodes[0].admin_url("/admin/v1/credentials/pool-2/refresh"),
            &[("authorization", admin_auth().as_str())],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let epoch_after = stored_epoch(&world, "pool-2");
    assert!(
        epoch_after.0 > epoch_before.0,
        "a fresh assignment epoch after the coordinators came back: {epoch_before:?} → {epoch_after:?}"
    );
    world.env.assert_logs_clean();
}

#[tokio::test]
async fn a_joining_node_takes_only_its_share_and_sigterm_hands_over_at_once() {
    let mut world = raft_world("own_join", &[], 3, Tuning::default()).await;
    let before = world.wait_owned(&[0, 1, 2]).await;
    let sampler = Sampler::start(world.admin_bases(&[0, 1, 2]));
    // Named so that rendezvous hashing gives it 2 of the 8 shared credentials.
    let n4 = world.add_node("n7").await;
    sampler.add(world.name(n4), world.nodes[n4].admin_url(""));
    // Complete is not enough: the assignment before the join is complete too.
    let after = world
        .wait_owned_such(&[0, 1, 2, 3], |o| o.values().any(|i| *i == n4))
        .await;
    let moved: Vec<_> = before.iter().filter(|(c, o)| after[*c] != **o).collect();
    assert!(
        moved.iter().all(|(c, _)| after[*c] == n4),
        "only moves to the new node: {before:?} → {after:?}"
    );
    assert!(
        moved.len() < before.len(),
        "not everything moved: {moved:?}"
    );
    let mine: Vec<String> = after
        .iter()
        .filter(|(_, o)| **o == n4)
        .map(|(c, _)| c.clone())
        .collect();
    let stopping = Instant::now();
    world.nodes[n4].proc.signal("TERM");
    let handed = world.wait_owned(&[0, 1, 2]).await;
    let took = stopping.elapsed();
    // Handed over because it said goodbye, not because it went silent for
    // node_ttl (the log of the leader that applied it says which).
    // The coordinators write their logs from a thread of their own: wait
    // for the line rather than read once.
    let about_n7 = |logs: &str, message: &str| {
        logs.lines()
            .any(|l| l.contains(message) && l.contains("\"node\":\"n7\""))
    };
    let logs = wait_for(
        "the leave of n7 in a coordinator's log",
        Duration::from_secs(10),
        || {
            let logs: String = (1..=3).map(|id| world.coords.log_text(id)).collect();
            std::future::ready(about_n7(&logs, "\"node left\"").then_some(logs))
        },
    )
    .await;
    assert!(
        !about_n7(&logs, "node declared dead"),
        "n7 was declared dead instead of leaving"
    );
    for c in &mine {
        assert_ne!(handed[c], n4);
    }
    world.nodes[n4]
        .proc
        .wait_exit(Duration::from_secs(30))
        .await;
    let (_, doubles) = sampler.finish().await;
    assert!(doubles.is_empty(), "two owners at once: {doubles:#?}");
    println!(
        "join: {} of {} credentials moved to the new node; SIGTERM handed {} over in {took:?}",
        moved.len(),
        before.len(),
        mine.len()
    );
    world.env.assert_logs_clean();
}

#[tokio::test]
async fn check_config_refuses_cluster_mode_without_endpoints() {
    let env = rhizome_tests::harness::Env::new("own_check_config");
    let cfg = env.write(
        "cluster.toml",
        "[state]\nbackend = \"redis\"\n[coordinator]\nmode = \"cluster\"\n",
    );
    let out = std::process::Command::new(rhizome_tests::harness::bin("rhizome-node"))
        .args(["check-config", &cfg.display().to_string()])
        .output()
        .expect("run check-config");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("coordinator.endpoints: required"), "{text}");
}

/// Owner kill → the new owner's first refresh, and leader kill → new
/// leader, each measured `RZ_FAILOVER_REPS` times (3 by default; the
/// closing figures come from 20).
#[tokio::test]
async fn failover_times_over_repetitions() {
    let reps: usize = std::env::var("RZ_FAILOVER_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut world = raft_world("own_failover", &[], 3, Tuning::default()).await;
    let (mut owner_times, mut leader_times) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let path = format!("/p3/rep{rep}");
        let first = world.live()[0];
        assert_eq!(get(&world, first, &path).await, 200);
        let live = world.live();
        let owner = world.wait_owned(&live).await["pool-3"];
        owner_times.push(owner_failover(&mut world, "pool-3", &path).await);
        let name = world.name(owner);
        let node = fixture::node(&world.env, &name, &world.mock, &world.tuning).await;
        world.nodes[owner] = node;
        let leader = world.coords.leader().await;
        world.coords.kill(leader);
        let killed = Instant::now();
        world.coords.leader().await;
        leader_times.push(killed.elapsed());
        world.coords.restart(leader).await;
        world.coords.wait_caught_up(leader).await;
    }
    let summary = |v: &mut Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (om, ox) = summary(&mut owner_times);
    let (lm, lx) = summary(&mut leader_times);
    println!("failover over {reps} repetitions: owner kill → new owner's refresh median {om:?} max {ox:?}; leader kill → new leader median {lm:?} max {lx:?}");
    assert!(ox < Duration::from_secs(4), "owner failover max {ox:?}");
    let bound = world.coords.timings().failover_bound();
    assert!(lx <= bound, "leader failover max {lx:?} (bound {bound:?})");
}
