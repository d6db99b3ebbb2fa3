//! TLS: the one file naming `futures_rustls` (rustls over `futures::io`, no runtime of
//! its own, with the `ring` provider, so nothing needs a C toolchain beyond the usual).
//! `Acceptor` serves the broker's TLS listeners from PEM files, optionally requiring a
//! client certificate signed by a given CA (mutual TLS); `Connector` is a client's side,
//! trusting one CA file, over an async stream or (for the tools) a blocking one. Certificates are checked by webpki: a name or an IP address in
//! the certificate must match the host dialled.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use futures::io::{AsyncRead, AsyncWrite};
use futures_rustls::rustls::crypto::{ring, CryptoProvider};
use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use futures_rustls::rustls::server::WebPkiClientVerifier;
use futures_rustls::rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned,
};
use futures_rustls::{TlsAcceptor, TlsConnector};

/// A TLS connection a listener accepted.
pub type ServerStream<S> = futures_rustls::server::TlsStream<S>;
/// A TLS connection a client opened.
pub type ClientStream<S> = futures_rustls::client::TlsStream<S>;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The certificates of a PEM file.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let read = |e| format!("{}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it (PEM)", path.display()));
    }
    Ok(certs)
}

/// The certificates of a CA file, as trust anchors.
fn roots(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a CA certificate: {e}", ca.display()))?;
    }
    Ok(roots)
}

/// The server side of the broker's TLS listeners.
#[derive(Clone)]
pub struct Acceptor(TlsAcceptor);

impl Acceptor {
    /// From the certificate chain `cert` and its `key` (PEM); with `client_ca`, a client
    /// must present a certificate that CA signed.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, String> {
        let chain = certificates(cert)?;
        let private =
            PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match client_ca {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                        .build()
                        .map_err(|e| format!("{}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(chain, private)
            .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
        Ok(Acceptor(TlsAcceptor::from(Arc::new(config))))
    }

    /// The TLS handshake with a client on `stream`.
    pub async fn accept<S>(&self, stream: S) -> io::Result<ServerStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.0.accept(stream).await
    }
}

/// The client side: trusts the CA of one PEM file.
#[derive(Clone)]
pub struct Connector(TlsConnector, Arc<ClientConfig>);

impl Connector {
    pub fn from_ca(ca: &Path) -> Result<Self, String> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots(ca)?)
            .with_no_client_auth();
        let config = Arc::new(config);
        Ok(Connector(TlsConnector::from(config.clone()), config))
    }

    /// The TLS handshake with the server `host` (a name or an IP address its
    /// certificate must hold) on `stream`.
    pub async fn connect<S>(&self, host: &str, stream: S) -> io::Result<ClientStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.0.connect(server_name(host)?, stream).await
    }

    /// The same over a blocking stream (the tools' HTTPS calls); the handshake happens
    /// with the first read or write.
    pub fn connect_blocking<S>(&self, host: &str, stream: S) -> io::Result<impl Read + Write>
    where
        S: Read + Write,
    {
        let connection =
            ClientConnection::new(self.1.clone(), server_name(host)?).map_err(io::Error::other)?;
        Ok(StreamOwned::new(connection, stream))
    }
}

/// `host` as the name (or IP address) a certificate must hold.
fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))
}

/// Whether a handshake failed on what the peer said (anything rustls refused, a
/// certificate or bytes that are not TLS), rather than on the connection itself.
pub fn is_protocol_error(error: &io::Error) -> bool {
    use futures_rustls::rustls::Error;
    error
        .get_ref()
        .is_some_and(|e| e.downcast_ref::<Error>().is_some())
}

/// Whether a handshake failed on a certificate (a wrong CA, a name the certificate does
/// not hold, an expired one), on either end: retrying cannot help until someone fixes
/// the certificates, unlike a connection that broke.
pub fn is_certificate_error(error: &io::Error) -> bool {
    use futures_rustls::rustls::{AlertDescription, Error};
    let Some(inner) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return false;
    };
    match inner {
        Error::InvalidCertificate(_) | Error::NoCertificatesPresented => true,
        Error::AlertReceived(alert) => matches!(
            alert,
            AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateRequired
        ),
        _ => false,
    }
}
