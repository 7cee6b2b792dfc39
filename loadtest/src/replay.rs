//! Resumable-SSE scenarios (`--replay`): the events/s one node relays over
//! concurrent fast streams with replay off, on (memory backend) and on (Redis
//! backend);
//! the Redis memory one stream of 1,000 buffered ~200-byte events takes; and
//! the time from a client's reconnect to its first replayed event after the
//! producing node was SIGKILLed (which includes the producer-lease lapse).
//! Time to first event with replay on and off is the `sse` module's, run on
//! both routes. Every scenario is bounded in count and wall time.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::Client as SetupClient;
use rhizome_tests::harness::redis::RedisServer;
use rhizome_tests::harness::sse::Reader;
use rhizome_tests::harness::{Env, Mock, Node};
use tokio::time::Instant;

use crate::load::{quantile, HttpClient, Target};

/// `[routes.sse]` of the `/e/` route: replay on, the default lease (2 s).
pub const REPLAY: &str = "replay = true\nbuffer_events = 1000";
/// The same with `producer_lease = "1s"`.
const REPLAY_LEASE_1S: &str = "replay = true\nbuffer_events = 1000\nproducer_lease = \"1s\"";
/// Events buffered in the Redis memory scenario.
const MEMORY_EVENTS: usize = 1000;
/// Bytes of `data` per event in the memory scenario (the stored event,
/// `event: tick\ndata: …\n`, is then 200 bytes).
const MEMORY_DATA: usize = 200 - "event: tick\ndata: \n".len();
/// Events read from the stream before its producer is killed.
const BEFORE_KILL: usize = 5;
/// Longest wait for one event in the takeover scenario.
const EVENT_WAIT: Duration = Duration::from_secs(15);

/// One throughput run: events of one stream over its wall time.
#[derive(Debug, Clone)]
pub struct Rate {
    /// Row label.
    pub name: String,
    /// Events received.
    pub events: u64,
    /// From the first byte of the body to its end (or the time limit).
    pub elapsed: Duration,
    /// True when the time limit ended the stream.
    pub time_limited: bool,
    /// Redis's own CPU time over the row, when the row's node uses Redis.
    pub redis_cpu: Option<Duration>,
}

impl Rate {
    /// Events per second.
    pub fn per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Events per second of Redis CPU: the appends one Redis core takes.
    pub fn per_redis_cpu_sec(&self) -> Option<f64> {
        self.redis_cpu
            .map(|cpu| self.events as f64 / cpu.as_secs_f64().max(1e-9))
    }
}

/// Redis's own CPU time so far (`INFO cpu`: user plus system, main process).
pub fn redis_cpu(redis: &RedisServer) -> Duration {
    let info = redis.cli(&["INFO", "cpu"]);
    let secs: f64 = info
        .lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_sys:")
                .or_else(|| l.strip_prefix("used_cpu_user:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum();
    Duration::from_secs_f64(secs.max(0.0))
}

/// Relays `streams` concurrent copies of the `GET` stream `t` to their end
/// (or `max_time`): their events summed over the wall time of the slowest.
/// Concurrent streams because one mock stream is paced by its timer (about
/// 900 events/s even at `interval_ms=0`), far below what a node relays.
pub async fn rate(
    client: &HttpClient,
    t: &Target,
    streams: u16,
    max_time: Duration,
) -> anyhow::Result<Rate> {
    let began = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let (client, t) = (client.clone(), t.clone());
        set.spawn(async move { one_stream(&client, &t, max_time).await });
    }
    let mut total = Rate {
        name: t.name.to_owned(),
        events: 0,
        elapsed: Duration::ZERO,
        time_limited: false,
        redis_cpu: None,
    };
    while let Some(r) = set.join_next().await {
        let r = r.context("stream task")??;
        total.events += r.events;
        total.time_limited |= r.time_limited;
    }
    total.elapsed = began.elapsed();
    Ok(total)
}

/// Relays one `GET` stream to its end (or `max_time`), counting events.
async fn one_stream(client: &HttpClient, t: &Target, max_time: Duration) -> anyhow::Result<Rate> {
    let mut req = Request::get(t.url.clone()).header(http::header::ACCEPT, "text/event-stream");
    if let Some(v) = &t.authorization {
        req = req.header(http::header::AUTHORIZATION, v.clone());
    }
    let resp = client.request(req.body(Full::new(Bytes::new()))?).await?;
    if !resp.status().is_success() {
        bail!("{} answered {}", t.name, resp.status());
    }
    let mut body = resp.into_body();
    let mut events = 0u64;
    let mut prev = 0u8;
    let mut began = None;
    let end = Instant::now() + max_time;
    let mut time_limited = false;
    loop {
        let frame = match tokio::time::timeout_at(end, body.frame()).await {
            Err(_) => {
                time_limited = true;
                break;
            }
            Ok(None) => break,
            Ok(Some(f)) => f.with_context(|| format!("{} body", t.name))?,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        began.get_or_insert_with(Instant::now);
        for &b in data.iter() {
            if b == b'\n' && prev == b'\n' {
                events += 1;
            }
            prev = b;
        }
    }
    Ok(Rate {
        name: t.name.to_owned(),
        events,
        elapsed: began.map_or(Duration::ZERO, |b| b.elapsed()),
        time_limited,
        redis_cpu: None,
    })
}

/// Redis memory of one stream of [`MEMORY_EVENTS`] stored events.
#[derive(Debug, Clone)]
pub struct RedisMemory {
    /// `(key, MEMORY USAGE … SAMPLES 0)` of the stream's keys.
    pub keys: Vec<(String, u64)>,
    /// `used_memory` after minus before.
    pub used_memory_delta: i64,
    /// Bytes of one stored event (fields without the id line).
    pub event_bytes: usize,
    /// Events the client received.
    pub received: usize,
}

/// Opens a manual stream on `node` (Redis backend), emits [`MEMORY_EVENTS`]
/// events of [`MEMORY_DATA`] bytes, reads them all, then sizes its keys.
pub async fn redis_memory(
    node: &Node,
    mock: &Mock,
    redis: &RedisServer,
) -> anyhow::Result<RedisMemory> {
    let used = |r: &RedisServer| -> i64 {
        r.cli(&["INFO", "memory"])
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = used(redis);
    let mut reader = open(node, "/e/sse/manual/mem", None).await?;
    let data = "x".repeat(MEMORY_DATA);
    let emit = format!("{}/_mock/sse/mem/emit?wait_ms=5000", mock.base());
    let setup = SetupClient::new();
    let mut first_id = None;
    for _ in 0..MEMORY_EVENTS {
        let resp = setup.post(&emit, &[], data.clone()).await;
        if resp.status != 200 {
            bail!("emit answered {}", resp.status);
        }
        let ev = next(&mut reader).await.context("memory stream event")?;
        first_id.get_or_insert(ev.id);
    }
    // Let the appender store the last batch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = used(redis);
    let id = first_id.flatten().context("event without id")?;
    let stream = id.split('.').nth(1).context("id without stream part")?;
    let pattern = format!("rz:sse:{{{stream}}}:*");
    let mut keys = Vec::new();
    for key in redis.cli(&["--scan", "--pattern", &pattern]).lines() {
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        let bytes = redis
            .cli(&["MEMORY", "USAGE", key, "SAMPLES", "0"])
            .trim()
            .parse()
            .unwrap_or(0);
        keys.push((key.to_owned(), bytes));
    }
    drop(reader);
    let _ = setup
        .post(&format!("{}/_mock/sse/mem/close", mock.base()), &[], "")
        .await;
    Ok(RedisMemory {
        keys,
        used_memory_delta: after - before,
        event_bytes: "event: tick\ndata: \n".len() + MEMORY_DATA,
        received: MEMORY_EVENTS,
    })
}

/// Reconnect-to-first-replayed-event times of one lease setting.
#[derive(Debug, Clone)]
pub struct Takeover {
    /// `producer_lease` used.
    pub lease: &'static str,
    /// Runs attempted.
    pub runs: u32,
    /// Runs that failed (with the first reason).
    pub errors: u32,
    /// First failure, if any.
    pub first_error: Option<String>,
    /// Successful times, sorted.
    pub times: Vec<Duration>,
}

impl Takeover {
    /// Time at quantile `q`.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.times, q)
    }
}

/// `runs` takeovers on two nodes sharing `redis`: a stream on a fresh node A,
/// [`BEFORE_KILL`] events read, A SIGKILLed, the stream resumed on B with
/// the last id; timed from sending the reconnect to the first event.
pub async fn takeovers(
    env: &Env,
    mock: &Mock,
    redis: &RedisServer,
    lease_1s: bool,
    runs: u32,
    max_time: Duration,
) -> Takeover {
    let (sse, lease) = if lease_1s {
        (REPLAY_LEASE_1S, "1s")
    } else {
        (REPLAY, "2s (default)")
    };
    let tuning = Tuning {
        sse,
        extra: fixture::redis_lock(&redis.url(), "250ms"),
        ..Tuning::default()
    };
    let tag = if lease_1s { "l1" } else { "l2" };
    let b = fixture::node(env, &format!("{tag}-b"), mock, &tuning).await;
    let mut out = Takeover {
        lease,
        runs: 0,
        errors: 0,
        first_error: None,
        times: Vec::new(),
    };
    let end = Instant::now() + max_time;
    for i in 0..runs {
        if Instant::now() >= end {
            break;
        }
        out.runs += 1;
        let a = fixture::node(env, &format!("{tag}-a{i}"), mock, &tuning).await;
        match one_takeover(&a, &b).await {
            Ok(t) => out.times.push(t),
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    out.times.sort_unstable();
    out
}

async fn one_takeover(a: &Node, b: &Node) -> anyhow::Result<Duration> {
    // Bounded: 300 events at 20 ms end the stream after 6 s.
    let path = "/e/sse?to=300&interval_ms=20&honour_last_event_id=1";
    let mut first = open(a, path, None).await?;
    let mut last = None;
    for _ in 0..BEFORE_KILL {
        last = next(&mut first).await.context("event before the kill")?.id;
    }
    let last = last.context("event without id")?;
    a.proc.signal("KILL");
    drop(first);
    let began = Instant::now();
    let mut again = open(b, path, Some(&last)).await?;
    let ev = next(&mut again).await.context("first replayed event")?;
    let took = began.elapsed();
    if ev.event.as_deref() == Some("rhizome-gap") {
        bail!("a gap instead of the next event: {}", ev.data);
    }
    Ok(took)
}

/// Opens `path` on `node` as the test client, optionally resuming.
async fn open(node: &Node, path: &str, last_id: Option<&str>) -> anyhow::Result<Reader> {
    let auth = fixture::bearer();
    let mut h = vec![
        ("authorization", auth.as_str()),
        ("accept", "text/event-stream"),
    ];
    if let Some(id) = last_id {
        h.push(("last-event-id", id));
    }
    let resp = SetupClient::new()
        .open(Method::GET, &node.url(path), &h, "")
        .await;
    if !resp.status().is_success() {
        bail!("{path} answered {}", resp.status());
    }
    Ok(Reader::new(resp.into_body()))
}

/// The next event within [`EVENT_WAIT`] (the reader's own deadline is longer,
/// so this one ends the wait without a panic).
async fn next(r: &mut Reader) -> anyhow::Result<rhizome_tests::harness::sse::Event> {
    tokio::time::timeout(EVENT_WAIT, r.next(EVENT_WAIT * 2))
        .await
        .context("no event in time")?
        .context("stream ended")
}

/// A throughput target: `url` (a node's or the mock's `/sse`) for `count` events.
pub fn stream_target(
    name: &'static str,
    url: String,
    count: u64,
    authorization: Option<HeaderValue>,
) -> anyhow::Result<Target> {
    let url = format!("{url}?count={count}&interval_ms=0")
        .parse()
        .context("stream URL")?;
    Ok(Target::get(name, url, authorization))
}
