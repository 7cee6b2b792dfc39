//! Proxy session ids as clients send them back in `Mcp-Session-Id`: the
//! shape check never panics, accepts exactly `rzs-` and 32 lowercase hex
//! digits, and accepts every id the node issues.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rhizome_node::session::{is_proxy_id, new_proxy_id};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let shaped = text.len() == 36
            && text.starts_with("rzs-")
            && text[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        assert_eq!(is_proxy_id(text), shaped, "{text:?}");
    }
    assert!(is_proxy_id(&new_proxy_id()));
});
