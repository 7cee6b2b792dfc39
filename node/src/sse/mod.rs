//! Server-sent events on the proxy path (DESIGN §5): the incremental
//! [`parser`] and the [`relay`] that forwards each complete upstream event to the
//! client as soon as it is parsed, with heartbeats, an idle timeout, no total
//! timeout, and the upstream closed as soon as the client goes away.

pub mod parser;
pub mod relay;

use http::header::{HeaderMap, ACCEPT, CONTENT_TYPE};

/// True when a response (or the request's `Accept`) selects the SSE path.
pub fn is_event_stream(request: &HeaderMap, response: &HeaderMap) -> bool {
    let has = |h: &HeaderMap, name| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.to_ascii_lowercase().contains("text/event-stream"))
                .unwrap_or(false)
        })
    };
    has(response, CONTENT_TYPE) || (has(request, ACCEPT) && !response.contains_key(CONTENT_TYPE))
}
