//! Logging setup: tracing with JSON lines (the default, for containers and the
//! test harness) or human-readable output, filtered by `RUST_LOG` (default
//! `info`). Every line goes through one [`sink`]: batched, written to stdout
//! by its own thread. The access log (one JSON line per request, written by
//! `proxy::access` straight into that sink) is filtered by the same
//! `RUST_LOG`, under the target `rhizome::access`. Nothing logged anywhere
//! carries a secret: tokens are `SecretString`s and injected header values
//! are marked sensitive.

pub mod sink;

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

pub use sink::{LogSink, SinkGuard};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// The sink of JSON logging, once [`init`] ran with [`LogFormat::Json`].
static JSON_SINK: OnceLock<LogSink> = OnceLock::new();

/// The sink that takes JSON lines written by hand (the access log), when the
/// node logs JSON. `None` otherwise: then such lines go through tracing.
pub fn json_sink() -> Option<&'static LogSink> {
    JSON_SINK.get()
}

/// Installs the global subscriber writing through a new [`LogSink`] on
/// stdout. Dropping the returned guard writes what is still batched and stops
/// the writer thread, so drop it only after everything that logs is gone
/// (after the runtime, not inside it): a line logged later is lost.
pub fn init(format: LogFormat) -> std::io::Result<SinkGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (sink, guard) = LogSink::start(std::io::stdout())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
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
