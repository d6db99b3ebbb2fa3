//! The `websocket` target's harness: STOMP over WebSocket as the broker reads it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite, Cursor};

use mirrormq::connection::FrameReader;
use mirrormq::stomp::{ParseLimits, Version};

/// A valid upgrade request: inputs whose first byte is even follow one, so the fuzzer
/// reaches the WebSocket frames and the STOMP frames inside them.
const UPGRADE: &[u8] =
    b"GET /stomp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Protocol: v12.stomp\r\n\r\n";

/// A client that sends `input` then closes, and whose answers are dropped.
struct Client(Cursor<Vec<u8>>);

impl AsyncRead for Client {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Client {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What a client sends to the WebSocket port: the upgrade (or garbage instead of it),
/// then WebSocket frames carrying STOMP frames. Nothing panics; reading ends in an error
/// or an end of stream.
pub fn websocket(data: &[u8]) {
    let mut input = Vec::new();
    if data.first().is_some_and(|b| b % 2 == 0) {
        input.extend_from_slice(UPGRADE);
    }
    input.extend_from_slice(data);
    mirrormq::runtime::block_on(async {
        if let Ok((reader, _writer)) =
            mirrormq::ws::accept(Client(Cursor::new(input)), 64 << 10).await
        {
            let mut frames = FrameReader::new(reader, ParseLimits::default());
            while let Ok(Some(_)) = frames.read(Version::V1_2).await {}
        }
    });
}
