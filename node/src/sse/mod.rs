//! Server-sent events on the proxy path: the incremental
//! [`parser`] and the [`relay`] that forwards each complete upstream event to the
//! client as soon as it is parsed, with heartbeats, an idle timeout, no total
//! timeout, and the upstream closed as soon as the client goes away. With
//! `sse.replay = true`, the [`replay`] engine records each stream
//! ([`record`]: Rhizome's own event ids, appends off the relay path) and
//! answers `Last-Event-ID` resumes on any node ([`resume`]).
//! [`ids`] issues and verifies the signed event ids clients resume with.

pub mod ids;
pub mod parser;
pub mod record;
pub mod relay;
pub mod replay;
pub mod resume;

use http::header::{HeaderMap, CONTENT_ENCODING, CONTENT_TYPE};

/// True when a response takes the SSE path: `Content-Type:
/// text/event-stream` and no content coding (a compressed stream cannot be
/// parsed into events; it streams through untouched instead).
pub fn is_event_stream(response: &HeaderMap) -> bool {
    let sse = response
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    let coded = response
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    sse && !coded
}
