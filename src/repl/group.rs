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
mod tests {
    use super::*;

    const MASTER: Policy = Policy {
        is_slave: false,
        wait_for_slave: false,
        shutdown_on_slave_failure: false,
        shutdown_on_master_failure: false,
    };

    /// The steps to carry out, without the log entries.
    fn work(steps: Vec<Step>) -> Vec<Step> {
        steps
            .into_iter()
            .filter(|s| !matches!(s, Step::Stepped { .. }))
            .collect()
    }

    fn started(policy: Policy) -> Group {
        let mut group = Group::new(policy);
        group.step(&Event::Started, Seq(1));
        group
    }

    /// Receipt release: the local journal's durable seq × the replica's acknowledgement ×
    /// the role. Records 1..=10 predate the replica's attach (gate from 11); it is in sync
    /// once it holds 10.
    #[test]
    fn receipts_are_released_only_where_disk_and_replica_agree() {
        #[derive(Debug, Clone, Copy)]
        enum Replica {
            None,
            CatchingUp(u64),
            InSync(u64),
            LostInSync,
            LostInSyncCarryingOn,
        }
        #[rustfmt::skip]
        let table = [
            // (replica state, durable, expected release point)
            (Replica::None, 15, 15),
            (Replica::CatchingUp(0), 15, 10),
            (Replica::CatchingUp(0), 8, 8),
            (Replica::CatchingUp(9), 15, 10),
            (Replica::InSync(12), 15, 12),
            (Replica::InSync(15), 12, 12),
            (Replica::InSync(20), 20, 20),
            // Lost while in sync at 13: nothing is released until the decision is
            // recorded, then the disk alone.
            (Replica::LostInSync, 15, 0),
            (Replica::LostInSyncCarryingOn, 15, 15),
        ];
        for (state, durable, expected) in table {
            let mut group = started(MASTER);
            let link = LinkId(1);
            if !matches!(state, Replica::None) {
                group.attach(link, Seq(11), Seq(10), None).unwrap();
            }
            match state {
                Replica::None => {}
                Replica::CatchingUp(acked) => {
                    group.acknowledged(link, Seq(acked), Seq(16));
                    assert!(!group.replica().unwrap().in_sync);
                }
                Replica::InSync(acked) => {
                    group.acknowledged(link, Seq(acked), Seq(21));
                    assert_eq!(group.role(), Role::MasterWithSlave);
                }
                Replica::LostInSync | Replica::LostInSyncCarryingOn => {
                    group.acknowledged(link, Seq(13), Seq(16));
                    let steps = work(group.detached(link, "closed".into(), Seq(16)));
                    assert_eq!(steps, vec![Step::Role(Action::ProbeSlave)]);
                    assert_eq!(group.role(), Role::MasterCheckingSlave);
                }
            }
            if matches!(state, Replica::LostInSyncCarryingOn) {
                let steps = work(group.step(&Event::SlaveGone("refused".into()), Seq(16)));
                // The first seq that goes out with one copy is the one after the last the
                // replica acknowledged; it is recorded before anything is released.
                assert_eq!(steps, vec![Step::RecordAloneSince(Seq(14))]);
                assert_eq!(group.release_point(Seq(durable)), Seq::ZERO);
                assert_eq!(group.alone_recorded(), Step::Release);
            }
            assert_eq!(
                group.release_point(Seq(durable)),
                Seq(expected),
                "{state:?} with durable {durable}"
            );
        }
    }

    #[test]
    fn a_replica_is_told_once_that_it_is_in_sync_and_the_master_stops_serving_alone() {
        let mut group = started(MASTER);
        assert_eq!(group.role(), Role::MasterAlone);
        group.attach(LinkId(4), Seq(101), Seq(100), None).unwrap();
        assert!(work(group.acknowledged(LinkId(4), Seq(99), Seq(101))) == vec![Step::Release]);
        assert_eq!(
            work(group.acknowledged(LinkId(4), Seq(100), Seq(101))),
            vec![
                Step::TellInSync(LinkId(4)),
                Step::Role(Action::RecordInSync),
                Step::Release
            ]
        );
        assert_eq!(
            work(group.acknowledged(LinkId(4), Seq(101), Seq(102))),
            vec![Step::Release]
        );
        // A late message from another link changes nothing.
        assert!(group.acknowledged(LinkId(3), Seq(500), Seq(102)).is_empty());
        assert!(group.detached(LinkId(3), "old".into(), Seq(102)).is_empty());
        assert_eq!(
            group.attach(LinkId(5), Seq(102), Seq(101), None),
            Err(Refusal {
                reason: "another slave is already attached".into(),
                retry: true
            })
        );
    }

    #[test]
    fn losing_a_replica_that_never_came_in_sync_releases_at_once() {
        let mut group = started(MASTER);
        group.attach(LinkId(1), Seq(11), Seq(10), None).unwrap();
        let steps = work(group.detached(LinkId(1), "closed".into(), Seq(20)));
        assert_eq!(steps, vec![Step::Release]);
        assert_eq!(group.release_point(Seq(19)), Seq(19));
    }

    #[test]
    fn a_strict_master_stops_without_releasing_what_waited_for_its_replica() {
        let mut group = started(Policy {
            shutdown_on_slave_failure: true,
            ..MASTER
        });
        group.attach(LinkId(1), Seq(1), Seq(0), None).unwrap();
        group.acknowledged(LinkId(1), Seq(3), Seq(6));
        let steps = work(group.detached(LinkId(1), "closed".into(), Seq(6)));
        assert_eq!(
            steps,
            vec![Step::Role(Action::Exit(role::EXIT_SLAVE_FAILED))]
        );
        assert_eq!(group.release_point(Seq(5)), Seq::ZERO);
    }

    #[test]
    fn a_promoted_slave_serves_alone_and_records_it_when_a_new_replica_is_lost() {
        let mut group = started(Policy {
            is_slave: true,
            ..MASTER
        });
        for event in [
            Event::MasterReached,
            Event::InSyncWithMaster,
            Event::MasterLost("closed".into()),
        ] {
            group.step(&event, Seq(50));
        }
        let steps = group.step(&Event::MasterGone("refused".into()), Seq(50));
        assert_eq!(group.role(), Role::MasterAlone);
        assert!(steps.contains(&Step::Role(Action::Promote)));
        // Serving alone already: a replica that never came in sync is forgotten at once.
        group.attach(LinkId(9), Seq(51), Seq(50), None).unwrap();
        assert_eq!(
            work(group.detached(LinkId(9), "closed".into(), Seq(60))),
            vec![Step::Release]
        );
    }
}
