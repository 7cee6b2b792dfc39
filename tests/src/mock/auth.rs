//! Credential verification for the API endpoints: finds the credentials a
//! request carries (`Authorization: Bearer`, `api-key`, `Cookie: session=`),
//! checks them against the issued OAuth tokens, the JWT keys and the static
//! keys, and describes the outcome as a [`Credential`] or a [`Rejection`].

use std::time::Instant;

use http::HeaderMap;
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use super::state::{lock, MockState, TokenCheck};

/// Keys for verifying JWT bearer tokens.
#[derive(Clone, Default)]
pub(crate) struct JwtKeys {
    pub hs256: Option<DecodingKey>,
    pub rs256: Option<DecodingKey>,
    pub audience: Option<String>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .field("audience", &self.audience)
            .finish()
    }
}

/// What a request was verified with; echoed back instead of the secret.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    None,
    OAuth {
        client_id: String,
        scope: Option<String>,
    },
    Jwt {
        claims: Value,
    },
    Static,
}

impl Credential {
    pub fn to_json(&self) -> Value {
        match self {
            Credential::None => json!({ "kind": "none" }),
            Credential::OAuth { client_id, scope } => {
                json!({ "kind": "oauth", "client_id": client_id, "scope": scope })
            }
            Credential::Jwt { claims } => {
                let scope = claims.get("scope").cloned().unwrap_or(Value::Null);
                json!({ "kind": "jwt", "claims": claims, "scope": scope })
            }
            Credential::Static => json!({ "kind": "static" }),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    Missing,
    Unknown,
    Expired,
    Rotated,
    BadJwt(String),
    UnsupportedScheme,
}

impl Rejection {
    /// Human-readable reason for the 401 body; never contains the credential.
    pub fn reason(&self) -> String {
        match self {
            Rejection::Missing => "no credential presented".into(),
            Rejection::Unknown => "credential not recognised".into(),
            Rejection::Expired => "token expired".into(),
            Rejection::Rotated => "token invalidated by rotation".into(),
            Rejection::BadJwt(why) => format!("jwt rejected: {why}"),
            Rejection::UnsupportedScheme => "unsupported authorization scheme".into(),
        }
    }

    /// Ranks rejections so the most informative one is reported.
    fn rank(&self) -> u8 {
        match self {
            Rejection::Missing => 0,
            Rejection::UnsupportedScheme => 1,
            Rejection::Unknown => 2,
            Rejection::BadJwt(_) => 3,
            Rejection::Rotated => 4,
            Rejection::Expired => 5,
        }
    }
}

/// A credential found in the request, before checking.
#[derive(Debug)]
enum Candidate<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
    Session(&'a str),
    OtherScheme,
}

fn candidates(headers: &HeaderMap) -> Vec<Candidate<'_>> {
    let mut out = Vec::new();
    for v in headers.get_all(http::header::AUTHORIZATION) {
        let Ok(v) = v.to_str() else {
            out.push(Candidate::OtherScheme);
            continue;
        };
        match v.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                out.push(Candidate::Bearer(rest.trim()));
            }
            _ => out.push(Candidate::OtherScheme),
        }
    }
    for v in headers.get_all("api-key") {
        if let Ok(v) = v.to_str() {
            out.push(Candidate::ApiKey(v.trim()));
        }
    }
    for v in headers.get_all(http::header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some(("session", value)) = pair.trim().split_once('=') {
                out.push(Candidate::Session(value.trim()));
            }
        }
    }
    out
}

/// Verifies the request's credentials. The first valid credential wins; when
/// none is valid, the most informative rejection is returned.
pub(crate) fn verify(
    state: &MockState,
    headers: &HeaderMap,
    now: Instant,
) -> Result<Credential, Rejection> {
    let mut worst = Rejection::Missing;
    for cand in candidates(headers) {
        let outcome = match cand {
            Candidate::Bearer(v) => check_bearer(state, v, now),
            Candidate::ApiKey(v) if state.static_keys.contains(v) => Ok(Credential::Static),
            Candidate::ApiKey(_) => Err(Rejection::Unknown),
            Candidate::Session(v) => check_oauth(state, v, now),
            Candidate::OtherScheme => Err(Rejection::UnsupportedScheme),
        };
        match outcome {
            Ok(cred) => return Ok(cred),
            Err(r) if r.rank() > worst.rank() => worst = r,
            Err(_) => {}
        }
    }
    Err(worst)
}

fn check_bearer(state: &MockState, value: &str, now: Instant) -> Result<Credential, Rejection> {
    if state.static_keys.contains(value) {
        Ok(Credential::Static)
    } else if value.starts_with("mocktok-") {
        check_oauth(state, value, now)
    } else if value.split('.').count() == 3 {
        check_jwt(&state.jwt, value)
    } else {
        Err(Rejection::Unknown)
    }
}

fn check_oauth(state: &MockState, token: &str, now: Instant) -> Result<Credential, Rejection> {
    match lock(&state.tokens).check(token, now) {
        TokenCheck::Valid { client_id, scope } => Ok(Credential::OAuth { client_id, scope }),
        TokenCheck::Unknown => Err(Rejection::Unknown),
        TokenCheck::Expired => Err(Rejection::Expired),
        TokenCheck::Rotated => Err(Rejection::Rotated),
    }
}

fn check_jwt(keys: &JwtKeys, token: &str) -> Result<Credential, Rejection> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| Rejection::BadJwt(e.to_string()))?;
    let key = match header.alg {
        Algorithm::HS256 => keys.hs256.as_ref(),
        Algorithm::RS256 => keys.rs256.as_ref(),
        _ => None,
    }
    .ok_or_else(|| Rejection::BadJwt(format!("no key configured for {:?}", header.alg)))?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = 0;
    match &keys.audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    match jsonwebtoken::decode::<Value>(token, key, &validation) {
        Ok(data) => Ok(Credential::Jwt {
            claims: data.claims,
        }),
        Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(Rejection::Expired),
        Err(e) => Err(Rejection::BadJwt(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn now_secs() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    #[test]
    fn finds_all_candidates() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "bearer abc".parse().expect("header"));
        h.insert("api-key", "k1".parse().expect("header"));
        h.insert("cookie", "a=b; session=tok; c=d".parse().expect("header"));
        let c = candidates(&h);
        assert!(matches!(c[0], Candidate::Bearer("abc")));
        assert!(matches!(c[1], Candidate::ApiKey("k1")));
        assert!(matches!(c[2], Candidate::Session("tok")));
    }

    #[test]
    fn jwt_hs256_exp_and_audience() {
        let secret = b"s3cret";
        let keys = JwtKeys {
            hs256: Some(DecodingKey::from_secret(secret)),
            rs256: None,
            audience: Some("api".into()),
        };
        let enc = EncodingKey::from_secret(secret);
        let sign = |claims: Value| {
            jsonwebtoken::encode(&Header::default(), &claims, &enc).expect("encode")
        };
        let ok = sign(json!({"sub": "u", "aud": "api", "exp": now_secs() + 60}));
        assert!(matches!(check_jwt(&keys, &ok), Ok(Credential::Jwt { .. })));
        let expired = sign(json!({"sub": "u", "aud": "api", "exp": now_secs() - 5}));
        assert_eq!(check_jwt(&keys, &expired).err(), Some(Rejection::Expired));
        let wrong_aud = sign(json!({"sub": "u", "aud": "other", "exp": now_secs() + 60}));
        assert!(matches!(
            check_jwt(&keys, &wrong_aud),
            Err(Rejection::BadJwt(_))
        ));
    }
}
