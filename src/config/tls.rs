//! `[tls]`: the broker's certificate and key (PEM), for `stomp.tls_bind` and
//! `stomp.wss_bind`, and, optionally, the CA whose certificates clients must present
//! (mutual TLS). Paths are relative to the config file's folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{check, Config};

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain clients see, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// If set, a client must present a certificate this CA (PEM) signed.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// Anchors relative paths at `base`, the config file's folder.
    pub(super) fn resolve(&mut self, base: &Path) {
        for path in [
            Some(&mut self.cert),
            Some(&mut self.key),
            self.client_ca.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

/// Every user of TLS needs `[tls]`, the certificate this broker shows: the client ports'
/// TLS listeners, the admin listener with `tls = true`, and the replication link with
/// `tls = true` (every broker of a group may serve the link).
pub(super) fn validate(config: &Config) -> Result<(), (&'static str, String)> {
    const NEEDS: &str = "needs a [tls] section with cert and key";
    let s = &config.stomp;
    let users = [
        (s.tls_bind.is_some(), "stomp.tls_bind", NEEDS),
        (s.wss_bind.is_some(), "stomp.wss_bind", NEEDS),
        (config.admin.as_ref().is_some_and(|a| a.tls), "admin.tls", NEEDS),
        (
            config.replication.tls,
            "replication.tls",
            "needs a [tls] section with cert and key: this broker's listener serves the link over TLS",
        ),
    ];
    for (wants, key, why) in users {
        check(!wants || config.tls.is_some(), key, why)?;
    }
    Ok(())
}
