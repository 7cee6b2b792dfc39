//! The node's metrics, one stack: the `metrics` facade in code and
//! the Prometheus exporter rendering `/metrics`. Every metric is described here
//! (so `promtool check metrics` finds HELP and TYPE) and recorded through the
//! small functions below, so names and labels live in one place. Labels carry
//! route, credential and outcome *names*, never values.
//!
//! The per-request metrics are recorded through handles each route resolves
//! once ([`RouteMetrics`]), so a request pays no key hashing, label
//! allocation or registry lookup.
//!
//! Memory stays bounded whether or not anybody scrapes: the exporter keeps a
//! histogram's raw samples until they are folded into its fixed buckets, and
//! without a scrape only the upkeep task started by [`install`] does that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Histogram, Unit,
};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use parking_lot::RwLock;

/// Latency buckets, in seconds: 0.5 ms to 60 s. Every histogram is rendered
/// with these fixed buckets (plus `+Inf`, `_sum`, `_count`), so a series costs
/// the same whatever the request count.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// How often recorded histogram samples are folded into their buckets. Until
/// then each sample is held raw (8 bytes plus block overhead), so this bounds
/// the memory of unscraped samples to one second of traffic.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Installs the process-wide recorder, describes every metric and starts the
/// upkeep task. Call from within the Tokio runtime; the task runs until the
/// runtime stops.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)?
        .install_recorder()?;
    describe();
    // Exported from the start at 0, so an alert on it sees a series.
    log_lines_dropped(0);
    // With what retention removed before the recorder existed.
    log_files_removed(0, 0);
    tokio::spawn(upkeep(handle.clone()));
    Ok(handle)
}

/// `install_recorder` (unlike the exporter's own HTTP listener, which the
/// node does not use: `/metrics` is served by the admin API) leaves upkeep to
/// its caller; without it histogram samples pile up until the next scrape.
async fn upkeep(handle: PrometheusHandle) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

fn describe() {
    describe_counter!(
        "rhizome_requests_total",
        "Requests answered, by route, method and status."
    );
    describe_histogram!(
        "rhizome_request_duration_seconds",
        Unit::Seconds,
        "Time from request head to the end of the response body."
    );
    describe_histogram!(
        "rhizome_upstream_duration_seconds",
        Unit::Seconds,
        "Time from sending upstream to receiving the response head."
    );
    describe_counter!(
        "rhizome_upstream_retries_total",
        "Upstream attempts repeated, by reason."
    );
    describe_gauge!(
        "rhizome_sse_streams_active",
        "SSE streams being relayed now."
    );
    describe_counter!("rhizome_sse_events_total", "SSE events relayed to clients.");
    describe_counter!(
        "rhizome_sse_replayed_events_total",
        "SSE events sent to resuming clients from replay buffers."
    );
    describe_counter!(
        "rhizome_sse_takeovers_total",
        "SSE streams taken over from a producer that died."
    );
    describe_counter!(
        "rhizome_sse_gaps_total",
        "Resumes whose history was incomplete, by reason (expired, lost)."
    );
    describe_counter!(
        "rhizome_token_refresh_total",
        "Token obtain/refresh attempts, by credential and outcome."
    );
    describe_gauge!(
        "rhizome_credential_owned",
        "1 when this node owns the credential's refreshing."
    );
    describe_counter!(
        "rhizome_ownership_changes_total",
        "Credential ownership changes seen by this node."
    );
    describe_gauge!(
        "rhizome_ownership_degraded",
        "1 while ownership runs in degraded mode."
    );
    describe_gauge!(
        "rhizome_credential_cooldown",
        "1 while the credential is cooling down."
    );
    describe_gauge!("rhizome_redis_up", "1 while Redis answers.");
    describe_histogram!(
        "rhizome_redis_op_duration_seconds",
        Unit::Seconds,
        "Duration of Redis operations, by operation."
    );
    describe_gauge!(
        "rhizome_sessions_active",
        "Live MCP proxy sessions in the session store (every node's with Redis), recounted periodically."
    );
    describe_counter!(
        "rhizome_sessions_created_total",
        "MCP proxy sessions created by this node."
    );
    describe_counter!(
        "rhizome_rate_limited_total",
        "Requests refused by a client's limits, by client name and reason (rate, streams)."
    );
    describe_counter!(
        "rhizome_rate_limit_store_errors_total",
        "Limit checks Redis did not answer, by outcome (open: admitted, closed: refused)."
    );
    describe_counter!(
        "rhizome_log_lines_dropped_total",
        "Log lines dropped because the log output (stdout or file) did not keep up or failed."
    );
    describe_counter!(
        "rhizome_log_files_removed_total",
        "Rotated log files deleted by retention (log.max_files, log.max_total_size)."
    );
    describe_counter!(
        "rhizome_log_lines_removed_total",
        "Lines this process wrote into log files that retention deleted since."
    );
}

/// Counts a request of `client` refused by its limits (`rate`, `streams`).
pub fn rate_limited(client: &str, reason: &'static str) {
    counter!("rhizome_rate_limited_total", "client" => client.to_owned(), "reason" => reason)
        .increment(1);
}

/// Exports the refusal counter of `client` for `reason` at 0.
pub fn rate_limited_zero(client: &str, reason: &'static str) {
    counter!("rhizome_rate_limited_total", "client" => client.to_owned(), "reason" => reason)
        .absolute(0);
}

/// Counts a limit check the store did not answer, admitted (`open`) or
/// refused (`closed`).
pub fn rate_limit_store_error(outcome: &'static str) {
    counter!("rhizome_rate_limit_store_errors_total", "outcome" => outcome).increment(1);
}

/// Exports the store-error counter of `outcome` at 0.
pub fn rate_limit_store_error_zero(outcome: &'static str) {
    counter!("rhizome_rate_limit_store_errors_total", "outcome" => outcome).absolute(0);
}

/// Counts log lines the log sink dropped.
pub fn log_lines_dropped(n: u64) {
    counter!("rhizome_log_lines_dropped_total").increment(n);
}

/// Totals of [`log_files_removed`]: retention may delete files before the
/// recorder is installed, so the counters are set from these.
static LOG_FILES_REMOVED: AtomicU64 = AtomicU64::new(0);
static LOG_LINES_REMOVED: AtomicU64 = AtomicU64::new(0);

/// Counts log files deleted by retention and the lines this process had
/// written into them.
pub fn log_files_removed(files: u64, lines: u64) {
    let files = LOG_FILES_REMOVED.fetch_add(files, Ordering::Relaxed) + files;
    let lines = LOG_LINES_REMOVED.fetch_add(lines, Ordering::Relaxed) + lines;
    // `absolute` keeps the larger value: racing calls cannot move it back.
    counter!("rhizome_log_files_removed_total").absolute(files);
    counter!("rhizome_log_lines_removed_total").absolute(lines);
}

/// Whether Redis answers.
pub fn redis_up(up: bool) {
    gauge!("rhizome_redis_up").set(f64::from(u8::from(up)));
}

/// One Redis operation.
pub fn redis_op(op: &'static str, duration: Duration) {
    histogram!("rhizome_redis_op_duration_seconds", "op" => op).record(duration);
}

/// Live sessions in the store.
pub fn sessions_active(n: u64) {
    gauge!("rhizome_sessions_active").set(n as f64);
}

/// One MCP proxy session created.
pub fn session_created() {
    counter!("rhizome_sessions_created_total").increment(1);
}

/// The methods that are labels of their own.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Methods a client chooses are labels only when they are standard ones:
/// anything else is `OTHER`, so clients cannot create series at will.
fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("OTHER")
}

/// The request metrics of one route, as handles resolved on first use (the
/// recorder is installed before any request is served).
#[derive(Debug, Default)]
pub struct RouteMetrics {
    duration: OnceLock<Histogram>,
    upstream: OnceLock<Histogram>,
    /// `rhizome_requests_total` by `(method, status)` key, sorted by key.
    requests: RwLock<Vec<(u32, Counter)>>,
}

impl RouteMetrics {
    /// One answered request on `route`.
    pub fn request(&self, route: &str, method: &str, status: u16, duration: Duration) {
        self.count_request(route, method_label(method), status);
        self.duration
            .get_or_init(
                || histogram!("rhizome_request_duration_seconds", "route" => route.to_owned()),
            )
            .record(duration);
    }

    /// Time to the upstream's response head on `route`.
    pub fn upstream_duration(&self, route: &str, duration: Duration) {
        self.upstream
            .get_or_init(
                || histogram!("rhizome_upstream_duration_seconds", "route" => route.to_owned()),
            )
            .record(duration);
    }

    fn count_request(&self, route: &str, method: &'static str, status: u16) {
        let key = (method_index(method) << 16) | u32::from(status);
        {
            let known = self.requests.read();
            if let Ok(i) = known.binary_search_by_key(&key, |(k, _)| *k) {
                known[i].1.increment(1);
                return;
            }
        }
        let made = counter!("rhizome_requests_total", "route" => route.to_owned(), "method" => method, "status" => status.to_string());
        made.increment(1);
        let mut all = self.requests.write();
        if let Err(i) = all.binary_search_by_key(&key, |(k, _)| *k) {
            all.insert(i, (key, made));
        }
    }
}

/// Position of a method label in [`KNOWN_METHODS`] (`OTHER` last).
fn method_index(label: &str) -> u32 {
    let i = KNOWN_METHODS.iter().position(|m| *m == label);
    u32::try_from(i.unwrap_or(KNOWN_METHODS.len())).unwrap_or(u32::MAX)
}

/// One answered request outside any route (no handles to reuse).
pub fn request(route: &str, method: &str, status: u16, duration: Duration) {
    counter!("rhizome_requests_total", "route" => route.to_owned(), "method" => method_label(method), "status" => status.to_string())
        .increment(1);
    histogram!("rhizome_request_duration_seconds", "route" => route.to_owned()).record(duration);
}

/// Time to the upstream's response head, outside any route's handles.
pub fn upstream_duration(route: &str, duration: Duration) {
    histogram!("rhizome_upstream_duration_seconds", "route" => route.to_owned()).record(duration);
}

/// One repeated upstream attempt (`unauthorized`, `connect_error`).
pub fn upstream_retry(reason: &'static str) {
    counter!("rhizome_upstream_retries_total", "reason" => reason).increment(1);
}

/// `n` SSE events relayed on `route`.
pub fn sse_events(route: &str, n: u64) {
    counter!("rhizome_sse_events_total", "route" => route.to_owned()).increment(n);
}

/// Counts `n` events replayed to resuming clients of `route`.
pub fn sse_replayed(route: &str, n: u64) {
    counter!("rhizome_sse_replayed_events_total", "route" => route.to_owned()).increment(n);
}

/// Counts a stream taken over from a dead producer.
pub fn sse_takeover(route: &str) {
    counter!("rhizome_sse_takeovers_total", "route" => route.to_owned()).increment(1);
}

/// Counts a resume that got a gap signal.
pub fn sse_gap(reason: &'static str) {
    counter!("rhizome_sse_gaps_total", "reason" => reason).increment(1);
}

/// One token attempt for `credential` (`success`, `failure`).
pub fn token_refresh(credential: &str, outcome: &'static str) {
    counter!("rhizome_token_refresh_total", "credential" => credential.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// Whether this node owns `credential`.
pub fn credential_owned(credential: &str, owned: bool) {
    gauge!("rhizome_credential_owned", "credential" => credential.to_owned())
        .set(f64::from(u8::from(owned)));
}

/// Whether `credential` is cooling down.
pub fn credential_cooldown(credential: &str, cooling: bool) {
    gauge!("rhizome_credential_cooldown", "credential" => credential.to_owned())
        .set(f64::from(u8::from(cooling)));
}

/// Whether ownership runs in degraded mode (no coordinator answers).
pub fn ownership_degraded(degraded: bool) {
    gauge!("rhizome_ownership_degraded").set(f64::from(u8::from(degraded)));
}

/// Counts a credential this node gained or lost.
pub fn ownership_changed() {
    counter!("rhizome_ownership_changes_total").increment(1);
}

/// Sets the fixed ownership gauges of the embedded mode.
pub fn ownership_embedded() {
    gauge!("rhizome_ownership_degraded").set(0.0);
    counter!("rhizome_ownership_changes_total").absolute(0);
}

/// Counts an SSE stream as active for as long as it lives.
#[derive(Debug)]
pub struct SseStreamGuard {
    route: String,
}

impl SseStreamGuard {
    /// Marks a stream on `route` active.
    pub fn new(route: &str) -> Self {
        gauge!("rhizome_sse_streams_active", "route" => route.to_owned()).increment(1.0);
        SseStreamGuard {
            route: route.to_owned(),
        }
    }
}

impl Drop for SseStreamGuard {
    fn drop(&mut self) {
        gauge!("rhizome_sse_streams_active", "route" => self.route.clone()).decrement(1.0);
    }
}
