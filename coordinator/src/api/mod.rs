//! The one HTTP listener (axum): raft RPCs between replicas ([`raft`]), the
//! node API ([`node`]: heartbeats and goodbyes, answered by the leader and
//! forwarded to it by followers), and the status routes ([`status`]:
//! `/v1/cluster`, `/metrics`, `/healthz`).
//!
//! Bodies are read here with a hard limit (16 MiB for raft, `MAX_NODE_BODY`
//! for nodes); a body over the limit or one that does not decode is a 400
//! JSON error (`{"error": {"code": "bad_request", "message"}}`) and the
//! server goes on serving. A body over its limit is drained (up to
//! [`DRAIN_LIMIT`]) before the answer so the client reads the 400 instead of
//! a reset connection.

mod node;
mod raft;
mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use rhizome_proto::coord::{CONTENT_TYPE, HEARTBEAT_PATH, LEAVE_PATH};
use rhizome_proto::ErrorCode;

use crate::app::{App, WriteError};
use crate::network::{APPEND_PATH, SNAPSHOT_PATH, VOTE_PATH};

/// `GET` the cluster view (JSON).
pub const CLUSTER_PATH: &str = "/v1/cluster";
/// Most bytes read from an oversized body before answering anyway.
pub const DRAIN_LIMIT: usize = 64 << 20;
/// Longest time spent draining an oversized body.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The router of a replica.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(APPEND_PATH, post(raft::append))
        .route(VOTE_PATH, post(raft::vote))
        .route(SNAPSHOT_PATH, post(raft::snapshot))
        .route(HEARTBEAT_PATH, post(node::heartbeat))
        .route(LEAVE_PATH, post(node::leave))
        .route(CLUSTER_PATH, get(status::cluster))
        .route("/metrics", get(status::metrics))
        .route("/healthz", get(status::healthz))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .with_state(app)
}

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 503 `no_leader`.
    pub fn no_leader(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NoLeader, message)
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NoLeader(m) => ApiError::no_leader(m),
            WriteError::Fatal(m) => ApiError::new(ErrorCode::Internal, m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {"code": self.code.as_str(), "message": self.message}
        });
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(body)).into_response()
    }
}

/// A 200 answer carrying codec bytes.
pub fn octets(bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// Reads the whole body if it has at most `limit` bytes; otherwise drains
/// what is left (bounded) and answers 400.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    let drained = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                total = total.saturating_add(data.len());
                if total <= limit {
                    buf.extend_from_slice(&data);
                } else if total > DRAIN_LIMIT {
                    break;
                }
            }
        }
        Ok(())
    })
    .await;
    match drained {
        Ok(Ok(())) if total <= limit => Ok(buf.freeze()),
        Ok(Err(e)) => Err(e),
        _ => Err(ApiError::bad_request(format!(
            "body larger than {limit} bytes"
        ))),
    }
}

/// Decodes a codec body into `T`, or 400 naming `what`.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    rhizome_proto::codec::decode(bytes)
        .map_err(|e| ApiError::bad_request(format!("not a valid {what}: {e}")))
}
