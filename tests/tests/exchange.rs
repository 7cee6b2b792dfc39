//! Details of one exchange that a user of the intent API or an operator
//! reading logs would check: the intent API never forwards the client's
//! framing headers and returns several `Set-Cookie` values as a list; the
//! connection behind a 401 that is retried goes back to the pool; durations
//! in the access log are rounded to the microsecond.

use rhizome_tests::harness::fixture::{self, Tuning};
use std::time::Duration;

use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::wait_for;
use serde_json::json;

#[tokio::test]
async fn intent_api_drops_client_framing_headers_and_lists_set_cookies() {
    let fixture::World {
        env,
        mock: _m,
        node,
    } = fixture::world("intent_framing", &[], &Tuning::default()).await;
    let c = Client::new();
    let key = fixture::bearer();
    let h = [("authorization", key.as_str())];
    let cookies = "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/|b=2; HttpOnly";
    let intent = json!({"route": "a", "method": "POST", "path": "/framing",
        "headers": {"content-length": "999", "transfer-encoding": "chunked", "x-mock-set-cookie": cookies},
        "json": {"n": 1}});
    let r = c.post(&node.url("/v1/proxy"), &h, intent.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], 200, "{v}");
    let echo = &v["json"];
    assert_eq!(echo["body_len"], 7, "the body the intent carries, whole");
    assert_eq!(echo["headers"]["content-length"], "7", "{echo}");
    assert!(echo["headers"].get("transfer-encoding").is_none(), "{echo}");
    assert_eq!(
        v["headers"]["set-cookie"],
        json!([
            "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/",
            "b=2; HttpOnly"
        ]),
        "each cookie intact, never joined with commas"
    );
    env.assert_logs_clean();
}

#[tokio::test]
async fn the_connection_behind_a_retried_401_is_reused() {
    let fixture::World { env, mock, node } =
        fixture::world("reuse_after_401", &[], &Tuning::default()).await;
    let c = Client::new();
    let key = fixture::bearer();
    let h = [("authorization", key.as_str())];
    assert_eq!(c.get(&node.url("/a/warm"), &h).await.status, 200);
    // Stats over this test's own keep-alive client: no connection of the
    // test's ends while it runs.
    let stats_url = format!("{}/_mock/stats", mock.base());
    let count = |stats: &serde_json::Value, what: &str| stats[what].as_u64().expect("count");
    let before = c.get(&stats_url, &[]).await.json();
    // A 401 with a large body (the echo of a 32 KiB request): a connection
    // dropped before that body is read cannot go back to the pool.
    let big = "x".repeat(32 * 1024);
    let refused = [("authorization", key.as_str()), ("x-mock-status", "401")];
    // Three: the credential's 401 policy stops retrying after that many
    // refused fresh tokens.
    const RETRIES: u64 = 3;
    for i in 0..RETRIES {
        let r = c
            .post(&node.url(&format!("/a/big/{i}")), &refused, big.clone())
            .await;
        assert_eq!(r.status, 401);
        // A success between makes the next 401 worth a retry again.
        assert_eq!(c.get(&node.url("/a/ok"), &h).await.status, 200);
    }
    let stats = c.get(&stats_url, &[]).await.json();
    assert_eq!(
        stats["requests_by_path"]["/oauth/token"],
        RETRIES + 1,
        "each retry with a fresh token: {stats}"
    );
    // Dropping the connection behind each retried 401 closes it (the mock
    // sees it end); draining it for reuse keeps it open.
    let closed = count(&stats, "connections_closed") - count(&before, "connections_closed");
    assert!(
        closed == 0,
        "{closed} upstream connections closed around {RETRIES} retried 401s: {stats}"
    );
    env.assert_logs_clean();
}

#[tokio::test]
async fn access_log_durations_are_rounded_to_the_microsecond() {
    let fixture::World {
        env,
        mock: _m,
        node,
    } = fixture::world("log_micros", &[], &Tuning::default()).await;
    let c = Client::new();
    let key = fixture::bearer();
    for i in 0..5 {
        let h = [("authorization", key.as_str())];
        assert_eq!(c.get(&node.url(&format!("/a/t{i}")), &h).await.status, 200);
    }
    // The log is written by its own thread: wait for the five lines.
    let lines = wait_for("five access lines", Duration::from_secs(5), || async {
        let lines: Vec<serde_json::Value> = node
            .proc
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| v["target"] == "rhizome::access")
            .collect();
        (lines.len() >= 5).then_some(lines)
    })
    .await;
    for v in &lines {
        for field in ["duration_ms", "upstream_ms"] {
            let Some(ms) = v[field].as_f64() else {
                continue;
            };
            let micros = ms * 1000.0;
            assert!(
                (micros - micros.round()).abs() < 1e-6,
                "{field} = {ms} has sub-microsecond digits"
            );
        }
    }
    env.assert_logs_clean();
}
