//! The `--scenario NAME` runs (repeatable): which scenarios exist, the
//! Markdown section of the two request/response ones (`plain`: a small
//! `GET`; `post`: a 4 KiB JSON body), each measured directly against the
//! mock and through the node in the same run, and the report that puts the
//! machine facts above the sections of the scenarios that ran.

use std::fmt::Write as _;

use bytes::Bytes;
use clap::ValueEnum;

use crate::load::Outcome;
use crate::report::{outcome_cells, Facts};

/// A named scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `GET /x` with a credential, direct and through the node.
    Plain,
    /// `POST /x` with a 4 KiB JSON body, direct and through the node.
    Post,
    /// Concurrent SSE streams (`--streams`): memory per stream, per-event
    /// delay, events/s, time to first event; replay off and on.
    Sse,
    /// Many credentials with short-lived tokens: token calls per cycle.
    Tokens,
    /// MCP sessions created on one node, used through two others.
    Mcp,
    /// Three coordinators and three nodes under load while nodes and the
    /// raft leader are killed.
    Chaos,
}

/// Size of the `post` scenario's body.
pub const POST_BYTES: usize = 4096;

/// A JSON document of exactly [`POST_BYTES`] bytes.
pub fn post_body() -> Bytes {
    let head = "{\"data\":\"";
    let tail = "\"}";
    let pad = "x".repeat(POST_BYTES - head.len() - tail.len());
    Bytes::from(format!("{head}{pad}{tail}"))
}

/// The section of a direct-versus-node pair.
pub fn http_section(title: &str, what: &str, direct: &Outcome, node: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## {title}\n");
    let _ = writeln!(s, "{what}\n");
    let _ = writeln!(s, "| path | requests | errors | req/s | p50 ms | p99 ms |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for (label, o) in [("direct", direct), ("node", node)] {
        let _ = writeln!(s, "| {label} | {} |", outcome_cells(o));
    }
    let ratio = if direct.rate() > 0.0 {
        format!("{:.2}", node.rate() / direct.rate())
    } else {
        "-".to_owned()
    };
    let added = |q: f64| match (node.quantile(q), direct.quantile(q)) {
        (Some(n), Some(d)) => format!("{:+.3}", (n.as_secs_f64() - d.as_secs_f64()) * 1e3),
        _ => "-".to_owned(),
    };
    let _ = writeln!(
        s,
        "| node / direct | | | {ratio} | {} | {} |",
        added(0.5),
        added(0.99)
    );
    let _ = writeln!(
        s,
        "\nThe last row: the req/s ratio and the latency the node adds. \\* = stopped by \
         the time limit.\n"
    );
    s
}

/// The whole `--scenario` report: facts, then each section, then the logs.
pub fn render(facts: &Facts, sections: &[String], log_dirs: &[String]) -> String {
    let mut s = String::new();
    let l = facts.limits;
    let _ = writeln!(s, "# Rhizome load test: scenarios\n");
    let _ = writeln!(s, "## Machine and settings\n");
    let _ = writeln!(s, "- Build profile: **{}**", facts.profile);
    let _ = writeln!(s, "- Cores available: **{}**", facts.cores);
    if let Some(cpu) = &facts.cpu {
        let _ = writeln!(s, "- CPU: {cpu}");
    }
    let _ = writeln!(
        s,
        "- Client, nodes, mock, Redis and coordinators share these cores and loopback: \
         figures include their competition for CPU."
    );
    let _ = writeln!(
        s,
        "- Request scenarios: up to {} measured requests after {} warmup requests, {} \
         concurrent keep-alive HTTP/1.1 connections, at most {} s per phase",
        l.requests,
        l.warmup,
        l.concurrency,
        l.max_time.as_secs()
    );
    let _ = writeln!(s, "- Node log filter: `RUST_LOG={}`\n", facts.node_log);
    for section in sections {
        s.push_str(section);
    }
    let _ = writeln!(s, "## Logs\n");
    let _ = writeln!(s, "- Captured in `{}`", facts.log_dir);
    for d in log_dirs {
        let _ = writeln!(s, "- and `{d}`");
    }
    let scan = if facts.secret_findings == 0 {
        "clean (no secret, token or client key found)".to_owned()
    } else {
        format!("**{} finding(s)**", facts.secret_findings)
    };
    let _ = writeln!(s, "- Secret scan of those logs: {scan}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_body_is_4_kib_of_json() {
        let b = post_body();
        assert_eq!(b.len(), POST_BYTES);
        let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        assert!(v["data"].is_string());
    }
}
