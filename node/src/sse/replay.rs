//! The node's replay engine for `sse.replay = true` routes: the one place
//! that opens a recorded stream (creates it in the store, takes the producer
//! lease, starts its [`Recorder`]) and answers resumes (`resume`). It holds
//! the store (memory or Redis, behind [`ReplayStore`]) and the id codec,
//! whose key comes from the store so that every node sharing it issues and
//! accepts the same ids.

use std::sync::Arc;

use rhizome_proto::config::SseConfig;
use rhizome_proto::records::{ReopenRequest, StreamMeta};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::ids::{IdCodec, StreamId};
use super::record::{Appender, Recorder};
use crate::credentials::source::unix_ms;
use crate::state::redis::StateError;
use crate::state::replay::{ReplayStore, Retention};

/// Recorded streams of one node.
#[derive(Debug)]
pub struct Replay {
    store: Arc<dyn ReplayStore>,
    codec: OnceCell<Arc<IdCodec>>,
    node_id: String,
}

/// Who opens a recorded stream, and how to reopen it upstream.
#[derive(Debug, Clone)]
pub struct Opening {
    /// The authenticated client.
    pub client: String,
    /// The route.
    pub route: String,
    /// The MCP proxy session, if any.
    pub session: Option<String>,
    /// The upstream request, without credentials or client keys.
    pub reopen: ReopenRequest,
}

/// The retention a route's SSE settings ask for.
pub fn retention(sse: &SseConfig) -> Retention {
    Retention {
        max_events: u64::try_from(sse.buffer_events).unwrap_or(u64::MAX),
        ttl: sse.buffer_ttl,
    }
}

impl Replay {
    /// The engine over `store` on node `node_id`.
    pub fn new(store: Arc<dyn ReplayStore>, node_id: &str) -> Self {
        Replay {
            store,
            codec: OnceCell::new(),
            node_id: node_id.to_string(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ReplayStore> {
        &self.store
    }

    /// The id codec, keyed by the store's cluster key (fetched once).
    pub async fn codec(&self) -> Result<Arc<IdCodec>, StateError> {
        self.codec
            .get_or_try_init(|| async {
                let key = self.store.id_key().await?;
                Ok(Arc::new(IdCodec::new(&key)))
            })
            .await
            .cloned()
    }

    /// Opens a new recorded stream. `None` when shared state cannot take it
    /// now: the stream is then relayed live, unrecorded (G6), and said so.
    pub async fn open(&self, opening: Opening, sse: &SseConfig) -> Option<Recorder> {
        match self.try_open(opening, sse).await {
            Ok(recorder) => Some(recorder),
            Err(e) => {
                tracing::warn!(error = %e, "replay store unavailable; relaying this stream without replay");
                None
            }
        }
    }

    async fn try_open(&self, opening: Opening, sse: &SseConfig) -> Result<Recorder, StateError> {
        let codec = self.codec().await?;
        let stream = StreamId::new_random();
        let meta = StreamMeta {
            client: opening.client,
            route: opening.route,
            session: opening.session,
            reopen: opening.reopen,
            created_ms: unix_ms(),
        };
        let retention = retention(sse);
        self.store.create(stream.as_str(), &meta, retention).await?;
        let lease = self
            .store
            .acquire(stream.as_str(), &self.node_id, sse.producer_lease)
            .await?
            .ok_or_else(|| StateError::Protocol("a new stream's lease is taken".into()))?;
        let appender = Appender {
            store: self.store.clone(),
            stream,
            lease,
            node: self.node_id.clone(),
            lease_ttl: sse.producer_lease,
            retention,
        };
        Ok(Recorder::start(
            codec,
            0,
            appender,
            CancellationToken::new(),
        ))
    }
}
