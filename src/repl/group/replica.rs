//! One attached slave as its master sees it, the link that names it, and why an attach
//! may be refused.

use crate::journal::Seq;

/// Names one replication link, so a late message from a link that has ended is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// The master's view of one attached slave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub link: LinkId,
    /// The highest seq the slave holds (cumulative acknowledgement).
    pub acked: Seq,
    /// Set once the slave has caught up: receipts for records from this seq on wait for
    /// its acknowledgement. `None` while it catches up.
    pub gate_from: Option<Seq>,
    /// The slave has caught up once it holds this seq (what was durable at its attach).
    pub in_sync_at: Seq,
    /// The master's next seq at the attach: records from it on are shipped live; the
    /// ones before that were never on disk (non-persistent) it can never hold, so once
    /// caught up it counts as holding everything before this.
    pub live_from: Seq,
    pub in_sync: bool,
    /// Where the slave's replication listener is: probed when it is lost, and told to
    /// the other slaves as its place in the succession.
    pub advertised: Option<String>,
    /// Bytes of records shipped and not acknowledged, and the age of the oldest (ms), as
    /// the link last measured them: for the status line only.
    pub lag_bytes: u64,
    pub lag_ms: u64,
}

impl Replica {
    /// A slave that has just attached: nothing acknowledged, catching up.
    pub fn new(
        link: LinkId,
        in_sync_at: Seq,
        live_from: Seq,
        advertised: Option<String>,
    ) -> Replica {
        Replica {
            link,
            acked: Seq::ZERO,
            gate_from: None,
            in_sync_at,
            live_from,
            in_sync: false,
            advertised,
            lag_bytes: 0,
            lag_ms: 0,
        }
    }

    /// The highest seq whose receipt may go out as far as this replica is concerned,
    /// given the local journal's durable seq.
    pub fn release_point(&self, durable: Seq) -> Seq {
        match self.gate_from {
            Some(from) => durable.min(self.acked.max(from.prev())),
            None => durable,
        }
    }

    /// Its state, for the status line.
    pub fn state(&self) -> &'static str {
        match (self.in_sync, self.gate_from) {
            (true, _) => "in-sync",
            (false, Some(_)) => "joining",
            (false, None) => "catching-up",
        }
    }
}

/// Why a slave's attach was refused, and whether trying again later can succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub retry: bool,
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal {
            reason,
            retry: false,
        }
    }
}
