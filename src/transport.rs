//! A connection's two directions and a way to cut it at once: plain TCP, or a TLS
//! session (`tls.rs`) or WebSocket (`ws.rs`) on one. Client sessions and the
//! replication link read and write a `Transport`, so everything above is one code path
//! whatever the connection speaks.

use std::io;
use std::sync::Arc;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::runtime::TcpStream;
use crate::tls;

pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// One connection's two directions.
pub struct Transport {
    pub reader: Reader,
    pub writer: Writer,
    /// Shuts the connection down at once (a slow consumer, the end of the session).
    pub kill: Arc<dyn Fn() + Send + Sync>,
    /// Ends our direction only, at the socket (after a write failed: the peer sees the
    /// end at once, and what it sent can still be read).
    pub end_writes: Arc<dyn Fn() + Send + Sync>,
    /// The peer's address, for the log and the admin API.
    pub peer: String,
}

impl Transport {
    /// A plain TCP connection.
    pub fn tcp(stream: TcpStream) -> Transport {
        Transport::over(stream.clone(), Box::new(stream.clone()), Box::new(stream))
    }

    /// The server's side of a TLS handshake on `stream`.
    pub async fn accept_tls(stream: TcpStream, acceptor: &tls::Acceptor) -> io::Result<Transport> {
        let (reader, writer) = acceptor.accept(stream.clone()).await?.split();
        Ok(Transport::over(stream, Box::new(reader), Box::new(writer)))
    }

    /// `accept_tls` within `within`; the error says what failed, for a log line.
    pub async fn accept_tls_within(
        stream: TcpStream,
        acceptor: &tls::Acceptor,
        within: std::time::Duration,
    ) -> Result<Transport, String> {
        match crate::runtime::timeout(within, Transport::accept_tls(stream, acceptor)).await {
            Some(Ok(transport)) => Ok(transport),
            Some(Err(error)) => Err(format!("TLS handshake failed: {error}")),
            None => Err("TLS handshake failed: none within the time allowed".into()),
        }
    }

    /// The client's side of a TLS handshake on `stream` with the server `host`.
    pub async fn connect_tls(
        stream: TcpStream,
        connector: &tls::Connector,
        host: &str,
    ) -> io::Result<Transport> {
        let (reader, writer) = connector.connect(host, stream.clone()).await?.split();
        Ok(Transport::over(stream, Box::new(reader), Box::new(writer)))
    }

    /// `reader` and `writer` carried by `stream` (which the kill switch shuts down).
    pub fn over(stream: TcpStream, reader: Reader, writer: Writer) -> Transport {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let half = stream.clone();
        Transport {
            reader,
            writer,
            kill: Arc::new(move || {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }),
            end_writes: Arc::new(move || {
                let _ = half.shutdown(std::net::Shutdown::Write);
            }),
            peer,
        }
    }

    /// Cuts the connection now, both ways.
    pub fn cut(&self) {
        (self.kill)();
    }
}
