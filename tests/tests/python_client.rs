//! The generated clients (`clients/`): the committed OpenAPI document and
//! Python client are exactly what `scripts/gen-clients.sh` regenerates from
//! the node, the drift check catches a document that changed without
//! regeneration, and the generated Python client drives a live node's
//! request-intent and admin APIs (JSON and binary bodies, typed errors).
//! Needs `python3 -m pip install -r clients/requirements-gen.txt -r
//! clients/requirements.txt` (scripts/test.sh does); without them the tests
//! fail saying so.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::secrets::{ADMIN_TOKEN, CLIENT_KEY};
use rhizome_tests::harness::{bin, Env};
use serde_json::{json, Value};
use tokio::process::Command;

/// Upper bound of one generator run or of the Python round trip.
const DEADLINE: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs `cmd` to completion within [`DEADLINE`] (killed past it).
async fn run(what: &str, mut cmd: Command) -> Output {
    cmd.kill_on_drop(true);
    let child = cmd.output();
    tokio::time::timeout(DEADLINE, child)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"))
}

/// `scripts/gen-clients.sh ARGS`, with the document from the built node.
async fn gen_clients(args: &[&str]) -> Output {
    let mut cmd = Command::new(repo().join("scripts/gen-clients.sh"));
    cmd.args(args)
        .env("RHIZOME_NODE", bin("rhizome-node"))
        .current_dir(repo());
    run(&format!("scripts/gen-clients.sh {}", args.join(" ")), cmd).await
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Copies the directory `from` to `to`, leaving out Python byte code.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_name() == "__pycache__" {
            continue;
        }
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy file");
        }
    }
}

#[tokio::test]
async fn committed_clients_match_the_nodes_openapi_document() {
    let out = gen_clients(&["--check"]).await;
    assert!(
        out.status.success(),
        "clients/ differs from what the node's OpenAPI document generates \
         (run scripts/gen-clients.sh and commit):\n{}",
        text(&out)
    );
}

#[tokio::test]
async fn drift_check_fails_when_the_document_changes_without_regeneration() {
    let env = Env::new("clients_drift");
    let clients = env.path("clients");
    copy_dir(&repo().join("clients/python"), &clients.join("python"));
    let committed = clients.join("openapi.json");
    std::fs::copy(repo().join("clients/openapi.json"), &committed).expect("copy spec");
    let out_dir = clients.display().to_string();

    // The copy checks clean against its own document.
    let committed_arg = committed.display().to_string();
    let out = gen_clients(&["--check", "--spec", &committed_arg, "--out", &out_dir]).await;
    assert!(out.status.success(), "the unchanged copy: {}", text(&out));

    // The document gains a field and loses an operation.
    let mut doc: Value =
        serde_json::from_slice(&std::fs::read(&committed).expect("read spec")).expect("spec json");
    doc["components"]["schemas"]["IntentRequest"]["properties"]["priority"] =
        json!({"type": "integer", "description": "A field the clients do not know yet."});
    doc["paths"]
        .as_object_mut()
        .expect("paths")
        .remove("/admin/v1/streams")
        .expect("the streams operation");
    let changed = env.write(
        "changed-openapi.json",
        serde_json::to_vec_pretty(&doc).expect("json"),
    );
    let changed_arg = changed.display().to_string();
    let out = gen_clients(&["--check", "--spec", &changed_arg, "--out", &out_dir]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for named in [
        "drifted from the OpenAPI document",
        "  openapi.json\n",
        "  python/rhizome_client/models/intent_request.py\n",
        "  python/rhizome_client/api/admin/list_streams.py (committed, no longer generated)",
        "Regenerate with scripts/gen-clients.sh",
    ] {
        assert!(err.contains(named), "the report lacks {named:?}:\n{err}");
    }
    // The check wrote nothing.
    assert_eq!(
        std::fs::read(&committed).expect("read"),
        std::fs::read(repo().join("clients/openapi.json")).expect("read")
    );

    // Regenerating fixes it: the field is in the model, the operation gone.
    let out = gen_clients(&["--spec", &changed_arg, "--out", &out_dir]).await;
    assert!(out.status.success(), "regenerate: {}", text(&out));
    let model =
        std::fs::read_to_string(clients.join("python/rhizome_client/models/intent_request.py"))
            .expect("model");
    assert!(model.contains("priority: int | Unset"), "{model}");
    assert!(!clients
        .join("python/rhizome_client/api/admin/list_streams.py")
        .exists());
    let out = gen_clients(&["--check", "--spec", &changed_arg, "--out", &out_dir]).await;
    assert!(out.status.success(), "after regenerating: {}", text(&out));
}

#[tokio::test]
async fn generated_python_client_round_trips_through_a_live_node() {
    let fixture::World {
        env,
        mock: _mock,
        mut node,
    } = fixture::world("python_client", &[], &Tuning::default()).await;
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/python_client/roundtrip.py"))
        .args(["--proxy", &node.url("")])
        .args(["--admin", &node.admin_url("")])
        .args(["--client-key", CLIENT_KEY])
        .args(["--admin-token", ADMIN_TOKEN])
        .args([
            "--credentials",
            "oauth-a,oauth-b,static,jwt-hs,jwt-rs,cookie",
        ])
        .env("PYTHONPATH", repo().join("clients/python"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run("python3 tests/python_client/roundtrip.py", cmd).await;
    // Kept with the node's logs, and scanned for secrets like them.
    env.write("python-client.log", text(&out));
    assert!(
        out.status.success(),
        "the generated client's round trip failed:\n{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "ok: JSON bodies round-trip",
        "ok: binary bodies round-trip",
        "ok: errors come back as typed ErrorBody",
        "ok: the admin API lists",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    assert_eq!(node.stop().await.code(), Some(0));
    env.assert_logs_clean();
}
