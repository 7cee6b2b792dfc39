//! The node's own handling of HTTP heads: the writer that replaces hyper's
//! bare 400/431 answer with Rhizome's JSON error, fed arbitrary writes. It
//! never panics, passes through every write it does not replace unchanged,
//! and a replacement is always a complete JSON error answer.
#![no_main]

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use rhizome_node::server::parse_errors::{Calls, Guarded};
use tokio::io::AsyncWrite;

fuzz_target!(|input: &[u8]| {
    let Some((&cuts, data)) = input.split_first() else {
        return;
    };
    let calls = Arc::new(Calls::default());
    let mut io = Guarded::new(Vec::new(), calls, 8192);
    let mut cx = Context::from_waker(Waker::noop());
    let size = usize::from(cuts) + 1;
    let mut before = 0;
    for chunk in data.chunks(size) {
        match Pin::new(&mut io).poll_write(&mut cx, chunk) {
            // A Vec takes every write whole, and so must the writer.
            Poll::Ready(Ok(n)) => assert_eq!(n, chunk.len()),
            other => panic!("a write into memory answered {other:?}"),
        }
        let out = io.get_ref();
        let new = &out[before..];
        if new != chunk {
            // Replaced: only hyper's bare 400/431 head, by a whole JSON answer.
            let status = chunk.get(9..12);
            assert!(
                chunk.starts_with(b"HTTP/1.") && matches!(status, Some(b"400" | b"431")),
                "replaced {chunk:?}"
            );
            let text = String::from_utf8_lossy(new);
            assert!(text.starts_with("HTTP/1.1 4"), "{text:?}");
            assert!(text.contains("\r\n\r\n{\"error\":"), "{text:?}");
        }
        before = out.len();
    }
});
