//! The replication group as one broker sees it: its role, the slave attached to it (on a
//! master), and how far receipts may be released. Pure: no I/O, no clock, no channel.
//!
//! This is the one state machine of replication. The role machine (`role::step`) decides
//! transitions; this type keeps, beside the role, everything the decisions depend on or
//! imply: the attached replica and its acknowledgements, whether receipts are frozen
//! while the role machine decides what a lost slave means, and since when this broker
//! has released receipts with one copy (`alone_since` in store.toml). The core owns one
//! `Group` and carries out the actions it returns.
//!
//! Invariants:
//! - A receipt for a record at or after `Replica::gate_from` is released only once the
//!   replica has acknowledged it (and the local journal holds it).
//! - When an in-sync replica is lost, nothing more is released until the role machine
//!   decides: either the broker stops, or it carries on alone, and then only after the
//!   first seq that goes out with one copy has been recorded (`alone_recorded`).
//! - A replica is in sync once it has acknowledged everything the master held durably
//!   when it attached; only then does the role machine count on it.

use super::role::{self, Action, Event, Policy, Role};
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
    /// Records from this seq on (the master's next seq at attach) need the slave's
    /// acknowledgement before their receipts; older ones were receipted without it.
    pub gate_from: Seq,
    /// The slave is in sync once it holds this seq.
    pub in_sync_at: Seq,
    pub in_sync: bool,
    /// Where the slave's replication listener will be if it promotes itself.
    pub advertised: Option<String>,
}

impl Replica {
    /// The highest seq whose receipt may go out as far as this replica is concerned,
    /// given the local journal's durable seq.
    pub fn release_point(&self, durable: Seq) -> Seq {
        durable.min(self.acked.max(self.gate_from.prev()))
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

/// What the core must do for the group, beyond the role machine's own actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The role machine took a step (to log): the role before, after, and why.
    Stepped { from: Role, to: Role, why: String },
    /// A role action, carried out by the core or passed on to the server.
    Role(Action),
    /// Tell the replica on `link` that the master now relies on it.
    TellInSync(LinkId),
    /// Record `alone_since` in store.toml, then call `alone_recorded`: receipts wait.
    RecordAloneSince(Seq),
    /// Receipts may be released again (call `Core::release_receipts`).
    Release,
}

/// The role, the replica, and the receipt gate, together.
#[derive(Debug)]
pub struct Group {
    role: Role,
    policy: Policy,
    replica: Option<Replica>,
    /// An in-sync replica was lost and the decision (stop, or carry on alone and record
    /// since when) is not complete: no receipt goes out meanwhile.
    frozen: bool,
    /// Set when an in-sync replica is lost: the first seq whose receipt may go out
    /// without its copy once the role machine says to carry on alone.
    alone_from: Option<Seq>,
    /// Receipts go out without a slave's copy (since start or promotion, or since the
    /// in-sync replica was lost); false while a replica is in sync.
    serving_alone: bool,
    /// The replication address of the replica lost last, for the probe.
    lost_address: Option<String>,
}

impl Group {
    pub fn new(policy: Policy) -> Group {
        Group {
            role: Role::Starting,
            policy,
            replica: None,
            frozen: false,
            alone_from: None,
            serving_alone: false,
            lost_address: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn replica(&self) -> Option<&Replica> {
        self.replica.as_ref()
    }

    /// Where the replica lost last said it would listen if it promoted itself.
    pub fn lost_address(&self) -> Option<&str> {
        self.lost_address.as_deref()
    }

    /// The highest seq whose receipt may go out: durable here and, with a replica
    /// attached, acknowledged by it. Nothing while frozen.
    pub fn release_point(&self, durable: Seq) -> Seq {
        if self.frozen {
            return Seq::ZERO;
        }
        match &self.replica {
            Some(replica) => replica.release_point(durable),
            None => durable,
        }
    }

    /// Steps the role machine; returns what to do, starting with the step itself.
    pub fn step(&mut self, event: &Event, next_seq: Seq) -> Vec<Step> {
        let (next, actions, why) = role::step(self.role, event, self.policy);
        let mut steps = vec![Step::Stepped {
            from: self.role,
            to: next,
            why,
        }];
        self.role = next;
        for action in actions {
            match action {
                Action::ContinueAlone => self.continue_alone(next_seq, &mut steps),
                Action::Promote => {
                    // The promoted broker serves alone from its epoch's first record on.
                    self.serving_alone = true;
                    self.frozen = false;
                    steps.push(Step::Role(Action::Promote));
                }
                other => steps.push(Step::Role(other)),
            }
        }
        steps
    }

    /// The role machine chose to go on without a replica.
    fn continue_alone(&mut self, next_seq: Seq, steps: &mut Vec<Step>) {
        let from = self
            .alone_from
            .take()
            .or((!self.serving_alone).then_some(next_seq));
        self.serving_alone = true;
        match from {
            // Recorded before any receipt goes out with one copy: a diverged tail past
            // it may hold receipted messages (see `catchup`).
            Some(seq) => steps.push(Step::RecordAloneSince(seq)),
            None => {
                self.frozen = false;
                steps.push(Step::Release);
            }
        }
    }

    /// `alone_since` is on disk: receipts may go out with one copy.
    pub fn alone_recorded(&mut self) -> Step {
        self.frozen = false;
        Step::Release
    }

    /// A slave asks to attach; `next_seq` is the master's next seq, `in_sync_at` what it
    /// must hold to be in sync.
    pub fn attach(
        &mut self,
        link: LinkId,
        next_seq: Seq,
        in_sync_at: Seq,
        advertised: Option<String>,
    ) -> Result<Vec<Step>, Refusal> {
        if self.replica.is_some() {
            return Err(Refusal {
                reason: "another slave is already attached".into(),
                retry: true,
            });
        }
        // While the role machine decides what the lost slave means (its probe), a new one
        // coming in sync could not be counted on: the decision may be to carry on alone.
        if self.frozen {
            return Err(Refusal {
                reason: "the master is deciding what its lost slave means".into(),
                retry: true,
            });
        }
        self.replica = Some(Replica {
            link,
            acked: Seq::ZERO,
            gate_from: next_seq,
            in_sync_at,
            in_sync: false,
            advertised,
        });
        Ok(self.step(&Event::SlaveAttached, next_seq))
    }

    /// The replica on `link` holds everything up to `seq`.
    pub fn acknowledged(&mut self, link: LinkId, seq: Seq, next_seq: Seq) -> Vec<Step> {
        let Some(replica) = self.replica.as_mut().filter(|r| r.link == link) else {
            return Vec::new();
        };
        replica.acked = replica.acked.max(seq);
        let mut steps = Vec::new();
        if !replica.in_sync && replica.acked >= replica.in_sync_at {
            replica.in_sync = true;
            self.serving_alone = false;
            steps.push(Step::TellInSync(link));
            steps.extend(self.step(&Event::SlaveInSync, next_seq));
        }
        steps.push(Step::Release);
        steps
    }

    /// The link to the replica failed. Receipts that waited for it stay held until the
    /// role machine decides.
    pub fn detached(&mut self, link: LinkId, why: String, next_seq: Seq) -> Vec<Step> {
        let Some(replica) = self.replica.take_if(|r| r.link == link) else {
            return Vec::new();
        };
        // Receipts up to its release point had its copy; after it, once the role machine
        // says to carry on alone, they will not. A replica never in sync was never relied
        // on: this broker was serving alone already.
        self.alone_from = replica
            .in_sync
            .then(|| replica.release_point(Seq::LAST).next());
        self.lost_address = replica.advertised;
        self.frozen = true;
        self.step(&Event::SlaveLost(why), next_seq)
    }
}

#[cfg(test)]
mod tests;
