//! Validation of `[coordinator]`: cluster mode needs Redis (tokens are
//! shared through it) and plain-HTTP coordinator endpoints, and its timers
//! must leave room for the self-fence (a node stops acting as owner
//! `node_ttl − 2 × heartbeat_interval` after the send time of its last
//! acknowledged heartbeat, so that window must hold at least one more
//! heartbeat). Keys that only cluster mode reads are refused in the other
//! modes instead of being ignored.

use std::time::Duration;

use super::validate::ConfigError;
use super::{Config, CoordinatorConfig, CoordinatorMode, StateBackend};

/// Bounds of `coordinator.node_ttl` (the coordinator refuses others).
const NODE_TTL: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(600));
/// Shortest `coordinator.heartbeat_interval`.
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);
/// Most coordinator endpoints (raft clusters have 3 or 5 replicas).
const MAX_ENDPOINTS: usize = 9;

/// Checks `[coordinator]` against the rest of `config`.
pub(super) fn check(config: &Config, e: &mut Vec<ConfigError>) {
    let c = &config.coordinator;
    if c.mode != CoordinatorMode::Cluster {
        refuse_cluster_keys(c, e);
        return;
    }
    if config.state.backend != StateBackend::Redis {
        e.push(ConfigError::new(
            "coordinator.mode",
            "\"cluster\" needs state.backend = \"redis\" (owners share tokens through it)",
        ));
    }
    if c.endpoints.is_empty() {
        e.push(ConfigError::new(
            "coordinator.endpoints",
            "required with mode = \"cluster\": the URLs of the coordinator replicas",
        ));
    }
    if c.endpoints.len() > MAX_ENDPOINTS {
        e.push(ConfigError::new(
            "coordinator.endpoints",
            format!("at most {MAX_ENDPOINTS} coordinator replicas"),
        ));
    }
    for (i, url) in c.endpoints.iter().enumerate() {
        check_endpoint(&format!("coordinator.endpoints[{i}]"), url, e);
    }
    if c.heartbeat_interval < MIN_HEARTBEAT {
        e.push(ConfigError::new(
            "coordinator.heartbeat_interval",
            format!("must be at least {}ms", MIN_HEARTBEAT.as_millis()),
        ));
    }
    if c.node_ttl < NODE_TTL.0 || c.node_ttl > NODE_TTL.1 {
        e.push(ConfigError::new(
            "coordinator.node_ttl",
            "must be between 500ms and 10m",
        ));
    } else if c
        .heartbeat_interval
        .checked_mul(3)
        .is_none_or(|thrice| c.node_ttl < thrice)
    {
        e.push(ConfigError::new(
            "coordinator.node_ttl",
            "must be at least 3 × heartbeat_interval: a node steps down \
             node_ttl − 2 × heartbeat_interval after its last acknowledged heartbeat",
        ));
    }
}

/// In other modes the cluster keys would be ignored: refuse them.
fn refuse_cluster_keys(c: &CoordinatorConfig, e: &mut Vec<ConfigError>) {
    const ONLY: &str = "only applies to coordinator.mode = \"cluster\"";
    let defaults = CoordinatorConfig::default();
    if !c.endpoints.is_empty() {
        e.push(ConfigError::new("coordinator.endpoints", ONLY));
    }
    if c.heartbeat_interval != defaults.heartbeat_interval {
        e.push(ConfigError::new("coordinator.heartbeat_interval", ONLY));
    }
    if c.node_ttl != defaults.node_ttl {
        e.push(ConfigError::new("coordinator.node_ttl", ONLY));
    }
}

/// A coordinator endpoint: `http://host:port`, no credentials, no path.
/// Coordinators serve plain HTTP; an `https://` endpoint is refused rather
/// than contacted in clear.
fn check_endpoint(path: &str, url: &str, e: &mut Vec<ConfigError>) {
    let Some(rest) = url.strip_prefix("http://") else {
        let shown = if url.contains('@') { "the URL" } else { url };
        e.push(ConfigError::new(
            path,
            format!("\"{shown}\" must start with http:// (coordinators serve plain HTTP)"),
        ));
        return;
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        e.push(ConfigError::new(
            path,
            "must be http://host:port with no path, query or user",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(toml_text: &str) -> Vec<String> {
        let cfg: Config = toml::from_str(toml_text).expect("parse");
        match cfg.validate() {
            Ok(()) => Vec::new(),
            Err(errs) => errs.iter().map(ToString::to_string).collect(),
        }
    }

    const REDIS: &str = "[state]\nbackend = \"redis\"\n";

    #[test]
    fn cluster_mode_without_endpoints_is_refused_naming_the_field() {
        let errs = errors(&format!("{REDIS}[coordinator]\nmode = \"cluster\"\n"));
        assert!(
            errs.iter()
                .any(|e| e.starts_with("coordinator.endpoints: required")),
            "{errs:?}"
        );
    }

    #[test]
    fn cluster_mode_checks_backend_endpoints_and_timers() {
        let errs = errors(
            "[coordinator]\nmode = \"cluster\"\n\
             endpoints = [\"http://c1:7070\", \"https://c2:7070\", \"http://u:p@c3:7070\"]\n\
             heartbeat_interval = \"1s\"\nnode_ttl = \"2s\"\n",
        );
        for want in [
            "coordinator.mode: \"cluster\" needs state.backend",
            "coordinator.endpoints[1]: \"https://c2:7070\" must start with http://",
            "coordinator.endpoints[2]: must be http://host:port",
            "coordinator.node_ttl: must be at least 3 × heartbeat_interval",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "{want:?} in {errs:?}"
            );
        }
        assert!(
            !errs.iter().any(|e| e.contains("u:p")),
            "never echo credentials"
        );
        let huge = errors(&format!(
            "{REDIS}[coordinator]\nmode = \"cluster\"\nendpoints = [\"http://c:7070\"]\n\
             heartbeat_interval = \"300000000000years\"\n"
        ));
        assert!(
            huge.iter()
                .any(|e| e.starts_with("coordinator.node_ttl: must be at least 3")),
            "{huge:?}"
        );
        let ok = errors(&format!(
            "{REDIS}[coordinator]\nmode = \"cluster\"\nendpoints = [\"http://127.0.0.1:7070/\"]\n\
             heartbeat_interval = \"200ms\"\nnode_ttl = \"1s\"\n"
        ));
        assert_eq!(ok, Vec::<String>::new());
    }

    #[test]
    fn cluster_keys_in_other_modes_are_refused() {
        let errs = errors(
            "[coordinator]\nmode = \"embedded\"\nendpoints = [\"http://c:7070\"]\n\
             node_ttl = \"9s\"\n",
        );
        assert!(errs.contains(
            &"coordinator.endpoints: only applies to coordinator.mode = \"cluster\"".to_string()
        ));
        assert!(errs.contains(
            &"coordinator.node_ttl: only applies to coordinator.mode = \"cluster\"".to_string()
        ));
        let defaults =
            errors("[coordinator]\nmode = \"embedded\"\nheartbeat_interval = \"500ms\"\n");
        assert_eq!(
            defaults,
            Vec::<String>::new(),
            "a key at its default asks for nothing"
        );
    }
}
