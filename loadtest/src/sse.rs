//! Time to first server-sent event: sequential `GET …/sse?count=1` requests,
//! direct and through the node alternately (so drift in machine load hits
//! both alike), each timed from sending the request until the first complete
//! event (`\n\n`-terminated) has arrived. Owns the SSE bounds: an iteration
//! count, a wall-time limit and a per-iteration deadline.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::load::{quantile, HttpClient, Target};

/// Longest one iteration may take before it counts as an error.
const ITERATION_DEADLINE: Duration = Duration::from_secs(10);
/// Unmeasured iterations per side before measuring.
const WARMUP: u32 = 5;
/// Largest prefix read while looking for the end of the first event.
const MAX_FIRST_EVENT: usize = 64 << 10;

/// Times to first event of one side, sorted ascending.
#[derive(Debug, Clone)]
pub struct SseSide {
    /// Iterations attempted.
    pub iterations: u32,
    /// Iterations without a first event (status, transport, deadline).
    pub errors: u32,
    /// Successful times to first event, sorted.
    pub times: Vec<Duration>,
}

impl SseSide {
    fn new(cap: u32) -> Self {
        SseSide {
            iterations: 0,
            errors: 0,
            times: Vec::with_capacity(cap as usize),
        }
    }

    /// Time to first event at quantile `q`.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.times, q)
    }
}

/// Both sides of the SSE scenario.
#[derive(Debug, Clone)]
pub struct SseOutcome {
    /// Direct to the mock.
    pub direct: SseSide,
    /// Through the node.
    pub node: SseSide,
    /// True when the time limit ended the run before the iteration count.
    pub time_limited: bool,
}

/// Runs `iterations` alternating direct/node iterations within `max_time`.
pub async fn run(
    client: &HttpClient,
    direct: &Target,
    node: &Target,
    iterations: u32,
    max_time: Duration,
) -> SseOutcome {
    for _ in 0..WARMUP.min(iterations) {
        let _ = first_event(client, direct).await;
        let _ = first_event(client, node).await;
    }
    let end = Instant::now() + max_time;
    let mut out = SseOutcome {
        direct: SseSide::new(iterations),
        node: SseSide::new(iterations),
        time_limited: false,
    };
    for _ in 0..iterations {
        if Instant::now() >= end {
            out.time_limited = true;
            break;
        }
        for (target, side) in [(direct, &mut out.direct), (node, &mut out.node)] {
            side.iterations += 1;
            match first_event(client, target).await {
                Some(t) => side.times.push(t),
                None => side.errors += 1,
            }
        }
    }
    out.direct.times.sort_unstable();
    out.node.times.sort_unstable();
    out
}

/// One iteration: the time to the first complete event, then the rest of the
/// (one-event) stream is drained so the connection is reused.
async fn first_event(client: &HttpClient, target: &Target) -> Option<Duration> {
    let mut req = Request::get(target.url.clone());
    if let Some(v) = &target.authorization {
        req = req.header(http::header::AUTHORIZATION, v.clone());
    }
    let req = req
        .header(http::header::ACCEPT, "text/event-stream")
        .body(Full::new(Bytes::new()))
        .ok()?;
    let began = Instant::now();
    let deadline = began + ITERATION_DEADLINE;
    tokio::time::timeout_at(deadline, async {
        let resp = client.request(req).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let mut body = resp.into_body();
        let took = read_first_event(&mut body, began).await?;
        body.collect().await.ok()?;
        Some(took)
    })
    .await
    .ok()
    .flatten()
}

async fn read_first_event(body: &mut Incoming, began: Instant) -> Option<Duration> {
    let mut seen: Vec<u8> = Vec::new();
    loop {
        let frame = body.frame().await?.ok()?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen.extend_from_slice(&data);
        if ends_event(&seen) {
            return Some(began.elapsed());
        }
        if seen.len() > MAX_FIRST_EVENT {
            return None;
        }
    }
}

/// True once `buf` holds a complete event (a blank line after some field).
fn ends_event(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w == b"\n\n") || buf.windows(4).any(|w| w == b"\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_boundary() {
        assert!(!ends_event(b"id: 1\nevent: tick\ndata: {}\n"));
        assert!(ends_event(b"id: 1\nevent: tick\ndata: {}\n\n"));
        assert!(ends_event(b"data: x\r\n\r\n"));
    }
}
