//! `rhizome-coordinator`: parses the command line and calls the library.
//! Runs a replica by default; `check-config` and `healthcheck` are tools
//! (the latter for containers without curl).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::Full;
use rhizome_coordinator::config::{self, LoadError, Overrides};
use rhizome_coordinator::network::http_client;
use rhizome_coordinator::telemetry::{self, LogFormat};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "rhizome-coordinator",
    version,
    about = "Raft coordinator assigning each Rhizome credential to one live node"
)]
struct Cli {
    /// Configuration file (TOML). Without it: defaults, RHIZOME_COORD__* variables and flags.
    #[arg(long, short, global = true, env = "RHIZOME_COORD_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "json", global = true)]
    log_format: LogFormat,
    /// Overrides `id`: this replica's raft id.
    #[arg(long, global = true)]
    id: Option<u64>,
    /// Overrides `listen`: address of the one listener.
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Overrides `data_dir`: where raft.redb lives.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Replaces `peers`: every replica as ID=URL, comma-separated
    /// (`1=http://c1:7070,2=http://c2:7070,3=http://c3:7070`).
    #[arg(long, global = true, value_parser = parse_peers)]
    peers: Option<Peers>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `--peers` as written: id → URL, both checked by the configuration.
#[derive(Debug, Clone)]
struct Peers(BTreeMap<String, String>);

fn parse_peers(text: &str) -> Result<Peers, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, url) = item
            .split_once('=')
            .ok_or_else(|| format!("\"{item}\" is not ID=URL"))?;
        if peers
            .insert(id.trim().to_string(), url.trim().to_string())
            .is_some()
        {
            return Err(format!("replica {id} given twice"));
        }
    }
    Ok(Peers(peers))
}

#[derive(Subcommand)]
enum Command {
    /// Validates a configuration file (with the environment and flags) and
    /// prints every error with its path.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Exits 0 when the replica's /healthz answers 200.
    Healthcheck {
        /// Health URL.
        #[arg(long, default_value = "http://127.0.0.1:7070/healthz")]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_guard = cli
        .command
        .is_none()
        .then(|| telemetry::init(cli.log_format));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let overrides = Overrides {
        id: cli.id,
        listen: cli.listen.clone(),
        data_dir: cli.data_dir.clone(),
        peers: cli.peers.clone().map(|p| p.0),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Some(Command::CheckConfig { ref file }) => Ok(check_config(file, &overrides)),
            Some(Command::Healthcheck { ref url }) => Ok(healthcheck(url).await),
            None => run(cli.config.as_deref(), &overrides)
                .await
                .map(|()| ExitCode::SUCCESS),
        }
    });
    drop(runtime);
    drop(log_guard);
    result.unwrap_or_else(|e| {
        eprintln!("rhizome-coordinator: {e:#}");
        ExitCode::FAILURE
    })
}

fn print_load_error(e: &LoadError) {
    match e {
        LoadError::Source(msg) => eprintln!("error: {msg}"),
        LoadError::Invalid(errs) => {
            for err in errs {
                eprintln!("error: {err}");
            }
        }
    }
}

fn check_config(file: &Path, overrides: &Overrides) -> ExitCode {
    match config::load(Some(file), overrides) {
        Ok(cfg) => {
            println!(
                "{}: ok (replica {} of {})",
                file.display(),
                cfg.id,
                cfg.peers.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_load_error(&e);
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(url: &str) -> ExitCode {
    let client = http_client();
    let request = match http::Request::get(url).body(Full::new(Bytes::new())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("healthcheck: bad URL {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match tokio::time::timeout(Duration::from_secs(3), client.request(request)).await {
        Ok(Ok(resp)) if resp.status() == http::StatusCode::OK => ExitCode::SUCCESS,
        Ok(Ok(resp)) => {
            eprintln!("healthcheck: {url} answered {}", resp.status());
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("healthcheck: {url}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("healthcheck: {url} did not answer within 3s");
            ExitCode::FAILURE
        }
    }
}

async fn run(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<()> {
    let cfg = match config::load(file, overrides) {
        Ok(cfg) => cfg,
        Err(e) => {
            print_load_error(&e);
            anyhow::bail!("configuration rejected");
        }
    };
    let metrics =
        rhizome_coordinator::metrics::install().context("installing the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            shutdown.cancel();
        }
    });
    rhizome_coordinator::run(cfg, listener, Some(metrics), shutdown).await?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
