//! The side-by-side loadtest's report: `loadtest/report.py` turns the
//! `key=value` lines of `loadtest/bench.sh` (a recorded `results.txt`, from a
//! deliberately disturbed run) into the Markdown tables and SVG plots the
//! README points to, and names the runs it cannot trust.

use std::process::Command;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn report_has_every_table_ratio_flag_and_plot() {
    let out = tempdir();
    let status = Command::new("python3")
        .arg(format!("{REPO}/loadtest/report.py"))
        .arg(format!("{REPO}/tests/fixtures/bench-results.txt"))
        .arg(&out)
        .output()
        .expect("run python3");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let md = std::fs::read_to_string(out.join("latest.md")).expect("latest.md");
    for needle in [
        "## Throughput",
        "| node | 620.0 | 0.14× |",
        "| nginx | 4,392.0 | 1.00× |",
        "| haproxy |",
        "## Added latency over direct",
        "| 25% (1098/s) | nginx | +0.608 |",
        "worst round's added p99 ms",
        "## Memory",
        "| node | 17732 | 23888 | 1.2 |",
        // Every proxy run of the recording had its core taken by other work.
        "| 1 of 1 |",
        "![latency at 50%](latency-50.svg)",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
    }
    for frac in ["25", "50"] {
        let svg = std::fs::read_to_string(out.join(format!("latency-{frac}.svg"))).expect("svg");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for proxy in ["direct", "nginx", "haproxy", "node"] {
            assert!(
                svg.contains(&format!(">{proxy}</text>")),
                "{proxy} in {frac}%"
            );
        }
    }
    let bench = std::fs::read_to_string(format!("{REPO}/loadtest/bench.sh")).expect("bench.sh");
    let syntax = Command::new("bash")
        .args(["-n", "-c", &bench])
        .status()
        .expect("bash");
    assert!(syntax.success(), "loadtest/bench.sh does not parse");
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rhizome-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
