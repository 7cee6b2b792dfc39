//! Logging setup, as the node does it: tracing with JSON lines (the default,
//! for containers and the test harness) or human-readable output, filtered
//! by `RUST_LOG` (default `info`; openraft's own chatter is kept at `warn`).

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// Lines buffered for the writer thread; when full, logging waits.
const LOG_BUFFER_LINES: usize = 16_384;

/// Installs the global subscriber writing to stdout from a dedicated
/// thread. Drop the guard only after the runtime: it flushes and stops that
/// thread, and a line logged later is lost.
pub fn init(format: LogFormat) -> WorkerGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .finish(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Pretty => builder.init(),
    }
    guard
}
