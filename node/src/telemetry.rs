//! Logging setup: tracing with JSON lines (the default, for containers and the
//! test harness) or human-readable output, filtered by `RUST_LOG` (default
//! `info`). Nothing logged anywhere carries a secret: tokens are
//! `SecretString`s and injected header values are marked sensitive.

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

/// Lines buffered between request threads and the writer thread; when the
/// buffer is full, logging waits (back-pressure) rather than dropping lines.
const LOG_BUFFER_LINES: usize = 16_384;

/// Installs the global subscriber. Lines are written to stdout by a
/// dedicated thread so a slow log consumer does not sit on the request path.
/// Dropping the returned guard flushes and stops that thread, so drop it only
/// after everything that logs is gone (after the runtime, not inside it):
/// a line logged later is lost and `tracing-subscriber` complains on stderr.
pub fn init(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
