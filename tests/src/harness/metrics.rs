//! Reading a node's `/metrics` in tests: one series' value, and the
//! `promtool check metrics` lint (from the `prometheus` OS package).

use std::io::Write;
use std::process::{Command, Stdio};

use super::http::Client;
use super::Node;

/// The value of `series` (name plus exact label set) in Prometheus text.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Asserts that `promtool check metrics` accepts `text`.
pub fn assert_promtool_clean(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test.sh installs the prometheus package)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Node {
    /// The node's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        Client::new()
            .get(&self.admin_url("/metrics"), &[])
            .await
            .text()
    }

    /// One series of the node's metrics, if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        value(&self.metrics_text().await, series)
    }
}
