//! STOMP over WebSocket: the one file that names `async_tungstenite` (a maintained crate
//! over `futures::io`, so no second runtime). `accept` answers the HTTP upgrade on any
//! path, choosing the STOMP subprotocol (`v12.stomp`, `v11.stomp`, `v10.stomp`) from
//! the client's offer and echoing it, as browsers require. The connection is then two
//! byte streams, so the session serves it exactly as a TCP one: `WsReader` yields the
//! payloads of text and binary messages one after another (a message may hold one frame,
//! several, or a heart-beat EOL), and `WsWriter` sends what was written since the last
//! flush as one message (text when it is UTF-8, binary otherwise). Pings are answered by
//! tungstenite; a close or an error is the end of the stream. `connect` is the client's
//! side (the failover client's `ws://` and `wss://` addresses), offering every STOMP
//! subprotocol.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Bytes, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use futures::io::{AsyncRead, AsyncWrite};
use futures::{Sink, Stream};

/// The STOMP subprotocols, most preferred first.
const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// The subprotocol to answer an offer (`Sec-WebSocket-Protocol`) with: the newest STOMP
/// version offered; `Ok(None)` when nothing was offered; `Err` when only others were.
pub fn choose_subprotocol(offer: Option<&str>) -> Result<Option<&'static str>, String> {
    let Some(offer) = offer.filter(|o| !o.trim().is_empty()) else {
        return Ok(None);
    };
    let offered: Vec<&str> = offer.split(',').map(str::trim).collect();
    SUBPROTOCOLS
        .iter()
        .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)))
        .map(|p| Some(*p))
        .ok_or_else(|| {
            format!(
                "no STOMP subprotocol offered ({offer}): offer v12.stomp, v11.stomp or v10.stomp"
            )
        })
}

/// Answers the upgrade on `stream` (a TCP connection; anything in tests and fuzzing);
/// messages may be up to `max_message` bytes.
// tungstenite's `Callback` fixes the refusal's type, an HTTP response (large).
#[allow(clippy::result_large_err)]
pub async fn accept<S>(stream: S, max_message: usize) -> Result<(WsReader<S>, WsWriter<S>), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let answer = |request: &Request, mut response: Response| {
        let offer = request
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        match choose_subprotocol(offer) {
            Ok(chosen) => {
                if let Some(chosen) = chosen {
                    response
                        .headers_mut()
                        .insert("sec-websocket-protocol", HeaderValue::from_static(chosen));
                }
                Ok(response)
            }
            Err(why) => {
                let mut refusal = ErrorResponse::new(Some(why));
                *refusal.status_mut() = StatusCode::BAD_REQUEST;
                Err(refusal)
            }
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let socket = async_tungstenite::accept_hdr_async_with_config(stream, answer, Some(config))
        .await
        .map_err(|e| format!("WebSocket handshake failed: {e}"))?;
    Ok(split(socket))
}

/// The client's side of the upgrade on `stream`, to `host:port` at `path`, offering the
/// STOMP subprotocols; the broker must choose one.
pub async fn connect<S>(
    stream: S,
    host: &str,
    port: u16,
    path: &str,
) -> Result<(WsReader<S>, WsWriter<S>), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use async_tungstenite::tungstenite::client::IntoClientRequest;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    // The scheme only shapes the request (the caller made the connection, TLS or not).
    let mut request = format!("ws://{host}:{port}{path}")
        .into_client_request()
        .map_err(|e| format!("WebSocket request: {e}"))?;
    let offer = HeaderValue::from_str(&SUBPROTOCOLS.join(", "))
        .map_err(|e| format!("WebSocket request: {e}"))?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", offer);
    let (socket, response) = async_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| format!("WebSocket handshake failed: {e}"))?;
    if response.headers().get("sec-websocket-protocol").is_none() {
        return Err("the server chose no STOMP subprotocol".into());
    }
    Ok(split(socket))
}

/// The two directions of an open WebSocket.
fn split<S>(socket: async_tungstenite::WebSocketStream<S>) -> (WsReader<S>, WsWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sink, stream) = socket.split();
    (
        WsReader {
            stream,
            payload: Bytes::new(),
        },
        WsWriter {
            sink,
            pending: Vec::new(),
        },
    )
}

/// The incoming messages' payloads, as one byte stream.
pub struct WsReader<S> {
    stream: WebSocketReceiver<S>,
    /// What is left of the last message.
    payload: Bytes,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsReader<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        while self.payload.is_empty() {
            match ready!(Pin::new(&mut self.stream).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => self.payload = Bytes::from(text),
                Some(Ok(Message::Binary(bytes))) => self.payload = bytes,
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(0)),
                Some(Ok(_)) => {} // ping, pong: tungstenite answers pings itself
                Some(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
            }
        }
        let n = buf.len().min(self.payload.len());
        buf[..n].copy_from_slice(&self.payload.split_to(n));
        Poll::Ready(Ok(n))
    }
}

/// Bytes written until a flush, sent as one message.
pub struct WsWriter<S> {
    sink: WebSocketSender<S>,
    pending: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsWriter<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.pending.is_empty() {
            ready!(Pin::new(&mut self.sink).poll_ready(cx)).map_err(io::Error::other)?;
            let bytes = std::mem::take(&mut self.pending);
            let message = match String::from_utf8(bytes) {
                Ok(text) => Message::text(text),
                Err(binary) => Message::binary(binary.into_bytes()),
            };
            Pin::new(&mut self.sink)
                .start_send(message)
                .map_err(io::Error::other)?;
        }
        Pin::new(&mut self.sink)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.sink)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_stomp_version_offered_is_chosen() {
        type Case<'a> = (Option<&'a str>, Result<Option<&'a str>, ()>);
        let cases: &[Case] = &[
            (
                Some("v10.stomp, v11.stomp, v12.stomp"),
                Ok(Some("v12.stomp")),
            ),
            (Some("v10.stomp,v11.stomp"), Ok(Some("v11.stomp"))),
            (Some("chat, V10.STOMP"), Ok(Some("v10.stomp"))),
            (None, Ok(None)),
            (Some("  "), Ok(None)),
            (Some("chat, mqtt"), Err(())),
        ];
        for (offer, expected) in cases {
            assert_eq!(
                choose_subprotocol(*offer).map_err(|_| ()),
                *expected,
                "{offer:?}"
            );
        }
    }
}
