//! Raft RPC handlers: decode the request, hand it to the local raft and
//! answer the codec encoding of its `Result` (a raft error is a 200 carrying
//! `Err`, which the sender turns into openraft's `RemoteError`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use rhizome_proto::codec;
use rhizome_proto::ErrorCode;
use serde::Serialize;

use super::{decode, octets, read_body, ApiError};
use crate::app::App;
use crate::network::MAX_RAFT_BODY;
use crate::types::{NodeId, TypeConfig};

fn answer<T: Serialize>(result: &T) -> Result<Response, ApiError> {
    codec::encode(result)
        .map(octets)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}

/// `POST /raft/append`.
pub async fn append(State(app): State<Arc<App>>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, MAX_RAFT_BODY).await?;
    let rpc: AppendEntriesRequest<TypeConfig> = decode(&bytes, "append-entries request")?;
    answer(&app.raft.append_entries(rpc).await)
}

/// `POST /raft/vote`.
pub async fn vote(State(app): State<Arc<App>>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, MAX_RAFT_BODY).await?;
    let rpc: VoteRequest<NodeId> = decode(&bytes, "vote request")?;
    answer(&app.raft.vote(rpc).await)
}

/// `POST /raft/snapshot`.
pub async fn snapshot(State(app): State<Arc<App>>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, MAX_RAFT_BODY).await?;
    let rpc: InstallSnapshotRequest<TypeConfig> = decode(&bytes, "install-snapshot request")?;
    answer(&app.raft.install_snapshot(rpc).await)
}
