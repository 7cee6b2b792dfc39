//! Certificates made by a test: a private CA, a server certificate for
//! `127.0.0.1`/`localhost` and a client certificate signed by it, written as
//! PEM files into the test's directory (for a `redis-server` with TLS and the
//! node's `[state.tls]`), and an unrelated CA for the "wrong CA" cases.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use super::Env;

/// PEM files of one private PKI.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// Server certificate (SANs `127.0.0.1` and `localhost`) and its key.
    pub server_cert: PathBuf,
    /// Key of `server_cert`.
    pub server_key: PathBuf,
    /// Client certificate and its key.
    pub client_cert: PathBuf,
    /// Key of `client_cert`.
    pub client_key: PathBuf,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    params
}

impl Env {
    /// A CA and a server and a client certificate it signed, as files
    /// `<prefix>-ca.pem`, `<prefix>-server.pem`, … in the test's directory.
    pub fn tls_files(&self, prefix: &str) -> TlsFiles {
        let ca_key = KeyPair::generate().expect("ca key");
        let ca = CertifiedIssuer::self_signed(ca_params(prefix), ca_key).expect("ca");
        let leaf = |names: Vec<String>| {
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(names)
                .expect("params")
                .signed_by(&key, &ca)
                .expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
        let (client_cert, client_key) = leaf(vec!["rhizome-node".into()]);
        TlsFiles {
            ca: self.write(&format!("{prefix}-ca.pem"), ca.pem()),
            server_cert: self.write(&format!("{prefix}-server.pem"), server_cert),
            server_key: self.write(&format!("{prefix}-server.key"), server_key),
            client_cert: self.write(&format!("{prefix}-client.pem"), client_cert),
            client_key: self.write(&format!("{prefix}-client.key"), client_key),
        }
    }
}
