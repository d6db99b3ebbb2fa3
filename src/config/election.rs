//! `[election]`: the master elected through ZooKeeper (`election/`). Every broker of a
//! group has the same kind of config: its name, data dir, client and replication binds,
//! and this section; no `master_connector_uri`, no `peers`.

use serde::Deserialize;

use super::check;

/// `[election]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElectionConfig {
    /// The ensemble: `host:port,host:port,...`.
    pub zookeeper: String,
    /// The group's node: every broker of one group names the same, no two groups share it.
    pub path: String,
    /// How long ZooKeeper keeps a broker's session after it falls silent: a dead
    /// master's node goes after this, and then a slave takes over. The servers bound it
    /// (by default from 2 to 20 ticks).
    #[serde(default = "session_timeout_ms")]
    pub session_timeout_ms: u64,
}

fn session_timeout_ms() -> u64 {
    1500
}

impl ElectionConfig {
    pub(super) fn validate(
        &self,
        replication: &super::ReplicationConfig,
    ) -> std::result::Result<(), (&'static str, String)> {
        check(
            !self.zookeeper.trim().is_empty()
                && self.zookeeper.split(',').all(|server| {
                    server
                        .trim()
                        .rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                }),
            "election.zookeeper",
            "must list the ensemble as host:port,host:port,...",
        )?;
        check(
            self.path.starts_with('/') && self.path.len() > 1 && !self.path.ends_with('/'),
            "election.path",
            "must be a ZooKeeper path such as /mirrormq/orders",
        )?;
        check(
            (200..=60_000).contains(&self.session_timeout_ms),
            "election.session_timeout_ms",
            "must be from 200 to 60000",
        )?;
        check(
            replication.bind.is_some(),
            "replication.bind",
            "is needed with [election]: the elected master's slaves attach there",
        )?;
        check(
            replication.master_connector_uri.is_none(),
            "replication.master_connector_uri",
            "must not be set with [election]: the election says who the master is",
        )?;
        check(
            replication.peers.is_empty(),
            "replication.peers",
            "must not be set with [election]: ZooKeeper knows the group",
        )
    }

    pub fn session_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.session_timeout_ms)
    }
}
