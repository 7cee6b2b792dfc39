//! OpenAPI conformance: schemathesis (PyPI, pinned in scripts/test.sh) reads
//! a live node's own `/openapi.json` and tests every operation it documents
//! against the listener that serves it — the admin API on the admin listener
//! with the admin token, the request-intent API on the proxy listener with a
//! client key — with every check it has: no server errors, only documented
//! statuses, content types, headers and schemas, schema-valid requests
//! accepted and schema-invalid ones refused, wrong methods answered 405 with
//! `Allow`, auth not ignored. `tests/conformance/run_schemathesis.sh` runs it,
//! bounded per listener and with a fixed seed, so a failure replays; its
//! output and JUnit reports stay with the test's logs, which are then
//! scanned for secrets (schemathesis prints requests it found failing).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rhizome_tests::harness::fixture::{self, Tuning};
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::secrets::{ADMIN_TOKEN, CLIENT_KEY};

/// Both listeners' runs: 60 s of generation each plus schema loading and
/// shrinking, generously bounded.
const DEADLINE: Duration = Duration::from_secs(400);
const INSTALL: &str = "python3 -m pip install schemathesis==4.32.5";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_conform_to_the_openapi_document() {
    let found = std::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "this test needs schemathesis: {INSTALL} (scripts/test.sh does)"
    );
    let fixture::World {
        env,
        mock: _mock,
        node,
    } = fixture::world("schemathesis", &[], &Tuning::default()).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/run_schemathesis.sh");
    let reports = env.path("schemathesis");
    let run = tokio::process::Command::new(&script)
        .arg(node.admin_url(""))
        .arg(node.url(""))
        .arg(&reports)
        .env("RHIZOME_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RHIZOME_CLIENT_KEY", CLIENT_KEY)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis took longer than {DEADLINE:?}"))
        .expect("run tests/conformance/run_schemathesis.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    env.write("schemathesis.log", format!("{stdout}{stderr}"));
    println!("{stdout}");
    assert!(
        out.status.success(),
        "schemathesis found failures ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Every documented operation was tested on its listener, none failed.
    let doc = Client::new()
        .get(&node.admin_url("/openapi.json"), &[])
        .await
        .json();
    let (mut admin_ops, mut proxy_ops) = (0, 0);
    for ops in doc["paths"].as_object().expect("paths").values() {
        for op in ops.as_object().expect("path item").values() {
            if op["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&"proxy".into()))
            {
                proxy_ops += 1;
            } else {
                admin_ops += 1;
            }
        }
    }
    for (listener, ops) in [("admin", admin_ops), ("proxy", proxy_ops)] {
        let report = reports.join(format!("schemathesis-{listener}.xml"));
        let junit = std::fs::read_to_string(&report)
            .unwrap_or_else(|e| panic!("no report {}: {e}", report.display()));
        // One test case per operation, plus the stateful run (admin only).
        let tested = junit.matches("<testcase ").count()
            - junit.matches("<testcase name=\"Stateful tests\"").count();
        assert_eq!(tested, ops, "{listener}: {junit}");
        assert!(!junit.contains("<failure"), "{listener}: {junit}");
        assert!(!junit.contains("<skipped"), "{listener}: {junit}");
    }
    assert!(
        proxy_ops >= 1 && admin_ops >= 10,
        "{admin_ops} admin, {proxy_ops} proxy operations"
    );
    env.assert_logs_clean();
}
