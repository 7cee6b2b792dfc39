//! The loadtest's `--scenario post` in a debug build, small: it starts the
//! mock and a node itself, sends 4 KiB JSON bodies directly and through the
//! node, and writes the report a user reads (`--out`). No figure is checked,
//! only that every request was answered and the report says so.

use std::process::Command;

use rhizome_tests::harness::{bin, Env};

#[test]
fn post_scenario_reports_every_request_answered() {
    let env = Env::new("loadtest_smoke");
    let out = env.path("report.md");
    let run = Command::new(bin("rhizome-loadtest"))
        .args(["--scenario", "post", "--requests", "200", "--warmup", "10"])
        .args([
            "--concurrency",
            "4",
            "--max-seconds",
            "60",
            "--no-access-log",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run rhizome-loadtest");
    assert!(
        run.status.success(),
        "rhizome-loadtest failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let md = std::fs::read_to_string(&out).expect("report written with --out");
    assert_eq!(
        md,
        String::from_utf8_lossy(&run.stdout),
        "--out is what was printed"
    );
    for needle in [
        "## Scenario `post`: 4 KiB JSON body",
        "| direct | 200 | 0 |",
        "| node | 200 | 0 |",
        "Secret scan of those logs: clean",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
    }
    env.assert_logs_clean();
}
