//! The monitoring kit under `deploy/` fits the binaries it watches: the
//! Grafana dashboard is a well-formed model whose every panel queries
//! Prometheus through the dashboard's datasource variable with PromQL that
//! `promtool` accepts; every `rhizome_*` metric it queries is one a real
//! node or coordinator exports, and every metric family they export (and
//! every one their code describes) is on a panel; the example Prometheus
//! configuration and alert rules pass `promtool check config` and their own
//! `promtool test rules` unit tests, and alert on exported metrics only.
//!
//! The export check runs real processes (two nodes sharing Redis, three
//! coordinators) and drives the traffic that makes each lazily registered
//! series appear: the exporter renders a metric only once it was recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::Method;
use rhizome_tests::harness::coordinator::Coordinators;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::sse::{Event, Reader};
use rhizome_tests::harness::{mcp, metrics, wait_for, Env, Node};
use serde_json::{json, Value};

/// The repository root.
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// Deadline of each wait on the running cluster.
const WAIT: Duration = Duration::from_secs(20);
/// The name of the dashboard's datasource variable, and how panels name it.
const DATASOURCE_VAR: &str = "datasource";
const DATASOURCE_REF: &str = "${datasource}";
/// The Prometheus job names the example scrape configuration uses.
const JOBS: [&str; 2] = ["rhizome-node", "rhizome-coordinator"];

fn repo_path(rel: &str) -> PathBuf {
    Path::new(REPO).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/rhizome.json"))
        .unwrap_or_else(|e| panic!("deploy/grafana/rhizome.json is not JSON: {e}"))
}

/// Every panel, rows' nested (collapsed) panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// `(panel title, refId, expr)` of every query target.
fn exprs(dash: &Value) -> Vec<(String, String, String)> {
    panels(dash)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"].as_array().into_iter().flatten().map(move |t| {
                (
                    title.clone(),
                    t["refId"].as_str().unwrap_or("?").to_string(),
                    t["expr"].as_str().unwrap_or("").to_string(),
                )
            })
        })
        .collect()
}

/// The queries of the dashboard's template variables.
fn variable_queries(dash: &Value) -> Vec<String> {
    dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .filter_map(|v| {
            v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .map(str::to_string)
        })
        .collect()
}

/// Every `rhizome_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("rhizome_") {
        let start = from + at;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        };
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(text.len() - start);
        if boundary {
            out.insert(text[start..end].to_string());
        }
        from = end;
    }
    out
}

/// The family a queried name belongs to: a histogram's `_bucket`, `_sum`
/// and `_count` series belong to the histogram.
fn family(name: &str, histograms: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if histograms.contains(base) {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

/// Metric families (name → type) in Prometheus text, from its `# TYPE` lines.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("# TYPE ")?.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

/// Metrics the code describes (`describe_counter!("name", …)` and the
/// gauge and histogram forms) in the `.rs` files under `dir`, with their type.
fn described(dir: &str) -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read source dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo_path(dir), &mut files);
    let mut out = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for kind in ["counter", "gauge", "histogram"] {
            let mac = format!("describe_{kind}!(");
            for (at, _) in text.match_indices(&mac) {
                let rest = text[at + mac.len()..].trim_start();
                let Some(rest) = rest.strip_prefix('"') else {
                    continue;
                };
                let name = &rest[..rest.find('"').expect("closing quote")];
                out.insert(name.to_string(), kind.to_string());
            }
        }
    }
    out
}

/// Every metric the node and the coordinator describe, with its type.
fn described_everywhere() -> BTreeMap<String, String> {
    let mut all = described("node/src");
    all.extend(described("coordinator/src"));
    assert!(
        all.len() > 10,
        "found only {all:?} described: has the describe_* form changed?"
    );
    all
}

fn histograms(types: &BTreeMap<String, String>) -> BTreeSet<String> {
    types
        .iter()
        .filter(|(_, t)| *t == "histogram")
        .map(|(n, _)| n.clone())
        .collect()
}

/// The metric families the dashboard queries (panels and variables).
fn dashboard_families(dash: &Value, hist: &BTreeSet<String>) -> BTreeSet<String> {
    exprs(dash)
        .into_iter()
        .map(|(_, _, e)| e)
        .chain(variable_queries(dash))
        .flat_map(|e| metric_names(&e))
        .map(|n| family(&n, hist))
        .collect()
}

/// Runs `promtool ARGS` in `dir`; panics with its output on failure.
fn promtool(dir: &Path, args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (scripts/test.sh installs the prometheus package)");
    assert!(
        out.status.success(),
        "promtool {} failed in {}:\n{}{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dashboard_is_a_grafana_model_whose_panels_query_prometheus_through_its_variable() {
    let dash = dashboard();
    assert!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion {} (Grafana 10+ models are 36 and up)",
        dash["schemaVersion"]
    );
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dash["uid"].as_str().is_some_and(|t| !t.is_empty()));

    let vars: BTreeMap<&str, &Value> = dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().expect("variable name"), v))
        .collect();
    let ds = vars
        .get(DATASOURCE_VAR)
        .unwrap_or_else(|| panic!("no `{DATASOURCE_VAR}` variable: {:?}", vars.keys()));
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["job", "instance"] {
        let v = vars
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` variable"));
        assert_eq!(v["type"], "query", "`{name}`");
        assert_eq!(v["datasource"]["uid"], DATASOURCE_REF, "`{name}`");
    }

    let all = panels(&dash);
    assert!(all.len() > 10, "only {} panels", all.len());
    let mut ids = BTreeSet::new();
    for p in &all {
        let title = p["title"].as_str().unwrap_or("?");
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title:?} has no numeric id"));
        assert!(ids.insert(id), "panel id {id} ({title:?}) is not unique");
        let grid = &p["gridPos"];
        let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
        assert!(
            matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24),
            "panel {title:?}: gridPos {grid} does not fit 24 columns"
        );
        if p["type"] == "row" {
            continue;
        }
        assert!(
            p["description"].as_str().is_some_and(|d| !d.is_empty()),
            "panel {title:?} says nothing about what it shows"
        );
        assert_eq!(
            p["datasource"]["uid"], DATASOURCE_REF,
            "panel {title:?} must query through the `{DATASOURCE_VAR}` variable"
        );
        let targets = p["targets"]
            .as_array()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("panel {title:?} has no targets"));
        let mut refs = BTreeSet::new();
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or("");
            assert!(
                !expr.trim().is_empty(),
                "panel {title:?}: a target without expr"
            );
            assert!(
                refs.insert(t["refId"].as_str().unwrap_or("")),
                "panel {title:?}: refId repeated"
            );
            assert_eq!(
                t["datasource"]["uid"], DATASOURCE_REF,
                "panel {title:?}: target {expr}"
            );
            for var in ["$job", "$instance"] {
                assert!(
                    expr.contains(var),
                    "panel {title:?}: {expr} ignores the {var} variable"
                );
            }
        }
    }
}

#[test]
fn every_dashboard_query_is_promql_that_promtool_accepts() {
    let dash = dashboard();
    // Each expression becomes a recording rule, Grafana's variables
    // replaced by what they expand to, and `promtool check rules` parses it.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (title, refid, expr)) in exprs(&dash).into_iter().enumerate() {
        let mut e = expr
            .replace("$__rate_interval", "5m")
            .replace("${__rate_interval}", "5m");
        for var in ["job", "instance", "route", "credential"] {
            e = e
                .replace(&format!("${{{var}}}"), ".*")
                .replace(&format!("${var}"), ".*");
        }
        assert!(
            !e.contains('$'),
            "panel {title:?} {refid}: unknown variable in {expr}"
        );
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&e).expect("quote")
        ));
    }
    let env = Env::new("deploy-promql");
    env.write("dashboard-rules.yml", rules);
    promtool(&env.dir, &["check", "rules", "dashboard-rules.yml"]);
}

#[test]
fn the_dashboard_shows_exactly_the_metrics_the_code_describes() {
    let described = described_everywhere();
    let hist = histograms(&described);
    let on_dashboard = dashboard_families(&dashboard(), &hist);
    let names: BTreeSet<String> = described.keys().cloned().collect();
    let missing: Vec<_> = names.difference(&on_dashboard).collect();
    assert!(
        missing.is_empty(),
        "described by node/ or coordinator/ but on no dashboard panel: {missing:?}"
    );
    let unknown: Vec<_> = on_dashboard.difference(&names).collect();
    assert!(
        unknown.is_empty(),
        "queried by the dashboard but described nowhere in the code: {unknown:?}"
    );
}

#[test]
fn the_prometheus_example_and_its_alerts_pass_promtool_and_use_exported_metrics() {
    let dir = repo_path("deploy/prometheus");
    // Checks the configuration and the rule files it loads.
    promtool(&dir, &["check", "config", "prometheus.yml"]);
    // Each alert fires on the failure it names and stays quiet otherwise.
    promtool(&dir, &["test", "rules", "rhizome-alerts.test.yml"]);

    let config = read("deploy/prometheus/prometheus.yml");
    for job in JOBS {
        assert!(
            config.contains(&format!("job_name: {job}")),
            "prometheus.yml has no `{job}` job"
        );
    }
    for target in ["node1:9090", "node3:9090", "coordinator1:7070"] {
        assert!(config.contains(target), "prometheus.yml misses {target}");
    }
    let rules = read("deploy/prometheus/rhizome-alerts.yml");
    let described = described_everywhere();
    let hist = histograms(&described);
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        for name in metric_names(line) {
            let fam = family(&name, &hist);
            assert!(
                described.contains_key(&fam),
                "alert rule uses {name}, which no binary describes: {line}"
            );
        }
        for job in line.match_indices("job=\"").map(|(at, _)| &line[at + 5..]) {
            let job = &job[..job.find('"').expect("closing quote")];
            assert!(
                JOBS.contains(&job),
                "alert rule names job {job:?}, not a job of prometheus.yml"
            );
        }
    }
    for alert in [
        "RhizomeNoRaftLeader",
        "RhizomeOwnershipDegraded",
        "RhizomeRedisDown",
        "RhizomeCredentialCooldown",
        "RhizomeSseGapsRising",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}")),
            "no {alert} alert"
        );
    }
}

/// `[routes.sse]` of route `e`: resumable, with a small buffer so that an
/// old id is a gap, and a short producer lease so a takeover comes quickly.
const REPLAY: &str = "replay = true\non_client_disconnect = \"detach\"\ndetach_grace = \"20s\"\n\
                      buffer_events = 20\nproducer_lease = \"1s\"";

/// Opens an SSE stream on `node` as the test client, resuming after `last`.
async fn sse(node: &Node, path: &str, last: Option<&str>) -> Reader {
    let auth = fixture::bearer();
    let mut h = vec![
        ("authorization", auth.as_str()),
        ("accept", "text/event-stream"),
    ];
    if let Some(id) = last {
        h.push(("last-event-id", id));
    }
    let resp = Client::new()
        .open(Method::GET, &node.url(path), &h, "")
        .await;
    assert_eq!(resp.status(), 200, "GET {path} (last id {last:?})");
    Reader::new(resp.into_body())
}

async fn take(reader: &mut Reader, n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(reader.next(WAIT).await.expect("an event"));
    }
    out
}

fn id(ev: &Event) -> String {
    ev.id.clone().expect("a Rhizome event id")
}

/// `/metrics` of `url`, scraped as Prometheus does: no credentials.
async fn scrape(url: &str) -> String {
    let r = Client::new().get(url, &[]).await;
    assert_eq!(r.status, 200, "GET {url} without a token");
    r.text()
}

/// Waits until `node` exports a series starting with `series`.
async fn wait_series(node: &Node, series: &str) {
    wait_for(&format!("{series} on {}", node.admin), WAIT, || async {
        let text = node.metrics_text().await;
        text.lines().any(|l| l.starts_with(series)).then_some(())
    })
    .await
}

#[tokio::test]
async fn every_dashboard_metric_is_exported_and_every_exported_family_is_on_the_dashboard() {
    let env = Env::new("deploy");
    let redis = env.redis().await;
    let mock = fixture::mock(&env, &[]).await;
    // redis-lock, with the 1 s op_timeout the cluster tests use: on a
    // loaded 2-core machine a 250 ms probe can time out and open the breaker.
    let tuning = Tuning {
        sse: REPLAY,
        extra: format!(
            "[state]\nbackend = \"redis\"\nredis_url = \"{}\"\nop_timeout = \"1s\"\n\n\
             [coordinator]\nmode = \"redis-lock\"\n\n\
             # A limited client: its limit metrics are exported from the start.\n\
             [[clients]]\nname = \"limited\"\nkey = \"ck-limited-deploy\"\n\
             rate = \"100/s\"\nmax_streams = 10\n",
            redis.url()
        ),
        ..Tuning::default()
    };
    let nodes = vec![
        fixture::node(&env, "n1", &mock, &tuning).await,
        fixture::node(&env, "n2", &mock, &tuning).await,
    ];
    let coords = Coordinators::start(&env, 3).await;
    coords.leader().await;
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let c = Client::new();
    let auth = fixture::bearer();
    let h = [("authorization", auth.as_str())];

    // Requests, upstream timings, a token call, Redis operations.
    assert_eq!(c.get(&n1.url("/a/x"), &h).await.status, 200);
    // A rotated token: upstream's 401 is retried with a fresh one.
    mock.control("/_mock/rotate", json!({})).await;
    assert_eq!(c.get(&n1.url("/a/y"), &h).await.status, 200);
    wait_series(
        n1,
        "rhizome_upstream_retries_total{reason=\"unauthorized\"}",
    )
    .await;
    // A token endpoint that fails: a counted failure sets the cooldown gauge.
    mock.control("/_mock/config", json!({"fail_clients": ["svc-b"]}))
        .await;
    assert_ne!(c.get(&n2.url("/b/x"), &h).await.status, 200);
    wait_series(n2, "rhizome_credential_cooldown{credential=\"oauth-b\"}").await;
    // An MCP session.
    let init = mcp::call(n1, None, "initialize").await;
    assert_eq!(init.status, 200, "{}", init.text());
    assert!(init.header("mcp-session-id").is_some());

    // A whole stream through n1, then resumes through n2: one from an id
    // older than the buffer keeps (Redis trims in whole blocks of 100,
    // so 300 events with buffer_events = 20 drop the first ones: a gap), one from a recent id
    // (replayed events).
    let events = sse(n1, "/e/sse?count=300&interval_ms=1", None)
        .await
        .rest(WAIT)
        .await;
    assert_eq!(events.len(), 300);
    let mut gap = sse(n2, "/e/sse?count=300&interval_ms=1", Some(&id(&events[4]))).await;
    let first = gap.next(WAIT).await.expect("the gap event");
    assert_eq!(first.event.as_deref(), Some("rhizome-gap"));
    let replay = sse(
        n2,
        "/e/sse?count=300&interval_ms=1",
        Some(&id(&events[289])),
    )
    .await
    .rest(WAIT)
    .await;
    assert_eq!(replay.len(), 10, "events 291..=300 replayed");

    // A stream whose producer (n1) dies: n2 takes it over. n1 is scraped
    // first, while it lives.
    let path = "/e/sse?to=200&interval_ms=50&honour_last_event_id=1";
    let mut live = sse(n1, path, None).await;
    let seen = take(&mut live, 5).await;
    let mut node_texts = vec![scrape(&n1.admin_url("/metrics")).await];
    n1.proc.signal("KILL");
    drop(live);
    let mut resumed = sse(n2, path, Some(&id(&seen[4]))).await;
    take(&mut resumed, 10).await;
    wait_series(n2, "rhizome_sse_takeovers_total{route=\"e\"}").await;
    drop(resumed);
    // The session gauge is set by a recount every 5 s (the first one may
    // come before Redis answered).
    wait_series(n2, "rhizome_sessions_active ").await;
    node_texts.push(scrape(&n2.admin_url("/metrics")).await);

    let mut coord_texts = Vec::new();
    for id in coords.ids() {
        coord_texts.push(scrape(&coords.url(id, "/metrics")).await);
    }
    for text in node_texts.iter().chain(&coord_texts) {
        metrics::assert_promtool_clean(text);
    }

    let mut exported = BTreeMap::new();
    for text in node_texts.iter().chain(&coord_texts) {
        exported.extend(families(text));
    }
    let exported: BTreeMap<String, String> = exported
        .into_iter()
        .filter(|(n, _)| n.starts_with("rhizome_"))
        .collect();
    let hist = histograms(&exported);
    let on_dashboard = dashboard_families(&dashboard(), &hist);
    let names: BTreeSet<String> = exported.keys().cloned().collect();

    let not_exported: Vec<_> = on_dashboard.difference(&names).collect();
    assert!(
        not_exported.is_empty(),
        "the dashboard queries metrics no node or coordinator exported: {not_exported:?}\nexported: {names:?}"
    );
    let not_shown: Vec<_> = names.difference(&on_dashboard).collect();
    assert!(
        not_shown.is_empty(),
        "exported but on no dashboard panel: {not_shown:?}"
    );
    // Every metric the code describes showed up: none is described but
    // never recorded (or this test would need traffic that records it).
    let described = described_everywhere();
    let silent: Vec<_> = described
        .keys()
        .filter(|n| !exported.contains_key(*n))
        .collect();
    assert!(
        silent.is_empty(),
        "described in the code but not exported after this test's traffic: {silent:?}"
    );
    for (name, kind) in &described {
        assert_eq!(
            exported.get(name),
            Some(kind),
            "{name} is described as a {kind}"
        );
    }
    drop(nodes);
    env.assert_logs_clean();
}

#[test]
fn metric_names_are_found_whole_and_histogram_series_map_to_their_family() {
    let names = metric_names(
        "histogram_quantile(0.9, sum by (le) (rate(rhizome_a_seconds_bucket{x=\"rhizome_no\"}[5m]))) / my_rhizome_b + rhizome_c",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["rhizome_a_seconds_bucket", "rhizome_c", "rhizome_no"]
    );
    let hist: BTreeSet<String> = ["rhizome_a_seconds".to_string()].into();
    assert_eq!(
        family("rhizome_a_seconds_bucket", &hist),
        "rhizome_a_seconds"
    );
    assert_eq!(family("rhizome_b_count", &hist), "rhizome_b_count");
}
