//! The access log: one JSON line per request, written when its response body
//! ends (see `body::Observed`). [`AccessLog`] is what the phases record along
//! the way; [`write`] formats the line once, with serde, into a per-thread
//! buffer and hands it to the log sink (`telemetry::sink`) — no tracing event
//! and no field-by-field visitor on the request path. The line keeps the
//! shape of the node's other JSON log lines (`timestamp`, `level`,
//! `message`, the fields, `target`) and honours `RUST_LOG` for the target
//! `rhizome::access`. With `--log-format pretty` the same JSON rides in a
//! tracing event, so the human-readable log keeps one format.

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::sse::relay::StreamEnd;
use crate::telemetry;

/// The tracing target (and `RUST_LOG` filter name) of access lines.
pub const TARGET: &str = "rhizome::access";

/// Everything the access log line says about one request.
#[derive(Debug, Default)]
pub struct AccessLog {
    /// Request id.
    pub request_id: String,
    /// Method.
    pub method: String,
    /// Path without the query (queries may carry secrets).
    pub path: String,
    /// Route name, or `-`.
    pub route: String,
    /// Authenticated client, if any.
    pub client: Option<String>,
    /// Credential name used, if any.
    pub credential: Option<String>,
    /// Status sent.
    pub status: u16,
    /// Time to the upstream's response head.
    pub upstream: Option<Duration>,
    /// Request body bytes, when known.
    pub bytes_in: Option<usize>,
    /// Rhizome's own error code, if it answered with one.
    pub error: Option<&'static str>,
    /// Retries made.
    pub retries: u32,
    /// For a relayed SSE stream: why it ended (idle timeout, upstream error…),
    /// which the body's end alone does not tell.
    pub stream_end: Option<StreamEnd>,
}

/// Milliseconds rounded to the microsecond, for log lines that stay readable.
pub fn millis(d: Duration) -> f64 {
    // Exact for any duration below 2^53 µs (285 years).
    d.as_micros() as f64 / 1000.0
}

/// How the request ended, as the body saw it.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// Request head to the end of the response body.
    pub elapsed: Duration,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// `complete`, `client_gone`, `body_error` or the stream's own outcome.
    pub outcome: &'a str,
}

/// The line as written: field order is the order of the other JSON lines.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(serialize_with = "rfc3339_micros")]
    timestamp: SystemTime,
    level: &'static str,
    message: &'static str,
    request_id: &'a str,
    method: &'a str,
    path: &'a str,
    route: &'a str,
    client: &'a str,
    credential: &'a str,
    status: u16,
    error: &'a str,
    retries: u32,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_in: Option<usize>,
    bytes_out: u64,
    outcome: &'a str,
    target: &'static str,
}

/// `2026-01-01T00:00:00.000000Z`, as tracing-subscriber writes timestamps.
fn rfc3339_micros<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*t))
}

thread_local! {
    /// Each thread formats its lines in one reused buffer.
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes the access line of `log`, unless `RUST_LOG` filters it out.
pub fn write(log: &AccessLog, end: Ending<'_>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let line = Line {
        timestamp: SystemTime::now(),
        level: "INFO",
        message: "request",
        request_id: &log.request_id,
        method: &log.method,
        path: &log.path,
        route: &log.route,
        client: log.client.as_deref().unwrap_or("-"),
        credential: log.credential.as_deref().unwrap_or("-"),
        status: log.status,
        error: log.error.unwrap_or("-"),
        retries: log.retries,
        duration_ms: millis(end.elapsed),
        upstream_ms: log.upstream.map(millis),
        bytes_in: log.bytes_in,
        bytes_out: end.bytes_out,
        outcome: end.outcome,
        target: TARGET,
    };
    BUF.with(|buf| {
        let Ok(mut buf) = buf.try_borrow_mut() else {
            return; // only if serializing logged an access line: never
        };
        buf.clear();
        if serde_json::to_writer(&mut *buf, &line).is_err() {
            return;
        }
        match telemetry::json_sink() {
            Some(sink) => {
                buf.push(b'\n');
                sink.push(&buf);
            }
            None => {
                let json = String::from_utf8_lossy(&buf);
                tracing::info!(target: TARGET, "request {json}");
            }
        }
    });
}
