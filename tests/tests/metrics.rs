//! `/metrics` is valid Prometheus text (`promtool check metrics`) and its
//! counters match what the test did.

use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::metrics::{self, assert_promtool_clean};
use rhizome_tests::harness::secrets::CLIENT_KEY;

fn value(text: &str, series: &str) -> f64 {
    metrics::value(text, series).unwrap_or_else(|| panic!("series {series} missing from:\n{text}"))
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_what_happened() {
    let fixture::World {
        env,
        mock: _mock,
        node,
    } = fixture::world("metrics", &[], &Tuning::default()).await;
    let c = Client::new();
    let auth = fixture::bearer();
    let h = [("authorization", auth.as_str())];
    for _ in 0..3 {
        assert_eq!(c.get(&node.url("/a/x"), &h).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(c.get(&node.url("/nowhere"), &h).await.status, 404);
    }
    assert_eq!(c.get(&node.url("/a/x"), &[]).await.status, 401);
    assert_eq!(c.post(&node.url("/b/x"), &h, "hi").await.status, 200);
    let r = c.get(&node.url("/e/sse?count=3&interval_ms=1"), &h).await;
    assert_eq!(r.status, 200);

    let text = c.get(&node.admin_url("/metrics"), &[]).await.text();
    assert_promtool_clean(&text);

    assert_eq!(
        value(
            &text,
            r#"rhizome_requests_total{route="a",method="GET",status="200"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            r#"rhizome_requests_total{route="-",method="GET",status="404"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"rhizome_requests_total{route="a",method="GET",status="401"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"rhizome_requests_total{route="b",method="POST",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"rhizome_token_refresh_total{credential="oauth-a",outcome="success"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"rhizome_token_refresh_total{credential="oauth-b",outcome="success"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, r#"rhizome_sse_events_total{route="e"}"#), 3.0);
    assert_eq!(
        value(&text, r#"rhizome_credential_owned{credential="oauth-a"}"#),
        1.0
    );
    assert_eq!(value(&text, "rhizome_ownership_degraded"), 0.0);
    // The 401 never reached upstream: three upstream timings on route a.
    assert_eq!(
        value(
            &text,
            r#"rhizome_upstream_duration_seconds_count{route="a"}"#
        ),
        3.0
    );
    assert!(!text.contains("mocktok-") && !text.contains(CLIENT_KEY));
    env.assert_logs_clean();
}
