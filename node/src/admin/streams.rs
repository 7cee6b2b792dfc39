//! `GET /admin/v1/streams`: the SSE streams with a live producer, across the
//! cluster when the replay store is Redis — id, route, producer node, epoch,
//! last sequence number and buffered events. Never event data, never the
//! client's request.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::{AdminError, PageQuery};
use crate::App;

/// One live stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamView {
    /// Stream id (the second part of its event ids).
    pub id: String,
    /// Route.
    pub route: String,
    /// Node producing it.
    pub producer: Option<String>,
    /// Producer epoch: grows with every takeover.
    pub epoch: u64,
    /// Highest sequence number produced.
    pub last_seq: u64,
    /// Events held in the replay buffer.
    pub buffered_events: u64,
}

/// A page of streams.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamList {
    /// Streams on this page.
    pub streams: Vec<StreamView>,
    /// Pass as `cursor` for the next page; absent at the end.
    pub next_cursor: Option<String>,
}

/// Lists SSE streams with a live producer.
#[utoipa::path(get, path = "/admin/v1/streams", tag = "admin", params(PageQuery),
    responses((status = 200, body = StreamList), (status = 400, description = "`bad_request`: malformed `cursor` or `limit`"),
        (status = 503, description = "`state_store_unavailable`")),
    security(("admin_token" = [])))]
pub(super) async fn list_streams(
    State(app): State<Arc<App>>,
    query: Result<axum::extract::Query<PageQuery>, QueryRejection>,
) -> Result<Json<StreamList>, AdminError> {
    let (cursor, limit) = PageQuery::parse(query)?;
    let page = app
        .replay
        .store()
        .list(cursor.as_deref(), limit)
        .await
        .map_err(|e| AdminError(e.into()))?;
    let streams = page
        .items
        .into_iter()
        .map(|(id, s)| StreamView {
            id,
            route: s.meta.route,
            producer: s.producer,
            epoch: s.epoch,
            last_seq: s.last_seq,
            buffered_events: s.oldest_seq.map_or(0, |o| s.last_seq.saturating_sub(o) + 1),
        })
        .collect();
    Ok(Json(StreamList {
        streams,
        next_cursor: page.next,
    }))
}
