//! The core's part in replication: attaching a slave (master side), applying the
//! master's records (slave side), and promotion.
//!
//! The core owns the seq, so it alone can fix the point where a slave's catch-up ends
//! and its live stream begins: records below `next_seq` at attach time are read from
//! the journal by the link, records from `next_seq` on are shipped live by `append`.

use futures::channel::{mpsc, oneshot};

use super::mirror::{Mirror, Shipment};
use super::Core;
use crate::broker::Op;
use crate::codec;
use crate::journal::store::EpochStart;
use crate::journal::{Entry, Pace};
use crate::repl::catchup::{self, MasterView};
use crate::repl::message::{CatchUp, Position, WireRecord};
use crate::repl::role::Event as RoleEvent;

/// With `slave_ack = "received"`, how many records a slave may acknowledge beyond what its
/// own disk holds: as many as its journal writer's queue. A slave whose disk falls further
/// behind holds its acknowledgements back, so the master's flow control, and in the end
/// its `ack_timeout_ms`, see a slow disk rather than a slave piling up records.
const MAX_ACKED_AHEAD_OF_DISK: u64 = 8192;

/// The last seq a slave holds and may acknowledge: what it applied, bounded by its disk.
fn held(next_seq: u64, durable_seq: u64) -> u64 {
    (next_seq - 1).min(durable_seq.saturating_add(MAX_ACKED_AHEAD_OF_DISK))
}

/// Why a slave was refused, and whether trying again later can succeed.
#[derive(Debug, Clone)]
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

/// What a master's link needs to serve an attached slave.
#[derive(Debug)]
pub struct Attached {
    pub store_id: String,
    pub epochs: Vec<EpochStart>,
    pub catch_up: CatchUp,
    /// Records below this come from the journal, from it on from `live`.
    pub next_seq: u64,
    /// The slave is in sync once it holds this seq: the last durable record below
    /// `next_seq` (non-durable ones are not on disk to be caught up).
    pub in_sync_at: u64,
    pub live: mpsc::UnboundedReceiver<Shipment>,
}

/// An attach waiting for the journal to be durable up to `next_seq - 1`, so the link
/// can read every catch-up record from disk.
pub struct PendingAttach {
    reply: oneshot::Sender<Result<Attached, Refusal>>,
    attached: Attached,
}

impl Core {
    pub(super) fn attach_slave(
        &mut self,
        link: u64,
        position: Position,
        advertised: Option<String>,
        reply: oneshot::Sender<Result<Attached, Refusal>>,
    ) {
        if self.mirror.is_some() || self.pending_attach.is_some() {
            let reason = "another slave is already attached".to_string();
            let _ = reply.send(Err(Refusal {
                reason,
                retry: true,
            }));
            return;
        }
        let store_id = self.journal.meta().store_id.clone();
        let view = MasterView {
            store_id: &store_id,
            epochs: &self.epochs,
            next_seq: self.next_seq,
            first_retained: self.journal.first_retained(),
        };
        let catch_up = match catchup::plan(&view, &position) {
            Ok(plan) => plan,
            Err(why) => {
                let _ = reply.send(Err(why.into()));
                return;
            }
        };
        let from = match catch_up {
            CatchUp::Append { from } | CatchUp::Replace { from } => from,
        };
        let in_sync_at = self.journal.last_durable_seq().max(from - 1);
        let (live, live_rx) = mpsc::unbounded();
        self.mirror = Some(Mirror::new(
            link,
            live,
            self.next_seq,
            in_sync_at,
            advertised,
        ));
        // The link reads segments while it catches the slave up.
        self.journal.hold_deletions(true);
        let _ = self.role_events.unbounded_send(RoleEvent::SlaveAttached);
        self.pending_attach = Some(PendingAttach {
            reply,
            attached: Attached {
                store_id,
                epochs: self.epochs.clone(),
                catch_up,
                next_seq: self.next_seq,
                in_sync_at,
                live: live_rx,
            },
        });
        self.complete_attach();
    }

    /// Hands the attach to the link once every catch-up record is on disk.
    pub(super) fn complete_attach(&mut self) {
        let ready = self
            .pending_attach
            .as_ref()
            .is_some_and(|p| self.durable_seq + 1 >= p.attached.next_seq);
        if ready {
            if let Some(pending) = self.pending_attach.take() {
                let _ = pending.reply.send(Ok(pending.attached));
            }
        }
    }

    pub(super) fn slave_ack(&mut self, link: u64, seq: u64) {
        let Some(mirror) = self.mirror.as_mut().filter(|m| m.link == link) else {
            return;
        };
        if mirror.ack(seq) {
            self.serving_alone = false;
            self.journal.hold_deletions(false);
            let _ = self.role_events.unbounded_send(RoleEvent::SlaveInSync);
        }
        self.release_receipts();
    }

    /// The link failed. Receipts that waited for the slave stay held until the role
    /// machine decides (`ContinueAlone`, or the process stops without sending them).
    pub(super) fn slave_lost(&mut self, link: u64, why: String) {
        let Some(mirror) = self.mirror.take_if(|m| m.link == link) else {
            return;
        };
        // Receipts up to the release point had the slave's copy; after it, once the role
        // machine says to carry on alone, they will not. A slave never in sync was never
        // relied on: this broker was serving alone already.
        self.alone_from = mirror
            .in_sync
            .then(|| mirror.release_point(u64::MAX).saturating_add(1));
        self.lost_slave = mirror.advertised;
        self.pending_attach = None;
        self.journal.hold_deletions(false);
        self.frozen = true;
        let _ = self.role_events.unbounded_send(RoleEvent::SlaveLost(why));
    }

    /// A slave applies its master's records, in order, with the master's seq and epoch.
    pub(super) fn replicate(&mut self, records: Vec<WireRecord>) {
        self.journal.set_pace(self.replica_pace);
        for record in records {
            if self.replica_failed {
                return;
            }
            // A record this store cannot apply ends mirroring for good: acknowledging
            // anything after a gap would release receipts for records it does not hold.
            let op: Result<Op, String> = if record.seq < self.next_seq {
                Err(format!(
                    "record seq {} out of order (expected at least {})",
                    record.seq, self.next_seq
                ))
            } else if record.seq == u64::MAX {
                // No seq may follow it; recovery refuses it too.
                Err(format!("record seq {} is out of range", record.seq))
            } else {
                codec::decode(&record.payload)
                    .map_err(|e| format!("record seq {} does not decode: {e}", record.seq))
            };
            let op = match op {
                Ok(op) => op,
                Err(why) => {
                    log::error!("replication: cannot mirror: {why}");
                    self.replica_failed = true;
                    let _ = self
                        .role_events
                        .unbounded_send(RoleEvent::MasterRefused(why));
                    return;
                }
            };
            if let Op::EpochStarted { epoch } = op {
                self.epochs.push(EpochStart {
                    epoch,
                    first_seq: record.seq,
                });
            }
            self.epoch = record.epoch;
            let entry = Entry {
                epoch: record.epoch,
                seq: record.seq,
                payload: record.payload,
            };
            self.append(entry, &op);
        }
        self.acknowledge_held();
    }

    /// With `slave_ack = "received"`, tells the link the last seq this slave holds:
    /// applied here, so ahead of anything the core does next (a promotion included), and
    /// handed to the journal, which a stop drains. Never past a record that failed to
    /// apply (`replicate` applies nothing after one), nor `MAX_ACKED_AHEAD_OF_DISK` past
    /// the disk.
    pub(super) fn acknowledge_held(&self) {
        if let Some(hook) = &self.held_acks {
            hook.ack(held(self.next_seq, self.durable_seq));
        }
    }

    /// Starts a new epoch as master; replies with its (epoch, first seq) for the store's
    /// epoch history.
    pub(super) fn promote(&mut self, reply: oneshot::Sender<Vec<EpochStart>>) {
        // The old master may have delivered any of these before it died.
        self.broker.mark_all_maybe_delivered();
        let epoch = self
            .epochs
            .iter()
            .map(|e| e.epoch)
            .max()
            .unwrap_or(0)
            .max(self.epoch)
            + 1;
        let start = EpochStart {
            epoch,
            first_seq: self.next_seq,
        };
        self.epoch = epoch;
        self.epochs.push(start);
        // The driver records alone_since with the new epoch.
        self.serving_alone = true;
        // Receipts wait for this journal now.
        self.journal.set_pace(Pace::Eager);
        self.record(Op::EpochStarted { epoch });
        let _ = reply.send(self.epochs.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::broker::{Broker, Destination, NewMessage};
    use crate::config::SlaveAck;
    use crate::core::MemoryGauge;
    use crate::journal::Journal;
    use crate::repl::slave::AckHook;

    fn good(seq: u64) -> WireRecord {
        let op = Op::Send(NewMessage {
            destination: Destination::Queue("q".into()),
            headers: Vec::new(),
            body: "m".into(),
            persistent: true,
        });
        WireRecord {
            epoch: 1,
            seq,
            payload: codec::encode(&op).unwrap().into(),
        }
    }

    /// A slave's core on a new store, and every seq it acknowledges through its hook.
    fn slave_core(slave_ack: SlaveAck, dir: &std::path::Path) -> (Core, Arc<Mutex<Vec<u64>>>) {
        let (journal, recovered) = Journal::open(dir, 1 << 20, Box::new(|_| {}), |_| {
            unreachable!("a new store has no records")
        })
        .unwrap();
        let acks = Arc::new(Mutex::new(Vec::new()));
        let seen = acks.clone();
        let hook = AckHook::default();
        hook.set(Some(Box::new(move |seq| seen.lock().unwrap().push(seq))));
        let core = Core::new(
            Broker::new(6, 0),
            journal,
            recovered.next_seq,
            MemoryGauge::new(1 << 30),
            mpsc::unbounded().0,
        )
        .with_slave_ack(slave_ack, hook);
        (core, acks)
    }

    #[test]
    fn received_acknowledges_what_was_applied_before_the_disk_has_it_and_never_past_a_bad_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut core, acks) = slave_core(SlaveAck::Received, dir.path());
        core.replicate(vec![good(1), good(2)]);
        // No durable report has come in: the journal writer never ran a turn of the core.
        assert_eq!(*acks.lock().unwrap(), [2]);
        let unreadable = WireRecord {
            epoch: 1,
            seq: 4,
            payload: bytes::Bytes::from_static(b"not an op"),
        };
        core.replicate(vec![good(3), unreadable, good(5)]);
        core.replicate(vec![good(6)]);
        core.durable(6);
        assert!(acks.lock().unwrap().iter().all(|&seq| seq <= 3), "{acks:?}");
        core.journal.stopper()();
    }

    #[test]
    fn durable_leaves_acknowledging_to_the_journal_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (mut core, acks) = slave_core(SlaveAck::Durable, dir.path());
        core.replicate(vec![good(1), good(2)]);
        core.durable(2);
        assert!(acks.lock().unwrap().is_empty());
        core.journal.stopper()();
    }

    #[test]
    fn a_slave_acknowledges_at_most_a_writer_queue_past_its_disk() {
        assert_eq!(held(21, 0), 20);
        assert_eq!(held(20_000, 100), 100 + MAX_ACKED_AHEAD_OF_DISK);
        assert_eq!(held(u64::MAX, u64::MAX - 3), u64::MAX - 1);
    }
}
