//! The `--memory` scenario: many requests through the node with nobody
//! scraping `/metrics`, and the node's resident memory (`VmRSS` of
//! `/proc/<pid>/status`) at idle after start and after the run. Anything the
//! node keeps per request — histogram samples the metrics recorder holds until
//! they are folded into buckets, say — shows up as the difference. Bounded like
//! every scenario: a request count and a wall-time limit.

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::{self, HttpClient, Limits, Outcome, Target};

/// How long the node is left alone before each reading: its periodic work
/// (metrics upkeep every second) has run and the reading is of a quiet node.
const SETTLE: Duration = Duration::from_secs(3);

/// What the memory scenario measured.
#[derive(Debug)]
pub struct MemoryOutcome {
    /// The requests sent.
    pub load: Outcome,
    /// Node RSS in KiB, quiet after start (one preflight request served).
    pub idle_kib: u64,
    /// Node RSS in KiB, quiet after the run.
    pub after_kib: u64,
    /// Node peak RSS (`VmHWM`) in KiB.
    pub peak_kib: u64,
}

/// One `kB` field of `/proc/<pid>/status`.
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {path}: {e} (is this Linux?)"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in {path}"))
}

/// Reads the node's idle RSS, sends `limits.requests` to `target`, reads it again.
pub async fn run(
    client: &HttpClient,
    target: &Target,
    node_pid: u32,
    limits: Limits,
) -> anyhow::Result<MemoryOutcome> {
    tokio::time::sleep(SETTLE).await;
    let idle_kib = status_kib(node_pid, "VmRSS")?;
    let load = load::run(client, target, limits).await;
    tokio::time::sleep(SETTLE).await;
    Ok(MemoryOutcome {
        load,
        idle_kib,
        after_kib: status_kib(node_pid, "VmRSS")?,
        peak_kib: status_kib(node_pid, "VmHWM")?,
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The Markdown report of the memory scenario.
pub fn render(m: &MemoryOutcome, profile: &str, limits: Limits, node_log: &str) -> String {
    let mut s = String::new();
    let o = &m.load;
    let _ = writeln!(s, "# Rhizome node memory, nobody scraping `/metrics`\n");
    let _ = writeln!(s, "- Build profile: **{profile}**");
    let _ = writeln!(
        s,
        "- Scenario `{}`: {} requests sent ({} errors{}) in {:.1} s ({:.0} req/s), \
         {} keep-alive connections, at most {} s",
        o.name,
        o.requests,
        o.errors,
        if o.time_limited {
            ", stopped by the time limit"
        } else {
            ""
        },
        o.elapsed.as_secs_f64(),
        o.rate(),
        limits.concurrency,
        limits.max_time.as_secs(),
    );
    let _ = writeln!(s, "- Node log filter: `RUST_LOG={node_log}`");
    let _ = writeln!(s, "- Readings after {} s of quiet each\n", SETTLE.as_secs());
    let _ = writeln!(s, "| node RSS | MiB |");
    let _ = writeln!(s, "|---|---:|");
    let _ = writeln!(s, "| idle after start | {:.1} |", mib(m.idle_kib));
    let _ = writeln!(s, "| after the run | {:.1} |", mib(m.after_kib));
    let grown = i128::from(m.after_kib) - i128::from(m.idle_kib);
    let _ = writeln!(s, "| growth | {:+.1} |", grown as f64 / 1024.0);
    let _ = writeln!(s, "| peak (VmHWM) | {:.1} |", mib(m.peak_kib));
    s
}
