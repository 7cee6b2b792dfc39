//! The secrets the tests use, in one place, and the scan that proves none of
//! them reaches a log. Besides these literal values, any token the mock issues
//! (`mocktok-…`) and any JWT (a word starting `eyJ`, a JSON header in
//! base64url, followed by `.`) is a finding. A random id that merely
//! contains `eyJ` inside a word is not one.

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

/// Patterns of issued tokens: the mock's opaque tokens and JWT headers
/// (the latter found by [`contains_jwt`], not as a plain substring).
pub const TOKEN_PATTERNS: [&str; 2] = ["mocktok-", "eyJ"];

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// True when `text` holds a JWT: `eyJ` at the start of a word, a run of
/// base64url characters, then `.` (header and payload separator).
pub fn contains_jwt(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices("eyJ").any(|(at, _)| {
        let starts_word = at == 0 || !is_b64url(bytes[at - 1]);
        let rest = &bytes[at..];
        let run = rest.iter().take_while(|b| is_b64url(**b)).count();
        starts_word && rest.get(run) == Some(&b'.')
    })
}

/// True when `text` contains the secret or token pattern `pat`.
fn contains(text: &str, pat: &str) -> bool {
    if pat == "eyJ" {
        contains_jwt(text)
    } else {
        text.contains(pat)
    }
}

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
                if contains(&text, pat) {
                    found.push(format!("{}: {pat}", path.display()));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::contains_jwt;

    #[test]
    fn a_jwt_is_found_and_a_random_id_containing_eyj_is_not() {
        assert!(contains_jwt(r#"{"token":"eyJhbGciOi.eyJzdWIi.sig"}"#));
        assert!(contains_jwt("Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"));
        assert!(!contains_jwt(r#"{"stream":"PwFwhNeyJ4h7Qx9"}"#));
        assert!(!contains_jwt("id=eyJ4h7Qx9 next"));
    }
}
