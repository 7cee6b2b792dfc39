//! Shared token records under trouble (G1, G6): a Redis that
//! loses every record (FLUSHALL) under steady load converges to one fresh
//! token per refresh cycle with bounded Redis work; a Redis outage does not
//! stop a node from serving a token that is still valid, nor throw away a
//! token fetched while Redis failed — it is served and written once Redis
//! answers again.

use std::time::{Duration, Instant};

use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::secrets::ADMIN_TOKEN;
use rhizome_tests::harness::{wait_for, Mock, Node};
use serde_json::json;

async fn token_calls(mock: &Mock) -> u64 {
    mock.stats().await["token_calls"]["svc-a"]
        .as_u64()
        .unwrap_or(0)
}

async fn oauth_a_view(node: &Node) -> serde_json::Value {
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let v = Client::new()
        .get(
            &node.admin_url("/admin/v1/credentials"),
            &[("authorization", admin.as_str())],
        )
        .await
        .json();
    v["credentials"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "oauth-a").cloned())
        .expect("oauth-a")
}

/// Commands other than the nodes' health pings and the harness's own INFO.
fn work_commands(redis: &rhizome_tests::harness::redis::RedisServer) -> u64 {
    redis
        .commands()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "ping" | "info"))
        .map(|(_, n)| n)
        .sum()
}

/// A cluster of `n` nodes whose OAuth tokens live `expires_in` seconds and
/// are refreshed 4 s before they expire.
async fn refreshing_4s_early(test: &str, expires_in: &str, n: usize) -> fixture::Cluster {
    let tuning = Tuning {
        refresh_margin: "4s",
        ..Tuning::default()
    };
    fixture::cluster(test, &["--expires-in", expires_in], n, tuning).await
}

#[tokio::test]
async fn a_flushall_under_steady_load_converges_to_one_token_per_cycle() {
    // Tokens live 8 s and are refreshed 4 s after they were obtained.
    let fixture::Cluster {
        env,
        redis,
        mock,
        nodes,
        ..
    } = refreshing_4s_early("flushall", "8", 3).await;
    let c = Client::new();
    let key = fixture::bearer();
    let h = [("authorization", key.as_str())];
    for n in &nodes {
        assert_eq!(c.get(&n.url("/a/warm"), &h).await.status, 200);
    }
    // Run through one refresh so every node caches a version above 1.
    wait_for("a refreshed version", Duration::from_secs(15), || async {
        (oauth_a_view(&nodes[0]).await["version"].as_u64() >= Some(2)).then_some(())
    })
    .await;

    let run = Duration::from_secs(20);
    let start = Instant::now();
    let calls_before = token_calls(&mock).await;
    let commands_before = work_commands(&redis);
    let mut flushed = false;
    let mut requests = 0u64;
    while start.elapsed() < run {
        for n in &nodes {
            let r = c.get(&n.url("/a/steady"), &h).await;
            assert_eq!(r.status, 200, "{}", r.text());
            requests += 1;
        }
        if !flushed && start.elapsed() > Duration::from_secs(3) {
            assert_eq!(redis.cli(&["FLUSHALL"]).trim(), "OK");
            flushed = true;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let calls = token_calls(&mock).await - calls_before;
    let commands = work_commands(&redis) - commands_before;
    // One refresh every 4 s cluster-wide, plus one for the lost record.
    let cycles = run.as_secs() / 4;
    assert!(
        calls <= cycles + 2,
        "{calls} token calls in {run:?} ({cycles} refresh cycles)"
    );
    // A refresh costs a handful of commands per node; the busy loop costs
    // thousands per second.
    assert!(
        commands < 40 * run.as_secs(),
        "{commands} Redis commands for {requests} requests in {run:?}"
    );
    // Converged: every node holds the same fresh version as the record.
    let record = redis.cli(&["HGET", "rz:tok:{oauth-a}", "version"]);
    let version: u64 = record.trim().parse().expect("a record again");
    wait_for(
        "every node on the record's version",
        Duration::from_secs(5),
        || async {
            for n in &nodes {
                if oauth_a_view(n).await["version"].as_u64() < Some(version) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    env.assert_logs_clean();
}

#[tokio::test]
async fn with_redis_frozen_a_token_past_its_refresh_is_served_until_it_expires() {
    // 10 s tokens, refreshed after 6 s, normally no longer handed out after 8 s.
    let fixture::Cluster {
        env,
        redis,
        mock: _mock,
        nodes,
        ..
    } = refreshing_4s_early("g6_stale", "10", 1).await;
    let node = &nodes[0];
    let c = Client::new();
    let key = fixture::bearer();
    let h = [("authorization", key.as_str())];
    assert_eq!(c.get(&node.url("/a/warm"), &h).await.status, 200);
    redis.pause();
    // Past the point where the token is normally no longer handed out.
    wait_for(
        "the token's last seconds",
        Duration::from_secs(15),
        || async { (oauth_a_view(node).await["expires_in"].as_u64() <= Some(1)).then_some(()) },
    )
    .await;
    let r = c.get(&node.url("/a/late"), &h).await;
    assert_eq!(r.status, 200, "the still-valid token is used: {}", r.text());
    redis.resume();
    env.assert_logs_clean();
}

#[tokio::test]
async fn a_token_fetched_while_redis_fails_is_served_and_written_when_it_returns() {
    let fixture::Cluster {
        env,
        redis,
        mock,
        nodes,
        ..
    } = fixture::cluster("g6_kept", &[], 2, Tuning::default()).await;
    let c = Client::new();
    let key = fixture::bearer();
    // The token call takes 1.5 s; Redis freezes while it is under way.
    mock.control("/_mock/config", json!({"token_delay_ms": 1500}))
        .await;
    let url = nodes[0].url("/a/first");
    let first = {
        let (c, key) = (c.clone(), key.clone());
        tokio::spawn(async move { c.get(&url, &[("authorization", key.as_str())]).await })
    };
    wait_for("the refresh lock", Duration::from_secs(5), || async {
        (redis.cli(&["EXISTS", "rz:lock:{oauth-a}"]).trim() == "1").then_some(())
    })
    .await;
    redis.pause();
    let r = first.await.expect("join");
    assert_eq!(r.status, 200, "the fetched token is served: {}", r.text());
    redis.resume();
    mock.control("/_mock/config", json!({"token_delay_ms": 0}))
        .await;
    // Written when Redis answers again: the other node reads it.
    wait_for(
        "the kept token in Redis",
        Duration::from_secs(5),
        || async {
            (redis.cli(&["HGET", "rz:tok:{oauth-a}", "valid"]).trim() == "1").then_some(())
        },
    )
    .await;
    wait_for(
        "the other node to see Redis again",
        Duration::from_secs(5),
        || async { (nodes[1].metric("rhizome_redis_up").await == Some(1.0)).then_some(()) },
    )
    .await;
    let r = c
        .get(
            &nodes[1].url("/a/second"),
            &[("authorization", key.as_str())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(token_calls(&mock).await, 1, "nothing was fetched twice");
    env.assert_logs_clean();
}
