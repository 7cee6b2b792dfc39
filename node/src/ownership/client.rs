//! The node's client of the coordinator's node API: one codec-encoded
//! `POST` per heartbeat or goodbye over a small pooled HTTP/1.1 client.
//! It calls the leader it last heard of first (any replica would forward,
//! but going straight to the leader saves a hop), then every configured
//! endpoint in turn, each attempt under its own short timeout, so a dead or
//! frozen replica costs one timeout and never stalls the heartbeat loop.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use rhizome_proto::codec;
use rhizome_proto::coord::{HeartbeatReply, CONTENT_TYPE, MAX_NODE_BODY};
use serde::Serialize;

/// Why no coordinator answered.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Every endpoint failed; the last failure.
    #[error("no coordinator answered: {0}")]
    Unreachable(String),
}

/// A client of the coordinator replicas.
#[derive(Debug)]
pub struct CoordinatorClient {
    endpoints: Vec<String>,
    leader: Mutex<Option<String>>,
    http: Client<HttpConnector, Full<Bytes>>,
    attempt_timeout: Duration,
}

impl CoordinatorClient {
    /// A client of `endpoints` (`http://host:port`), each attempt bounded
    /// by `attempt_timeout`.
    pub fn new(endpoints: &[String], attempt_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(attempt_timeout));
        CoordinatorClient {
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            leader: Mutex::new(None),
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            attempt_timeout,
        }
    }

    /// Sends `body` to `path` on the leader, or on the first replica that
    /// answers; remembers the leader it names.
    pub async fn call<T: Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<HeartbeatReply, CallError> {
        let payload =
            Bytes::from(codec::encode(body).map_err(|e| CallError::Unreachable(e.to_string()))?);
        let mut last = String::from("no endpoint configured");
        for base in self.candidates() {
            match self.attempt(&base, path, payload.clone()).await {
                Ok(reply) => {
                    let leader = reply.leader_url.trim_end_matches('/');
                    let known = leader.starts_with("http://").then(|| leader.to_string());
                    *self.leader.lock() = known;
                    return Ok(reply);
                }
                Err(e) => {
                    tracing::debug!(endpoint = %base, error = %e, "coordinator call failed");
                    last = format!("{base}: {e}");
                }
            }
        }
        *self.leader.lock() = None;
        Err(CallError::Unreachable(last))
    }

    /// The leader first (if known), then every endpoint.
    fn candidates(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.endpoints.len() + 1);
        if let Some(leader) = self.leader.lock().clone() {
            out.push(leader);
        }
        for e in &self.endpoints {
            if !out.contains(e) {
                out.push(e.clone());
            }
        }
        out
    }

    async fn attempt(
        &self,
        base: &str,
        path: &str,
        payload: Bytes,
    ) -> Result<HeartbeatReply, String> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{base}{path}"))
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(payload))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_NODE_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            if status != StatusCode::OK {
                return Err(format!("status {status}: {}", error_message(&body)));
            }
            codec::decode::<HeartbeatReply>(&body).map_err(|e| e.to_string())
        };
        tokio::time::timeout(self.attempt_timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.attempt_timeout))?
    }
}

/// The message of a coordinator's JSON error, shortened for a log line.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
    code.unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}
