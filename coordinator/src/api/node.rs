//! The node API: `POST /v1/heartbeat` and `POST /v1/leave`.
//!
//! On the leader, a heartbeat restarts the node's liveness timer, records
//! the `seen` index it reports, commits a [`Command::Join`] when the
//! replicated state does not know the node with exactly these credentials
//! and ttl, and answers every owner as the state stands after that. A
//! goodbye commits [`Command::Leave`] for a live node and forgets its timer.
//!
//! A follower forwards the same body to the leader with
//! [`FORWARDED_HEADER`] and relays the answer; a call that was already
//! forwarded, or one arriving while no leader is known, is answered 503
//! `no_leader` (the node tries another replica).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use rhizome_proto::codec;
use rhizome_proto::coord::{
    Heartbeat, Leave, CONTENT_TYPE, FORWARDED_HEADER, HEARTBEAT_PATH, LEAVE_PATH, MAX_NODE_BODY,
};
use rhizome_proto::ErrorCode;

use super::{decode, octets, read_body, ApiError};
use crate::app::{App, Role};
use crate::assign::Command;
use crate::network::MAX_RAFT_BODY;

/// Longest a follower waits for the leader's answer to a forwarded call.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Most credentials one node may report.
pub const MAX_CREDENTIALS: usize = 10_000;
/// Longest node id and credential name, in bytes.
pub const MAX_NAME: usize = 256;
/// Bounds of `node_ttl_ms`.
pub const NODE_TTL_MS: std::ops::RangeInclusive<u64> = 500..=600_000;

/// `POST /v1/heartbeat`.
pub async fn heartbeat(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, MAX_NODE_BODY).await?;
    let mut hb: Heartbeat = decode(&bytes, "heartbeat")?;
    validate(&mut hb)?;
    if app.role() != Role::Leader {
        return forward(&app, HEARTBEAT_PATH, &headers, bytes).await;
    }
    app.wait_leader_ready().await?;
    if !app.liveness.heartbeat(&hb.node, hb.seen) {
        return Err(ApiError::no_leader(format!(
            "node {} is being declared dead; it rejoins on its next heartbeat",
            hb.node
        )));
    }
    if !app
        .sm
        .assignments()
        .knows(&hb.node, &hb.credentials, hb.node_ttl_ms)
    {
        let credentials = hb.credentials.len();
        let applied = app
            .write(Command::Join {
                node: hb.node.clone(),
                credentials: hb.credentials,
                node_ttl_ms: hb.node_ttl_ms,
            })
            .await?;
        tracing::info!(node = %hb.node, credentials, node_ttl_ms = hb.node_ttl_ms, moved = applied.moved, "node joined");
    }
    app.confirm_leadership().await?;
    encode_reply(&app)
}

/// `POST /v1/leave`.
pub async fn leave(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, MAX_NODE_BODY).await?;
    let goodbye: Leave = decode(&bytes, "leave")?;
    check_node_id(&goodbye.node)?;
    if app.role() != Role::Leader {
        return forward(&app, LEAVE_PATH, &headers, bytes).await;
    }
    app.wait_leader_ready().await?;
    if app.sm.assignments().nodes().contains_key(&goodbye.node) {
        let applied = app
            .write(Command::Leave {
                node: goodbye.node.clone(),
            })
            .await?;
        tracing::info!(node = %goodbye.node, moved = applied.moved, "node left");
    }
    app.liveness.forget(&goodbye.node);
    encode_reply(&app)
}

fn encode_reply(app: &App) -> Result<Response, ApiError> {
    codec::encode(&app.reply())
        .map(octets)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}

/// Checks a heartbeat's bounds; sorts and deduplicates its credentials
/// (a repeated name would never match the replicated set).
fn validate(hb: &mut Heartbeat) -> Result<(), ApiError> {
    check_node_id(&hb.node)?;
    if hb.credentials.len() > MAX_CREDENTIALS {
        return Err(ApiError::bad_request(format!(
            "{} credentials; at most {MAX_CREDENTIALS}",
            hb.credentials.len()
        )));
    }
    if let Some(bad) = hb
        .credentials
        .iter()
        .find(|c| c.is_empty() || c.len() > MAX_NAME)
    {
        return Err(ApiError::bad_request(format!(
            "credential names have 1 to {MAX_NAME} bytes ({} given)",
            bad.len()
        )));
    }
    if !NODE_TTL_MS.contains(&hb.node_ttl_ms) {
        return Err(ApiError::bad_request(format!(
            "node_ttl_ms {} is outside {}..={}",
            hb.node_ttl_ms,
            NODE_TTL_MS.start(),
            NODE_TTL_MS.end()
        )));
    }
    let unique: BTreeSet<String> = std::mem::take(&mut hb.credentials).into_iter().collect();
    hb.credentials = unique.into_iter().collect();
    Ok(())
}

/// A node id: 1 to 256 visible ASCII characters.
fn check_node_id(node: &str) -> Result<(), ApiError> {
    let visible = node.bytes().all(|b| b.is_ascii_graphic());
    if node.is_empty() || node.len() > MAX_NAME || !visible {
        return Err(ApiError::bad_request(format!(
            "node ids have 1 to {MAX_NAME} visible ASCII characters"
        )));
    }
    Ok(())
}

/// Relays a node call to the leader, once.
async fn forward(
    app: &App,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if headers.contains_key(FORWARDED_HEADER) {
        return Err(ApiError::no_leader(
            "forwarded to a replica that does not lead",
        ));
    }
    let (leader, url) = match app.role() {
        Role::Follower { leader, url } => (leader, url),
        Role::Leader | Role::NoLeader => return Err(ApiError::no_leader("no leader is known")),
    };
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{url}{path}"))
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .header(FORWARDED_HEADER, app.config.id.to_string())
        .body(Full::new(body))
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let unreachable = |why: String| ApiError::no_leader(format!("leader {leader} ({url}): {why}"));
    let exchange = async {
        let response = app
            .http
            .request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, MAX_RAFT_BODY)
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok::<_, ApiError>((parts, bytes))
    };
    let (parts, bytes) = tokio::time::timeout(FORWARD_TIMEOUT, exchange)
        .await
        .map_err(|_| unreachable(format!("no answer within {FORWARD_TIMEOUT:?}")))??;
    let status = StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(CONTENT_TYPE));
    Ok((status, [(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(node: &str, credentials: &[&str], node_ttl_ms: u64) -> Heartbeat {
        Heartbeat {
            node: node.into(),
            credentials: credentials.iter().map(|c| c.to_string()).collect(),
            node_ttl_ms,
            seen: 0,
        }
    }

    #[test]
    fn heartbeats_are_bounded_and_credentials_deduplicated() {
        let mut ok = hb("n-1", &["b", "a", "b"], 3000);
        validate(&mut ok).expect("valid");
        assert_eq!(ok.credentials, ["a", "b"]);
        for bad in [
            hb("", &["a"], 3000),
            hb("has space", &["a"], 3000),
            hb("é", &["a"], 3000),
            hb(&"n".repeat(257), &["a"], 3000),
            hb("n", &[""], 3000),
            hb("n", &[&"c".repeat(257)], 3000),
            hb("n", &["a"], 499),
            hb("n", &["a"], 600_001),
        ] {
            assert!(validate(&mut bad.clone()).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..=MAX_CREDENTIALS).map(|i| i.to_string()).collect();
        let mut big = hb("n", &[], 3000);
        big.credentials = many;
        assert!(validate(&mut big).is_err());
        assert!(validate(&mut hb(&"n".repeat(256), &[&"c".repeat(256)], 600_000)).is_ok());
    }
}
