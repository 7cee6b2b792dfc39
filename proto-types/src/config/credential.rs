//! `[[credentials]]`: upstream credentials and how their tokens are injected.
//! The TOML form is one flat table per credential (so unknown keys are errors and
//! every field has a path); [`CredentialConfig::spec`] turns it into the typed
//! [`CredentialSpec`] of its kind, reporting missing or misplaced fields.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::validate::ConfigError;
use crate::Secret;

/// `kind` of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A fixed key.
    Static,
    /// OAuth2 client credentials grant (RFC 6749 §4.4).
    Oauth2ClientCredentials,
    /// A JWT minted and signed locally.
    Jwt,
}

impl CredentialKind {
    /// The name written in the config (`kind = "..."`).
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Static => "static",
            CredentialKind::Oauth2ClientCredentials => "oauth2_client_credentials",
            CredentialKind::Jwt => "jwt",
        }
    }
}

/// How the OAuth2 client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// Signing algorithm of a locally minted JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 SHA-256 with a PEM private key.
    RS256,
}

/// Where and how the token goes into the upstream request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectConfig {
    /// Header name, e.g. `Authorization`, `Cookie`, `api-key`.
    pub header: String,
    /// Header value template; `{token}` is replaced by the token.
    pub value: String,
}

impl Default for InjectConfig {
    fn default() -> Self {
        InjectConfig {
            header: "Authorization".into(),
            value: "Bearer {token}".into(),
        }
    }
}

/// One `[[credentials]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// Name used by routes, logs, metrics and the admin API.
    pub name: String,
    /// Which kind of credential this is.
    pub kind: CredentialKind,
    /// How the token is injected.
    #[serde(default)]
    pub inject: InjectConfig,
    /// Refresh this long before expiry.
    #[serde(default = "default_refresh_margin", with = "humantime_serde")]
    pub refresh_margin: Duration,
    /// Consecutive failures before the credential cools down.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Cap of the cooldown, which doubles from 1 s.
    #[serde(default = "default_cooldown_max", with = "humantime_serde")]
    pub cooldown_max: Duration,
    /// `static`: the key.
    pub token: Option<Secret>,
    /// `oauth2_client_credentials`: token endpoint URL.
    pub token_url: Option<String>,
    /// `oauth2_client_credentials`: extra PEM roots trusted for the token
    /// endpoint besides the Web PKI roots, for an IdP behind a private CA
    /// (the same trust rule as `upstreams[].ca_file`).
    pub ca_file: Option<PathBuf>,
    /// `oauth2_client_credentials`: client id.
    pub client_id: Option<String>,
    /// `oauth2_client_credentials`: client secret.
    pub client_secret: Option<Secret>,
    /// `oauth2_client_credentials`: how the client authenticates.
    pub client_auth: Option<ClientAuth>,
    /// `oauth2_client_credentials`: requested scope.
    pub scope: Option<String>,
    /// `jwt`: HS256 secret or RS256 PEM private key.
    pub signing_key: Option<Secret>,
    /// `jwt`: signing algorithm.
    pub algorithm: Option<JwtAlgorithm>,
    /// `jwt`: claims added to every token (`iat`, `exp`, `jti` are set by Rhizome).
    pub claims: Option<serde_json::Map<String, serde_json::Value>>,
    /// `jwt`: lifetime of a minted token.
    #[serde(default, with = "humantime_serde")]
    pub lifetime: Option<Duration>,
}

pub(super) fn default_refresh_margin() -> Duration {
    Duration::from_secs(300)
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_cooldown_max() -> Duration {
    Duration::from_secs(60)
}

/// A credential's kind-specific settings, typed.
#[derive(Debug, Clone)]
pub enum CredentialSpec<'a> {
    /// A fixed key.
    Static {
        /// The key.
        token: &'a Secret,
    },
    /// OAuth2 client credentials.
    OAuth2 {
        /// Token endpoint.
        token_url: &'a str,
        /// Client id.
        client_id: &'a str,
        /// Client secret.
        client_secret: &'a Secret,
        /// Client authentication method.
        client_auth: ClientAuth,
        /// Requested scope.
        scope: Option<&'a str>,
        /// Extra trusted roots for the token endpoint (PEM file).
        ca_file: Option<&'a Path>,
    },
    /// A locally minted JWT.
    Jwt {
        /// Signing key.
        signing_key: &'a Secret,
        /// Algorithm.
        algorithm: JwtAlgorithm,
        /// Extra claims.
        claims: Option<&'a serde_json::Map<String, serde_json::Value>>,
        /// Token lifetime.
        lifetime: Duration,
    },
}

impl CredentialConfig {
    /// The typed settings of this credential's kind; `path` prefixes error paths.
    pub fn spec(&self, path: &str) -> Result<CredentialSpec<'_>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let kind_name = self.kind.as_str();
        let allowed: &[&str] = match self.kind {
            CredentialKind::Static => &["token"],
            CredentialKind::Oauth2ClientCredentials => &[
                "token_url",
                "ca_file",
                "client_id",
                "client_secret",
                "client_auth",
                "scope",
            ],
            CredentialKind::Jwt => &["signing_key", "algorithm", "claims", "lifetime"],
        };
        let present = [
            ("token", self.token.is_some()),
            ("token_url", self.token_url.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("client_id", self.client_id.is_some()),
            ("client_secret", self.client_secret.is_some()),
            ("client_auth", self.client_auth.is_some()),
            ("scope", self.scope.is_some()),
            ("signing_key", self.signing_key.is_some()),
            ("algorithm", self.algorithm.is_some()),
            ("claims", self.claims.is_some()),
            ("lifetime", self.lifetime.is_some()),
        ];
        for (field, is_set) in present {
            if is_set && !allowed.contains(&field) {
                errors.push(ConfigError::new(
                    format!("{path}.{field}"),
                    format!("not a setting of kind \"{kind_name}\""),
                ));
            }
        }
        fn need<'a, T: ?Sized>(
            v: Option<&'a T>,
            path: &str,
            field: &str,
            kind: &str,
            errors: &mut Vec<ConfigError>,
        ) -> Option<&'a T> {
            if v.is_none() {
                errors.push(ConfigError::new(
                    format!("{path}.{field}"),
                    format!("required for kind \"{kind}\""),
                ));
            }
            v
        }
        let spec = match self.kind {
            CredentialKind::Static => {
                need(self.token.as_ref(), path, "token", kind_name, &mut errors)
                    .map(|token| CredentialSpec::Static { token })
            }
            CredentialKind::Oauth2ClientCredentials => {
                let url = need(
                    self.token_url.as_deref(),
                    path,
                    "token_url",
                    kind_name,
                    &mut errors,
                );
                let id = need(
                    self.client_id.as_deref(),
                    path,
                    "client_id",
                    kind_name,
                    &mut errors,
                );
                let secret = need(
                    self.client_secret.as_ref(),
                    path,
                    "client_secret",
                    kind_name,
                    &mut errors,
                );
                match (url, id, secret) {
                    (Some(token_url), Some(client_id), Some(client_secret)) => {
                        Some(CredentialSpec::OAuth2 {
                            token_url,
                            client_id,
                            client_secret,
                            client_auth: self.client_auth.unwrap_or_default(),
                            scope: self.scope.as_deref(),
                            ca_file: self.ca_file.as_deref(),
                        })
                    }
                    _ => None,
                }
            }
            CredentialKind::Jwt => {
                let key = need(
                    self.signing_key.as_ref(),
                    path,
                    "signing_key",
                    kind_name,
                    &mut errors,
                );
                let lifetime = self.lifetime.unwrap_or(Duration::from_secs(3600));
                if lifetime <= self.refresh_margin {
                    errors.push(ConfigError::new(
                        format!("{path}.lifetime"),
                        format!(
                            "must be longer than refresh_margin ({})",
                            humantime::format_duration(self.refresh_margin)
                        ),
                    ));
                }
                key.map(|signing_key| CredentialSpec::Jwt {
                    signing_key,
                    algorithm: self.algorithm.unwrap_or_default(),
                    claims: self.claims.as_ref(),
                    lifetime,
                })
            }
        };
        match spec {
            Some(spec) if errors.is_empty() => Ok(spec),
            _ => Err(errors),
        }
    }
}
