//! Server-sent-event upstreams: the scripted `GET /sse` stream, and the
//! plumbing shared with the manual streams (`manual.rs`): a channel-backed
//! response body whose drop guard counts the stream as closed however it ends.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::mpsc;

use super::api::json_error;
use super::state::{lock, MockState};

pub(crate) use super::manual::ManualRegistry;

/// Counts an SSE stream as open while alive and closed once dropped; for a
/// manual stream also unregisters it.
#[derive(Debug)]
pub(crate) struct SseGuard {
    state: Arc<MockState>,
    manual: Option<(String, u64)>,
}

impl SseGuard {
    pub fn new(state: Arc<MockState>, manual: Option<(String, u64)>) -> Self {
        lock(&state.stats).sse_open += 1;
        SseGuard { state, manual }
    }
}

impl Drop for SseGuard {
    fn drop(&mut self) {
        lock(&self.state.stats).sse_closed += 1;
        if let Some((name, id)) = &self.manual {
            lock(&self.state.manual).unregister(name, *id);
        }
        tracing::debug!(manual = ?self.manual.as_ref().map(|m| &m.0), "sse stream closed");
    }
}

/// Records the `Last-Event-ID` of an SSE request and returns it.
pub(crate) fn note_last_event_id(state: &MockState, headers: &HeaderMap) -> Option<String> {
    let id = headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    lock(&state.stats).last_event_id_seen = id.clone();
    id
}

/// An event-stream response whose body is fed by `rx`; `guard` lives exactly
/// as long as the body.
pub(crate) fn sse_response(rx: mpsc::Receiver<Bytes>, guard: SseGuard) -> Response {
    let stream = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(chunk), (rx, guard)))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}

/// Formats one `tick` event; multi-line data gets one `data:` line each.
pub(crate) fn event(id: u64, data: &str) -> Bytes {
    let mut out = format!("id: {id}\nevent: tick\n");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// The script of a `GET /sse` stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SsePlan {
    pub count: u64,
    pub interval: Duration,
    pub start: u64,
    pub split: bool,
    pub huge: Option<usize>,
    /// Send no `id` fields (an upstream that cannot be resumed).
    pub no_ids: bool,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Builds the plan from the query and the request's `Last-Event-ID`.
pub(crate) fn plan(
    q: &HashMap<String, String>,
    last_event_id: Option<&str>,
) -> Result<SsePlan, String> {
    fn num(q: &HashMap<String, String>, k: &str, default: u64) -> Result<u64, String> {
        q.get(k)
            .map_or(Ok(default), |v| v.parse().map_err(|_| format!("bad {k}")))
    }
    fn flag(q: &HashMap<String, String>, k: &str) -> Result<bool, String> {
        q.get(k)
            .map_or(Ok(false), |v| parse_bool(v).ok_or(format!("bad {k}")))
    }
    let mut start = num(q, "start", 1)?;
    if flag(q, "honour_last_event_id")? {
        if let Some(k) = last_event_id.and_then(|v| v.trim().parse::<u64>().ok()) {
            start = k + 1;
        }
    }
    let huge = match q.get("huge") {
        Some(v) => Some(v.parse().map_err(|_| "bad huge".to_owned())?),
        None => None,
    };
    // `to`: the last event number, whatever the start (a resumed stream ends
    // where the original would have).
    let count = match q.get("to") {
        Some(_) => (num(q, "to", 0)? + 1).saturating_sub(start),
        None => num(q, "count", 10)?,
    };
    Ok(SsePlan {
        no_ids: flag(q, "no_ids")?,
        count,
        interval: Duration::from_millis(num(q, "interval_ms", 100)?),
        start,
        split: flag(q, "split")?,
        huge,
    })
}

/// `GET /sse`.
pub(crate) async fn sse(
    State(state): State<Arc<MockState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let last = note_last_event_id(&state, &headers);
    let plan = match plan(&q, last.as_deref()) {
        Ok(p) => p,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, &why),
    };
    tracing::debug!(?plan, "sse stream opened");
    let (tx, rx) = mpsc::channel(16);
    let guard = SseGuard::new(state, None);
    tokio::spawn(produce(tx, plan));
    sse_response(rx, guard).into_response()
}

/// Feeds a `/sse` stream; returns as soon as the body is gone.
async fn produce(tx: mpsc::Sender<Bytes>, plan: SsePlan) {
    if let Some(n) = plan.huge {
        let mut left = n + "data: ".len();
        let mut first = true;
        while left > 0 {
            let len = left.min(64 << 10);
            let mut chunk = vec![b'x'; len];
            if first {
                chunk[..6].copy_from_slice(b"data: ");
                first = false;
            }
            if tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            left -= len;
        }
        // Idle until the client goes away.
        tx.closed().await;
        return;
    }
    for i in 0..plan.count {
        if i > 0 {
            tokio::select! {
                () = tokio::time::sleep(plan.interval) => {}
                () = tx.closed() => return,
            }
        }
        let n = plan.start + i;
        let mut ev = event(n, &format!("{{\"n\":{n}}}"));
        if plan.no_ids {
            let text = String::from_utf8_lossy(&ev).replace(&format!("id: {n}\n"), "");
            ev = Bytes::from(text);
        }
        if plan.split {
            for piece in ev.chunks(3) {
                if tx.send(Bytes::copy_from_slice(piece)).await.is_err() {
                    return;
                }
                // Let the connection flush each piece separately.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else if tx.send(ev).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn plan_defaults_and_resume() {
        let p = plan(&q(&[]), Some("7")).expect("plan");
        assert_eq!((p.count, p.start, p.split, p.huge), (10, 1, false, None));
        assert_eq!(p.interval, Duration::from_millis(100));
        let p = plan(&q(&[("honour_last_event_id", "true")]), Some("7")).expect("plan");
        assert_eq!(p.start, 8);
        let p = plan(&q(&[("honour_last_event_id", "1")]), Some("x")).expect("plan");
        assert_eq!(p.start, 1);
        assert!(plan(&q(&[("count", "many")]), None).is_err());
    }

    #[test]
    fn event_format() {
        assert_eq!(
            event(3, "{\"n\":3}"),
            Bytes::from_static(b"id: 3\nevent: tick\ndata: {\"n\":3}\n\n")
        );
        assert_eq!(
            event(1, "a\nb"),
            Bytes::from_static(b"id: 1\nevent: tick\ndata: a\ndata: b\n\n")
        );
    }
}
