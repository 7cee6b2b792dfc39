//! Incremental parser for `text/event-stream` (WHATWG HTML §9.2.6): bytes arrive
//! in arbitrary chunks, lines end in CR, LF or CRLF (a CR at the end of a chunk
//! may be the first half of a CRLF), and an event is complete only at its blank
//! line. Each complete event keeps its raw bytes so the relay forwards exactly
//! what upstream sent; a truncated event is never dispatched. The size of the
//! event being assembled is bounded by `max_event_bytes`.

use bytes::{Bytes, BytesMut};

/// One complete event block (fields and comments up to its blank line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The block exactly as received, blank line included.
    pub raw: Bytes,
    /// Last `id` field, if any (ids containing NUL are ignored, per spec).
    pub id: Option<String>,
    /// Last `event` field, if any.
    pub event: Option<String>,
    /// `data` fields joined with `\n`; `None` when the block had no `data`.
    pub data: Option<String>,
    /// Last valid `retry` field.
    pub retry: Option<u64>,
}

/// Why a stream cannot be parsed further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event (or a single line) grew past the limit without completing.
    #[error("event exceeds {limit} bytes without completing")]
    EventTooLarge {
        /// The configured limit.
        limit: usize,
    },
}

/// Incremental parser state.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// Bytes of the block being assembled (complete lines and a partial one).
    buf: BytesMut,
    /// Where scanning for the next line terminator resumes.
    scan: usize,
    /// Start of the current (incomplete) line inside `buf`.
    line_start: usize,
    /// The previous chunk ended in CR: an LF starting this one belongs to it.
    skip_lf: bool,
    fields: Fields,
}

#[derive(Debug, Default)]
struct Fields {
    lines: usize,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
}

impl SseParser {
    /// A parser that rejects events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            max_event_bytes,
            buf: BytesMut::new(),
            scan: 0,
            line_start: 0,
            skip_lf: false,
            fields: Fields::default(),
        }
    }

    /// Feeds one chunk; complete events are appended to `out` in order.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                // Second half of a CRLF split across chunks: part of the raw block.
                self.buf.extend_from_slice(b"\n");
                chunk = &chunk[1..];
                self.scan = self.buf.len();
                self.line_start = self.buf.len();
            }
        }
        self.buf.extend_from_slice(chunk);
        while let Some(rel) = memchr::memchr2(b'\n', b'\r', &self.buf[self.scan..]) {
            let term = self.scan + rel;
            let mut next = term + 1;
            if self.buf[term] == b'\r' {
                if next < self.buf.len() {
                    if self.buf[next] == b'\n' {
                        next += 1;
                    }
                } else {
                    self.skip_lf = true;
                }
            }
            let line_start = self.line_start;
            self.scan = next;
            self.line_start = next;
            if term == line_start {
                self.dispatch(next, out);
            } else {
                let line = self.buf[line_start..term].to_vec();
                self.field(&line);
            }
        }
        // Everything left is an unterminated line: never scan it again.
        self.scan = self.buf.len();
        if self.buf.len() > self.max_event_bytes {
            return Err(SseError::EventTooLarge {
                limit: self.max_event_bytes,
            });
        }
        Ok(())
    }

    /// Bytes of an incomplete event left at end of stream (discarded, per spec).
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    fn dispatch(&mut self, end: usize, out: &mut Vec<SseEvent>) {
        let raw = self.buf.split_to(end).freeze();
        self.scan = 0;
        self.line_start = 0;
        let fields = std::mem::take(&mut self.fields);
        if fields.lines == 0 {
            return; // a stray blank line: nothing to dispatch
        }
        out.push(SseEvent {
            raw,
            id: fields.id,
            event: fields.event,
            data: fields.data,
            retry: fields.retry,
        });
    }

    fn field(&mut self, line: &[u8]) {
        self.fields.lines += 1;
        if line[0] == b':' {
            return; // comment
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"data" => match &mut self.fields.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(&value);
                }
                None => self.fields.data = Some(value.into_owned()),
            },
            b"id" if !value.contains('\0') => self.fields.id = Some(value.into_owned()),
            b"event" => self.fields.event = Some(value.into_owned()),
            b"retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.fields.retry = Some(ms);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out).expect("parse");
        }
        out
    }

    #[test]
    fn fields_comments_and_multiline_data() {
        let evs = parse_all(&[b": hello\nid: 7\nevent: tick\ndata: a\ndata:b\nretry: 300\n\n"]);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].id.as_deref(), Some("7"));
        assert_eq!(evs[0].event.as_deref(), Some("tick"));
        assert_eq!(evs[0].data.as_deref(), Some("a\nb"));
        assert_eq!(evs[0].retry, Some(300));
    }

    #[test]
    fn crlf_split_between_chunks_is_one_terminator() {
        let evs = parse_all(&[b"data: x\r", b"\n\r", b"\ndata: y\r\r"]);
        assert_eq!(evs.len(), 2);
        // Dispatched at the blank line's CR: waiting for a possible LF would delay it.
        assert_eq!(evs[0].raw, Bytes::from_static(b"data: x\r\n\r"));
        assert_eq!(evs[1].data.as_deref(), Some("y"));
    }

    #[test]
    fn truncated_event_is_not_dispatched() {
        let mut p = SseParser::new(1024);
        let mut out = Vec::new();
        p.push(b"data: complete\n\ndata: trunc", &mut out)
            .expect("parse");
        assert_eq!(out.len(), 1);
        assert_eq!(p.pending_bytes(), b"data: trunc".len());
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut p = SseParser::new(1024);
        let mut out = Vec::new();
        let big = vec![b'x'; 2048];
        assert_eq!(
            p.push(&big, &mut out),
            Err(SseError::EventTooLarge { limit: 1024 })
        );
    }

    #[test]
    fn nul_in_id_is_ignored_and_field_without_colon_is_empty() {
        let evs = parse_all(&[b"id: a\0b\ndata\n\n"]);
        assert_eq!(evs[0].id, None);
        assert_eq!(evs[0].data.as_deref(), Some(""));
    }

    fn arb_event() -> impl Strategy<Value = (Option<String>, Vec<String>)> {
        (
            proptest::option::of("[a-z0-9.]{1,8}"),
            proptest::collection::vec("[ -~&&[^:]]{0,12}", 1..4),
        )
    }

    proptest! {
        #[test]
        fn any_split_and_line_ending_gives_the_same_events(
            events in proptest::collection::vec(arb_event(), 1..6),
            eol in prop_oneof![Just("\n"), Just("\r"), Just("\r\n")],
            cuts in proptest::collection::vec(0usize..400, 0..12),
        ) {
            let mut text = String::new();
            for (id, data) in &events {
                if let Some(id) = id { text.push_str(&format!("id: {id}{eol}")); }
                for d in data { text.push_str(&format!("data: {d}{eol}")); }
                text.push_str(eol);
            }
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts { chunks.push(&bytes[last..c]); last = c; }
            chunks.push(&bytes[last..]);
            let mut parser = SseParser::new(1 << 20);
            let mut parsed = Vec::new();
            for c in &chunks {
                parser.push(c, &mut parsed).expect("parse");
            }
            prop_assert_eq!(parsed.len(), events.len());
            let mut raw = Vec::new();
            for (ev, (id, data)) in parsed.iter().zip(&events) {
                prop_assert_eq!(&ev.id, id);
                let joined = data.join("\n");
                prop_assert_eq!(ev.data.as_deref(), Some(joined.as_str()));
                raw.extend_from_slice(&ev.raw);
            }
            // Every byte is in some event, except a final LF completing a CRLF
            // whose CR already dispatched the last event.
            prop_assert!(bytes.starts_with(&raw));
            prop_assert_eq!(raw.len() + parser.pending_bytes(), bytes.len());
            prop_assert!(parser.pending_bytes() <= 1);
        }
    }
}
