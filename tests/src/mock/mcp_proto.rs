//! The pure half of the mock MCP upstream (`mcp.rs`): the registry of live
//! upstream sessions with their per-session request counters, the parsing of
//! JSON-RPC messages, the choice of how a `POST /mcp` is served (new session,
//! existing session, stateless revision), and the JSON-RPC and SSE frames it
//! answers with. Nothing here does I/O, so it is all unit-tested.

use std::collections::HashMap;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Value};

/// Header carrying the MCP session id.
pub(crate) const SESSION_HEADER: &str = "mcp-session-id";
/// Header carrying the negotiated MCP protocol revision.
pub(crate) const VERSION_HEADER: &str = "mcp-protocol-version";
/// The protocol revision the mock answers `initialize` with.
pub(crate) const PROTOCOL_VERSION: &str = "2025-06-18";
/// The (stateless) protocol revision served without any session.
pub(crate) const STATELESS_VERSION: &str = "2026-07-28";
/// JSON-RPC error code for an unknown or deleted session.
pub(crate) const SESSION_NOT_FOUND: i64 = -32001;

/// Live upstream sessions: id → requests served on it so far.
#[derive(Debug, Default)]
pub(crate) struct McpSessions {
    live: HashMap<String, u64>,
}

impl McpSessions {
    /// Creates a session whose first request (its `initialize`) is counted.
    pub fn create(&mut self) -> String {
        loop {
            let id = format!("mcp-up-{:016x}", rand::random::<u64>());
            if !self.live.contains_key(&id) {
                self.live.insert(id.clone(), 1);
                return id;
            }
        }
    }

    /// Counts one more request on `id`; returns its ordinal, or `None` if
    /// the session is not live.
    pub fn touch(&mut self, id: &str) -> Option<u64> {
        self.live.get_mut(id).map(|n| {
            *n += 1;
            *n
        })
    }

    /// Drops `id`; returns whether it was live.
    pub fn remove(&mut self, id: &str) -> bool {
        self.live.remove(id).is_some()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.live.len()
    }
}

/// One incoming JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// A request: has an id and a method, expects a response.
    Request { id: Value, method: String },
    /// A notification: a method without an id.
    Notification { method: String },
    /// A response from the client to a server-initiated request.
    Response { id: Value },
}

impl Message {
    /// The id to answer with (`null` when there is none).
    pub fn id(&self) -> Value {
        match self {
            Message::Request { id, .. } | Message::Response { id } => id.clone(),
            Message::Notification { .. } => Value::Null,
        }
    }
}

/// Parses a single JSON-RPC 2.0 message (batches are not accepted).
pub(crate) fn parse(body: &[u8]) -> Result<Message, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("not a JSON-RPC message object".to_owned());
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err("jsonrpc must be \"2.0\"".to_owned());
    }
    let id = obj.get("id").filter(|id| id.is_string() || id.is_number());
    if obj.get("id").is_some() && id.is_none() {
        return Err("id must be a string or a number".to_owned());
    }
    match (obj.get("method"), id) {
        (Some(Value::String(m)), Some(id)) => Ok(Message::Request {
            id: id.clone(),
            method: m.clone(),
        }),
        (Some(Value::String(m)), None) => Ok(Message::Notification { method: m.clone() }),
        (Some(_), _) => Err("method must be a string".to_owned()),
        (None, Some(id)) if obj.contains_key("result") || obj.contains_key("error") => {
            Ok(Message::Response { id: id.clone() })
        }
        (None, _) => Err("neither a request, a notification nor a response".to_owned()),
    }
}

/// How a `POST /mcp` is to be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// An `initialize` without a session: open a new upstream session.
    Initialize,
    /// A message on the session with this id.
    Session(String),
    /// The stateless protocol revision, no session involved.
    Stateless,
    /// Neither a session, nor `initialize`, nor the stateless revision.
    MissingSession,
}

/// The value of header `name` as text (lossy).
pub(crate) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Chooses how to serve `msg`: a session header wins, then the stateless
/// revision, then `initialize`.
pub(crate) fn route(headers: &HeaderMap, msg: &Message) -> Route {
    if let Some(id) = header(headers, SESSION_HEADER) {
        return Route::Session(id);
    }
    if header(headers, VERSION_HEADER).is_some_and(|v| v.trim() == STATELESS_VERSION) {
        return Route::Stateless;
    }
    match msg {
        Message::Request { method, .. } if method == "initialize" => Route::Initialize,
        _ => Route::MissingSession,
    }
}

/// A JSON-RPC success response.
pub(crate) fn result(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A JSON-RPC error response.
pub(crate) fn error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// The result of `initialize`.
pub(crate) fn init_result() -> Value {
    json!({ "protocolVersion": PROTOCOL_VERSION, "serverInfo": { "name": "rhizome-mock" } })
}

/// One `notifications/tick` SSE event of session `session`.
pub(crate) fn tick(n: u64, session: &str) -> Bytes {
    let data = json!({
        "jsonrpc": "2.0",
        "method": "notifications/tick",
        "params": { "n": n, "session": session },
    });
    Bytes::from(format!("id: {n}\nevent: message\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_count_and_expire() {
        let mut s = McpSessions::default();
        let a = s.create();
        assert!(a.starts_with("mcp-up-"));
        assert_eq!(a.len(), "mcp-up-".len() + 16);
        assert!(a["mcp-up-".len()..].bytes().all(|b| b.is_ascii_hexdigit()));
        let b = s.create();
        assert_ne!(a, b);
        assert_eq!(s.len(), 2);
        assert_eq!(s.touch(&a), Some(2));
        assert_eq!(s.touch(&a), Some(3));
        assert_eq!(s.touch(&b), Some(2));
        assert!(s.remove(&a));
        assert!(!s.remove(&a));
        assert_eq!(s.touch(&a), None);
        assert_eq!(s.touch("mcp-up-nope"), None);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn parse_messages() {
        let m = parse(br#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{}}"#);
        assert_eq!(
            m,
            Ok(Message::Request {
                id: json!(7),
                method: "initialize".into()
            })
        );
        let m = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(m.map(|m| m.id()), Ok(Value::Null));
        let m = parse(br#"{"jsonrpc":"2.0","id":"x","result":{}}"#);
        assert_eq!(m, Ok(Message::Response { id: json!("x") }));
        for bad in [
            &b"not json"[..],
            br#"[{"jsonrpc":"2.0","id":1,"method":"a"}]"#,
            br#"{"id":1,"method":"a"}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"a"}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"a"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":3}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn routing() {
        let init = Message::Request {
            id: json!(1),
            method: "initialize".into(),
        };
        let call = Message::Request {
            id: json!(2),
            method: "tools/list".into(),
        };
        let mut h = HeaderMap::new();
        assert_eq!(route(&h, &init), Route::Initialize);
        assert_eq!(route(&h, &call), Route::MissingSession);
        h.insert(VERSION_HEADER, STATELESS_VERSION.parse().expect("value"));
        assert_eq!(route(&h, &init), Route::Stateless);
        assert_eq!(route(&h, &call), Route::Stateless);
        h.insert(SESSION_HEADER, "mcp-up-1".parse().expect("value"));
        assert_eq!(route(&h, &call), Route::Session("mcp-up-1".into()));
        let mut h = HeaderMap::new();
        h.insert(VERSION_HEADER, PROTOCOL_VERSION.parse().expect("value"));
        assert_eq!(route(&h, &call), Route::MissingSession);
    }

    #[test]
    fn frames() {
        assert_eq!(
            tick(2, "mcp-up-a"),
            Bytes::from_static(
                b"id: 2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tick\",\"params\":{\"n\":2,\"session\":\"mcp-up-a\"}}\n\n"
            )
        );
        let e = error(json!(3), SESSION_NOT_FOUND, "session not found");
        assert_eq!(e["error"]["code"], -32001);
        assert_eq!(e["id"], 3);
        assert_eq!(
            result(json!("a"), init_result())["result"]["protocolVersion"],
            PROTOCOL_VERSION
        );
    }
}
