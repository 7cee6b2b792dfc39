//! The node's TLS client settings, one place for every outbound TLS
//! connection (upstreams, token endpoints, Redis): rustls with the ring
//! provider, the Web PKI roots built in plus an optional private CA read from
//! a PEM file, and an optional client certificate. Files are read once, at
//! start-up; an unreadable or empty file is a configuration error naming it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// Why TLS client settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// A PEM file could not be read or holds nothing usable. The reason never
    /// quotes the file's content.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls rejected the configuration (e.g. a key that does not match).
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsFileError {
    TlsFileError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The certificates of a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate found"));
    }
    Ok(certs)
}

/// The Web PKI roots plus the certificates of `ca_file`.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in certificates(path)? {
            roots.add(cert).map_err(|e| file_error(path, e))?;
        }
    }
    Ok(roots)
}

/// A client certificate: the chain of `cert_file` and the key of `key_file`.
#[derive(Debug, Clone, Copy)]
pub struct ClientIdentity<'a> {
    /// PEM certificate chain.
    pub cert_file: &'a Path,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: &'a Path,
}

/// A rustls client configuration trusting [`roots`] and presenting
/// `identity` when given.
pub fn client_config(
    ca_file: Option<&Path>,
    identity: Option<ClientIdentity<'_>>,
) -> Result<ClientConfig, TlsFileError> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(ca_file)?);
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = certificates(id.cert_file)?;
            let key = PrivateKeyDer::from_pem_file(id.key_file)
                .map_err(|_| file_error(id.key_file, "no readable PEM private key"))?;
            builder.with_client_auth_cert(chain, key)?
        }
    })
}
