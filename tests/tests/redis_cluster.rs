//! The shared-state scenarios on a real three-master Redis Cluster
//! (`redis-cluster://`): one token call per refresh cycle (G1), a 401 storm
//! refreshed once (G2), MCP sessions created on one node and used, listed
//! and deleted on the others, and a stream resumed through another node
//! with every later event once, in order (S2). Each credential's, session's
//! and stream's keys share a slot; the scripts touch one slot only; token
//! events and SSE wake-ups travel by pub/sub across the cluster. A master
//! killed and failed over to its replica is followed without a restart.

use std::time::{Duration, Instant};

use rhizome_tests::harness::fixture::{self, OnRedisCluster, Tuning};
use rhizome_tests::harness::http::{steady_gets, Client};
use rhizome_tests::harness::secrets::ADMIN_TOKEN;
use rhizome_tests::harness::secrets::CLIENT_KEY;
use rhizome_tests::harness::sse::{self, numbers, Reader};
use rhizome_tests::harness::{mcp, wait_for, Node};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// G2: a rotation hit by 300 requests over three nodes is refreshed once.
#[tokio::test]
async fn a_401_storm_over_3_nodes_on_a_redis_cluster_is_refreshed_once() {
    let OnRedisCluster {
        env,
        redis,
        mock,
        nodes,
    } = fixture::on_redis_cluster("cluster_g2", &[], 3, Tuning::default()).await;
    let c = Client::new();
    let key = fixture::bearer();
    for n in &nodes {
        let r = c
            .get(&n.url("/a/warm"), &[("authorization", key.as_str())])
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(mock.stats().await["token_calls"]["svc-a"], 1);
    mock.control("/_mock/config", json!({"auth_delay_ms": 300}))
        .await;
    mock.control("/_mock/rotate", json!({})).await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (c, url, key) = (
            c.clone(),
            nodes[i % 3].url(&format!("/a/storm/{i}")),
            key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            c.get(&url, &[("authorization", key.as_str())]).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join"), 200);
    }
    let stats = mock.stats().await;
    assert_eq!(stats["token_calls"]["svc-a"], 2, "one refresh: {stats}");
    assert_eq!(stats["rejected"], 300, "{stats}");
    println!(
        "G2 on Redis Cluster: 300 requests, 1 refresh; keys per master {:?}",
        redis.keys_per_master()
    );
    env.assert_logs_clean();
}

/// G1: steady load on three nodes makes one token call per cycle.
#[tokio::test]
async fn steady_load_on_3_nodes_on_a_redis_cluster_makes_one_token_call_per_cycle() {
    let tuning = Tuning {
        refresh_margin: "2s",
        ..Tuning::default()
    };
    // Every field bound: a field left to `..` would be dropped (killed) here.
    let OnRedisCluster {
        env,
        redis: _redis,
        mock,
        nodes,
    } = fixture::on_redis_cluster("cluster_g1", &["--expires-in", "4"], 3, tuning).await;
    let run = Duration::from_secs(20);
    let urls = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| n.url(&format!("/a/n{i}")))
        .collect();
    let total = steady_gets(urls, &fixture::bearer(), run, Duration::from_millis(10)).await;
    let stats = mock.stats().await;
    assert_eq!(stats["expired_seen"], 0, "{stats}");
    assert_eq!(stats["rejected"], 0, "{stats}");
    // 4 s tokens refreshed half-way: one cycle per 2 s, whatever the node count.
    let calls = stats["token_calls"]["svc-a"].as_u64().expect("calls");
    let cycles = run.as_secs() / 2;
    assert!(
        calls >= 2 && calls <= cycles + 3,
        "{calls} token calls for {cycles} cycles on 3 nodes ({total} requests)"
    );
    println!(
        "G1 on Redis Cluster: {calls} token calls in {run:?} for {cycles} cycles, {total} requests"
    );
    env.assert_logs_clean();
}

/// MCP sessions created on n1 live in several slots; n2 and n3 use them,
/// n2 lists and deletes them, n3 then finds them gone.
#[tokio::test]
async fn mcp_sessions_on_a_redis_cluster_work_across_nodes() {
    let OnRedisCluster {
        env,
        redis,
        mock: _mock,
        nodes,
    } = fixture::on_redis_cluster("cluster_mcp", &[], 3, Tuning::default()).await;
    // Every node subscribes to token events and SSE wake-ups on some master;
    // a PUBLISH on any master reaches them all (cluster-wide pub/sub).
    for channel in ["rz:tok-events", "rz:sse-wake"] {
        let subscribers: u64 = redis
            .masters
            .iter()
            .filter_map(|m| {
                let out = m.cli(&["PUBSUB", "NUMSUB", channel]);
                out.lines().nth(1)?.trim().parse::<u64>().ok()
            })
            .sum();
        assert_eq!(subscribers, nodes.len() as u64, "subscribers of {channel}");
    }
    let mut sessions = Vec::new();
    for _ in 0..12 {
        let r = mcp::call(&nodes[0], None, "initialize").await;
        assert_eq!(r.status, 200, "{}", r.text());
        sessions.push(r.header("mcp-session-id").expect("session").to_string());
    }
    let spread = redis.keys_per_master();
    assert!(
        spread.iter().filter(|n| **n > 0).count() >= 2,
        "sessions spread over the masters: {spread:?}"
    );
    for s in &sessions {
        for n in &nodes[1..] {
            assert_eq!(mcp::call(n, Some(s), "tools/list").await.status, 200);
        }
    }
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let list = Client::new()
        .get(
            &nodes[1].admin_url("/admin/v1/sessions?limit=100"),
            &[("authorization", admin.as_str())],
        )
        .await;
    assert_eq!(list.status, 200, "{}", list.text());
    let listed = list.json()["sessions"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(
        listed,
        sessions.len(),
        "every shard listed: {}",
        list.text()
    );
    // The gauge counts the cluster's sessions (the index), not a node's cache.
    let want = Some(sessions.len() as f64);
    wait_for(
        "n3 counting every session",
        Duration::from_secs(20),
        || async { (nodes[2].metric("rhizome_sessions_active").await == want).then_some(()) },
    )
    .await;
    for s in &sessions {
        assert_eq!(mcp::delete(&nodes[1], s).await.status, 200);
    }
    for s in &sessions {
        assert_eq!(
            mcp::call(&nodes[2], Some(s), "tools/list").await.status,
            404
        );
    }
    env.assert_logs_clean();
}

const REPLAY: &str = "replay = true\non_client_disconnect = \"detach\"\ndetach_grace = \"20s\"";

/// Opens `path` on `node` as the test client, resuming after `last`.
async fn open(node: &Node, path: &str, last: Option<&str>) -> (u16, Reader) {
    let (status, reader, _) = sse::open(node, path, CLIENT_KEY, last).await;
    (status, reader)
}

/// S2: a client drops after 40 of 120 events and resumes through another
/// node; it gets 41..=120 exactly once, in order, the rest live.
#[tokio::test]
async fn a_stream_resumed_through_another_node_on_a_redis_cluster_loses_and_repeats_nothing() {
    let tuning = Tuning {
        sse: REPLAY,
        ..Tuning::default()
    };
    let OnRedisCluster {
        env,
        redis: _redis,
        mock: _mock,
        nodes,
    } = fixture::on_redis_cluster("cluster_s2", &[], 2, tuning).await;
    let path = "/e/sse?count=120&interval_ms=25";
    let (status, mut first) = open(&nodes[0], path, None).await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    while seen.len() < 40 {
        seen.push(first.next(WAIT).await.expect("an event"));
    }
    assert_eq!(numbers(&seen), (1..=40).collect::<Vec<_>>());
    let last = seen[39].id.clone().expect("a rhizome id");
    drop(first);
    let (status, mut again) = open(&nodes[1], path, Some(&last)).await;
    assert_eq!(status, 200);
    let rest = again.rest(WAIT).await;
    assert_eq!(numbers(&rest), (41..=120).collect::<Vec<_>>());
    env.assert_logs_clean();
}

/// The master holding a session is SIGKILLed: the cluster promotes its
/// replica, and the nodes follow the new slot map by themselves and serve
/// the session again (the node that never saw it reads it from the promoted
/// replica); meanwhile a request that needs Redis gets 200 or 503
/// `state_store_unavailable`, nothing else.
#[tokio::test]
async fn a_cluster_failover_is_followed_and_the_session_is_served_again() {
    let OnRedisCluster {
        env,
        redis,
        mock: _mock,
        nodes,
    } = fixture::on_redis_cluster_with("cluster_failover", true, &[], 2, Tuning::default()).await;
    let [n1, n2] = <[Node; 2]>::try_from(nodes).expect("two nodes");
    let session = mcp::call(&n1, None, "initialize")
        .await
        .header("mcp-session-id")
        .expect("session")
        .to_string();
    let idx = redis
        .master_of(&format!("rz:sess:{{{session}}}"))
        .expect("a master holds the session");
    let master = &redis.masters[idx];
    let replica = redis.replica_of(master.port).expect("its replica");
    assert_eq!(
        master.cli(&["WAIT", "1", "10000"]).trim(),
        "1",
        "replicated"
    );

    let killed = Instant::now();
    master.proc.signal("KILL");
    let deadline = Instant::now() + Duration::from_secs(60);
    let unavailable = mcp::only_fail_fast_until(&n2, || {
        assert!(Instant::now() < deadline, "the replica was never promoted");
        redis.is_master(replica)
    })
    .await;
    let promoted = Instant::now();
    wait_for(
        "the session on n2 and a new one on n1 after the promotion",
        Duration::from_secs(30),
        || async {
            let old = mcp::call(&n2, Some(&session), "tools/list").await.status;
            let new = mcp::call(&n1, None, "initialize").await.status;
            (old == 200 && new == 200).then_some(())
        },
    )
    .await;
    println!(
        "Cluster failover: replica promoted {:?} after SIGKILL, served again {:?} after the promotion; {unavailable} requests answered 503 meanwhile",
        promoted - killed,
        promoted.elapsed()
    );
    env.assert_logs_clean();
}
