//! Reopening a recorded SSE stream upstream when a node takes it over from a
//! producer that died: the recorded request (no client secrets in it) goes
//! through the same exchange as any request — a credential is picked anew
//! and injected, the 401 retry applies — with `Last-Event-ID` set to the
//! last upstream event id stored, and pinned to the MCP session's target
//! when the stream belongs to one.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;
use http_body_util::BodyExt;
use rhizome_proto::records::StreamMeta;
use rhizome_proto::ErrorCode;

use super::{OutBody, Outgoing, Proxy, RequestCtx, LAST_EVENT_ID};
use crate::error::ProxyError;
use crate::session::Lookup;
use crate::sse::resume::Reopen;
use crate::BoxBody;

/// Reopens streams for a resuming client of this node.
#[derive(Debug, Clone)]
pub struct Reopener {
    /// The proxy whose exchange is used.
    pub proxy: Proxy,
    /// The resuming client's address (`x-forwarded-for`).
    pub peer: SocketAddr,
}

fn failed(msg: &str) -> ProxyError {
    ProxyError::new(ErrorCode::UpstreamError, msg.to_string())
}

impl Reopen for Reopener {
    fn reopen<'a>(
        &'a self,
        meta: &'a StreamMeta,
        last_upstream_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<BoxBody, ProxyError>> + Send + 'a>> {
        Box::pin(async move {
            let app = &self.proxy.app;
            let route = app
                .router
                .by_name(&meta.route)
                .cloned()
                .ok_or_else(|| failed("the stream's route is gone"))?;
            let req = &meta.reopen;
            // An MCP stream is resumed with a GET on its session: repeating
            // the POST would repeat its JSON-RPC call upstream.
            let mcp = meta.session.is_some();
            let method = if mcp {
                Method::GET
            } else {
                Method::from_bytes(req.method.as_bytes())
                    .map_err(|_| failed("recorded method unusable"))?
            };
            let mut headers = HeaderMap::new();
            for (name, value) in &req.headers {
                if mcp && name.eq_ignore_ascii_case("content-type") {
                    continue;
                }
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.append(n, v);
                }
            }
            let id = HeaderValue::from_str(last_upstream_id)
                .map_err(|_| failed("stored upstream id unusable"))?;
            headers.insert(LAST_EVENT_ID, id);
            let mut pin = None;
            if let Some(session) = &meta.session {
                let ttl = route.session_idle_ttl;
                match app
                    .sessions
                    .lookup(session, &meta.client, &route.name, ttl)
                    .await?
                {
                    Lookup::Found(record) => pin = route.upstream.index_of(&record.target),
                    Lookup::NotFound => return Err(failed("the stream's MCP session ended")),
                }
            }
            let mut ctx = RequestCtx::new(&method, &req.path, &HeaderMap::new(), self.peer);
            ctx.set_route(route.clone());
            let out = Outgoing {
                method,
                path: req.path.clone(),
                headers,
                inject: true,
                pin,
            };
            let kept = if mcp { Vec::new() } else { req.body.clone() };
            let mut body = OutBody::Buffered(Bytes::from(kept));
            let ex = self
                .proxy
                .exchange(&mut ctx, &route, &out, &mut body)
                .await?;
            let (parts, body) = ex.response.into_parts();
            if !parts.status.is_success() || !crate::sse::is_event_stream(&parts.headers) {
                return Err(failed("the upstream did not reopen the stream"));
            }
            Ok(body.map_err(Into::into).boxed())
        })
    }
}
