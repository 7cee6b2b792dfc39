//! A replica's configuration: defaults < TOML file (`--config`) <
//! `RHIZOME_COORD__*` environment (`__` nests: `RHIZOME_COORD__RAFT__HEARTBEAT_INTERVAL`,
//! `RHIZOME_COORD__PEERS__2`) < command-line flags, merged by figment as the
//! node does. `--peers` replaces the whole peer table; the other layers merge
//! it key by key. Unknown keys are errors, and every error names the path of
//! its field: type errors are collected by pruning the bad value and
//! extracting again, then the whole configuration is validated, so
//! `check-config` reports every problem in one run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use rhizome_proto::config::ConfigError;
use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Prefix of the environment layer.
pub const ENV_PREFIX: &str = "RHIZOME_COORD__";
/// Replica counts a cluster may have.
pub const CLUSTER_SIZES: [usize; 3] = [1, 3, 5];
/// Shortest `raft.heartbeat_interval`.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    /// `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `data_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `peers`, replacing the table of the other layers.
    #[serde(skip)]
    pub peers: Option<BTreeMap<String, String>>,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read or is not TOML.
    #[error("{0}")]
    Source(String),
    /// One or more fields are wrong.
    #[error("{} configuration error(s)", .0.len())]
    Invalid(Vec<ConfigError>),
}

/// The validated configuration of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This replica's raft id.
    pub id: NodeId,
    /// Address of the one listener (raft RPCs and the node API).
    pub listen: SocketAddr,
    /// Where `raft.redb` lives.
    pub data_dir: PathBuf,
    /// Every replica's id and base URL (`http://host:port`, no trailing `/`).
    pub peers: BTreeMap<NodeId, String>,
    /// Raft timing and log compaction.
    pub raft: RaftSettings,
}

impl Config {
    /// This replica's own base URL, as its peers reach it.
    pub fn own_url(&self) -> &str {
        self.peers.get(&self.id).map_or("", String::as_str)
    }

    /// The openraft configuration these settings make.
    pub fn openraft(&self) -> Result<openraft::Config, Box<openraft::ConfigError>> {
        let r = &self.raft;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: "rhizome".into(),
            heartbeat_interval: ms(r.heartbeat_interval),
            election_timeout_min: ms(r.election_timeout_min),
            election_timeout_max: ms(r.election_timeout_max),
            // Snapshots are small (the assignments), but a loaded replica
            // must not time out installing one.
            install_snapshot_timeout: ms(r.election_timeout_max).max(5_000),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(r.snapshot_after),
            max_in_snapshot_log_to_keep: r.max_in_snapshot_log_to_keep,
            ..Default::default()
        }
        .validate()
        .map_err(Box::new)
    }
}

/// `[raft]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    /// How often the leader sends (possibly empty) appends to followers.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomised election timeout.
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    /// Upper bound of the election timeout; also the leader lease during
    /// which followers refuse other candidates.
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// Log entries since the last snapshot that trigger a new one.
    pub snapshot_after: u64,
    /// Entries kept in the log behind a snapshot, so a follower that lags a
    /// little catches up from the log instead of a snapshot.
    pub max_in_snapshot_log_to_keep: u64,
}

/// The defaults keep a leader failover (openraft's followers honour the
/// old leader's lease for `election_timeout_max`, then wait their own
/// election timeout) near 1 s: well inside a node's fence with the node
/// defaults (`node_ttl − 2 × heartbeat_interval` = 2 s, minus the age of its
/// last acknowledged heartbeat), so nodes keep their credentials through it.
impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            snapshot_after: 1000,
            max_in_snapshot_log_to_keep: 500,
        }
    }
}

/// The configuration as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    id: Option<u64>,
    listen: SocketAddr,
    data_dir: PathBuf,
    peers: BTreeMap<String, String>,
    raft: RaftSettings,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            id: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 7070)),
            data_dir: PathBuf::from("/var/lib/rhizome"),
            peers: BTreeMap::new(),
            raft: RaftSettings::default(),
        }
    }
}

/// Loads and validates the configuration from `file` (if any), the
/// environment and `overrides`.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, LoadError> {
    let mut figment = Figment::new();
    if let Some(file) = file {
        if !file.is_file() {
            return Err(LoadError::Source(format!(
                "config file {} does not exist or is not a file",
                file.display()
            )));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    figment = figment
        .merge(Env::prefixed(ENV_PREFIX).split("__"))
        .merge(Serialized::defaults(overrides));
    from_figment(&figment, overrides.peers.as_ref())
}

/// Parses and validates a configuration given as TOML text (tests).
pub fn from_toml(text: &str) -> Result<Config, LoadError> {
    from_figment(&Figment::from(Toml::string(text)), None)
}

fn from_figment(
    figment: &Figment,
    peers: Option<&BTreeMap<String, String>>,
) -> Result<Config, LoadError> {
    let dict: Dict = figment
        .extract()
        .map_err(|e| LoadError::Source(e.to_string()))?;
    let (raw, mut errors) = extract(Value::from(dict));
    let Some(mut raw) = raw else {
        return Err(LoadError::Invalid(errors));
    };
    if let Some(peers) = peers {
        raw.peers = peers.clone();
    }
    match validate(raw) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(LoadError::Invalid(errors)),
        Err(semantic) => {
            errors.extend(semantic);
            Err(LoadError::Invalid(errors))
        }
    }
}

/// Deserializes `value`, pruning each value that fails (its field falls
/// back to its default) until it succeeds; every failure with its path.
fn extract(mut value: Value) -> (Option<Raw>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    loop {
        match serde_path_to_error::deserialize::<_, Raw>(&value) {
            Ok(raw) => return (Some(raw), errors),
            Err(e) => {
                let path: Vec<String> = e
                    .path()
                    .iter()
                    .map(|seg| match seg {
                        serde_path_to_error::Segment::Map { key } => key.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                let shown = if path.is_empty() {
                    "(root)".to_string()
                } else {
                    path.join(".")
                };
                errors.push(ConfigError::new(shown, e.inner().to_string()));
                if !prune(&mut value, &path) {
                    return (None, errors);
                }
            }
        }
    }
}

/// Removes the value at `path`; false when there is nothing to remove.
fn prune(value: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = value;
    for key in parents {
        match at {
            Value::Dict(_, dict) => match dict.get_mut(key) {
                Some(next) => at = next,
                None => return false,
            },
            _ => return false,
        }
    }
    match at {
        Value::Dict(_, dict) => dict.remove(last).is_some(),
        _ => false,
    }
}

fn validate(raw: Raw) -> Result<Config, Vec<ConfigError>> {
    let mut e = Vec::new();
    let peers = check_peers(&raw.peers, raw.id, &mut e);
    check_raft(&raw.raft, &mut e);
    if raw.id.is_none() {
        e.push(ConfigError::new(
            "id",
            "required: this replica's id (one of the keys of peers)",
        ));
    }
    match raw.id {
        Some(id) if e.is_empty() => Ok(Config {
            id,
            listen: raw.listen,
            data_dir: raw.data_dir,
            peers,
            raft: raw.raft,
        }),
        _ => Err(e),
    }
}

fn check_peers(
    raw: &BTreeMap<String, String>,
    id: Option<u64>,
    e: &mut Vec<ConfigError>,
) -> BTreeMap<NodeId, String> {
    let mut peers = BTreeMap::new();
    for (key, url) in raw {
        let path = format!("peers.{key}");
        let Ok(peer) = key.parse::<NodeId>() else {
            e.push(ConfigError::new(path, "a replica id must be an integer"));
            continue;
        };
        if let Some(url) = check_url(&path, url, e) {
            if let Some((other, _)) = peers.iter().find(|(_, u)| **u == url) {
                e.push(ConfigError::new(
                    path,
                    format!("same URL as replica {other}"),
                ));
            }
            peers.insert(peer, url);
        }
    }
    if raw.is_empty() {
        e.push(ConfigError::new(
            "peers",
            "required: every replica's id and URL (1, 3 or 5 of them)",
        ));
    } else if !CLUSTER_SIZES.contains(&raw.len()) {
        e.push(ConfigError::new(
            "peers",
            format!("{} replicas given; a cluster has 1, 3 or 5", raw.len()),
        ));
    }
    if let Some(id) = id {
        if !raw.is_empty() && !raw.keys().any(|k| k.parse() == Ok(id)) {
            e.push(ConfigError::new(
                "peers",
                format!("does not contain this replica's id {id}"),
            ));
        }
    }
    peers
}

/// A peer's base URL without its trailing `/`: plain `http://`, a host,
/// no credentials and no path (routes hang off the root).
fn check_url(path: &str, url: &str, e: &mut Vec<ConfigError>) -> Option<String> {
    let Some(rest) = url.strip_prefix("http://") else {
        let shown = if url.contains('@') { "the URL" } else { url };
        e.push(ConfigError::new(
            path,
            format!(
                "\"{shown}\" must start with http:// (replicas talk plain HTTP on their network)"
            ),
        ));
        return None;
    };
    let rest = rest.trim_end_matches('/');
    let problem = if rest.contains('@') {
        Some("must not carry user:password")
    } else if rest.is_empty() {
        Some("has no host")
    } else if rest.contains(['/', '?', '#']) {
        Some("must be a base URL (http://host:port) without a path")
    } else {
        None
    };
    match problem {
        Some(message) => {
            e.push(ConfigError::new(path, message));
            None
        }
        None => Some(format!("http://{rest}")),
    }
}

fn check_raft(r: &RaftSettings, e: &mut Vec<ConfigError>) {
    if r.heartbeat_interval < MIN_HEARTBEAT {
        e.push(ConfigError::new(
            "raft.heartbeat_interval",
            format!("must be at least {}ms", MIN_HEARTBEAT.as_millis()),
        ));
    }
    if r.heartbeat_interval
        .checked_mul(2)
        .is_none_or(|twice| r.election_timeout_min < twice)
    {
        e.push(ConfigError::new(
            "raft.election_timeout_min",
            "must be at least twice raft.heartbeat_interval",
        ));
    }
    if r.election_timeout_max <= r.election_timeout_min {
        e.push(ConfigError::new(
            "raft.election_timeout_max",
            "must be greater than raft.election_timeout_min",
        ));
    }
    if r.snapshot_after == 0 {
        e.push(ConfigError::new(
            "raft.snapshot_after",
            "must be at least 1",
        ));
    }
}

#[cfg(test)]
mod tests;
