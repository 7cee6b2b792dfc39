//! A mock MCP upstream speaking the Streamable-HTTP transport at `/mcp`
//! (behind the credential gate): `POST` carries JSON-RPC messages, with
//! `initialize` opening an upstream session named in the `Mcp-Session-Id`
//! response header; `GET` opens a short SSE notification stream on a session;
//! `DELETE` ends a session. Requests carrying the stateless protocol revision
//! need no session. `POST /_mock/mcp/forget` drops a session behind the
//! client's back, as an upstream expiry would. The payloads are minimal:
//! sessions are what the proxy under test must get right.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::json_error;
use super::mcp_proto::{
    error, header, init_result, parse, result, route, tick, Message, Route, SESSION_HEADER,
    SESSION_NOT_FOUND,
};
use super::state::{lock, MockState};

pub(crate) use super::mcp_proto::McpSessions;

/// Gap between the events of a `GET /mcp` stream.
const TICK_INTERVAL: Duration = Duration::from_millis(50);
/// Events in a `GET /mcp` stream unless `?count=` says otherwise.
const DEFAULT_TICKS: u64 = 3;

/// Counts one request on a live upstream session; `None` if it is not live.
fn touch(state: &MockState, session: &str) -> Option<u64> {
    let n = lock(&state.mcp).touch(session)?;
    *lock(&state.stats)
        .mcp_requests
        .entry(session.to_owned())
        .or_default() += 1;
    Some(n)
}

fn not_found(id: Value) -> Response {
    let body = error(id, SESSION_NOT_FOUND, "session not found");
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// The answer to `msg`: `result` for a request, `202 Accepted` otherwise.
fn reply(msg: &Message, result_doc: impl FnOnce(&str) -> Value) -> Response {
    match msg {
        Message::Request { id, method } => {
            Json(result(id.clone(), result_doc(method))).into_response()
        }
        Message::Notification { .. } | Message::Response { .. } => {
            StatusCode::ACCEPTED.into_response()
        }
    }
}

/// `POST /mcp`.
pub(crate) async fn post(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let msg = match parse(&body) {
        Ok(m) => m,
        Err(why) => {
            tracing::info!(%why, "mcp: not a JSON-RPC message");
            return (
                StatusCode::BAD_REQUEST,
                Json(error(Value::Null, -32600, &why)),
            )
                .into_response();
        }
    };
    match route(&headers, &msg) {
        Route::Initialize => {
            let session = lock(&state.mcp).create();
            {
                let mut stats = lock(&state.stats);
                stats.mcp_sessions_created += 1;
                stats.mcp_requests.insert(session.clone(), 1);
            }
            tracing::info!(%session, "mcp: session created");
            let mut resp = Json(result(msg.id(), init_result())).into_response();
            match HeaderValue::from_str(&session) {
                Ok(v) => {
                    resp.headers_mut().insert(SESSION_HEADER, v);
                    resp
                }
                Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "bad_session_id"),
            }
        }
        Route::Session(session) => match touch(&state, &session) {
            Some(calls) => reply(
                &msg,
                |method| json!({ "session": session, "method": method, "calls": calls }),
            ),
            None => {
                tracing::info!(%session, "mcp: unknown session");
                not_found(msg.id())
            }
        },
        Route::Stateless => {
            lock(&state.stats).mcp_stateless += 1;
            let last = header(&headers, "last-event-id");
            reply(
                &msg,
                |method| json!({ "stateless": true, "method": method, "last_event_id": last }),
            )
        }
        Route::MissingSession => {
            let body = error(msg.id(), -32600, "missing Mcp-Session-Id");
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
    }
}

/// `DELETE /mcp`: ends the session named in `Mcp-Session-Id`.
pub(crate) async fn delete(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    let Some(session) = header(&headers, SESSION_HEADER) else {
        return json_error(StatusCode::BAD_REQUEST, "missing Mcp-Session-Id");
    };
    if touch(&state, &session).is_none() {
        return not_found(Value::Null);
    }
    lock(&state.mcp).remove(&session);
    lock(&state.stats).mcp_sessions_deleted += 1;
    tracing::info!(%session, "mcp: session deleted");
    Json(json!({ "deleted": session })).into_response()
}

/// `GET /mcp?count=N`: `N` (default 3) `notifications/tick` events, 50 ms
/// apart, on the session named in `Mcp-Session-Id`. Event ids continue after
/// a numeric `Last-Event-ID`.
pub(crate) async fn get(
    State(state): State<Arc<MockState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = header(&headers, SESSION_HEADER) else {
        return json_error(StatusCode::BAD_REQUEST, "missing Mcp-Session-Id");
    };
    let wants_sse = header(&headers, "accept")
        .is_some_and(|a| a.to_ascii_lowercase().contains("text/event-stream"));
    if !wants_sse {
        return json_error(StatusCode::NOT_ACCEPTABLE, "accept text/event-stream");
    }
    let count = match q.get("count").map(|c| c.parse::<u64>()) {
        None => DEFAULT_TICKS,
        Some(Ok(c)) => c,
        Some(Err(_)) => return json_error(StatusCode::BAD_REQUEST, "bad count"),
    };
    if touch(&state, &session).is_none() {
        return not_found(Value::Null);
    }
    let start = header(&headers, "last-event-id")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(1, |k| k.saturating_add(1));
    tracing::info!(%session, count, start, "mcp: sse stream opened");
    let stream = futures_util::stream::unfold(0, move |i| {
        let session = session.clone();
        async move {
            if i >= count {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(TICK_INTERVAL).await;
            }
            let frame = tick(start.saturating_add(i), &session);
            Some((Ok::<_, Infallible>(frame), i + 1))
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}

/// Body of `POST /_mock/mcp/forget`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Forget {
    session: String,
}

/// `POST /_mock/mcp/forget`: drops a session upstream without telling the
/// client, so its next use gets a 404.
pub(crate) async fn forget(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let f: Forget = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            let msg = json!({ "error": "bad_forget", "reason": e.to_string() });
            return (StatusCode::BAD_REQUEST, Json(msg)).into_response();
        }
    };
    let forgotten = lock(&state.mcp).remove(&f.session);
    tracing::info!(session = %f.session, forgotten, "mcp: session forgotten");
    Json(json!({ "forgotten": forgotten })).into_response()
}
