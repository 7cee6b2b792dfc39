//! The `chaos` scenario: three coordinators, three nodes in cluster mode and
//! Redis on loopback (the ownership tests' world), under steady plain load
//! and resumable SSE streams, while a node is SIGKILLed every 10 s (and
//! restarted) and the raft leader every 30 s (offset by 15 s; restarted
//! too). Measured: failed plain requests against those in flight on a
//! killed node, lost and duplicated SSE events (the mock's upstream resumes
//! from `Last-Event-ID`, events carry their number), token calls per
//! credential per cycle, double owners sampled every 100 ms, and failover
//! times. Every loop is bounded by the scenario's wall time plus deadlines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use rhizome_tests::harness::coordinator::Coordinators;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::ownership::{self, raft_world, Sampler, POOL};
use rhizome_tests::harness::sse::Reader;
use rhizome_tests::harness::Env;
use tokio::time::Instant;

use crate::load::HttpClient;

/// Token lifetime the mock gives; the credentials refresh 10 s before
/// expiry, so one cycle is 10 s.
const EXPIRES_IN: &str = "20";
/// `refresh_margin` of the credentials.
const MARGIN: &str = "10s";
/// One refresh cycle.
const CYCLE: Duration = Duration::from_secs(10);
/// A node is killed this often.
const NODE_EVERY: Duration = Duration::from_secs(10);
/// The raft leader is killed this often, first after [`LEADER_FIRST`].
const LEADER_EVERY: Duration = Duration::from_secs(30);
const LEADER_FIRST: Duration = Duration::from_secs(15);
/// Plain-load workers and the pause each takes between requests.
const WORKERS: usize = 8;
const PACE: Duration = Duration::from_millis(5);
/// Resumable SSE streams and their event interval.
const STREAMS: usize = 6;
const SSE_INTERVAL_MS: u64 = 50;
/// Longest wait for one request or one failover.
const DEADLINE: Duration = Duration::from_secs(30);

/// Node slots: current proxy base (None while killed) and a kill generation.
#[derive(Debug, Default)]
struct Slots {
    base: Mutex<Vec<Option<String>>>,
    generation: Vec<AtomicU64>,
    in_flight: Vec<AtomicU64>,
}

impl Slots {
    /// Picks a live slot after `from`, round robin: (index, base, generation).
    fn pick(&self, from: usize) -> Option<(usize, String, u64)> {
        let bases = self.base.lock();
        let n = bases.len();
        (0..n).find_map(|k| {
            let i = (from + k) % n;
            let b = bases[i].clone()?;
            Some((i, b, self.generation[i].load(Ordering::SeqCst)))
        })
    }
}

/// Counters of the plain load.
#[derive(Debug, Default)]
struct Plain {
    ok: AtomicU64,
    /// Failed while the node they went to was killed.
    failed_killed: AtomicU64,
    /// Failed on a node that was not killed meanwhile.
    failed_other: AtomicU64,
}

/// One SSE stream's view.
#[derive(Debug, Default, Clone)]
pub struct StreamLog {
    /// Event numbers received, in order.
    pub numbers: Vec<u64>,
    /// `rhizome-gap` events received.
    pub gaps: u64,
    /// Reconnects after the stream broke.
    pub reconnects: u64,
    /// Reconnects answered with an error status or not at all.
    pub refused: u64,
}

/// What the scenario measured.
#[derive(Debug)]
pub struct ChaosRun {
    /// Wall time of the load.
    pub elapsed: Duration,
    /// Plain requests answered 2xx.
    pub plain_ok: u64,
    /// Failed plain requests in flight on a node when it was killed.
    pub failed_killed: u64,
    /// Failed plain requests elsewhere.
    pub failed_other: u64,
    /// Requests in flight on the killed nodes at their kills.
    pub in_flight_at_kills: u64,
    /// The SSE streams.
    pub streams: Vec<StreamLog>,
    /// Token calls per pool credential over the run.
    pub token_calls: Vec<u64>,
    /// Ownership samples and the double owners seen.
    pub samples: u64,
    /// Every double ownership seen.
    pub doubles: Vec<String>,
    /// Node kills: time until its credentials had live owners (None: not within the deadline).
    pub node_failovers: Vec<Option<Duration>>,
    /// Leader kills: time until the others agreed on a new leader.
    pub leader_failovers: Vec<Option<Duration>>,
    /// Log directory.
    pub env: Env,
}

/// Runs the scenario for `seconds` of chaos.
pub async fn run(client: &HttpClient, seconds: Duration) -> anyhow::Result<ChaosRun> {
    let tuning = Tuning {
        refresh_margin: MARGIN,
        sse: crate::replay::REPLAY,
        ..Tuning::default()
    };
    eprintln!("starting redis-server, 3 coordinators and 3 nodes");
    let mut world = raft_world("loadtest-chaos", &["--expires-in", EXPIRES_IN], 3, tuning).await;
    let n = world.nodes.len();
    let slots = Arc::new(Slots {
        base: Mutex::new(world.nodes.iter().map(|x| Some(x.url(""))).collect()),
        generation: (0..n).map(|_| AtomicU64::new(0)).collect(),
        in_flight: (0..n).map(|_| AtomicU64::new(0)).collect(),
    });
    let calls0 = pool_calls(&world.mock).await;
    let stop = Arc::new(AtomicBool::new(false));
    let plain = Arc::new(Plain::default());
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (c, s, p, st) = (client.clone(), slots.clone(), plain.clone(), stop.clone());
        workers.spawn(plain_worker(c, s, p, st, w));
    }
    let mut sse = tokio::task::JoinSet::new();
    let to = seconds.as_millis() as u64 / SSE_INTERVAL_MS + 10_000;
    for k in 0..STREAMS {
        let (c, s, st) = (client.clone(), slots.clone(), stop.clone());
        sse.spawn(sse_stream(c, s, st, k, to));
    }
    let sampler = Sampler::start(world.admin_bases(&(0..n).collect::<Vec<_>>()));

    let began = Instant::now();
    let end = began + seconds;
    let (mut next_node, mut next_leader) = (began + NODE_EVERY, began + LEADER_FIRST);
    let (mut node_failovers, mut leader_failovers) = (Vec::new(), Vec::new());
    let mut in_flight_at_kills = 0;
    let mut victim = 0;
    loop {
        let at = next_node.min(next_leader);
        if at >= end {
            tokio::time::sleep_until(end).await;
            break;
        }
        tokio::time::sleep_until(at).await;
        if next_node <= next_leader {
            eprintln!("chaos: SIGKILL node n{}", victim + 1);
            let (failover, in_flight) = kill_node(&mut world, &slots, &sampler, victim).await;
            node_failovers.push(failover);
            in_flight_at_kills += in_flight;
            victim = (victim + 1) % n;
            next_node = (next_node + NODE_EVERY).max(Instant::now());
        } else {
            eprintln!("chaos: SIGKILL the raft leader");
            leader_failovers.push(kill_leader(&mut world.coords).await);
            next_leader = (next_leader + LEADER_EVERY).max(Instant::now());
        }
    }
    let elapsed = began.elapsed();
    stop.store(true, Ordering::SeqCst);
    // Token calls over exactly the measured window.
    let calls1 = pool_calls(&world.mock).await;
    while workers.join_next().await.is_some() {}
    let mut streams = Vec::new();
    while let Some(s) = sse.join_next().await {
        streams.push(s.unwrap_or_default());
    }
    let (samples, doubles) = sampler.finish().await;
    Ok(ChaosRun {
        elapsed,
        plain_ok: plain.ok.load(Ordering::SeqCst),
        failed_killed: plain.failed_killed.load(Ordering::SeqCst),
        failed_other: plain.failed_other.load(Ordering::SeqCst),
        in_flight_at_kills,
        streams,
        token_calls: calls1
            .iter()
            .zip(&calls0)
            .map(|(a, b)| a - b.min(a))
            .collect(),
        samples,
        doubles,
        node_failovers,
        leader_failovers,
        env: world.env,
    })
}

/// Token calls of the pool clients `svc-p1` … so far.
async fn pool_calls(mock: &rhizome_tests::harness::Mock) -> Vec<u64> {
    let stats = mock.stats().await;
    (1..=POOL)
        .map(|i| {
            stats["token_calls"][format!("svc-p{i}")]
                .as_u64()
                .unwrap_or(0)
        })
        .collect()
}

/// Kills node `i`: takes it out of the load first, SIGKILLs it, times until
/// its credentials are owned by live nodes, restarts it. Returns the failover
/// time and the requests that were in flight on it.
async fn kill_node(
    world: &mut ownership::RaftWorld,
    slots: &Slots,
    sampler: &Sampler,
    i: usize,
) -> (Option<Duration>, u64) {
    let others: Vec<usize> = world.live().into_iter().filter(|x| *x != i).collect();
    let me = world.admin_bases(&[i]);
    let owned: Vec<String> = ownership::self_owners(&me)
        .await
        .map(|m| m.into_keys().collect())
        .unwrap_or_default();
    slots.base.lock()[i] = None;
    slots.generation[i].fetch_add(1, Ordering::SeqCst);
    let in_flight = slots.in_flight[i].load(Ordering::SeqCst);
    world.nodes[i].proc.signal("KILL");
    let killed = Instant::now();
    let admin = world.admin_bases(&others);
    let mut failover = None;
    while killed.elapsed() < DEADLINE {
        if let Some(owners) = ownership::self_owners(&admin).await {
            if owned
                .iter()
                .all(|c| owners.get(c).is_some_and(|o| o.len() == 1))
            {
                failover = Some(killed.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        world.nodes[i].proc.wait_exit(DEADLINE),
    )
    .await;
    let name = world.name(i);
    let node = fixture::node(&world.env, &name, &world.mock, &world.tuning).await;
    sampler.add(name, node.admin_url(""));
    slots.base.lock()[i] = Some(node.url(""));
    world.nodes[i] = node;
    (failover, in_flight)
}

/// The leader every running replica names, if they agree.
async fn agreed_leader(coords: &Coordinators) -> Option<u64> {
    let views = coords.views().await;
    let leaders: std::collections::BTreeSet<Option<u64>> =
        views.values().map(|v| v["leader"].as_u64()).collect();
    match leaders.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(l)] if views.len() == coords.running().len() => Some(*l),
        _ => None,
    }
}

/// Kills the raft leader, times until the others agree on a new one,
/// restarts it.
async fn kill_leader(coords: &mut Coordinators) -> Option<Duration> {
    let deadline = Instant::now() + DEADLINE;
    let leader = loop {
        if let Some(l) = agreed_leader(coords).await {
            break l;
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    coords.kill(leader);
    let killed = Instant::now();
    let mut took = None;
    while killed.elapsed() < DEADLINE {
        if agreed_leader(coords).await.is_some_and(|l| l != leader) {
            took = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    coords.restart(leader).await;
    took
}

/// Steady plain load: `GET /p<k>/x` (and `/a/x`) round robin over live nodes.
async fn plain_worker(
    client: HttpClient,
    slots: Arc<Slots>,
    plain: Arc<Plain>,
    stop: Arc<AtomicBool>,
    w: usize,
) {
    let key = HeaderValue::from_str(&fixture::bearer()).ok();
    let mut k = w;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let Some((i, base, gen)) = slots.pick(k) else {
            tokio::time::sleep(PACE).await;
            continue;
        };
        let route = match k % (POOL + 1) {
            0 => "/a/x".to_owned(),
            p => format!("/p{p}/x"),
        };
        slots.in_flight[i].fetch_add(1, Ordering::SeqCst);
        let ok = send(&client, &format!("{base}{route}"), key.as_ref()).await;
        slots.in_flight[i].fetch_sub(1, Ordering::SeqCst);
        if ok {
            plain.ok.fetch_add(1, Ordering::Relaxed);
        } else if slots.generation[i].load(Ordering::SeqCst) != gen {
            plain.failed_killed.fetch_add(1, Ordering::Relaxed);
        } else {
            plain.failed_other.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(PACE).await;
    }
}

/// One `GET`; true on 2xx with the whole body within [`DEADLINE`].
async fn send(client: &HttpClient, url: &str, key: Option<&HeaderValue>) -> bool {
    let Ok(uri) = url.parse::<Uri>() else {
        return false;
    };
    let mut req = Request::get(uri);
    if let Some(k) = key {
        req = req.header(http::header::AUTHORIZATION, k.clone());
    }
    let Ok(req) = req.body(Full::new(Bytes::new())) else {
        return false;
    };
    tokio::time::timeout(DEADLINE, async {
        let resp = client.request(req).await.ok()?;
        let ok = resp.status().is_success();
        resp.into_body().collect().await.ok()?;
        Some(ok)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// One resumable stream, reconnecting to the next live node with its last
/// id whenever it breaks, until stopped.
async fn sse_stream(
    client: HttpClient,
    slots: Arc<Slots>,
    stop: Arc<AtomicBool>,
    k: usize,
    to: u64,
) -> StreamLog {
    let mut log = StreamLog::default();
    let mut last_id: Option<String> = None;
    let mut at = k;
    let path = format!("/e/sse?to={to}&interval_ms={SSE_INTERVAL_MS}&honour_last_event_id=1");
    while !stop.load(Ordering::SeqCst) {
        let Some((i, base, _)) = slots.pick(at) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(mut reader) = open(&client, &format!("{base}{path}"), last_id.as_deref()).await
        else {
            log.refused += 1;
            at = i + 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        read(&mut reader, &mut log, &mut last_id, &stop).await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        log.reconnects += 1;
        at = i + 1;
    }
    log
}

/// Opens the stream at `url`, resuming after `last_id` when given.
async fn open(client: &HttpClient, url: &str, last_id: Option<&str>) -> Option<Reader> {
    let mut req = Request::get(url.parse::<Uri>().ok()?)
        .header(http::header::AUTHORIZATION, fixture::bearer())
        .header(http::header::ACCEPT, "text/event-stream");
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let req = req.body(Full::new(Bytes::new())).ok()?;
    let resp = tokio::time::timeout(DEADLINE, client.request(req))
        .await
        .ok()?
        .ok()?;
    resp.status()
        .is_success()
        .then(|| Reader::new(resp.into_body()))
}

/// Reads events until the stream breaks or the run stops.
async fn read(
    r: &mut Reader,
    log: &mut StreamLog,
    last_id: &mut Option<String>,
    stop: &AtomicBool,
) {
    let tick = Duration::from_secs(1);
    let mut quiet = Duration::ZERO;
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match tokio::time::timeout(tick, r.next(tick * 60)).await {
            Ok(Some(ev)) => {
                quiet = Duration::ZERO;
                if ev.event.as_deref() == Some("rhizome-gap") {
                    log.gaps += 1;
                } else if let Some(n) = number(&ev.data) {
                    log.numbers.push(n);
                }
                if ev.id.is_some() {
                    last_id.clone_from(&ev.id);
                }
            }
            Ok(None) => return,
            Err(_) => {
                quiet += tick;
                // A stream silent for 10 s is treated as broken.
                if quiet >= Duration::from_secs(10) {
                    return;
                }
            }
        }
    }
}

/// The `n` of a mock event's `{"n":…}` data.
fn number(data: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    v["n"].as_u64()
}

/// Lost and duplicated numbers of one stream: (lost, duplicated).
pub fn lost_and_duplicated(numbers: &[u64]) -> (u64, u64) {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for n in numbers {
        *seen.entry(*n).or_default() += 1;
    }
    let first = seen.keys().next().copied().unwrap_or(1).min(1);
    let last = seen.keys().next_back().copied().unwrap_or(0);
    let lost = (first..=last).filter(|n| !seen.contains_key(n)).count() as u64;
    let dup = seen.values().map(|c| c - 1).sum();
    (lost, dup)
}

fn secs(d: &[Option<Duration>]) -> String {
    if d.is_empty() {
        return "-".to_owned();
    }
    d.iter()
        .map(|x| x.map_or_else(|| "none".to_owned(), |d| format!("{:.2}", d.as_secs_f64())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Markdown section.
pub fn render(c: &ChaosRun) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Scenario `chaos`: kills under load\n");
    let _ = writeln!(
        s,
        "Redis, 3 coordinators and 3 nodes (cluster mode) on loopback for {:.0} s: a node \
         SIGKILLed every {} s and restarted, the raft leader SIGKILLed every {} s (first \
         after {} s) and restarted. Load: {WORKERS} workers sending `GET /p1/x` … `/p5/x`, \
         `/a/x` round robin over the live nodes, {} ms apart; {STREAMS} resumable streams \
         `/e/sse` (replay on, Redis) at one event per {SSE_INTERVAL_MS} ms, reconnecting to \
         the next live node with their last id. Tokens live {EXPIRES_IN} s, refreshed \
         {MARGIN} before expiry (a {} s cycle).\n",
        c.elapsed.as_secs_f64(),
        NODE_EVERY.as_secs(),
        LEADER_EVERY.as_secs(),
        LEADER_FIRST.as_secs(),
        PACE.as_millis(),
        CYCLE.as_secs(),
    );
    let (mut events, mut lost, mut dup, mut gaps, mut rec, mut refused) = (0, 0, 0, 0, 0, 0);
    for st in &c.streams {
        let (l, d) = lost_and_duplicated(&st.numbers);
        events += st.numbers.len();
        lost += l;
        dup += d;
        gaps += st.gaps;
        rec += st.reconnects;
        refused += st.refused;
    }
    let cycles = c.elapsed.as_secs_f64() / CYCLE.as_secs_f64();
    let calls: u64 = c.token_calls.iter().sum();
    let per = calls as f64 / (c.token_calls.len().max(1) as f64 * cycles.max(1e-9));
    let _ = writeln!(s, "| measure | value |");
    let _ = writeln!(s, "|---|---:|");
    let _ = writeln!(
        s,
        "| node kills / leader kills | {} / {} |",
        c.node_failovers.len(),
        c.leader_failovers.len()
    );
    let _ = writeln!(s, "| plain requests answered 2xx | {} |", c.plain_ok);
    let _ = writeln!(
        s,
        "| failed, in flight on a node when it was killed | {} |",
        c.failed_killed
    );
    let _ = writeln!(
        s,
        "| in flight on the killed nodes at their kills | {} |",
        c.in_flight_at_kills
    );
    let _ = writeln!(s, "| failed otherwise | {} |", c.failed_other);
    let _ = writeln!(s, "| SSE events received | {events} |");
    let _ = writeln!(s, "| SSE events lost | {lost} |");
    let _ = writeln!(s, "| SSE events duplicated | {dup} |");
    let _ = writeln!(s, "| `rhizome-gap` events | {gaps} |");
    let _ = writeln!(s, "| SSE reconnects (refused) | {rec} ({refused}) |");
    let _ = writeln!(s, "| token calls per pool credential per cycle | {per:.2} ({calls} calls, {} credentials, {cycles:.1} cycles) |", c.token_calls.len());
    let _ = writeln!(
        s,
        "| ownership samples / with two owners | {} / {} |",
        c.samples,
        c.doubles.len()
    );
    let _ = writeln!(
        s,
        "| node failover s (credentials owned again) | {} |",
        secs(&c.node_failovers)
    );
    let _ = writeln!(
        s,
        "| leader failover s (new leader agreed) | {} |",
        secs(&c.leader_failovers)
    );
    for d in c.doubles.iter().take(5) {
        let _ = writeln!(s, "\n- double owner: {d}");
    }
    let _ = writeln!(
        s,
        "\nA plain request counts as in flight on a killed node when its node was killed \
         between sending and the answer; the load stops picking a node just before its \
         kill. Lost: event numbers missing between the first and last received on a \
         stream; duplicated: numbers received more than once. Ownership is asked of every \
         node's admin API every 100 ms. Node failover: from the kill until every \
         credential the node owned has exactly one live owner; leader failover: until the \
         running replicas agree on a new leader.\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lost_and_duplicated_numbers() {
        assert_eq!(lost_and_duplicated(&[1, 2, 3]), (0, 0));
        assert_eq!(lost_and_duplicated(&[1, 2, 2, 4]), (1, 1));
        assert_eq!(lost_and_duplicated(&[]), (0, 0));
        assert_eq!(number("{\"n\":7}"), Some(7));
    }
}
