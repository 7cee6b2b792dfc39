//! The request path, as named phases over one typed per-request context
//! ([`RequestCtx`], pingora's `ProxyHttp` + `CTX`):
//!
//! ```text
//! accept ─▶ route ─▶ authenticate_client ─▶ limit ─▶ request_filter (may answer early)
//!        ─▶ prepare_body ─▶ pick_credential ─▶ inject ─▶ forward
//!        ─▶ on_upstream_status (401 → invalidate, fresh token, retry once)
//!        ─▶ response_filter ─▶ respond (SSE relay or passthrough) ─▶ log
//! ```
//!
//! [`Proxy::handle`] runs them for the transparent path. The request-intent
//! API ([`intent`]) describes the request as JSON but enters the same phases
//! (`authenticate_client`, `prepare_body`, then the [`exchange`] of
//! `pick_credential` … `on_upstream_status`), so both share client auth,
//! body limits, credentials, retries and logging.
//!
//! Files: `context` (the per-request state); `exchange` (`pick_credential` →
//! `inject` → `forward` → `on_upstream_status`); `respond`; `body` (request
//! bodies, buffered for a retry or streamed, and the response body that
//! writes the access log when it ends: `log`); `access` (the access-log
//! record and its one JSON line); `mcp` (the MCP session filters
//! of `session = "mcp"` routes).

pub mod access;
mod body;
mod context;
mod exchange;
mod forward;
pub mod intent;
mod mcp;
mod reopen;
mod respond;

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderValue, HOST};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rhizome_proto::ErrorCode;

use crate::error::ProxyError;
use crate::routing::{has_dot_segments, Route};
use crate::sse::resume::{resume, Resumer};
use crate::upstream::headers;
use crate::{App, BoxBody, BoxError};
pub use access::AccessLog;
use body::Observed;
pub use body::OutBody;
pub use context::{RequestCtx, REQUEST_ID};
pub use exchange::{Exchange, Outgoing};

/// The header a reconnecting SSE client sends.
const LAST_EVENT_ID: &str = "last-event-id";

/// The upstream request of a recorded stream as it can be sent again: no
/// credential (injected later, on a copy), no client keys, no cookies.
fn reopen_request(out: &Outgoing, body: &OutBody) -> rhizome_proto::records::ReopenRequest {
    let headers = out
        .headers
        .iter()
        .filter(|(name, _)| {
            // Framing is the reopening node's (the body may not be kept).
            ![
                http::header::COOKIE,
                http::header::CONTENT_LENGTH,
                http::header::TRANSFER_ENCODING,
            ]
            .contains(*name)
                && name.as_str() != LAST_EVENT_ID
        })
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let body = match body {
        OutBody::Buffered(b) => b.to_vec(),
        OutBody::Streaming(_) => Vec::new(),
    };
    rhizome_proto::records::ReopenRequest {
        method: out.method.to_string(),
        path: out.path.clone(),
        headers,
        body,
    }
}

/// The proxy service of one node.
#[derive(Debug, Clone)]
pub struct Proxy {
    app: Arc<App>,
}

/// What a phase that may answer early decided.
#[derive(Debug)]
pub enum Flow {
    /// Go on to the next phase.
    Continue,
    /// Answer the client with this response; no upstream call.
    Respond(Response<BoxBody>),
}

impl Proxy {
    /// The proxy over `app`.
    pub fn new(app: Arc<App>) -> Self {
        Proxy { app }
    }

    /// Handles one client request end to end; never fails (errors become JSON).
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<BoxBody> {
        let mut ctx = RequestCtx::new(req.method(), req.uri().path(), req.headers(), peer);
        // The phases' future is kilobytes and boxed: hyper keeps a slot of
        // the service future's size for every connection, idle or not, so
        // only this small one stays there between requests.
        // A forward-proxy request names its host: `/v1/proxy` there is that
        // host's path, never this node's intent API.
        let forwarded = self.app.forward_proxy && forward::is_absolute_form(&req);
        let result = if req.uri().path() == self.app.intent_path && !forwarded {
            Box::pin(intent::handle(self, &mut ctx, req)).await
        } else {
            Box::pin(self.transparent(&mut ctx, req)).await
        };
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) => self.on_error(&mut ctx, err),
        };
        resp = self.hold_stream(&mut ctx, resp).await;
        if let Some(rate) = &ctx.rate {
            rate.apply(resp.headers_mut());
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.log.request_id) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
        ctx.log.status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let observed = Observed::new(body, ctx.started, ctx.log, ctx.route);
        Response::from_parts(parts, BodyExt::boxed(observed))
    }

    /// Rhizome's own error as the JSON answer; internal causes are logged.
    fn on_error(&self, ctx: &mut RequestCtx, err: ProxyError) -> Response<BoxBody> {
        if err.code == ErrorCode::Internal || err.source.is_some() {
            tracing::warn!(request_id = %ctx.log.request_id, route = %ctx.log.route, code = err.code.as_str(), error = %err, "request failed");
        }
        ctx.log.error = Some(err.code.as_str());
        err.to_response(&ctx.log.request_id)
    }

    async fn transparent(
        &self,
        ctx: &mut RequestCtx,
        req: Request<Incoming>,
    ) -> Result<Response<BoxBody>, ProxyError> {
        let forward = self.app.forward_proxy && forward::is_absolute_form(&req);
        if forward && forward::is_connect(req.method()) {
            return Err(forward::connect_refused());
        }
        let route = self.route(ctx, &req, forward)?;
        let public = route.is_public(req.uri().path());
        self.authenticate_client(ctx, req.headers(), public)?;
        self.limit(ctx, req.headers()).await?;
        let (mut parts, body) = req.into_parts();
        let path = route.upstream_path(parts.uri.path(), parts.uri.query());
        let authority = parts.uri.authority().map(|a| a.as_str().to_string());
        headers::to_upstream(&mut parts.headers, authority.as_deref(), ctx.peer, "http");
        if let Ok(v) = HeaderValue::from_str(&ctx.log.request_id) {
            parts.headers.insert(REQUEST_ID, v);
        }
        if let Flow::Respond(resp) = self.request_filter(ctx, &route, &mut parts.headers).await? {
            return Ok(resp);
        }
        let mut out = self
            .prepare_body(
                ctx,
                &parts.headers,
                body,
                route.max_body,
                route.retry_body_limit,
            )
            .await?;
        let outgoing = Outgoing {
            method: parts.method.clone(),
            path,
            headers: parts.headers,
            // An unauthenticated request on a public path never carries our credential.
            inject: ctx.client.is_some(),
            pin: ctx.session.pin(),
        };
        let mut ex = self.exchange(ctx, &route, &outgoing, &mut out).await?;
        // Only a stream that will be recorded needs its reopen request: no
        // copy of headers and body on any other response.
        let response = &ex.response;
        if route.sse.replay
            && response.status().is_success()
            && crate::sse::is_event_stream(response.headers())
        {
            ctx.reopen = Some(reopen_request(&outgoing, &out));
        }
        self.response_filter(ctx, &route, &parts.method, &mut ex)
            .await?;
        Ok(self.respond(ctx, &route, ex.response).await)
    }

    /// Phase `route`: longest prefix (and host) match; starts the deadline.
    /// A `forward` (absolute-form, forward-proxy mode) request matches only
    /// routes that name its host.
    fn route(
        &self,
        ctx: &mut RequestCtx,
        req: &Request<Incoming>,
        forward: bool,
    ) -> Result<Arc<Route>, ProxyError> {
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
        let route = if forward {
            let host = host.unwrap_or_default();
            self.app
                .router
                .route_for_host(host, path)
                .ok_or_else(|| forward::host_refused(host))?
        } else {
            self.app.router.route(host, path).ok_or_else(|| {
                ProxyError::new(ErrorCode::NoRoute, format!("no route for {path}"))
            })?
        }
        .clone();
        ctx.set_route(route.clone());
        Ok(route)
    }

    /// Phase `authenticate_client`: the client's key, unless the path is
    /// `public` (then an anonymous request passes, without our credential).
    fn authenticate_client(
        &self,
        ctx: &mut RequestCtx,
        headers: &HeaderMap,
        public: bool,
    ) -> Result<(), ProxyError> {
        match self
            .app
            .clients
            .authenticate(headers, self.app.forward_proxy)
        {
            Some(c) => {
                ctx.log.client = Some(c.to_string());
                ctx.client = Some(c);
                Ok(())
            }
            None if public => Ok(()),
            None => Err(ProxyError::new(
                ErrorCode::ClientUnauthorized,
                "missing or invalid client key",
            )),
        }
    }

    /// Phase `limit`: the client's request rate, and — for a request that
    /// asks for an event stream — one of its stream slots, taken before any
    /// upstream call so that a refused stream never reaches the upstream.
    async fn limit(&self, ctx: &mut RequestCtx, headers: &HeaderMap) -> Result<(), ProxyError> {
        let Some(client) = ctx.client.clone() else {
            return Ok(());
        };
        ctx.rate = self.app.limits.check_rate(&client).await?;
        if crate::limits::wants_stream(headers) {
            ctx.stream = self.app.limits.open_stream(&client).await?;
        }
        Ok(())
    }

    /// A successful event stream holds one of the client's stream slots
    /// until its body ends: the one taken in `limit`, else one taken now
    /// (refused: the upstream's answer is dropped for a 429). Any other
    /// answer gives a slot taken in `limit` back.
    async fn hold_stream(
        &self,
        ctx: &mut RequestCtx,
        resp: Response<BoxBody>,
    ) -> Response<BoxBody> {
        let stream = resp.status().is_success() && crate::sse::is_event_stream(resp.headers());
        if !stream {
            ctx.stream = None;
            return resp;
        }
        let slot = match ctx.stream.take() {
            Some(slot) => slot,
            None => match ctx.client.clone() {
                Some(client) if self.app.limits.limits_streams(&client) => {
                    match self.app.limits.open_stream(&client).await {
                        Ok(Some(slot)) => slot,
                        Ok(None) => return resp,
                        Err(err) => return self.on_error(ctx, err),
                    }
                }
                _ => return resp,
            },
        };
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, crate::limits::hold(body, slot))
    }

    /// Phase `request_filter`: state that decides the request before any
    /// upstream call — the MCP session mapping (an unknown session is
    /// answered here). May answer early.
    async fn request_filter(
        &self,
        ctx: &mut RequestCtx,
        route: &Route,
        headers: &mut HeaderMap,
    ) -> Result<Flow, ProxyError> {
        let client = ctx.client_name();
        ctx.session = mcp::before(self, route, client.as_deref(), headers).await?;
        self.resume_filter(ctx, route, headers).await
    }

    /// A `GET` carrying one of Rhizome's event ids as `Last-Event-ID` on a
    /// replay route resumes the stream from the replay buffer, on any node.
    async fn resume_filter(
        &self,
        ctx: &mut RequestCtx,
        route: &Route,
        headers: &mut HeaderMap,
    ) -> Result<Flow, ProxyError> {
        let id = match headers.get(LAST_EVENT_ID).and_then(|v| v.to_str().ok()) {
            Some(id) if route.sse.replay && crate::sse::ids::is_ours(id) => id.to_string(),
            _ => return Ok(Flow::Continue),
        };
        // Our ids mean nothing upstream.
        headers.remove(LAST_EVENT_ID);
        let Some(client) = ctx.client_name() else {
            return Ok(Flow::Continue);
        };
        if ctx.log.method != "GET" {
            return Ok(Flow::Continue);
        }
        let who = Resumer {
            client,
            route: route.name.clone(),
            session: ctx.session.id().map(str::to_string),
            heartbeat: route.sse.heartbeat_interval,
            idle_timeout: route.sse.idle_timeout,
            node: self.app.node_id.clone(),
            sse: route.sse.clone(),
            request_id: ctx.log.request_id.clone(),
            reopen: Arc::new(reopen::Reopener {
                proxy: self.clone(),
                peer: ctx.peer,
            }),
        };
        let replay = &self.app.replay;
        let codec = replay.codec().await?;
        let store = replay.store().clone();
        let shutdown = self.app.shutdown.token();
        let resp = resume(store, codec, &id, who, shutdown).await?;
        Ok(Flow::Respond(resp))
    }

    /// Phase `prepare_body`: bodies up to `retry_limit` are read whole (so a
    /// 401 can be retried with the same bytes), larger ones stream; all are
    /// held to `max_body` and the route's timeout.
    async fn prepare_body<B>(
        &self,
        ctx: &mut RequestCtx,
        headers: &HeaderMap,
        body: B,
        max_body: u64,
        retry_limit: u64,
    ) -> Result<OutBody, ProxyError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let read_timeout = ctx
            .route
            .as_ref()
            .map_or(intent::READ_TIMEOUT, |r| r.timeout);
        let out = body::prepare(headers, body, max_body, retry_limit, read_timeout).await?;
        ctx.log.bytes_in = out.buffered_len();
        Ok(out)
    }

    /// Phase `response_filter`: the upstream's answer as it affects this
    /// node's state — MCP sessions created, kept or ended.
    async fn response_filter(
        &self,
        ctx: &mut RequestCtx,
        route: &Route,
        method: &http::Method,
        ex: &mut Exchange,
    ) -> Result<(), ProxyError> {
        let client = ctx.client_name();
        mcp::after(
            self,
            route,
            &ctx.session,
            method,
            client.as_deref(),
            ex.target,
            &mut ex.response,
        )
        .await
    }
}
