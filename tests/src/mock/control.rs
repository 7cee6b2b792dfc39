//! The test-facing control plane under `/_mock/`: counters (`stats`,
//! `reset`), runtime configuration (`config`) and token rotation (`rotate`).
//! These endpoints need no credential.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::api::json_error;
use super::state::{lock, MockState, Stats};

/// `GET /_mock/stats`.
pub(crate) async fn stats(State(state): State<Arc<MockState>>) -> Response {
    let stats = lock(&state.stats).clone();
    let manual = lock(&state.manual).open_counts();
    let mcp_live = lock(&state.mcp).len();
    let mut doc = serde_json::to_value(stats).unwrap_or_else(|_| json!({}));
    doc["sse_manual_open"] = json!(manual);
    doc["mcp_sessions_live"] = json!(mcp_live);
    doc["connections_accepted"] = json!(super::server::accepted());
    doc["connections_closed"] = json!(super::server::closed());
    Json(doc).into_response()
}

/// `POST /_mock/reset`: zeroes every counter (live MCP sessions stay).
pub(crate) async fn reset(State(state): State<Arc<MockState>>) -> Response {
    *lock(&state.stats) = Stats::default();
    tracing::info!("counters reset");
    Json(json!({ "reset": true })).into_response()
}

/// `POST /_mock/rotate`: invalidates every token issued so far.
pub(crate) async fn rotate(State(state): State<Arc<MockState>>) -> Response {
    let rotated = lock(&state.tokens).rotate();
    tracing::info!(rotated, "tokens rotated");
    Json(json!({ "rotated": rotated })).into_response()
}

/// Distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`).
fn explicit<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `POST /_mock/config`; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigUpdate {
    expires_in: Option<u64>,
    fail_clients: Option<Vec<String>>,
    token_delay_ms: Option<u64>,
    slow_clients: Option<std::collections::BTreeMap<String, u64>>,
    auth_delay_ms: Option<u64>,
    #[serde(default, deserialize_with = "explicit")]
    api_status: Option<Option<u16>>,
}

/// `GET /_mock/config`.
pub(crate) async fn get_config(State(state): State<Arc<MockState>>) -> Response {
    Json(lock(&state.config).clone()).into_response()
}

/// `POST /_mock/config`: applies the given fields, answers the result.
pub(crate) async fn set_config(State(state): State<Arc<MockState>>, body: String) -> Response {
    let update: ConfigUpdate = if body.trim().is_empty() {
        ConfigUpdate::default()
    } else {
        match serde_json::from_str(&body) {
            Ok(u) => u,
            Err(e) => {
                let msg = json!({ "error": "bad_config", "reason": e.to_string() });
                return (http::StatusCode::BAD_REQUEST, Json(msg)).into_response();
            }
        }
    };
    if let Some(Some(code)) = update.api_status {
        let valid = http::StatusCode::from_u16(code).is_ok_and(|s| !s.is_informational());
        if code != 0 && !valid {
            return json_error(http::StatusCode::BAD_REQUEST, "bad_api_status");
        }
    }
    let mut cfg = lock(&state.config);
    if let Some(v) = update.expires_in {
        cfg.expires_in = v;
    }
    if let Some(v) = update.fail_clients {
        cfg.fail_clients = v.into_iter().collect();
    }
    if let Some(v) = update.token_delay_ms {
        cfg.token_delay_ms = v;
    }
    if let Some(v) = update.slow_clients {
        cfg.slow_clients = v;
    }
    if let Some(v) = update.auth_delay_ms {
        cfg.auth_delay_ms = v;
    }
    if let Some(v) = update.api_status {
        cfg.api_status = v.filter(|&c| c != 0);
    }
    tracing::info!(config = ?*cfg, "config updated");
    let doc: Value = serde_json::to_value(&*cfg).unwrap_or_else(|_| json!({}));
    Json(doc).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_update_null_vs_absent() {
        let u: ConfigUpdate = serde_json::from_str(r#"{"api_status":null}"#).expect("json");
        assert_eq!(u.api_status, Some(None));
        let u: ConfigUpdate = serde_json::from_str(r#"{"expires_in":5}"#).expect("json");
        assert_eq!(u.api_status, None);
        assert_eq!(u.expires_in, Some(5));
        let u: ConfigUpdate = serde_json::from_str(r#"{"api_status":503}"#).expect("json");
        assert_eq!(u.api_status, Some(Some(503)));
    }
}
