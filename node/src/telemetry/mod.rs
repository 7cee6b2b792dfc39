//! Logging setup: tracing with JSON lines (the default, for containers and the
//! test harness) or human-readable output, filtered by `RUST_LOG` (default
//! `info`). Every line goes through one [`sink`]: batched, written by its own
//! thread to stdout or, with `[log] file`, to a rotating [`file`]. The access log (one JSON line per request, written by
//! `proxy::access` straight into that sink) is filtered by the same
//! `RUST_LOG`, under the target `rhizome::access`. Nothing logged anywhere
//! carries a secret: tokens are `SecretString`s and injected header values
//! are marked sensitive.

pub mod file;
pub mod sink;

use std::io::IsTerminal;
use std::sync::OnceLock;

use rhizome_proto::config::{LogConfig, LogFormatSetting};
use tracing_subscriber::EnvFilter;

pub use file::{LogFile, OpenError};
pub use sink::{LogSink, SinkGuard};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

impl From<LogFormatSetting> for LogFormat {
    fn from(setting: LogFormatSetting) -> Self {
        match setting {
            LogFormatSetting::Json => LogFormat::Json,
            LogFormatSetting::Pretty => LogFormat::Pretty,
        }
    }
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// `log.file` cannot be opened.
    #[error(transparent)]
    File(#[from] OpenError),
    /// The writer thread could not be spawned.
    #[error("cannot start the log writer: {0}")]
    Thread(#[from] std::io::Error),
}

/// The sink of JSON logging, once [`init`] ran with [`LogFormat::Json`].
static JSON_SINK: OnceLock<LogSink> = OnceLock::new();

/// The sink that takes JSON lines written by hand (the access log), when the
/// node logs JSON. `None` otherwise: then such lines go through tracing.
pub fn json_sink() -> Option<&'static LogSink> {
    JSON_SINK.get()
}

/// Installs the global subscriber writing through a new [`LogSink`] on
/// stdout, or on `config.file` when set (`config.format` is the caller's:
/// `--log-format` overrides it). Dropping the returned guard writes what is
/// still batched and stops the writer thread, so drop it only after
/// everything that logs is gone (after the runtime, not inside it): a line
/// logged later is lost.
pub fn init(format: LogFormat, config: &LogConfig) -> Result<SinkGuard, InitError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (sink, guard, terminal) = match LogFile::open(config) {
        Some(file) => {
            let (sink, guard) = LogSink::start_output(file?)?;
            (sink, guard, false)
        }
        None => {
            let (sink, guard) = LogSink::start(std::io::stdout())?;
            (sink, guard, std::io::stdout().is_terminal())
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(sink.clone());
    match format {
        LogFormat::Json => {
            let _ = JSON_SINK.set(sink);
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .init();
        }
        LogFormat::Pretty => builder.init(),
    }
    Ok(guard)
}
