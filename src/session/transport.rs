//! What a session reads frames from and writes them to: a TCP connection, or STOMP over
//! WebSocket on one (`ws.rs`). Both are byte streams plus a way to cut the
//! connection at once, so everything above is one code path for both.

use std::sync::Arc;

use futures::io::{AsyncRead, AsyncWrite};

use crate::runtime::TcpStream;

pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// One client connection's two directions.
pub struct Transport {
    pub reader: Reader,
    pub writer: Writer,
    /// Shuts the connection down at once (a slow consumer, the end of the session).
    pub kill: Arc<dyn Fn() + Send + Sync>,
    /// The client's address, for the log and the admin API.
    pub peer: String,
}

impl Transport {
    /// A plain TCP connection.
    pub fn tcp(stream: TcpStream) -> Transport {
        Transport::over(stream.clone(), Box::new(stream.clone()), Box::new(stream))
    }

    /// `reader` and `writer` carried by `stream` (which the kill switch shuts down).
    pub fn over(stream: TcpStream, reader: Reader, writer: Writer) -> Transport {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        Transport {
            reader,
            writer,
            kill: Arc::new(move || {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }),
            peer,
        }
    }
}
