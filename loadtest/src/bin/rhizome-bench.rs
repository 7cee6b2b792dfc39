//! `rhizome-bench`: a lean HTTP/1.1 load generator for comparing one proxy
//! against another (or against the upstream itself) on one machine. It speaks
//! raw HTTP/1.1 over keep-alive TCP from one thread, so it costs little of the
//! core it shares with the upstream, and it reads the proxy's CPU time
//! (`/proc/<pid>/task/*/schedstat`) and RSS around each run. Modes:
//!
//! - `max`: closed loop, `--connections` each with one request in flight, for
//!   `--seconds`: requests/s and CPU-µs per request of `--pid`.
//! - `rate`: open loop at `--rate` requests/s for `--seconds`: each request has
//!   its scheduled start and its latency counts from there (no coordinated
//!   omission); p50/p90/p99/p99.9/max, plus CPU-µs per request.
//! - `idle`: opens `--connections` keep-alive connections, sends one request on
//!   each, holds them, and reports `--pid`'s RSS growth per connection.
//!
//! Every mode is bounded in time (and `idle` in connections); output is one
//! line of `key=value` pairs for scripts (`loadtest/bench.sh`).
//!
//! Each measured window also says whether it can be trusted: `proxy_cpu_pct`
//! (the proxy's CPU time over the window's wall time), `gen_cpu_pct` (this
//! generator's), and with `--proxy-core N` `others_pct`, the share of core
//! N that went to anything but the proxy. `client_bound=1` marks a `max` run
//! whose proxy was below 90 % of its core (the generator or upstream was the
//! limit, not the proxy); `disturbed=1` marks a run where other work took
//! more than 10 % of the proxy's core (a noisy machine).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Max,
    Rate,
    Idle,
}

/// Lean keep-alive HTTP/1.1 load generator (see the module docs).
#[derive(Debug, Parser)]
#[command(name = "rhizome-bench")]
struct Args {
    /// What to measure.
    #[arg(value_enum)]
    mode: Mode,
    /// Address of the server under test.
    #[arg(long)]
    addr: std::net::SocketAddr,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    connections: u32,
    /// Measured seconds (`max`, `rate`).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Unmeasured seconds first (`max`, `rate`).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// `max`: stop after this many requests in all (no warmup, no time
    /// limit but the request timeout), for instruction counts per request
    /// under a profiler.
    #[arg(long)]
    requests: Option<u64>,
    /// Requests per second (`rate`).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Process whose CPU time and RSS are read.
    #[arg(long)]
    pid: Option<u32>,
    /// `rate`: also print every 100 ms window whose slowest request took
    /// longer than this many milliseconds (finds periodic stalls).
    #[arg(long)]
    timeline_ms: Option<f64>,
    /// Label printed first on the result line.
    #[arg(long, default_value = "-")]
    label: String,
    /// The core the proxy is pinned to (`taskset`): other work on it marks
    /// the run disturbed.
    #[arg(long)]
    proxy_core: Option<usize>,
}

/// Most seconds any mode runs (measured plus warmup).
const MAX_SECONDS: f64 = 600.0;
/// Bound of one request: a stuck server cannot hold the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.seconds + args.warmup > MAX_SECONDS || args.seconds <= 0.0 || args.warmup < 0.0 {
        bail!("--seconds plus --warmup must be within (0, {MAX_SECONDS}]");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let line = rt.block_on(async {
        match args.mode {
            Mode::Max if args.requests.is_some() => counted(&args).await,
            Mode::Max => closed(&args).await,
            Mode::Rate => open(&args).await,
            Mode::Idle => idle(&args).await,
        }
    })?;
    println!("label={} mode={:?} {line}", args.label, args.mode);
    Ok(())
}

fn request_bytes(args: &Args) -> Vec<u8> {
    let mut r = format!("GET {} HTTP/1.1\r\nHost: {}\r\n", args.path, args.addr);
    for h in &args.headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// One keep-alive connection that sends the same request again and again.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.context("connect")?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `req` and reads one response; returns its status.
    async fn exchange(&mut self, req: &[u8]) -> anyhow::Result<u16> {
        self.stream.write_all(req).await?;
        self.read_response().await
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_response(&mut self) -> anyhow::Result<u16> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("head")?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .context("status")?;
        let mut length = None;
        let mut chunked = false;
        for line in head.split("\r\n").skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.trim().eq_ignore_ascii_case("chunked");
                }
            }
        }
        let end = if chunked {
            loop {
                if let Some(i) = find(&self.buf[head_end..], b"0\r\n\r\n") {
                    break head_end + i + 5;
                }
                self.fill().await?;
            }
        } else {
            let end = head_end + length.unwrap_or(0);
            while self.buf.len() < end {
                self.fill().await?;
            }
            end
        };
        self.buf.drain(..end);
        Ok(status)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// CPU time (ns) of every thread of `pid`, and its RSS (KiB).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    latencies: Vec<Duration>,
    /// (scheduled offset from start, latency) of every measured request.
    timeline: Vec<(Duration, Duration)>,
}

/// Busy and total jiffies of one core, from `/proc/stat`.
fn core_jiffies(core: usize) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&format!("cpu{core}")))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    let total: u64 = v.iter().take(8).sum();
    Some((total - idle, total))
}

/// CPU accounting of one measured window (see the module docs).
struct Usage {
    pid: Option<u32>,
    core: Option<usize>,
    closed_loop: bool,
    at: Instant,
    proxy_ns: u64,
    self_ns: u64,
    core0: Option<(u64, u64)>,
}

impl Usage {
    fn start(args: &Args) -> Self {
        Usage {
            pid: args.pid,
            core: args.proxy_core,
            closed_loop: args.mode == Mode::Max,
            at: Instant::now(),
            proxy_ns: args.pid.map_or(0, cpu_ns),
            self_ns: cpu_ns(std::process::id()),
            core0: args.proxy_core.and_then(core_jiffies),
        }
    }

    /// `cpu_us_per_req=… rss_kib=… proxy_cpu_pct=… gen_cpu_pct=…
    /// [others_pct=…] client_bound=0|1 disturbed=0|1` for `ok` requests.
    fn line(&self, ok: u64) -> String {
        let wall_ns = self.at.elapsed().as_nanos().max(1) as f64;
        let gen = (cpu_ns(std::process::id()) - self.self_ns) as f64 / wall_ns * 100.0;
        let Some(pid) = self.pid else {
            return format!("gen_cpu_pct={gen:.0}");
        };
        let used = cpu_ns(pid).saturating_sub(self.proxy_ns);
        let proxy = used as f64 / wall_ns * 100.0;
        let mut out = format!(
            "cpu_us_per_req={:.2} rss_kib={} proxy_cpu_pct={proxy:.0} gen_cpu_pct={gen:.0}",
            used as f64 / 1000.0 / ok.max(1) as f64,
            rss_kib(pid),
        );
        let mut disturbed = false;
        if let (Some(core), Some((busy0, total0))) = (self.core, self.core0) {
            if let Some((busy1, total1)) = core_jiffies(core) {
                let core_pct = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64 * 100.0;
                let others = (core_pct - proxy).max(0.0);
                disturbed = others > 10.0;
                out.push_str(&format!(" others_pct={others:.0}"));
            }
        }
        let client_bound = self.closed_loop && proxy < 90.0;
        out.push_str(&format!(
            " client_bound={} disturbed={}",
            u8::from(client_bound),
            u8::from(disturbed)
        ));
        out
    }
}

async fn closed(args: &Args) -> anyhow::Result<String> {
    let req: Rc<[u8]> = request_bytes(args).into();
    let tally = Rc::new(RefCell::new(Tally::default()));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.seconds);
    let local = tokio::task::LocalSet::new();
    let usage = RefCell::new(None::<Usage>);
    for _ in 0..args.connections {
        let (req, tally, addr) = (req.clone(), tally.clone(), args.addr);
        local.spawn_local(async move {
            let Ok(mut conn) = Conn::open(addr).await else {
                tally.borrow_mut().errors += 1;
                return;
            };
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let r = tokio::time::timeout(REQUEST_TIMEOUT, conn.exchange(&req)).await;
                let measured = now >= measure_from;
                if matches!(r, Ok(Ok(s)) if (200..300).contains(&s)) {
                    tally.borrow_mut().ok += u64::from(measured);
                    continue;
                }
                tally.borrow_mut().errors += 1;
                match Conn::open(addr).await {
                    Ok(c) => conn = c,
                    Err(_) => break,
                }
            }
        });
    }
    local
        .run_until(async {
            tokio::time::sleep_until(measure_from.into()).await;
            *usage.borrow_mut() = Some(Usage::start(args));
            tokio::time::sleep_until(end.into()).await;
            // Let in-flight requests finish (they count when they started measured).
            tokio::time::sleep(Duration::from_millis(50)).await;
        })
        .await;
    let t = tally.borrow();
    let cpu = usage
        .borrow()
        .as_ref()
        .map_or_else(String::new, |u| u.line(t.ok));
    Ok(format!(
        "rps={:.0} ok={} errors={} {cpu}",
        t.ok as f64 / args.seconds,
        t.ok,
        t.errors
    ))
}

/// `max --requests N`: exactly N requests over `--connections`, as fast as
/// the server answers; reports the count answered 2xx and the wall time.
async fn counted(args: &Args) -> anyhow::Result<String> {
    let req: Rc<[u8]> = request_bytes(args).into();
    let total = args.requests.unwrap_or(0);
    let left = Rc::new(RefCell::new(total));
    let tally = Rc::new(RefCell::new(Tally::default()));
    let start = Instant::now();
    let local = tokio::task::LocalSet::new();
    for _ in 0..args.connections {
        let (req, tally, left, addr) = (req.clone(), tally.clone(), left.clone(), args.addr);
        local.spawn_local(async move {
            let Ok(mut conn) = Conn::open(addr).await else {
                tally.borrow_mut().errors += 1;
                return;
            };
            loop {
                {
                    let mut l = left.borrow_mut();
                    if *l == 0 {
                        break;
                    }
                    *l -= 1;
                }
                let r = tokio::time::timeout(REQUEST_TIMEOUT, conn.exchange(&req)).await;
                let mut t = tally.borrow_mut();
                if matches!(r, Ok(Ok(s)) if (200..300).contains(&s)) {
                    t.ok += 1;
                } else {
                    t.errors += 1;
                    break;
                }
            }
        });
    }
    local.await;
    let t = tally.borrow();
    Ok(format!(
        "requests={total} ok={} errors={} seconds={:.2}",
        t.ok,
        t.errors,
        start.elapsed().as_secs_f64()
    ))
}

async fn open(args: &Args) -> anyhow::Result<String> {
    let req: Rc<[u8]> = request_bytes(args).into();
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let warm = (args.warmup * args.rate as f64) as u64;
    let total = warm + (args.seconds * args.rate as f64) as u64;
    let next = Rc::new(RefCell::new(0u64));
    let tally = Rc::new(RefCell::new(Tally {
        latencies: Vec::with_capacity(usize::try_from(total - warm).unwrap_or(0)),
        ..Tally::default()
    }));
    let start = Instant::now() + Duration::from_millis(200);
    let hard_end = start + Duration::from_secs_f64(args.warmup + args.seconds) + REQUEST_TIMEOUT;
    let local = tokio::task::LocalSet::new();
    let timeline = args.timeline_ms.is_some();
    let mut conns = Vec::new();
    for _ in 0..args.connections {
        conns.push(Conn::open(args.addr).await?);
    }
    for mut conn in conns {
        let (req, tally, next, addr) = (req.clone(), tally.clone(), next.clone(), args.addr);
        local.spawn_local(async move {
            loop {
                let i = {
                    let mut n = next.borrow_mut();
                    let i = *n;
                    *n += 1;
                    i
                };
                if i >= total {
                    break;
                }
                let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
                if Instant::now() > hard_end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let r = tokio::time::timeout(REQUEST_TIMEOUT, conn.exchange(&req)).await;
                let latency = due.elapsed();
                if matches!(r, Ok(Ok(s)) if (200..300).contains(&s)) {
                    if i >= warm {
                        let mut t = tally.borrow_mut();
                        t.ok += 1;
                        t.latencies.push(latency);
                        if timeline {
                            t.timeline.push((due - start, latency));
                        }
                    }
                    continue;
                }
                tally.borrow_mut().errors += 1;
                match Conn::open(addr).await {
                    Ok(c) => conn = c,
                    Err(_) => break,
                }
            }
        });
    }
    let warm_end = start + interval * u32::try_from(warm).unwrap_or(u32::MAX);
    let usage = local
        .run_until(async {
            tokio::time::sleep_until(warm_end.into()).await;
            Usage::start(args)
        })
        .await;
    local.await;
    let elapsed = start.elapsed().as_secs_f64() - args.warmup;
    let mut t = tally.borrow_mut();
    let cpu = usage.line(t.ok);
    if let Some(ms) = args.timeline_ms {
        print_timeline(&t.timeline, ms);
    }
    t.latencies.sort_unstable();
    let q = |q: f64| -> f64 {
        let v = &t.latencies;
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1].as_secs_f64() * 1000.0
    };
    Ok(format!(
        "rate={} achieved={:.0} ok={} errors={} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3} {cpu}",
        args.rate,
        t.ok as f64 / elapsed.max(1e-9),
        t.ok,
        t.errors,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        q(1.0),
    ))
}

async fn idle(args: &Args) -> anyhow::Result<String> {
    let Some(pid) = args.pid else {
        bail!("idle needs --pid");
    };
    let req = request_bytes(args);
    // Settle: the node's periodic work has run and freed what it frees.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(pid);
    let mut conns = Vec::with_capacity(args.connections as usize);
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds.max(1.0) * 10.0);
    for _ in 0..args.connections {
        if Instant::now() > deadline {
            bail!("idle: opening connections took too long");
        }
        let mut c = Conn::open(args.addr).await?;
        let status = tokio::time::timeout(REQUEST_TIMEOUT, c.exchange(&req))
            .await
            .context("idle: request timed out")??;
        if !(200..300).contains(&status) {
            bail!("idle: answered {status}");
        }
        conns.push(c);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let n = conns.len() as f64;
    drop(conns);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let closed = rss_kib(pid);
    Ok(format!(
        "connections={} rss_before_kib={before} rss_held_kib={after} rss_closed_kib={closed} kib_per_conn={:.2}",
        args.connections,
        (after as f64 - before as f64) / n
    ))
}

/// Prints the 100 ms windows whose slowest request exceeded `ms`.
fn print_timeline(points: &[(Duration, Duration)], ms: f64) {
    let mut windows = std::collections::BTreeMap::<u128, (u64, Duration)>::new();
    for (at, latency) in points {
        let w = windows.entry(at.as_millis() / 100).or_default();
        w.0 += 1;
        w.1 = w.1.max(*latency);
    }
    for (w, (n, max)) in windows {
        let max_ms = max.as_secs_f64() * 1000.0;
        if max_ms > ms {
            println!(
                "window_s={:.1} requests={n} max_ms={max_ms:.2}",
                w as f64 / 10.0
            );
        }
    }
}
