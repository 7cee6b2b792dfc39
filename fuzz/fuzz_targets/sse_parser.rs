//! The SSE parser on arbitrary bytes cut into arbitrary chunks: it never
//! panics, the events it dispatches are exactly what a one-chunk parse of the
//! same bytes dispatches (chunking never changes an event's fields), their raw bytes
//! are pieces of the input in order, and the size limit holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rhizome_node::sse::parser::{SseEvent, SseParser};

const LIMIT: usize = 4096;

/// Events of `data` fed in chunks whose sizes come from `cuts`, and whether
/// the parser gave up (size limit).
fn parse(data: &[u8], cuts: &[u8]) -> (Vec<SseEvent>, bool) {
    let mut parser = SseParser::new(LIMIT);
    let mut out = Vec::new();
    let mut rest = data;
    let mut sizes = cuts.iter().map(|c| usize::from(*c) + 1).cycle();
    while !rest.is_empty() {
        let n = if cuts.is_empty() {
            rest.len()
        } else {
            sizes.next().unwrap_or(1).min(rest.len())
        };
        let (chunk, tail) = rest.split_at(n);
        if parser.push(chunk, &mut out).is_err() {
            return (out, true);
        }
        assert!(parser.pending_bytes() <= LIMIT);
        rest = tail;
    }
    (out, false)
}

fuzz_target!(|input: &[u8]| {
    let (cuts, data) = match input.split_first() {
        Some((n, rest)) => rest.split_at(usize::from(*n).min(rest.len()) / 4),
        None => return,
    };
    let (whole, whole_failed) = parse(data, &[]);
    let (chunked, chunked_failed) = parse(data, cuts);
    if !whole_failed && !chunked_failed {
        // A CRLF split across chunks leaves its LF to the next block's raw
        // bytes (by design: the bytes forwarded are the same); the events'
        // fields never depend on chunking.
        let fields = |evs: &[SseEvent]| -> Vec<_> {
            evs.iter()
                .map(|e| (e.id.clone(), e.event.clone(), e.data.clone(), e.retry))
                .collect()
        };
        assert_eq!(
            fields(&whole),
            fields(&chunked),
            "chunking changed the events"
        );
    }
    // Raw bytes are pieces of the input, in order (blank lines that end no
    // event dispatch nothing and are not forwarded).
    let mut offset = 0;
    for ev in &chunked {
        let at = data[offset..]
            .windows(ev.raw.len())
            .position(|w| w == &ev.raw[..])
            .expect("an event's raw bytes are in the input after the previous one");
        offset += at + ev.raw.len();
    }
});
