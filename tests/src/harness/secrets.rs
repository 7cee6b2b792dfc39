//! The secrets the tests use, in one place, and the scan that proves none of
//! them reaches a log. Besides these literal values, any token the mock issues
//! (`mocktok-…`) and any JWT (`eyJ…` header) is a finding.

use std::path::Path;

/// Client key of the test client `ci`.
pub const CLIENT_KEY: &str = "ck-test-7f3a9d2e41b8";
/// Client key of a second test client `other`.
pub const OTHER_CLIENT_KEY: &str = "ck-other-5c6d7e8f9a0b";
/// OAuth client secret of `svc-a`.
pub const OAUTH_SECRET_A: &str = "cs-alpha-0d9e8f7a6b5c";
/// OAuth client secret of `svc-b`.
pub const OAUTH_SECRET_B: &str = "cs-bravo-1a2b3c4d5e6f";
/// OAuth client secret of the pool clients `svc-p1` … (ownership tests).
pub const OAUTH_SECRET_POOL: &str = "cs-pool-6e5d4c3b2a19";
/// HS256 signing secret.
pub const JWT_HS256_SECRET: &str = "hs-secret-9a8b7c6d5e4f3a2b";
/// A static upstream API key.
pub const STATIC_KEY: &str = "sk-static-3e4f5a6b7c8d";
/// The admin token.
pub const ADMIN_TOKEN: &str = "at-admin-2b3c4d5e6f7a";

/// Every literal secret above.
pub const ALL: [&str; 8] = [
    CLIENT_KEY,
    OTHER_CLIENT_KEY,
    OAUTH_SECRET_A,
    OAUTH_SECRET_B,
    OAUTH_SECRET_POOL,
    JWT_HS256_SECRET,
    STATIC_KEY,
    ADMIN_TOKEN,
];

/// Patterns of issued tokens: the mock's opaque tokens and JWT headers.
pub const TOKEN_PATTERNS: [&str; 2] = ["mocktok-", "eyJ"];

/// Scans every log in `dir` (`*.log`, and rotated log files `*.log.*`) and
/// returns `file: pattern` for each finding.
pub fn scan_dir(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") || name.contains(".log.") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for pat in ALL.iter().chain(TOKEN_PATTERNS.iter()) {
                if text.contains(pat) {
                    found.push(format!("{}: {pat}", path.display()));
                }
            }
        }
    }
    found
}
