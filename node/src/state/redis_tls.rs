//! Redis over TLS (`rediss://`, `rediss-sentinel://`): the rustls client
//! settings of `[state.tls]`, and the start-up check that the server trusts
//! us and we trust it. A node starts while Redis is unreachable (it keeps
//! reconnecting and `/readyz` says so), but a certificate that will never be
//! accepted is a configuration error: without the check the node would retry
//! it forever with nothing in the logs but reconnection attempts.

use std::sync::Arc;
use std::time::Duration;

use rhizome_proto::config::{ConfigError, RedisTls};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::tls::{self, ClientIdentity};

/// Bound of the start-up check's connect, handshake and `PING`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The client settings of `[state.tls]` (all optional: the Web PKI roots and
/// no client certificate without it).
pub fn client_config(cfg: Option<&RedisTls>) -> Result<Arc<ClientConfig>, ConfigError> {
    let default = RedisTls::default();
    let cfg = cfg.unwrap_or(&default);
    let identity = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert_file), Some(key_file)) => Some(ClientIdentity {
            cert_file,
            key_file,
        }),
        _ => None,
    };
    let field = if identity.is_some() {
        "state.tls"
    } else {
        "state.tls.ca_file"
    };
    tls::client_config(cfg.ca_file.as_deref(), identity)
        .map(Arc::new)
        .map_err(|e| ConfigError::new(field, e.to_string()))
}

/// Connects to `host:port`, shakes hands and sends `PING`. A certificate
/// either side refuses is an error; anything else (refused, timed out, a
/// server that is not up yet) only a warning.
pub async fn check(config: Arc<ClientConfig>, host: &str, port: u16) -> Result<(), ConfigError> {
    match tokio::time::timeout(CHECK_TIMEOUT, handshake_and_ping(config, host, port)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => match refusal(&e) {
            Some(err) => Err(err),
            None => {
                tracing::warn!(host, port, error = %e, "Redis over TLS not reachable yet; the node keeps trying");
                Ok(())
            }
        },
        Err(_) => {
            tracing::warn!(
                host,
                port,
                "Redis over TLS did not answer the start-up check in time; the node keeps trying"
            );
            Ok(())
        }
    }
}

async fn handshake_and_ping(
    config: Arc<ClientConfig>,
    host: &str,
    port: u16,
) -> std::io::Result<()> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    // With TLS 1.3 a server refuses a client certificate only after the
    // handshake: its alert arrives on the first read.
    stream.write_all(b"PING\r\n").await?;
    let mut reply = [0u8; 64];
    match stream.read(&mut reply).await? {
        0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(()),
    }
}

/// The configuration error behind `e`, when a certificate was refused.
fn refusal(e: &std::io::Error) -> Option<ConfigError> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::InvalidCertificate(why) => Some(ConfigError::new(
            "state.tls.ca_file",
            format!("the Redis server's certificate is not trusted ({why:?}); state.tls.ca_file must hold the CA that signed it"),
        )),
        rustls::Error::AlertReceived(alert) => Some(ConfigError::new(
            "state.tls",
            format!("the Redis server refused the TLS connection ({alert:?}): check state.tls.cert_file and key_file against its tls-ca-cert-file"),
        )),
        _ => None,
    }
}
