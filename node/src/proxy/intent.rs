//! The request-intent API (`POST /v1/proxy`): a client describes a request as
//! JSON (route by name, method, upstream path, params, headers, JSON or base64
//! body) and gets the upstream's answer back as JSON. It enters the same
//! phases as the transparent path — `authenticate_client` (never public),
//! `prepare_body` for the envelope and for the described body, then the
//! exchange — so auth, limits, credentials, the 401 retry and the log line
//! are the same; only the envelope differs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HOST, SET_COOKIE,
    TRANSFER_ENCODING,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use rhizome_proto::config::SessionMode;
use rhizome_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{OutBody, Outgoing, Proxy, RequestCtx, REQUEST_ID};
use crate::error::{full, ProxyError};
use crate::routing::has_dot_segments;
use crate::upstream::headers;
use crate::BoxBody;

/// Upper bound of reading the intent envelope itself.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound a client may ask for with `timeout_ms`.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// What `path` accepts, as a JSON Schema pattern (ECMA-262, no lookaround):
/// `/`-separated segments of RFC 3986 `pchar`s; a segment is never `.` or
/// `..`, spelled with dots or `%2e`, which `has_dot_segments` refuses.
pub const PATH_PATTERN: &str = concat!(
    "^(?:/(?:",
    "(?:[A-Za-z0-9\\-_~!$&'()*+,;=:@]|%(?:[013-9A-Fa-f][0-9A-Fa-f]|2[0-9A-Da-dFf]))",
    "(?:[A-Za-z0-9\\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*",
    "|(?:\\.|%2[Ee])(?:[A-Za-z0-9\\-_~!$&'()*+,;=:@]|%(?:[013-9A-Fa-f][0-9A-Fa-f]|2[0-9A-Da-dFf]))",
    "(?:[A-Za-z0-9\\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*",
    "|(?:\\.|%2[Ee]){2}(?:[A-Za-z0-9\\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+",
    ")?)+$"
);

/// What `body_base64` accepts: canonical padded base64 of the standard
/// alphabet, the bits after the last byte zero (the decoder refuses others).
pub const BASE64_PATTERN: &str = concat!(
    "^(?:[A-Za-z0-9+/]{4})*",
    "(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
);

/// A request to send through a route.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntentRequest {
    /// Route name.
    pub route: String,
    /// HTTP method (default `GET`).
    #[serde(default)]
    #[schema(pattern = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")]
    pub method: Option<String>,
    /// Path sent to the upstream (after the route's prefix handling), e.g. `/v3/x`.
    /// Segments of URI path characters (`%` only as `%XX`), no `.` or `..`
    /// segment (nor their `%2e` spellings), no query or fragment.
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
    /// Binary body, base64 (standard alphabet, padded, canonical: the bits
    /// after the last byte are zero); not with `json`.
    #[serde(default)]
    pub body_base64: Option<String>,
    /// Upper bound of the whole exchange, in milliseconds (default: the
    /// route's timeout; larger values are capped at 300000). A whole number
    /// of at least 1; `1500.0` is 1500.
    #[serde(default, deserialize_with = "whole_ms")]
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
}

/// One response header of the answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum HeaderField {
    /// The value, or repeated values joined with `, `.
    One(String),
    /// Values that cannot be joined (`set-cookie`).
    Many(Vec<String>),
}

/// The upstream's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntentResponse {
    /// Upstream status.
    pub status: u16,
    /// Upstream headers: repeated ones joined with `, `, except `set-cookie`,
    /// which is always a list of strings.
    #[schema(value_type = Object)]
    pub headers: BTreeMap<String, HeaderField>,
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

/// `timeout_ms` as JSON Schema's `integer` means it: any whole number,
/// `1500` or `1500.0` (larger than `u64` saturates; the cap applies anyway),
/// at least 1 (a zero deadline could only ever answer 504).
fn whole_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let ms = match (n.as_u64(), n.as_f64()) {
        (Some(ms), _) => Some(ms),
        // `as` saturates at u64::MAX, which the 300 s cap then bounds.
        (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 => Some(f as u64),
        _ => None,
    };
    match ms {
        Some(ms) if ms >= 1 => Ok(Some(ms)),
        _ => Err(serde::de::Error::custom(format!(
            "timeout_ms must be a whole number of milliseconds >= 1, not {n}"
        ))),
    }
}

fn parse(raw: &[u8]) -> Result<IntentRequest, ProxyError> {
    serde_json::from_slice(raw).map_err(|e| bad(format!("invalid intent JSON: {e}")))
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
        (status = 429, description = "Over the client's request rate (`rate_limited`)"),
        (status = 503, description = "No credential can obtain a token (`no_healthy_credential`)"),
    ),
    security(("client_key" = []))
)]
pub async fn handle(
    proxy: &Proxy,
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, ProxyError> {
    if req.method() != Method::POST {
        return Err(ProxyError::new(
            ErrorCode::MethodNotAllowed,
            format!("the intent API takes POST, not {}", req.method()),
        )
        .with_header(ALLOW, HeaderValue::from_static("POST")));
    }
    // The intent API is never public: a client key is always required.
    proxy.authenticate_client(ctx, req.headers(), false)?;
    if let Some(client) = ctx.client.clone() {
        ctx.rate = proxy.app.limits.check_rate(&client).await?;
    }
    let max = proxy.app.max_body;
    let (parts, body) = req.into_parts();
    let raw = match proxy
        .prepare_body(ctx, &parts.headers, body, max, max)
        .await?
    {
        OutBody::Buffered(raw) => raw,
        OutBody::Streaming(_) => return Err(bad("could not read the request body")),
    };
    let intent = parse(&raw)?;
    let route = proxy
        .app
        .router
        .by_name(&intent.route)
        .cloned()
        .ok_or_else(|| {
            ProxyError::new(
                ErrorCode::NoRoute,
                format!("unknown route \"{}\"", intent.route),
            )
        })?;
    ctx.set_route(route.clone());
    if route.session == SessionMode::Mcp {
        // MCP sessions bind ids to clients and targets; the intent envelope
        // would bypass that, so MCP routes take the transparent path only.
        return Err(bad(
            "MCP session routes are not available through the intent API",
        ));
    }
    let outgoing = outgoing(&intent, ctx)?;
    let payload = payload(&intent)?;
    let mut out = proxy
        .prepare_body(
            ctx,
            &outgoing.headers,
            http_body_util::Full::new(payload),
            route.max_body,
            route.max_body,
        )
        .await?;
    let timeout = intent
        .timeout_ms
        .map_or(route.timeout, Duration::from_millis)
        .min(MAX_TIMEOUT);
    ctx.set_timeout(timeout);
    let started = Instant::now();
    let answer = async {
        let ex = proxy.exchange(ctx, &route, &outgoing, &mut out).await?;
        read_answer(ex, max).await
    };
    let (parts, bytes) = tokio::time::timeout(timeout, answer).await.map_err(|_| {
        ProxyError::new(
            ErrorCode::UpstreamTimeout,
            format!("no complete answer within {timeout:?}"),
        )
    })??;
    encode(parts, &bytes, started.elapsed())
}

/// True when `path` is `/` followed by RFC 3986 path characters (`pchar`
/// and `/`), `%` only starting a `%XX` escape: what [`PATH_PATTERN`] allows
/// but for the dot segments, which `has_dot_segments` refuses.
fn is_uri_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let escape = bytes.get(i + 1..i + 3);
            if !escape.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// The method, path (with query) and headers the intent describes, checked
/// and cleaned; framing headers are the node's, never the client's.
fn described(intent: &IntentRequest) -> Result<(Method, String, HeaderMap), ProxyError> {
    let method = Method::from_bytes(intent.method.as_deref().unwrap_or("GET").as_bytes())
        .map_err(|_| bad("invalid method"))?;
    if !is_uri_path(&intent.path) || has_dot_segments(&intent.path) {
        return Err(bad(
            "path must start with \"/\", hold only URI path characters (`%` as `%XX`) \
             and carry no dot segments, query or fragment",
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
    for framing in [CONTENT_LENGTH, TRANSFER_ENCODING, HOST] {
        hdrs.remove(framing);
    }
    if intent.json.is_some() {
        hdrs.entry(CONTENT_TYPE)
            .or_insert(HeaderValue::from_static("application/json"));
    }
    Ok((method, path, hdrs))
}

/// The upstream request the intent describes (headers cleaned as for the
/// transparent path).
fn outgoing(intent: &IntentRequest, ctx: &RequestCtx) -> Result<Outgoing, ProxyError> {
    let (method, path, mut hdrs) = described(intent)?;
    headers::to_upstream(&mut hdrs, None, ctx.peer, "http");
    if let Ok(v) = HeaderValue::from_str(&ctx.log.request_id) {
        hdrs.insert(REQUEST_ID, v);
    }
    Ok(Outgoing {
        method,
        path,
        headers: hdrs,
        inject: true,
        pin: None,
    })
}

/// What the node makes of an envelope's bytes before any route or network:
/// the described method, path with query and body, or the `bad_request` it
/// answers. The entry point of the envelope's fuzz target and property
/// tests; never panics, whatever the input.
#[doc(hidden)]
pub fn check_envelope(raw: &[u8]) -> Result<(Method, String, Bytes), ProxyError> {
    let intent: IntentRequest = parse(raw)?;
    let (method, path, _) = described(&intent)?;
    Ok((method, path, payload(&intent)?))
}

/// The request body the intent carries.
fn payload(intent: &IntentRequest) -> Result<Bytes, ProxyError> {
    match (&intent.json, &intent.body_base64) {
        (Some(_), Some(_)) => Err(bad("give json or body_base64, not both")),
        (Some(json), None) => Ok(Bytes::from(json.to_string())),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Bytes::from)
            .map_err(|_| bad("body_base64 is not valid base64")),
        (None, None) => Ok(Bytes::new()),
    }
}

/// Reads the whole upstream answer, at most `max` bytes.
async fn read_answer(
    ex: super::Exchange,
    max: u64,
) -> Result<(http::response::Parts, Bytes), ProxyError> {
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
    Ok((parts, bytes))
}

/// The JSON envelope of the upstream's answer. Repeated headers are joined
/// with `, ` except `set-cookie`, which cannot be joined and is always a list.
fn encode(
    parts: http::response::Parts,
    bytes: &[u8],
    took: Duration,
) -> Result<Response<BoxBody>, ProxyError> {
    let mut upstream_headers = parts.headers;
    headers::strip_hop_by_hop(&mut upstream_headers);
    let mut headers_out = BTreeMap::new();
    for name in upstream_headers.keys() {
        let values = upstream_headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let field = if name == SET_COOKIE {
            HeaderField::Many(values.collect())
        } else {
            HeaderField::One(values.collect::<Vec<_>>().join(", "))
        };
        headers_out.insert(name.as_str().to_string(), field);
    }
    let is_json = upstream_headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let json = if is_json {
        serde_json::from_slice(bytes).ok()
    } else {
        None
    };
    let body_base64 = json
        .is_none()
        .then(|| base64::engine::general_purpose::STANDARD.encode(bytes));
    let answer = IntentResponse {
        status: parts.status.as_u16(),
        headers: headers_out,
        json,
        body_base64,
        duration_ms: super::access::millis(took),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn envelope(path: &str, extra: &str) -> Vec<u8> {
        format!(
            r#"{{"route":"r","path":{}{extra}}}"#,
            serde_json::json!(path)
        )
        .into_bytes()
    }

    #[test]
    fn base64_with_stray_bits_after_the_last_byte_is_refused() {
        for (b64, ok) in [
            ("AA==", true),
            ("00==", false),
            ("AAE=", true),
            ("AAF=", false),
        ] {
            let raw = format!(r#"{{"route":"r","path":"/","body_base64":"{b64}"}}"#);
            assert_eq!(check_envelope(raw.as_bytes()).is_ok(), ok, "{b64}");
        }
    }

    #[test]
    fn whole_float_timeouts_are_milliseconds() {
        // The last: a whole float that parses exactly only with
        // serde_json's float_roundtrip (it was off by a fraction before).
        for (t, want) in [
            ("1500", 1500),
            ("1500.0", 1500),
            ("1.0", 1),
            ("1e3", 1000),
            ("2243447190447217.0", 2243447190447217),
        ] {
            let raw = format!(r#"{{"route":"r","path":"/","timeout_ms":{t}}}"#);
            assert_eq!(
                parse(raw.as_bytes()).map(|i| i.timeout_ms).ok(),
                Some(Some(want)),
                "{t}"
            );
        }
        for t in ["0", "0.0", "1.5", "-1", "-1.0", "\"5\""] {
            let raw = format!(r#"{{"route":"r","path":"/","timeout_ms":{t}}}"#);
            assert!(parse(raw.as_bytes()).is_err(), "{t}");
        }
    }

    #[test]
    fn paths_the_document_forbids_are_refused() {
        for p in [
            "",
            "x",
            "/.",
            "/a/..",
            "/%2e%2E/b",
            "/a?b",
            "/a#b",
            "/a b",
            "/\u{e9}",
            "/%zz",
        ] {
            assert!(check_envelope(&envelope(p, "")).is_err(), "{p:?}");
        }
    }

    proptest! {
        /// Every path the OpenAPI document's pattern allows is one the node
        /// takes (schemathesis's "schema-valid request accepted").
        #[test]
        fn paths_the_document_allows_are_taken(
            path in proptest::string::string_regex(
                PATH_PATTERN.trim_start_matches('^').trim_end_matches('$')
            ).expect("pattern"),
            params in proptest::option::of(proptest::collection::btree_map("[a-z]{1,4}", "[ -~]{0,6}", 0..3)),
        ) {
            let extra = params.map_or(String::new(), |p| format!(r#","params":{}"#, serde_json::json!(p)));
            let (_, sent, _) = check_envelope(&envelope(&path, &extra)).expect("accepted");
            prop_assert!(sent.starts_with(&path));
        }

        /// Every body the document's pattern allows decodes (the pattern
        /// is no looser than the decoder).
        #[test]
        fn bodies_the_document_allows_decode(
            b64 in proptest::string::string_regex(
                BASE64_PATTERN.trim_start_matches('^').trim_end_matches('$')
            ).expect("pattern"),
        ) {
            let raw = format!(r#"{{"route":"r","path":"/","body_base64":"{b64}"}}"#);
            prop_assert!(check_envelope(raw.as_bytes()).is_ok(), "{}", b64);
        }

        /// Whatever the bytes, the envelope's checks answer without panicking.
        #[test]
        fn any_bytes_are_answered(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = check_envelope(&raw);
        }
    }
}
