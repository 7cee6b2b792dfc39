//! Per-client limits: a request rate (GCRA, [`gcra`]) and a cap on
//! concurrent streams. With `state.backend = "memory"` both are counted in
//! this process; with `redis` they are cluster-wide ([`store`]). A client
//! without limits is not in the table at all, so its requests cost one map
//! lookup and no Redis command.
//!
//! Answers: over the rate → 429 `rate_limited` with `Retry-After` and the
//! `RateLimit-Policy` / `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers
//! (the structured-field form of drafts 08 onwards), which also ride on every
//! admitted response of a rate-limited client; over the stream cap → 429
//! `too_many_streams`. When Redis does not answer, `limits.on_store_error`
//! decides: `open` admits the request unlimited, `closed` answers 503
//! `state_store_unavailable`; both are counted.

pub mod gcra;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};
use parking_lot::Mutex;
use rhizome_proto::config::{ClientConfig, OnStoreError, Rate};
use rhizome_proto::ErrorCode;
use tokio_util::sync::CancellationToken;

use crate::error::ProxyError;
use crate::metrics;
use crate::state::redis::{Redis, StateError};
use crate::{BoxBody, BoxError};
use gcra::Decision;
use store::RedisLimits;

/// `RateLimit-Policy`: the configured quota.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of it now.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// Retry-After of a refused stream: when a slot frees is unknowable.
const STREAM_RETRY: Duration = Duration::from_secs(1);

/// The limits of one client.
#[derive(Debug)]
struct ClientLimit {
    name: Arc<str>,
    rate: Option<RatePolicy>,
    max_streams: Option<u32>,
    /// Memory backend: the GCRA theoretical arrival time, µs since `epoch`.
    tat: Mutex<u64>,
    /// Memory backend: streams open now.
    streams: AtomicU32,
}

#[derive(Debug, Clone)]
struct RatePolicy {
    interval: u64,
    burst: u64,
    /// `RateLimit-Policy` value, built once.
    policy: HeaderValue,
}

impl RatePolicy {
    fn new(rate: Rate, burst: u32) -> Self {
        let window = rate.period.as_secs();
        let policy = HeaderValue::from_str(&format!("\"rate\";q={};w={window}", rate.count))
            .unwrap_or_else(|_| HeaderValue::from_static("\"rate\""));
        RatePolicy {
            interval: rate.interval_micros(),
            burst: u64::from(burst.max(1)),
            policy,
        }
    }
}

/// What a rate check of an admitted request leaves for its response.
#[derive(Debug, Clone)]
pub struct RateHeaders {
    policy: HeaderValue,
    state: HeaderValue,
}

impl RateHeaders {
    fn new(policy: &RatePolicy, d: &Decision) -> Self {
        let reset = secs_up(Duration::from_micros(d.wait_micros));
        let state = HeaderValue::from_str(&format!("\"rate\";r={};t={reset}", d.remaining))
            .unwrap_or_else(|_| HeaderValue::from_static("\"rate\""));
        RateHeaders {
            policy: policy.policy.clone(),
            state,
        }
    }

    /// Adds `RateLimit-Policy` and `RateLimit` to a response. Both are
    /// structured-field lists, so the item is appended to any the upstream
    /// sent for its own policies rather than replacing them.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.append(RATELIMIT_POLICY, self.policy.clone());
        headers.append(RATELIMIT, self.state.clone());
    }
}

/// Whole seconds, rounded up, at least 1 (`Retry-After`, `t=`).
fn secs_up(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Where limits are counted.
#[derive(Debug)]
enum Backend {
    Memory,
    Redis(Arc<RedisLimits>),
}

/// The limits of every limited client.
#[derive(Debug)]
pub struct Limiter {
    clients: HashMap<Arc<str>, Arc<ClientLimit>>,
    backend: Backend,
    on_store_error: OnStoreError,
    epoch: Instant,
}

impl Limiter {
    /// The table of `clients` that have limits, counted in `redis` when given.
    pub fn new(
        clients: &[ClientConfig],
        on_store_error: OnStoreError,
        redis: Option<Arc<Redis>>,
        node_id: &str,
    ) -> Self {
        let clients = clients
            .iter()
            .filter(|c| c.rate.is_some() || c.max_streams.is_some())
            .map(|c| {
                let name: Arc<str> = Arc::from(c.name.as_str());
                let rate = c
                    .rate
                    .zip(c.effective_burst())
                    .map(|(r, b)| RatePolicy::new(r, b));
                let limit = ClientLimit {
                    name: name.clone(),
                    rate,
                    max_streams: c.max_streams,
                    tat: Mutex::new(0),
                    streams: AtomicU32::new(0),
                };
                (name, Arc::new(limit))
            })
            .collect();
        let backend = match redis {
            Some(r) => Backend::Redis(Arc::new(RedisLimits::new(r, node_id))),
            None => Backend::Memory,
        };
        export_zeros(&clients, &backend, on_store_error);
        Limiter {
            clients,
            backend,
            on_store_error,
            epoch: Instant::now(),
        }
    }

    /// Starts the refreshing of stream leases (Redis only, and only when a
    /// client has `max_streams`).
    pub fn start(&self, tasks: &tokio_util::task::TaskTracker, shutdown: CancellationToken) {
        let streams = self.clients.values().any(|c| c.max_streams.is_some());
        if let (Backend::Redis(store), true) = (&self.backend, streams) {
            tasks.spawn(store.clone().refresh_leases(shutdown));
        }
    }

    /// True when `client` has a stream cap.
    pub fn limits_streams(&self, client: &str) -> bool {
        self.clients
            .get(client)
            .is_some_and(|c| c.max_streams.is_some())
    }

    /// Admits one request of `client` or refuses it (429 `rate_limited`);
    /// the headers to send with an admitted response of a limited client.
    pub async fn check_rate(&self, client: &str) -> Result<Option<RateHeaders>, ProxyError> {
        let Some(limit) = self.clients.get(client) else {
            return Ok(None);
        };
        let Some(policy) = &limit.rate else {
            return Ok(None);
        };
        let decision = match &self.backend {
            Backend::Memory => {
                let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut tat = limit.tat.lock();
                let (d, next) = gcra::decide(now, *tat, policy.interval, policy.burst);
                *tat = next;
                d
            }
            Backend::Redis(store) => {
                match store
                    .check_rate(client, policy.interval, policy.burst)
                    .await
                {
                    Ok(d) => d,
                    Err(e) => return self.store_failed(e).map(|()| None),
                }
            }
        };
        let headers = RateHeaders::new(policy, &decision);
        if decision.allowed {
            return Ok(Some(headers));
        }
        metrics::rate_limited(&limit.name, "rate");
        let err = ProxyError::new(
            ErrorCode::RateLimited,
            format!("client \"{client}\" is over its request rate"),
        )
        .with_retry_after(Duration::from_micros(decision.wait_micros))
        .with_header(RATELIMIT_POLICY, headers.policy)
        .with_header(RATELIMIT, headers.state);
        Err(err)
    }

    /// Takes one of `client`'s stream slots, held until the returned slot
    /// drops; `None` when the client has no cap (or the store failed open);
    /// refused with 429 `too_many_streams` when all are taken.
    pub async fn open_stream(&self, client: &str) -> Result<Option<StreamSlot>, ProxyError> {
        let Some(limit) = self.clients.get(client) else {
            return Ok(None);
        };
        let Some(max) = limit.max_streams else {
            return Ok(None);
        };
        let slot = match &self.backend {
            Backend::Memory => {
                let taken = limit
                    .streams
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .is_ok();
                taken.then(|| StreamSlot(Slot::Local(limit.clone())))
            }
            Backend::Redis(store) => match store.open_stream(&limit.name, max).await {
                Ok(lease) => lease.map(|lease| {
                    StreamSlot(Slot::Leased {
                        store: store.clone(),
                        client: limit.name.clone(),
                        lease: Some(lease),
                    })
                }),
                Err(e) => return self.store_failed(e).map(|()| None),
            },
        };
        match slot {
            Some(slot) => Ok(Some(slot)),
            None => {
                metrics::rate_limited(&limit.name, "streams");
                Err(ProxyError::new(
                    ErrorCode::TooManyStreams,
                    format!("client \"{client}\" already holds its {max} concurrent streams"),
                )
                .with_retry_after(STREAM_RETRY))
            }
        }
    }

    /// The answer when the store failed: admit (`open`) or refuse
    /// (`closed`, 503 `state_store_unavailable`); counted either way.
    fn store_failed(&self, e: StateError) -> Result<(), ProxyError> {
        metrics::rate_limit_store_error(self.on_store_error.as_str());
        match self.on_store_error {
            OnStoreError::Open => Ok(()),
            OnStoreError::Closed => Err(ProxyError::from(e)),
        }
    }
}

/// Every limit's counters at 0 from the start, so alerts see a series.
fn export_zeros(
    clients: &HashMap<Arc<str>, Arc<ClientLimit>>,
    backend: &Backend,
    on_store_error: OnStoreError,
) {
    for c in clients.values() {
        if c.rate.is_some() {
            metrics::rate_limited_zero(&c.name, "rate");
        }
        if c.max_streams.is_some() {
            metrics::rate_limited_zero(&c.name, "streams");
        }
    }
    if matches!(backend, Backend::Redis(_)) && !clients.is_empty() {
        metrics::rate_limit_store_error_zero(on_store_error.as_str());
    }
}

/// True when the request says it takes an event stream.
pub fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// One of a client's stream slots, given back when dropped.
#[derive(Debug)]
pub struct StreamSlot(Slot);

#[derive(Debug)]
enum Slot {
    /// Counted in this process.
    Local(Arc<ClientLimit>),
    /// A lease in Redis (the id is taken on drop).
    Leased {
        store: Arc<RedisLimits>,
        client: Arc<str>,
        lease: Option<String>,
    },
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        match &mut self.0 {
            Slot::Local(limit) => {
                limit.streams.fetch_sub(1, Ordering::AcqRel);
            }
            Slot::Leased {
                store,
                client,
                lease,
            } => {
                let (Some(lease), Ok(rt)) = (lease.take(), tokio::runtime::Handle::try_current())
                else {
                    return;
                };
                let (store, client) = (store.clone(), client.clone());
                rt.spawn(async move { store.close_stream(&client, lease).await });
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds a stream slot until the body is dropped
    /// (the stream ended or the client went away).
    struct Holding {
        #[pin]
        body: BoxBody,
        slot: StreamSlot,
    }
}

impl http_body::Body for Holding {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// `body`, holding `slot` for as long as it lives.
pub fn hold(body: BoxBody, slot: StreamSlot) -> BoxBody {
    http_body_util::BodyExt::boxed(Holding { body, slot })
}

#[cfg(test)]
mod tests;
