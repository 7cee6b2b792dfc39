//! Reading an SSE response the way a client does: whole events (blocks up to
//! their blank line), comments skipped, each with the time it arrived.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::http::Client;
use super::Node;

/// Opens the event stream `path` on `node` as the client with `key`,
/// resuming after `last_id` when given: the status, the events, and the
/// `rhizome-last-event-id` header a resume into a gap carries.
pub async fn open(
    node: &Node,
    path: &str,
    key: &str,
    last_id: Option<&str>,
) -> (u16, Reader, Option<String>) {
    let auth = format!("Bearer {key}");
    let mut h = vec![
        ("authorization", auth.as_str()),
        ("accept", "text/event-stream"),
    ];
    if let Some(id) = last_id {
        h.push(("last-event-id", id));
    }
    let resp = Client::new()
        .open(Method::GET, &node.url(path), &h, "")
        .await;
    let status = resp.status().as_u16();
    let gap_header = resp
        .headers()
        .get("rhizome-last-event-id")
        .map(|v| v.to_str().unwrap_or("").to_string());
    (status, Reader::new(resp.into_body()), gap_header)
}

/// The mock upstream's event numbers (`{"n": k}` data) of `events`.
pub fn numbers(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|ev| {
            serde_json::from_str::<serde_json::Value>(&ev.data)
                .ok()
                .and_then(|v| v["n"].as_u64())
                .unwrap_or_else(|| panic!("not an upstream event: {ev:?}"))
        })
        .collect()
}

/// One event as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `id`, if sent.
    pub id: Option<String>,
    /// `event`, if sent.
    pub event: Option<String>,
    /// `data` lines joined with `\n`.
    pub data: String,
    /// When it arrived.
    pub at: Instant,
}

/// Events of one streaming response.
#[derive(Debug)]
pub struct Reader {
    body: Incoming,
    buf: BytesMut,
    done: bool,
}

impl Reader {
    /// Reads `body`.
    pub fn new(body: Incoming) -> Self {
        Reader {
            body,
            buf: BytesMut::new(),
            done: false,
        }
    }

    /// The next event; `None` when the stream ended. Panics after `deadline`
    /// without one.
    pub async fn next(&mut self, deadline: Duration) -> Option<Event> {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(ev) = self.take_event() {
                return Some(ev);
            }
            if self.done {
                return None;
            }
            let frame = tokio::time::timeout_at(end, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no event within {deadline:?}"));
            match frame {
                None | Some(Err(_)) => self.done = true,
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Every event until the stream ends (each within `deadline`).
    pub async fn rest(&mut self, deadline: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(ev) = self.next(deadline).await {
            out.push(ev);
        }
        out
    }

    fn take_event(&mut self) -> Option<Event> {
        loop {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            let end = text.find("\n\n")?;
            let block = text[..end].to_string();
            let _ = self.buf.split_to(end + 2);
            let mut ev = Event {
                id: None,
                event: None,
                data: String::new(),
                at: Instant::now(),
            };
            let mut has_data = false;
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => ev.id = Some(value.to_string()),
                    "event" => ev.event = Some(value.to_string()),
                    "data" => {
                        if has_data {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if has_data {
                return Some(ev);
            }
        }
    }
}
