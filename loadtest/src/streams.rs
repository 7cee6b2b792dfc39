//! The `sse` scenario: many concurrent SSE streams on one node. For each
//! stream count (`--streams`, e.g. 100, 1,000, 10,000) and each path —
//! direct to the mock, through the node with replay off (`/a/`) and on
//! (`/e/`, memory backend) — it opens that many manual mock streams
//! (`/sse/manual/NAME`, which only send when told), reads the node's RSS
//! with them idle, times first events of fresh `count=1` streams while they
//! stay open, then has the mock emit events to all of them: a few spaced
//! emits to time each event from its emit to its arrival on every stream
//! (per-event delay), then a burst to count events/s. Owns its bounds: an
//! opening concurrency, a deadline per wait and per phase.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use rhizome_tests::harness::sse::Reader;
use rhizome_tests::harness::{Mock, Node};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::load::{quantile, HttpClient, Target};
use crate::memory::status_kib;
use crate::report::ms;
use crate::sse::{self, SseOutcome};

/// Streams being opened at once (so 10,000 opens do not overflow a backlog).
const OPENING: usize = 256;
/// Longest wait for one condition (all streams open, one emit delivered).
const WAIT: Duration = Duration::from_secs(60);
/// Quiet time before an RSS reading.
const SETTLE: Duration = Duration::from_secs(2);
/// Events sent in the burst, summed over all streams (bounds its length).
const BURST_EVENTS: u64 = 200_000;

/// What the scenario needs from the run.
#[derive(Debug)]
pub struct Setup<'a> {
    /// The shared keep-alive client.
    pub client: &'a HttpClient,
    /// The mock upstream.
    pub mock: &'a Mock,
    /// The node.
    pub node: &'a Node,
    /// `Authorization` for direct requests (a mock token).
    pub direct_token: &'a HeaderValue,
    /// `Authorization` for the node (the client key).
    pub client_key: &'a HeaderValue,
    /// First-event probes per path while the streams are open.
    pub probes: u32,
    /// Spaced emits timed for per-event delay.
    pub emits: u32,
    /// Wall-time bound of each probe run.
    pub max_time: Duration,
}

/// One path at one stream count.
#[derive(Debug, Clone)]
pub struct PathRun {
    /// Row label.
    pub path: &'static str,
    /// Streams asked for.
    pub streams: u32,
    /// Streams that opened (2xx and registered at the mock).
    pub opened: u64,
    /// Node RSS growth per open stream, KiB (None direct).
    pub rss_per_stream_kib: Option<f64>,
    /// Node RSS growth per stream after the events, KiB (None direct).
    pub rss_after_events_kib: Option<f64>,
    /// First-event probes while the streams were open (None direct).
    pub ttfe: Option<SseOutcome>,
    /// Emit-to-arrival delays of the spaced emits, every stream, sorted.
    pub delays: Vec<Duration>,
    /// Events the burst delivered and how long it took.
    pub burst_events: u64,
    /// Wall time of the burst.
    pub burst_time: Duration,
    /// Events expected but not received (all emits × open streams − received).
    pub missing: u64,
}

impl PathRun {
    /// Burst events per second.
    pub fn per_sec(&self) -> f64 {
        self.burst_events as f64 / self.burst_time.as_secs_f64().max(1e-9)
    }
}

/// Shared counters of one path's streams.
#[derive(Debug, Default)]
struct Shared {
    opened: AtomicU64,
    failed: AtomicU64,
    received: AtomicU64,
    stop: AtomicBool,
}

/// Runs every stream count on the three paths.
pub async fn run(s: &Setup<'_>, counts: &[u32]) -> anyhow::Result<Vec<PathRun>> {
    let mut out = Vec::new();
    for &n in counts {
        for path in ["direct", "node, replay off", "node, replay on"] {
            eprintln!("running sse: {n} streams, {path}");
            out.push(one_path(s, n, path).await?);
        }
    }
    Ok(out)
}

async fn one_path(s: &Setup<'_>, n: u32, path: &'static str) -> anyhow::Result<PathRun> {
    let tag = match path {
        "direct" => "direct",
        "node, replay off" => "off",
        _ => "on",
    };
    let name = format!("{tag}{n}");
    let (url, auth, prefix) = match path {
        "direct" => (
            format!("{}/sse/manual/{name}", s.mock.base()),
            s.direct_token,
            "",
        ),
        "node, replay off" => (
            s.node.url(&format!("/a/sse/manual/{name}")),
            s.client_key,
            "/a",
        ),
        _ => (
            s.node.url(&format!("/e/sse/manual/{name}")),
            s.client_key,
            "/e",
        ),
    };
    let url: Uri = url.parse().context("stream URL")?;
    let pid = (path != "direct").then(|| s.node.proc.pid());
    tokio::time::sleep(SETTLE).await;
    let rss0 = pid.map(|p| status_kib(p, "VmRSS")).transpose()?;

    let shared = Arc::new(Shared::default());
    let gate = Arc::new(Semaphore::new(OPENING));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url, auth) = (s.client.clone(), url.clone(), auth.clone());
        let (shared, gate) = (Arc::clone(&shared), Arc::clone(&gate));
        tasks.spawn(async move { stream(client, url, auth, shared, gate).await });
    }
    let n64 = u64::from(n);
    wait_until(|| {
        shared.opened.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) >= n64
    })
    .await;
    let opened = shared.opened.load(Ordering::Relaxed);
    wait_registered(s, &name, opened).await?;
    tokio::time::sleep(SETTLE).await;
    let rss1 = pid.map(|p| status_kib(p, "VmRSS")).transpose()?;

    let ttfe = if path == "direct" {
        None
    } else {
        Some(probe(s, prefix).await?)
    };

    let emit: Uri = format!("{}/_mock/sse/{name}/emit", s.mock.base())
        .parse()
        .context("emit URL")?;
    let mut emitted_at = Vec::new();
    let mut expected = 0;
    for _ in 0..s.emits {
        emitted_at.push(Instant::now());
        post(s.client, &emit).await?;
        expected += opened;
        wait_until(|| shared.received.load(Ordering::Relaxed) >= expected).await;
    }
    let burst = (BURST_EVENTS / opened.max(1)).clamp(5, 200);
    let before = shared.received.load(Ordering::Relaxed);
    let began = Instant::now();
    for _ in 0..burst {
        post(s.client, &emit).await?;
    }
    expected += burst * opened;
    wait_until(|| shared.received.load(Ordering::Relaxed) >= expected).await;
    let burst_time = began.elapsed();
    let burst_events = shared.received.load(Ordering::Relaxed) - before;
    tokio::time::sleep(SETTLE).await;
    let rss2 = pid.map(|p| status_kib(p, "VmRSS")).transpose()?;

    post(
        s.client,
        &format!("{}/_mock/sse/{name}/close", s.mock.base())
            .parse()
            .context("close URL")?,
    )
    .await?;
    shared.stop.store(true, Ordering::Relaxed);
    let mut delays = Vec::new();
    let end = Instant::now() + WAIT;
    while let Ok(Some(joined)) = tokio::time::timeout_at(end, tasks.join_next()).await {
        let arrivals = joined.unwrap_or_default();
        for (at, sent) in arrivals.iter().zip(&emitted_at) {
            delays.push(at.saturating_duration_since(*sent));
        }
    }
    tasks.abort_all();
    delays.sort_unstable();
    let per = |after: Option<u64>| -> Option<f64> {
        let grown = i128::from(after?) - i128::from(rss0?);
        Some(grown as f64 / opened.max(1) as f64)
    };
    Ok(PathRun {
        path,
        streams: n,
        opened,
        rss_per_stream_kib: per(rss1),
        rss_after_events_kib: per(rss2),
        ttfe,
        delays,
        burst_events,
        burst_time,
        missing: expected.saturating_sub(shared.received.load(Ordering::Relaxed)),
    })
}

/// One stream: opens (under `gate`), then records each event's arrival
/// until the stream ends or the run stops it.
async fn stream(
    client: HttpClient,
    url: Uri,
    auth: HeaderValue,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
) -> Vec<Instant> {
    let opened = async {
        let _permit = gate.acquire().await.ok()?;
        let req = Request::get(url)
            .header(http::header::AUTHORIZATION, auth)
            .header(http::header::ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))
            .ok()?;
        let resp = tokio::time::timeout(WAIT, client.request(req))
            .await
            .ok()?
            .ok()?;
        resp.status().is_success().then(|| resp.into_body())
    }
    .await;
    let Some(body) = opened else {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return Vec::new();
    };
    shared.opened.fetch_add(1, Ordering::Relaxed);
    let mut reader = Reader::new(body);
    let mut arrivals = Vec::new();
    let tick = Duration::from_secs(1);
    loop {
        match tokio::time::timeout(tick, reader.next(tick * 30)).await {
            Ok(Some(ev)) => {
                arrivals.push(Instant::from_std(ev.at));
                shared.received.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => break,
            Err(_) if shared.stop.load(Ordering::Relaxed) => break,
            Err(_) => {}
        }
    }
    arrivals
}

/// Polls `done` every 10 ms for at most [`WAIT`].
async fn wait_until(done: impl Fn() -> bool) {
    let end = Instant::now() + WAIT;
    while !done() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the mock has `want` manual streams named `name` open.
async fn wait_registered(s: &Setup<'_>, name: &str, want: u64) -> anyhow::Result<()> {
    let end = Instant::now() + WAIT;
    loop {
        let open = s.mock.stats().await["sse_manual_open"][name]
            .as_u64()
            .unwrap_or(0);
        if open >= want {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!("{name}: {open} of {want} streams reached the mock");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// First-event probes, direct versus the node route `prefix`.
async fn probe(s: &Setup<'_>, prefix: &str) -> anyhow::Result<SseOutcome> {
    let q = "/sse?count=1&interval_ms=0";
    let direct = Target::get(
        "sse-direct",
        format!("{}{q}", s.mock.base()).parse()?,
        Some(s.direct_token.clone()),
    );
    let node = Target::get(
        "sse-node",
        s.node.url(&format!("{prefix}{q}")).parse()?,
        Some(s.client_key.clone()),
    );
    Ok(sse::run(s.client, &direct, &node, s.probes, s.max_time).await)
}

/// `POST url` with an empty body; fails unless 2xx within [`WAIT`].
async fn post(client: &HttpClient, url: &Uri) -> anyhow::Result<()> {
    let req = Request::post(url.clone()).body(Full::new(Bytes::new()))?;
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .context("mock control: no answer")??;
    let status = resp.status();
    let _ = tokio::time::timeout(WAIT, resp.into_body().collect()).await;
    if !status.is_success() {
        bail!("mock control answered {status}");
    }
    Ok(())
}

fn kib(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// The Markdown section of the scenario.
pub fn render(runs: &[PathRun], emits: u32) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Scenario `sse`: concurrent streams\n");
    if let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        let _ = writeln!(
            s,
            "Open-file limit of this process and its children: {soft} (hard {hard}). The \
             node holds two descriptors per relayed stream (client and upstream), so N \
             streams need a limit above 2N.\n"
        );
    }
    let _ = writeln!(
        s,
        "| streams | path | open | KiB/stream idle | KiB/stream after events | \
         delay p50 ms | delay p99 ms | delay max ms | events/s | missing |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
            r.streams,
            r.path,
            r.opened,
            kib(r.rss_per_stream_kib),
            kib(r.rss_after_events_kib),
            ms(quantile(&r.delays, 0.5)),
            ms(quantile(&r.delays, 0.99)),
            ms(r.delays.last().copied()),
            r.per_sec(),
            r.missing,
        );
    }
    let _ = writeln!(
        s,
        "\nEach row opens that many manual mock streams (`/sse/manual/NAME`: direct, \
         `/a/` replay off, `/e/` replay on with the memory backend) and holds them. \
         KiB/stream is the node's RSS growth over the streams, idle and after the events, \
         against a reading just before the row (a row can reuse memory an earlier row \
         freed: replay on runs after replay off). \
         Delay: {emits} spaced emits, each timed from the emit request to the event's \
         arrival on every stream (the mock writes to the streams one after another, so \
         the tail grows with the count on every path). events/s: a burst of back-to-back \
         emits, every stream's events over the burst's wall time. missing: events \
         emitted to open streams but not received.\n"
    );
    let _ = writeln!(s, "### Time to first event while the streams are open\n");
    let _ = writeln!(
        s,
        "| streams | route | direct p50 ms | node p50 ms | added p50 ms | added p99 ms | errors |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|");
    for r in runs {
        let Some(t) = &r.ttfe else { continue };
        let added = |q: f64| match (t.node.quantile(q), t.direct.quantile(q)) {
            (Some(n), Some(d)) => format!("{:+.3}", (n.as_secs_f64() - d.as_secs_f64()) * 1e3),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.streams,
            r.path,
            ms(t.direct.quantile(0.5)),
            ms(t.node.quantile(0.5)),
            added(0.5),
            added(0.99),
            t.direct.errors + t.node.errors,
        );
    }
    let _ = writeln!(
        s,
        "\nFresh `GET …/sse?count=1&interval_ms=0` requests, direct and through the \
         node alternating, timed from sending to the end of the first event.\n"
    );
    s
}
