//! Client-facing event ids: decoding arbitrary text never panics and accepts
//! only canonical ids (one that decodes re-encodes to the same text), and
//! every id the codec issues decodes to its position under the same key and
//! to nothing under another.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rhizome_node::sse::ids::{is_ours, EventPos, IdCodec, StreamId};

fuzz_target!(|data: &[u8]| {
    let codec = IdCodec::new(&[7; 32]);
    let other = IdCodec::new(&[8; 32]);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = is_ours(text);
        if let Ok(pos) = codec.decode(text) {
            assert_eq!(codec.encode(&pos), text, "a non-canonical id decoded");
        }
    }
    // A position built from the input: the codec's own id round-trips.
    if data.len() >= 16 {
        let stream = StreamId::new_random();
        let epoch = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
        let seq = u64::from_le_bytes(data[8..16].try_into().unwrap_or_default());
        let pos = EventPos { stream, epoch, seq };
        let id = codec.encode(&pos);
        assert!(is_ours(&id));
        assert_eq!(codec.decode(&id).ok(), Some(pos));
        assert!(
            other.decode(&id).is_err(),
            "an id verified under another key"
        );
    }
});
