//! A private `redis-server` per test: a free loopback port, its data (AOF,
//! fsync always) in the test's directory so a restart keeps what was written,
//! and signals to pause, resume or kill it for outage tests.

use std::path::PathBuf;
use std::time::Duration;

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
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("addr").port()
}

async fn spawn(port: u16, dir: &std::path::Path, log: &std::path::Path) -> Option<Proc> {
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
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
        &dir.display().to_string(),
        "--loglevel",
        "notice",
    ]
    .iter()
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
        }
    }

    /// Starts a private `redis-server` (retrying if its port was taken meanwhile).
    pub async fn redis(&self) -> RedisServer {
        let dir = self.path("redis-data");
        std::fs::create_dir_all(&dir).expect("redis dir");
        for attempt in 0..5 {
            // One log file per start, so a wait for "ready" never sees an old line.
            let log = self.path(&format!("redis-{attempt}.log"));
            let port = free_port();
            if let Some(proc) = spawn(port, &dir, &log).await {
                return RedisServer {
                    proc,
                    port,
                    dir,
                    env_dir: self.dir.clone(),
                    starts: 1,
                };
            }
        }
        panic!(
            "redis-server did not start (is it installed? scripts/test.sh installs it); logs in {}",
            self.dir.display()
        );
    }
}

impl RedisServer {
    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
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
            if let Some(proc) = spawn(self.port, &self.dir, &log).await {
                self.proc = proc;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// Runs `redis-cli` against the server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
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
