//! Who should be master, decided from what ZooKeeper shows: pure, no session, no clock.
//!
//! The ZooKeeper election (`[election]`, driven by `election/`). Under the group's path, ZooKeeper holds (see `zk.rs` for the operations):
//! - `master`: ephemeral, the elected master's name, replication address and epoch; it
//!   goes with the master's session.
//! - `epoch`: the last epoch claimed; a claim writes it at the version it read, in the
//!   same transaction that creates `master`, so two claims of one epoch cannot both win.
//! - `isr`: the replication addresses of the brokers that hold every receipted record
//!   (the master first), in the order they came in sync
//!   (Kafka's in-sync replicas): the master writes it before it counts on a slave and
//!   before it releases receipts without a lost one, and a claim resets it to the
//!   claimant alone.
//! - `candidates/NAME`: ephemeral, each live broker's replication address and position.
//!
//! `decide` says what one broker does with that view: follow the master there is, claim
//! (it is the first live broker of the in-sync set, or, before any master, the most
//! advanced store), or wait (for the master's node to go, or for a broker that may claim).

use std::fmt;

use crate::journal::{Epoch, Seq};

/// A live broker as its `candidates/NAME` node says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub replication: String,
    /// The last record its store holds.
    pub epoch: Epoch,
    pub seq: Seq,
}

/// The `master` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterNode {
    pub name: String,
    pub replication: String,
    pub epoch: Epoch,
}

/// What one broker read from ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    pub master: Option<MasterNode>,
    /// The `epoch` node's value and version.
    pub epoch: Option<(Epoch, i32)>,
    /// The `isr` node's replication addresses and version.
    pub isr: Option<(Vec<String>, i32)>,
    pub candidates: Vec<Candidate>,
}

/// What the broker does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Attach as a slave to the master at this replication address.
    Follow { replication: String, epoch: Epoch },
    /// Claim `epoch`: write it at `epoch_version` (create the node if `None`), create
    /// `master`, reset `isr` to this broker at `isr_version` (create if `None`).
    Claim {
        epoch: Epoch,
        epoch_version: Option<i32>,
        isr_version: Option<i32>,
    },
    /// Nothing to do until ZooKeeper shows a change; why, for the log.
    Wait(String),
}

/// What `me` does, given `view`.
pub fn decide(me: &Candidate, view: &View) -> Decision {
    if let Some(master) = &view.master {
        if master.name == me.name {
            // A node of an earlier session of ours, not yet expired: once it goes, the
            // election runs again.
            return Decision::Wait(format!(
                "the master node names this broker from an earlier session (epoch {}); waiting for it to expire",
                master.epoch
            ));
        }
        return Decision::Follow {
            replication: master.replication.clone(),
            epoch: master.epoch,
        };
    }
    let live = |address: &str| view.candidates.iter().find(|c| c.replication == address);
    let chosen = match &view.isr {
        Some((isr, _)) if !isr.is_empty() => {
            // Only a broker that holds every receipted record may take over: the first
            // in-sync one that is running (they came in sync in this order).
            match isr.iter().find_map(|address| live(address)) {
                Some(first) => first,
                None => {
                    return Decision::Wait(format!(
                        "no master, and none of the brokers that hold every receipted record ({}) is running",
                        isr.join(", ")
                    ))
                }
            }
        }
        // No master ever (or an empty set): the most advanced store, then the first name.
        _ => match view
            .candidates
            .iter()
            .max_by(|a, b| (a.epoch, a.seq, &b.name).cmp(&(b.epoch, b.seq, &a.name)))
        {
            Some(best) => best,
            None => return Decision::Wait("no broker is registered yet".into()),
        },
    };
    if chosen.name != me.name {
        return Decision::Wait(format!("{} is the one to take over", chosen.name));
    }
    let claimed = view.epoch.map_or(Epoch::FIRST, |(epoch, _)| epoch);
    Decision::Claim {
        epoch: claimed.max(me.epoch).next(),
        epoch_version: view.epoch.map(|(_, version)| version),
        isr_version: view.isr.as_ref().map(|(_, version)| *version),
    }
}

impl fmt::Display for MasterNode {
    /// The node's text: readable with zkCli (`get /mirrormq/GROUP/master`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "name={}\nreplication={}\nepoch={}\n",
            self.name, self.replication, self.epoch
        )
    }
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "name={}\nreplication={}\nepoch={}\nseq={}\n",
            self.name, self.replication, self.epoch, self.seq
        )
    }
}

/// The `key=value` lines of a node's text.
fn field<'a>(text: &'a str, key: &str) -> Result<&'a str, String> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .ok_or_else(|| format!("no {key} in {text:?}"))
}

fn number(text: &str, key: &str) -> Result<u64, String> {
    let value = field(text, key)?;
    value
        .parse()
        .map_err(|_| format!("{key}={value:?} is not a number"))
}

/// A node's data as text.
fn utf8(data: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(data).map_err(|_| "not UTF-8".to_string())
}

impl MasterNode {
    pub fn parse(data: &[u8]) -> Result<MasterNode, String> {
        let text = utf8(data)?;
        Ok(MasterNode {
            name: field(text, "name")?.to_string(),
            replication: field(text, "replication")?.to_string(),
            epoch: Epoch(number(text, "epoch")?),
        })
    }
}

impl Candidate {
    pub fn parse(data: &[u8]) -> Result<Candidate, String> {
        let text = utf8(data)?;
        Ok(Candidate {
            name: field(text, "name")?.to_string(),
            replication: field(text, "replication")?.to_string(),
            epoch: Epoch(number(text, "epoch")?),
            seq: Seq(number(text, "seq")?),
        })
    }
}

/// The `isr` node's text: one replication address a line.
pub fn isr_text(addresses: &[String]) -> String {
    addresses
        .iter()
        .map(|address| format!("{address}\n"))
        .collect()
}

pub fn parse_isr(data: &[u8]) -> Result<Vec<String>, String> {
    Ok(utf8(data)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests;
