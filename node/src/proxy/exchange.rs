//! Phases `pick_credential` → `inject` → `forward` → `on_upstream_status`:
//! one exchange with the upstream, shared by the transparent path and the
//! request-intent API. The whole exchange — token acquisition, connect-error
//! failover and the one 401 retry — runs within the request's deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderMap;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rhizome_proto::ErrorCode;

use super::body::{is_body_limit, OutBody};
use super::{Proxy, RequestCtx};
use crate::credentials::{reauth, Credential, OnUnauthorized, Token};
use crate::error::{error_chain, ProxyError};
use crate::metrics;
use crate::routing::Route;
use crate::upstream::Outcome;

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

/// What came back from upstream (what the exchange did is in the context).
#[derive(Debug)]
pub struct Exchange {
    /// The upstream response.
    pub response: Response<Incoming>,
    /// Index of the upstream target that answered.
    pub target: usize,
}

impl Proxy {
    /// Runs the exchange for `req` and records what it did in `ctx`. With
    /// `inject` false (anonymous public path) no credential is used.
    pub async fn exchange(
        &self,
        ctx: &mut RequestCtx,
        route: &Route,
        req: &Outgoing,
        body: &mut OutBody,
    ) -> Result<Exchange, ProxyError> {
        let deadline = ctx.deadline(route.timeout);
        let budget = ctx.timeout(route.timeout);
        let mut picked = self.pick_credential(route, req.inject, deadline).await?;
        let mut retries = 0;
        // The 401 retry happens once, whatever connect-error failovers did.
        let mut auth_retried = false;
        loop {
            let headers = inject(&req.headers, picked.as_ref())?;
            let started = Instant::now();
            let (response, more, target) = self
                .forward(route, (deadline, budget), req, headers, body)
                .await?;
            retries += more;
            let upstream = started.elapsed();
            route.metrics.upstream_duration(&route.name, upstream);
            let next = match &picked {
                Some((cred, token)) => {
                    let key = reauth::path_key(&route.name, &req.path);
                    let status = response.status();
                    on_upstream_status(cred, token, status, key, auth_retried, body).await
                }
                None => Next::Done,
            };
            if let (Next::Retry, Some((cred, _))) = (next, &picked) {
                let cred = cred.clone();
                if let Ok(Ok(fresh)) =
                    tokio::time::timeout_at(deadline, cred.token_after_401()).await
                {
                    drain_for_reuse(response);
                    picked = Some((cred, fresh));
                    retries += 1;
                    auth_retried = true;
                    continue;
                }
                // No fresh token in time: the client gets upstream's 401 as it was.
            }
            let credential = picked.map(|(c, _)| c);
            ctx.credential.clone_from(&credential);
            ctx.log.credential = credential.as_ref().map(|c| c.name.clone());
            ctx.log.upstream = Some(upstream);
            ctx.log.retries = retries;
            return Ok(Exchange { response, target });
        }
    }

    /// Phase `pick_credential`: a credential of the route's pool and its
    /// token, before `deadline` (none when nothing is injected).
    async fn pick_credential(
        &self,
        route: &Route,
        inject: bool,
        deadline: tokio::time::Instant,
    ) -> Result<Option<(Arc<Credential>, Arc<Token>)>, ProxyError> {
        if !inject || route.pool.is_empty() {
            return Ok(None);
        }
        route.pool.acquire(deadline).await.map(Some)
    }

    /// Phase `forward`: one request to a target; a connect error with a
    /// replayable body is retried once on another target.
    /// `headers` are `req`'s with the token injected; they are moved into the
    /// request, copied only when a connect-error retry may need them again.
    /// `deadline` is the instant and the time it allowed.
    async fn forward(
        &self,
        route: &Route,
        (deadline, budget): (tokio::time::Instant, Duration),
        req: &Outgoing,
        mut headers: HeaderMap,
        body: &mut OutBody,
    ) -> Result<(Response<Incoming>, u32, usize), ProxyError> {
        let (method, path, pin) = (&req.method, req.path.as_str(), req.pin);
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
            let may_retry = retries == 0 && pin.is_none() && upstream.len() > 1;
            let mut req = Request::new(b);
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri;
            *req.version_mut() = Version::HTTP_11;
            *req.headers_mut() = if may_retry && body.replayable() {
                headers.clone()
            } else {
                std::mem::take(&mut headers)
            };
            match tokio::time::timeout_at(deadline, upstream.client().request(req)).await {
                Err(_) => {
                    upstream.report(idx, Outcome::Failed);
                    return Err(ProxyError::new(
                        ErrorCode::UpstreamTimeout,
                        format!("upstream did not answer within {budget:?}"),
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
}

/// What the exchange does after an upstream answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Answer the client with this response.
    Done,
    /// Retry once with a fresh token.
    Retry,
}

/// Phase `inject`: the request headers with `picked`'s token in place.
fn inject(
    headers: &HeaderMap,
    picked: Option<&(Arc<Credential>, Arc<Token>)>,
) -> Result<HeaderMap, ProxyError> {
    let mut h = headers.clone();
    if let Some((cred, token)) = picked {
        cred.inject(&mut h, token).map_err(|e| {
            ProxyError::new(ErrorCode::Internal, "token cannot be sent in a header").with_source(e)
        })?;
    }
    Ok(h)
}

/// Phase `on_upstream_status`: a non-401 accepts the token. A 401 is
/// decided by the credential's 401 policy (see `credentials::reauth`): retry
/// once with a fresh token, or answer upstream's 401 as it is.
async fn on_upstream_status(
    cred: &Credential,
    token: &Arc<Token>,
    status: StatusCode,
    path_key: u64,
    auth_retried: bool,
    body: &OutBody,
) -> Next {
    if status != StatusCode::UNAUTHORIZED {
        cred.upstream_accepted(token);
        return Next::Done;
    }
    if auth_retried {
        // A fresh token was refused too: answer the 401 as it is, and do
        // not refresh for this path again for a while.
        cred.upstream_rejected(Some(path_key));
        return Next::Done;
    }
    match cred.on_unauthorized(token, path_key).await {
        OnUnauthorized::GiveUp => {
            // Counts only while upstream accepts nothing from the credential.
            cred.upstream_rejected(None);
            return Next::Done;
        }
        OnUnauthorized::Retry if !body.replayable() => return Next::Done,
        OnUnauthorized::Retry => {}
    }
    metrics::upstream_retry("unauthorized");
    tracing::info!(credential = %cred.name, version = token.version, "upstream answered 401; retrying with a fresh token");
    Next::Retry
}

/// Largest 401 body read so the connection behind it can be reused.
const DRAIN_LIMIT: usize = 64 * 1024;
/// Upper bound of that read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Reads a discarded response to its end in the background, so its pooled
/// connection goes back to the pool instead of being closed. A large or slow
/// body is dropped (closing the connection) rather than waited for.
fn drain_for_reuse(response: Response<Incoming>) {
    let body = http_body_util::Limited::new(response.into_body(), DRAIN_LIMIT);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, body.collect()).await;
    });
}
