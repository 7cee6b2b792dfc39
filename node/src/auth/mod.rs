//! Client authentication: a client presents its key as `Authorization: Bearer
//! <key>` or `x-api-key: <key>` (and, to a forward proxy, as
//! `Proxy-Authorization: Bearer <key>`, which wins when present). Keys are configured as SHA-256 digests (or as
//! secret references, digested at start); the presented key is digested and
//! compared with every configured digest in constant time, so neither timing
//! nor early exit tells which client (if any) nearly matched.

use std::sync::Arc;

use http::header::{HeaderMap, AUTHORIZATION, PROXY_AUTHORIZATION};
use rhizome_proto::config::{ClientConfig, ConfigError};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::resolve;

/// An authenticated client's name.
pub type ClientId = Arc<str>;

/// The configured client keys.
#[derive(Debug, Default)]
pub struct ClientKeys {
    clients: Vec<(ClientId, [u8; 32])>,
}

impl ClientKeys {
    /// Digests every configured key; errors name the field.
    pub fn from_config(clients: &[ClientConfig]) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut out = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let digest = match (&c.key_sha256, &c.key) {
                (Some(hex_digest), _) => {
                    let mut d = [0u8; 32];
                    match hex::decode_to_slice(hex_digest, &mut d) {
                        Ok(()) => Some(d),
                        Err(e) => {
                            errors.push(ConfigError::new(
                                format!("clients[{i}].key_sha256"),
                                e.to_string(),
                            ));
                            None
                        }
                    }
                }
                (None, Some(secret)) => match resolve(secret) {
                    Ok(key) => Some(Sha256::digest(key.expose_secret().as_bytes()).into()),
                    Err(e) => {
                        errors.push(ConfigError::new(format!("clients[{i}].key"), e.to_string()));
                        None
                    }
                },
                (None, None) => None,
            };
            if let Some(d) = digest {
                out.push((Arc::from(c.name.as_str()), d));
            }
        }
        if errors.is_empty() {
            Ok(ClientKeys { clients: out })
        } else {
            Err(errors)
        }
    }

    /// The client whose key the request presents, if any; `proxy_auth`
    /// also accepts the key in `Proxy-Authorization` (forward-proxy mode).
    pub fn authenticate(&self, headers: &HeaderMap, proxy_auth: bool) -> Option<ClientId> {
        let key = proxy_auth
            .then(|| headers.get(PROXY_AUTHORIZATION))
            .flatten()
            .map_or_else(|| presented_key(headers), bearer)?;
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for (name, want) in &self.clients {
            if bool::from(want.ct_eq(&digest)) {
                found = Some(name.clone());
            }
        }
        found
    }
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        return bearer(v);
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// The key of a `Bearer <key>` header value.
fn bearer(value: &http::HeaderValue) -> Option<&str> {
    let (scheme, rest) = value.to_str().ok()?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn keys() -> ClientKeys {
        let cfg: Vec<ClientConfig> = vec![
            ClientConfig {
                name: "a".into(),
                key_sha256: Some(hex::encode(Sha256::digest(b"key-a"))),
                key: None,
                ..ClientConfig::default()
            },
            ClientConfig {
                name: "b".into(),
                key_sha256: None,
                key: Some(rhizome_proto::Secret::inline("key-b")),
                ..ClientConfig::default()
            },
        ];
        ClientKeys::from_config(&cfg).expect("keys")
    }

    #[test]
    fn bearer_and_api_key_both_authenticate() {
        let k = keys();
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer key-a"));
        assert_eq!(k.authenticate(&h, false).as_deref(), Some("a"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("key-b"));
        assert_eq!(k.authenticate(&h, false).as_deref(), Some("b"));
    }

    #[test]
    fn wrong_missing_or_non_bearer_keys_fail() {
        let k = keys();
        assert!(k.authenticate(&HeaderMap::new(), false).is_none());
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer key-c"));
        assert!(k.authenticate(&h, false).is_none());
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic key-a"));
        assert!(k.authenticate(&h, false).is_none());
    }

    #[test]
    fn proxy_authorization_counts_only_for_the_forward_proxy() {
        let k = keys();
        let mut h = HeaderMap::new();
        h.insert(
            PROXY_AUTHORIZATION,
            HeaderValue::from_static("Bearer key-a"),
        );
        assert!(k.authenticate(&h, false).is_none());
        assert_eq!(k.authenticate(&h, true).as_deref(), Some("a"));
        // It wins over the usual headers when present, wrong or not.
        h.insert("x-api-key", HeaderValue::from_static("key-b"));
        assert_eq!(k.authenticate(&h, true).as_deref(), Some("a"));
        h.insert(
            PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic a2V5LWE="),
        );
        assert!(k.authenticate(&h, true).is_none());
    }
}
