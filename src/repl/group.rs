//! The replication group as one broker sees it: its role, the slaves attached to it (on
//! a master), the succession its master told it (on a slave), and how far receipts may be
//! released. Pure: no I/O, no clock, no channel.
//!
//! This is the one state machine of replication. The role machine (`role::step`) decides
//! transitions; this type keeps, beside the role, everything the decisions depend on or
//! imply: the attached replicas and their acknowledgements, the in-sync set in the order
//! its members came in sync (the succession), whether receipts are frozen while the role
//! machine decides what a lost slave means, and since when this broker has released
//! receipts with one copy (`alone_since` in store.toml). The core owns one `Group` and
//! carries out the steps it returns.
//!
//! Invariants:
//! - A replica catching up holds nothing up: the master serves on while it copies.
//! - Once it has caught up (it holds `in_sync_at`), receipts for records after those
//!   already released wait for it too (`gate_from`); once it holds everything released,
//!   it is in sync: it joins the succession and is told so.
//! - A receipt is released only once every gating replica acknowledged its record (and
//!   the local journal holds it): every in-sync slave holds every receipted record, so
//!   any of them may take over.
//! - When an in-sync replica is lost, nothing more is released until the role machine
//!   decides: the broker stops, or goes on with the others, or alone, and then only after
//!   the first seq that goes out with one copy has been recorded (`alone_recorded`).

use super::role::{self, Action, Event, Policy, Role};
use crate::journal::Seq;

mod replica;
pub use replica::{LinkId, Refusal, Replica};

/// What the core must do for the group, beyond the role machine's own actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The role machine took a step (to log): the role before, after, and why.
    Stepped { from: Role, to: Role, why: String },
    /// A role action, carried out by the core or passed on to the server.
    Role(Action),
    /// Tell the replica on `link` that the master now relies on it.
    TellInSync(LinkId),
    /// Tell every attached replica the succession: the in-sync slaves' addresses, first
    /// to take over first.
    TellSuccession(Vec<String>),
    /// Probe these lost slaves' addresses for a master; step `SlaveTookOver` or
    /// `SlaveGone` with the answer.
    ProbeSlaves(Vec<String>),
    /// Our master is lost (or stopping): probe it if `master`, then the succession.
    CheckSuccession {
        master: bool,
        succession: Vec<String>,
    },
    /// Record `alone_since` in store.toml, then call `alone_recorded`: receipts wait.
    RecordAloneSince(Seq),
    /// Receipts may be released again (call `Core::release_receipts`).
    Release,
}

/// The role, the replicas, and the receipt gate, together.
#[derive(Debug)]
pub struct Group {
    role: Role,
    policy: Policy,
    /// Attached replicas, in the order they attached.
    replicas: Vec<Replica>,
    /// The in-sync replicas, in the order they came in sync: the succession.
    succession: Vec<LinkId>,
    /// An in-sync replica was lost and the decision is not complete: no receipt goes
    /// out meanwhile.
    frozen: bool,
    /// Set when an in-sync replica is lost: the first seq whose receipt may go out
    /// without its copy, should the role machine say to carry on alone.
    alone_from: Option<Seq>,
    /// Receipts go out without a slave's copy (since start or promotion, or since the
    /// last in-sync replica was lost); false while a replica is in sync.
    serving_alone: bool,
    /// Lost in-sync replicas' addresses not probed yet.
    to_probe: Vec<String>,
    /// The highest release point handed out: every receipt sent is at or below it.
    released: Seq,
    /// On a slave: the succession its master told it last.
    told_succession: Vec<String>,
    /// The election's session is not known to be alive (`[election]`): another broker
    /// may be elected soon, so no receipt goes out.
    fenced: bool,
}

impl Group {
    pub fn new(policy: Policy) -> Group {
        Group {
            role: Role::Starting,
            policy,
            replicas: Vec::new(),
            succession: Vec::new(),
            frozen: false,
            alone_from: None,
            serving_alone: false,
            to_probe: Vec::new(),
            released: Seq::ZERO,
            told_succession: Vec::new(),
            fenced: false,
        }
    }

    /// Fences receipts off (`true`: the election's session is lost for now) or lets them
    /// out again; returns the release to carry out.
    pub fn fence(&mut self, fenced: bool) -> Step {
        self.fenced = fenced;
        Step::Release
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Slaves in sync now.
    pub fn in_sync_count(&self) -> usize {
        self.succession.len()
    }

    /// In-sync slaves this master needs: one to count as replicated, or `min_replicas`.
    fn needed(&self) -> usize {
        self.policy.min_replicas.max(1)
    }

    /// The attached replicas, in the order they attached.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    /// Whether a replica is still catching up (reading the journal's segments).
    pub fn any_catching_up(&self) -> bool {
        self.replicas.iter().any(|r| !r.in_sync)
    }

    /// The in-sync replicas' addresses, first to take over first.
    pub fn succession_addresses(&self) -> Vec<String> {
        self.succession
            .iter()
            .filter_map(|link| self.replicas.iter().find(|r| r.link == *link))
            .filter_map(|r| r.advertised.clone())
            .collect()
    }

    /// The highest seq whose receipt may go out: durable here and acknowledged by every
    /// gating replica. Nothing new while frozen.
    pub fn release_point(&mut self, durable: Seq) -> Seq {
        if self.frozen || self.fenced {
            return self.released;
        }
        let point = self
            .replicas
            .iter()
            .map(|r| r.release_point(durable))
            .min()
            .unwrap_or(durable);
        self.released = self.released.max(point);
        self.released
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
                Action::Resume => {
                    self.alone_from = None;
                    self.frozen = false;
                    steps.push(Step::Release);
                }
                Action::Promote => {
                    // The promoted broker serves alone from its epoch's first record on.
                    self.serving_alone = true;
                    self.frozen = false;
                    self.told_succession.clear();
                    steps.push(Step::Role(Action::Promote));
                }
                Action::ProbeSlave => self.probe_lost(&mut steps),
                Action::ProbeMaster | Action::CheckSuccession => {
                    steps.push(Step::CheckSuccession {
                        master: action == Action::ProbeMaster,
                        succession: self.told_succession.clone(),
                    })
                }
                other => steps.push(Step::Role(other)),
            }
        }
        steps
    }

    fn probe_lost(&mut self, steps: &mut Vec<Step>) {
        steps.push(Step::ProbeSlaves(std::mem::take(&mut self.to_probe)));
    }

    /// The answer to `ProbeSlaves`: no master at those addresses. Lost slaves not probed
    /// yet are probed before the role machine hears it.
    pub fn slaves_gone(&mut self, why: String, next_seq: Seq) -> Vec<Step> {
        if !self.to_probe.is_empty() {
            let mut steps = Vec::new();
            self.probe_lost(&mut steps);
            return steps;
        }
        let others_in_sync = !self.succession.is_empty();
        self.step(
            &Event::SlaveGone {
                why,
                others_in_sync,
            },
            next_seq,
        )
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
    /// must hold to have caught up.
    pub fn attach(
        &mut self,
        link: LinkId,
        next_seq: Seq,
        in_sync_at: Seq,
        advertised: Option<String>,
    ) -> Result<Vec<Step>, Refusal> {
        if !self.role.is_master() {
            return Err(Refusal {
                reason: format!("this broker is not a master (it is {})", self.role),
                retry: true,
            });
        }
        if self.replicas.len() >= self.policy.max_slaves {
            return Err(Refusal {
                reason: format!(
                    "{} slaves are attached already (replication.max_slaves)",
                    self.replicas.len()
                ),
                retry: true,
            });
        }
        // While the role machine decides what a lost slave means (its probe), a new one
        // coming in sync could not be counted on: the decision may be to stop.
        if self.frozen {
            return Err(Refusal {
                reason: "the master is deciding what its lost slave means".into(),
                retry: true,
            });
        }
        self.replicas
            .push(Replica::new(link, in_sync_at, next_seq, advertised));
        let mut steps = self.step(&Event::SlaveAttached, next_seq);
        // With nothing to catch up on, it is caught up already: no record may ever come
        // to acknowledge (the master's last ones were non-persistent, and persistent work
        // may be held for want of this very slave, `min_replicas`).
        steps.extend(self.acknowledged(link, Seq::ZERO, next_seq));
        Ok(steps)
    }

    /// The replica on `link` holds everything up to `seq`.
    pub fn acknowledged(&mut self, link: LinkId, seq: Seq, next_seq: Seq) -> Vec<Step> {
        let released = self.released;
        let Some(replica) = self.replicas.iter_mut().find(|r| r.link == link) else {
            return Vec::new();
        };
        replica.acked = replica.acked.max(seq);
        if replica.acked >= replica.in_sync_at {
            // Caught up: what it lacks before the live stream was never on disk.
            replica.acked = replica.acked.max(replica.live_from.prev());
        }
        if replica.gate_from.is_none() && replica.acked >= replica.in_sync_at {
            // Caught up: from here on receipts also wait for it, so it never falls
            // behind what is released again.
            replica.gate_from = Some(released.next());
        }
        let mut steps = Vec::new();
        let joined = replica
            .gate_from
            .is_some_and(|from| !replica.in_sync && replica.acked >= from.prev());
        if joined {
            replica.in_sync = true;
            self.succession.push(link);
            self.serving_alone = false;
            self.alone_from = None;
            // The succession first: a slave that knows it is in sync knows who else is.
            steps.push(Step::TellSuccession(self.succession_addresses()));
            steps.push(Step::TellInSync(link));
            // With wait_for_slave, the client port opens once as many are in sync as the
            // master needs.
            let waits = self.role == Role::WaitingForSlave && self.succession.len() < self.needed();
            if !waits {
                steps.extend(self.step(&Event::SlaveInSync, next_seq));
            }
        }
        steps.push(Step::Release);
        steps
    }

    /// The link to a replica failed. Receipts that waited for an in-sync one stay held
    /// until the role machine decides.
    pub fn detached(&mut self, link: LinkId, why: String, next_seq: Seq) -> Vec<Step> {
        let Some(index) = self.replicas.iter().position(|r| r.link == link) else {
            return Vec::new();
        };
        let replica = self.replicas.remove(index);
        if !replica.in_sync {
            // Never counted on: nothing to decide; what it held up (while joining) goes.
            let why = format!("catching-up slave lost ({why})");
            return vec![
                Step::Stepped {
                    from: self.role,
                    to: self.role,
                    why,
                },
                Step::Release,
            ];
        }
        self.succession.retain(|l| *l != link);
        // Receipts up to the point released had its copy; after it, once the role
        // machine says to carry on alone, they will not.
        self.alone_from.get_or_insert(self.released.next());
        self.to_probe.extend(replica.advertised);
        self.frozen = true;
        let enough_left = self.succession.len() >= self.needed();
        let mut steps = self.step(&Event::SlaveLost { why, enough_left }, next_seq);
        steps.push(Step::TellSuccession(self.succession_addresses()));
        steps
    }

    /// The link's measure of how far the replica on `link` is behind.
    pub fn lag(&mut self, link: LinkId, bytes: u64, ms: u64) {
        if let Some(replica) = self.replicas.iter_mut().find(|r| r.link == link) {
            replica.lag_bytes = bytes;
            replica.lag_ms = ms;
        }
    }

    /// On a slave: the succession its master told it last.
    pub fn told_succession(&self) -> &[String] {
        &self.told_succession
    }

    /// On a slave: the master told us the succession.
    pub fn told(&mut self, succession: Vec<String>) {
        self.told_succession = succession;
    }
}

#[cfg(test)]
mod tests;
