//! The raft network between replicas: openraft's `append_entries`, `vote`
//! and `install_snapshot` as HTTP/1.1 `POST`s of codec-encoded bodies to
//! [`APPEND_PATH`], [`VOTE_PATH`] and [`SNAPSHOT_PATH`] on the target's base
//! URL, over one pooled client shared by every target (and by the node-API
//! forwarding). The answer body is the codec encoding of the handler's
//! `Result`, so a remote raft error comes back as openraft's `RemoteError`.
//!
//! Each RPC is bounded by openraft's `RPCOption::hard_ttl()`. A connection
//! that cannot be made is [`Unreachable`] (openraft then backs off before
//! retrying that target); anything else (timeout, non-200 answer, bad
//! bytes) is a [`NetworkError`].

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use rhizome_proto::codec;
use rhizome_proto::coord::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{Member, NodeId, TypeConfig};

/// `POST` an `AppendEntriesRequest`.
pub const APPEND_PATH: &str = "/raft/append";
/// `POST` a `VoteRequest`.
pub const VOTE_PATH: &str = "/raft/vote";
/// `POST` an `InstallSnapshotRequest` (one chunk).
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
/// Largest raft RPC body, either way.
pub const MAX_RAFT_BODY: usize = 16 << 20;

/// The one pooled HTTP client of a replica.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled HTTP/1.1 client for raft RPCs and forwarded node calls.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Creates a [`Peer`] per target replica.
#[derive(Debug, Clone)]
pub struct Network {
    http: HttpClient,
}

impl Network {
    /// A factory sending through `http`.
    pub fn new(http: HttpClient) -> Self {
        Network { http }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        Peer {
            target,
            base: node.addr.trim_end_matches('/').to_string(),
            http: self.http.clone(),
        }
    }
}

/// The RPC client of one target replica.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    base: String,
    http: HttpClient,
}

/// A failure to reach or understand a peer, as a plain error value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

impl Peer {
    /// Sends `req` to `path` and decodes the handler's `Result`.
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, Member, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let network = |msg: String| RPCError::Network(NetworkError::new(&Failure(msg)));
        let body = codec::encode(req).map_err(|e| network(e.to_string()))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| network(e.to_string()))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    network(format!("{}{path}: {e}", self.base))
                }
            })?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RAFT_BODY)
                .collect()
                .await
                .map_err(|e| network(format!("reading the answer of {}{path}: {e}", self.base)))?
                .to_bytes();
            if status != StatusCode::OK {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                return Err(network(format!(
                    "{}{path} answered {status}: {text}",
                    self.base
                )));
            }
            codec::decode::<Result<Resp, E>>(&bytes).map_err(|e| network(e.to_string()))
        };
        let answer = tokio::time::timeout(ttl, exchange)
            .await
            .map_err(|_| network(format!("{}{path}: no answer within {ttl:?}", self.base)))??;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(APPEND_PATH, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(SNAPSHOT_PATH, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(VOTE_PATH, &rpc, option.hard_ttl()).await
    }
}
