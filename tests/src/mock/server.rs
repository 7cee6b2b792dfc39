//! Serving the mock's router: the accept loop over hyper-util's auto builder
//! (HTTP/1.1 and prior-knowledge h2c on one port, or both over TLS with ALPN),
//! the self-signed certificate, and graceful shutdown on SIGTERM/SIGINT.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long to wait for open connections (SSE!) after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(1);
/// Limit on the TLS handshake of one connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Generates a self-signed certificate for `localhost` and `127.0.0.1`,
/// writes its PEM to `cert_out` when given, and returns the TLS acceptor.
pub(crate) fn tls_acceptor(cert_out: Option<&Path>) -> anyhow::Result<TlsAcceptor> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).context("generating certificate")?;
    if let Some(path) = cert_out {
        std::fs::write(path, certified.cert.pem())
            .with_context(|| format!("writing certificate to {}", path.display()))?;
    }
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .context("TLS certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("ctrl-c handler")?;
    Ok(())
}

/// Connections accepted so far (tests check pooled connections are reused).
static ACCEPTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Connections that have ended so far (a client that drops a connection
/// instead of reusing it shows here).
static CLOSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Connections accepted so far.
pub(crate) fn accepted() -> u64 {
    ACCEPTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Connections ended so far.
pub(crate) fn closed() -> u64 {
    CLOSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts its connection as ended when dropped, however the task ends.
struct CountClose;

impl Drop for CountClose {
    fn drop(&mut self) {
        CLOSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Accepts connections until `shutdown` resolves, then drains briefly.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    shutdown: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(4096)
        .adaptive_window(true);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            res = &mut shutdown => {
                res?;
                tracing::info!("shutdown signal received");
                break;
            }
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let service = TowerToHyperService::new(app.clone());
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _count = CountClose;
            let result =
                match tls {
                    None => {
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        watcher.watch(conn).await
                    }
                    Some(acceptor) => {
                        let tls_stream =
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(tls_stream), service)
                            .into_owned();
                        watcher.watch(conn).await
                    }
                };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("connections still open after drain period; exiting anyway");
    }
    Ok(())
}
