//! Edges of the request path: how an SSE stream's end is logged (as what it
//! was, not always `complete`), the JSON body of the 400/431 answers hyper
//! gives before any handler runs, and `rhizome_sessions_active` counting the
//! cluster's MCP sessions rather than one node's cache.

use std::time::Duration;

use http::Method;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::{next_chunk, raw, Client};
use rhizome_tests::harness::{mcp, wait_for, Env, Node};
use serde_json::{json, Value};

/// The access-log line of request `id`, once the node has written it.
async fn access_line(node: &Node, id: &str) -> Value {
    wait_for(
        &format!("access log line of {id}"),
        Duration::from_secs(10),
        || async {
            node.proc.log_text().lines().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["message"] == "request" && v["request_id"] == id).then_some(v)
            })
        },
    )
    .await
}

/// Opens an SSE stream on route `/e/` with request id `id`.
async fn open_sse(node: &Node, path: &str, id: &str) -> hyper::body::Incoming {
    let auth = fixture::bearer();
    let resp = Client::new()
        .open(
            Method::GET,
            &node.url(path),
            &[("authorization", auth.as_str()), ("x-request-id", id)],
            "",
        )
        .await;
    assert_eq!(resp.status(), 200, "{path}");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    resp.into_body()
}

/// Reads `body` until it ends (or fails, when the node aborts it).
async fn drain(body: &mut hyper::body::Incoming) {
    use http_body_util::BodyExt;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

#[tokio::test]
async fn sse_stream_ends_are_logged_as_what_they_were() {
    let env = Env::new("edges_sse_ends");
    let mock = fixture::mock(&env, &[]).await;
    let tuning = Tuning {
        sse: "idle_timeout = \"500ms\"\nheartbeat_interval = \"1h\"\nmax_event_bytes = \"64KiB\"",
        ..Tuning::default()
    };
    let mut node = fixture::node(&env, "node", &mock, &tuning).await;

    let mut body = open_sse(&node, "/e/sse?count=2&interval_ms=1", "end-complete").await;
    drain(&mut body).await;
    assert_eq!(
        access_line(&node, "end-complete").await["outcome"],
        "complete"
    );

    // Upstream stays open and silent past the idle timeout.
    let mut body = open_sse(&node, "/e/sse/manual/quiet", "end-idle").await;
    drain(&mut body).await;
    assert_eq!(
        access_line(&node, "end-idle").await["outcome"],
        "idle_timeout"
    );

    let mut body = open_sse(&node, "/e/sse?huge=1000000", "end-oversize").await;
    drain(&mut body).await;
    assert_eq!(
        access_line(&node, "end-oversize").await["outcome"],
        "oversize"
    );

    let mut body = open_sse(&node, "/e/sse?count=1000&interval_ms=20", "end-gone").await;
    assert!(next_chunk(&mut body, Duration::from_secs(5))
        .await
        .is_some());
    drop(body);
    assert_eq!(
        access_line(&node, "end-gone").await["outcome"],
        "client_gone"
    );

    // The upstream dies mid-stream: its body fails.
    let mock2 = fixture::mock(&env, &[]).await;
    let node2 = fixture::node(&env, "node2", &mock2, &tuning).await;
    let mut body = open_sse(&node2, "/e/sse?count=1000&interval_ms=20", "end-upstream").await;
    assert!(next_chunk(&mut body, Duration::from_secs(5))
        .await
        .is_some());
    mock2.proc.signal("KILL");
    drain(&mut body).await;
    assert_eq!(
        access_line(&node2, "end-upstream").await["outcome"],
        "upstream_error"
    );

    // The node shuts down while the stream runs.
    let mut body = open_sse(&node, "/e/sse?count=1000&interval_ms=20", "end-shutdown").await;
    assert!(next_chunk(&mut body, Duration::from_secs(5))
        .await
        .is_some());
    node.proc.signal("TERM");
    drain(&mut body).await;
    assert_eq!(
        access_line(&node, "end-shutdown").await["outcome"],
        "shutdown"
    );
    assert!(node.proc.wait_exit(Duration::from_secs(20)).await.success());
    env.assert_logs_clean();
}

/// Splits a raw HTTP/1.1 answer into status line, head and JSON body.
fn json_answer(resp: &str) -> (String, String, Value) {
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {resp:.300}"));
    let status = head.lines().next().unwrap_or_default().to_string();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp:.300}"));
    (status, head.to_ascii_lowercase(), json)
}

#[tokio::test]
async fn requests_hyper_rejects_get_rhizome_json_errors() {
    let fixture::World {
        env,
        mock: _mock,
        node,
    } = fixture::world("edges_hyper_errors", &[], &Tuning::default()).await;
    let deadline = Duration::from_secs(5);

    // A head over max_header_bytes (64 KiB by default) → 431 headers_too_large.
    let big = "x".repeat(80_000);
    let resp = raw(
        node.proxy,
        format!("GET /n/open/x HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n").as_bytes(),
        deadline,
    )
    .await;
    let (status, head, v) = json_answer(&resp);
    assert!(status.starts_with("HTTP/1.1 431 "), "{status}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(v["error"]["code"], "headers_too_large");
    let id = v["error"]["request_id"].as_str().expect("request_id");
    assert!(head.contains(&format!("x-request-id: {id}")), "{head}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));

    // Unparseable heads → 400 bad_request.
    for bad in [
        &b"POST /n/open/x HTTP/1.1\r\nhost: a\r\ncontent-length: abc\r\n\r\n"[..],
        b"GET /n/open/x HTTP/1.1\r\nbad header\r\n\r\n",
        b"GET /n/open/\x01x HTTP/1.1\r\nhost: a\r\n\r\n",
    ] {
        let resp = raw(node.proxy, bad, deadline).await;
        let (status, head, v) = json_answer(&resp);
        assert!(status.starts_with("HTTP/1.1 400 "), "{status}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(v["error"]["code"], "bad_request", "{resp}");
        assert!(v["error"]["request_id"].as_str().is_some());
    }

    // After a good exchange on the same connection too.
    let auth = fixture::bearer();
    let resp = raw(
        node.proxy,
        format!("GET /n/open/x HTTP/1.1\r\nhost: a\r\nauthorization: {auth}\r\n\r\nGET /n/open/x HTTP/1.1\r\nbad header\r\n\r\n").as_bytes(),
        deadline,
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp:.300}");
    let second = resp
        .match_indices("HTTP/1.1 ")
        .nth(1)
        .map(|(i, _)| &resp[i..])
        .unwrap_or_else(|| panic!("no second answer: {resp:.600}"));
    let (status, _, v) = json_answer(second);
    assert!(status.starts_with("HTTP/1.1 400 "), "{status}");
    assert_eq!(v["error"]["code"], "bad_request");

    // The upstream's own 400 and 431 pass untouched.
    for code in [400, 431] {
        let resp = raw(
            node.proxy,
            format!("GET /a/status/{code} HTTP/1.1\r\nhost: a\r\nauthorization: {auth}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
            deadline,
        )
        .await;
        let (status, _, v) = json_answer(&resp);
        assert!(status.starts_with(&format!("HTTP/1.1 {code} ")), "{status}");
        assert_eq!(v, json!({ "status": code }));
    }
    env.assert_logs_clean();
}

async fn wait_gauge(node: &Node, want: f64) {
    wait_for(
        &format!("rhizome_sessions_active = {want}"),
        Duration::from_secs(20),
        || async { (node.metric("rhizome_sessions_active").await == Some(want)).then_some(()) },
    )
    .await
}

#[tokio::test]
async fn sessions_active_counts_the_clusters_sessions() {
    let fixture::Cluster {
        env,
        redis: _redis,
        mock: _mock,
        nodes,
        tuning: _,
    } = fixture::cluster("edges_sessions_gauge", &[], 2, Tuning::default()).await;
    let [n1, n2] = <[Node; 2]>::try_from(nodes).expect("two nodes");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = mcp::call(&n1, None, "initialize").await;
        assert_eq!(r.status, 200, "{}", r.text());
        ids.push(r.header("mcp-session-id").expect("session id").to_string());
    }
    // Node 2 never saw them, and counts them.
    wait_gauge(&n2, 3.0).await;
    wait_gauge(&n1, 3.0).await;
    for id in &ids[..2] {
        let r = mcp::delete(&n1, id).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    wait_gauge(&n2, 1.0).await;
    wait_gauge(&n1, 1.0).await;
    env.assert_logs_clean();
}
