//! Secret references in configuration. A secret is written inline, or as
//! `{ env = "NAME" }` / `{ file = "/run/secrets/x" }`; resolving it is I/O and so
//! happens in the crates that run (this crate only describes where it lives).
//! `Debug` prints `***` for inline values so a dumped config never leaks one.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where a secret value comes from.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    /// `{ env = "NAME" }`: read from the environment when the node starts.
    Env {
        /// Name of the environment variable.
        env: String,
    },
    /// `{ file = "/path" }`: read from a file (trailing newline trimmed).
    File {
        /// Path of the file holding the value.
        file: PathBuf,
    },
    /// The value written in the configuration itself.
    Value(SecretString),
}

impl Secret {
    /// An inline secret; for tests and programmatic configs.
    pub fn inline(value: impl Into<String>) -> Self {
        Secret::Value(SecretString::from(value.into()))
    }

    /// The inline value, if the secret is written in the config itself.
    pub fn inline_value(&self) -> Option<&str> {
        match self {
            Secret::Value(v) => Some(v.expose_secret()),
            _ => None,
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env { env } => f.debug_struct("Secret").field("env", env).finish(),
            Secret::File { file } => f.debug_struct("Secret").field("file", file).finish(),
            Secret::Value(_) => f.write_str("***"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        s: Secret,
    }

    #[test]
    fn parses_all_forms_and_never_prints_inline_values() {
        let h: Holder = toml::from_str(r#"s = "hunter2""#).expect("inline");
        assert_eq!(format!("{:?}", h.s), "***");
        assert_eq!(h.s.inline_value(), Some("hunter2"));
        let h: Holder = toml::from_str(r#"s = { env = "X" }"#).expect("env");
        assert!(matches!(h.s, Secret::Env { ref env } if env == "X"));
        let h: Holder = toml::from_str(r#"s = { file = "/run/x" }"#).expect("file");
        assert!(matches!(h.s, Secret::File { .. }));
    }
}
