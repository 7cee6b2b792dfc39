//! SSE through the proxy: each event is forwarded as soon as it is complete
//! (never buffered), events split into tiny chunks arrive whole, heartbeats
//! flow while upstream is quiet, the upstream is closed when the client goes
//! away, and an oversized event closes the stream without hurting the node.

use std::time::Duration;

use http::Method;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::{next_chunk, Client};
use rhizome_tests::harness::{wait_for, Env, Mock};
use serde_json::json;

async fn manual_open(mock: &Mock, name: &str) -> u64 {
    mock.stats().await["sse_manual_open"][name]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn each_event_reaches_the_client_before_upstream_writes_the_next() {
    let fixture::World { env, mock, node } =
        fixture::world("sse_one_by_one", &[], &Tuning::default()).await;
    for (label, client) in [("h1", Client::new()), ("h2c", Client::h2c())] {
        let auth = fixture::bearer();
        let stream = format!("s-{label}");
        let resp = client
            .open(
                Method::GET,
                &node.url(&format!("/e/sse/manual/{stream}")),
                &[
                    ("authorization", auth.as_str()),
                    ("accept", "text/event-stream"),
                ],
                "",
            )
            .await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["content-type"], "text/event-stream");
        assert_eq!(h["x-accel-buffering"], "no");
        assert_eq!(h["cache-control"], "no-cache");
        let mut body = resp.into_body();
        wait_for("upstream stream open", Duration::from_secs(10), || async {
            (manual_open(&mock, &stream).await == 1).then_some(())
        })
        .await;
        for k in 1..=5u32 {
            // Upstream writes event k only now; the client must see it before k+1 exists.
            let emitted = mock
                .control(&format!("/_mock/sse/{stream}/emit"), json!({"k": k}))
                .await;
            assert_eq!(emitted["delivered"], 1);
            let chunk = next_chunk(&mut body, Duration::from_secs(5))
                .await
                .expect("event");
            let text = String::from_utf8_lossy(&chunk).into_owned();
            assert!(
                text.contains(&format!("id: {k}\n")),
                "{label}: event {k} expected, got {text:?}"
            );
            assert!(
                text.ends_with("\n\n"),
                "{label}: only complete events are sent: {text:?}"
            );
        }
        mock.control(&format!("/_mock/sse/{stream}/close"), json!({}))
            .await;
        assert!(
            next_chunk(&mut body, Duration::from_secs(5))
                .await
                .is_none(),
            "stream ends with upstream"
        );
    }
    env.assert_logs_clean();
}

#[tokio::test]
async fn client_disconnect_closes_the_upstream_stream() {
    let fixture::World { env, mock, node } =
        fixture::world("sse_disconnect", &[], &Tuning::default()).await;
    let auth = fixture::bearer();
    let resp = Client::new()
        .open(
            Method::GET,
            &node.url("/e/sse/manual/gone"),
            &[("authorization", auth.as_str())],
            "",
        )
        .await;
    let mut body = resp.into_body();
    wait_for("upstream stream open", Duration::from_secs(10), || async {
        (manual_open(&mock, "gone").await == 1).then_some(())
    })
    .await;
    mock.control("/_mock/sse/gone/emit", json!({})).await;
    next_chunk(&mut body, Duration::from_secs(5))
        .await
        .expect("first event");
    drop(body);
    wait_for(
        "upstream stream closed after the client left",
        Duration::from_secs(10),
        || async { (manual_open(&mock, "gone").await == 0).then_some(()) },
    )
    .await;
    let metrics = Client::new()
        .get(&node.admin_url("/metrics"), &[])
        .await
        .text();
    assert!(
        metrics.contains("rhizome_sse_streams_active{route=\"e\"} 0"),
        "{metrics}"
    );
    env.assert_logs_clean();
}

#[tokio::test]
async fn events_split_into_tiny_chunks_arrive_whole_and_in_order() {
    let fixture::World {
        env,
        mock: _mock,
        node,
    } = fixture::world("sse_split", &[], &Tuning::default()).await;
    let auth = fixture::bearer();
    let r = Client::new()
        .get(
            &node.url("/e/sse?count=6&interval_ms=5&split=true"),
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_eq!(r.status, 200);
    let expected: String = (1..=6)
        .map(|n| format!("id: {n}\nevent: tick\ndata: {{\"n\":{n}}}\n\n"))
        .collect();
    assert_eq!(r.text(), expected);
    env.assert_logs_clean();
}

#[tokio::test]
async fn heartbeats_flow_while_upstream_is_quiet() {
    let env = Env::new("sse_heartbeat");
    let mock = fixture::mock(&env, &[]).await;
    let tuning = Tuning {
        sse: "heartbeat_interval = \"200ms\"",
        ..Tuning::default()
    };
    let node = fixture::node(&env, "node", &mock, &tuning).await;
    let auth = fixture::bearer();
    let resp = Client::new()
        .open(
            Method::GET,
            &node.url("/e/sse/manual/quiet"),
            &[("authorization", auth.as_str())],
            "",
        )
        .await;
    let mut body = resp.into_body();
    let chunk = next_chunk(&mut body, Duration::from_secs(5))
        .await
        .expect("heartbeat");
    assert_eq!(&chunk[..], b": heartbeat\n\n");
    env.assert_logs_clean();
}

#[tokio::test]
async fn an_oversized_event_closes_the_stream_and_the_node_keeps_serving() {
    let env = Env::new("sse_huge");
    let mock = fixture::mock(&env, &[]).await;
    let tuning = Tuning {
        sse: "max_event_bytes = \"64KiB\"",
        ..Tuning::default()
    };
    let node = fixture::node(&env, "node", &mock, &tuning).await;
    let auth = fixture::bearer();
    let c = Client::new();
    let r = c
        .get(
            &node.url("/e/sse?huge=1000000"),
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.is_empty(),
        "no part of the truncated event is forwarded"
    );
    node.proc
        .wait_log("closing sse stream", Duration::from_secs(5))
        .await;
    assert!(node.proc.log_text().contains("event exceeds 65536 bytes"));
    wait_for("upstream closed", Duration::from_secs(10), || async {
        let s = mock.stats().await;
        (s["sse_open"] == s["sse_closed"]).then_some(())
    })
    .await;
    let ok = c
        .get(
            &node.url("/e/sse?count=2&interval_ms=1"),
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text().matches("event: tick").count(), 2);
    env.assert_logs_clean();
}
