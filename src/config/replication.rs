//! `[replication]`: a master and its slaves (`link/`), and how the link is secured.
//! Empty for a standalone broker. Paths are relative to the config file's folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{check, defaults, ByteSize, Endpoint, Secret};

/// `[replication]`: a master and its slaves. Empty for a standalone broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// This broker's replication listener: a master accepts slaves there, a slave
    /// answers the other brokers' probes there (and accepts slaves once promoted).
    pub bind: Option<Endpoint>,
    /// Where a master reaches this broker's replication listener, if not at `bind` (a
    /// proxy or NAT between them): a master that loses this slave probes there to learn
    /// whether the slave has taken over before it carries on alone.
    pub advertised_uri: Option<Endpoint>,
    /// The master this broker mirrors at start; set only on a slave. Once running, a
    /// slave follows whichever broker becomes the master.
    pub master_connector_uri: Option<Endpoint>,
    /// The other brokers' replication addresses. A broker configured as master asks
    /// them first and joins a live master as its slave, so a broker
    /// restarted after a failover rejoins with its config unchanged; a slave whose
    /// master cannot be reached asks them where the master is now.
    #[serde(default)]
    pub peers: Vec<Endpoint>,
    /// Slaves a master accepts at once; more are refused until one leaves.
    #[serde(default = "defaults::max_slaves")]
    pub max_slaves: usize,
    /// Concurrent streams a slave copies the master's store over when it holds nothing
    /// the master can append to (an empty or stale slave).
    #[serde(default = "defaults::sync_streams")]
    pub sync_streams: usize,
    /// Bytes a second such a copy takes at most, over all its streams (none: as fast as
    /// the disks and the network allow), to leave the master's disk to its clients.
    pub sync_max_rate: Option<ByteSize>,
    /// Slaves in sync a master needs to take persistent work (KahaDB's
    /// minimumReplicas); with fewer, persistent SENDs, ACKs and COMMITs wait.
    #[serde(default)]
    pub min_replicas: usize,
    /// How long work waits for `min_replicas` before its session gets an ERROR.
    #[serde(default = "defaults::min_replicas_timeout_ms")]
    pub min_replicas_timeout_ms: u64,
    /// Credentials the slave presents to its master.
    pub user: Option<String>,
    pub password: Option<Secret>,
    #[serde(default)]
    pub wait_for_slave: bool,
    #[serde(default)]
    pub shutdown_on_slave_failure: bool,
    #[serde(default)]
    pub shutdown_on_master_failure: bool,
    /// When this broker, as a slave, acknowledges a record; the master's receipts wait
    /// for that acknowledgement.
    #[serde(default)]
    pub slave_ack: SlaveAck,
    /// A slave that has not acknowledged a record within this time has failed.
    #[serde(default = "defaults::ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Interval of heart-beats on the replication link, both ways.
    #[serde(default = "defaults::repl_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Heart-beat intervals of silence after which the peer is declared dead.
    #[serde(default = "defaults::repl_heartbeat_misses")]
    pub heartbeat_misses: u32,
    /// The link over TLS, both ways: the listener serves `[tls]`'s certificate, and a
    /// broker dialling another (a slave's Hello, a copy stream, a probe) checks the
    /// certificate against `ca` before it sends anything, so no password crosses in
    /// clear. Every broker of a group sets it alike.
    #[serde(default)]
    pub tls: bool,
    /// The CA (PEM) that signed the other brokers' certificates; each certificate must
    /// name the host of the address it is dialled at.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// `replication.slave_ack`: what a slave's acknowledgement, and so a master's receipt,
/// promises about the slave's copy. The master's own copy is always fsynced first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlaveAck {
    /// The slave holds the record: its core has applied it, ahead of anything it does
    /// next (a promotion included), and handed it to its journal, which fsyncs in groups
    /// at most 50 ms or 2,048 records apart and never lags more than 8,192 acknowledged
    /// records. A receipt then survives the loss of either machine; only
    /// losing both before the slave's fsync can lose it. ActiveMQ's pure master/slave and
    /// Artemis acknowledge so.
    #[default]
    Received,
    /// The slave has fsynced the record: a receipt survives both machines losing power
    /// at once, at the cost of the slave's fsync on every receipt's path.
    Durable,
}

impl ReplicationConfig {
    /// Anchors relative paths at `base`, the config file's folder.
    pub(super) fn resolve(&mut self, base: &Path) {
        if let Some(ca) = self.ca.as_mut().filter(|ca| ca.is_relative()) {
            *ca = base.join(&*ca);
        }
    }

    /// Range and cross-field checks (`[tls]` for `tls = true` is `tls::validate`'s).
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let r = self;
        check(
            r.ack_timeout_ms >= 10,
            "replication.ack_timeout_ms",
            "must be at least 10",
        )?;
        check(
            r.heartbeat_ms >= 10,
            "replication.heartbeat_ms",
            "must be at least 10",
        )?;
        check(
            r.heartbeat_misses >= 1,
            "replication.heartbeat_misses",
            "must be at least 1",
        )?;
        // The link's silence is heartbeat_ms x heartbeat_misses (repl/, server/).
        check(
            r.heartbeat_ms
                .checked_mul(u64::from(r.heartbeat_misses))
                .is_some(),
            "replication.heartbeat_misses",
            "times replication.heartbeat_ms must fit in 64 bits",
        )?;
        check(
            (1..=64).contains(&r.max_slaves),
            "replication.max_slaves",
            "must be from 1 to 64",
        )?;
        check(
            (1..=16).contains(&r.sync_streams),
            "replication.sync_streams",
            "must be from 1 to 16",
        )?;
        // Slower, a stream would wait between fetches longer than a master waits for one.
        check(
            r.sync_max_rate.is_none_or(|rate| rate.bytes() >= 1 << 20),
            "replication.sync_max_rate",
            "must be at least 1MiB (a second)",
        )?;
        check(
            r.min_replicas <= r.max_slaves,
            "replication.min_replicas",
            "must be at most replication.max_slaves",
        )?;
        check(
            r.min_replicas_timeout_ms >= 1,
            "replication.min_replicas_timeout_ms",
            "must be at least 1",
        )?;
        check(
            r.peers.len() <= 64,
            "replication.peers",
            "must list at most 64 brokers",
        )?;
        if r.master_connector_uri.is_some() {
            check(
                r.user.is_some() == r.password.is_some(),
                "replication.user",
                "user and password go together",
            )?;
        }
        if r.tls {
            // Every broker of a pair may dial the link (`[tls]` is `tls::validate`'s).
            check(
                r.ca.is_some(),
                "replication.tls",
                "needs replication.ca, the CA that signed the other brokers' certificates",
            )?;
        }
        Ok(())
    }
}
