//! The core: the state machine that owns the broker and puts every record in order.
//!
//! `Core::step(input)` is the only way in, and the outputs it leaves (`take_outputs`) are
//! the only way out: no channel, clock, thread or socket is inside, so every rule here is
//! tested by stepping it (`tests.rs`). A client request is validated against the broker,
//! turned into an `Op`, given the next seq, applied, and emitted as a journal command
//! and, on a master with a slave, as a shipment. Receipts wait in seq order until the
//! journal has the record durable and the replication group (`repl::group`) says the
//! slave holds it too. Messages are dispatched as soon as they are applied (a consumer
//! may see a message before its producer's receipt; the receipt still waits).
//!
//! - `io`: the inputs and outputs.
//! - `browse`: browsing subscriptions' snapshots, held until their bodies are on disk.
//! - `client`: what clients' requests do.
//! - `durable`: durable topic subscriptions, and the records that say who keeps what.
//! - `held`: persistent work held back while fewer slaves are in sync than
//!   `replication.min_replicas`.
//! - `paging`: reading paged-out bodies back, and compacting the journal.
//! - `replication`: attaching slaves (master side), applying a master's records (slave
//!   side), promotion, and the role machine's actions.

mod admin;
mod browse;
mod client;
mod durable;
mod expiry;
mod held;
mod io;
mod paging;
mod replication;
mod temp;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

pub use admin::{AdminOp, CoreStatus, ReplicaStatus, RoleChange};
pub use expiry::unix_ms;
pub use io::{AckRef, Attached, Browsing, Input, Outgoing, Output, Request, Store};

use crate::broker::{Broker, Op, SessionId};
use crate::codec;
use crate::config::SlaveAck;
use crate::journal::{Applied, Epoch, EpochStart, Log, Record, Seq};
use crate::repl::group::{Group, Step};
use crate::repl::role::{Policy, Role};
use crate::stomp::{Command, Frame};

/// A receipt waiting for its seq to be released.
#[derive(Debug)]
struct Pending {
    seq: Seq,
    session: SessionId,
    receipt: String,
    /// DISCONNECT: the session ends after this receipt.
    close: bool,
}

pub struct Core {
    broker: Broker,
    log: Log,
    store_id: String,
    epoch: Epoch,
    /// The store's epoch history, as the master hands it to a slave.
    epochs: Vec<EpochStart>,
    next_seq: Seq,
    durable_seq: Seq,
    /// The role, the attached replica and the receipt gate.
    group: Group,
    slave_ack: SlaveAck,
    /// A slave's attach waits here until the journal is durable up to the attach point,
    /// so the link can read every catch-up record from disk.
    pending_attach: Vec<(crate::repl::group::LinkId, Attached)>,
    /// A slave that met a record it could not apply mirrors nothing more.
    mirroring_failed: bool,
    /// The last seq acknowledged to our master (slave side), `None` before the first.
    acked_to_master: Option<Seq>,
    /// Receipts waiting for their seq to be released, in seq order.
    receipts: VecDeque<Pending>,
    /// Journal compaction in progress, and the sparse segments seen at the last look.
    compaction: paging::Compaction,
    /// Requests waiting for enough slaves in sync (`replication.min_replicas`).
    held: held::Held,
    /// The last role change, for the admin API.
    last_change: Option<RoleChange>,
    /// Temporary destinations and the connections they live with.
    temporaries: temp::Temporaries,
    /// The wall clock, in ms since the Unix epoch, that `expires` is read against.
    now: fn() -> u64,
    /// `broker.dead_letter_expired`.
    dead_letter_expired: bool,
    /// Browses waiting for the bodies they show to be on disk.
    waiting_browses: browse::WaitingBrowses,
    out: Vec<Output>,
}

impl Core {
    /// A core over a recovered store; everything before `store.next_seq` is durable.
    pub fn new(store: Store, policy: Policy, slave_ack: SlaveAck) -> Core {
        let epoch = store.epochs.last().map_or(Epoch::FIRST, |e| e.epoch);
        Core {
            broker: store.broker,
            log: store.log,
            store_id: store.store_id,
            epoch,
            epochs: store.epochs,
            next_seq: store.next_seq,
            durable_seq: store.next_seq.prev(),
            group: Group::new(policy),
            slave_ack,
            pending_attach: Vec::new(),
            mirroring_failed: false,
            acked_to_master: None,
            receipts: VecDeque::new(),
            compaction: paging::Compaction::default(),
            held: held::Held::default(),
            last_change: None,
            temporaries: temp::Temporaries::default(),
            now: expiry::unix_ms,
            dead_letter_expired: false,
            waiting_browses: browse::WaitingBrowses::default(),
            out: Vec::new(),
        }
    }

    /// Takes one input; what it wants done waits in `take_outputs`.
    pub fn step(&mut self, input: Input) {
        match input {
            Input::Client(session, request) => {
                if let Some(request) = self.hold(session, request) {
                    self.request(session, request)
                }
            }
            Input::Clock(now_ms) => self.clock(now_ms),
            Input::Durable(seq) => self.durable(seq),
            Input::Attach {
                link,
                standing,
                advertised,
            } => self.attach(link, &standing, advertised),
            Input::ReplicaAck { link, seq } => {
                let steps = self.group.acknowledged(link, seq, self.next_seq);
                self.carry_out(steps);
            }
            Input::ReplicaLag { link, bytes, ms } => self.group.lag(link, bytes, ms),
            Input::Detach { link, why } => self.detach(link, why),
            Input::SlavesGone(why) => {
                let steps = self.group.slaves_gone(why, self.next_seq);
                self.carry_out(steps);
            }
            Input::Succession(succession) => self.group.told(succession),
            Input::Welcomed(store) => self.welcomed(store),
            Input::StoreReplaced(store) => self.take_store(*store),
            Input::WelcomedInPlace { store_id, epochs } => self.welcomed_in_place(store_id, epochs),
            Input::Replicate(records) => self.replicate(records),
            Input::Role(event) => self.role_event(event),
            Input::AloneRecorded => {
                let step = self.group.alone_recorded();
                self.carry_out(vec![step]);
            }
            Input::Fetched(fetched) => self.fetched(fetched),
            Input::Compact => self.compact(),
            Input::Fence(fenced) => {
                let step = self.group.fence(fenced);
                self.carry_out(vec![step]);
            }
            Input::Tick => {
                let now = (self.now)();
                self.broker.release_due(now);
                // What came due goes first (to its dead-letter queue, which dispatch then
                // serves); what dispatch met expired goes after, and the queues it left
                // are served again.
                self.expire(now);
                self.dispatch(now);
                if self.expire(now) {
                    self.dispatch(now);
                }
                self.read_ahead();
            }
        }
        self.release_held();
    }

    /// Hands ready messages to consumers.
    fn dispatch(&mut self, now_ms: u64) {
        for delivery in self.broker.dispatch(now_ms) {
            let session = delivery.consumer.session;
            self.out
                .push(Output::ToSession(session, Outgoing::Deliver(delivery)));
        }
    }

    /// Moves what the inputs so far want done to the end of `outputs`, in order.
    pub fn take_outputs(&mut self, outputs: &mut Vec<Output>) {
        outputs.append(&mut self.out);
    }

    pub fn role(&self) -> Role {
        self.group.role()
    }

    /// On a slave: the in-sync slaves' addresses its master told it, first to take over
    /// first.
    pub fn succession(&self) -> &[String] {
        self.group.told_succession()
    }

    /// Message bytes the broker holds, for the producers' memory limit.
    pub fn memory_used(&self) -> usize {
        self.broker.memory_used()
    }

    /// Bytes the journal's segments take on disk, for the producers' disk limit.
    pub fn disk_used(&self) -> u64 {
        self.log.disk_used()
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// Every record up to this seq is on disk (or needs none).
    pub fn durable_seq(&self) -> Seq {
        self.durable_seq
    }

    /// Sequences, applies and journals one op; returns its seq.
    fn record(&mut self, op: Op) -> Seq {
        let seq = self.next_seq;
        // Sized up front: growing the buffer through a 1 KiB body reallocates ~8 times.
        let mut bytes = Vec::with_capacity(op.size_hint());
        let payload = match codec::encode_into(&op, &mut bytes) {
            Ok(()) => bytes::Bytes::from(bytes),
            // Ops are our own serde types, bounded by the frame and transaction limits,
            // so encoding cannot fail; if it ever does, that is a bug in those types, and
            // journaling a record we cannot read back would be worse than stopping.
            Err(error) => panic!("record {seq} does not encode: {error}"),
        };
        let record = Record {
            epoch: self.epoch,
            seq,
            payload,
        };
        let applied = self.broker.apply(seq, op, true);
        self.append(record, &applied);
        seq
    }

    /// Journals an applied record and ships it to the attached slave: the one path every
    /// record takes after `apply`, on a master and on a slave alike.
    fn append(&mut self, record: Record, applied: &Applied) {
        // A slave's catch-up skips seqs: non-persistent records were never on disk.
        debug_assert!(record.seq >= self.next_seq);
        self.next_seq = record.seq.next();
        for replica in self.group.replicas() {
            let link = replica.link;
            self.out.push(Output::Ship {
                link,
                record: record.clone(),
            });
        }
        let seq = record.seq;
        let out = &mut self.out;
        let placed = self.log.append(record, applied, |command| {
            out.push(Output::Journal(command))
        });
        if let Some(placement) = placed {
            self.broker.placed(seq, placement);
        }
    }

    /// Records each op in order; returns the last seq (or the last assigned, if none).
    fn record_all(&mut self, ops: Vec<Op>) -> Seq {
        ops.into_iter()
            .fold(self.next_seq.prev(), |_, op| self.record(op))
    }

    fn durable(&mut self, seq: Seq) {
        self.durable_seq = self.durable_seq.max(seq);
        // A slave's acknowledgements held back by its disk may go now.
        self.acknowledge_master();
        self.complete_attach();
        self.release_receipts();
        self.release_browses();
        // Bodies the consumers wait for may be read back now.
        if self.broker.reads_wait_for(self.durable_seq) {
            self.read_ahead();
        }
    }

    /// Sends `receipt` once `seq` is released; `close` ends the session after it.
    fn receipt_at(&mut self, session: SessionId, receipt: Option<String>, seq: Seq, close: bool) {
        let Some(receipt) = receipt else { return };
        if seq <= self.release_point() && self.receipts.is_empty() {
            self.receipt_now(session, receipt, close);
        } else {
            self.receipts.push_back(Pending {
                seq,
                session,
                receipt,
                close,
            });
        }
    }

    fn receipt_now(&mut self, session: SessionId, receipt: String, close: bool) {
        let frame = Frame::new(Command::Receipt).with_header("receipt-id", receipt);
        if close {
            // DISCONNECT: the receipt is the last frame, then the session is gone.
            self.out
                .push(Output::ToSession(session, Outgoing::Final(frame)));
            self.close_session(session);
        } else {
            self.out
                .push(Output::ToSession(session, Outgoing::Frame(frame)));
        }
    }

    /// The highest seq whose receipt may go out.
    fn release_point(&mut self) -> Seq {
        self.group.release_point(self.durable_seq)
    }

    fn release_receipts(&mut self) {
        let point = self.release_point();
        while self.receipts.front().is_some_and(|p| p.seq <= point) {
            if let Some(pending) = self.receipts.pop_front() {
                self.receipt_now(pending.session, pending.receipt, pending.close);
            }
        }
    }

    /// Carries out what the replication group asks.
    fn carry_out(&mut self, steps: Vec<Step>) {
        let acts = steps.len() > 1;
        for step in steps {
            match step {
                Step::Stepped { from, to, why } => self.log_step(from, to, &why, acts),
                Step::Role(action) => self.role_action(action),
                Step::TellInSync(link) => {
                    self.out.push(Output::TellInSync(link));
                    // The slave holds everything the catch-up read: segments may go.
                    self.hold_deletions();
                }
                Step::TellSuccession(succession) => {
                    self.out.push(Output::TellSuccession(succession))
                }
                Step::ProbeSlaves(addresses) => self.out.push(Output::ProbeSlaves(addresses)),
                Step::CheckSuccession { master, succession } => self
                    .out
                    .push(Output::CheckSuccession { master, succession }),
                Step::RecordAloneSince(seq) => self.out.push(Output::RecordAloneSince(Some(seq))),
                Step::Release => self.release_receipts(),
            }
        }
    }

    /// A one-line summary of the broker's state, for the status log.
    pub fn status(&self) -> String {
        let last = self.next_seq.prev();
        let slaves = self
            .group
            .replicas()
            .iter()
            .map(|r| {
                let at = r.advertised.as_deref().unwrap_or("?");
                format!(
                    "[{at} {} acked {} lag {} records {} KiB {} ms]",
                    r.state(),
                    r.acked,
                    last.since(r.acked),
                    r.lag_bytes / 1024,
                    r.lag_ms
                )
            })
            .collect::<Vec<_>>();
        let slaves = if slaves.is_empty() {
            "none".to_string()
        } else {
            slaves.join(" ")
        };
        format!(
            "epoch {} seq {} durable {} messages {} ({} paged) memory {} KiB segments {} slaves {}",
            self.epoch,
            self.next_seq.prev(),
            self.durable_seq,
            self.broker.message_count(),
            self.broker.paged_count(),
            self.broker.memory_used() / 1024,
            self.log.segment_count(),
            slaves
        )
    }
}
