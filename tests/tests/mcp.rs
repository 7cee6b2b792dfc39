//! MCP Streamable HTTP sessions across nodes: a session
//! initialized through one node is used through the others, survives that
//! node's death, ends with `DELETE`, and is bound to its client. Stateless
//! 2026-07-28 clients pass through. Runs against a real `redis-server`.

use std::time::Duration;

use http::Method;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::{next_chunk, Client};
use rhizome_tests::harness::secrets::{ADMIN_TOKEN, OTHER_CLIENT_KEY};
use rhizome_tests::harness::{mcp, Node};
use serde_json::{json, Value};

#[tokio::test]
async fn a_session_outlives_its_node_and_is_bound_to_its_client() {
    let fixture::Cluster {
        env,
        redis: _redis,
        mock,
        nodes,
        ..
    } = fixture::cluster("mcp_cluster", &[], 3, Tuning::default()).await;
    let [mut n1, n2, n3] = <[Node; 3]>::try_from(nodes).expect("three nodes");
    let key = fixture::bearer();
    let other = format!("Bearer {OTHER_CLIENT_KEY}");

    let init = mcp::call(&n1, None, "initialize").await;
    assert_eq!(init.status, 200, "{}", init.text());
    let p = init
        .header("mcp-session-id")
        .expect("proxy session id")
        .to_string();
    assert!(p.starts_with("rzs-") && p.len() >= 36, "{p}");
    assert!(!p.contains("mcp-up-"), "the upstream id is never shown");
    let upstream_sessions = mock.stats().await["mcp_requests"]
        .as_object()
        .expect("map")
        .clone();
    assert_eq!(upstream_sessions.len(), 1);
    let u = upstream_sessions.keys().next().expect("U").clone();

    // Used through nodes 2 and 3: the upstream sees its own id, the client ours.
    for (i, node) in [&n2, &n3].into_iter().enumerate() {
        let r = mcp::post(
            node,
            &key,
            Some(&p),
            json!({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/list"}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["result"]["session"], u.as_str());
        assert_eq!(r.json()["result"]["calls"], 2 + i);
    }
    // An SSE GET on the session through node 3.
    let resp = Client::new()
        .open(
            Method::GET,
            &n3.url("/m/mcp?count=2"),
            &[
                ("authorization", key.as_str()),
                ("mcp-session-id", p.as_str()),
                ("accept", "text/event-stream"),
            ],
            "",
        )
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = next_chunk(&mut body, Duration::from_secs(5))
        .await
        .expect("event");
    assert!(
        String::from_utf8_lossy(&first).contains(&u),
        "events flow for the session"
    );
    drop(body);

    // Node 1 dies: the session keeps working through the others.
    n1.proc.signal("KILL");
    n1.proc.wait_exit(Duration::from_secs(5)).await;
    let r = mcp::post(
        &n2,
        &key,
        Some(&p),
        json!({"jsonrpc": "2.0", "id": 20, "method": "tools/call"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["session"], u.as_str());

    // Another client presenting the id: 404. An unknown id: 404.
    let r = mcp::post(
        &n2,
        &other,
        Some(&p),
        json!({"jsonrpc": "2.0", "id": 21, "method": "tools/list"}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "session_not_found");
    let r = mcp::post(
        &n3,
        &key,
        Some("rzs-00000000000000000000000000000000"),
        json!({"jsonrpc": "2.0", "id": 22, "method": "x"}),
    )
    .await;
    assert_eq!(r.status, 404);

    // The admin view lists it, without the upstream id.
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let list = Client::new()
        .get(
            &n2.admin_url("/admin/v1/sessions?limit=10"),
            &[("authorization", admin.as_str())],
        )
        .await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(
        list.text().contains(&p) && !list.text().contains(&u),
        "{}",
        list.text()
    );
    assert_eq!(list.json()["sessions"][0]["client"], "ci");

    // DELETE through node 3 ends it upstream and everywhere.
    let r = mcp::delete(&n3, &p).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mock.stats().await["mcp_sessions_deleted"], 1);
    for node in [&n2, &n3] {
        let r = mcp::post(
            node,
            &key,
            Some(&p),
            json!({"jsonrpc": "2.0", "id": 30, "method": "tools/list"}),
        )
        .await;
        assert_eq!(r.status, 404, "deleted session must be gone on every node");
    }

    // A 2026-07-28 client passes through statelessly: no mapping, Last-Event-ID dropped.
    let r = Client::new()
        .post(
            &n2.url("/m/mcp"),
            &[
                ("authorization", key.as_str()),
                ("content-type", "application/json"),
                ("mcp-protocol-version", "2026-07-28"),
                ("last-event-id", "41"),
            ],
            json!({"jsonrpc": "2.0", "id": 40, "method": "initialize"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("mcp-session-id").is_none());
    assert_eq!(r.json()["result"]["stateless"], true);
    assert_eq!(r.json()["result"]["last_event_id"], Value::Null);
    assert_eq!(mock.stats().await["mcp_stateless"], 1);
    env.assert_logs_clean();
}

#[tokio::test]
async fn upstream_forgetting_a_session_ends_the_mapping() {
    // The embedded default keeps sessions in memory; the mapping rules are the same.
    let fixture::World { env, mock, node } =
        fixture::world("mcp_forget", &[], &Tuning::default()).await;
    let key = fixture::bearer();
    let init = mcp::call(&node, None, "initialize").await;
    assert_eq!(init.status, 200, "{}", init.text());
    let p = init.header("mcp-session-id").expect("session").to_string();
    let stats = mock.stats().await;
    let u = stats["mcp_requests"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .expect("U");
    assert_eq!(
        mock.control("/_mock/mcp/forget", json!({"session": u}))
            .await["forgotten"],
        true
    );
    let r = mcp::post(
        &node,
        &key,
        Some(&p),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(r.status, 404, "upstream's 404 reaches the client");
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let list = Client::new()
        .get(
            &node.admin_url("/admin/v1/sessions"),
            &[("authorization", admin.as_str())],
        )
        .await;
    assert_eq!(list.json()["sessions"], json!([]), "the mapping is gone");
    let r = mcp::post(
        &node,
        &key,
        Some(&p),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
    )
    .await;
    assert_eq!(r.json()["error"]["code"], "session_not_found");
    // The intent API would bypass the client binding: MCP routes refuse it.
    let intent = json!({"route": "m", "method": "POST", "path": "/mcp", "json": {"jsonrpc": "2.0", "id": 4, "method": "initialize"}});
    let r = Client::new()
        .post(
            &node.url("/v1/proxy"),
            &[
                ("authorization", key.as_str()),
                ("content-type", "application/json"),
            ],
            intent.to_string(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    // A session header that is not text is a 404, never forwarded raw.
    let r = Client::new()
        .post(
            &node.url("/m/mcp"),
            &[
                ("authorization", key.as_str()),
                ("mcp-session-id", "caf\u{e9}"),
            ],
            "{}",
        )
        .await;
    assert_eq!(r.status, 404);
    env.assert_logs_clean();
}
