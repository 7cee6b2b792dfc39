//! Manually driven SSE streams: `GET /sse/manual/{name}` opens a stream that
//! only emits when the test calls `POST /_mock/sse/{name}/emit`, and ends on
//! `POST /_mock/sse/{name}/close`. Owns the registry of open manual streams.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::sse::{event, note_last_event_id, sse_response, SseGuard};
use super::state::{lock, MockState};

/// How long an emit waits for one slow stream to take its event.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct ManualEntry {
    streams: Vec<(u64, mpsc::Sender<Bytes>)>,
    emitted: u64,
}

/// Open manual streams per name, with the per-name event counter.
#[derive(Debug, Default)]
pub(crate) struct ManualRegistry {
    names: HashMap<String, ManualEntry>,
    next_id: u64,
}

impl ManualRegistry {
    fn register(&mut self, name: &str, tx: mpsc::Sender<Bytes>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.names
            .entry(name.to_owned())
            .or_default()
            .streams
            .push((id, tx));
        id
    }

    /// Forgets stream `id` of `name` (no-op if already closed).
    pub fn unregister(&mut self, name: &str, id: u64) {
        if let Some(e) = self.names.get_mut(name) {
            e.streams.retain(|(i, _)| *i != id);
        }
    }

    /// Open streams per name, for `/_mock/stats`.
    pub fn open_counts(&self) -> BTreeMap<String, usize> {
        self.names
            .iter()
            .map(|(k, e)| (k.clone(), e.streams.len()))
            .collect()
    }

    fn open(&self, name: &str) -> usize {
        self.names.get(name).map_or(0, |e| e.streams.len())
    }

    /// Takes the next event number for `name` and the streams to send to.
    fn next_event(&mut self, name: &str) -> (u64, Vec<mpsc::Sender<Bytes>>) {
        let e = self.names.entry(name.to_owned()).or_default();
        e.emitted += 1;
        let txs = e.streams.iter().map(|(_, tx)| tx.clone()).collect();
        (e.emitted, txs)
    }

    /// Drops the senders of `name`, ending its streams; returns how many.
    fn close(&mut self, name: &str) -> usize {
        self.names
            .get_mut(name)
            .map_or(0, |e| std::mem::take(&mut e.streams).len())
    }

    /// Ends every manual stream (on shutdown).
    pub fn close_all(&mut self) {
        for e in self.names.values_mut() {
            e.streams.clear();
        }
    }
}

/// `GET /sse/manual/{name}`.
pub(crate) async fn open(
    State(state): State<Arc<MockState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    note_last_event_id(&state, &headers);
    let (tx, rx) = mpsc::channel(64);
    let id = lock(&state.manual).register(&name, tx);
    tracing::debug!(%name, id, "manual sse stream opened");
    let guard = SseGuard::new(state, Some((name, id)));
    sse_response(rx, guard)
}

#[derive(Debug, Deserialize)]
pub(crate) struct EmitQuery {
    /// Wait up to this long for at least one stream of the name to be open.
    #[serde(default)]
    wait_ms: u64,
}

/// `POST /_mock/sse/{name}/emit`: sends one event to every open stream of
/// `name`, answering once it is queued on each body channel.
pub(crate) async fn emit(
    State(state): State<Arc<MockState>>,
    Path(name): Path<String>,
    Query(q): Query<EmitQuery>,
    body: Bytes,
) -> Response {
    let _order = state.emit_lock.lock().await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms);
    while lock(&state.manual).open(&name) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (k, txs) = lock(&state.manual).next_event(&name);
    let data = if body.is_empty() {
        format!("{{\"n\":{k}}}")
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let frame = event(k, &data);
    let mut delivered = 0;
    for tx in txs {
        if let Ok(Ok(())) = tokio::time::timeout(SEND_TIMEOUT, tx.send(frame.clone())).await {
            delivered += 1;
        }
    }
    tracing::debug!(%name, k, delivered, "manual sse emit");
    Json(json!({ "delivered": delivered, "id": k })).into_response()
}

/// `POST /_mock/sse/{name}/close`: ends every open stream of `name`.
pub(crate) async fn close(
    State(state): State<Arc<MockState>>,
    Path(name): Path<String>,
) -> Response {
    let closed = lock(&state.manual).close(&name);
    tracing::debug!(%name, closed, "manual sse close");
    Json(json!({ "closed": closed })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_counts_events_and_streams() {
        let mut reg = ManualRegistry::default();
        let (tx, _rx) = mpsc::channel(1);
        let a = reg.register("x", tx.clone());
        let _b = reg.register("x", tx);
        assert_eq!(reg.open("x"), 2);
        let (k, txs) = reg.next_event("x");
        assert_eq!((k, txs.len()), (1, 2));
        reg.unregister("x", a);
        assert_eq!(reg.open_counts().get("x"), Some(&1));
        assert_eq!(reg.next_event("x").0, 2);
        assert_eq!(reg.close("x"), 1);
        assert_eq!(reg.open("x"), 0);
        assert_eq!(reg.next_event("y").0, 1);
    }
}
