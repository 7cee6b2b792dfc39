//! The OAuth2 token endpoint, `POST /oauth/token`: the client-credentials
//! grant of RFC 6749 §4.4 with client authentication by HTTP Basic or by
//! `client_id`/`client_secret` in the form body, plus the form and Basic
//! parsing it needs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::state::{lock, MockState};

/// How the client authenticated itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthMethod {
    Basic,
    Body,
}

/// Decodes `application/x-www-form-urlencoded` into ordered pairs.
pub(crate) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |&b| b == b'=');
            let k = it.next().unwrap_or_default();
            let v = it.next().unwrap_or_default();
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// Percent-decodes one form component, turning `+` into a space.
pub(crate) fn form_decode(s: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `Authorization: Basic base64(id:secret)` into `(id, secret)`.
pub(crate) fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    let mut resp = (status, Json(json!({ "error": error }))).into_response();
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"rhizome-mock\""),
        );
    }
    resp
}

/// `POST /oauth/token`.
pub(crate) async fn token(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (expires_in, delay, fail_clients, slow_clients) = {
        let cfg = lock(&state.config);
        (
            cfg.expires_in,
            cfg.token_delay_ms,
            cfg.fail_clients.clone(),
            cfg.slow_clients.clone(),
        )
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let form = parse_form(&body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_basic);
    let (client, method) = match (basic, field("client_id")) {
        (Some((id, secret)), _) => (Some((id, secret)), Some(AuthMethod::Basic)),
        (None, Some(id)) => {
            let secret = field("client_secret").unwrap_or_default().to_owned();
            (Some((id.to_owned(), secret)), Some(AuthMethod::Body))
        }
        (None, None) => (None, None),
    };

    let _in_flight = client.as_ref().map(|(id, _)| InFlight::enter(&state, id));
    {
        let mut stats = lock(&state.stats);
        stats.token_calls_total += 1;
        if let Some((id, _)) = &client {
            *stats.token_calls.entry(id.clone()).or_default() += 1;
        }
        match method {
            Some(AuthMethod::Basic) => stats.token_auth_methods.basic += 1,
            Some(AuthMethod::Body) => stats.token_auth_methods.body += 1,
            None => {}
        }
    }

    let Some((client_id, secret)) = client else {
        tracing::info!("token call without client authentication");
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if let Some(ms) = slow_clients.get(&client_id) {
        tokio::time::sleep(Duration::from_millis(*ms)).await;
    }
    if fail_clients.contains(&client_id) {
        tracing::info!(%client_id, "token call failed on purpose (fail_clients)");
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    }
    let known = state.clients.get(&client_id);
    // Accept the secret as sent or, per RFC 6749 §2.3.1, form-decoded.
    let secret_ok = known.is_some_and(|s| {
        *s == secret || (method == Some(AuthMethod::Basic) && *s == form_decode(secret.as_bytes()))
    });
    if !secret_ok {
        tracing::info!(%client_id, "token call with unknown client or wrong secret");
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match field("grant_type") {
        Some("client_credentials") => {}
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
        Some(_) => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }

    let scope = field("scope").map(str::to_owned);
    let access_token = lock(&state.tokens).issue(
        &client_id,
        scope.clone(),
        Duration::from_secs(expires_in),
        Instant::now(),
    );
    tracing::info!(%client_id, ?method, expires_in, "issued token");
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    });
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// A token call of one client being answered; counts overlapping calls.
struct InFlight {
    state: Arc<MockState>,
    client: String,
}

impl InFlight {
    fn enter(state: &Arc<MockState>, client: &str) -> InFlight {
        let mut stats = lock(&state.stats);
        let n = stats.token_in_flight.entry(client.to_owned()).or_default();
        *n += 1;
        if *n > 1 {
            *stats.token_overlaps.entry(client.to_owned()).or_default() += 1;
        }
        InFlight {
            state: state.clone(),
            client: client.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut stats = lock(&self.state.stats);
        if let Some(n) = stats.token_in_flight.get_mut(&self.client) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_parsing() {
        let enc = base64::engine::general_purpose::STANDARD.encode("svc:pa:ss");
        assert_eq!(
            parse_basic(&format!("Basic {enc}")),
            Some(("svc".into(), "pa:ss".into()))
        );
        assert_eq!(
            parse_basic(&format!("basic  {enc}")).map(|c| c.0),
            Some("svc".into())
        );
        assert_eq!(parse_basic(&format!("Bearer {enc}")), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        let no_colon = base64::engine::general_purpose::STANDARD.encode("svc");
        assert_eq!(parse_basic(&format!("Basic {no_colon}")), None);
    }

    #[test]
    fn form_parsing() {
        let f = parse_form(b"grant_type=client_credentials&scope=a+b%3Ac&empty=&x");
        assert_eq!(
            f,
            vec![
                ("grant_type".into(), "client_credentials".into()),
                ("scope".into(), "a b:c".into()),
                ("empty".into(), String::new()),
                ("x".into(), String::new()),
            ]
        );
        assert_eq!(form_decode(b"100%"), "100%");
        assert_eq!(form_decode(b"%zz%4"), "%zz%4");
    }
}
