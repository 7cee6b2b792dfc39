//! The Markdown report: machine facts and settings, one table row per HTTP
//! scenario, the node-versus-direct ratios, and the SSE time-to-first-event
//! comparison. Pure formatting: it only reads the outcomes it is given.

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::{Limits, Outcome};
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

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.3}", d.as_secs_f64() * 1e3),
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
        let mark = if o.time_limited { "*" } else { "" };
        any_limited |= o.time_limited;
        let _ = writeln!(
            s,
            "| {} | {}{mark} | {} | {:.0} | {} | {} |",
            o.name,
            o.requests,
            o.errors,
            o.rate(),
            ms(o.quantile(0.5)),
            ms(o.quantile(0.99)),
        );
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
