//! A buffered STOMP socket: read whole frames, write batches of frames.
//!
//! Owns the byte buffer between the socket and the parser. A partial frame is "read
//! more", never an error; a clean EOF between frames is `Ok(None)`; an EOF inside a frame
//! is an error. The buffer never holds much more than the parser's frame-size limit,
//! because the parser refuses an unfinished frame past it.

use crate::meter::METERS;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::stomp::{self, Frame, ParseError, ParseLimits, Parsed, Version};

/// What arrived from the peer.
#[derive(Debug)]
pub enum Inbound {
    Frame(Frame),
    /// EOL bytes between frames: a heart-beat.
    HeartBeat,
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("connection closed in the middle of a frame")]
    TruncatedFrame,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

const READ_CHUNK: usize = 64 * 1024;

/// Reads frames from any byte stream.
pub struct FrameReader<R> {
    inner: R,
    buffer: Vec<u8>,
    /// Where unparsed bytes start in `buffer`.
    start: usize,
    /// How many unparsed bytes the parser last found to be an unfinished frame (0: none).
    /// Every frame ends with a NUL, so until one arrives after them (or the frame outgrows
    /// its limit) parsing again cannot succeed: skipping it keeps a frame that trickles in
    /// from costing a parse from its start per read, quadratic in its size.
    incomplete: usize,
    limits: ParseLimits,
    chunk: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, limits: ParseLimits) -> FrameReader<R> {
        FrameReader {
            inner,
            buffer: Vec::with_capacity(READ_CHUNK),
            start: 0,
            incomplete: 0,
            limits,
            chunk: vec![0u8; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// The next frame or heart-beat; `Ok(None)` when the peer closed between frames.
    pub async fn read(&mut self, version: Version) -> Result<Option<Inbound>, ReadError> {
        loop {
            let unparsed = &self.buffer[self.start..];
            let worth_parsing = !unparsed.is_empty()
                && (self.incomplete == 0
                    || unparsed[self.incomplete..].contains(&0)
                    || unparsed.len() > self.limits.max_frame_size);
            if worth_parsing {
                match stomp::parse(unparsed, version, &self.limits)? {
                    Parsed::Frame { frame, consumed } => {
                        self.start += consumed;
                        self.incomplete = 0;
                        METERS.frames_in.add(1);
                        return Ok(Some(Inbound::Frame(frame)));
                    }
                    Parsed::HeartBeat { consumed } => {
                        self.start += consumed;
                        self.incomplete = 0;
                        return Ok(Some(Inbound::HeartBeat));
                    }
                    Parsed::Incomplete => self.incomplete = unparsed.len(),
                }
            }
            // Keep only the unparsed bytes before reading more.
            if self.start > 0 {
                self.buffer.drain(..self.start);
                self.start = 0;
            }
            let n = self.inner.read(&mut self.chunk).await?;
            if n == 0 {
                return if self.buffer.iter().all(|b| *b == b'\n' || *b == b'\r') {
                    Ok(None)
                } else {
                    Err(ReadError::TruncatedFrame)
                };
            }
            METERS.bytes_in.add(n as u64);
            self.buffer.extend_from_slice(&self.chunk[..n]);
        }
    }
}

/// Encodes frames into one buffer and writes it with one call, so a burst of
/// MESSAGEs and RECEIPTs costs one syscall.
pub struct FrameWriter<W> {
    inner: W,
    buffer: Vec<u8>,
    version: Version,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W, version: Version) -> FrameWriter<W> {
        FrameWriter {
            inner,
            buffer: Vec::with_capacity(READ_CHUNK),
            version,
        }
    }

    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// Adds a frame to the pending batch.
    pub fn queue(&mut self, frame: &Frame) {
        METERS.frames_out.add(1);
        stomp::encode(frame, self.version, &mut self.buffer);
    }

    /// Adds a heart-beat (one EOL) to the pending batch.
    pub fn queue_heart_beat(&mut self) {
        self.buffer.push(b'\n');
    }

    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// Writes the pending batch.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.inner.write_all(&self.buffer).await?;
            self.inner.flush().await?;
            METERS.bytes_out.add(self.buffer.len() as u64);
            self.buffer.clear();
        }
        Ok(())
    }

    /// Writes the pending batch and closes the stream (a WebSocket says goodbye).
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.inner.close().await
    }

    /// Writes one frame now.
    pub async fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.queue(frame);
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stomp::Command;

    #[test]
    fn reads_frames_split_and_batched_then_clean_eof() {
        let wire = b"\nSEND\ndestination:/queue/a\n\nhello\0\r\nSEND\ndestination:/queue/b\n\n\0\n"
            .to_vec();
        crate::runtime::block_on(async {
            let mut reader =
                FrameReader::new(futures::io::Cursor::new(wire), ParseLimits::default());
            let mut seen = Vec::new();
            while let Some(item) = reader.read(Version::V1_2).await.unwrap() {
                if let Inbound::Frame(frame) = item {
                    seen.push(frame.header("destination").unwrap().to_string());
                }
            }
            assert_eq!(seen, ["/queue/a", "/queue/b"]);
        });
    }

    #[test]
    fn eof_inside_a_frame_is_an_error() {
        crate::runtime::block_on(async {
            let wire = b"SEND\ndestination:/queue/a\n\nhal".to_vec();
            let mut reader =
                FrameReader::new(futures::io::Cursor::new(wire), ParseLimits::default());
            assert!(matches!(
                reader.read(Version::V1_2).await,
                Err(ReadError::TruncatedFrame)
            ));
        });
    }

    #[test]
    fn writer_batches_frames() {
        crate::runtime::block_on(async {
            let mut out = futures::io::Cursor::new(Vec::new());
            let mut writer = FrameWriter::new(&mut out, Version::V1_2);
            writer.queue(&Frame::new(Command::Receipt).with_header("receipt-id", "1"));
            writer.queue_heart_beat();
            writer.flush().await.unwrap();
            assert_eq!(out.into_inner(), b"RECEIPT\nreceipt-id:1\n\n\0\n".to_vec());
        });
    }
}
