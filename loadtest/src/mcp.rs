//! The `mcp` scenario: three nodes sharing Redis (`redis-lock`), MCP
//! sessions created through the first node and then used through the other
//! two (`tools/list` on each session, round robin over sessions and nodes):
//! requests/s, latency and failures, and whether every request reached the
//! upstream session it belongs to. Bounded by a request count and wall time.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::{mcp, Env};
use serde_json::json;

use crate::load::{self, HttpClient, Limits, Outcome, Target};
use crate::report::outcome_cells;

/// What the scenario measured.
#[derive(Debug)]
pub struct McpRun {
    /// Sessions asked for.
    pub sessions: u32,
    /// Sessions created (initialize answered 200 with a session id).
    pub created: u32,
    /// The load over the other nodes.
    pub load: Outcome,
    /// Upstream sessions the mock created.
    pub upstream_sessions: u64,
    /// Sessions ended with `DELETE` at the end (through the last node).
    pub deleted: u32,
    /// Log directory.
    pub env: Env,
}

/// Runs the scenario with `sessions` sessions under `limits`.
pub async fn run(client: &HttpClient, sessions: u32, limits: Limits) -> anyhow::Result<McpRun> {
    let cluster = fixture::cluster("loadtest-mcp", &[], 3, Tuning::default()).await;
    let [first, others @ ..] = cluster.nodes.as_slice() else {
        bail!("no nodes");
    };
    let mut ids = Vec::new();
    for _ in 0..sessions {
        let r = mcp::call(first, None, "initialize").await;
        if r.status != 200 {
            continue;
        }
        if let Some(id) = r.header("mcp-session-id") {
            ids.push(id.to_owned());
        }
    }
    let mut key = HeaderValue::from_str(&fixture::bearer()).context("client key")?;
    key.set_sensitive(true);
    let body = Bytes::from(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string());
    let mut targets = Vec::new();
    for id in &ids {
        for node in others {
            let mut session = HeaderValue::from_str(id).context("session id")?;
            session.set_sensitive(true);
            targets.push(Target {
                name: "mcp",
                url: node.url(mcp::PATH).parse().context("URL")?,
                authorization: Some(key.clone()),
                body: Some(body.clone()),
                headers: vec![
                    (
                        http::header::ACCEPT,
                        HeaderValue::from_static("application/json, text/event-stream"),
                    ),
                    (HeaderName::from_static("mcp-session-id"), session),
                ],
            });
        }
    }
    eprintln!(
        "running mcp: {} sessions over {} nodes",
        ids.len(),
        others.len()
    );
    let load = load::run_many(client, &targets, limits).await;
    let upstream_sessions = cluster.mock.stats().await["mcp_sessions_created"]
        .as_u64()
        .unwrap_or(0);
    let mut deleted = 0;
    if let Some(last) = others.last() {
        for id in &ids {
            if mcp::delete(last, id).await.status / 100 == 2 {
                deleted += 1;
            }
        }
    }
    Ok(McpRun {
        sessions,
        created: u32::try_from(ids.len()).unwrap_or(u32::MAX),
        load,
        upstream_sessions,
        deleted,
        env: cluster.env,
    })
}

/// The Markdown section.
pub fn render(m: &McpRun, limits: Limits) -> String {
    let mut s = String::new();
    let o = &m.load;
    let _ = writeln!(s, "## Scenario `mcp`: sessions across nodes\n");
    let _ = writeln!(
        s,
        "Three nodes on one Redis (`redis-lock`). {} of {} sessions created through node 1 \
         (the mock created {} upstream sessions), then `tools/list` on every session \
         through nodes 2 and 3 in turn, {} concurrent keep-alive connections, up to {} \
         requests or {} s; {} sessions ended with `DELETE` through node 3 afterwards.\n",
        m.created,
        m.sessions,
        m.upstream_sessions,
        limits.concurrency,
        limits.requests,
        limits.max_time.as_secs(),
        m.deleted,
    );
    let _ = writeln!(s, "| requests | failed | req/s | p50 ms | p99 ms |");
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|");
    let _ = writeln!(s, "| {} |", outcome_cells(o));
    let _ = writeln!(
        s,
        "\nfailed: non-2xx answers, transport errors and timeouts. \\* = stopped by the \
         time limit.\n"
    );
    s
}
