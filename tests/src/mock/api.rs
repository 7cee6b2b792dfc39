//! The credential-checked API surface: the gate middleware that verifies
//! credentials and keeps the request counters, and the plain endpoints —
//! echo (the fallback for every unmatched path), `/slow`, `/status/{code}`
//! and `/bytes`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{self, Credential, Rejection};
use super::state::{lock, MockState};

/// Largest request body the echo reads.
const MAX_BODY: usize = 64 << 20;
/// Chunk size of `/bytes` responses.
const CHUNK: usize = 64 << 10;
static CHUNK_BYTES: [u8; CHUNK] = [b'x'; CHUNK];
/// Headers whose values are never echoed back.
const REDACTED: [&str; 4] = ["authorization", "api-key", "cookie", "proxy-authorization"];

/// Middleware in front of every route: counts paths, lets the token and
/// control endpoints through, and verifies credentials for everything else
/// (except `/open/…`), storing the [`Credential`] as a request extension.
pub(crate) async fn gate(
    State(state): State<Arc<MockState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/_mock/") {
        return next.run(req).await;
    }
    *lock(&state.stats)
        .requests_by_path
        .entry(path.clone())
        .or_default() += 1;
    if path == "/oauth/token" {
        return next.run(req).await;
    }
    if path.starts_with("/open/") {
        req.extensions_mut().insert(Credential::None);
        return next.run(req).await;
    }
    let auth_delay = lock(&state.config).auth_delay_ms;
    if auth_delay > 0 {
        tokio::time::sleep(Duration::from_millis(auth_delay)).await;
    }
    match auth::verify(&state, req.headers(), Instant::now()) {
        Ok(cred) => {
            lock(&state.stats).api_requests += 1;
            let api_status = lock(&state.config).api_status;
            if let Some(code) = api_status.and_then(|c| StatusCode::from_u16(c).ok()) {
                return (code, Json(json!({ "error": "mock_failure" }))).into_response();
            }
            req.extensions_mut().insert(cred);
            next.run(req).await
        }
        Err(rejection) => {
            {
                let mut stats = lock(&state.stats);
                stats.rejected += 1;
                if rejection == Rejection::Expired {
                    stats.expired_seen += 1;
                }
            }
            tracing::info!(%path, reason = %rejection.reason(), "rejected request");
            // Like most servers, read (and drop) the request body before answering,
            // so the client sees the 401 instead of a reset connection.
            let _ = axum::body::to_bytes(req.into_body(), MAX_BODY).await;
            unauthorized(&rejection)
        }
    }
}

fn unauthorized(rejection: &Rejection) -> Response {
    let body = json!({ "error": "invalid_token", "reason": rejection.reason() });
    let mut resp = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    resp.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    resp
}

/// A JSON error response.
pub(crate) fn json_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

/// Statuses that may carry a body as a final response.
fn usable_status(code: u16) -> Option<StatusCode> {
    StatusCode::from_u16(code)
        .ok()
        .filter(|s| !s.is_informational())
}

fn bodyless(status: StatusCode) -> bool {
    status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED
}

/// The echo document for a request.
fn echo_json(parts: &http::request::Parts, body: &[u8]) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let name = name.as_str();
        let value = if REDACTED.contains(&name) {
            "<redacted>".to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        headers
            .entry(name.to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let credential = parts
        .extensions
        .get::<Credential>()
        .unwrap_or(&Credential::None)
        .to_json();
    json!({
        "method": parts.method.as_str(),
        "version": format!("{:?}", parts.version),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_base64": base64::engine::general_purpose::STANDARD.encode(body),
        "body_len": body.len(),
        "credential": credential,
    })
}

/// Answers with the echo document, honouring `x-mock-status` and
/// `x-mock-set-cookie` (cookies separated by `|`, one `Set-Cookie` each).
fn echo_response(parts: &http::request::Parts, body: &[u8]) -> Response {
    let mut resp = echo_status_response(parts, body);
    let cookies = parts
        .headers
        .get_all("x-mock-set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split('|'))
        .filter_map(|c| HeaderValue::from_str(c.trim()).ok());
    for cookie in cookies {
        resp.headers_mut().append(http::header::SET_COOKIE, cookie);
    }
    resp
}

fn echo_status_response(parts: &http::request::Parts, body: &[u8]) -> Response {
    let status = parts
        .headers
        .get("x-mock-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u16>().ok())
        .and_then(usable_status)
        .unwrap_or(StatusCode::OK);
    if bodyless(status) {
        return status.into_response();
    }
    (status, Json(echo_json(parts, body))).into_response()
}

/// Fallback handler: echoes any request.
pub(crate) async fn echo(req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => echo_response(&parts, &bytes),
        Err(e) => {
            tracing::info!(error = %e, "could not read request body");
            json_error(StatusCode::PAYLOAD_TOO_LARGE, "body_unreadable")
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SlowQuery {
    #[serde(default)]
    ms: u64,
}

/// `GET /slow?ms=N`: waits, then echoes.
pub(crate) async fn slow(Query(q): Query<SlowQuery>, req: Request) -> Response {
    tokio::time::sleep(Duration::from_millis(q.ms)).await;
    let (parts, _) = req.into_parts();
    echo_response(&parts, &[])
}

/// `GET /status/{code}`.
pub(crate) async fn status(Path(code): Path<u16>) -> Response {
    match usable_status(code) {
        Some(s) if bodyless(s) => s.into_response(),
        Some(s) => (s, Json(json!({ "status": code }))).into_response(),
        None => json_error(StatusCode::BAD_REQUEST, "bad_status"),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct BytesQuery {
    #[serde(default)]
    n: u64,
}

/// `GET /bytes?n=N`: N bytes of `x`, streamed in 64 KiB chunks.
pub(crate) async fn bytes(Query(q): Query<BytesQuery>) -> Response {
    let stream = futures_util::stream::unfold(q.n, |left| async move {
        if left == 0 {
            return None;
        }
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let chunk = Bytes::from_static(&CHUNK_BYTES[..n]);
        Some((Ok::<_, Infallible>(chunk), left - n as u64))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(q.n));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_redacts_secrets_and_joins_repeats() {
        let req = http::Request::builder()
            .uri("/api/x?a=1")
            .header("Authorization", "Bearer mocktok-secret")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        let v = echo_json(&parts, b"hi");
        assert_eq!(v["headers"]["authorization"], "<redacted>");
        assert_eq!(v["headers"]["x-multi"], "a, b");
        assert_eq!(v["query"], "a=1");
        assert_eq!(v["body_len"], 2);
        assert_eq!(v["credential"]["kind"], "none");
        assert!(!v.to_string().contains("mocktok-secret"));
    }
}
