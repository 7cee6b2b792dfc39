//! The typed per-request state every phase reads and writes (pingora's
//! `CTX`): who the client is, which route and session apply, which credential
//! served, the request's deadline, and the access-log record that is written
//! once when the response body ends. One value per request, created at accept
//! and handed from phase to phase, so no phase re-derives what an earlier one
//! decided.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;

use super::mcp::Session;
use super::AccessLog;
use crate::auth::ClientId;
use crate::credentials::Credential;
use crate::limits::{RateHeaders, StreamSlot};
use crate::routing::Route;
use crate::sse::replay::Opening;
use rhizome_proto::records::ReopenRequest;

/// Header carrying the request id both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// What the phases know about one request.
#[derive(Debug)]
pub struct RequestCtx {
    /// Client address.
    pub peer: SocketAddr,
    /// When the request was accepted.
    pub started: Instant,
    /// The matched route, once `route` ran.
    pub route: Option<Arc<Route>>,
    /// The authenticated client (none on an anonymous public path).
    pub client: Option<ClientId>,
    /// The MCP session state, once `request_filter` ran.
    pub session: Session,
    /// The credential that served, once `pick_credential` ran.
    pub credential: Option<Arc<Credential>>,
    /// Bound of token acquisition plus the upstream's response head.
    pub deadline: Option<tokio::time::Instant>,
    /// The time `deadline` allowed when it was set (for error messages).
    pub timeout: Option<Duration>,
    /// The upstream request as a recorded stream would reopen it.
    pub reopen: Option<ReopenRequest>,
    /// The rate-limit headers of an admitted, rate-limited client.
    pub rate: Option<RateHeaders>,
    /// The client's stream slot, taken before the upstream call when the
    /// request asks for an event stream; held by the response body.
    pub stream: Option<StreamSlot>,
    /// The one access-log line of this request.
    pub log: AccessLog,
}

impl RequestCtx {
    /// The context of a request just accepted from `peer`.
    pub fn new(method: &http::Method, path: &str, headers: &HeaderMap, peer: SocketAddr) -> Self {
        RequestCtx {
            peer,
            started: Instant::now(),
            route: None,
            client: None,
            session: Session::Off,
            credential: None,
            deadline: None,
            timeout: None,
            reopen: None,
            rate: None,
            stream: None,
            log: AccessLog {
                request_id: request_id(headers),
                method: method.to_string(),
                path: path.to_string(),
                route: "-".into(),
                ..AccessLog::default()
            },
        }
    }

    /// Records the route and starts the request's deadline (`route.timeout`).
    pub fn set_route(&mut self, route: Arc<Route>) {
        self.log.route = route.name.clone();
        self.set_timeout(route.timeout);
        self.route = Some(route);
    }

    /// Overrides the deadline (the intent API's `timeout_ms`).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.deadline = Some(tokio::time::Instant::now() + timeout);
        self.timeout = Some(timeout);
    }

    /// The time the request's deadline allows (`fallback` when none was set).
    pub fn timeout(&self, fallback: Duration) -> Duration {
        self.timeout.unwrap_or(fallback)
    }

    /// The request's deadline (a route's default when none was set).
    pub fn deadline(&self, fallback: Duration) -> tokio::time::Instant {
        self.deadline
            .unwrap_or_else(|| tokio::time::Instant::now() + fallback)
    }

    /// What a recorded stream of this request needs: who, where, and how
    /// to reopen it; `None` for anonymous requests.
    pub fn opening(&self) -> Option<Opening> {
        if matches!(self.session, Session::Stateless) {
            // MCP 2026-07-28: no resumability; a disconnect cancels.
            return None;
        }
        Some(Opening {
            client: self.client_name()?,
            route: self.route.as_ref()?.name.clone(),
            session: self.session.id().map(str::to_string),
            reopen: self.reopen.clone()?,
        })
    }

    /// The client's name, for logs and session binding.
    pub fn client_name(&self) -> Option<String> {
        self.client.as_ref().map(ToString::to_string)
    }
}

/// The client's request id when it is sane (at most 128 visible ASCII
/// characters), else a new random one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| hex::encode(rand::random::<[u8; 12]>()), str::to_string)
}
