//! `rhizome-node`: parses the command line and calls the library. Runs the
//! node by default; `check-config`, `openapi` and `healthcheck` are tools.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rhizome_node::config::{self, LoadError, Overrides};
use rhizome_node::shutdown::Shutdown;
use rhizome_node::telemetry::{self, LogFormat};
use rhizome_node::{server, App, Listeners};

#[derive(Parser)]
#[command(
    name = "rhizome-node",
    version,
    about = "Credential-injecting reverse proxy node"
)]
struct Cli {
    /// Configuration file (TOML). Without it: defaults and RHIZOME__* variables.
    #[arg(long, short, global = true, env = "RHIZOME_CONFIG")]
    config: Option<PathBuf>,
    /// Log format (default `json`); overrides `log.format`.
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
    /// Overrides `node.id`.
    #[arg(long)]
    node_id: Option<String>,
    /// Overrides `node.listen`.
    #[arg(long)]
    listen: Option<String>,
    /// Overrides `node.admin_listen`.
    #[arg(long)]
    admin_listen: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validates a configuration file and prints every error with its path.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Prints the OpenAPI document.
    Openapi,
    /// Exits 0 when the node's /readyz answers 200 (for container healthchecks).
    Healthcheck {
        /// Readiness URL.
        #[arg(long, default_value = "http://127.0.0.1:9090/readyz")]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Running a node: the configuration comes first, since its `[log]` says
    // where logs go. Its errors go to stderr, as they would before any log.
    let config = match cli.command {
        Some(_) => None,
        None => match load(&cli) {
            Ok(cfg) => Some(cfg),
            Err(e) => {
                print_load_error(&e);
                eprintln!("rhizome-node: configuration rejected");
                return ExitCode::FAILURE;
            }
        },
    };
    // The log writer thread outlives the runtime: tasks still log while the
    // runtime shuts down, and a line sent after the writer stopped is lost.
    let log_guard = match &config {
        None => None,
        Some(cfg) => {
            let format = cli.log_format.unwrap_or(cfg.log.format.into());
            match telemetry::init(format, &cfg.log) {
                Ok(guard) => Some(guard),
                Err(e) => {
                    eprintln!("rhizome-node: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
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
    let result = runtime.block_on(async move {
        match (cli.command, config) {
            (Some(Command::CheckConfig { ref file }), _) => Ok(check_config(file)),
            (Some(Command::Openapi), _) => {
                println!("{}", rhizome_node::admin::openapi_json());
                Ok(ExitCode::SUCCESS)
            }
            (Some(Command::Healthcheck { ref url }), _) => healthcheck(url).await,
            (None, Some(cfg)) => run(cfg).await.map(|()| ExitCode::SUCCESS),
            (None, None) => Err(anyhow::anyhow!("no configuration loaded")),
        }
    });
    drop(runtime);
    drop(log_guard);
    result.unwrap_or_else(|e| {
        eprintln!("rhizome-node: {e:#}");
        ExitCode::FAILURE
    })
}

/// The node's configuration: file, environment, then the flags.
fn load(cli: &Cli) -> Result<rhizome_proto::Config, LoadError> {
    let overrides = Overrides {
        id: cli.node_id.clone(),
        listen: cli.listen.clone(),
        admin_listen: cli.admin_listen.clone(),
    };
    config::load(cli.config.as_deref(), &overrides)
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

fn check_config(file: &std::path::Path) -> ExitCode {
    let cfg = match config::load(Some(file), &Overrides::default()) {
        Ok(cfg) => cfg,
        Err(e) => {
            print_load_error(&e);
            return ExitCode::FAILURE;
        }
    };
    match App::build(&cfg, None, Shutdown::new()) {
        Ok(_) => {
            println!(
                "{}: ok ({} routes, {} credentials)",
                file.display(),
                cfg.routes.len(),
                cfg.credentials.len()
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for err in errs {
                eprintln!("error: {err}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(url: &str) -> anyhow::Result<ExitCode> {
    let client = rhizome_node::upstream::client::build(&Default::default())?;
    let req = http::Request::get(url).body(rhizome_node::error::full(bytes::Bytes::new()))?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), client.request(req))
        .await
        .context("healthcheck timed out")??;
    Ok(if resp.status().is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run(cfg: rhizome_proto::Config) -> anyhow::Result<()> {
    let metrics = rhizome_node::metrics::install().context("installing the metrics recorder")?;
    let listeners = Listeners {
        proxy: server::bind(cfg.node.listen).await?,
        admin: server::bind(cfg.node.admin_listen).await?,
    };
    let shutdown = Shutdown::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            shutdown.trigger();
        }
    });
    rhizome_node::run(cfg, listeners, Some(metrics), shutdown).await?;
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
