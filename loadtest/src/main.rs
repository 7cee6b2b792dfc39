//! `rhizome-loadtest`: a first performance run that measures requests/s and
//! p50/p99 latency through a Rhizome node and directly against the upstream,
//! in the same run, and prints a Markdown report on stdout (and to `--out`).
//! No targets are enforced; it reports.
//!
//! It starts a real `rhizome-mock` and a real `rhizome-node` on loopback
//! through the end-to-end harness of `rhizome-tests` (the standard test
//! config) and runs five scenarios, each bounded in requests and wall time:
//! `direct-open`, `node-open`, `direct-credentialed`, `node-credentialed`
//! and `sse-first-event`. With `--memory` it runs only the memory scenario
//! instead: `--memory-requests` (default 1 M) through the node with nobody
//! scraping `/metrics`, reporting the node's RSS before and after. With
//! `--replay` it runs only the resumable-SSE scenarios (see `replay.rs`),
//! starting its own `redis-server` and further nodes on loopback. With
//! `--scenario NAME` (repeatable) it runs the named scenarios instead
//! (`plain`, `post`, `sse`, `tokens`, `mcp`, `chaos`; see `scenario.rs`), one
//! report section each.
//!
//! The harness finds `rhizome-node` and `rhizome-mock` next to this
//! executable (`target/<profile>/`), so build all binaries with the same
//! profile and run the loadtest from there:
//!
//! ```text
//! cargo build --release --workspace --bins && target/release/rhizome-loadtest
//! ```
//!
//! Token values, client keys and secrets are never printed or logged.

mod chaos;
mod load;
mod mcp;
mod memory;
mod replay;
mod report;
mod scenario;
mod sse;
mod streams;
mod tokens;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::Parser;
use http::{HeaderValue, Uri};
use rhizome_tests::harness::{self, fixture, http::Client as SetupClient, secrets, Env};

use load::{Limits, Target};
use scenario::Scenario;

const HELP_AFTER: &str = "\
The node and mock binaries are taken from the directory of this executable
(target/<profile>/), so build everything with one profile first:

  cargo build --release --workspace --bins && target/release/rhizome-loadtest

Captured node and mock logs go to target/<profile>/../test-logs/loadtest-*/.";

/// Load scenarios against Rhizome and a direct connection, side by side.
#[derive(Debug, Parser)]
#[command(name = "rhizome-loadtest", version, after_help = HELP_AFTER)]
struct Args {
    /// Measured requests per HTTP scenario (at most 10 million: 16 bytes of latency each).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    requests: u64,
    /// Concurrent workers (and keep-alive connections) per HTTP scenario.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    concurrency: u16,
    /// Wall-time limit in seconds per scenario phase; a phase stops early when exceeded.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    max_seconds: u64,
    /// Sequential iterations per side of the SSE first-event scenario.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sse_iterations: u32,
    /// Unmeasured requests before measuring each HTTP scenario.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    warmup: u64,
    /// Also write the report to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Run the node with its per-request access log off
    /// (`RUST_LOG=info,rhizome::access=off`; the default is `info`, as deployed).
    #[arg(long)]
    no_access_log: bool,
    /// Run only the memory scenario: `--memory-requests` through the node with
    /// nobody scraping `/metrics`, and the node's RSS at idle and after. The
    /// access log is off (a million lines would fill the log directory).
    #[arg(long)]
    memory: bool,
    /// Requests of the memory scenario.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    memory_requests: u64,
    /// Wall-time limit in seconds of the memory scenario.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=3600))]
    memory_max_seconds: u64,
    /// Run only the resumable-SSE scenarios: time to first event with replay
    /// on and off, events/s of one fast stream (replay off, memory, Redis),
    /// Redis memory of one 1,000-event stream, and reconnect-to-first-event
    /// after the producing node is SIGKILLed (leases 2 s and 1 s).
    #[arg(long)]
    replay: bool,
    /// Events per stream of the replay throughput scenario.
    #[arg(long, default_value_t = 4_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    replay_events: u64,
    /// Concurrent streams of the replay throughput scenario.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1000))]
    replay_streams: u16,
    /// Runs per lease setting of the takeover scenario.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    takeover_runs: u32,
    /// Run these scenarios instead (repeatable, or comma-separated), one
    /// report section each, in the order given.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// Concurrent stream counts of the `sse` scenario.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000",
          value_parser = clap::value_parser!(u32).range(1..=20_000))]
    streams: Vec<u32>,
    /// Spaced emits timed per stream count and path in the `sse` scenario.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    sse_emits: u32,
    /// First-event probes per stream count and path in the `sse` scenario.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    sse_probes: u32,
    /// Credentials of the `tokens` scenario.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    tokens_credentials: u16,
    /// Token lifetime (`expires_in`) in seconds in the `tokens` scenario.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(2..=3600))]
    tokens_expires_in: u64,
    /// Seconds of load in the `tokens` scenario.
    #[arg(long, default_value_t = 45, value_parser = clap::value_parser!(u64).range(1..=3600))]
    tokens_seconds: u64,
    /// MCP sessions of the `mcp` scenario.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    mcp_sessions: u32,
    /// Seconds of the `chaos` scenario.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(10..=3600))]
    chaos_seconds: u64,
}

/// Raises the open-file limit as far as allowed (10,000 streams need about
/// 20,000 descriptors in the node; children inherit the limit).
fn raise_nofile() {
    let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, 65_536, 65_536);
    let _ = rlimit::increase_nofile_limit(65_536);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    raise_nofile();
    let dir = harness::bin_dir();
    for name in ["rhizome-node", "rhizome-mock"] {
        if !dir.join(name).is_file() {
            bail!(
                "{} is missing: build all binaries with the profile of this executable, \
                 e.g. `cargo build --release --workspace --bins && target/release/rhizome-loadtest`",
                dir.join(name).display()
            );
        }
    }

    let node_log = if args.no_access_log || args.memory || args.replay {
        "info,rhizome::access=off"
    } else {
        "info"
    };
    let env = Env::new("loadtest");
    eprintln!(
        "starting rhizome-mock and rhizome-node (logs in {})",
        env.dir.display()
    );
    let mock = fixture::mock(&env, &[]).await;
    // Replay on for the `/e/` route only; every other scenario uses `/a/` and `/n/`.
    let tuning = fixture::Tuning {
        sse: replay::REPLAY,
        ..fixture::Tuning::default()
    };
    let cfg = fixture::config(&env, &mock, &tuning);
    let mut node_env = vec![
        (fixture::SECRET_A_ENV, secrets::OAUTH_SECRET_A),
        ("RUST_LOG", node_log),
    ];
    if args.scenario.contains(&Scenario::Sse) {
        // The largest stream count plus the probes' connections.
        node_env.push(("RHIZOME__LIMITS__MAX_CONNECTIONS", "30000"));
    }
    let node = env.node_with_env("node", &cfg, &node_env).await;

    let direct_token = fetch_token(&mock.base()).await?;
    let mut client_key = HeaderValue::from_str(&fixture::bearer()).context("client key header")?;
    client_key.set_sensitive(true);

    let uri = |s: String| -> anyhow::Result<Uri> { s.parse().context("building URL") };
    let targets = [
        Target::get("direct-open", uri(format!("{}/open/x", mock.base()))?, None),
        Target::get(
            "node-open",
            uri(node.url("/n/open/x"))?,
            Some(client_key.clone()),
        ),
        Target::get(
            "direct-credentialed",
            uri(format!("{}/x", mock.base()))?,
            Some(direct_token.clone()),
        ),
        Target::get(
            "node-credentialed",
            uri(node.url("/a/x"))?,
            Some(client_key.clone()),
        ),
    ];
    let sse_direct = Target::get(
        "sse-direct",
        uri(format!("{}/sse?count=1&interval_ms=0", mock.base()))?,
        Some(direct_token.clone()),
    );
    let sse_node = Target::get(
        "sse-node",
        uri(node.url("/a/sse?count=1&interval_ms=0"))?,
        Some(client_key.clone()),
    );

    let sse_replay = Target::get(
        "sse-node-replay",
        uri(node.url("/e/sse?count=1&interval_ms=0"))?,
        Some(client_key.clone()),
    );

    let limits = Limits {
        requests: args.requests,
        concurrency: usize::from(args.concurrency),
        max_time: Duration::from_secs(args.max_seconds),
        warmup: args.warmup,
    };
    let client = load::client(limits.concurrency);
    for t in targets.iter().chain([&sse_direct, &sse_node, &sse_replay]) {
        load::preflight(&client, t).await?;
    }

    if !args.scenario.is_empty() {
        let run = ScenarioRun {
            mock: &mock,
            node: &node,
            client: &client,
            limits,
            direct_token: &direct_token,
            client_key: &client_key,
            node_log,
        };
        let (sections, dirs) = run_scenarios(&run, &args).await?;
        let findings = secrets::scan_dir(&env.dir).len()
            + dirs
                .iter()
                .map(|d| secrets::scan_dir(std::path::Path::new(d)).len())
                .sum::<usize>();
        let facts = facts(&args, limits, node_log, &env, findings);
        let text = scenario::render(&facts, &sections, &dirs);
        return finish(&text, args.out.as_deref(), findings);
    }

    if args.replay {
        let run = ReplayRun {
            mock: &mock,
            node: &node,
            client: &client,
            sse: [&sse_direct, &sse_node, &sse_replay],
            direct_token: &direct_token,
            client_key: &client_key,
        };
        let r = run_replay(&run, &args, node_log).await?;
        let findings = secrets::scan_dir(&env.dir).len() + r.findings;
        let facts = facts(&args, limits, node_log, &env, findings);
        return finish(
            &report::render_replay(&facts, &r),
            args.out.as_deref(),
            findings,
        );
    }

    if args.memory {
        let limits = Limits {
            requests: args.memory_requests,
            max_time: Duration::from_secs(args.memory_max_seconds),
            warmup: 0,
            ..limits
        };
        eprintln!("running the memory scenario ({} requests)", limits.requests);
        let target = targets
            .iter()
            .find(|t| t.name == "node-credentialed")
            .context("node-credentialed scenario")?;
        let m = memory::run(&client, target, node.proc.pid(), limits).await?;
        let text = memory::render(&m, profile(), limits, node_log);
        let findings = secrets::scan_dir(&env.dir).len();
        return finish(&text, args.out.as_deref(), findings);
    }

    let mut outcomes = Vec::with_capacity(targets.len());
    for t in &targets {
        eprintln!("running {}", t.name);
        outcomes.push(load::run(&client, t, limits).await);
    }
    eprintln!("running sse-first-event");
    let sse = sse::run(
        &client,
        &sse_direct,
        &sse_node,
        args.sse_iterations,
        limits.max_time,
    )
    .await;

    let findings = secrets::scan_dir(&env.dir).len();
    let facts = facts(&args, limits, node_log, &env, findings);
    let text = report::render(&facts, &outcomes, &sse);
    finish(&text, args.out.as_deref(), findings)
}

fn facts(args: &Args, limits: Limits, node_log: &str, env: &Env, findings: usize) -> report::Facts {
    report::Facts {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: cpu_model(),
        profile: profile(),
        limits,
        sse_iterations: args.sse_iterations,
        node_log: node_log.to_owned(),
        log_dir: env.dir.display().to_string(),
        secret_findings: findings,
    }
}

/// What the named scenarios run against (those needing more start their own).
struct ScenarioRun<'a> {
    mock: &'a harness::Mock,
    node: &'a harness::Node,
    client: &'a load::HttpClient,
    limits: Limits,
    direct_token: &'a HeaderValue,
    client_key: &'a HeaderValue,
    node_log: &'a str,
}

/// Runs `--scenario`s in order: their sections and extra log directories.
async fn run_scenarios(
    run: &ScenarioRun<'_>,
    args: &Args,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let (mut sections, mut dirs) = (Vec::new(), Vec::new());
    let mut done = Vec::new();
    for &s in &args.scenario {
        if done.contains(&s) {
            continue;
        }
        done.push(s);
        eprintln!("running scenario {s:?}");
        match s {
            Scenario::Plain | Scenario::Post => sections.push(request_pair(run, s).await?),
            Scenario::Sse => {
                let setup = streams::Setup {
                    client: run.client,
                    mock: run.mock,
                    node: run.node,
                    direct_token: run.direct_token,
                    client_key: run.client_key,
                    probes: args.sse_probes,
                    emits: args.sse_emits,
                    max_time: run.limits.max_time,
                };
                let runs = streams::run(&setup, &args.streams).await?;
                sections.push(streams::render(&runs, args.sse_emits));
            }
            Scenario::Tokens => {
                let t = tokens::run(
                    run.client,
                    usize::from(args.tokens_credentials),
                    args.tokens_expires_in,
                    args.tokens_seconds,
                    run.limits.concurrency,
                    run.node_log,
                )
                .await?;
                sections.push(tokens::render(&t));
                dirs.push(t.env.dir.display().to_string());
            }
            Scenario::Mcp => {
                let m = mcp::run(run.client, args.mcp_sessions, run.limits).await?;
                sections.push(mcp::render(&m, run.limits));
                dirs.push(m.env.dir.display().to_string());
            }
            Scenario::Chaos => {
                let c = chaos::run(run.client, Duration::from_secs(args.chaos_seconds)).await?;
                sections.push(chaos::render(&c));
                dirs.push(c.env.dir.display().to_string());
            }
        }
    }
    Ok((sections, dirs))
}

/// `plain` or `post`: the same request direct and through the node.
async fn request_pair(run: &ScenarioRun<'_>, s: Scenario) -> anyhow::Result<String> {
    let body = (s == Scenario::Post).then(scenario::post_body);
    let direct_url = format!("{}/x", run.mock.base()).parse()?;
    let node_url = run.node.url("/a/x").parse()?;
    let mut direct = Target::get("direct", direct_url, Some(run.direct_token.clone()));
    let mut node = Target::get("node", node_url, Some(run.client_key.clone()));
    direct.body.clone_from(&body);
    node.body = body;
    load::preflight(run.client, &direct).await?;
    load::preflight(run.client, &node).await?;
    let d = load::run(run.client, &direct, run.limits).await;
    let n = load::run(run.client, &node, run.limits).await;
    Ok(if s == Scenario::Post {
        scenario::http_section(
            "Scenario `post`: 4 KiB JSON body",
            "`POST /x` with a 4,096-byte JSON body (`Content-Type: application/json`), \
             the mock echoing it back as JSON; direct with a token, through the node on \
             `/a/` (OAuth credential injected).",
            &d,
            &n,
        )
    } else {
        scenario::http_section(
            "Scenario `plain`: small GET",
            "`GET /x` answered with a small JSON echo; direct with a token, through the \
             node on `/a/` (OAuth credential injected).",
            &d,
            &n,
        )
    })
}

/// What the replay scenarios run against.
struct ReplayRun<'a> {
    mock: &'a harness::Mock,
    node: &'a harness::Node,
    client: &'a load::HttpClient,
    /// Direct, node with replay off (`/a/`), node with replay on (`/e/`).
    sse: [&'a Target; 3],
    direct_token: &'a HeaderValue,
    client_key: &'a HeaderValue,
}

/// The `--replay` scenarios, in order; see [`replay`].
async fn run_replay(
    run: &ReplayRun<'_>,
    args: &Args,
    node_log: &str,
) -> anyhow::Result<report::ReplayResults> {
    let max_time = Duration::from_secs(args.max_seconds);
    let [direct, off, on] = run.sse;
    eprintln!("running sse-first-event, replay off and on");
    let ttfe_off = sse::run(run.client, direct, off, args.sse_iterations, max_time).await;
    let ttfe_on = sse::run(run.client, direct, on, args.sse_iterations, max_time).await;

    eprintln!("starting redis-server and a node on it");
    let renv = Env::new("loadtest-replay");
    let redis = renv.redis().await;
    let tuning = fixture::Tuning {
        sse: replay::REPLAY,
        extra: fixture::redis_lock(&redis.url(), "250ms"),
        ..fixture::Tuning::default()
    };
    let cfg = fixture::config(&renv, run.mock, &tuning);
    let rnode = renv
        .node_with_env(
            "redis-node",
            &cfg,
            &[
                (fixture::SECRET_A_ENV, secrets::OAUTH_SECRET_A),
                ("RUST_LOG", node_log),
            ],
        )
        .await;
    rnode.wait_ready().await;

    let n = args.replay_events;
    let key = Some(run.client_key.clone());
    let streams = [
        replay::stream_target(
            "direct",
            format!("{}/sse", run.mock.base()),
            n,
            Some(run.direct_token.clone()),
        )?,
        replay::stream_target("node, replay off", run.node.url("/a/sse"), n, key.clone())?,
        replay::stream_target(
            "node, replay on (memory)",
            run.node.url("/e/sse"),
            n,
            key.clone(),
        )?,
        replay::stream_target("node, replay on (Redis)", rnode.url("/e/sse"), n, key)?,
    ];
    let mut rates = Vec::new();
    for (i, t) in streams.iter().enumerate() {
        eprintln!("running events/s: {}", t.name);
        // The last row's node keeps its buffers in Redis: Redis's CPU over it.
        let on_redis = i == streams.len() - 1;
        let cpu_before = replay::redis_cpu(&redis);
        let mut rate = replay::rate(run.client, t, args.replay_streams, max_time).await?;
        if on_redis {
            rate.redis_cpu = Some(replay::redis_cpu(&redis).saturating_sub(cpu_before));
        }
        rates.push(rate);
    }

    eprintln!("running Redis memory of one stream");
    let memory = replay::redis_memory(&rnode, run.mock, &redis).await?;

    let mut takeovers = Vec::new();
    for lease_1s in [false, true] {
        eprintln!("running takeovers (lease 1 s: {lease_1s})");
        takeovers.push(
            replay::takeovers(
                &renv,
                run.mock,
                &redis,
                lease_1s,
                args.takeover_runs,
                max_time * 4,
            )
            .await,
        );
    }
    let findings = secrets::scan_dir(&renv.dir).len();
    Ok(report::ReplayResults {
        findings,
        ttfe_off,
        ttfe_on,
        events: n,
        streams: args.replay_streams,
        rates,
        memory,
        takeovers,
        log_dir: renv.dir.display().to_string(),
    })
}

fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Prints the report (and writes it to `out`), then fails when the secret
/// scan of the captured logs found anything.
fn finish(text: &str, out: Option<&std::path::Path>, findings: usize) -> anyhow::Result<()> {
    print!("{text}");
    if let Some(path) = out {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if findings > 0 {
        bail!("{findings} secret finding(s) in the captured logs");
    }
    Ok(())
}

/// Gets an access token for `svc-a` from the mock's token endpoint and
/// returns it as a sensitive `Authorization: Bearer …` value.
async fn fetch_token(mock_base: &str) -> anyhow::Result<HeaderValue> {
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("svc-a:{}", secrets::OAUTH_SECRET_A));
    let basic = format!("Basic {basic}");
    let resp = SetupClient::new()
        .post(
            &format!("{mock_base}/oauth/token"),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", &basic),
            ],
            "grant_type=client_credentials",
        )
        .await;
    if resp.status != 200 {
        bail!("token endpoint answered {}", resp.status);
    }
    let doc = resp.json();
    let Some(token) = doc.get("access_token").and_then(|v| v.as_str()) else {
        bail!("token response has no access_token");
    };
    let mut value =
        HeaderValue::from_str(&format!("Bearer {token}")).context("token is not a header value")?;
    value.set_sensitive(true);
    Ok(value)
}

/// The CPU model from `/proc/cpuinfo`, when readable.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}
