//! The one place that knows the binary encoding of records crossing process
//! boundaries (Redis values and pub/sub messages today, coordinator RPC
//! bodies later): bincode 2 in serde mode with the standard configuration.
//! Keeping it here keeps the format swappable (RUSTSEC-2025-0141 marks
//! bincode unmaintained; postcard is the planned replacement).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed.
    #[error("encode: {0}")]
    Encode(String),
    /// The bytes are not a valid record.
    #[error("decode: {0}")]
    Decode(String),
}

/// Encodes `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a `T` from the whole of `bytes` (trailing bytes are an error).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes",
            bytes.len() - read
        )));
    }
    Ok(value)
}
