//! The intent API's JSON envelope: whatever the bytes, the node's checks
//! never panic, and the OpenAPI document's `path` pattern agrees with them (a
//! path the document allows is never refused, one it forbids never sent),
//! so schema-valid requests are accepted and schema-invalid ones refused.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use regex::Regex;
use rhizome_node::proxy::intent::{check_envelope, PATH_PATTERN};

fn path_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(PATH_PATTERN).expect("PATH_PATTERN is a valid regex"))
}

fuzz_target!(|data: &[u8]| {
    let _ = check_envelope(data);
    // The same bytes as the path of an otherwise valid envelope.
    if let Ok(path) = std::str::from_utf8(data) {
        let envelope = serde_json_envelope(path);
        let accepted = check_envelope(envelope.as_bytes()).is_ok();
        assert_eq!(
            accepted,
            path_pattern().is_match(path),
            "the node and the OpenAPI pattern disagree about {path:?}"
        );
    }
});

/// `{"route":"r","path":<path>}` with `path` as a JSON string.
fn serde_json_envelope(path: &str) -> String {
    let mut quoted = String::from("\"");
    for c in path.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if (c as u32) < 0x20 => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    format!("{{\"route\":\"r\",\"path\":{quoted}}}")
}
