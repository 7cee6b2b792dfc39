//! The one HTTP client of the node: hyper-util's pooled legacy client over a
//! rustls connector (ring provider, Web PKI roots plus an optional private CA).
//! Upstream traffic and token-endpoint calls both go through clients built
//! here; only their settings differ (protocol, CA, pool sizes).

use std::path::Path;
use std::time::Duration;

use crate::tls::TlsFileError;
use crate::BoxBody;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rhizome_proto::config::UpstreamProtocol;

/// The pooled HTTP/1.1 + HTTP/2 (+TLS) client.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, BoxBody>;

/// Settings of one client.
#[derive(Debug, Clone)]
pub struct ClientSettings<'a> {
    /// Protocol to speak.
    pub protocol: UpstreamProtocol,
    /// TCP + TLS connect bound.
    pub connect_timeout: Duration,
    /// Extra trusted roots (PEM).
    pub ca_file: Option<&'a Path>,
    /// Idle connections are closed after this.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientSettings<'_> {
    fn default() -> Self {
        ClientSettings {
            protocol: UpstreamProtocol::Auto,
            connect_timeout: Duration::from_secs(5),
            ca_file: None,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 16,
        }
    }
}

/// Why a client could not be built: its TLS settings (the CA file).
#[derive(Debug, thiserror::Error)]
#[error("ca_file {0}")]
pub struct ClientBuildError(#[from] pub TlsFileError);

/// Builds a client with `settings`.
pub fn build(settings: &ClientSettings<'_>) -> Result<HttpClient, ClientBuildError> {
    let tls = crate::tls::client_config(settings.ca_file, None)?;

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    // Dead peers behind NATs and load balancers are noticed, not waited on.
    http.set_keepalive(Some(Duration::from_secs(60)));

    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = match settings.protocol {
        UpstreamProtocol::Auto => builder.enable_http1().enable_http2().wrap_connector(http),
        UpstreamProtocol::Http1 => builder.enable_http1().wrap_connector(http),
        UpstreamProtocol::Http2 => builder.enable_http2().wrap_connector(http),
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(settings.pool_idle_timeout)
        .pool_max_idle_per_host(settings.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(settings.protocol == UpstreamProtocol::Http2)
        .build(connector))
}
