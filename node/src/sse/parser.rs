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

    #[test]
    fn crlf_split_at_the_blank_line_is_one_terminator() {
        // Every way of cutting "…\r\n\r\n" between its CR and LF.
        let text = b"data: a\r\n\r\ndata: b\r\n\r\n";
        for cut in 1..text.len() {
            let (head, tail) = text.split_at(cut);
            let evs = parse_all(&[head, tail]);
            let data: Vec<_> = evs.iter().map(|e| e.data.as_deref()).collect();
            assert_eq!(data, [Some("a"), Some("b")], "cut at {cut}");
        }
        // The CR of the blank line dispatches at once; the LF in the next
        // chunk completes it and starts no line of its own.
        let mut p = SseParser::new(1024);
        let mut out = Vec::new();
        p.push(b"data: a\r\n\r", &mut out).expect("parse");
        assert_eq!(out.len(), 1);
        p.push(b"\n", &mut out).expect("parse");
        p.push(b"\r\n", &mut out).expect("parse"); // a stray blank line: no event
        p.push(b"data: b\r", &mut out).expect("parse");
        p.push(b"\n\r", &mut out).expect("parse");
        assert_eq!(out.len(), 2);
        p.push(b"\ndata: c\n\n", &mut out).expect("parse");
        let data: Vec<_> = out.iter().map(|e| e.data.as_deref()).collect();
        assert_eq!(data, [Some("a"), Some("b"), Some("c")]);
        let raw: Vec<u8> = out.iter().flat_map(|e| e.raw.to_vec()).collect();
        // The stray blank line (with the LF before it) is not forwarded.
        assert_eq!(raw, b"data: a\r\n\rdata: b\r\n\r\ndata: c\n\n");
    }

    fn arb_event() -> impl Strategy<Value = (Option<String>, Vec<String>)> {
        (
            proptest::option::of("[a-z0-9.]{1,8}"),
            proptest::collection::vec("[ -~&&[^:]]{0,12}", 1..4),
        )
    }

    const EOLS: [&str; 3] = ["\n", "\r", "\r\n"];

    /// The stream text for `events`, each line ending with the next of `eols`
    /// (cycled). A blank line right after a CR never ends in a lone LF: the
    /// two would be one CRLF, in any parser.
    fn render(events: &[(Option<String>, Vec<String>)], eols: &[usize]) -> String {
        let mut text = String::new();
        let mut eol = eols.iter().cycle().map(|&i| EOLS[i % 3]);
        let mut line = |text: &mut String, content: &str| {
            let mut e = eol.next().unwrap_or("\n");
            if content.is_empty() && text.ends_with('\r') && e == "\n" {
                e = "\r\n";
            }
            text.push_str(content);
            text.push_str(e);
        };
        for (id, data) in events {
            if let Some(id) = id {
                line(&mut text, &format!("id: {id}"));
            }
            for d in data {
                line(&mut text, &format!("data: {d}"));
            }
            line(&mut text, "");
        }
        text
    }

    proptest! {
        #[test]
        fn any_split_and_line_ending_gives_the_same_events(
            events in proptest::collection::vec(arb_event(), 1..6),
            eols in proptest::collection::vec(0usize..3, 1..8),
            cuts in proptest::collection::vec(0usize..400, 0..12),
        ) {
            let text = render(&events, &eols);
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            // Also cut right after every CR: the CR/LF boundary is the hard case.
            cuts.extend(bytes.iter().enumerate().filter(|(_, b)| **b == b'\r').map(|(i, _)| i + 1));
            cuts.sort_unstable();
            cuts.dedup();
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
