//! The admin dashboard in a real headless Chromium: the test puts a node in a
//! state worth looking at (a credential in cooldown, a live SSE stream, an MCP
//! session, traffic), then `tests/dashboard/check_dashboard.py` drives the
//! page through Selenium as an operator would — login form only without the
//! token, the credential's owner and cooldown, the stream, the session, the
//! request rate, Refresh reaching the token server, Drop token — and searches
//! the DOM and Chrome's network log for every secret the test uses. Its
//! screenshot lands in `target/test-artifacts/dashboard.png`.
//!
//! Needs `chromium`, `chromium-driver` (Debian) and the Python package
//! `selenium`; without them the test fails saying what to install. Besides
//! the browser run: the page itself (headers, no data) and the data behind
//! the cluster card in cluster mode (leader, owners, degraded).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use http::Method;
use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::ownership::raft_world;
use rhizome_tests::harness::secrets::{self, ADMIN_TOKEN, TOKEN_PATTERNS};
use rhizome_tests::harness::sse::Reader;
use rhizome_tests::harness::{bin_dir, mcp, wait_for};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
/// The whole browser run, login to logout.
const BROWSER_DEADLINE: Duration = Duration::from_secs(240);
const INSTALL: &str =
    "apt-get install -y chromium chromium-driver && python3 -m pip install selenium";

/// Fails, saying what to install, unless Chromium, chromedriver and Selenium are there.
fn require_browser() {
    let mut missing = Vec::new();
    for (bin, what) in [
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
    ] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push(format!("{bin} (Debian package {what})"));
        }
    }
    let selenium = std::process::Command::new("python3")
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !selenium {
        missing.push("the Python package selenium (for python3)".into());
    }
    assert!(
        missing.is_empty(),
        "the dashboard test drives a real browser and needs {}: {INSTALL} (scripts/test.sh does)",
        missing.join(", ")
    );
}

fn artifacts_dir() -> PathBuf {
    let dir = bin_dir().join("..").join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

async fn credential(c: &Client, admin_url: &str, name: &str) -> Value {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let v = c
        .get(
            &format!("{admin_url}/admin/v1/credentials"),
            &[("authorization", auth.as_str())],
        )
        .await
        .json();
    v["credentials"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no credential {name} in {v}"))
}

#[tokio::test]
async fn the_dashboard_shows_the_node_to_an_operator_in_a_real_browser() {
    require_browser();
    let started = Instant::now();
    let tuning = Tuning {
        sse: "replay = true\non_client_disconnect = \"detach\"\ndetach_grace = \"20s\"",
        ..Tuning::default()
    };
    let fixture::World { env, mock, node } = fixture::world("dashboard", &[], &tuning).await;
    let c = Client::new();
    let admin = node.admin_url("");
    let admin_auth = format!("Bearer {ADMIN_TOKEN}");
    let client_auth = fixture::bearer();

    // oauth-b's token endpoint fails; every failed refresh counts, so after
    // nine of them it cools down for the longest cooldown (60 s).
    mock.control("/_mock/config", json!({"fail_clients": ["svc-b"]}))
        .await;
    for _ in 0..9 {
        let r = c
            .post(
                &node.admin_url("/admin/v1/credentials/oauth-b/refresh"),
                &[("authorization", admin_auth.as_str())],
                "",
            )
            .await;
        assert_eq!(r.status, 502, "{}", r.text());
    }
    let cooling = credential(&c, &admin, "oauth-b").await;
    assert!(
        cooling["cooldown"].as_f64() > Some(30.0),
        "oauth-b cools down: {cooling}"
    );

    // A live SSE stream on the replay route, three events in.
    let resp = c
        .open(
            Method::GET,
            &node.url("/e/sse/manual/dash"),
            &[
                ("authorization", client_auth.as_str()),
                ("accept", "text/event-stream"),
            ],
            "",
        )
        .await;
    assert_eq!(resp.status(), 200);
    let mut live = Reader::new(resp.into_body());
    for _ in 0..3 {
        mock.control("/_mock/sse/dash/emit?wait_ms=5000", json!({}))
            .await;
        live.next(WAIT).await.expect("an event through the proxy");
    }

    // An MCP session, and JWT claims to show.
    let init = mcp::call(&node, None, "initialize").await;
    assert_eq!(init.status, 200, "{}", init.text());
    assert!(init.header("mcp-session-id").is_some());
    let r = c
        .get(
            &node.url("/jh/x"),
            &[("authorization", client_auth.as_str())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let token_calls = |v: Value| v["token_calls"]["svc-b"].as_u64().unwrap_or(0);
    let calls_before = token_calls(mock.stats().await);
    let screenshot = artifacts_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = format!(
        "{}/dashboard/check_dashboard.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let all_secrets = secrets::ALL
        .iter()
        .filter(|s| **s != ADMIN_TOKEN)
        .copied()
        .collect::<Vec<_>>()
        .join(",");
    let browser = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["--admin", &admin])
        .args(["--token", ADMIN_TOKEN])
        .args(["--secrets", &all_secrets])
        .args(["--patterns", &TOKEN_PATTERNS.join(",")])
        .args(["--mock", &mock.base()])
        .args(["--node-id", "node", "--mode", "embedded"])
        .args([
            "--cooldown-credential",
            "oauth-b",
            "--cooldown-client",
            "svc-b",
        ])
        .args(["--owner", "node"])
        .args(["--stream-route", "e", "--session-route", "m"])
        .args(["--traffic", &node.url("/a/open/ping")])
        .arg("--screenshot")
        .arg(&screenshot)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BROWSER_DEADLINE, browser)
        .await
        .unwrap_or_else(|_| panic!("the browser run took longer than {BROWSER_DEADLINE:?}"))
        .expect("run python3 tests/dashboard/check_dashboard.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Kept with the node's logs, and scanned for secrets with them.
    env.write("browser.log", format!("{stdout}{stderr}"));
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for check in [
        "without a token only the login form shows",
        "no data endpoint answered without the token",
        "credential oauth-b: owner node, cooldown",
        "SSE stream",
        "Refresh reached the token server",
        "no secret",
    ] {
        assert!(stdout.contains(check), "the run did not report {check:?}");
    }

    // What the browser did, seen from outside it.
    assert!(
        token_calls(mock.stats().await) > calls_before,
        "the token server saw the dashboard's refresh"
    );
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let after = credential(&c, &admin, "oauth-b").await;
    assert_eq!(after["has_token"], false, "dropped from the dashboard");
    wait_for("the stream still live", WAIT, || async {
        let r = c
            .get(
                &node.admin_url("/admin/v1/streams"),
                &[("authorization", admin_auth.as_str())],
            )
            .await;
        (r.json()["streams"].as_array()?.len() == 1).then_some(())
    })
    .await;
    drop(live);
    println!(
        "dashboard test took {:.1}s; screenshot {}",
        started.elapsed().as_secs_f64(),
        screenshot.display()
    );
    env.assert_logs_clean();
}

#[tokio::test]
async fn the_dashboard_page_holds_no_data_and_forbids_inline_code() {
    let fixture::World {
        env,
        mock: _mock,
        node,
    } = fixture::world("dashboard_page", &[], &Tuning::default()).await;
    let c = Client::new();
    let page = c.get(&node.admin_url("/admin/"), &[]).await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let html = page.text();
    assert!(html.contains("id=\"login-form\""));
    for name in ["oauth-a", "oauth-b", "jwt-hs", ADMIN_TOKEN] {
        assert!(!html.contains(name), "the page holds no data: {name}");
    }
    for (path, kind) in [
        ("/admin/dashboard.js", "text/javascript"),
        ("/admin/dashboard.css", "text/css"),
    ] {
        let r = c.get(&node.admin_url(path), &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r
            .header("content-type")
            .is_some_and(|t| t.starts_with(kind)));
        assert!(r.header("content-security-policy").is_some());
    }
    let r = c.get(&node.admin_url("/admin"), &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/admin/"));
    // The data behind the page needs the token.
    let r = c.get(&node.admin_url("/admin/v1/cluster"), &[]).await;
    assert_eq!(r.status, 401);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let v = c
        .get(
            &node.admin_url("/admin/v1/cluster"),
            &[("authorization", auth.as_str())],
        )
        .await
        .json();
    assert_eq!(v["node"], "node");
    assert_eq!(v["mode"], "embedded");
    assert_eq!(v["degraded"], false);
    assert_eq!(v["redis"]["backend"], "memory");
    assert_eq!(v["nodes"], json!(["node"]));
    let owners = v["ownership"].as_array().expect("ownership");
    assert!(owners
        .iter()
        .any(|o| o["credential"] == "oauth-a" && o["owner"] == "node"));
    env.assert_logs_clean();
}

#[tokio::test]
async fn the_cluster_view_names_the_leader_the_owners_and_degraded_mode() {
    let mut world = raft_world("dashboard_cluster", &[], 2, Tuning::default()).await;
    let leader = world.coords.leader().await;
    let c = Client::new();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let url = world.nodes[0].admin_url("/admin/v1/cluster");
    // Settled: n1 heard from the leader and every move it knows is active.
    let pool = |v: &Value| -> Vec<Value> {
        let all = v["ownership"].as_array().cloned().unwrap_or_default();
        all.into_iter()
            .filter(|o| {
                o["credential"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("pool-"))
            })
            .collect()
    };
    let view = wait_for(
        "n1's view: the leader, every assignment active",
        WAIT,
        || async {
            let v = c
                .get(&url, &[("authorization", auth.as_str())])
                .await
                .json();
            let settled = v["coordinator"]["leader"].as_u64() == Some(leader)
                && !pool(&v).is_empty()
                && pool(&v).iter().all(|o| o["active"] == true);
            settled.then_some(v)
        },
    )
    .await;
    assert_eq!(view["node"], "n1");
    assert_eq!(view["mode"], "cluster");
    assert_eq!(view["degraded"], false);
    assert!(view["coordinator"]["term"].as_u64() >= Some(1), "{view}");
    assert!(view["coordinator"]["leader_url"]
        .as_str()
        .is_some_and(|u| u.starts_with("http://")));
    assert_eq!(view["redis"]["backend"], "redis");
    assert_eq!(view["redis"]["up"], true);
    for o in pool(&view) {
        assert!(
            o["owner"] == "n1" || o["owner"] == "n2",
            "a live node owns each shared credential: {o}"
        );
        assert_ne!(o["epoch"], "0.0", "fenced by its assignment: {o}");
    }
    let nodes = view["nodes"].as_array().expect("nodes");
    assert!(nodes.contains(&json!("n1")), "{view}");

    // No coordinator answers: degraded, and the view says so.
    for id in world.coords.ids() {
        world.coords.kill(id);
    }
    let view = wait_for("degraded mode in the view", WAIT, || async {
        let v = c
            .get(&url, &[("authorization", auth.as_str())])
            .await
            .json();
        (v["degraded"] == true).then_some(v)
    })
    .await;
    assert!(
        pool(&view)
            .iter()
            .all(|o| o["owner"].as_str().is_some_and(|s| s.contains("degraded"))),
        "{view}"
    );
    world.env.assert_logs_clean();
}
