//! How brokers reach each other's replication listeners: TCP, over TLS when
//! `replication.tls` is set. A dialling broker checks the listener's certificate against
//! `replication.ca` for the host it dialled before it sends a byte, so a slave's
//! password, a copy of the store and a probe's answer never cross in clear, and never
//! to a listener that cannot prove it is one of ours. The listener serves `[tls]`'s
//! certificate. The Hello, every copy stream and every probe dial through here.

use std::path::Path;
use std::time::Duration;

use crate::config::{Config, Endpoint};
use crate::runtime::{self, TcpStream};
use crate::tls;
use crate::transport::Transport;

/// Why a dial gave no connection.
#[derive(Debug)]
pub enum DialFailure {
    /// Nothing answered there, or the connection broke: worth retrying.
    Unreachable(String),
    /// Something answered that is not a broker we can trust: its certificate fails the
    /// check (or it refused ours), or it does not speak TLS at all (`replication.tls`
    /// set on one side only). Retrying cannot help until someone fixes the config or the
    /// certificates, and it may be a live broker.
    Untrusted(String),
}

impl std::fmt::Display for DialFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialFailure::Unreachable(why) | DialFailure::Untrusted(why) => f.write_str(why),
        }
    }
}

/// Both ends of the link's connections, made once at the start from the config (a
/// certificate that does not load stops the start, not a promotion later).
#[derive(Clone, Default)]
pub struct Wire {
    connector: Option<tls::Connector>,
    acceptor: Option<tls::Acceptor>,
}

impl Wire {
    /// Plain TCP without `replication.tls`; TLS with it.
    pub fn from_config(config: &Config) -> Result<Wire, String> {
        if !config.replication.tls {
            return Ok(Wire::default());
        }
        // Config validation ensures both are there; the messages cover a hand-made one.
        let ca = config
            .replication
            .ca
            .as_deref()
            .ok_or("replication.tls needs replication.ca")?;
        let own = config
            .tls
            .as_ref()
            .ok_or("replication.tls needs a [tls] section")?;
        let connector =
            tls::Connector::from_ca(ca).map_err(|why| format!("replication.ca: {why}"))?;
        // The link needs no client certificate: a slave proves itself with its password,
        // which TLS now keeps secret.
        let acceptor = tls::Acceptor::from_files(&own.cert, &own.key, None::<&Path>)
            .map_err(|why| format!("[tls]: {why}"))?;
        Ok(Wire {
            connector: Some(connector),
            acceptor: Some(acceptor),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.connector.is_some()
    }

    /// Connects to the replication listener at `address`, handshakes included, within
    /// `patience`.
    pub async fn dial(
        &self,
        address: &Endpoint,
        patience: Duration,
    ) -> Result<Transport, DialFailure> {
        let unreachable = |why: String| DialFailure::Unreachable(format!("{address}: {why}"));
        let dialled = async {
            let stream = runtime::connect(&address.socket_addr())
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let Some(connector) = &self.connector else {
                return Ok(Transport::tcp(stream));
            };
            Transport::connect_tls(stream, connector, &address.host)
                .await
                .map_err(|e| {
                    let why = format!("{address}: TLS handshake failed: {e}");
                    if tls::is_certificate_error(&e) {
                        DialFailure::Untrusted(why)
                    } else if tls::is_protocol_error(&e) {
                        DialFailure::Untrusted(format!(
                            "{why} (does it have replication.tls set, as this broker does?)"
                        ))
                    } else {
                        DialFailure::Unreachable(why)
                    }
                })
        };
        runtime::timeout(patience, dialled)
            .await
            .unwrap_or_else(|| Err(unreachable("no connection within the time allowed".into())))
    }

    /// The listener's side of a connection a peer opened, within `patience`.
    pub async fn accept(&self, stream: TcpStream, patience: Duration) -> Result<Transport, String> {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = &self.acceptor else {
            return Ok(Transport::tcp(stream));
        };
        Transport::accept_tls_within(stream, acceptor, patience).await
    }
}
