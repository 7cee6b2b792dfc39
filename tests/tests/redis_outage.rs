//! Redis outages (G6): with Redis frozen (SIGSTOP) requests that need no
//! shared state keep succeeding on cached tokens and sessions, those that need
//! it fail fast with 503 `state_store_unavailable`, nothing hangs and memory
//! stays bounded; after SIGCONT the node is normal again within a second;
//! after a restart sessions written before are still there. Also measures
//! Redis commands per proxied request.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::{mcp, wait_for, Env, Node};

fn rss_kib(node: &Node) -> u64 {
    let pid = node.proc.pid();
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().to_string())
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_frozen_redis_degrades_requests_that_need_it_and_nothing_else() {
    let fixture::Cluster {
        env,
        mut redis,
        mock,
        nodes,
        tuning,
    } = fixture::cluster(
        "redis_outage",
        &[],
        2,
        Tuning {
            op_timeout: "250ms",
            ..Tuning::default()
        },
    )
    .await;
    let [n1, n2] = <[Node; 2]>::try_from(nodes).expect("two nodes");
    let c = Client::new();
    let key = fixture::bearer();
    let h = [("authorization", key.as_str())];
    for n in [&n1, &n2] {
        assert_eq!(c.get(&n.url("/a/warm"), &h).await.status, 200);
    }
    // s1 is used on both nodes (cached on both); s2 only on n1.
    let s1 = mcp::call(&n1, None, "initialize")
        .await
        .header("mcp-session-id")
        .expect("s1")
        .to_string();
    let s2 = mcp::call(&n1, None, "initialize")
        .await
        .header("mcp-session-id")
        .expect("s2")
        .to_string();
    assert_eq!(mcp::call(&n2, Some(&s1), "ping").await.status, 200);
    assert_eq!(n1.metric("rhizome_sessions_created_total").await, Some(2.0));
    // The gauge counts the cluster's sessions, not n2's cache.
    wait_for(
        "n2 counting both sessions",
        Duration::from_secs(20),
        || async { (n2.metric("rhizome_sessions_active").await == Some(2.0)).then_some(()) },
    )
    .await;
    let rss_before = rss_kib(&n2);

    redis.pause();
    let paused = Instant::now();
    let mut failed_fast = 0;
    while paused.elapsed() < Duration::from_secs(3) {
        // Needs no Redis: cached token, cached session.
        for n in [&n1, &n2] {
            let t = Instant::now();
            let r = c.get(&n.url("/a/during"), &h).await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "a cached-token request took {:?}",
                t.elapsed()
            );
        }
        assert_eq!(
            mcp::call(&n2, Some(&s1), "tools/list").await.status,
            200,
            "cached session keeps working"
        );
        // Needs Redis: a session n2 never saw, and creating a new one.
        for session in [Some(s2.as_str()), None] {
            let t = Instant::now();
            let r = mcp::call(&n2, session, "initialize").await;
            let took = t.elapsed();
            assert_eq!(r.status, 503, "{}", r.text());
            assert_eq!(r.json()["error"]["code"], "state_store_unavailable");
            assert!(
                took < Duration::from_millis(250 + 250),
                "answered in {took:?}, op_timeout is 250ms"
            );
            failed_fast += 1;
        }
    }
    assert!(failed_fast > 10);
    assert_eq!(n2.metric("rhizome_redis_up").await, Some(0.0));
    let ready = c.get(&n2.admin_url("/readyz"), &[]).await;
    assert_eq!(
        ready.status, 200,
        "a node stays ready through an outage: it still serves"
    );
    let rss_after = rss_kib(&n2);
    assert!(
        rss_after < rss_before + 50 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );

    redis.resume();
    let resumed = Instant::now();
    wait_for(
        "the session n2 never saw to resolve after resume",
        Duration::from_secs(1),
        || async { (mcp::call(&n2, Some(&s2), "tools/list").await.status == 200).then_some(()) },
    )
    .await;
    println!("G6: normal again {:?} after SIGCONT", resumed.elapsed());
    wait_for(
        "rhizome_redis_up back to 1",
        Duration::from_secs(2),
        || async { (n2.metric("rhizome_redis_up").await == Some(1.0)).then_some(()) },
    )
    .await;

    // A restart with its data on disk keeps the sessions; a third node that
    // never cached anything finds them.
    redis.restart().await;
    let n3 = fixture::node(&env, "n3", &mock, &tuning).await;
    for s in [&s1, &s2] {
        let r = wait_for(
            "session readable after the restart",
            Duration::from_secs(10),
            || async {
                let r = mcp::call(&n3, Some(s), "tools/list").await;
                (r.status == 200).then_some(r)
            },
        )
        .await;
        assert_eq!(r.status, 200);
    }
    env.assert_logs_clean();
}

#[tokio::test]
async fn redis_commands_per_proxied_request() {
    let fixture::Cluster {
        env,
        redis,
        mock: _mock,
        nodes,
        ..
    } = fixture::cluster("redis_commands", &[], 2, Tuning::default()).await;
    let [n1, n2] = <[Node; 2]>::try_from(nodes).expect("two nodes");
    let c = Client::new();
    let key = fixture::bearer();
    let h = [("authorization", key.as_str())];
    assert_eq!(c.get(&n1.url("/a/warm"), &h).await.status, 200);
    let session = mcp::call(&n1, None, "initialize")
        .await
        .header("mcp-session-id")
        .expect("session")
        .to_string();

    // Health pings and the harness's own INFO calls are not request traffic.
    let delta = |before: &HashMap<String, u64>| -> BTreeMap<String, u64> {
        redis
            .commands()
            .into_iter()
            .filter(|(k, _)| k != "ping" && k != "info")
            .filter_map(|(k, v)| {
                let d = v - before.get(&k).copied().unwrap_or(0);
                (d > 0).then_some((k, d))
            })
            .collect()
    };
    let total = |d: &BTreeMap<String, u64>| d.values().sum::<u64>();
    let n = 200u64;
    let before = redis.commands();
    for i in 0..n {
        assert_eq!(c.get(&n1.url(&format!("/a/r{i}")), &h).await.status, 200);
    }
    let plain = delta(&before);

    let before = redis.commands();
    assert_eq!(
        mcp::call(&n2, Some(&session), "tools/list").await.status,
        200
    );
    let miss = delta(&before);
    let before = redis.commands();
    for _ in 0..n {
        assert_eq!(
            mcp::call(&n2, Some(&session), "tools/list").await.status,
            200
        );
    }
    let hits = delta(&before);
    println!("redis commands: plain credentialed request {plain:?} over {n}; MCP local-cache miss {miss:?}; MCP hits {hits:?} over {n}");
    assert_eq!(
        total(&plain),
        0,
        "a credentialed request with a cached token touches no Redis: {plain:?}"
    );
    assert!(
        total(&miss) <= 1,
        "a session cache miss costs at most one command: {miss:?}"
    );
    assert_eq!(total(&hits), 0, "session cache hits cost nothing: {hits:?}");
    env.assert_logs_clean();
}

#[tokio::test]
async fn a_node_started_before_redis_becomes_ready_when_redis_arrives() {
    let env = Env::new("redis_late");
    let mock = fixture::mock(&env, &[]).await;
    let port = env.free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let tuning = Tuning {
        extra: fixture::redis_lock(&url, "250ms"),
        ..Tuning::default()
    };
    let node = fixture::node_unready(&env, "n1", &mock, &tuning).await;
    let c = Client::new();
    assert_eq!(
        c.get(&node.admin_url("/readyz"), &[]).await.status,
        503,
        "not ready before Redis answered"
    );
    let _redis = env.redis_on(port).await;
    wait_for(
        "ready once Redis answers",
        Duration::from_secs(10),
        || async { (c.get(&node.admin_url("/readyz"), &[]).await.status == 200).then_some(()) },
    )
    .await;
    let key = fixture::bearer();
    assert_eq!(
        c.get(&node.url("/a/x"), &[("authorization", key.as_str())])
            .await
            .status,
        200
    );
    env.assert_logs_clean();
}
