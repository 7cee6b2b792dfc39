//! `[log]`: the format of log lines and, optionally, the file they go to
//! instead of stdout, with its rotation (by UTC hour or day, or by size) and
//! retention (how many files, how many bytes in all). The rotation setting is
//! a string (`"daily"`, `"100MiB"`) parsed here, so a typo is reported with
//! the field's path like any other type error.

use std::fmt;
use std::path::PathBuf;

use bytesize::ByteSize;
use serde::{Deserialize, Deserializer};

use super::validate::ConfigError;

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormatSetting {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable.
    Pretty,
}

/// `log.rotation`: when the active log file is set aside for a fresh one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// One file that grows forever (rotated by something else, if at all).
    Never,
    /// At every full UTC hour.
    Hourly,
    /// At every UTC midnight.
    Daily,
    /// Before a line would take the file past this many bytes.
    Size(ByteSize),
}

impl Rotation {
    /// Parses `"never"`, `"hourly"`, `"daily"` or a size such as `"100MiB"`.
    pub fn parse(s: &str) -> Result<Rotation, String> {
        match s {
            "never" => Ok(Rotation::Never),
            "hourly" => Ok(Rotation::Hourly),
            "daily" => Ok(Rotation::Daily),
            _ if s.starts_with(|c: char| c.is_ascii_digit()) => s
                .parse::<ByteSize>()
                .map(Rotation::Size)
                .map_err(|_| format!("\"{s}\" is not a size such as \"100MiB\"")),
            _ => Err(format!(
                "\"{s}\" is not \"hourly\", \"daily\", \"never\" or a size such as \"100MiB\""
            )),
        }
    }
}

impl fmt::Display for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rotation::Never => f.write_str("never"),
            Rotation::Hourly => f.write_str("hourly"),
            Rotation::Daily => f.write_str("daily"),
            Rotation::Size(size) => write!(f, "{size}"),
        }
    }
}

impl<'de> Deserialize<'de> for Rotation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rotation::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Line format; `--log-format` overrides it.
    pub format: LogFormatSetting,
    /// Log file; stdout when absent.
    pub file: Option<PathBuf>,
    /// When the file is rotated.
    pub rotation: Rotation,
    /// Files kept at most, the active one included.
    pub max_files: u32,
    /// Bytes kept at most in all files; the oldest rotated files go first.
    pub max_total_size: ByteSize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormatSetting::Json,
            file: None,
            rotation: Rotation::Daily,
            max_files: 7,
            max_total_size: ByteSize::gib(1),
        }
    }
}

/// The smallest rotation size: below it a file holds a handful of lines.
pub const MIN_ROTATION_SIZE: ByteSize = ByteSize::kib(4);

impl LogConfig {
    /// Range checks; the file keys refused without `log.file` (they would
    /// be ignored: stdout is never rotated).
    pub(super) fn check(&self, e: &mut Vec<ConfigError>) {
        let d = LogConfig::default();
        if self.file.is_none() {
            let set = [
                ("rotation", self.rotation != d.rotation),
                ("max_files", self.max_files != d.max_files),
                ("max_total_size", self.max_total_size != d.max_total_size),
            ];
            for (key, _) in set.iter().filter(|(_, set)| *set) {
                e.push(ConfigError::new(
                    format!("log.{key}"),
                    "only applies with log.file (stdout is never rotated)",
                ));
            }
            return;
        }
        if self.file.as_ref().is_some_and(|f| f.file_name().is_none()) {
            e.push(ConfigError::new("log.file", "must name a file"));
        }
        if let Rotation::Size(size) = self.rotation {
            if size < MIN_ROTATION_SIZE {
                e.push(ConfigError::new("log.rotation", "must be at least 4KiB"));
            }
        }
        if self.max_files == 0 {
            e.push(ConfigError::new("log.max_files", "must be at least 1"));
        }
        if self.max_total_size.as_u64() == 0 {
            e.push(ConfigError::new(
                "log.max_total_size",
                "must be more than 0",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_parses_periods_and_sizes() {
        assert_eq!(Rotation::parse("daily"), Ok(Rotation::Daily));
        assert_eq!(Rotation::parse("hourly"), Ok(Rotation::Hourly));
        assert_eq!(Rotation::parse("never"), Ok(Rotation::Never));
        assert_eq!(
            Rotation::parse("100MiB"),
            Ok(Rotation::Size(ByteSize::mib(100)))
        );
        assert!(Rotation::parse("weekly").is_err());
        assert!(Rotation::parse("12 parsecs").is_err());
    }

    fn errors(toml_text: &str) -> Vec<String> {
        let cfg: crate::Config = toml::from_str(toml_text).expect("parses");
        cfg.validate()
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn file_keys_need_a_file_and_are_bounded() {
        let errs = errors("[log]\nrotation = \"hourly\"\nmax_files = 3\n");
        assert_eq!(
            errs,
            [
                "log.rotation: only applies with log.file (stdout is never rotated)",
                "log.max_files: only applies with log.file (stdout is never rotated)",
            ]
        );
        let errs = errors(
            "[log]\nfile = \"/tmp/x.log\"\nrotation = \"1KiB\"\nmax_files = 0\nmax_total_size = 0\n",
        );
        assert_eq!(
            errs,
            [
                "log.rotation: must be at least 4KiB",
                "log.max_files: must be at least 1",
                "log.max_total_size: must be more than 0",
            ]
        );
        assert!(errors("[log]\nformat = \"pretty\"\n").is_empty());
        assert!(errors(
            "[log]\nfile = \"/var/log/rhizome/node.log\"\nrotation = \"100MiB\"\nmax_files = 3\n"
        )
        .is_empty());
    }

    #[test]
    fn a_bad_rotation_names_what_is_accepted() {
        let e =
            toml::from_str::<crate::Config>("[log]\nfile = \"/x.log\"\nrotation = \"weekly\"\n")
                .expect_err("refused");
        assert!(
            e.to_string()
                .contains("\"weekly\" is not \"hourly\", \"daily\""),
            "{e}"
        );
    }
}
