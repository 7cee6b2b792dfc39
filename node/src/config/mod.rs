//! Loading the configuration: defaults < TOML file < `RHIZOME__SECTION__KEY`
//! environment < CLI flags, merged by figment, deserialized reporting every
//! type error with the path of its field (see [`collect`]), then validated as
//! a whole (see [`rhizome_proto::config`]). Secret references are resolved
//! here too, once, at start.

mod collect;
mod secret;

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use rhizome_proto::config::ConfigError;
use rhizome_proto::Config;
use serde::Serialize;

pub use secret::{resolve, resolve_optional, SecretError};

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    /// `node.id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `node.listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `node.admin_listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
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

/// Loads and validates the configuration from `file` (if any), the environment
/// and `overrides`.
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
        .merge(Env::prefixed("RHIZOME__").split("__"))
        .merge(Serialized::default("node", overrides));
    from_figment(&figment)
}

/// Parses and validates a configuration given as TOML text (tests, examples).
pub fn from_toml(text: &str) -> Result<Config, LoadError> {
    from_figment(&Figment::from(Toml::string(text)))
}

/// The node id: `node.id`, else the host name, else `rhizome-node`.
pub fn node_id(config: &Config) -> String {
    config.node.id.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "rhizome-node".into())
    })
}

fn from_figment(figment: &Figment) -> Result<Config, LoadError> {
    let dict: Dict = figment
        .extract()
        .map_err(|e| LoadError::Source(e.to_string()))?;
    collect::extract(figment, Value::from(dict)).map_err(LoadError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match from_toml(text) {
            Err(LoadError::Invalid(errs)) => errs.iter().map(ToString::to_string).collect(),
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    #[test]
    fn empty_config_is_the_embedded_default() {
        let cfg = from_toml("").expect("defaults");
        assert_eq!(cfg.node.listen.port(), 8080);
        assert_eq!(cfg.node.intent_path, "/v1/proxy");
    }

    #[test]
    fn type_errors_name_the_nested_field() {
        let errs = errors(
            "[[upstreams]]\nname='u'\ntargets=['http://x']\n[[routes]]\nname='r'\npath_prefix='/'\nupstream='u'\ntimeout='soon'",
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("routes[0].timeout: "), "{errs:?}");
    }

    #[test]
    fn every_type_error_is_collected_with_the_index_written() {
        let errs = errors(
            "[node]\nshutdown_grace = 5\n[limits]\nmax_body = true\n\
             [[upstreams]]\nname='u'\ntargets=['http://x']\n\
             [[routes]]\nname=1\npath_prefix='/a/'\nupstream='u'\n\
             [[routes]]\nname='r'\npath_prefix='/'\nupstream='u'\ntimeout='abc'\n\
             [[routes]]\nname='s'\npath_prefix='/s/'\nupstream='nope'",
        );
        let paths: Vec<&str> = errs
            .iter()
            .filter_map(|e| e.split_once(": ").map(|(p, _)| p))
            .collect();
        assert_eq!(
            paths,
            [
                "limits.max_body",
                "node.shutdown_grace",
                "routes[0].name",
                "routes[1].timeout",
                "routes[2].upstream",
            ],
            "{errs:#?}"
        );
    }

    #[test]
    fn unknown_keys_name_their_section() {
        let errs = errors("[limits]\nmax_bodyy = '1MiB'");
        assert!(
            errs[0].starts_with("limits.max_bodyy: unknown field"),
            "{errs:?}"
        );
    }
}
