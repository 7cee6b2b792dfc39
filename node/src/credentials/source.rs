//! Where tokens come from, one variant per credential kind: a static key, the
//! OAuth2 client-credentials grant (RFC 6749 §4.4, client auth `basic` or
//! `body`) against a token endpoint, or a JWT signed locally (HS256/RS256).
//! Errors describe the failure without echoing secrets or response bodies.
//! A token endpoint behind a private CA (`ca_file`) gets its own client from
//! the node's one client builder, trusting that CA besides the Web PKI roots.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Limited};
use jsonwebtoken::{EncodingKey, Header};
use rhizome_proto::config::{ClientAuth, CredentialSpec, JwtAlgorithm};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::{resolve, SecretError};
use crate::error::{error_chain, full};
use crate::upstream::client::{self, ClientSettings};
use crate::upstream::HttpClient;

/// Upper bound of one token-endpoint call, connect to last byte.
pub const TOKEN_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token-endpoint answer read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// Claims shown in the admin view; everything else stays hidden.
const PUBLIC_CLAIMS: [&str; 9] = [
    "iss",
    "sub",
    "aud",
    "scope",
    "exp",
    "iat",
    "nbf",
    "azp",
    "client_id",
];

/// A freshly obtained token.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The value.
    pub value: SecretString,
    /// When it was obtained, Unix milliseconds.
    pub obtained_ms: u64,
    /// When it expires, Unix milliseconds (none: never).
    pub expires_ms: Option<u64>,
    /// Non-secret claims, when the token is a JWT.
    pub claims: Option<serde_json::Value>,
    /// Cluster-wide version, when the token came from shared state.
    pub version: Option<u64>,
}

impl Minted {
    /// A token obtained now that lives `lifetime` (none: never expires).
    pub fn new(
        value: SecretString,
        lifetime: Option<Duration>,
        claims: Option<serde_json::Value>,
    ) -> Self {
        let obtained_ms = unix_ms();
        let life_ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Minted {
            value,
            obtained_ms,
            expires_ms: lifetime.map(|d| obtained_ms.saturating_add(life_ms(d))),
            claims,
            version: None,
        }
    }
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Why a token could not be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint answered with an error status.
    #[error("token endpoint answered {status}{}", .error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Endpoint {
        /// HTTP status.
        status: u16,
        /// OAuth `error` code, when given.
        error: Option<String>,
    },
    /// The token endpoint could not be reached or timed out.
    #[error("token endpoint unreachable: {0}")]
    Transport(String),
    /// The answer was not a token response.
    #[error("invalid token response: {0}")]
    InvalidResponse(String),
    /// Signing a JWT failed.
    #[error("jwt signing failed: {0}")]
    Signing(String),
    /// Shared state (Redis) could not be read or written.
    #[error("{0}")]
    StateStore(#[from] crate::state::redis::StateError),
    /// Another node holds the refresh lock and did not publish a token in time.
    #[error("waited {0:?} for another node's refresh")]
    WaitedForPeer(Duration),
    /// The request's deadline passed before a token was obtained.
    #[error("no token within the request's deadline")]
    Deadline,
}

impl TokenError {
    /// True when shared state, not the token endpoint, failed: a token still
    /// within its real lifetime may then be used (G6).
    pub fn is_shared_state(&self) -> bool {
        matches!(
            self,
            TokenError::StateStore(_) | TokenError::WaitedForPeer(_)
        )
    }
}

/// The kind-specific way of obtaining a token.
pub enum TokenSource {
    /// A fixed key.
    Static(SecretString),
    /// OAuth2 client credentials.
    OAuth2 {
        /// Token endpoint.
        token_url: Uri,
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: SecretString,
        /// How the client authenticates.
        client_auth: ClientAuth,
        /// Requested scope.
        scope: Option<String>,
        /// The credential's own client when it has a `ca_file`; otherwise
        /// the node's shared token client is used. Boxed: a client is large.
        client: Option<Box<HttpClient>>,
    },
    /// A locally signed JWT.
    Jwt {
        /// Signing key.
        key: EncodingKey,
        /// Signing algorithm.
        algorithm: jsonwebtoken::Algorithm,
        /// Configured claims.
        claims: serde_json::Map<String, serde_json::Value>,
        /// Lifetime of each token.
        lifetime: Duration,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Static(_) => f.write_str("Static(***)"),
            TokenSource::OAuth2 {
                token_url,
                client_id,
                ..
            } => f
                .debug_struct("OAuth2")
                .field("token_url", token_url)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            TokenSource::Jwt { algorithm, .. } => f
                .debug_struct("Jwt")
                .field("alg", algorithm)
                .finish_non_exhaustive(),
        }
    }
}

/// Why a token source could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum SourceBuildError {
    /// A secret reference did not resolve.
    #[error("{field}: {source}")]
    Secret {
        /// Field holding the reference.
        field: &'static str,
        /// Why.
        source: SecretError,
    },
    /// A value is malformed.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl TokenSource {
    /// Builds the source of a validated credential spec, resolving its secrets.
    pub fn from_spec(spec: &CredentialSpec<'_>) -> Result<Self, SourceBuildError> {
        let secret =
            |field, s| resolve(s).map_err(|source| SourceBuildError::Secret { field, source });
        Ok(match spec {
            CredentialSpec::Static { token } => TokenSource::Static(secret("token", token)?),
            CredentialSpec::OAuth2 {
                token_url,
                client_id,
                client_secret,
                client_auth,
                scope,
                ca_file,
            } => {
                let uri: Uri = token_url.parse().map_err(|e: http::uri::InvalidUri| {
                    SourceBuildError::Invalid {
                        field: "token_url",
                        message: e.to_string(),
                    }
                })?;
                if uri.scheme().is_none() || uri.authority().is_none() {
                    return Err(SourceBuildError::Invalid {
                        field: "token_url",
                        message: "must be an absolute http(s) URL".into(),
                    });
                }
                TokenSource::OAuth2 {
                    token_url: uri,
                    client_id: (*client_id).to_string(),
                    client_secret: secret("client_secret", client_secret)?,
                    client_auth: *client_auth,
                    scope: scope.map(str::to_string),
                    client: ca_file.map(private_ca_client).transpose()?.map(Box::new),
                }
            }
            CredentialSpec::Jwt {
                signing_key,
                algorithm,
                claims,
                lifetime,
            } => {
                let raw = secret("signing_key", signing_key)?;
                let (key, alg) = match algorithm {
                    JwtAlgorithm::HS256 => (
                        EncodingKey::from_secret(raw.expose_secret().as_bytes()),
                        jsonwebtoken::Algorithm::HS256,
                    ),
                    JwtAlgorithm::RS256 => (
                        EncodingKey::from_rsa_pem(raw.expose_secret().as_bytes()).map_err(|e| {
                            SourceBuildError::Invalid {
                                field: "signing_key",
                                message: format!("not an RSA PEM private key: {e}"),
                            }
                        })?,
                        jsonwebtoken::Algorithm::RS256,
                    ),
                };
                TokenSource::Jwt {
                    key,
                    algorithm: alg,
                    claims: claims.cloned().unwrap_or_default(),
                    lifetime: *lifetime,
                }
            }
        })
    }

    /// True when tokens of this source expire and are refreshed.
    pub fn expires(&self) -> bool {
        !matches!(self, TokenSource::Static(_))
    }

    /// Obtains a new token.
    pub async fn fetch(&self, http: &HttpClient) -> Result<Minted, TokenError> {
        match self {
            TokenSource::Static(v) => Ok(Minted::new(v.clone(), None, None)),
            TokenSource::Jwt {
                key,
                algorithm,
                claims,
                lifetime,
            } => mint_jwt(key, &Header::new(*algorithm), claims, *lifetime),
            TokenSource::OAuth2 {
                token_url,
                client_id,
                client_secret,
                client_auth,
                scope,
                client,
            } => {
                let fut = oauth2(
                    client.as_deref().unwrap_or(http),
                    token_url,
                    client_id,
                    client_secret,
                    *client_auth,
                    scope.as_deref(),
                );
                tokio::time::timeout(TOKEN_FETCH_TIMEOUT, fut)
                    .await
                    .map_err(|_| {
                        TokenError::Transport(format!("timed out after {TOKEN_FETCH_TIMEOUT:?}"))
                    })?
            }
        }
    }
}

/// A token client that also trusts the PEM roots in `ca_file`; an unreadable
/// file or one without a certificate is a config error naming `ca_file`.
fn private_ca_client(ca_file: &std::path::Path) -> Result<HttpClient, SourceBuildError> {
    let settings = ClientSettings {
        ca_file: Some(ca_file),
        ..ClientSettings::default()
    };
    client::build(&settings).map_err(|e| SourceBuildError::Invalid {
        field: "ca_file",
        message: e.0.to_string(),
    })
}

fn mint_jwt(
    key: &EncodingKey,
    header: &Header,
    claims: &serde_json::Map<String, serde_json::Value>,
    lifetime: Duration,
) -> Result<Minted, TokenError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut all = claims.clone();
    all.insert("iat".into(), now.into());
    all.insert("exp".into(), (now + lifetime.as_secs()).into());
    all.insert("jti".into(), hex::encode(rand::random::<[u8; 12]>()).into());
    let value =
        jsonwebtoken::encode(header, &all, key).map_err(|e| TokenError::Signing(e.to_string()))?;
    Ok(Minted::new(
        SecretString::from(value),
        Some(lifetime),
        Some(public_claims(&all)),
    ))
}

/// The non-secret claims of a JWT payload, for the admin view.
fn public_claims(all: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    PUBLIC_CLAIMS
        .iter()
        .filter_map(|k| all.get(*k).map(|v| ((*k).to_string(), v.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Claims of an opaque token that happens to be a JWT (unverified: display only).
fn claims_of(token: &str) -> Option<serde_json::Value> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
    Some(public_claims(&map))
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

/// The token request; built apart so no form serializer is held across awaits.
fn build_token_request(
    token_url: &Uri,
    client_id: &str,
    client_secret: &SecretString,
    client_auth: ClientAuth,
    scope: Option<&str>,
) -> Result<Request<crate::BoxBody>, TokenError> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(token_url.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json");
    match client_auth {
        ClientAuth::Body => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", client_secret.expose_secret());
        }
        ClientAuth::Basic => {
            // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(client_id), enc(client_secret.expose_secret()));
            let mut value = HeaderValue::try_from(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
            .map_err(|_| {
                TokenError::Transport("client credentials are not valid in a header".into())
            })?;
            value.set_sensitive(true);
            req = req.header(AUTHORIZATION, value);
        }
    }
    let req = req
        .body(full(Bytes::from(form.finish())))
        .map_err(|e| TokenError::Transport(e.to_string()))?;
    Ok(req)
}

async fn oauth2(
    http: &HttpClient,
    token_url: &Uri,
    client_id: &str,
    client_secret: &SecretString,
    client_auth: ClientAuth,
    scope: Option<&str>,
) -> Result<Minted, TokenError> {
    let req = build_token_request(token_url, client_id, client_secret, client_auth, scope)?;
    let resp = http
        .request(req)
        .await
        .map_err(|e| TokenError::Transport(error_chain(&e)))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_TOKEN_RESPONSE)
        .collect()
        .await
        .map_err(|e| TokenError::Transport(format!("reading answer: {e}")))?
        .to_bytes();
    if !status.is_success() {
        let error = serde_json::from_slice::<OAuthError>(&body)
            .ok()
            .map(|e| e.error);
        return Err(TokenError::Endpoint {
            status: status.as_u16(),
            error,
        });
    }
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        TokenError::InvalidResponse(format!("not a token response: {}", e.classify_name()))
    })?;
    if parsed.access_token.is_empty() {
        return Err(TokenError::InvalidResponse("empty access_token".into()));
    }
    let claims = claims_of(&parsed.access_token);
    Ok(Minted::new(
        SecretString::from(parsed.access_token),
        parsed.expires_in.map(Duration::from_secs),
        claims,
    ))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io error",
            serde_json::error::Category::Syntax => "malformed JSON",
            serde_json::error::Category::Data => "missing or mistyped fields",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}
