//! The Markdown report: machine facts and settings, one table row per HTTP
//! scenario, the node-versus-direct ratios, and the SSE time-to-first-event
//! comparison. Pure formatting: it only reads the outcomes it is given.

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::{Limits, Outcome};
use crate::replay::{Rate, RedisMemory, Takeover};
use crate::sse::{SseOutcome, SseSide};

/// Everything the report states besides the measurements.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Cores from `available_parallelism`.
    pub cores: usize,
    /// CPU model, when known.
    pub cpu: Option<String>,
    /// `release` or `debug`.
    pub profile: &'static str,
    /// HTTP scenario bounds.
    pub limits: Limits,
    /// SSE iterations requested.
    pub sse_iterations: u32,
    /// `RUST_LOG` given to the node.
    pub node_log: String,
    /// Directory with the node's and mock's captured logs.
    pub log_dir: String,
    /// Findings of the secret scan over those logs.
    pub secret_findings: usize,
}

pub(crate) fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.3}", d.as_secs_f64() * 1e3),
    )
}

/// An outcome's table cells: `requests[*] | errors | req/s | p50 ms | p99 ms`
/// (`*`: the time limit ended the phase).
pub(crate) fn outcome_cells(o: &Outcome) -> String {
    format!(
        "{}{} | {} | {:.0} | {} | {}",
        o.requests,
        if o.time_limited { "*" } else { "" },
        o.errors,
        o.rate(),
        ms(o.quantile(0.5)),
        ms(o.quantile(0.99)),
    )
}

fn added(node: Option<Duration>, direct: Option<Duration>) -> String {
    match (node, direct) {
        (Some(n), Some(d)) => format!("{:+.3}", (n.as_secs_f64() - d.as_secs_f64()) * 1e3),
        _ => "-".to_owned(),
    }
}

fn find<'a>(outcomes: &'a [Outcome], name: &str) -> Option<&'a Outcome> {
    outcomes.iter().find(|o| o.name == name)
}

/// Renders the whole report.
pub fn render(facts: &Facts, outcomes: &[Outcome], sse: &SseOutcome) -> String {
    let mut s = String::new();
    let l = facts.limits;
    let _ = writeln!(s, "# Rhizome load test\n");
    let _ = writeln!(s, "## Machine and settings\n");
    let _ = writeln!(s, "- Build profile: **{}**", facts.profile);
    let _ = writeln!(s, "- Cores available: **{}**", facts.cores);
    if let Some(cpu) = &facts.cpu {
        let _ = writeln!(s, "- CPU: {cpu}");
    }
    let _ = writeln!(
        s,
        "- Client, node and mock run on this one machine and share these cores \
         (and loopback), so every figure includes their competition for CPU; \
         absolute numbers are not those of a dedicated proxy host."
    );
    let _ = writeln!(
        s,
        "- HTTP scenarios: up to {} measured requests each after {} warmup requests, \
         {} concurrent keep-alive HTTP/1.1 connections, at most {} s per phase",
        l.requests,
        l.warmup,
        l.concurrency,
        l.max_time.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "- SSE: up to {} sequential iterations per side, direct and node alternating",
        facts.sse_iterations
    );
    let _ = writeln!(
        s,
        "- Node log filter: `RUST_LOG={}` (with the access log on, the node writes one \
         JSON line per request, which this process captures to a file)",
        facts.node_log
    );
    let _ = writeln!(s, "- Upstream: `rhizome-mock` (echo handler, JSON body)");
    let _ = writeln!(s);

    let _ = writeln!(s, "## HTTP scenarios\n");
    let _ = writeln!(
        s,
        "| scenario | requests | errors | req/s | p50 ms | p99 ms |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    let mut any_limited = false;
    for o in outcomes {
        any_limited |= o.time_limited;
        let _ = writeln!(s, "| {} | {} |", o.name, outcome_cells(o));
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "req/s counts 2xx responses over the measured wall time; latencies are of \
         2xx responses, from sending the request to the end of the response body."
    );
    if any_limited {
        let _ = writeln!(
            s,
            "\n\\* stopped by the time limit before the request count."
        );
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "## Node versus direct\n");
    let _ = writeln!(
        s,
        "| comparison | req/s ratio (node / direct) | p50 added ms | p99 added ms |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for (node, direct) in [
        ("node-open", "direct-open"),
        ("node-credentialed", "direct-credentialed"),
    ] {
        let (Some(n), Some(d)) = (find(outcomes, node), find(outcomes, direct)) else {
            continue;
        };
        let ratio = if d.rate() > 0.0 {
            format!("{:.2}", n.rate() / d.rate())
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            s,
            "| {node} vs {direct} | {ratio} | {} | {} |",
            added(n.quantile(0.5), d.quantile(0.5)),
            added(n.quantile(0.99), d.quantile(0.99)),
        );
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "## SSE time to first event\n");
    let _ = writeln!(s, "| path | iterations | errors | p50 ms | p99 ms |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    let row = |s: &mut String, name: &str, side: &SseSide| {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} |",
            side.iterations,
            side.errors,
            ms(side.quantile(0.5)),
            ms(side.quantile(0.99)),
        );
    };
    row(&mut s, "direct (`/sse`)", &sse.direct);
    row(&mut s, "node (`/a/sse`)", &sse.node);
    let _ = writeln!(
        s,
        "| added by the node | | | {} | {} |",
        added(sse.node.quantile(0.5), sse.direct.quantile(0.5)),
        added(sse.node.quantile(0.99), sse.direct.quantile(0.99)),
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Timed from sending `GET …/sse?count=1&interval_ms=0` to the end of the first \
         event; requests in sequence over reused keep-alive connections."
    );
    if sse.time_limited {
        let _ = writeln!(s, "Stopped by the time limit before the iteration count.");
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "## Logs\n");
    let _ = writeln!(s, "- Captured in `{}`", facts.log_dir);
    let scan = if facts.secret_findings == 0 {
        "clean (no secret, token or client key found)".to_owned()
    } else {
        format!("**{} finding(s)**", facts.secret_findings)
    };
    let _ = writeln!(s, "- Secret scan of those logs: {scan}");
    s
}

/// Everything the `--replay` run measured.
#[derive(Debug, Clone)]
pub struct ReplayResults {
    /// Time to first event, direct versus `/a/` (replay off).
    pub ttfe_off: SseOutcome,
    /// Time to first event, direct versus `/e/` (replay on, memory backend).
    pub ttfe_on: SseOutcome,
    /// Events requested of each throughput stream.
    pub events: u64,
    /// Concurrent throughput streams.
    pub streams: u16,
    /// Throughput rows.
    pub rates: Vec<Rate>,
    /// Redis memory of one stream.
    pub memory: RedisMemory,
    /// Takeover timings per lease.
    pub takeovers: Vec<Takeover>,
    /// Logs of the Redis node(s).
    pub log_dir: String,
    /// Secret-scan findings in `log_dir`.
    pub findings: usize,
}

/// Renders the `--replay` report: machine facts, then the resumable-SSE section.
pub fn render_replay(facts: &Facts, r: &ReplayResults) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Rhizome load test: resumable SSE\n");
    let _ = writeln!(s, "## Machine and settings\n");
    let _ = writeln!(s, "- Build profile: **{}**", facts.profile);
    let _ = writeln!(s, "- Cores available: **{}**", facts.cores);
    if let Some(cpu) = &facts.cpu {
        let _ = writeln!(s, "- CPU: {cpu}");
    }
    let _ = writeln!(
        s,
        "- Client, nodes, mock and Redis share these cores and loopback.\n\
         - Node log filter: `RUST_LOG={}`; replay routes use `replay = true`, \
         `buffer_events = 1000`, `on_client_disconnect = \"cancel\"`\n",
        facts.node_log
    );
    let _ = writeln!(s, "## Resumable SSE\n");
    let _ = writeln!(s, "### Time to first event, replay off and on\n");
    let _ = writeln!(s, "| path | iterations | errors | p50 ms | p99 ms |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for (label, o) in [
        ("replay off (`/a/sse`)", &r.ttfe_off),
        ("replay on, memory (`/e/sse`)", &r.ttfe_on),
    ] {
        sse_rows(&mut s, label, o);
    }
    let _ = writeln!(
        s,
        "\nEach pair alternates direct and node requests of `…/sse?count=1&interval_ms=0`, \
         timed from sending the request to the end of the first event.\n"
    );

    let _ = writeln!(s, "### Events/s relayed by one node\n");
    let _ = writeln!(
        s,
        "| path | events | seconds | events/s | Redis CPU s | events per Redis CPU-second |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for x in &r.rates {
        let mark = if x.time_limited { "*" } else { "" };
        let (cpu, per_cpu) = match (x.redis_cpu, x.per_redis_cpu_sec()) {
            (Some(c), Some(p)) => (format!("{:.2}", c.as_secs_f64()), format!("{p:.0}")),
            _ => ("–".to_owned(), "–".to_owned()),
        };
        let _ = writeln!(
            s,
            "| {} | {}{mark} | {:.2} | {:.0} | {cpu} | {per_cpu} |",
            x.name,
            x.events,
            x.elapsed.as_secs_f64(),
            x.per_sec()
        );
    }
    let _ = writeln!(
        s,
        "\n{} concurrent `GET …/sse?count={}&interval_ms=0` streams per row (one mock \
         stream is timer-paced at about 900 events/s), timed from sending the requests to \
         the end of the last stream; events counted by their blank line. \\* = stopped by \
         the time limit. Redis CPU is `INFO cpu` (user + system) over the Redis row: \
         events per Redis CPU-second is what one Redis core appends at most.\n",
        r.streams, r.events
    );

    let m = &r.memory;
    let _ = writeln!(s, "### Redis memory of one stream\n");
    let _ = writeln!(
        s,
        "{} events of {} bytes each (`event: tick` and one `data:` line, as stored) \
         in one stream, `buffer_events = 1000`:\n",
        m.received, m.event_bytes
    );
    let _ = writeln!(s, "| key | `MEMORY USAGE … SAMPLES 0` bytes |");
    let _ = writeln!(s, "|---|---:|");
    let mut total = 0;
    for (k, b) in &m.keys {
        total += b;
        let _ = writeln!(s, "| `{k}` | {b} |");
    }
    let _ = writeln!(s, "| total | {total} |");
    let per = total as f64 / m.received.max(1) as f64;
    let _ = writeln!(
        s,
        "\n{per:.0} bytes per buffered event; `INFO used_memory` grew by {} bytes over the \
         stream.\n",
        m.used_memory_delta
    );

    let _ = writeln!(
        s,
        "### Reconnect to first replayed event after a node kill\n"
    );
    let _ = writeln!(s, "| producer_lease | runs | errors | p50 ms | max ms |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for t in &r.takeovers {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            t.lease,
            t.runs,
            t.errors,
            ms(t.quantile(0.5)),
            ms(t.times.last().copied()),
        );
    }
    for t in &r.takeovers {
        if let Some(e) = &t.first_error {
            let _ = writeln!(s, "\nFirst error with lease {}: {e}", t.lease);
        }
    }
    let _ = writeln!(
        s,
        "\nTwo nodes on one Redis (`redis-lock`); per run a fresh node A produces \
         `/e/sse?to=300&interval_ms=20&honour_last_event_id=1`, the client reads 5 events, \
         A is SIGKILLed, and the client reconnects to node B with its last id; timed from \
         sending the reconnect to the first event received (includes the lease lapse).\n"
    );
    let _ = writeln!(s, "## Logs\n");
    let _ = writeln!(s, "- Captured in `{}` and `{}`", facts.log_dir, r.log_dir);
    let scan = if facts.secret_findings == 0 {
        "clean (no secret, token or client key found)".to_owned()
    } else {
        format!("**{} finding(s)**", facts.secret_findings)
    };
    let _ = writeln!(s, "- Secret scan of those logs: {scan}");
    s
}

fn sse_rows(s: &mut String, label: &str, o: &SseOutcome) {
    for (name, side) in [("direct", &o.direct), ("node", &o.node)] {
        let _ = writeln!(
            s,
            "| {label}: {name} | {} | {} | {} | {} |",
            side.iterations,
            side.errors,
            ms(side.quantile(0.5)),
            ms(side.quantile(0.99)),
        );
    }
    let _ = writeln!(
        s,
        "| {label}: added by the node | | | {} | {} |",
        added(o.node.quantile(0.5), o.direct.quantile(0.5)),
        added(o.node.quantile(0.99), o.direct.quantile(0.99)),
    );
}
