//! `[admin]`: the admin listener (web console, JSON API, Prometheus metrics), off when
//! the section is absent. Every request it serves is bounded by the limits here.

use serde::Deserialize;

use super::{check, ByteSize, Endpoint};

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the console, the API and `/metrics` listen (ActiveMQ's console port is 8161).
    pub bind: Endpoint,
    /// HTTPS with `[tls]`'s certificate (and its `client_ca`, if set), so the admin's
    /// login never crosses in clear.
    #[serde(default)]
    pub tls: bool,
    /// `/metrics` without a login, for a Prometheus that scrapes without one.
    #[serde(default)]
    pub metrics_public: bool,
    /// Admin connections held at once; past it new ones get a 503 and are closed.
    #[serde(default = "max_connections")]
    pub max_connections: usize,
    /// A request's line and headers, and how many headers.
    #[serde(default = "max_head")]
    pub max_head: ByteSize,
    #[serde(default = "max_headers")]
    pub max_headers: usize,
    /// A request's body (no admin call needs one; this bounds what a client may send).
    #[serde(default = "max_body")]
    pub max_body: ByteSize,
    /// A connection must send its whole request within this many ms, and an answer that
    /// waits on the journal or the replicas (purge, delete, move) gives up after it.
    #[serde(default = "request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Most messages one browse returns.
    #[serde(default = "max_browse")]
    pub max_browse: usize,
    /// Most message bytes one browse reads and returns: later messages are listed
    /// without their bodies.
    #[serde(default = "max_browse_bytes")]
    pub max_browse_bytes: ByteSize,
}

fn max_connections() -> usize {
    64
}
fn max_head() -> ByteSize {
    ByteSize(16 << 10)
}
fn max_headers() -> usize {
    64
}
fn max_body() -> ByteSize {
    ByteSize(64 << 10)
}
fn request_timeout_ms() -> u64 {
    10_000
}
fn max_browse() -> usize {
    1000
}
fn max_browse_bytes() -> ByteSize {
    ByteSize(4 << 20)
}

impl AdminConfig {
    pub(super) fn validate(
        &self,
        users: &[super::User],
    ) -> std::result::Result<(), (&'static str, String)> {
        check(
            users.iter().any(|user| user.admin),
            "admin.bind",
            "needs a [[users]] entry with admin = true (the console and API ask for its login)",
        )?;
        check(
            (1..=10_000).contains(&self.max_connections),
            "admin.max_connections",
            "must be from 1 to 10000",
        )?;
        check(
            (1024..=1 << 20).contains(&self.max_head.bytes()),
            "admin.max_head",
            "must be from 1KiB to 1MiB",
        )?;
        check(
            (8..=1000).contains(&self.max_headers),
            "admin.max_headers",
            "must be from 8 to 1000",
        )?;
        check(
            self.max_body.bytes() <= 16 << 20,
            "admin.max_body",
            "must be at most 16MiB",
        )?;
        check(
            self.request_timeout_ms >= 100,
            "admin.request_timeout_ms",
            "must be at least 100",
        )?;
        check(
            (1..=100_000).contains(&self.max_browse),
            "admin.max_browse",
            "must be from 1 to 100000",
        )?;
        check(
            (1024..=1 << 30).contains(&self.max_browse_bytes.bytes()),
            "admin.max_browse_bytes",
            "must be from 1KiB to 1GiB",
        )
    }

    pub fn limits(&self) -> crate::http::Limits {
        crate::http::Limits {
            max_head: self.max_head.bytes(),
            max_headers: self.max_headers,
            max_body: self.max_body.bytes(),
        }
    }
}
