//! The core's part in replication: attaching a slave (master side), applying the
//! master's records (slave side), promotion, and the role machine's actions.
//!
//! The core owns the seq, so it alone can fix the point where a slave's catch-up ends
//! and its live stream begins: records below `next_seq` at attach time are read from
//! the journal by the link, records from `next_seq` on are shipped live by `append`.

use super::{Attached, Core, Output, Store};
use crate::broker::Op;
use crate::config::SlaveAck;
use crate::journal::{EpochStart, Pace, Record, Seq};
use crate::repl::catchup::{self, MasterView};
use crate::repl::group::LinkId;
use crate::repl::message::{CatchUp, Standing};
use crate::repl::role::{Action, Event, Role};

/// With `slave_ack = "received"`, how many records a slave may acknowledge beyond what its
/// own disk holds: as many as its journal writer's queue. A slave whose disk falls further
/// behind holds its acknowledgements back, so the master's flow control, and in the end
/// its `ack_timeout_ms`, see a slow disk rather than a slave piling up records.
pub(super) const MAX_ACKED_AHEAD_OF_DISK: u64 = 8192;

/// The last seq a slave holds and may acknowledge: what it applied, bounded by its disk.
pub(super) fn held(next_seq: Seq, durable_seq: Seq) -> Seq {
    next_seq
        .prev()
        .min(durable_seq.saturating_add(MAX_ACKED_AHEAD_OF_DISK))
}

impl Core {
    /// A slave asks to attach: plan its catch-up, or refuse it.
    pub(super) fn attach(&mut self, link: LinkId, standing: &Standing, advertised: Option<String>) {
        let view = MasterView {
            store_id: &self.store_id,
            epochs: &self.epochs,
            next_seq: self.next_seq,
            first_retained: self.log.first_retained(),
        };
        let catch_up = match catchup::plan(&view, standing) {
            Ok(plan) => plan,
            Err(why) => {
                let result = Err(why.into());
                return self.out.push(Output::Attached { link, result });
            }
        };
        if let CatchUp::Replace { .. } = catch_up {
            // The slave copies the segment files first (`link::copy`), unattached, and
            // says Hello again with the copy: nothing to plan or hold for it here.
            let result = Ok(self.attached(catch_up, self.next_seq.prev()));
            return self.out.push(Output::Attached { link, result });
        }
        // Non-durable records below `next_seq` are not on disk to be caught up.
        let in_sync_at = self.log.last_durable_seq().max(catch_up.from().prev());
        let steps = match self
            .group
            .attach(link, self.next_seq, in_sync_at, advertised)
        {
            Ok(steps) => steps,
            Err(refusal) => {
                let result = Err(refusal);
                return self.out.push(Output::Attached { link, result });
            }
        };
        // The link reads segments while it catches the slave up.
        self.hold_deletions();
        let attached = self.attached(catch_up, in_sync_at);
        self.pending_attach.push((link, attached));
        self.carry_out(steps);
        self.complete_attach();
    }

    /// What a slave's link is told of its attach: this store, its plan, and where the
    /// live records begin.
    fn attached(&self, catch_up: CatchUp, in_sync_at: Seq) -> Attached {
        Attached {
            store_id: self.store_id.clone(),
            epochs: self.epochs.clone(),
            catch_up,
            next_seq: self.next_seq,
            in_sync_at,
        }
    }

    /// Hands each attach to its link once every catch-up record is on disk.
    pub(super) fn complete_attach(&mut self) {
        let durable = self.durable_seq;
        let (ready, waiting) = std::mem::take(&mut self.pending_attach)
            .into_iter()
            .partition(|(_, attached)| durable.next() >= attached.next_seq);
        self.pending_attach = waiting;
        for (link, attached) in ready {
            let result: Result<Attached, _> = Ok(attached);
            self.out.push(Output::Attached { link, result });
        }
    }

    /// Journal segments are kept while any replica may still read them for its catch-up.
    pub(super) fn hold_deletions(&mut self) {
        let out = &mut self.out;
        self.log
            .hold_deletions(self.group.any_catching_up(), |command| {
                out.push(Output::Journal(command))
            });
    }

    /// The link to a slave failed (a link the group does not know changes nothing).
    pub(super) fn detach(&mut self, link: LinkId, why: String) {
        self.pending_attach.retain(|(pending, _)| *pending != link);
        let steps = self.group.detached(link, why, self.next_seq);
        self.hold_deletions();
        self.carry_out(steps);
    }

    /// Our master welcomed us: mirror into `store` (recovered afresh after the store was
    /// made the master's), at the pace `slave_ack` allows.
    pub(super) fn welcomed(&mut self, store: Box<Store>) {
        let (store_id, epochs) = (store.store_id.clone(), store.epochs.clone());
        self.take_store(*store);
        self.mirror_from_now(store_id, epochs);
    }

    /// Takes a store recovered afresh (made the master's, or copied from it).
    pub(super) fn take_store(&mut self, store: Store) {
        let mirroring = self.broker.mirroring();
        self.broker = store.broker;
        self.broker.set_mirroring(mirroring);
        self.log = store.log;
        self.next_seq = store.next_seq;
        self.durable_seq = store.next_seq.prev();
        self.epoch = store.epochs.last().map_or(self.epoch, |e| e.epoch);
        self.store_id = store.store_id;
        self.epochs = store.epochs;
    }

    /// Our master welcomed us to append to the journal as it is: the store the core holds
    /// is the one a recovery would rebuild, but for messages that were never journaled,
    /// which a recovery drops and the master may have consumed meanwhile. (The journal
    /// settled before the dial and nothing was appended since.)
    pub(super) fn welcomed_in_place(&mut self, store_id: String, epochs: Vec<EpochStart>) {
        self.broker.drop_transient();
        self.durable_seq = self.next_seq.prev();
        self.mirror_from_now(store_id, epochs);
    }

    fn mirror_from_now(&mut self, store_id: String, epochs: Vec<EpochStart>) {
        self.epoch = epochs.last().map_or(self.epoch, |e| e.epoch);
        self.store_id = store_id;
        self.epochs = epochs;
        self.acked_to_master = None;
        self.mirroring_failed = false;
        // The sessions of a slave are none; receipts cannot be waiting.
        self.receipts.clear();
        // With "received" nobody waits for this journal's fsyncs while it mirrors.
        let pace = match self.slave_ack {
            SlaveAck::Received => Pace::Relaxed,
            SlaveAck::Durable => Pace::Eager,
        };
        self.out.push(Output::Pace(pace));
        // Its bodies stay in its journal until it is promoted (`Broker::set_mirroring`).
        self.broker.set_mirroring(true);
        self.role_event(Event::MasterReached);
        // The first acknowledgement says where the slave stands: a slave that already
        // holds everything the master had is in sync without a single new record.
        self.acknowledge_master();
    }

    /// A slave applies its master's records, in order, with the master's seq and epoch.
    pub(super) fn replicate(&mut self, records: Vec<Record>) {
        for record in records {
            if self.mirroring_failed {
                return;
            }
            // A record this store cannot apply ends mirroring for good: acknowledging
            // anything after a gap would release receipts for records it does not hold.
            let replayed = if record.seq < self.next_seq {
                Err(format!(
                    "record seq {} out of order (expected at least {})",
                    record.seq, self.next_seq
                ))
            } else if record.seq == Seq::LAST {
                // No seq may follow it; recovery refuses it too.
                Err(format!("record seq {} is out of range", record.seq))
            } else {
                self.broker.replay(&record, true)
            };
            let replayed = match replayed {
                Ok(replayed) => replayed,
                Err(why) => {
                    log::error!("replication: cannot mirror: {why}");
                    self.mirroring_failed = true;
                    self.acknowledge_master();
                    return self.role_event(Event::MasterRefused(why));
                }
            };
            if let Some(start) = replayed.epoch_started {
                self.epochs.push(start);
            }
            self.epoch = record.epoch;
            self.append(record, &replayed.applied);
        }
        self.acknowledge_master();
    }

    /// Tells the master the last seq this slave holds. With `slave_ack = "received"`:
    /// applied here, so ahead of anything the core does next (a promotion included), and
    /// handed to the journal, which a stop drains; never past a record that failed to
    /// apply (`replicate` applies nothing after one), nor `MAX_ACKED_AHEAD_OF_DISK` past
    /// the disk. With `"durable"`: on the disk.
    pub(super) fn acknowledge_master(&mut self) {
        if !mirrors(self.group.role()) {
            return;
        }
        let holds = match self.slave_ack {
            SlaveAck::Received => held(self.next_seq, self.durable_seq),
            SlaveAck::Durable => self.durable_seq.min(self.next_seq.prev()),
        };
        if self.acked_to_master.is_none_or(|acked| holds > acked) {
            self.acked_to_master = Some(holds);
            self.out.push(Output::AckMaster(holds));
        }
    }

    /// Steps the role machine and carries out what it decides.
    pub(super) fn role_event(&mut self, event: Event) {
        let steps = self.group.step(&event, self.next_seq);
        self.carry_out(steps);
    }

    /// Logs a step of the role machine: every change at info, with epoch and seq.
    pub(super) fn log_step(&mut self, from: Role, to: Role, why: &str, acts: bool) {
        if from != to {
            self.last_change = Some(super::RoleChange {
                from,
                to,
                why: why.to_string(),
                at_seq: self.next_seq.prev(),
                number: self.last_change.as_ref().map_or(1, |c| c.number + 1),
            });
            log::info!("role: {from} -> {to} ({why}); {}", self.status());
        } else if acts {
            log::info!("role: {from} ({why})");
        } else {
            log::debug!("role: {from} ({why})");
        }
    }

    /// A role action: the core's own ones here, the others for the server.
    pub(super) fn role_action(&mut self, action: Action) {
        match action {
            Action::Promote => self.promote(),
            Action::RecordInSync => self.out.push(Output::RecordAloneSince(None)),
            other => self.out.push(Output::Role(other)),
        }
    }

    /// Starts a new epoch as master.
    fn promote(&mut self) {
        // The old master may have delivered any of these before it died.
        self.broker.mark_all_maybe_delivered();
        // Its consumers will read the bodies back as they come to them.
        self.broker.set_mirroring(false);
        let epoch = self
            .epochs
            .iter()
            .map(|e| e.epoch)
            .max()
            .unwrap_or(self.epoch)
            .max(self.epoch)
            .next();
        self.epoch = epoch;
        self.epochs.push(EpochStart {
            epoch,
            first_seq: self.next_seq,
        });
        // Receipts wait for this journal now.
        self.out.push(Output::Pace(Pace::Eager));
        self.record(Op::EpochStarted { epoch });
        self.out.push(Output::RecordEpochs(self.epochs.clone()));
        self.drop_all_temporaries();
        log::info!(
            "promoted: now master in epoch {epoch} from seq {}",
            self.epochs.last().map_or(self.next_seq, |e| e.first_seq)
        );
    }
}

/// Roles in which this broker mirrors a master and acknowledges its records.
fn mirrors(role: Role) -> bool {
    matches!(role, Role::SlaveCatchingUp | Role::SlaveMirroring)
}

impl CatchUp {
    /// The first seq the slave will be sent.
    pub fn from(&self) -> Seq {
        match self {
            CatchUp::Append { from } | CatchUp::Replace { from } => *from,
        }
    }
}
