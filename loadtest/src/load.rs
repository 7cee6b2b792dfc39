//! The closed-loop HTTP load generator: one shared hyper-util keep-alive
//! client, `concurrency` tokio workers pulling request numbers from a shared
//! atomic counter, each recording its own latencies, merged into an
//! [`Outcome`] with percentiles. Owns the per-scenario bounds: a request
//! count, a wall-time limit checked between requests, and a hard deadline on
//! every single request so a stuck connection cannot hold the run. A phase
//! can spread its requests over several targets (request `n` goes to target
//! `n % len`), which the token and MCP scenarios use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

/// The shared client type: HTTP/1.1 over plain TCP. An empty `Full` body is
/// sent like no body at all (no `Content-Length` on a `GET`).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Extra time a request may run past its scenario's time limit before it is
/// abandoned and counted as an error.
const GRACE: Duration = Duration::from_secs(5);
/// Most latency slots reserved up front for one phase (16 bytes each); past
/// this the vectors grow on demand, still bounded by the request count.
const PREALLOC: u64 = 1 << 20;

/// Builds the keep-alive client with an idle pool of `pool` connections per host.
pub fn client(pool: usize) -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(pool)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(conn)
}

/// Bounds of one HTTP scenario.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Measured requests.
    pub requests: u64,
    /// Concurrent workers (and connections).
    pub concurrency: usize,
    /// Wall-time limit of the measured phase (and, separately, of the warmup).
    pub max_time: Duration,
    /// Unmeasured requests sent first.
    pub warmup: u64,
}

/// One scenario: `GET url` (or `POST` with `body`), with `authorization`
/// and `headers` when given.
#[derive(Debug, Clone)]
pub struct Target {
    /// Scenario name in the report.
    pub name: &'static str,
    /// The URL.
    pub url: Uri,
    /// `Authorization` value (marked sensitive; never printed).
    pub authorization: Option<HeaderValue>,
    /// A JSON body: the request is then a `POST` with
    /// `Content-Type: application/json`.
    pub body: Option<Bytes>,
    /// Further request headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    /// `GET url` with `authorization` when given.
    pub fn get(name: &'static str, url: Uri, authorization: Option<HeaderValue>) -> Target {
        Target {
            name,
            url,
            authorization,
            body: None,
            headers: Vec::new(),
        }
    }
}

/// What one measured phase produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Scenario name.
    pub name: &'static str,
    /// Requests completed (2xx or not) plus transport errors.
    pub requests: u64,
    /// Non-2xx responses, transport errors and timeouts.
    pub errors: u64,
    /// Wall time of the measured phase.
    pub elapsed: Duration,
    /// True when the time limit ended the phase before the request count.
    pub time_limited: bool,
    /// Latencies of the 2xx responses, sorted ascending.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    /// 2xx responses per second over the measured wall time.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.latencies.len() as f64 / secs
        } else {
            0.0
        }
    }

    /// Latency at quantile `q` (0..=1) of the successful requests.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.latencies, q)
    }
}

/// Nearest-rank quantile of an ascending slice.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Sends one request and checks it answers 2xx (fails fast on a broken setup).
pub async fn preflight(client: &HttpClient, target: &Target) -> anyhow::Result<()> {
    let req = request(target)?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .with_context(|| format!("{}: no response within 10s", target.name))?
        .with_context(|| format!("{}: request failed", target.name))?;
    let status = resp.status();
    // Drain so the connection returns to the pool; the body is not shown.
    let _ = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect()).await;
    if !status.is_success() {
        bail!("{}: preflight answered {status}", target.name);
    }
    Ok(())
}

/// Warms up, then measures `target` under `limits`.
pub async fn run(client: &HttpClient, target: &Target, limits: Limits) -> Outcome {
    run_many(client, std::slice::from_ref(target), limits).await
}

/// Like [`run`], request `n` going to `targets[n % len]`; the outcome is
/// named after the first target. No targets: an empty outcome.
pub async fn run_many(client: &HttpClient, targets: &[Target], limits: Limits) -> Outcome {
    let targets: Arc<[Target]> = targets.into();
    if limits.warmup > 0 {
        phase(client, &targets, limits.warmup, limits, false).await;
    }
    phase(client, &targets, limits.requests, limits, true).await
}

async fn phase(
    client: &HttpClient,
    targets: &Arc<[Target]>,
    count: u64,
    limits: Limits,
    record: bool,
) -> Outcome {
    let name = targets.first().map_or("none", |t| t.name);
    let count = if targets.is_empty() { 0 } else { count };
    let workers = limits.concurrency.max(1);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let soft = start + limits.max_time;
    let hard = soft + GRACE;
    // Each worker gets its fair share pre-allocated; the total stays bounded by `count`.
    let reserve = if record { count.min(PREALLOC) } else { 0 };
    let share = usize::try_from(reserve.div_ceil(workers as u64)).unwrap_or(0);
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let w = Worker {
            client: client.clone(),
            targets: Arc::clone(targets),
            next: Arc::clone(&next),
            count,
            soft,
            hard,
        };
        handles.push(tokio::spawn(w.run(share, record)));
    }
    let mut latencies = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
    let mut errors = 0;
    let mut time_limited = false;
    for h in handles {
        match h.await {
            Ok(r) => {
                latencies.extend_from_slice(&r.latencies);
                errors += r.errors;
                time_limited |= r.time_limited;
            }
            // A panicked worker: count its share as lost.
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Outcome {
        name,
        requests: latencies.len() as u64 + errors,
        errors,
        elapsed,
        time_limited,
        latencies,
    }
}

/// The request of `target` (a fresh one per send).
pub fn request(target: &Target) -> anyhow::Result<Request<Full<Bytes>>> {
    let method = if target.body.is_some() {
        Method::POST
    } else {
        Method::GET
    };
    let mut req = Request::builder().method(method).uri(target.url.clone());
    if let Some(v) = &target.authorization {
        req = req.header(http::header::AUTHORIZATION, v.clone());
    }
    if target.body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    for (k, v) in &target.headers {
        req = req.header(k, v.clone());
    }
    let body = target.body.clone().unwrap_or_default();
    req.body(Full::new(body)).context("building request")
}

struct Worker {
    client: HttpClient,
    targets: Arc<[Target]>,
    next: Arc<AtomicU64>,
    count: u64,
    soft: Instant,
    hard: Instant,
}

struct WorkerResult {
    latencies: Vec<Duration>,
    errors: u64,
    time_limited: bool,
}

impl Worker {
    async fn run(self, share: usize, record: bool) -> WorkerResult {
        let mut out = WorkerResult {
            latencies: Vec::with_capacity(share),
            errors: 0,
            time_limited: false,
        };
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if n >= self.count {
                break;
            }
            let Some(target) = usize::try_from(n)
                .ok()
                .and_then(|n| self.targets.get(n % self.targets.len()))
            else {
                break;
            };
            if Instant::now() >= self.soft {
                out.time_limited = true;
                break;
            }
            let Ok(req) = request(target) else {
                out.errors += 1;
                break;
            };
            let began = Instant::now();
            let done = tokio::time::timeout_at(self.hard, async {
                let resp = self.client.request(req).await.ok()?;
                let ok = resp.status().is_success();
                resp.into_body().collect().await.ok()?;
                Some(ok)
            })
            .await;
            let latency = began.elapsed();
            match done {
                Ok(Some(true)) => {
                    if record {
                        out.latencies.push(latency);
                    }
                }
                Ok(_) => out.errors += 1,
                Err(_) => {
                    out.errors += 1;
                    out.time_limited = true;
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&v, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&v, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(quantile(&v, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
