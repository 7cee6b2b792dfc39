//! The MCP session phases of a route with `session = "mcp"`:
//! `before` maps the client's proxy session id to the upstream's and pins the
//! target; `after` maps a new upstream session to a proxy id, and ends the
//! mapping on `DELETE` or when upstream no longer knows the session.
//! Clients of the stateless revision (`MCP-Protocol-Version: 2026-07-28`)
//! pass through untouched, `Last-Event-ID` dropped.

use http::header::{HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use rhizome_proto::config::SessionMode;
use rhizome_proto::ErrorCode;

use super::Proxy;
use crate::error::ProxyError;
use crate::routing::Route;
use crate::session::{Lookup, PROTOCOL_HEADER, SESSION_HEADER, STATELESS_REVISION};

/// The session state of one request.
#[derive(Debug)]
pub enum Session {
    /// The route has no session handling (or the request is anonymous).
    Off,
    /// A stateless-revision client: pass through.
    Stateless,
    /// No session yet: map one if upstream creates it.
    New,
    /// An existing proxy session `id`, pinned to target `pin`.
    Existing {
        /// Proxy session id.
        id: String,
        /// Pinned target.
        pin: usize,
    },
}

impl Session {
    /// The proxy session id, for an existing session.
    pub fn id(&self) -> Option<&str> {
        match self {
            Session::Existing { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The target this request must use, if pinned.
    pub fn pin(&self) -> Option<usize> {
        match self {
            Session::Existing { pin, .. } => Some(*pin),
            _ => None,
        }
    }
}

fn not_found() -> ProxyError {
    ProxyError::new(
        ErrorCode::SessionNotFound,
        "unknown or expired MCP session; initialize again",
    )
}

/// Before forwarding: resolve the proxy session and rewrite it to upstream's.
pub async fn before(
    proxy: &Proxy,
    route: &Route,
    client: Option<&str>,
    headers: &mut HeaderMap,
) -> Result<Session, ProxyError> {
    if route.session != SessionMode::Mcp {
        return Ok(Session::Off);
    }
    let Some(client) = client else {
        // Anonymous (public path): no session may be used or created.
        headers.remove(SESSION_HEADER);
        return Ok(Session::Off);
    };
    let stateless = headers
        .get(PROTOCOL_HEADER)
        .is_some_and(|v| v.as_bytes() == STATELESS_REVISION.as_bytes());
    let Some(raw) = headers.get(SESSION_HEADER) else {
        if stateless {
            headers.remove("last-event-id");
            return Ok(Session::Stateless);
        }
        return Ok(Session::New);
    };
    let id = raw.to_str().map_err(|_| not_found())?.to_string();
    if !crate::session::is_proxy_id(&id) {
        return Err(not_found()); // no store command for an id we never issue
    }
    let ttl = route.session_idle_ttl;
    let record = match proxy
        .app
        .sessions
        .lookup(&id, client, &route.name, ttl)
        .await?
    {
        Lookup::Found(record) => record,
        Lookup::NotFound => return Err(not_found()),
    };
    let Some(pin) = route.upstream.index_of(&record.target) else {
        // The pinned target left the configuration: the session cannot continue.
        return Err(not_found());
    };
    let upstream_id = HeaderValue::from_str(&record.upstream_session).map_err(|_| not_found())?;
    headers.insert(SESSION_HEADER, upstream_id);
    Ok(Session::Existing { id, pin })
}

/// After the upstream answered: create, keep or end the mapping.
pub async fn after(
    proxy: &Proxy,
    route: &Route,
    session: &Session,
    method: &Method,
    client: Option<&str>,
    target: usize,
    resp: &mut Response<Incoming>,
) -> Result<(), ProxyError> {
    let sessions = &proxy.app.sessions;
    match session {
        Session::Stateless => {
            // Stateless revision: an upstream session id never reaches the client.
            resp.headers_mut().remove(SESSION_HEADER);
            Ok(())
        }
        Session::Off => {
            if route.session == SessionMode::Mcp {
                resp.headers_mut().remove(SESSION_HEADER);
            }
            Ok(())
        }
        Session::New => {
            let (Some(client), Some(upstream_id)) = (
                client,
                resp.headers()
                    .get(SESSION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            ) else {
                return Ok(());
            };
            let id = sessions
                .create(
                    &upstream_id,
                    &route.name,
                    &route.upstream.target_url(target),
                    client,
                    route.session_idle_ttl,
                )
                .await?;
            let value = HeaderValue::from_str(&id).map_err(|e| {
                ProxyError::new(ErrorCode::Internal, "bad session id").with_source(e)
            })?;
            resp.headers_mut().insert(SESSION_HEADER, value);
            Ok(())
        }
        Session::Existing { id, .. } => {
            let status = resp.status();
            let ended = status == StatusCode::NOT_FOUND
                || (method == Method::DELETE && status.is_success());
            if ended {
                if let Err(e) = sessions.remove(id).await {
                    tracing::warn!(error = %e, "removing an ended session failed; it will expire");
                }
            }
            if resp.headers().contains_key(SESSION_HEADER) {
                if let Ok(v) = HeaderValue::from_str(id) {
                    resp.headers_mut().insert(SESSION_HEADER, v);
                }
            }
            Ok(())
        }
    }
}
