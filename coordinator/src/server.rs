//! Running a replica until shutdown: start the [`App`], the liveness loop
//! and the leader watcher, serve the router on the bound listener (logging
//! `listening` with `addr` once it serves), and on shutdown stop accepting,
//! let in-flight calls finish (bounded by [`DRAIN_TIMEOUT`]) and shut raft
//! down.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Config;
use crate::{api, liveness, RunError};

/// Longest the server waits for in-flight calls after shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a replica on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    metrics: Option<PrometheusHandle>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let addr = listener.local_addr()?;
    let app = App::start(config, metrics).await?;
    let tasks = shutdown.child_token();
    tokio::spawn(liveness::run(app.clone(), tasks.clone()));
    tokio::spawn(watch_leader(app.clone(), tasks.clone()));
    let server = axum::serve(listener, api::router(app.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let mut serving = tokio::spawn(async move { server.await });
    tracing::info!(addr = %addr, id = app.config.id, peers = app.config.peers.len(), "listening");
    let served = tokio::select! {
        r = &mut serving => Some(r),
        _ = shutdown.cancelled() => None,
    };
    let served = match served {
        Some(r) => Some(r),
        None => tokio::time::timeout(DRAIN_TIMEOUT, &mut serving).await.ok(),
    };
    if served.is_none() {
        tracing::warn!("in-flight calls still running after {DRAIN_TIMEOUT:?}; stopping anyway");
        serving.abort();
    }
    tasks.cancel();
    if let Err(e) = app.raft.shutdown().await {
        tracing::warn!(error = %e, "raft did not shut down cleanly");
    }
    tracing::info!("stopped");
    match served {
        Some(Ok(Err(e))) => Err(RunError::Io(e)),
        _ => Ok(()),
    }
}

/// Logs leader changes and keeps the raft gauges current as raft's metrics
/// move (the live-node gauge follows the liveness loop).
async fn watch_leader(app: Arc<App>, stop: CancellationToken) {
    let mut watch = app.raft.metrics();
    let mut known = (None, 0);
    loop {
        let (leader, term) = {
            let m = watch.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        if (leader, term) != known && (leader.is_some() || known.0.is_some()) {
            match leader {
                Some(id) if id == app.config.id => {
                    tracing::info!(term, "this replica is the leader")
                }
                Some(id) => tracing::info!(leader = id, term, "leader changed"),
                None => tracing::info!(term, "no leader"),
            }
        }
        known = (leader, term);
        app.record_raft_metrics();
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = watch.changed() => if changed.is_err() { return },
        }
    }
}
