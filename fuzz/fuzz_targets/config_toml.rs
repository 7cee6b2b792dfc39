//! Config loading on arbitrary text: TOML parsing, the figment extraction
//! into `Config` and `validate` never panic, whatever the document says.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rhizome_node::config::from_toml(text);
    }
});
