//! Token lifecycle end to end: single-flight on a cold cache, refresh ahead of
//! expiry under load, 401 → fresh token → one retry with the body intact,
//! and failover and cooldown across a credential pool.

use std::time::Duration;

use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::{steady_gets, Client};
use rhizome_tests::harness::{wait_for, Env};
use serde_json::json;

#[tokio::test]
async fn cold_cache_hit_by_100_concurrent_requests_makes_one_token_call() {
    let env = Env::new("cold_cache");
    let mock = fixture::mock(&env, &[]).await;
    // A slow token endpoint makes sure the 100 requests really overlap.
    mock.control("/_mock/config", json!({"token_delay_ms": 300}))
        .await;
    let node = fixture::node(&env, "node", &mock, &Tuning::default()).await;
    let c = Client::new();
    let auth = fixture::bearer();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (c, url, auth) = (c.clone(), node.url(&format!("/a/item/{i}")), auth.clone());
        tasks.push(tokio::spawn(async move {
            c.get(&url, &[("authorization", auth.as_str())])
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join"), 200);
    }
    let stats = mock.stats().await;
    assert_eq!(stats["token_calls"]["svc-a"], 1, "{stats}");
    assert_eq!(stats["api_requests"], 100);
    env.assert_logs_clean();
}

#[tokio::test]
async fn rotated_token_is_refreshed_once_and_the_post_retried_with_its_body() {
    let fixture::World { env, mock, node } =
        fixture::world("rotation", &[], &Tuning::default()).await;
    let c = Client::new();
    let auth = fixture::bearer();
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    assert_eq!(c.get(&node.url("/a/warm"), &h).await.status, 200);
    assert_eq!(mock.stats().await["token_calls"]["svc-a"], 1);

    mock.control("/_mock/rotate", json!({})).await;
    let body = json!({"order": 42, "items": ["a", "b"], "note": "body must survive the retry"})
        .to_string();
    let r = c.post(&node.url("/a/orders"), &h, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["method"], "POST");
    use base64::Engine;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(echo["body_base64"].as_str().expect("body"))
        .expect("b64");
    assert_eq!(
        String::from_utf8(sent).expect("utf8"),
        body,
        "body intact after the retry"
    );
    let stats = mock.stats().await;
    assert_eq!(
        stats["token_calls"]["svc-a"], 2,
        "exactly one refresh: {stats}"
    );
    assert_eq!(
        stats["rejected"], 1,
        "exactly one 401 before the retry: {stats}"
    );
    assert_eq!(
        node.metric(r#"rhizome_upstream_retries_total{reason="unauthorized"}"#)
            .await
            .unwrap_or(0.0),
        1.0
    );

    // A body larger than retry_body_limit (1 MiB) streams and is not retried:
    // the client gets the upstream's 401 with its WWW-Authenticate.
    mock.control("/_mock/rotate", json!({})).await;
    let big = vec![b'x'; 1_200_000];
    let r = c
        .post(
            &node.url("/a/upload"),
            &[("authorization", auth.as_str())],
            big,
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.contains("invalid_token")));
    // ...but its token was invalidated, so the next request gets a fresh one.
    assert_eq!(c.get(&node.url("/a/after"), &h).await.status, 200);
    env.assert_logs_clean();
}

#[tokio::test]
async fn a_failing_credential_is_skipped_and_all_failing_gives_503() {
    let fixture::World { env, mock, node } =
        fixture::world("pool_failover", &[], &Tuning::default()).await;
    mock.control("/_mock/config", json!({"fail_clients": ["svc-a"]}))
        .await;
    let c = Client::new();
    let auth = fixture::bearer();
    let h = [("authorization", auth.as_str())];
    for _ in 0..30 {
        let r = c.get(&node.url("/p/x"), &h).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.json()["credential"]["client_id"],
            "svc-b",
            "traffic moved to the healthy credential"
        );
    }
    let stats = mock.stats().await;
    let a_calls = stats["token_calls"]["svc-a"].as_u64().expect("calls");
    // failure_threshold = 3 starts a cooldown; within it svc-a is not tried again.
    assert!(
        (3..=5).contains(&a_calls),
        "svc-a tried {a_calls} times over 30 requests"
    );
    assert_eq!(stats["token_calls"]["svc-b"], 1);

    mock.control("/_mock/config", json!({"fail_clients": ["svc-a", "svc-b"]}))
        .await;
    mock.control("/_mock/rotate", json!({})).await;
    let r = wait_for(
        "503 once both credentials fail",
        Duration::from_secs(20),
        || {
            let (c, url) = (c.clone(), node.url("/p/x"));
            let auth = auth.clone();
            async move {
                let r = c.get(&url, &[("authorization", auth.as_str())]).await;
                (r.status == 503).then_some(r)
            }
        },
    )
    .await;
    assert_eq!(r.json()["error"]["code"], "no_healthy_credential");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "retry-after {retry}");

    // Recovery: once the token endpoint works again, traffic flows after the cooldown.
    mock.control("/_mock/config", json!({"fail_clients": []}))
        .await;
    wait_for("recovery after cooldown", Duration::from_secs(70), || {
        let (c, url) = (c.clone(), node.url("/p/x"));
        let auth = auth.clone();
        async move {
            (c.get(&url, &[("authorization", auth.as_str())])
                .await
                .status
                == 200)
                .then_some(())
        }
    })
    .await;
    env.assert_logs_clean();
}

#[tokio::test]
async fn short_lived_tokens_are_refreshed_ahead_and_never_used_expired() {
    let env = Env::new("refresh_ahead");
    let mock = fixture::mock(&env, &["--expires-in", "4"]).await;
    let tuning = Tuning {
        refresh_margin: "2s",
        ..Tuning::default()
    };
    let node = fixture::node(&env, "node", &mock, &tuning).await;
    let run = Duration::from_secs(60);
    let urls = (0..4).map(|w| node.url(&format!("/a/w{w}"))).collect();
    let total = steady_gets(urls, &fixture::bearer(), run, Duration::from_millis(5)).await;
    let stats = mock.stats().await;
    assert_eq!(
        stats["expired_seen"], 0,
        "a request carried an expired token: {stats}"
    );
    assert_eq!(stats["rejected"], 0, "{stats}");
    assert_eq!(stats["api_requests"], total);
    // Refreshed half-way through each 4 s token: about one call per 2 s cycle.
    let calls = stats["token_calls"]["svc-a"].as_u64().expect("calls");
    assert!(
        (20..=33).contains(&calls),
        "{calls} token calls in 60 s with 4 s tokens"
    );
    assert_eq!(
        node.metric(r#"rhizome_upstream_retries_total{reason="unauthorized"}"#)
            .await
            .unwrap_or(0.0),
        0.0
    );
    env.assert_logs_clean();
}
