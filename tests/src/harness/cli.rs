//! `rhizome-node` run as a command rather than a server (`check-config`, a
//! start-up on a config it must refuse): it runs to completion, and the tests
//! read its exit status and what it printed. One runner, so every test that
//! checks a refusal checks it the same way.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::bin;

/// Runs `rhizome-node ARGS` with the extra environment variables `env`.
pub fn run_node(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("rhizome-node"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run rhizome-node")
}

/// Runs `rhizome-node COMMAND FILE` (`check-config` or `--config`) with the
/// extra environment variables `env`, asserts that it refuses the file
/// (exits non-zero), and returns what it printed on stderr.
pub fn refuses(command: &str, cfg: &Path, env: &[(&str, &str)]) -> String {
    let out = run_node(&[command, &cfg.display().to_string()], env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{command} accepted {}:\n{stderr}",
        cfg.display()
    );
    stderr
}

/// How long a refused node may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(20);

/// Runs `rhizome-node --config FILE` on ephemeral ports with the extra
/// environment variables `env`, asserts that it exits non-zero without ever
/// listening, and returns everything it printed.
pub async fn start_up_refuses(cfg: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = tokio::process::Command::new(bin("rhizome-node"));
    cmd.arg("--config")
        .arg(cfg)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let out = tokio::time::timeout(EXIT_DEADLINE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("the node started on {}", cfg.display()))
        .expect("run rhizome-node");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "the node accepted {}:\n{printed}",
        cfg.display()
    );
    assert!(!printed.contains("listening"), "{printed}");
    printed
}
