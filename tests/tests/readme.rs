//! The README, run as a newcomer would run it: the quick start
//! (`scripts/quickstart.sh`, on free ports), the curl lines it prints, and
//! every marked shell block of the walk-through, `check-config` and Redis
//! sections, each command checked for what the README says it shows. Also:
//! nothing is left running, nothing noisy or secret is logged, and the docs'
//! links resolve inside the repository. Conventions: `docs/readme-test.md`.

#[path = "readme/shell.rs"]
mod shell;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rhizome_tests::harness::{bin_dir, wait_for, Env};
use serde_json::Value;
use shell::{Block, Group, Step, REPO};

/// Upper bound on one block's run (its slowest commands are SSE streams of a
/// few seconds).
const BLOCK_DEADLINE: Duration = Duration::from_secs(60);

/// The walk-through's commands, in order: a name and a fragment the command
/// must contain.
const WALKTHROUGH: &[(&str, &str)] = &[
    ("key", "K='authorization: Bearer demo-client-key'"),
    ("hello", "localhost:8080/api/hello -H \"$K\""),
    ("no-key", "localhost:8080/api/hello"),
    ("sse", "/api/sse?count=5&interval_ms=500"),
    ("intent", "localhost:8080/v1/proxy"),
    ("credentials", "localhost:9090/admin/v1/credentials -H"),
    ("calls-before", "localhost:9999/_mock/stats"),
    ("rotate", "localhost:9999/_mock/rotate"),
    ("after-rotation", "localhost:8080/api/after-rotation"),
    ("calls-after", "localhost:9999/_mock/stats"),
    ("metrics", "localhost:9090/metrics"),
    ("refresh", "/admin/v1/credentials/demo-oauth/refresh"),
    (
        "drop",
        "-X DELETE localhost:9090/admin/v1/credentials/demo-oauth/token",
    ),
    ("after-drop", "localhost:8080/api/after-delete"),
    ("calls-end", "localhost:9999/_mock/stats"),
    ("healthz", "localhost:9090/healthz"),
    ("readyz", "localhost:9090/readyz"),
    ("openapi", "localhost:9090/openapi.json"),
];

const CHECK_CONFIG: &[(&str, &str)] = &[
    (
        "without-secret",
        "rhizome-node check-config examples/quickstart.toml",
    ),
    ("with-secret", "DEMO_CLIENT_SECRET=demo-secret"),
];

const REDIS: &[(&str, &str)] = &[
    ("redis", "redis-server --port 6379 --bind 127.0.0.1"),
    ("secret", "export DEMO_CLIENT_SECRET=demo-secret"),
    ("n1", "--node-id n1"),
    ("n2", "--node-id n2"),
    ("ready", "localhost:9091/readyz"),
    ("key", "K='authorization: Bearer demo-client-key'"),
    ("reset", "localhost:9999/_mock/reset"),
    (
        "two-requests",
        "localhost:8081/api/a -H \"$K\"; curl -s localhost:8082/api/b",
    ),
    ("calls", "localhost:9999/_mock/stats"),
    ("initialize", "P=$(curl -si localhost:8081/mcp-demo/mcp"),
    ("tools-list", "localhost:8082/mcp-demo/mcp"),
    ("sessions", "localhost:9092/admin/v1/sessions"),
];

/// The resumable-SSE walk-through, run in the same shell right after
/// [`REDIS`] (its job numbers and `$K` carry over).
const REDIS_REPLAY: &[(&str, &str)] = &[
    (
        "first",
        "timeout 2 curl -sN 'localhost:8081/events/sse?to=30",
    ),
    ("last", "LAST=$(grep '^id:' seen.txt"),
    ("streams", "localhost:9092/admin/v1/streams"),
    ("kill-n1", "kill %2; wait %2"),
    ("resume", "-H \"Last-Event-ID: $LAST\""),
    ("takeovers", "grep '^rhizome_sse_takeovers_total'"),
    ("stop", "kill %3; wait %3; kill %1"),
];

/// The cluster walk-through: Redis, three coordinators, three nodes, the
/// owner of a credential killed.
const CLUSTER: &[(&str, &str)] = &[
    ("redis", "redis-server --port 6379 --bind 127.0.0.1"),
    ("peers", "PEERS=1=http://127.0.0.1:7070"),
    ("c1", "--id 1 --listen 127.0.0.1:7070"),
    ("c2", "--id 2 --listen 127.0.0.1:7071"),
    ("c3", "--id 3 --listen 127.0.0.1:7072"),
    ("leader", "until curl -s localhost:7070/v1/cluster"),
    ("secret", "export DEMO_CLIENT_SECRET=demo-secret"),
    ("n1", "--node-id n1 --listen 127.0.0.1:8083"),
    ("n2", "--node-id n2 --listen 127.0.0.1:8084"),
    ("n3", "--node-id n3 --listen 127.0.0.1:8085"),
    ("joined", "grep -o '\"live\":true' | wc -l"),
    ("cluster", "curl -s localhost:7071/v1/cluster"),
    ("key", "K='authorization: Bearer demo-client-key'"),
    (
        "two-requests",
        "localhost:8083/api/a -H \"$K\"; curl -s localhost:8085/api-b/b",
    ),
    ("owners", "localhost:9094/admin/v1/credentials"),
    ("owner", "O=$(curl -s localhost:7070/v1/cluster"),
    ("kill-owner", "kill -9 %$((4 + O))"),
    ("moved", "until ! curl -s localhost:7070/v1/cluster"),
    ("after", "curl -s localhost:7070/v1/cluster"),
    ("reset", "localhost:9999/_mock/reset"),
    ("drop", "/admin/v1/credentials/demo-oauth/token"),
    ("statuses", "/api/after"),
    ("calls", "localhost:9999/_mock/stats"),
    ("stop", "kill %5 %6 %7"),
];

/// Free loopback ports standing in for the README's fixed ones.
struct Ports(HashMap<u16, u16>);

impl Ports {
    fn new() -> Ports {
        let readme = [
            8080, 9090, 9999, 8081, 9091, 8082, 9092, 6379, 7070, 7071, 7072, 8083, 9093, 8084,
            9094, 8085, 9095,
        ];
        // Hold every listener until all are chosen, so the ports differ.
        let held: Vec<_> = readme
            .iter()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
            .collect();
        let free = held.iter().map(|l| l.local_addr().expect("addr").port());
        Ports(readme.iter().copied().zip(free).collect())
    }

    fn of(&self, readme_port: u16) -> u16 {
        self.0[&readme_port]
    }

    /// What the README's commands name, and what the test runs instead.
    fn substitutions(&self, env: &Env) -> Vec<(String, String)> {
        let bin = bin_dir().join("rhizome-node");
        let coordinator = bin_dir().join("rhizome-coordinator");
        let mut pairs = vec![
            (
                "examples/redis-lock.toml".to_string(),
                env.path("redis-lock.toml").display().to_string(),
            ),
            (
                "examples/cluster.toml".to_string(),
                env.path("cluster.toml").display().to_string(),
            ),
            (
                "target/release/rhizome-coordinator".to_string(),
                coordinator.display().to_string(),
            ),
            ("examples/".to_string(), format!("{REPO}/examples/")),
            (
                "target/release/rhizome-node".to_string(),
                bin.display().to_string(),
            ),
            (
                "--port 6379".to_string(),
                format!("--port {}", self.of(6379)),
            ),
        ];
        for (readme, free) in &self.0 {
            pairs.push((format!(":{readme}"), format!(":{free}")));
        }
        pairs
    }
}

/// Matches a block's commands against `expected`, in order, runs them, and
/// checks that each exits 0, except those named in `failing`, which must fail.
async fn run_block(
    env: &Env,
    block: &Block,
    expected: &[(&'static str, &str)],
    failing: &[&str],
    subst: &[(String, String)],
) -> HashMap<&'static str, Step> {
    let listed: Vec<&str> = expected.iter().map(|(_, f)| *f).collect();
    assert_eq!(
        block.commands.len(),
        expected.len(),
        "README block `{}` has {} commands, tests/tests/readme.rs checks {}; commands:\n{:#?}\nchecked:\n{listed:#?}",
        block.name,
        block.commands.len(),
        expected.len(),
        block.commands,
    );
    for (i, (cmd, (name, fragment))) in block.commands.iter().zip(expected).enumerate() {
        assert!(
            cmd.contains(fragment),
            "README block `{}` command {i} (`{name}` in the test) should contain {fragment:?}: {cmd}",
            block.name
        );
    }
    let commands: Vec<String> = block
        .commands
        .iter()
        .map(|c| shell::substitute(c, subst))
        .collect();
    let steps = shell::run(&env.dir, &block.name, &commands, BLOCK_DEADLINE).await;
    for ((name, _), s) in expected.iter().zip(&steps) {
        let ok = (s.status == 0) != failing.contains(name);
        assert!(ok, "`{}` exited {}: {}", s.command, s.status, s.out);
    }
    expected.iter().map(|(n, _)| *n).zip(steps).collect()
}

fn json(step: &Step) -> Value {
    serde_json::from_str(&step.out)
        .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}): {}", step.command, step.out))
}

/// The number in a `"token_calls_total":N` line.
fn token_calls(step: &Step) -> u64 {
    step.out
        .strip_prefix("\"token_calls_total\":")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("`{}` printed no token count: {}", step.command, step.out))
}

/// An echo of the demo upstream, for `path`, authenticated as `svc-demo`.
fn assert_echo(doc: &Value, path: &str) {
    assert_eq!(doc["path"], path, "{doc}");
    assert_eq!(doc["credential"]["kind"], "oauth", "{doc}");
    assert_eq!(doc["credential"]["client_id"], "svc-demo", "{doc}");
    assert_eq!(doc["headers"]["authorization"], "<redacted>", "{doc}");
}

/// Starts `scripts/quickstart.sh` on `ports` and waits for its banner.
async fn start_quickstart(env: &Env, ports: &Ports) -> (tokio::process::Child, Group) {
    let vars = [
        ("QUICKSTART_PROXY_PORT", ports.of(8080).to_string()),
        ("QUICKSTART_ADMIN_PORT", ports.of(9090).to_string()),
        ("QUICKSTART_MOCK_PORT", ports.of(9999).to_string()),
        ("QUICKSTART_BIN_DIR", bin_dir().display().to_string()),
    ];
    let log = env.path("quickstart.log");
    let script = Path::new(REPO).join("scripts/quickstart.sh");
    let mut child = shell::spawn_group(&script, &[], &vars, &env.dir, &log);
    let group = Group(child.id().expect("pid"));
    wait_for(
        "scripts/quickstart.sh to say it is ready",
        Duration::from_secs(60),
        || {
            let exited = child.try_wait().ok().flatten();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move {
                assert!(
                    exited.is_none(),
                    "quickstart.sh exited ({exited:?}):\n{text}"
                );
                text.contains("Rhizome is ready").then_some(())
            }
        },
    )
    .await;
    (child, group)
}

/// The curl lines the quick start's banner prints: each must work as printed.
async fn run_printed_curls(env: &Env) {
    let text = std::fs::read_to_string(env.path("quickstart.log")).expect("quickstart log");
    let printed: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("curl "))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        printed.len(),
        4,
        "the banner prints four curl lines:\n{text}"
    );
    let steps = shell::run(&env.dir, "printed", &printed, BLOCK_DEADLINE).await;
    assert_echo(&json(&steps[0]), "/hello");
    assert_eq!(json(&steps[1])["error"]["code"], "client_unauthorized");
    assert_eq!(
        steps[2].out.matches("event: tick").count(),
        3,
        "{}",
        steps[2].out
    );
    assert!(
        steps[3].out.starts_with("rhizome_requests_total{"),
        "{}",
        steps[3].out
    );
}

fn check_walkthrough(s: &HashMap<&str, Step>) {
    assert!(s["key"].out.is_empty());
    assert_echo(&json(&s["hello"]), "/hello");
    let refused = json(&s["no-key"]);
    assert_eq!(refused["error"]["code"], "client_unauthorized", "{refused}");
    assert!(refused["error"]["request_id"].is_string(), "{refused}");

    let sse = &s["sse"].out;
    assert_eq!(sse.matches("event: tick").count(), 5, "{sse}");
    assert!(sse.contains("id: 5"), "{sse}");

    let intent = json(&s["intent"]);
    assert_eq!(intent["status"], 200, "{intent}");
    assert_eq!(intent["json"]["method"], "POST", "{intent}");
    assert_echo(&intent["json"], "/orders");

    let creds = json(&s["credentials"]);
    assert_eq!(creds["credentials"][0]["name"], "demo-oauth", "{creds}");
    assert_eq!(creds["credentials"][0]["has_token"], true, "{creds}");

    // The rotation demo: one 401, one more token call, one retry.
    let before = token_calls(&s["calls-before"]);
    assert!(before >= 1, "the first request fetched a token");
    assert!(json(&s["rotate"])["rotated"].as_u64() >= Some(1));
    assert_echo(&json(&s["after-rotation"]), "/after-rotation");
    assert_eq!(
        token_calls(&s["calls-after"]),
        before + 1,
        "exactly one refresh"
    );
    let metrics = &s["metrics"].out;
    assert!(
        metrics
            .lines()
            .any(|l| l == "rhizome_upstream_retries_total{reason=\"unauthorized\"} 1"),
        "one retry for a 401:\n{metrics}"
    );
    assert!(
        metrics.contains("rhizome_token_refresh_total{"),
        "{metrics}"
    );
    assert!(metrics.contains("rhizome_requests_total{"), "{metrics}");

    // A forced refresh is one call; dropping the token costs the next request one.
    let refreshed = json(&s["refresh"]);
    assert_eq!(refreshed["name"], "demo-oauth", "{refreshed}");
    assert_eq!(json(&s["drop"])["name"], "demo-oauth");
    assert_echo(&json(&s["after-drop"]), "/after-delete");
    assert_eq!(token_calls(&s["calls-end"]), before + 3);

    assert_eq!(json(&s["healthz"])["status"], "ok");
    assert_eq!(json(&s["readyz"])["status"], "ready");
    assert!(
        s["openapi"].out.contains("\"openapi\""),
        "{}",
        s["openapi"].out
    );
    let text: String = s.values().map(|st| st.out.as_str()).collect();
    assert!(
        !text.contains("mocktok-"),
        "a token reached a client:\n{text}"
    );
}

fn check_check_config(s: &HashMap<&str, Step>) {
    let failed = &s["without-secret"];
    assert!(failed.out.contains("credentials[0]"), "{}", failed.out);
    assert!(failed.out.contains("DEMO_CLIENT_SECRET"), "{}", failed.out);
    assert!(
        s["with-secret"].out.contains("ok"),
        "{}",
        s["with-secret"].out
    );
}

fn check_redis(s: &HashMap<&str, Step>) {
    assert_eq!(json(&s["reset"])["reset"], true);
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&s["two-requests"].out)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("two echoes");
    assert_eq!(docs.len(), 2, "{}", s["two-requests"].out);
    assert_echo(&docs[0], "/a");
    assert_echo(&docs[1], "/b");
    assert_eq!(
        token_calls(&s["calls"]),
        1,
        "one token call for the cluster"
    );
    let listed = json(&s["tools-list"]);
    assert_eq!(listed["id"], 2, "{listed}");
    assert!(listed["result"].is_object(), "{listed}");
    let sessions = s["sessions"].out.as_str();
    assert!(sessions.contains("rzs-"), "{sessions}");
}

/// The events of an SSE transcript: (id, upstream number from `{"n":k}`),
/// complete events only (those ended by a blank line), and any other event
/// type by name.
fn sse_events(text: &str) -> Vec<(String, Result<u64, String>)> {
    let mut out = Vec::new();
    let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = v.to_owned();
        } else if let Some(v) = line.strip_prefix("event: ") {
            kind = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data = v.to_owned();
        } else if line.is_empty() && !data.is_empty() {
            let n = match kind.as_str() {
                "tick" => serde_json::from_str::<Value>(&data)
                    .ok()
                    .and_then(|d| d["n"].as_u64()),
                _ => None,
            };
            out.push((id.clone(), n.ok_or_else(|| format!("{kind}: {data}"))));
            (kind, data) = (String::new(), String::new());
        }
    }
    out
}

/// The upstream numbers of `events`; panics on anything but a `tick`
/// carrying one of Rhizome's ids.
fn ticks(events: &[(String, Result<u64, String>)], what: &str) -> Vec<u64> {
    events
        .iter()
        .map(|(id, n)| {
            assert!(id.starts_with("v1."), "{what}: not Rhizome's id: {id:?}");
            n.clone()
                .unwrap_or_else(|e| panic!("{what}: not a tick: {e}"))
        })
        .collect()
}

fn check_redis_replay(env: &Env, s: &HashMap<&str, Step>) {
    // What the client kept (step outputs are trimmed: a last event would
    // lose the blank line that ends it).
    let kept = std::fs::read_to_string(env.path("seen.txt")).expect("seen.txt");
    assert_eq!(kept.trim(), s["first"].out, "tee shows what it keeps");
    let seen = ticks(&sse_events(&kept), "first stream");
    assert!(!seen.is_empty(), "events within 2 s: {kept}");
    assert_eq!(seen, (1..=seen.len() as u64).collect::<Vec<_>>());
    let last = *seen.last().expect("an event");
    assert!(last < 30, "the client left before the end: {seen:?}");
    assert!(s["last"].out.is_empty(), "{}", s["last"].out);

    // n1 still produces the stream its client left.
    let streams = json(&s["streams"]);
    let listed = &streams["streams"][0];
    assert_eq!(listed["route"], "events", "{streams}");
    assert_eq!(listed["producer"], "n1", "{streams}");
    assert!(listed["last_seq"].as_u64() >= Some(last), "{streams}");

    // Resumed through n2: every later event exactly once, in order, to the end.
    let resumed = format!("{}\n\n", s["resume"].out);
    let rest = ticks(&sse_events(&resumed), "resumed stream");
    assert_eq!(
        rest,
        (last + 1..=30).collect::<Vec<_>>(),
        "the resumed stream continues right after event {last}, nothing repeated:\n{}",
        s["resume"].out
    );
    assert_eq!(
        s["takeovers"].out, "rhizome_sse_takeovers_total{route=\"events\"} 1",
        "n2 took the stream over once"
    );
}

fn check_cluster(s: &HashMap<&str, Step>) {
    let view = json(&s["cluster"]);
    assert!(view["leader"].is_u64(), "{view}");
    assert_eq!(view["members"], serde_json::json!([1, 2, 3]), "{view}");
    let owners =
        |v: &Value, cred: &str| v["assignments"][cred]["node"].as_str().map(str::to_string);
    let first = owners(&view, "demo-oauth").expect("demo-oauth assigned");
    assert!(owners(&view, "demo-oauth-b").is_some(), "{view}");
    assert!(
        view["assignments"]["demo-oauth"]["epoch"].as_u64() > Some(0),
        "{view}"
    );
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&s["two-requests"].out)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("two echoes");
    assert_echo(&docs[0], "/a");
    assert_echo(&docs[1], "/b");
    let listed = &s["owners"].out;
    assert!(
        listed.contains(&format!(
            "\"name\":\"demo-oauth\",\"kind\":\"oauth2_client_credentials\",\"owner\":\"{first}\""
        )),
        "{listed}"
    );
    let after = json(&s["after"]);
    let second = owners(&after, "demo-oauth").expect("still assigned");
    assert_ne!(
        second, first,
        "the killed owner's credential moved: {after}"
    );
    let live = after["nodes"].as_array().expect("nodes").len();
    assert_eq!(live, 2, "the killed node is gone: {after}");
    let codes: Vec<&str> = s["statuses"].out.split_whitespace().collect();
    assert_eq!(
        codes.iter().filter(|c| **c == "200").count(),
        2,
        "{codes:?}"
    );
    assert_eq!(token_calls(&s["calls"]), 1, "the new owner fetched once");
}

/// No captured log complains at shutdown, announces a reconnect that did
/// not happen, or holds a demo secret or an issued token.
fn assert_logs_quiet(env: &Env, logs: &[&str]) {
    for name in logs {
        let text = std::fs::read_to_string(env.path(name)).expect("log");
        for noise in [
            "[tracing-subscriber]",
            "reconnected",
            "demo-secret",
            "mocktok-",
        ] {
            assert!(!text.contains(noise), "{name} contains {noise:?}:\n{text}");
        }
    }
    env.assert_logs_clean();
}

#[tokio::test]
async fn readme_commands_run_as_written() {
    let env = Env::new("readme");
    let ports = Ports::new();
    let blocks = shell::blocks(&shell::readme());
    let subst = ports.substitutions(&env);
    let redis_lock = std::fs::read_to_string(format!("{REPO}/examples/redis-lock.toml"))
        .expect("read examples/redis-lock.toml");
    std::fs::write(
        env.path("redis-lock.toml"),
        shell::substitute(&redis_lock, &subst),
    )
    .expect("write config");

    let (mut quickstart, group) = start_quickstart(&env, &ports).await;
    run_printed_curls(&env).await;
    let walk = shell::block(&blocks, "walkthrough");
    check_walkthrough(&run_block(&env, &walk, WALKTHROUGH, &[], &subst).await);
    let cc = shell::block(&blocks, "check-config");
    let failing = ["without-secret"];
    check_check_config(&run_block(&env, &cc, CHECK_CONFIG, &failing, &subst).await);
    // One shell for both Redis blocks: the second uses the first's jobs.
    let mut redis = shell::block(&blocks, "redis");
    redis
        .commands
        .extend(shell::block(&blocks, "redis-replay").commands);
    let expected: Vec<_> = REDIS.iter().chain(REDIS_REPLAY).copied().collect();
    let steps = run_block(&env, &redis, &expected, &[], &subst).await;
    check_redis(&steps);
    check_redis_replay(&env, &steps);
    let cluster = std::fs::read_to_string(format!("{REPO}/examples/cluster.toml"))
        .expect("read examples/cluster.toml");
    std::fs::write(
        env.path("cluster.toml"),
        shell::substitute(&cluster, &subst),
    )
    .expect("write config");
    let block = shell::block(&blocks, "cluster");
    check_cluster(&run_block(&env, &block, CLUSTER, &[], &subst).await);

    // Ctrl-C on the script stops the node and the demo upstream with it.
    group.signal_leader("INT");
    let status = tokio::time::timeout(Duration::from_secs(20), quickstart.wait())
        .await
        .expect("quickstart.sh stops on SIGINT")
        .expect("wait");
    assert!(status.success(), "quickstart.sh exited with {status}");
    group.assert_gone("scripts/quickstart.sh").await;
    let log = std::fs::read_to_string(env.path("quickstart.log")).expect("log");
    assert!(
        log.contains("node stopped"),
        "the node shut down cleanly:\n{log}"
    );
    for node in ["n1.log", "n2.log"] {
        let text = std::fs::read_to_string(env.path(node)).expect("node log");
        assert!(text.contains("subscribed to state events"), "{text}");
        assert!(text.contains("node stopped"), "{text}");
    }
    let left = ["cn1.log", "cn2.log", "cn3.log"]
        .iter()
        .filter(|n| {
            std::fs::read_to_string(env.path(n))
                .expect("node log")
                .contains("left the coordinator")
        })
        .count();
    assert_eq!(left, 2, "the two surviving cluster nodes said goodbye");
    assert_logs_quiet(
        &env,
        &[
            "quickstart.log",
            "n1.log",
            "n2.log",
            "cn1.log",
            "cn2.log",
            "cn3.log",
            "c1.log",
            "c2.log",
            "c3.log",
        ],
    );
}

#[test]
fn readme_quick_start_is_two_commands() {
    let blocks = shell::blocks(&shell::readme());
    let quick = shell::block(&blocks, "quickstart");
    assert_eq!(quick.commands, ["scripts/quickstart.sh", "scripts/test.sh"]);
    for b in &blocks {
        let known = [
            "quickstart",
            "walkthrough",
            "check-config",
            "redis",
            "redis-replay",
            "cluster",
            "skip",
        ];
        assert!(
            known.contains(&b.name.as_str()),
            "README block marked `{}`: unknown name (known: {known:?}; see docs/readme-test.md)",
            b.name
        );
    }
}
