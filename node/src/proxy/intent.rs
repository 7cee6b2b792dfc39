//! The request-intent API (`POST /v1/proxy`, DESIGN §2): a client describes a
//! request as JSON (route by name, method, upstream path, params, headers, JSON
//! or base64 body) and gets the upstream's answer back as JSON. It goes through
//! the same client auth, credential pick, injection, 401 retry and logging as
//! the transparent path; only the envelope differs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use rhizome_proto::config::SessionMode;
use rhizome_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{body, AccessLog, OutBody, Outgoing, Proxy, REQUEST_ID};
use crate::error::{full, ProxyError};
use crate::routing::has_dot_segments;
use crate::upstream::headers;
use crate::BoxBody;

/// Upper bound of reading the intent envelope itself.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound a client may ask for with `timeout_ms`.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// A request to send through a route.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntentRequest {
    /// Route name.
    pub route: String,
    /// HTTP method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// Path sent to the upstream (after the route's prefix handling), e.g. `/v3/x`.
    pub path: String,
    /// Query parameters; arrays repeat the key.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// JSON body (sent as `application/json`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub json: Option<serde_json::Value>,
    /// Binary body, base64 (standard alphabet).
    #[serde(default)]
    pub body_base64: Option<String>,
    /// Upper bound of the whole exchange, in milliseconds (default: the
    /// route's timeout; at most 300000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// The upstream's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntentResponse {
    /// Upstream status.
    pub status: u16,
    /// Upstream headers (repeated ones joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// Body, when it is JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub json: Option<serde_json::Value>,
    /// Body, base64, when it is not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Time the exchange took.
    pub duration_ms: f64,
}

fn bad(msg: impl Into<String>) -> ProxyError {
    ProxyError::new(ErrorCode::BadRequest, msg)
}

/// Sends a described request through a route and returns the answer as JSON.
#[utoipa::path(
    post,
    path = "/v1/proxy",
    tag = "proxy",
    request_body = IntentRequest,
    responses(
        (status = 200, description = "The upstream answered (any status)", body = IntentResponse),
        (status = 400, description = "Malformed intent (`bad_request`)"),
        (status = 401, description = "Missing or wrong client key (`client_unauthorized`)"),
        (status = 404, description = "Unknown route (`no_route`)"),
        (status = 503, description = "No credential can obtain a token (`no_healthy_credential`)"),
    ),
    security(("client_key" = []))
)]
pub async fn handle(
    proxy: &Proxy,
    req: Request<Incoming>,
    peer: SocketAddr,
    log: &mut AccessLog,
) -> Result<Response<BoxBody>, ProxyError> {
    let app = &proxy.app;
    if req.method() != Method::POST {
        return Err(bad("the intent API takes POST"));
    }
    log.client = Some(
        app.clients
            .authenticate(req.headers())
            .ok_or_else(|| {
                ProxyError::new(
                    ErrorCode::ClientUnauthorized,
                    "missing or invalid client key",
                )
            })?
            .to_string(),
    );
    let max = app.max_body;
    let read = Limited::new(req.into_body(), usize::try_from(max).unwrap_or(usize::MAX)).collect();
    let raw = tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| bad("timed out reading the request body"))?
        .map_err(|e| {
            if body::is_body_limit(e.as_ref()) {
                ProxyError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("request body exceeds {max} bytes"),
                )
            } else {
                bad("could not read the request body")
            }
        })?
        .to_bytes();
    let intent: IntentRequest =
        serde_json::from_slice(&raw).map_err(|e| bad(format!("invalid intent JSON: {e}")))?;
    let route = app.router.by_name(&intent.route).cloned().ok_or_else(|| {
        ProxyError::new(
            ErrorCode::NoRoute,
            format!("unknown route \"{}\"", intent.route),
        )
    })?;
    log.route = route.name.clone();
    if route.session == SessionMode::Mcp {
        // MCP sessions bind ids to clients and targets; the intent envelope
        // would bypass that, so MCP routes take the transparent path only.
        return Err(bad(
            "MCP session routes are not available through the intent API",
        ));
    }
    let method = Method::from_bytes(intent.method.as_deref().unwrap_or("GET").as_bytes())
        .map_err(|_| bad("invalid method"))?;
    if !intent.path.starts_with('/')
        || has_dot_segments(&intent.path)
        || intent.path.contains(['?', '#'])
    {
        return Err(bad(
            "path must start with \"/\" and carry no dot segments, query or fragment",
        ));
    }
    let mut path = intent.path.clone();
    if let Some(params) = &intent.params {
        path.push('?');
        path.push_str(&query_string(params)?);
    }
    let mut hdrs = HeaderMap::new();
    for (k, v) in intent.headers.iter().flatten() {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad(format!("invalid header name \"{k}\"")))?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| bad(format!("invalid value for header \"{k}\"")))?;
        hdrs.append(name, value);
    }
    let body = match (&intent.json, &intent.body_base64) {
        (Some(_), Some(_)) => return Err(bad("give json or body_base64, not both")),
        (Some(json), None) => {
            hdrs.entry(CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            Bytes::from(json.to_string())
        }
        (None, Some(b64)) => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| bad("body_base64 is not valid base64"))?,
        ),
        (None, None) => Bytes::new(),
    };
    log.bytes_in = Some(body.len());
    if body.len() as u64 > route.max_body {
        return Err(ProxyError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds the route's {} bytes", route.max_body),
        ));
    }
    headers::to_upstream(&mut hdrs, None, peer, "http");
    if let Ok(v) = HeaderValue::from_str(&log.request_id) {
        hdrs.insert(REQUEST_ID, v);
    }
    let timeout = intent
        .timeout_ms
        .map_or(route.timeout, Duration::from_millis)
        .min(MAX_TIMEOUT);
    let started = Instant::now();
    let mut out = OutBody::Buffered(body);
    let exchange = async {
        let ex = proxy
            .exchange(
                &route,
                Outgoing {
                    method,
                    path,
                    headers: hdrs,
                    inject: true,
                    pin: None,
                },
                &mut out,
            )
            .await?;
        let (parts, body) = ex.response.into_parts();
        let bytes = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))
            .collect()
            .await
            .map_err(|e| {
                ProxyError::new(
                    ErrorCode::UpstreamError,
                    "reading the upstream answer failed or exceeded max_body",
                )
                .with_source(e)
            })?
            .to_bytes();
        Ok::<_, ProxyError>((ex.credential, ex.upstream, ex.retries, parts, bytes))
    };
    let (cred, upstream, retries, parts, bytes) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
        ProxyError::new(
            ErrorCode::UpstreamTimeout,
            format!("no complete answer within {timeout:?}"),
        )
    })??;
    log.credential = cred.map(|c| c.name.clone());
    log.upstream = Some(upstream);
    log.retries = retries;
    let mut headers_out = BTreeMap::new();
    let mut upstream_headers = parts.headers;
    headers::strip_hop_by_hop(&mut upstream_headers);
    for (name, value) in &upstream_headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers_out
            .entry(name.as_str().to_string())
            .and_modify(|e: &mut String| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let is_json = upstream_headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let json = if is_json {
        serde_json::from_slice(&bytes).ok()
    } else {
        None
    };
    let body_base64 = json
        .is_none()
        .then(|| base64::engine::general_purpose::STANDARD.encode(&bytes));
    let answer = IntentResponse {
        status: parts.status.as_u16(),
        headers: headers_out,
        json,
        body_base64,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    };
    let encoded = serde_json::to_vec(&answer).map_err(|e| {
        ProxyError::new(ErrorCode::Internal, "encoding the answer failed").with_source(e)
    })?;
    let mut resp = Response::new(full(Bytes::from(encoded)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn query_string(params: &serde_json::Map<String, serde_json::Value>) -> Result<String, ProxyError> {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        let values = match v {
            serde_json::Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for item in values {
            let s = match item {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => String::new(),
                _ => {
                    return Err(bad(format!(
                        "params.{k}: nested objects are not query values"
                    )))
                }
            };
            q.append_pair(k, &s);
        }
    }
    Ok(q.finish())
}
