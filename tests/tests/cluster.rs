//! Tokens shared by three nodes through a real `redis-server` in
//! `coordinator.mode = "redis-lock"`: one token-endpoint call per
//! credential per refresh cycle cluster-wide (G1), and a rotation hit by 300
//! concurrent requests over three nodes refreshed exactly once (G2).

use std::time::Duration;

use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::{steady_gets, Client};
use rhizome_tests::harness::metrics;
use serde_json::json;

#[tokio::test]
async fn a_rotation_hit_by_300_requests_on_3_nodes_is_refreshed_once() {
    let fixture::Cluster {
        env,
        redis: _redis,
        mock,
        nodes,
        ..
    } = fixture::cluster("g2_storm", &[], 3, Tuning::default()).await;
    let c = Client::new();
    let key = fixture::bearer();
    for n in &nodes {
        let r = c
            .get(&n.url("/a/warm"), &[("authorization", key.as_str())])
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(
        mock.stats().await["token_calls"]["svc-a"],
        1,
        "one token call for the whole cluster"
    );

    // Every request is checked 300 ms after it arrives: all 300 reach the
    // upstream carrying the rotated token before the first 401 comes back.
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
        assert_eq!(
            t.await.expect("join"),
            200,
            "every request succeeds after one retry"
        );
    }
    let stats = mock.stats().await;
    assert_eq!(
        stats["token_calls"]["svc-a"], 2,
        "exactly one refresh cluster-wide: {stats}"
    );
    let rejected = stats["rejected"].as_u64().expect("rejected");
    assert_eq!(
        rejected, 300,
        "every request met the rotated token once: {stats}"
    );
    assert_eq!(
        stats["api_requests"].as_u64(),
        Some(3 + 300),
        "and was retried once: {stats}"
    );
    println!("G2: 300 requests over 3 nodes, {rejected} got 401 with the rotated token, 1 refresh");
    // Metrics agree: two token-endpoint calls cluster-wide, 300 retries for 401.
    let (mut calls, mut retries) = (0.0, 0.0);
    for n in &nodes {
        let text = n.metrics_text().await;
        let get = |s: &str| metrics::value(&text, s).unwrap_or(0.0);
        calls += get(r#"rhizome_token_refresh_total{credential="oauth-a",outcome="success"}"#);
        retries += get(r#"rhizome_upstream_retries_total{reason="unauthorized"}"#);
        assert_eq!(get("rhizome_redis_up"), 1.0);
        metrics::assert_promtool_clean(&text);
    }
    assert_eq!((calls, retries), (2.0, 300.0));
    env.assert_logs_clean();
}

#[tokio::test]
async fn steady_load_on_3_nodes_makes_one_token_call_per_cycle() {
    let tuning = Tuning {
        refresh_margin: "2s",
        ..Tuning::default()
    };
    let fixture::Cluster {
        env,
        redis: _redis,
        mock,
        nodes,
        ..
    } = fixture::cluster("g1_steady", &["--expires-in", "4"], 3, tuning).await;
    let run = Duration::from_secs(60);
    let urls = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| (0..2).map(move |w| n.url(&format!("/a/n{i}/w{w}"))))
        .collect();
    let total = steady_gets(urls, &fixture::bearer(), run, Duration::from_millis(10)).await;
    let stats = mock.stats().await;
    assert_eq!(stats["expired_seen"], 0, "{stats}");
    assert_eq!(stats["rejected"], 0, "{stats}");
    assert_eq!(stats["api_requests"], total);
    // 4 s tokens refreshed half-way: one cycle per 2 s, whatever the node count.
    let calls = stats["token_calls"]["svc-a"].as_u64().expect("calls");
    let cycles = run.as_secs() / 2;
    assert!(
        calls >= cycles - 8 && calls <= cycles + 3,
        "{calls} token calls for {cycles} cycles on 3 nodes ({total} requests)"
    );
    println!("G1: {calls} token calls in {run:?} for {cycles} cycles on 3 nodes, {total} requests");
    env.assert_logs_clean();
}
