//! Helpers shared by the integration tests that drive the node's own Redis
//! client directly (fencing, replay stores): one way to build it.

use std::sync::Arc;
use std::time::Duration;

use rhizome_node::state::redis::Redis;
use rhizome_proto::config::{StateBackend, StateConfig};
use tokio_util::sync::CancellationToken;

/// A node's Redis client on `port` with `op_timeout`, connected.
pub async fn node_redis(port: u16, op_timeout: Duration) -> Arc<Redis> {
    let cfg = StateConfig {
        backend: StateBackend::Redis,
        redis_url: format!("redis://127.0.0.1:{port}"),
        tls: None,
        op_timeout,
        encryption_key: None,
    };
    let redis = Arc::new(Redis::new(&cfg, None).expect("redis client"));
    redis.start(CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(10), redis.wait_connected())
        .await
        .expect("connected to redis");
    redis
}
