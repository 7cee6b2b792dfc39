//! `rhizome-mock`: a stand-in for the outside world in end-to-end tests and
//! the loadtest — an OAuth2 token server, an API that verifies the
//! credentials the proxy injects and echoes requests, SSE upstreams, an MCP
//! Streamable-HTTP upstream, and a `/_mock/` control plane. This module owns
//! the command line and wiring; the binary only parses [`Args`] and calls
//! [`run`].

mod api;
mod auth;
mod control;
mod manual;
mod mcp;
mod mcp_proto;
mod server;
mod sse;
mod state;
mod token;

use std::collections::HashSet;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;

use auth::JwtKeys;
use state::{MockState, RuntimeConfig, Stats, TokenStore};

/// An OAuth client given as `ID:SECRET`; the secret never shows in `Debug`.
#[derive(Clone)]
pub struct ClientCred {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for ClientCred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientCred({}:<redacted>)", self.id)
    }
}

impl std::str::FromStr for ClientCred {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some((id, secret)) if !id.is_empty() => Ok(ClientCred {
                id: id.to_owned(),
                secret: secret.to_owned(),
            }),
            _ => Err("expected ID:SECRET".to_owned()),
        }
    }
}

/// Command line of `rhizome-mock`.
#[derive(Clone, clap::Parser)]
#[command(
    name = "rhizome-mock",
    about = "Mock OAuth server, API and SSE upstream"
)]
pub struct Args {
    /// Address to listen on; the bound address is printed as JSON on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// OAuth client accepted by the token endpoint (repeatable).
    #[arg(long = "client", value_name = "ID:SECRET")]
    pub clients: Vec<ClientCred>,
    /// `expires_in` of issued tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub expires_in: u64,
    /// HS256 secret for verifying JWT bearer tokens.
    #[arg(long, value_name = "SECRET")]
    pub jwt_hs256_secret: Option<String>,
    /// PEM public key for verifying RS256 JWT bearer tokens.
    #[arg(long, value_name = "FILE")]
    pub jwt_rs256_public_key: Option<PathBuf>,
    /// When set, a JWT's `aud` must equal it.
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// Accepted static API key (repeatable).
    #[arg(long = "static-key", value_name = "VALUE")]
    pub static_keys: Vec<String>,
    /// Serve HTTPS with a self-signed certificate.
    #[arg(long)]
    pub tls: bool,
    /// Where to write the certificate PEM (with `--tls`).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub cert_out: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Tools of `rhizome-mock` besides serving.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Exits 0 when the mock at `url` answers 200 (for container healthchecks,
    /// where images carry no curl).
    Healthcheck {
        /// A URL every mock answers.
        #[arg(long, default_value = "http://127.0.0.1:9999/_mock/stats")]
        url: String,
    },
}

/// Runs [`Command::Healthcheck`]: whether `url` answered 200 within 5 s.
pub async fn healthcheck(url: &str) -> bool {
    let client = crate::harness::http::Client::new();
    matches!(
        client.try_get(url, &[], std::time::Duration::from_secs(5)).await,
        Some(resp) if resp.status == 200
    )
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("listen", &self.listen)
            .field("clients", &self.clients)
            .field("expires_in", &self.expires_in)
            .field(
                "jwt_hs256_secret",
                &self.jwt_hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt_rs256_public_key", &self.jwt_rs256_public_key)
            .field("jwt_audience", &self.jwt_audience)
            .field("static_keys", &self.static_keys.len())
            .field("tls", &self.tls)
            .field("cert_out", &self.cert_out)
            .finish()
    }
}

/// Installs a plain tracing subscriber on stderr (`RUST_LOG`, default info).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Ignore the error if a subscriber is already installed.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn build_state(args: &Args) -> anyhow::Result<MockState> {
    let rs256 = match &args.jwt_rs256_public_key {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(&pem)
                .with_context(|| format!("parsing RSA public key {}", path.display()))?;
            Some(key)
        }
        None => None,
    };
    Ok(MockState {
        clients: args
            .clients
            .iter()
            .map(|c| (c.id.clone(), c.secret.clone()))
            .collect(),
        static_keys: args.static_keys.iter().cloned().collect::<HashSet<_>>(),
        jwt: JwtKeys {
            hs256: args
                .jwt_hs256_secret
                .as_ref()
                .map(|s| jsonwebtoken::DecodingKey::from_secret(s.as_bytes())),
            rs256,
            audience: args.jwt_audience.clone(),
        },
        config: Mutex::new(RuntimeConfig::new(args.expires_in)),
        tokens: Mutex::new(TokenStore::default()),
        stats: Mutex::new(Stats::default()),
        manual: Mutex::new(sse::ManualRegistry::default()),
        mcp: Mutex::new(mcp::McpSessions::default()),
        emit_lock: tokio::sync::Mutex::new(()),
    })
}

fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/oauth/token", post(token::token))
        .route("/_mock/stats", get(control::stats))
        .route(
            "/_mock/config",
            get(control::get_config).post(control::set_config),
        )
        .route("/_mock/rotate", post(control::rotate))
        .route("/_mock/reset", post(control::reset))
        .route("/_mock/sse/{name}/emit", post(manual::emit))
        .route("/_mock/sse/{name}/close", post(manual::close))
        .route("/_mock/mcp/forget", post(mcp::forget))
        .route("/slow", get(api::slow))
        .route("/status/{code}", get(api::status))
        .route("/bytes", get(api::bytes))
        .route("/sse", get(sse::sse))
        .route("/sse/manual/{name}", get(manual::open))
        .route("/mcp", post(mcp::post).get(mcp::get).delete(mcp::delete))
        .fallback(api::echo)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            api::gate,
        ))
        .with_state(state)
}

#[derive(Serialize)]
struct Listening {
    event: &'static str,
    addr: SocketAddr,
}

/// Runs the mock until SIGTERM/SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let state = Arc::new(build_state(&args)?);
    let tls = if args.tls {
        Some(server::tls_acceptor(args.cert_out.as_deref())?)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("local address")?;
    {
        let line = serde_json::to_string(&Listening {
            event: "listening",
            addr,
        })?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").context("writing listening line")?;
        out.flush().context("flushing stdout")?;
    }
    tracing::info!(%addr, tls = args.tls, clients = args.clients.len(), "rhizome-mock listening");
    let app = router(Arc::clone(&state));
    let shutdown = async move {
        let res = server::shutdown_signal().await;
        // End manual SSE streams so connections can drain promptly.
        state::lock(&state.manual).close_all();
        res
    };
    server::serve(listener, tls, app, shutdown).await
}
