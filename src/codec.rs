//! The binary codec seam: the only file that names `bincode`.
//!
//! Journal records and replication messages are serde types encoded here. bincode is
//! unmaintained upstream, so a swap edits this file alone. Decoding is bounded
//! (`DECODE_LIMIT`) so a corrupt length prefix from a file or socket cannot make us
//! allocate gigabytes, and trailing bytes are an error: a record is all of its frame.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// The largest value we ever decode; frames are capped well below this elsewhere.
const DECODE_LIMIT: usize = 256 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(|e| Error::Codec(e.to_string()))
}

/// Encodes `value` into a new buffer.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Decodes a value that must occupy all of `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| Error::Codec(e.to_string()))?;
    if used != bytes.len() {
        return Err(Error::Codec(format!(
            "{} trailing bytes after a {used}-byte value",
            bytes.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        body: bytes::Bytes,
        n: u64,
    }

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let value = Sample {
            name: "q".into(),
            body: bytes::Bytes::from_static(b"a\0b"),
            n: 7,
        };
        let mut bytes = encode(&value).unwrap();
        assert_eq!(decode::<Sample>(&bytes).unwrap(), value);
        bytes.push(0);
        assert!(decode::<Sample>(&bytes).is_err());
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        let bytes = encode(&Sample {
            name: "queue".into(),
            body: bytes::Bytes::from(vec![1u8; 100]),
            n: 1,
        })
        .unwrap();
        for cut in 0..bytes.len() {
            assert!(decode::<Sample>(&bytes[..cut]).is_err());
        }
        // A huge length prefix must fail on the limit, not try to allocate it.
        assert!(decode::<Sample>(&[0xfc, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
