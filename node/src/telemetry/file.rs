//! Log files (`[log] file`): the [`Output`] the log writer thread uses
//! instead of stdout. It owns the active file (`node.log`), its rotation and
//! the retention of rotated files, all on the writer thread, so a request
//! never waits for a rename, an unlink or a full disk.
//!
//! - **Size rotation** splits each batch at line boundaries: before a line
//!   that would take a non-empty file past the limit, the file is rotated.
//!   Every file stays within the limit, except a single line longer than the
//!   limit, alone in its file. **Time rotation** (`hourly`, `daily`, at UTC
//!   boundaries) is checked on each wake of the writer thread.
//! - **Rotating** renames `node.log` to `node.log.<UTC time of the rotation>`
//!   (`node.log.2026-12-03T15-04-05.123Z`, `-1`, `-2`… when taken) and opens a
//!   fresh `node.log`. When the rename or the open fails, lines keep going to
//!   the current file (nothing is lost), the failure is reported once on
//!   stderr and in the log, and rotation is retried a second later.
//! - **Retention** keeps at most `max_files` files, the active one included,
//!   and deletes the oldest rotated files while all of them together exceed
//!   `max_total_size`. The active file is never deleted, and only files named
//!   like this node's rotated files in that directory are touched.
//! - **Accounting**: the writer knows how many lines it wrote into each file,
//!   so deleting one adds its lines to `rhizome_log_lines_removed_total` (and
//!   1 to `rhizome_log_files_removed_total`). Lines in the files plus lines
//!   removed is every line this process logged.
//!
//! No crate was a fit: `tracing-appender` rotates by time only, and
//! `file-rotate` has no total-size retention, no line accounting, and cuts a
//! write that crosses the size limit instead of keeping lines whole.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rhizome_proto::config::{LogConfig, Rotation};

use super::sink::Output;

/// How long after a failed rotation the next attempt waits.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The log file could not be opened at start.
#[derive(Debug, thiserror::Error)]
#[error("log.file: cannot open {}: {source}", path.display())]
pub struct OpenError {
    path: PathBuf,
    source: io::Error,
}

/// The active log file, its rotation and retention.
#[derive(Debug)]
pub struct LogFile {
    dir: PathBuf,
    base: OsString,
    path: PathBuf,
    rotation: Rotation,
    max_files: usize,
    max_total: u64,
    file: File,
    /// Bytes in the active file.
    size: u64,
    /// Lines this process wrote into the active file.
    lines: u64,
    /// UTC hour or day the active file's lines belong to (time rotation).
    period: Option<u64>,
    /// Rotated file name → lines this process wrote into it.
    written: HashMap<OsString, u64>,
    /// After a failed rotation: no new attempt before this.
    retry_at: Option<SystemTime>,
    /// A write failure is reported once until a write works again.
    write_failing: bool,
    /// A rotation or retention failure is reported once until a rotation
    /// works again.
    rotate_failing: bool,
    /// Files and lines retention removed so far (also in the metrics).
    removed: (u64, u64),
}

impl LogFile {
    /// Opens (appends to) `config.file` and applies retention to what is
    /// already there. `None` when the config names no file.
    pub fn open(config: &LogConfig) -> Option<Result<LogFile, OpenError>> {
        let path = config.file.clone()?;
        Some(LogFile::open_at(config, path, SystemTime::now()))
    }

    fn open_at(config: &LogConfig, path: PathBuf, now: SystemTime) -> Result<LogFile, OpenError> {
        let fail = |source| OpenError {
            path: path.clone(),
            source,
        };
        let base = path
            .file_name()
            .ok_or_else(|| fail(io::Error::other("not a file name")))?
            .to_os_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file = open_append(&path).map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        let since = meta.modified().ok().filter(|_| meta.len() > 0);
        let mut log = LogFile {
            dir,
            base,
            path: path.clone(),
            rotation: config.rotation,
            max_files: usize::try_from(config.max_files)
                .unwrap_or(usize::MAX)
                .max(1),
            max_total: config.max_total_size.as_u64(),
            file,
            size: meta.len(),
            lines: 0,
            period: None,
            written: HashMap::new(),
            retry_at: None,
            write_failing: false,
            rotate_failing: false,
            removed: (0, 0),
        };
        log.period = period(log.rotation, since.unwrap_or(now));
        log.retain();
        Ok(log)
    }

    /// Writes whole lines, rotating by size between them; the lines that
    /// could not be written.
    pub fn write_at(&mut self, batch: &[u8], now: SystemTime) -> u64 {
        let Rotation::Size(limit) = self.rotation else {
            return self.append(batch);
        };
        let limit = limit.as_u64();
        let mut lost = 0;
        let (mut from, mut to) = (0, 0);
        for line in batch.split_inclusive(|&b| b == b'\n') {
            let size = self.size + (to - from) as u64;
            if size > 0 && size + line.len() as u64 > limit {
                lost += self.append(&batch[from..to]);
                from = to;
                self.rotate(now);
            }
            to += line.len();
        }
        lost + self.append(&batch[from..to])
    }

    /// Time rotation: at a new UTC hour or day, a non-empty file is rotated.
    pub fn tick_at(&mut self, now: SystemTime) {
        let Some(current) = period(self.rotation, now) else {
            return;
        };
        if self.period == Some(current) {
            return;
        }
        if self.size == 0 || self.rotate(now) {
            self.period = Some(current);
        }
    }

    /// Appends `bytes` (whole lines) to the active file; the lines lost.
    fn append(&mut self, bytes: &[u8]) -> u64 {
        if bytes.is_empty() {
            return 0;
        }
        let lines = memchr::memchr_iter(b'\n', bytes).count() as u64;
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                self.lines += lines;
                self.write_failing = false;
                0
            }
            Err(e) => {
                let what = format!("cannot write {}; lines dropped", self.path.display());
                report(&mut self.write_failing, &what, &e);
                lines
            }
        }
    }

    /// Sets the active file aside and opens a fresh one; false (and the
    /// current file kept) when that fails or a recent attempt failed.
    fn rotate(&mut self, now: SystemTime) -> bool {
        if self.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        let name = self.free_name(now);
        let target = self.dir.join(&name);
        if let Err(e) = fs::rename(&self.path, &target) {
            self.rotation_failed(now, &format!("cannot rename {}", self.path.display()), &e);
            return false;
        }
        let fresh = match open_append(&self.path) {
            Ok(f) => f,
            Err(e) => {
                // Put the file back: its handle stays the active file.
                let _ = fs::rename(&target, &self.path);
                self.rotation_failed(now, &format!("cannot open {}", self.path.display()), &e);
                return false;
            }
        };
        self.file = fresh;
        self.written.insert(name, self.lines);
        self.size = 0;
        self.lines = 0;
        self.period = period(self.rotation, now);
        self.retry_at = None;
        self.rotate_failing = false;
        self.retain();
        true
    }

    fn rotation_failed(&mut self, now: SystemTime, what: &str, e: &io::Error) {
        self.retry_at = Some(now + RETRY_AFTER);
        let what = format!("log rotation failed, still writing to the current file: {what}");
        report(&mut self.rotate_failing, &what, e);
    }

    /// `node.log.<time>`, or with `-1`, `-2`… when taken.
    fn free_name(&self, now: SystemTime) -> OsString {
        let first = rotated_name(&self.base, now, 0);
        if !self.dir.join(&first).exists() {
            return first;
        }
        (1..1000)
            .map(|n| rotated_name(&self.base, now, n))
            .find(|name| !self.dir.join(name).exists())
            .unwrap_or(first)
    }

    /// Deletes the oldest rotated files beyond `max_files` or `max_total_size`.
    fn retain(&mut self) {
        let mut rotated = match self.rotated_files() {
            Ok(files) => files,
            Err(e) => {
                let what = format!("cannot list {}", self.dir.display());
                report(&mut self.rotate_failing, &what, &e);
                return;
            }
        };
        rotated.sort();
        let keep = self.max_files - 1;
        let mut total = self.size + rotated.iter().map(|r| r.size).sum::<u64>();
        let (mut files, mut lines) = (0, 0);
        for (i, old) in rotated.iter().enumerate() {
            if rotated.len() - i <= keep && total <= self.max_total {
                break;
            }
            match fs::remove_file(self.dir.join(&old.name)) {
                Ok(()) => {
                    total -= old.size;
                    files += 1;
                    lines += self.written.remove(&old.name).unwrap_or(0);
                }
                Err(e) => {
                    let what = format!("cannot delete {}", old.name.to_string_lossy());
                    report(&mut self.rotate_failing, &what, &e);
                }
            }
        }
        self.removed.0 += files;
        self.removed.1 += lines;
        crate::metrics::log_files_removed(files, lines);
    }

    /// Files retention deleted, and the lines this process had written
    /// into them.
    pub fn removed(&self) -> (u64, u64) {
        self.removed
    }

    /// This log's rotated files in its directory.
    fn rotated_files(&self) -> io::Result<Vec<Rotated>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(key) = rotated_key(&self.base, &name) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_file() {
                out.push(Rotated {
                    key,
                    name,
                    size: meta.len(),
                });
            }
        }
        Ok(out)
    }
}

impl Output for LogFile {
    fn write_batch(&mut self, batch: &[u8]) -> u64 {
        self.write_at(batch, SystemTime::now())
    }

    fn tick(&mut self) {
        self.tick_at(SystemTime::now());
    }
}

/// A rotated file; ordered oldest first.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rotated {
    key: (String, u32),
    name: OsString,
    size: u64,
}

/// Reports a failure once per streak (`failing` says one is on): on stderr,
/// since the log itself may be what fails, and in the log.
fn report(failing: &mut bool, what: &str, e: &io::Error) {
    if std::mem::replace(failing, true) {
        return;
    }
    eprintln!("rhizome-node: {what}: {e}");
    tracing::warn!(error = %e, "{what}");
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The UTC hour or day `t` falls in, for time rotation.
fn period(rotation: Rotation, t: SystemTime) -> Option<u64> {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    match rotation {
        Rotation::Hourly => Some(secs / 3600),
        Rotation::Daily => Some(secs / 86_400),
        Rotation::Never | Rotation::Size(_) => None,
    }
}

/// `node.log.2026-12-03T15-04-05.123Z`, plus `-n` when `n > 0`.
fn rotated_name(base: &OsStr, t: SystemTime, n: u32) -> OsString {
    let stamp = humantime::format_rfc3339_millis(t)
        .to_string()
        .replace(':', "-");
    let mut name = base.to_os_string();
    name.push(".");
    name.push(stamp);
    if n > 0 {
        name.push(format!("-{n}"));
    }
    name
}

/// The sort key of a rotated file of `base` (its time, then its `-n`), or
/// `None` for any other file.
fn rotated_key(base: &OsStr, name: &OsStr) -> Option<(String, u32)> {
    let rest = name
        .to_str()?
        .strip_prefix(base.to_str()?)?
        .strip_prefix('.')?;
    const SHAPE: &[u8] = b"0000-00-00T00-00-00.000Z";
    let (stamp, suffix) = rest.split_at_checked(SHAPE.len())?;
    let fits = stamp.bytes().zip(SHAPE).all(|(b, &s)| {
        if s == b'0' {
            b.is_ascii_digit()
        } else {
            b == s
        }
    });
    if !fits {
        return None;
    }
    let n = match suffix.strip_prefix('-') {
        None if suffix.is_empty() => 0,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().ok()?
        }
        _ => return None,
    };
    Some((stamp.to_string(), n))
}

#[cfg(test)]
mod tests {
    use bytesize::ByteSize;

    use super::*;

    /// A fresh directory under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("rz-log-{test}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn config(dir: &TempDir, rotation: Rotation, max_files: u32, max_total: ByteSize) -> LogConfig {
        LogConfig {
            file: Some(dir.0.join("node.log")),
            rotation,
            max_files,
            max_total_size: max_total,
            ..LogConfig::default()
        }
    }

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).expect("time")
    }

    fn line(n: usize, len: usize) -> Vec<u8> {
        let mut l = format!("{n:06} ").into_bytes();
        l.resize(len - 1, b'x');
        l.push(b'\n');
        l
    }

    #[test]
    fn size_rotation_keeps_lines_whole_and_every_line_accounted_for() {
        let dir = TempDir::new("size");
        let cfg = config(&dir, Rotation::Size(ByteSize::b(1000)), 3, ByteSize::gib(1));
        let now = at("2026-12-03T15:04:05.123Z");
        let mut log = LogFile::open_at(&cfg, cfg.file.clone().expect("file"), now).expect("open");
        let mut written = 0;
        for round in 0..20 {
            // Batches of several lines, one of them longer than the limit.
            let mut batch = Vec::new();
            for i in 0..5 {
                batch.extend(line(
                    written + i,
                    if round == 7 && i == 2 { 1500 } else { 90 },
                ));
            }
            written += 5;
            let t = now + Duration::from_millis(round);
            assert_eq!(log.write_at(&batch, t), 0);
        }
        let names = dir.names();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"node.log".to_string()));
        let mut in_files = 0;
        for name in &names {
            let text = fs::read_to_string(dir.0.join(name)).expect("read");
            let lines = text.lines().count();
            assert!(text.ends_with('\n'), "{name} ends inside a line");
            assert!(
                text.len() <= 1000 || lines == 1,
                "{name}: {} bytes",
                text.len()
            );
            in_files += lines as u64;
        }
        let (files, lines) = log.removed();
        assert!(files > 0);
        assert_eq!(in_files + lines, written as u64);
        // Rotated names are the UTC time of the rotation, `-n` when taken.
        assert!(names
            .iter()
            .any(|n| n.starts_with("node.log.2026-12-03T15-04-05.1")));
    }

    #[test]
    fn time_rotation_happens_at_utc_boundaries_and_skips_empty_files() {
        let dir = TempDir::new("hourly");
        let cfg = config(&dir, Rotation::Hourly, 10, ByteSize::gib(1));
        let start = at("2026-12-03T15:59:59.500Z");
        let mut log = LogFile::open_at(&cfg, cfg.file.clone().expect("file"), start).expect("open");
        log.write_at(b"one\n", start);
        log.tick_at(at("2026-12-03T15:59:59.999Z"));
        assert_eq!(dir.names(), ["node.log"]);
        log.tick_at(at("2026-12-03T16:00:00.000Z"));
        assert_eq!(
            dir.names(),
            ["node.log", "node.log.2026-12-03T16-00-00.000Z"]
        );
        log.write_at(b"two\n", at("2026-12-03T16:00:00.001Z"));
        log.tick_at(at("2026-12-03T16:59:59.999Z"));
        assert_eq!(dir.names().len(), 2);
        // The next hour: rotated again; the hour after, nothing to rotate.
        log.tick_at(at("2026-12-03T17:00:00.010Z"));
        log.tick_at(at("2026-12-03T18:00:00.010Z"));
        assert_eq!(
            dir.names(),
            [
                "node.log",
                "node.log.2026-12-03T16-00-00.000Z",
                "node.log.2026-12-03T17-00-00.010Z"
            ]
        );
        let text = fs::read_to_string(dir.0.join("node.log.2026-12-03T17-00-00.010Z"));
        assert_eq!(text.expect("read"), "two\n");
        assert_eq!(
            period(Rotation::Daily, at("2026-12-03T23:59:59.999Z")),
            Some(20_790)
        );
        assert_eq!(
            period(Rotation::Daily, at("2026-12-04T00:00:00Z")),
            Some(20_791)
        );
    }

    #[test]
    fn retention_by_total_size_removes_the_oldest_rotated_files_only() {
        let dir = TempDir::new("total");
        let old = [
            "node.log.2026-12-01T00-00-00.000Z",
            "node.log.2026-12-02T00-00-00.000Z",
            "node.log.2026-12-02T00-00-00.000Z-1",
            "node.log.2026-12-03T00-00-00.000Z",
        ];
        for name in old {
            fs::write(dir.0.join(name), vec![b'x'; 400]).expect("write");
        }
        // Not this log's: never touched.
        let foreign = [
            "other.log.2026-12-01T00-00-00.000Z",
            "node.log.bak",
            "node.log.2026-12-01",
        ];
        for name in foreign {
            fs::write(dir.0.join(name), vec![b'y'; 4000]).expect("write");
        }
        fs::write(dir.0.join("node.log"), vec![b'z'; 300]).expect("write");
        // 300 active + 4 × 400 = 1900 bytes; at most 1000: the three oldest go.
        let cfg = config(&dir, Rotation::Daily, 10, ByteSize::b(1000));
        let log = LogFile::open_at(
            &cfg,
            cfg.file.clone().expect("file"),
            at("2026-12-03T12:00:00Z"),
        )
        .expect("open");
        assert_eq!(log.removed(), (3, 0));
        let mut want: Vec<&str> = foreign.to_vec();
        want.extend(["node.log", "node.log.2026-12-03T00-00-00.000Z"]);
        want.sort();
        assert_eq!(dir.names(), want);
        // The active file alone over the limit: never deleted.
        let cfg = config(&dir, Rotation::Daily, 1, ByteSize::b(10));
        let log = LogFile::open_at(
            &cfg,
            cfg.file.clone().expect("file"),
            at("2026-12-03T12:00:00Z"),
        )
        .expect("open");
        assert_eq!(log.removed(), (1, 0));
        assert!(dir.names().contains(&"node.log".to_string()));
    }

    #[test]
    fn a_failing_rotation_keeps_writing_to_the_current_file() {
        let dir = TempDir::new("failing");
        let cfg = config(&dir, Rotation::Size(ByteSize::b(100)), 3, ByteSize::gib(1));
        let now = at("2026-12-03T15:04:05.123Z");
        let mut log = LogFile::open_at(&cfg, cfg.file.clone().expect("file"), now).expect("open");
        // The directory disappears: renaming the file fails, the open
        // handle still takes every line.
        fs::remove_dir_all(&dir.0).expect("remove dir");
        for i in 0..10 {
            assert_eq!(log.write_at(&line(i, 50), now), 0, "no line lost");
        }
        assert_eq!((log.size, log.lines), (500, 10));
        assert!(log.retry_at.is_some(), "retried later, not on every line");
        // Back again: the next attempt after the pause rotates.
        fs::create_dir_all(&dir.0).expect("dir");
        fs::write(dir.0.join("node.log"), b"").expect("file");
        log.write_at(&line(10, 50), now + RETRY_AFTER);
        assert_eq!(log.lines, 1);
        assert_eq!(dir.names().len(), 2, "{:?}", dir.names());
    }

    #[test]
    fn rotated_names_are_recognised_exactly() {
        let base = OsStr::new("node.log");
        let name = rotated_name(base, at("2026-12-03T15:04:05.123Z"), 0);
        assert_eq!(name, "node.log.2026-12-03T15-04-05.123Z");
        assert_eq!(
            rotated_key(base, &name),
            Some(("2026-12-03T15-04-05.123Z".into(), 0))
        );
        let second = rotated_name(base, at("2026-12-03T15:04:05.123Z"), 2);
        assert_eq!(rotated_key(base, &second).map(|k| k.1), Some(2));
        for other in [
            "node.log",
            "node.log.2026-12-03T15-04-05.123Z.gz",
            "node.log.2026-12-03T15-04-05.123Z-",
            "node.logx2026-12-03T15-04-05.123Z",
            "xnode.log.2026-12-03T15-04-05.123Z",
        ] {
            assert_eq!(rotated_key(base, OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn an_unopenable_file_names_the_setting() {
        let dir = TempDir::new("open");
        let cfg = LogConfig {
            file: Some(dir.0.join("missing-dir").join("node.log")),
            ..LogConfig::default()
        };
        let e = LogFile::open(&cfg).expect("a file").expect_err("refused");
        assert!(e.to_string().starts_with("log.file: cannot open "), "{e}");
    }
}
