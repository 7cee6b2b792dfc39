//! Histogram samples recorded while nobody scrapes `/metrics` must not pile
//! up in the recorder: its upkeep folds them into the fixed buckets. Checked
//! as the growth of this process's resident memory over 2 M recorded requests
//! (two histograms each), which would hold at least 32 MB of raw samples if
//! they were kept. A test binary of its own: the recorder is process-global.

use std::time::Duration;

use rhizome_node::metrics;

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Records `n` requests the way the proxy does (request and upstream durations).
fn record(n: u32) {
    for i in 0..n {
        let d = Duration::from_micros(u64::from(i % 5_000));
        metrics::request("r", "GET", 200, d);
        metrics::upstream_duration("r", d);
    }
}

#[tokio::test(start_paused = true)]
async fn unscraped_histograms_stay_bounded() {
    let _handle = metrics::install().expect("install the recorder");
    const BATCH: u32 = 50_000;
    // Warm up: the series exist and the allocator has what one batch needs.
    record(BATCH);
    tokio::time::sleep(metrics::UPKEEP_EVERY).await;
    let before = rss_kib();
    for _ in 0..40 {
        record(BATCH);
        // The paused clock jumps to the next timer: the upkeep tick.
        tokio::time::sleep(metrics::UPKEEP_EVERY).await;
    }
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "resident memory grew by {grown} KiB over 2 M unscraped requests"
    );
}
