//! A private `redis-server` per test: a free loopback port, its data (AOF,
//! fsync always) in the test's directory so a restart keeps what was written,
//! and signals to pause, resume or kill it for outage tests.

use std::path::PathBuf;
use std::time::Duration;

use super::tls::TlsFiles;
use super::{Env, Proc};

/// A running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    /// The process.
    pub proc: Proc,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    env_dir: PathBuf,
    starts: u32,
    /// The certificates of a TLS-only server (`redis-cli` needs them).
    tls: Option<TlsFiles>,
    /// The port arguments it was started with (a restart reuses them).
    listen: Vec<String>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("addr").port()
}

async fn spawn(port: u16, dir: &std::path::Path, log: &std::path::Path) -> Option<Proc> {
    spawn_with(&["--port".into(), port.to_string()], dir, log).await
}

/// Starts `redis-server` with `listen` (the port arguments) and this
/// harness's settings, and waits until it is ready.
async fn spawn_with(
    listen: &[String],
    dir: &std::path::Path,
    log: &std::path::Path,
) -> Option<Proc> {
    let dir_arg = dir.display().to_string();
    let args: Vec<String> = listen
        .iter()
        .map(String::as_str)
        .chain([
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &dir_arg,
            "--loglevel",
            "notice",
        ])
        .map(|s| s.to_string())
        .collect();
    let mut proc = Proc::spawn(std::path::Path::new("redis-server"), &args, &[], log).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if proc.log_text().contains("Ready to accept connections") {
            return Some(proc);
        }
        if !proc.is_running() || tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Env {
    /// A free loopback port for a `redis-server` started later with [`Env::redis_on`].
    pub fn free_port(&self) -> u16 {
        free_port()
    }

    /// Starts a private `redis-server` on `port`.
    pub async fn redis_on(&self, port: u16) -> RedisServer {
        let dir = self.path("redis-data");
        std::fs::create_dir_all(&dir).expect("redis dir");
        let log = self.path(&format!("redis-on-{port}.log"));
        let proc = spawn(port, &dir, &log)
            .await
            .unwrap_or_else(|| panic!("redis-server did not start on {port}"));
        RedisServer {
            proc,
            port,
            dir,
            env_dir: self.dir.clone(),
            starts: 1,
            tls: None,
            listen: vec!["--port".into(), port.to_string()],
        }
    }

    /// Starts a private `redis-server` that speaks TLS only, with `files`'
    /// server certificate, trusting `files`' CA for client certificates,
    /// which it requires when `require_client_cert`.
    pub async fn redis_tls(&self, files: &TlsFiles, require_client_cert: bool) -> RedisServer {
        let dir = self.path("redis-tls-data");
        std::fs::create_dir_all(&dir).expect("redis dir");
        let port = free_port();
        let auth_clients = if require_client_cert { "yes" } else { "no" };
        let listen: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &files.server_cert.display().to_string(),
            "--tls-key-file",
            &files.server_key.display().to_string(),
            "--tls-ca-cert-file",
            &files.ca.display().to_string(),
            "--tls-auth-clients",
            auth_clients,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let log = self.path(&format!("redis-tls-{port}.log"));
        let proc = spawn_with(&listen, &dir, &log)
            .await
            .unwrap_or_else(|| panic!("redis-server with TLS did not start on {port}"));
        RedisServer {
            proc,
            port,
            dir,
            env_dir: self.dir.clone(),
            starts: 1,
            tls: Some(files.clone()),
            listen,
        }
    }

    /// Starts a private `redis-server` with its own data directory `name`
    /// and `extra` arguments (e.g. `--replicaof 127.0.0.1 PORT`), retrying
    /// if its port was taken meanwhile. A restart keeps the arguments.
    pub async fn redis_in(&self, name: &str, extra: &[String]) -> RedisServer {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).expect("redis dir");
        for attempt in 0..5 {
            let port = free_port();
            let mut listen = vec!["--port".to_string(), port.to_string()];
            listen.extend_from_slice(extra);
            let log = self.path(&format!("{name}-{attempt}.log"));
            if let Some(proc) = spawn_with(&listen, &dir, &log).await {
                return RedisServer {
                    proc,
                    port,
                    dir,
                    env_dir: self.dir.clone(),
                    starts: 1,
                    tls: None,
                    listen,
                };
            }
        }
        panic!(
            "redis-server {name} did not start (is it installed? scripts/test.sh installs it); logs in {}",
            self.dir.display()
        );
    }

    /// Starts a private `redis-server` (retrying if its port was taken meanwhile).
    pub async fn redis(&self) -> RedisServer {
        self.redis_in("redis-data", &[]).await
    }
}

impl RedisServer {
    /// `redis://127.0.0.1:port` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.proc.signal("STOP");
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&self) {
        self.proc.signal("CONT");
    }

    /// Stops the server cleanly and starts it again on the same port and data.
    pub async fn restart(&mut self) {
        self.proc.signal("TERM");
        self.proc.wait_exit(Duration::from_secs(10)).await;
        for _ in 0..50 {
            self.starts += 1;
            let log = self
                .env_dir
                .join(format!("redis-restart-{}.log", self.starts));
            if let Some(proc) = spawn_with(&self.listen, &self.dir, &log).await {
                self.proc = proc;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// Runs `redis-cli` against the server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = std::process::Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(tls) = &self.tls {
            cmd.arg("--tls")
                .arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client_cert)
                .arg("--key")
                .arg(&tls.client_key);
        }
        let out = cmd.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Total commands processed so far, from `INFO commandstats`, excluding
    /// the `info` calls this harness makes and the nodes' health pings.
    pub fn commands(&self) -> std::collections::HashMap<String, u64> {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_string(), calls))
            })
            .collect()
    }
}
