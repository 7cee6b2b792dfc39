//! The end-to-end harness: starts real `rhizome-node` and `rhizome-mock`
//! processes on 127.0.0.1 with ephemeral ports, learns their addresses from
//! the `listening` lines they print, captures every line they write into a
//! per-test log directory, and checks at the end that none of those logs
//! contains a secret, token or client key the tests used.
//!
//! Every wait here has a deadline; children are killed when dropped.

pub mod cli;
pub mod coordinator;
pub mod fixture;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod ownership;
pub mod redis;
pub mod redis_cluster;
pub mod secrets;
pub mod sentinel;
pub mod sse;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long a process may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The workspace's binary directory (`target/<profile>`), found from the
/// running executable: a test binary lives in `target/<profile>/deps`, a
/// binary such as the loadtest in `target/<profile>` itself.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a workspace binary; panics with the fix when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Polls `check` until it returns `Some`, or panics after `deadline` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A per-test directory for configs and captured logs.
#[derive(Debug)]
pub struct Env {
    /// The directory.
    pub dir: PathBuf,
}

impl Env {
    /// A fresh directory under `target/test-logs/`.
    pub fn new(test: &str) -> Env {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let dir = bin_dir()
            .join("..")
            .join("test-logs")
            .join(format!("{test}-{stamp}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create test dir");
        Env { dir }
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `contents` to the file `name` inside the directory; its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Starts `rhizome-mock` with `args` (besides `--listen 127.0.0.1:0`).
    pub async fn mock(&self, name: &str, args: &[&str]) -> Mock {
        let mut all = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let mut proc = Proc::spawn(
            &bin("rhizome-mock"),
            &all,
            &[],
            &self.path(&format!("{name}.log")),
        )
        .await;
        let line = proc
            .wait_line(|v| v.get("event") == Some(&Value::from("listening")))
            .await;
        let addr = listening_addr(&line);
        Mock { proc, addr }
    }

    /// Writes `config` and starts `rhizome-node` on it with ephemeral ports.
    pub async fn node(&self, name: &str, config: &str) -> Node {
        self.node_with_env(name, config, &[]).await
    }

    /// Like [`Env::node`] with extra environment variables.
    pub async fn node_with_env(&self, name: &str, config: &str, env: &[(&str, &str)]) -> Node {
        let mut proc = self.spawn_node(name, config, env).await;
        let mut lines = Vec::new();
        while lines.len() < 2 {
            lines.push(
                proc.wait_line(|v| v.get("message") == Some(&Value::from("listening")))
                    .await,
            );
        }
        node_at(proc, &lines)
    }

    /// Like [`Env::node_with_env`] for a config whose `[log] file` is
    /// `log_file`: the node prints nothing on stdout, so its `listening`
    /// lines are read from that file.
    pub async fn node_logging_to(
        &self,
        name: &str,
        config: &str,
        env: &[(&str, &str)],
        log_file: &Path,
    ) -> Node {
        let mut proc = self.spawn_node(name, config, env).await;
        let end = Instant::now() + START_DEADLINE;
        loop {
            let text = std::fs::read_to_string(log_file).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v.get("message") == Some(&Value::from("listening")))
                .collect();
            if lines.len() >= 2 {
                return node_at(proc, &lines);
            }
            assert!(
                proc.is_running(),
                "node exited before listening; output:\n{}",
                proc.log_text()
            );
            assert!(
                Instant::now() < end,
                "no listening lines in {} within {START_DEADLINE:?}:\n{text}",
                log_file.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes `config` and spawns `rhizome-node` on it with ephemeral ports,
    /// its stdout and stderr captured in `<name>.log`.
    async fn spawn_node(&self, name: &str, config: &str, env: &[(&str, &str)]) -> Proc {
        let cfg_path = self.write(&format!("{name}.toml"), config);
        let args = vec![
            "--config".to_string(),
            cfg_path.display().to_string(),
            "--node-id".to_string(),
            name.to_string(),
            "--listen".to_string(),
            "127.0.0.1:0".to_string(),
            "--admin-listen".to_string(),
            "127.0.0.1:0".to_string(),
        ];
        Proc::spawn(
            &bin("rhizome-node"),
            &args,
            env,
            &self.path(&format!("{name}.log")),
        )
        .await
    }

    /// Asserts that no captured log contains a secret, a token or a client key.
    pub fn assert_logs_clean(&self) {
        let found = secrets::scan_dir(&self.dir);
        assert!(found.is_empty(), "secrets found in logs: {found:#?}");
    }
}

/// The node whose two `listening` lines are `lines`.
fn node_at(proc: Proc, lines: &[Value]) -> Node {
    let mut proxy = None;
    let mut admin = None;
    for line in lines {
        let addr = listening_addr(line);
        match line["listener"].as_str() {
            Some("proxy") => proxy = Some(addr),
            Some("admin") => admin = Some(addr),
            other => panic!("unexpected listener {other:?}"),
        }
    }
    Node {
        proc,
        proxy: proxy.expect("a proxy listening line"),
        admin: admin.expect("an admin listening line"),
    }
}

/// The address named by a `listening` line.
fn listening_addr(line: &Value) -> std::net::SocketAddr {
    line["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("listening line without a socket address: {line}"))
}

/// A child process whose output is captured to a log file.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The captured log.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `bin` with `args`, capturing stdout and stderr into `log`.
    pub async fn spawn(bin: &Path, args: &[String], env: &[(&str, &str)], log: &Path) -> Proc {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .await
            .expect("open log");
        let (tx, lines) = mpsc::channel(1024);
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        tokio::spawn(capture(
            out,
            file.try_clone().await.expect("dup log"),
            Some(tx),
        ));
        tokio::spawn(capture(err, file, None));
        Proc {
            child,
            lines,
            log: log.to_path_buf(),
        }
    }

    async fn wait_line(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv()).await;
            match line {
                Ok(Some(line)) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if want(&v) {
                            return v;
                        }
                    }
                }
                Ok(None) => panic!("process exited before listening; log:\n{}", self.log_text()),
                Err(_) => panic!(
                    "no listening line within {START_DEADLINE:?}; log:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    /// The captured log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, deadline: Duration) {
        wait_for(
            &format!("log line containing {needle:?}"),
            deadline,
            || async { self.log_text().contains(needle).then_some(()) },
        )
        .await
    }

    /// Sends a signal (`libc`-free: through `kill`).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running child");
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {pid} failed");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        tokio::time::timeout(deadline, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("process did not exit within {deadline:?}"))
            .expect("wait")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

async fn capture(
    stream: impl tokio::io::AsyncRead + Unpin,
    mut file: tokio::fs::File,
    tx: Option<mpsc::Sender<String>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = file.write_all(line.as_bytes()).await;
        let _ = file.write_all(b"\n").await;
        let _ = file.flush().await;
        if let Some(tx) = &tx {
            let _ = tx.try_send(line);
        }
    }
}

/// A running `rhizome-mock`.
#[derive(Debug)]
pub struct Mock {
    /// The process.
    pub proc: Proc,
    /// Its address.
    pub addr: std::net::SocketAddr,
}

impl Mock {
    /// `http://addr`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET /_mock/stats`.
    pub async fn stats(&self) -> Value {
        http::Client::new()
            .get(&format!("{}/_mock/stats", self.base()), &[])
            .await
            .json()
    }

    /// `POST` a JSON body to a control path.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        let resp = http::Client::new()
            .post(
                &format!("{}{path}", self.base()),
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
        assert_eq!(resp.status, 200, "control {path}: {}", resp.text());
        resp.json()
    }
}

/// A running `rhizome-node`.
#[derive(Debug)]
pub struct Node {
    /// The process.
    pub proc: Proc,
    /// Proxy listener.
    pub proxy: std::net::SocketAddr,
    /// Admin listener.
    pub admin: std::net::SocketAddr,
}

impl Node {
    /// `http://proxy` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    /// `http://admin` + path.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Waits until `/readyz` answers 200 (with Redis: connected and subscribed).
    pub async fn wait_ready(&self) {
        let url = self.admin_url("/readyz");
        wait_for(
            &format!("{url} to answer 200"),
            Duration::from_secs(20),
            || async { (http::Client::new().get(&url, &[]).await.status == 200).then_some(()) },
        )
        .await
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn stop(&mut self) -> ExitStatus {
        self.proc.signal("TERM");
        self.proc.wait_exit(Duration::from_secs(40)).await
    }
}
