//! Client-facing SSE event ids: `v1.<stream>.<epoch>.<seq>.<mac>`. An id names
//! its stream, so a client can resume on any node with `Last-Event-ID`; the MAC
//! (keyed by the cluster's id key, shared through the replay store) lets a node
//! trust the position without a lookup and refuse forged or edited ids.
//!
//! The MAC binds the stream, epoch and sequence number, not the client: a
//! genuine id presented by another client must read as "no such stream" (404,
//! after the caller checks the owner in the stream's meta record), while a
//! forged one is a bad request (400). Neither answer may reveal whether some
//! stream exists, and only the owner check needs the store.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;

/// Version tag and first field of every id Rhizome issues.
const VERSION: &str = "v1";
/// Longest id [`IdCodec::decode`] looks at; real ids are at most 84 bytes, so
/// anything longer is rejected before it is split.
pub const MAX_ID_LEN: usize = 128;
/// Bytes of HMAC-SHA256 kept in an id: 96 bits, 16 base64url characters.
const MAC_LEN: usize = 12;
/// Encoded length of the MAC.
const MAC_CHARS: usize = 16;
/// Random bytes in a stream id: 128 bits, so ids never collide and cannot be guessed.
const STREAM_BYTES: usize = 16;
/// Encoded length of a stream id.
const STREAM_CHARS: usize = 22;
/// Digits of `u64::MAX`: a longer number is malformed without parsing it.
const MAX_DIGITS: usize = 20;

/// Why an event id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not an id this version of Rhizome issues: wrong shape, version,
    /// lengths, alphabet or numbers, or longer than [`MAX_ID_LEN`].
    #[error("malformed event id")]
    Malformed,
    /// Well formed but its MAC does not match: forged, edited, or issued
    /// under another cluster key.
    #[error("event id failed verification")]
    Forged,
}

/// A stream's id: 16 random bytes as 22 base64url characters (no padding).
/// Always canonical, so two different strings never name the same stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(String);

impl StreamId {
    /// A fresh random stream id.
    pub fn new_random() -> Self {
        Self(URL_SAFE_NO_PAD.encode(rand::random::<[u8; STREAM_BYTES]>()))
    }

    /// Parses a stream id: exactly 22 base64url characters that decode to 16
    /// bytes canonically (unused low bits of the last character are zero).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != STREAM_CHARS {
            return None;
        }
        let mut bytes = [0u8; STREAM_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(s, &mut bytes) {
            Ok(STREAM_BYTES) => Some(Self(s.to_owned())),
            _ => None,
        }
    }

    /// The id as its 22 characters (the replay store's key part).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an event sits: its stream, the producer epoch that appended it, and
/// its sequence number in the stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventPos {
    /// The stream the event belongs to.
    pub stream: StreamId,
    /// Producer epoch that appended the event.
    pub epoch: u64,
    /// Position in the stream, from 1.
    pub seq: u64,
}

/// Encodes and verifies event ids under the cluster's id key. Every node
/// sharing a replay store builds one from the same key, so an id issued by
/// one node verifies on all of them.
#[derive(Clone)]
pub struct IdCodec {
    key: hmac::Key,
}

impl fmt::Debug for IdCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdCodec").field("key", &"***").finish()
    }
}

impl IdCodec {
    /// A codec keyed by the cluster's 32-byte id key.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// The id sent to the client for the event at `pos`.
    pub fn encode(&self, pos: &EventPos) -> String {
        let mac = self.mac(pos);
        format!(
            "{VERSION}.{}.{}.{}.{}",
            pos.stream,
            pos.epoch,
            pos.seq,
            URL_SAFE_NO_PAD.encode(&mac.as_ref()[..MAC_LEN])
        )
    }

    /// The position an id names, if it is well formed and was issued under
    /// this key. Never panics, whatever the input.
    pub fn decode(&self, id: &str) -> Result<EventPos, IdError> {
        let (pos, mac) = split(id).ok_or(IdError::Malformed)?;
        // The MAC is truncated, so `hmac::verify` (which wants the full tag)
        // cannot compare it directly. Compare HMACs of the two truncated tags
        // instead: ring checks those in constant time, and they are equal
        // exactly when the tags are.
        let expected = self.mac(&pos);
        let blinded = hmac::sign(&self.key, &compare_input(&expected.as_ref()[..MAC_LEN]));
        hmac::verify(&self.key, &compare_input(&mac), blinded.as_ref())
            .map_err(|_| IdError::Forged)?;
        Ok(pos)
    }

    /// Full HMAC-SHA256 over the version and the position. Every field has a
    /// fixed width (the stream id is always 22 bytes, the numbers 8 bytes big
    /// endian), so no two positions give the same input.
    fn mac(&self, pos: &EventPos) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(VERSION.as_bytes());
        ctx.update(b"\0");
        ctx.update(pos.stream.as_str().as_bytes());
        ctx.update(b"\0");
        ctx.update(&pos.epoch.to_be_bytes());
        ctx.update(&pos.seq.to_be_bytes());
        ctx.sign()
    }
}

/// Input of the blinded comparison; the prefix keeps it apart from id MACs.
fn compare_input(mac: &[u8]) -> Vec<u8> {
    [b"rhizome-id-compare\0".as_slice(), mac].concat()
}

/// True when `id` looks like one Rhizome issued (a `v1.` prefix), as opposed
/// to an upstream's own event id passed through. Cheap and unverified: use
/// [`IdCodec::decode`] to trust it.
pub fn is_ours(id: &str) -> bool {
    id.starts_with("v1.")
}

/// The position and MAC of a well-formed id, without checking the MAC.
fn split(id: &str) -> Option<(EventPos, [u8; MAC_LEN])> {
    if id.len() > MAX_ID_LEN {
        return None;
    }
    let mut parts = id.split('.');
    let (version, stream, epoch, seq, mac) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if version != VERSION || parts.next().is_some() || mac.len() != MAC_CHARS {
        return None;
    }
    let mut tag = [0u8; MAC_LEN];
    match URL_SAFE_NO_PAD.decode_slice(mac, &mut tag) {
        Ok(MAC_LEN) => {}
        _ => return None,
    }
    let pos = EventPos {
        stream: StreamId::parse(stream)?,
        epoch: number(epoch)?,
        seq: number(seq)?,
    };
    Some((pos, tag))
}

/// A canonical decimal `u64`: ASCII digits only, no sign, no leading zero
/// (so each position has exactly one id), at most 20 digits, no overflow.
fn number(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= MAX_DIGITS
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [7; 32];

    fn pos(epoch: u64, seq: u64) -> EventPos {
        EventPos {
            stream: StreamId::new_random(),
            epoch,
            seq,
        }
    }

    /// What decoding an edited id must say: malformed when it no longer has
    /// an id's shape, forged when it does (the MAC cannot match).
    fn expected_error(edited: &str) -> IdError {
        if split(edited).is_some() {
            IdError::Forged
        } else {
            IdError::Malformed
        }
    }

    #[test]
    fn round_trip() {
        let codec = IdCodec::new(&KEY);
        for (epoch, seq) in [(0, 0), (1, 1), (3, 42), (u64::MAX, u64::MAX)] {
            let p = pos(epoch, seq);
            let id = codec.encode(&p);
            assert!(is_ours(&id));
            assert!(id.len() <= 84, "{id}");
            assert_eq!(codec.decode(&id), Ok(p));
        }
    }

    #[test]
    fn stream_ids_are_22_canonical_base64url_characters() {
        let s = StreamId::new_random();
        assert_eq!(s.as_str().len(), 22);
        assert_eq!(StreamId::parse(s.as_str()), Some(s.clone()));
        assert_eq!(s.to_string(), s.as_str());
        assert_ne!(StreamId::new_random(), s);
        for bad in [
            "",
            "AAAAAAAAAAAAAAAAAAAAA",   // 21
            "AAAAAAAAAAAAAAAAAAAAAAA", // 23
            "AAAAAAAAAAAAAAAAAAAA+A",  // standard alphabet, not url-safe
            "AAAAAAAAAAAAAAAAAAAA/A",
            "AAAAAAAAAAAAAAAAAAAA=A",
            "AAAAAAAAAAAAAAAAAAAAAB", // non-zero unused bits: not canonical
            "AAAAAAAAAAAAAAAAAAAAé",
        ] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
        assert!(StreamId::parse("AAAAAAAAAAAAAAAAAAAA-w").is_some());
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        let codec = IdCodec::new(&KEY);
        let id = codec.encode(&pos(12, 3456));
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+/= é";
        for i in 0..id.len() {
            for c in alphabet.chars() {
                let mut edited = id[..i].to_owned();
                edited.push(c);
                edited.push_str(&id[i + 1..]);
                if edited == id {
                    continue;
                }
                assert_eq!(
                    codec.decode(&edited),
                    Err(expected_error(&edited)),
                    "{edited}"
                );
            }
        }
    }

    #[test]
    fn every_truncation_and_extension_is_malformed() {
        let codec = IdCodec::new(&KEY);
        let id = codec.encode(&pos(1, 2));
        for len in 0..id.len() {
            assert_eq!(codec.decode(&id[..len]), Err(IdError::Malformed));
            assert_eq!(codec.decode(&id[len + 1..]), Err(IdError::Malformed));
        }
        assert_eq!(codec.decode(&format!("{id}.")), Err(IdError::Malformed));
        assert_eq!(codec.decode(&format!("{id}A")), Err(IdError::Malformed));
        assert_eq!(codec.decode(&format!(" {id}")), Err(IdError::Malformed));
    }

    #[test]
    fn an_id_signed_with_another_key_is_forged() {
        let p = pos(5, 9);
        let other = IdCodec::new(&[8; 32]).encode(&p);
        assert_eq!(IdCodec::new(&KEY).decode(&other), Err(IdError::Forged));
    }

    #[test]
    fn a_valid_mac_cannot_move_to_another_stream_or_position() {
        let codec = IdCodec::new(&KEY);
        let p = pos(2, 10);
        let id = codec.encode(&p);
        let mac = id.rsplit('.').next().expect("mac");
        let other = StreamId::new_random();
        for moved in [
            format!("v1.{other}.2.10.{mac}"),
            format!("v1.{}.3.10.{mac}", p.stream),
            format!("v1.{}.2.11.{mac}", p.stream),
            format!("v1.{}.10.2.{mac}", p.stream),
        ] {
            assert_eq!(codec.decode(&moved), Err(IdError::Forged), "{moved}");
        }
    }

    #[test]
    fn non_canonical_numbers_and_other_shapes_are_malformed() {
        let codec = IdCodec::new(&KEY);
        let s = StreamId::new_random();
        let mac = "AAAAAAAAAAAAAAAA";
        for bad in [
            format!("v1.{s}.01.2.{mac}"),
            format!("v1.{s}.1.+2.{mac}"),
            format!("v1.{s}.1.-2.{mac}"),
            format!("v1.{s}.1..{mac}"),
            format!("v1.{s}.1.18446744073709551616.{mac}"), // u64::MAX + 1
            format!("v1.{s}.1.000000000000000000001.{mac}"),
            format!("v2.{s}.1.2.{mac}"),
            format!("V1.{s}.1.2.{mac}"),
            format!("v1.{s}.1.2.{mac}A"),
            format!("v1.{s}.1.2"),
            format!("v1.{s}.1.2.{mac}.x"),
            "v1.".repeat(40),
            "x".repeat(10_000),
        ] {
            assert_eq!(codec.decode(&bad), Err(IdError::Malformed), "{bad}");
        }
        assert_eq!(
            codec.decode(&format!("v1.{s}.0.18446744073709551615.{mac}")),
            Err(IdError::Forged)
        );
    }

    #[test]
    fn is_ours_tells_rhizome_ids_from_upstream_ids() {
        assert!(is_ours(&IdCodec::new(&KEY).encode(&pos(1, 1))));
        for theirs in ["", "42", "msg-7", "v1", "v2.abc", "V1.x"] {
            assert!(!is_ours(theirs), "{theirs}");
        }
    }

    #[test]
    fn debug_never_prints_the_key() {
        let shown = format!("{:?}", IdCodec::new(&[0xAB; 32]));
        assert_eq!(shown, r#"IdCodec { key: "***" }"#);
    }

    fn arb_pos() -> impl Strategy<Value = EventPos> {
        (any::<[u8; 16]>(), any::<u64>(), any::<u64>()).prop_map(|(bytes, epoch, seq)| EventPos {
            stream: StreamId(URL_SAFE_NO_PAD.encode(bytes)),
            epoch,
            seq,
        })
    }

    /// Characters that make up ids, so random strings reach the deep checks.
    fn id_like() -> impl Strategy<Value = String> {
        "[v1.0-9A-Za-z_=+/-]{0,200}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decode_of_encode_is_identity(p in arb_pos()) {
            let codec = IdCodec::new(&KEY);
            let id = codec.encode(&p);
            prop_assert!(id.len() <= MAX_ID_LEN);
            prop_assert_eq!(codec.decode(&id), Ok(p));
        }

        #[test]
        fn decode_never_panics_on_strings(s in any::<String>()) {
            let _ = IdCodec::new(&KEY).decode(&s);
        }

        #[test]
        fn decode_never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = IdCodec::new(&KEY).decode(&String::from_utf8_lossy(&b));
        }

        #[test]
        fn random_id_like_strings_never_verify(s in id_like()) {
            let result = IdCodec::new(&KEY).decode(&s);
            prop_assert!(result.is_err(), "{} verified", s);
        }

        /// Fuzz-style: long inputs, and random edits (replace, insert,
        /// delete) of a genuine id. Nothing panics, and an edited id either
        /// fails or still names exactly the original position.
        #[test]
        fn long_inputs_and_edited_ids_never_panic_or_verify(
            long in "\\PC{0,4096}",
            p in arb_pos(),
            edits in proptest::collection::vec((0usize..100, 0u8..3, any::<char>()), 1..8),
        ) {
            let codec = IdCodec::new(&KEY);
            prop_assert_eq!(codec.decode(&long).is_ok(), false);
            let id = codec.encode(&p);
            let mut chars: Vec<char> = id.chars().collect();
            for (at, op, c) in edits {
                let at = at % (chars.len() + 1);
                match op {
                    0 if at < chars.len() => chars[at] = c,
                    1 => chars.insert(at, c),
                    _ if at < chars.len() => { chars.remove(at); }
                    _ => chars.push(c),
                }
            }
            let edited: String = chars.into_iter().collect();
            match codec.decode(&edited) {
                Ok(got) => prop_assert!(edited == id && got == p, "{} verified", edited),
                Err(e) => prop_assert_eq!(e, expected_error(&edited)),
            }
        }
    }
}
