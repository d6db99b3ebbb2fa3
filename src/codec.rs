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

/// How many bytes `value` encodes to.
fn encoded_len<T: Serialize>(value: &T) -> Result<usize> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config())
        .map_err(|e| Error::Codec(e.to_string()))?;
    Ok(size.bytes_written)
}

/// `value` as one length-prefixed frame: a u32 LE length, then its encoding.
pub fn frame<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    // Sized first: a batch of records encoded into a buffer grown by doubling was copied
    // about twice over, once per slave.
    let mut frame = Vec::with_capacity(4 + encoded_len(value)?);
    frame.extend_from_slice(&[0; 4]);
    encode_into(value, &mut frame)?;
    let len =
        u32::try_from(frame.len() - 4).map_err(|_| Error::Codec("frame over 4 GiB".into()))?;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    Ok(frame)
}

/// Writes `value` as one length-prefixed frame (see [`frame`]).
pub async fn write_frame<W, T>(writer: &mut W, value: &T) -> Result<()>
where
    W: futures::io::AsyncWrite + Unpin,
    T: Serialize,
{
    use futures::io::AsyncWriteExt;
    let frame = frame(value)?;
    writer
        .write_all(&frame)
        .await
        .map_err(|e| Error::net("writing a frame", e))?;
    writer
        .flush()
        .await
        .map_err(|e| Error::net("writing a frame", e))
}

/// The frames `reader` carries, as a stream that ends after a clean EOF or the first
/// error. Unlike a `read_frame` future, `next()` on it may be dropped halfway (by a
/// `select!` or a timeout) without losing bytes: the read in progress lives in the
/// stream and resumes on the next call, so one task can read and write one socket.
pub fn frames<R, T>(reader: R, max_len: usize) -> impl futures::Stream<Item = Result<T>> + Send
where
    R: futures::io::AsyncRead + Unpin + Send + 'static,
    T: DeserializeOwned + Send + 'static,
{
    futures::stream::unfold(Some((reader, Vec::new())), move |state| async move {
        let (mut reader, mut buffer) = state?;
        match read_frame_into(&mut reader, max_len, &mut buffer).await {
            Ok(Some(value)) => Some((Ok(value), Some((reader, buffer)))),
            Ok(None) => None,
            Err(error) => Some((Err(error), None)),
        }
    })
}

/// Reads one length-prefixed frame of at most `max_len` bytes; `Ok(None)` on a clean
/// EOF before the frame starts.
pub async fn read_frame<R, T>(reader: &mut R, max_len: usize) -> Result<Option<T>>
where
    R: futures::io::AsyncRead + Unpin,
    T: DeserializeOwned,
{
    read_frame_into(reader, max_len, &mut Vec::new()).await
}

/// A frame buffer grown past this is not kept for the next frame.
const KEPT_BUFFER: usize = 4 << 20;

/// `read_frame`, reading the frame's bytes into `buffer`, which keeps its length between
/// frames: zeroing a new buffer for each frame before reading over it was 3% of a
/// slave's work.
async fn read_frame_into<R, T>(
    reader: &mut R,
    max_len: usize,
    buffer: &mut Vec<u8>,
) -> Result<Option<T>>
where
    R: futures::io::AsyncRead + Unpin,
    T: DeserializeOwned,
{
    use futures::io::AsyncReadExt;
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = match reader.read(&mut prefix[got..]).await {
            Ok(n) => n,
            // A TLS peer that closed without close_notify, between two frames: frames
            // carry their own length, so nothing was cut; it is an end like any other.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && got == 0 => 0,
            Err(e) => return Err(Error::net("reading a frame", e)),
        };
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                // A peer that died mid-frame is a lost connection, not unreadable data.
                Err(Error::net(
                    "reading a frame",
                    std::io::ErrorKind::UnexpectedEof.into(),
                ))
            };
        }
        got += n;
    }
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max_len {
        return Err(Error::Codec(format!(
            "frame of {len} bytes exceeds the {max_len}-byte limit"
        )));
    }
    if buffer.len() < len {
        buffer.resize(len, 0);
    }
    let body = &mut buffer[..len];
    reader
        .read_exact(body)
        .await
        .map_err(|e| Error::net("reading a frame", e))?;
    let value = decode(body);
    if buffer.len() > KEPT_BUFFER {
        *buffer = Vec::new();
    }
    value.map(Some)
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

    #[test]
    fn frames_round_trip_and_oversized_or_cut_frames_fail() {
        crate::runtime::block_on(async {
            let value = Sample {
                name: "a".into(),
                body: bytes::Bytes::from_static(b"xyz"),
                n: 9,
            };
            let mut wire = futures::io::Cursor::new(Vec::new());
            write_frame(&mut wire, &value).await.unwrap();
            write_frame(&mut wire, &value).await.unwrap();
            let bytes = wire.into_inner();
            let mut reader = futures::io::Cursor::new(bytes.clone());
            assert_eq!(
                read_frame::<_, Sample>(&mut reader, 1024).await.unwrap(),
                Some(value)
            );
            assert!(read_frame::<_, Sample>(&mut reader, 1024)
                .await
                .unwrap()
                .is_some());
            assert_eq!(
                read_frame::<_, Sample>(&mut reader, 1024).await.unwrap(),
                None
            );
            let mut small = futures::io::Cursor::new(bytes.clone());
            assert!(read_frame::<_, Sample>(&mut small, 4).await.is_err());
            let mut cut = futures::io::Cursor::new(bytes[..bytes.len() / 2 + 2].to_vec());
            assert!(read_frame::<_, Sample>(&mut cut, 1024).await.is_ok());
            assert!(read_frame::<_, Sample>(&mut cut, 1024).await.is_err());
        });
    }

    /// One stream reads frames of every size into one buffer: each decodes to its own
    /// value, a short frame after a long one included, and each is framed at its size.
    #[test]
    fn a_stream_of_frames_of_changing_sizes_reads_each_whole() {
        use futures::StreamExt;
        crate::runtime::block_on(async {
            let sizes = [1000, 3, 0, 5000, 10, 5000, 1];
            let values: Vec<Sample> = sizes
                .iter()
                .enumerate()
                .map(|(n, size)| Sample {
                    name: format!("frame {n}"),
                    body: bytes::Bytes::from(vec![n as u8; *size]),
                    n: n as u64,
                })
                .collect();
            let mut wire = Vec::new();
            for value in &values {
                let frame = frame(value).unwrap();
                assert_eq!(frame.len(), 4 + encode(value).unwrap().len());
                wire.extend_from_slice(&frame);
            }
            let read: Vec<Sample> = frames(futures::io::Cursor::new(wire), 1 << 20)
                .map(|value| value.unwrap())
                .collect()
                .await;
            assert_eq!(read, values);
        });
    }
}
