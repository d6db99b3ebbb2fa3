//! Client connections as each listener's accepts them: plain TCP, WebSocket
//! (`stomp.ws_bind`), TLS (`stomp.tls_bind`) and WebSocket over TLS (`stomp.wss_bind`).
//! Each becomes a session `Transport` once its handshakes are done, within the connect
//! timeout; a failed handshake is logged with the peer and why, and closed, and nothing
//! else notices. Every listener counts towards one `stomp.max_connections`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::runtime::{self, TcpStream};
use crate::session::{self, Shared, Transport};
use crate::stomp::Frame;
use crate::tls::Acceptor;

/// How a client listener's connections speak STOMP.
#[derive(Clone)]
pub enum Speaks {
    Tcp,
    WebSocket,
    Tls(Acceptor),
    /// WebSocket over TLS.
    Wss(Acceptor),
}

impl Speaks {
    /// The listener's name in the log.
    pub fn name(&self) -> &'static str {
        match self {
            Speaks::Tcp => "stomp",
            Speaks::WebSocket => "stomp ws",
            Speaks::Tls(_) => "stomp tls",
            Speaks::Wss(_) => "stomp wss",
        }
    }
}

/// Starts a session, or turns the client away when the broker is at max_connections.
pub fn accept(stream: TcpStream, shared: &Arc<Shared>, active: &Arc<AtomicUsize>, speaks: &Speaks) {
    let _ = stream.set_nodelay(true);
    let limit = shared.config.stomp.max_connections;
    if active.fetch_add(1, Ordering::SeqCst) >= limit {
        active.fetch_sub(1, Ordering::SeqCst);
        log::warn!(
            "{}: refusing a connection: {limit} connections open (stomp.max_connections)",
            speaks.name()
        );
        let transport = Transport::tcp(stream);
        if let Speaks::Tcp = speaks {
            let frame = Frame::error(format!("too many connections (limit {limit})"));
            runtime::spawn(session::close_with(transport.writer, transport.kill, frame));
        } else {
            // No handshake answered: the client sees the connection fail.
            (transport.kill)();
        }
        return;
    }
    let (shared, active, speaks) = (shared.clone(), active.clone(), speaks.clone());
    runtime::spawn(async move {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let opened = runtime::timeout(
            shared.config.connect_timeout(),
            open(&stream, &shared, &speaks),
        )
        .await;
        match opened {
            Some(Ok(transport)) => session::serve(transport, shared).await,
            Some(Err(why)) => {
                log::info!("{}: connection from {peer} refused: {why}", speaks.name());
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            None => {
                log::info!(
                    "{}: no handshake from {peer} within the connect timeout",
                    speaks.name()
                );
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        active.fetch_sub(1, Ordering::SeqCst);
    });
}

/// The handshakes `speaks` needs on `stream`.
async fn open(stream: &TcpStream, shared: &Shared, speaks: &Speaks) -> Result<Transport, String> {
    let max_message = shared.config.stomp.max_frame_size.bytes();
    let over = |reader, writer| Transport::over(stream.clone(), reader, writer);
    Ok(match speaks {
        Speaks::Tcp => Transport::tcp(stream.clone()),
        Speaks::WebSocket => {
            let (reader, writer) = crate::ws::accept(stream.clone(), max_message).await?;
            over(Box::new(reader), Box::new(writer))
        }
        Speaks::Tls(acceptor) => Transport::accept_tls(stream.clone(), acceptor)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?,
        Speaks::Wss(acceptor) => {
            let secured = acceptor
                .accept(stream.clone())
                .await
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            let (reader, writer) = crate::ws::accept(secured, max_message).await?;
            over(Box::new(reader), Box::new(writer))
        }
    })
}
