//! MCP Streamable HTTP requests to the standard config's MCP route (`/m/mcp`,
//! `session = "mcp"`), sent the way an MCP client sends them: JSON-RPC
//! messages as POSTs that accept JSON or an event stream, and the `DELETE`
//! that ends a session. One implementation, so every test speaks the same
//! protocol to the node.

use http::Method;
use serde_json::{json, Value};

use super::fixture;
use super::http::{Client, Resp};
use super::Node;

/// The MCP endpoint of the standard config.
pub const PATH: &str = "/m/mcp";

/// POSTs the JSON-RPC message `body` as the client whose `Authorization`
/// value is `key`, within `session` when given.
pub async fn post(node: &Node, key: &str, session: Option<&str>, body: Value) -> Resp {
    let mut h = vec![
        ("authorization", key),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    if let Some(s) = session {
        h.push(("mcp-session-id", s));
    }
    Client::new()
        .post(&node.url(PATH), &h, body.to_string())
        .await
}

/// POSTs a request calling `method` (id 1) as the test client `ci`, within
/// `session` when given.
pub async fn call(node: &Node, session: Option<&str>, method: &str) -> Resp {
    let rpc = json!({"jsonrpc": "2.0", "id": 1, "method": method});
    post(node, &fixture::bearer(), session, rpc).await
}

/// Ends `session` with a `DELETE` as the test client `ci`.
pub async fn delete(node: &Node, session: &str) -> Resp {
    let key = fixture::bearer();
    let h = [("authorization", key.as_str()), ("mcp-session-id", session)];
    Client::new()
        .send(Method::DELETE, &node.url(PATH), &h, "")
        .await
}

/// Until `until` answers, a request that needs Redis (a new session) on
/// `node` gets 200 or 503 `state_store_unavailable` (a Redis failover);
/// counts the 503s.
pub async fn only_fail_fast_until(node: &Node, mut until: impl FnMut() -> bool) -> usize {
    let mut unavailable = 0;
    while !until() {
        let r = call(node, None, "initialize").await;
        match r.status {
            200 => {}
            503 => {
                assert_eq!(r.json()["error"]["code"], "state_store_unavailable");
                unavailable += 1;
            }
            other => panic!("during the failover: {other} {}", r.text()),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    unavailable
}
