//! The log sink: every log line (tracing's and the access log's) is appended
//! to one shared batch on the thread that produced it, and a writer thread
//! hands whole batches to the [`Output`] — stdout, or a rotating log file
//! (`super::file`) — every [`FLUSH_EVERY`], or sooner once a batch reaches
//! [`FLUSH_AT`]. A request pays for a short lock and a copy, never for a
//! write, a rotation or a wake-up per line.
//!
//! The batch is bounded ([`BATCH_LIMIT`]). When the output cannot keep up (a
//! stalled pipe or log collector, a slow disk) lines that do not fit are
//! **dropped and counted**, never waited for: a proxy that stops serving
//! because its log reader is slow turns a logging problem into an outage,
//! and a blocked Tokio worker stalls every connection it serves, not only
//! the one logging. Once the writer catches up it logs how many lines were
//! lost and adds them to `rhizome_log_lines_dropped_total`.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use parking_lot::Mutex;
use tracing_subscriber::fmt::MakeWriter;

/// Longest a line waits in the batch.
pub const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// A batch this large wakes the writer at once.
pub const FLUSH_AT: usize = 64 * 1024;
/// Bytes waiting at most; lines beyond are dropped (see the module docs).
pub const BATCH_LIMIT: usize = 4 * 1024 * 1024;
/// A batch buffer that grew past this is not kept for reuse.
const KEEP_CAPACITY: usize = 256 * 1024;

#[derive(Debug)]
struct Shared {
    batch: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    stop: AtomicBool,
    writer: Thread,
}

/// Where log lines go: cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after writing every line handed
/// over until then.
#[derive(Debug)]
pub struct SinkGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogSink {
    /// Starts the writer thread over `out` (stdout, or a test's buffer).
    pub fn start<W: Write + Send + 'static>(out: W) -> io::Result<(LogSink, SinkGuard)> {
        LogSink::start_output(Plain(out))
    }

    /// Starts the writer thread over any [`Output`] (a rotating log file).
    pub fn start_output<O: Output>(out: O) -> io::Result<(LogSink, SinkGuard)> {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Shared>>();
        let thread = thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                if let Ok(shared) = rx.recv() {
                    write_loop(&shared, out);
                }
            })?;
        let shared = Arc::new(Shared {
            batch: Mutex::new(Vec::with_capacity(FLUSH_AT)),
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            writer: thread.thread().clone(),
        });
        // The writer only waits for its `Shared`: sending cannot fail while it runs.
        let _ = tx.send(shared.clone());
        let guard = SinkGuard {
            shared: shared.clone(),
            thread: Some(thread),
        };
        Ok((LogSink { shared }, guard))
    }

    /// Appends whole lines (each ending in `\n`); drops them when the batch
    /// is full.
    pub fn push(&self, lines: &[u8]) {
        let mut batch = self.shared.batch.lock();
        if batch.len() + lines.len() > BATCH_LIMIT {
            drop(batch);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = batch.len();
        batch.extend_from_slice(lines);
        let wake = before < FLUSH_AT && batch.len() >= FLUSH_AT;
        drop(batch);
        if wake {
            self.shared.writer.unpark();
        }
    }
}

/// Where the writer thread puts the lines: stdout ([`Plain`]) or a rotating
/// file (`super::file::LogFile`). Runs on the writer thread only.
pub trait Output: Send + 'static {
    /// Writes a batch of whole lines; returns how many lines could not be
    /// written (they count as dropped).
    fn write_batch(&mut self, batch: &[u8]) -> u64;

    /// Called on every wake of the writer thread, with or without lines
    /// (time-based rotation happens here).
    fn tick(&mut self) {}
}

/// Any `Write`, as is: stdout.
#[derive(Debug)]
pub struct Plain<W>(pub W);

impl<W: Write + Send + 'static> Output for Plain<W> {
    fn write_batch(&mut self, batch: &[u8]) -> u64 {
        // Nowhere to report a failing stdout: the lines are lost.
        let _ = self.0.write_all(batch).and_then(|()| self.0.flush());
        0
    }
}

/// The writer thread: swaps the batch out and writes it, until stopped.
fn write_loop<O: Output>(shared: &Shared, mut out: O) {
    let mut spare = Vec::with_capacity(FLUSH_AT);
    loop {
        let stopping = shared.stop.load(Ordering::Acquire);
        if !stopping {
            thread::park_timeout(FLUSH_EVERY);
        }
        out.tick();
        std::mem::swap(&mut *shared.batch.lock(), &mut spare);
        if !spare.is_empty() {
            // The output reports its own failures; they are counted here.
            let lost = out.write_batch(&spare);
            if lost > 0 {
                crate::metrics::log_lines_dropped(lost);
            }
            spare.clear();
            if spare.capacity() > KEEP_CAPACITY {
                spare = Vec::with_capacity(FLUSH_AT);
            }
        }
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            crate::metrics::log_lines_dropped(dropped);
            tracing::warn!(
                lines = dropped,
                "log output fell behind; lines were dropped"
            );
        }
        if stopping && shared.batch.lock().is_empty() {
            return;
        }
    }
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// One `write` per line, as tracing-subscriber's formatter does.
#[derive(Debug)]
pub struct SinkWriter<'a>(&'a LogSink);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = SinkWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SinkWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes the test can read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_by_the_time_the_guard_drops() {
        let out = Captured::default();
        let (sink, guard) = LogSink::start(out.clone()).expect("start");
        for i in 0..1000 {
            sink.push(format!("line {i}\n").as_bytes());
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().clone()).expect("utf8");
        assert_eq!(text.lines().count(), 1000);
        assert!(text.ends_with("line 999\n"));
    }

    #[test]
    fn lines_come_out_within_the_flush_interval() {
        let out = Captured::default();
        let (sink, _guard) = LogSink::start(out.clone()).expect("start");
        sink.push(b"one\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while out.0.lock().is_empty() {
            assert!(std::time::Instant::now() < deadline, "line not written");
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&out.0.lock()[..], b"one\n");
    }

    #[test]
    fn a_full_batch_drops_and_counts_instead_of_blocking() {
        /// A stdout that blocks until released.
        struct Stuck(Arc<Mutex<()>>);
        impl Write for Stuck {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let _held = self.0.lock();
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock();
        let (sink, guard) = LogSink::start(Stuck(gate.clone())).expect("start");
        let line = vec![b'x'; 1023]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<_>>();
        for _ in 0..(2 * BATCH_LIMIT / line.len()) {
            sink.push(&line);
        }
        assert!(sink.shared.dropped.load(Ordering::Relaxed) > 0);
        drop(held);
        drop(guard);
    }
}
