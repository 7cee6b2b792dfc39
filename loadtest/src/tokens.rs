//! The `tokens` scenario: one node with many OAuth credentials whose tokens
//! live only seconds (the mock's `--expires-in`), under steady load spread
//! over all of them, and the token calls the mock saw per credential. Each
//! credential refreshes `refresh_margin` (half the lifetime) before expiry,
//! so one "cycle" is the other half; the target is one token call per
//! credential per cycle. Bounded by a wall-time limit.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use http::HeaderValue;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::secrets::{self, OAUTH_SECRET_POOL};
use rhizome_tests::harness::{Env, Mock};
use serde_json::Value;
use tokio::time::Instant;

use crate::load::{self, HttpClient, Limits, Outcome, Target};

/// What the scenario measured.
#[derive(Debug)]
pub struct TokensRun {
    /// Credentials.
    pub credentials: usize,
    /// Token lifetime (`expires_in`), seconds.
    pub expires_in: u64,
    /// `refresh_margin`, seconds.
    pub margin: u64,
    /// The load.
    pub load: Outcome,
    /// Token calls per credential during the measured phase, sorted.
    pub calls: Vec<u64>,
    /// Expected refresh cycles in the measured phase.
    pub cycles: f64,
    /// Requests the mock rejected (401) and saw with an expired token.
    pub rejected: u64,
    /// Requests the mock saw with an expired token.
    pub expired: u64,
    /// Token calls that overlapped another of the same client.
    pub overlaps: u64,
    /// Log directory.
    pub env: Env,
}

/// TOML of `n` credentials `tk-1` … (clients `svc-t1` …) and routes `/t1/` ….
fn credentials(mock: &Mock, n: usize, margin: u64) -> String {
    let base = mock.base();
    (1..=n)
        .map(|i| {
            format!(
                "[[credentials]]\nname = \"tk-{i}\"\nkind = \"oauth2_client_credentials\"\n\
                 token_url = \"{base}/oauth/token\"\nclient_id = \"svc-t{i}\"\n\
                 client_secret = \"{OAUTH_SECRET_POOL}\"\nrefresh_margin = \"{margin}s\"\n\n\
                 [[routes]]\nname = \"t{i}\"\npath_prefix = \"/t{i}/\"\nstrip_prefix = true\n\
                 upstream = \"mock\"\ncredentials = [\"tk-{i}\"]\n\n"
            )
        })
        .collect()
}

/// Token calls per `svc-t*` client and the rejection counters.
async fn snapshot(mock: &Mock, n: usize) -> (Vec<u64>, u64, u64, u64) {
    let stats = mock.stats().await;
    let num = |v: &Value| v.as_u64().unwrap_or(0);
    let calls = (1..=n)
        .map(|i| num(&stats["token_calls"][format!("svc-t{i}")]))
        .collect();
    let overlaps = (1..=n)
        .map(|i| num(&stats["token_overlaps"][format!("svc-t{i}")]))
        .sum();
    (
        calls,
        num(&stats["rejected"]),
        num(&stats["expired_seen"]),
        overlaps,
    )
}

/// Runs the scenario: `n` credentials, tokens of `expires_in` seconds, load
/// for `seconds`.
pub async fn run(
    client: &HttpClient,
    n: usize,
    expires_in: u64,
    seconds: u64,
    concurrency: usize,
    node_log: &str,
) -> anyhow::Result<TokensRun> {
    let env = Env::new("loadtest-tokens");
    let expires = expires_in.to_string();
    let mut args = vec!["--expires-in".to_owned(), expires];
    for i in 1..=n {
        args.push("--client".to_owned());
        args.push(format!("svc-t{i}:{OAUTH_SECRET_POOL}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mock = fixture::mock(&env, &args).await;
    let margin = (expires_in / 2).max(1);
    let tuning = Tuning {
        // The standard credentials refresh shortly before these short expiries.
        refresh_margin: "2s",
        extra: credentials(&mock, n, margin),
        ..Tuning::default()
    };
    let cfg = fixture::config(&env, &mock, &tuning);
    let node = env
        .node_with_env(
            "node",
            &cfg,
            &[
                (fixture::SECRET_A_ENV, secrets::OAUTH_SECRET_A),
                ("RUST_LOG", node_log),
            ],
        )
        .await;
    node.wait_ready().await;
    let mut key = HeaderValue::from_str(&fixture::bearer()).context("client key")?;
    key.set_sensitive(true);
    let targets = (1..=n)
        .map(|i| {
            let url = node.url(&format!("/t{i}/x")).parse().context("URL")?;
            Ok(Target::get("tokens", url, Some(key.clone())))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Every credential has its first token before measuring.
    let warm = Limits {
        requests: 2 * n as u64,
        concurrency,
        max_time: Duration::from_secs(30),
        warmup: 0,
    };
    load::run_many(client, &targets, warm).await;
    let (c0, r0, e0, o0) = snapshot(&mock, n).await;
    let limits = Limits {
        requests: 10_000_000,
        concurrency,
        max_time: Duration::from_secs(seconds),
        warmup: 0,
    };
    let began = Instant::now();
    let load = load::run_many(client, &targets, limits).await;
    let elapsed = began.elapsed();
    let (c1, r1, e1, o1) = snapshot(&mock, n).await;
    let mut calls: Vec<u64> = c1.iter().zip(&c0).map(|(a, b)| a - b.min(a)).collect();
    calls.sort_unstable();
    let cycle = (expires_in - margin).max(1) as f64;
    Ok(TokensRun {
        credentials: n,
        expires_in,
        margin,
        load,
        calls,
        cycles: elapsed.as_secs_f64() / cycle,
        rejected: r1.saturating_sub(r0),
        expired: e1.saturating_sub(e0),
        overlaps: o1.saturating_sub(o0),
        env,
    })
}

/// The Markdown section.
pub fn render(t: &TokensRun) -> String {
    let mut s = String::new();
    let o = &t.load;
    let total: u64 = t.calls.iter().sum();
    let per = total as f64 / (t.credentials as f64 * t.cycles.max(1e-9));
    let _ = writeln!(s, "## Scenario `tokens`: short-lived tokens\n");
    let _ = writeln!(
        s,
        "{} OAuth credentials, tokens living {} s, `refresh_margin = \"{}s\"` (one cycle \
         = {} s); {} requests spread evenly over them in {:.1} s ({:.0} req/s, {} errors), \
         {:.2} cycles.\n",
        t.credentials,
        t.expires_in,
        t.margin,
        t.expires_in - t.margin,
        o.requests,
        o.elapsed.as_secs_f64(),
        o.rate(),
        o.errors,
        t.cycles
    );
    let _ = writeln!(s, "| measure | value |");
    let _ = writeln!(s, "|---|---:|");
    let _ = writeln!(s, "| token calls, all credentials | {total} |");
    let _ = writeln!(
        s,
        "| token calls per credential: min / max | {} / {} |",
        t.calls.first().copied().unwrap_or(0),
        t.calls.last().copied().unwrap_or(0)
    );
    let _ = writeln!(s, "| token calls per credential per cycle | {per:.2} |");
    let _ = writeln!(
        s,
        "| overlapping token calls of one client | {} |",
        t.overlaps
    );
    let _ = writeln!(s, "| requests the mock rejected | {} |", t.rejected);
    let _ = writeln!(s, "| requests with an expired token | {} |", t.expired);
    let _ = writeln!(
        s,
        "\nToken calls are the mock's `/_mock/stats` counters over the measured phase \
         (after every credential had its first token).\n"
    );
    s
}
