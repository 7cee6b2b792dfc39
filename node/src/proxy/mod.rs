//! The request path of DESIGN §2, as named phases (pingora's `ProxyHttp`):
//!
//! ```text
//! accept ─▶ route ─▶ authenticate_client ─▶ prepare_body ─▶ pick_credential
//!        ─▶ inject ─▶ forward ─▶ on_upstream_status (401 → invalidate, fresh token, retry once)
//!        ─▶ respond (SSE relay or passthrough) ─▶ log (when the body ends)
//! ```
//!
//! [`Proxy::handle`] runs them for the transparent path; the request-intent
//! API ([`intent`]) enters at `pick_credential` through [`Proxy::exchange`], so
//! both share credentials, retries and logging.

mod body;
pub mod intent;
mod mcp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, HOST};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rhizome_proto::ErrorCode;

use crate::credentials::{Credential, Token};
use crate::error::{error_chain, ProxyError};
use crate::routing::{has_dot_segments, Route};
use crate::sse::relay::{relay, RelayOptions};
use crate::upstream::{headers, Outcome};
use crate::{metrics, App, BoxBody};
use body::{is_body_limit, IdleTimeout, Observed};
pub use body::{AccessLog, OutBody};

/// Header carrying the request id both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// The proxy service of one node.
#[derive(Debug, Clone)]
pub struct Proxy {
    app: Arc<App>,
}

/// A request prepared for the upstream hop.
#[derive(Debug)]
pub struct Outgoing {
    /// Method.
    pub method: Method,
    /// Path and query sent upstream.
    pub path: String,
    /// Headers, already cleaned for the upstream hop.
    pub headers: HeaderMap,
    /// Whether a credential is injected (false for anonymous public paths).
    pub inject: bool,
    /// Target the request must use (a pinned session), if any.
    pub pin: Option<usize>,
}

/// What came back from upstream, with what is needed to log it.
#[derive(Debug)]
pub struct Exchange {
    /// The upstream response.
    pub response: Response<Incoming>,
    /// Credential used, if any.
    pub credential: Option<Arc<Credential>>,
    /// Time to the response head (last attempt).
    pub upstream: Duration,
    /// Attempts repeated (401 retry, connect error).
    pub retries: u32,
    /// Index of the upstream target that answered.
    pub target: usize,
}

impl Proxy {
    /// The proxy over `app`.
    pub fn new(app: Arc<App>) -> Self {
        Proxy { app }
    }

    /// Handles one client request end to end; never fails (errors become JSON).
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<BoxBody> {
        let start = Instant::now();
        let request_id = request_id(req.headers());
        let mut log = AccessLog {
            request_id: request_id.clone(),
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            route: "-".into(),
            ..AccessLog::default()
        };
        let result = if req.uri().path() == self.app.intent_path {
            intent::handle(self, req, peer, &mut log).await
        } else {
            self.transparent(req, peer, &mut log).await
        };
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) => {
                if err.code == ErrorCode::Internal || err.source.is_some() {
                    tracing::warn!(request_id = %request_id, route = %log.route, code = err.code.as_str(), error = %err, "request failed");
                }
                log.error = Some(err.code.as_str());
                err.to_response(&request_id)
            }
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
        log.status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, BodyExt::boxed(Observed::new(body, start, log)))
    }

    async fn transparent(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        log: &mut AccessLog,
    ) -> Result<Response<BoxBody>, ProxyError> {
        let route = self.route(&req)?;
        log.route = route.name.clone();
        log.client = self
            .authenticate_client(&route, &req)?
            .map(|c| c.to_string());
        let (mut parts, body) = req.into_parts();
        let path = route.upstream_path(parts.uri.path(), parts.uri.query());
        let mut out = body::prepare(
            &parts.headers,
            body,
            route.max_body,
            route.retry_body_limit,
            route.timeout,
        )
        .await?;
        log.bytes_in = out.buffered_len();
        let authority = parts.uri.authority().map(|a| a.as_str().to_string());
        headers::to_upstream(&mut parts.headers, authority.as_deref(), peer, "http");
        if let Ok(v) = HeaderValue::from_str(&log.request_id) {
            parts.headers.insert(REQUEST_ID, v);
        }
        let session = mcp::before(self, &route, log.client.as_deref(), &mut parts.headers).await?;
        // An unauthenticated request on a public path never carries our credential.
        let inject = log.client.is_some();
        let method = parts.method.clone();
        let outgoing = Outgoing {
            method: parts.method,
            path,
            headers: parts.headers,
            inject,
            pin: session.pin(),
        };
        let mut ex = self.exchange(&route, outgoing, &mut out).await?;
        log.credential = ex.credential.as_ref().map(|c| c.name.clone());
        log.upstream = Some(ex.upstream);
        log.retries = ex.retries;
        mcp::after(
            self,
            &route,
            &session,
            &method,
            log.client.as_deref(),
            ex.target,
            &mut ex.response,
        )
        .await?;
        Ok(self.respond(&route, ex.response, log))
    }

    /// Phase `route`: longest prefix (and host) match.
    fn route(&self, req: &Request<Incoming>) -> Result<Arc<Route>, ProxyError> {
        let path = req.uri().path();
        if has_dot_segments(path) {
            return Err(ProxyError::new(
                ErrorCode::BadRequest,
                "path must not contain dot segments",
            ));
        }
        let host = req
            .uri()
            .host()
            .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
            .map(|h| {
                h.rsplit_once(':')
                    .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                    .map_or(h, |(h, _)| h)
            });
        self.app
            .router
            .route(host, path)
            .cloned()
            .ok_or_else(|| ProxyError::new(ErrorCode::NoRoute, format!("no route for {path}")))
    }

    /// Phase `authenticate_client`: the client's key, unless the path is public.
    fn authenticate_client(
        &self,
        route: &Route,
        req: &Request<Incoming>,
    ) -> Result<Option<crate::auth::ClientId>, ProxyError> {
        match self.app.clients.authenticate(req.headers()) {
            Some(c) => Ok(Some(c)),
            None if route.is_public(req.uri().path()) => Ok(None),
            None => Err(ProxyError::new(
                ErrorCode::ClientUnauthorized,
                "missing or invalid client key",
            )),
        }
    }

    /// Phases `pick_credential` → `inject` → `forward` → `on_upstream_status`.
    /// A 401 on a request that carried a token invalidates that token version,
    /// obtains a fresh one and retries once, if the body can be sent again.
    /// With `inject` false (public path, no client key) no credential is used.
    pub async fn exchange(
        &self,
        route: &Route,
        req: Outgoing,
        body: &mut OutBody,
    ) -> Result<Exchange, ProxyError> {
        let Outgoing {
            method,
            path,
            headers,
            inject,
            pin,
        } = req;
        let path = path.as_str();
        let mut picked: Option<(Arc<Credential>, Arc<Token>)> = if !inject || route.pool.is_empty()
        {
            None
        } else {
            Some(route.pool.acquire().await?)
        };
        let mut retries = 0;
        // The 401 retry happens once, whatever connect-error failovers did.
        let mut auth_retried = false;
        loop {
            let mut h = headers.clone();
            if let Some((cred, token)) = &picked {
                cred.inject(&mut h, token).map_err(|e| {
                    ProxyError::new(ErrorCode::Internal, "token cannot be sent in a header")
                        .with_source(e)
                })?;
            }
            let started = Instant::now();
            let (response, more, target) =
                self.forward(route, &method, path, &h, body, pin).await?;
            retries += more;
            let upstream = started.elapsed();
            metrics::upstream_duration(&route.name, upstream);
            let status = response.status();
            let done = |credential: Option<&Arc<Credential>>| Exchange {
                response,
                credential: credential.cloned(),
                upstream,
                retries,
                target,
            };
            let Some((cred, token)) = &picked else {
                return Ok(done(None));
            };
            if status != StatusCode::UNAUTHORIZED {
                cred.upstream_accepted();
                return Ok(done(Some(cred)));
            }
            cred.invalidate(token.version).await;
            if auth_retried || !body.replayable() {
                if auth_retried {
                    cred.upstream_rejected();
                }
                return Ok(done(Some(cred)));
            }
            metrics::upstream_retry("unauthorized");
            tracing::info!(credential = %cred.name, version = token.version, "upstream answered 401; retrying with a fresh token");
            let Ok(fresh) = cred.token().await else {
                // No fresh token: the client gets upstream's 401 as it was.
                return Ok(done(Some(cred)));
            };
            drop(done);
            picked = Some((cred.clone(), fresh));
            retries += 1;
            auth_retried = true;
        }
    }

    /// Phase `forward`: one request to a target; a connect error with a
    /// replayable body is retried once on another target.
    async fn forward(
        &self,
        route: &Route,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &mut OutBody,
        pin: Option<usize>,
    ) -> Result<(Response<Incoming>, u32, usize), ProxyError> {
        let upstream = &route.upstream;
        let mut exclude = None;
        let mut retries = 0;
        loop {
            let idx = pin.unwrap_or_else(|| upstream.pick(exclude));
            let uri = upstream.uri(idx, path).map_err(|e| {
                ProxyError::new(ErrorCode::BadRequest, "invalid request path").with_source(e)
            })?;
            let Some(b) = body.attempt() else {
                return Err(ProxyError::new(
                    ErrorCode::Internal,
                    "request body already consumed",
                ));
            };
            let mut req = Request::new(b);
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri;
            *req.version_mut() = Version::HTTP_11;
            *req.headers_mut() = headers.clone();
            match tokio::time::timeout(route.timeout, upstream.client().request(req)).await {
                Err(_) => {
                    upstream.report(idx, Outcome::Failed);
                    return Err(ProxyError::new(
                        ErrorCode::UpstreamTimeout,
                        format!("upstream did not answer within {:?}", route.timeout),
                    ));
                }
                Ok(Ok(resp)) => {
                    let outcome = if resp.status().is_server_error() {
                        Outcome::Failed
                    } else {
                        Outcome::Healthy
                    };
                    upstream.report(idx, outcome);
                    return Ok((resp, retries, idx));
                }
                Ok(Err(e)) if is_body_limit(&e) => {
                    return Err(ProxyError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("request body exceeds {} bytes", route.max_body),
                    ));
                }
                Ok(Err(e)) if e.is_connect() => {
                    upstream.report(idx, Outcome::Failed);
                    if retries == 0 && pin.is_none() && body.replayable() && upstream.len() > 1 {
                        metrics::upstream_retry("connect_error");
                        tracing::debug!(upstream = %upstream.name, error = %error_chain(&e), "connect failed; trying another target");
                        retries += 1;
                        exclude = Some(idx);
                        continue;
                    }
                    return Err(ProxyError::new(
                        ErrorCode::UpstreamUnavailable,
                        "upstream unreachable",
                    )
                    .with_source(error_chain(&e)));
                }
                Ok(Err(e)) => {
                    upstream.report(idx, Outcome::Failed);
                    return Err(ProxyError::new(
                        ErrorCode::UpstreamError,
                        "upstream connection failed",
                    )
                    .with_source(error_chain(&e)));
                }
            }
        }
    }

    /// Phase `respond`: hop-by-hop headers out; SSE goes through the relay,
    /// everything else streams through as it comes.
    fn respond(
        &self,
        route: &Route,
        resp: Response<Incoming>,
        log: &mut AccessLog,
    ) -> Response<BoxBody> {
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::default();
        let body = if parts.status.is_success() && crate::sse::is_event_stream(&parts.headers) {
            parts.headers.remove(CONTENT_LENGTH);
            parts
                .headers
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            parts
                .headers
                .insert("x-accel-buffering", HeaderValue::from_static("no"));
            let opts = RelayOptions {
                route: route.name.clone(),
                request_id: log.request_id.clone(),
                idle_timeout: route.sse.idle_timeout,
                heartbeat_interval: route.sse.heartbeat_interval,
                max_event_bytes: usize::try_from(route.sse.max_event_bytes.as_u64())
                    .unwrap_or(usize::MAX),
            };
            let (body, end) = relay(
                body.map_err(Into::into).boxed(),
                opts,
                self.app.shutdown.token(),
            );
            log.stream_end = Some(end);
            body
        } else {
            BodyExt::boxed(IdleTimeout::new(
                body.map_err(Into::into).boxed(),
                route.timeout,
            ))
        };
        Response::from_parts(parts, body)
    }
}

/// The client's `x-request-id` when it is sane, else a new random one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| hex::encode(rand::random::<[u8; 12]>()), str::to_string)
}
