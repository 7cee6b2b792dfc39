//! Phase `respond`: the upstream's answer on its way back. Hop-by-hop
//! headers go; a successful `text/event-stream` takes the SSE relay, which
//! forwards each complete event as soon as it is parsed and never buffers;
//! everything else streams through as it comes, held to an idle timeout.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH};
use http::{Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::IdleTimeout;
use super::{Proxy, RequestCtx};
use crate::routing::Route;
use crate::sse::relay::{relay, RelayOptions};
use crate::upstream::headers;
use crate::BoxBody;
use rhizome_proto::config::DisconnectPolicy;

impl Proxy {
    /// Phase `respond`: hop-by-hop headers out; SSE goes through the relay,
    /// everything else streams through as it comes.
    pub(super) async fn respond(
        &self,
        ctx: &mut RequestCtx,
        route: &Route,
        resp: Response<Incoming>,
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
                request_id: ctx.log.request_id.clone(),
                idle_timeout: route.sse.idle_timeout,
                heartbeat_interval: route.sse.heartbeat_interval,
                max_event_bytes: usize::try_from(route.sse.max_event_bytes.as_u64())
                    .unwrap_or(usize::MAX),
                detach_grace: (route.sse.on_client_disconnect == DisconnectPolicy::Detach)
                    .then_some(route.sse.detach_grace),
            };
            let recorder = match (route.sse.replay, ctx.opening()) {
                (true, Some(opening)) => self.app.replay.open(opening, &route.sse).await,
                _ => None,
            };
            let (body, end) = relay(
                body.map_err(Into::into).boxed(),
                opts,
                recorder,
                self.app.shutdown.token(),
            );
            // How the stream ended is only known to the relay: the log asks it.
            ctx.log.stream_end = Some(end);
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
