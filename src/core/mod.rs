//! The core: the one task that owns the broker and puts every record in order.
//!
//! Sessions send [`Request`]s; the core validates each against the broker, turns it into
//! an `Op`, gives it the next seq, applies it, and hands the encoded record to the
//! journal. Receipts wait in seq order until the journal reports them durable. Messages
//! are dispatched as soon as they are applied (a consumer may see a message before its
//! producer's receipt; the receipt still waits for the disk). Holds no lock across an
//! await and never blocks: when the journal's queue is full the core stops taking
//! requests, which backs the bounded request channel up into the sessions.

mod memory;
pub mod mirror;
pub mod replication;
pub mod request;

use std::collections::{HashMap, VecDeque};

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt};

use crate::broker::{Broker, Delivery, NewMessage, Op, Removal, SessionId};
use crate::codec;
use crate::config::SlaveAck;
use crate::journal::store::EpochStart;
use crate::journal::{Entry, Event, Journal, Pace};
use crate::repl::message::WireRecord;
use crate::repl::role::Event as RoleEvent;
use crate::repl::slave::AckHook;
use crate::stomp::{Command, Frame};
use memory::cost;
pub use memory::MemoryGauge;
pub use request::{AckRef, Outgoing, Request};

/// Requests taken per turn before the core dispatches and pumps the journal.
const BATCH: usize = 512;

/// Why the core stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Shutdown,
    JournalFailed(String),
}

/// How the core reaches one session.
struct SessionHandle {
    outbound: mpsc::Sender<Outgoing>,
    /// Shuts the socket down at once, for a client that stopped reading.
    kill: Box<dyn Fn() + Send>,
}

pub struct Core {
    broker: Broker,
    journal: Journal,
    epoch: u64,
    /// The store's epoch history, as the master hands it to a slave.
    epochs: Vec<EpochStart>,
    next_seq: u64,
    durable_seq: u64,
    /// The attached slave, on a master.
    mirror: Option<mirror::Mirror>,
    /// A slave's attach waits here until the journal is durable up to the attach point,
    /// so the link can read every catch-up record from disk.
    pending_attach: Option<replication::PendingAttach>,
    /// The slave was lost and the role machine has not yet said whether to go on alone:
    /// no receipt that waited for the slave may go out meanwhile.
    frozen: bool,
    /// Role events (slave in sync, slave lost) for the driver.
    role_events: mpsc::UnboundedSender<RoleEvent>,
    /// The replication address of the slave lost last (for the driver's probe).
    lost_slave: Option<String>,
    /// Set when an in-sync slave is lost: the first seq whose receipt may go out without
    /// its copy once the role machine says to carry on alone.
    alone_from: Option<u64>,
    /// Receipts go out without a slave's copy (since start or promotion, or since the
    /// in-sync slave was lost); false while a slave is in sync.
    serving_alone: bool,
    /// A slave that met a record it could not apply stops mirroring for good.
    replica_failed: bool,
    /// The journal's pace while this core mirrors a master (eager again once promoted).
    replica_pace: Pace,
    /// With `slave_ack = "received"`: the link's hook, told each seq this slave holds.
    held_acks: Option<AckHook>,
    /// Told every durable seq (a slave's link acknowledges with it).
    durable_watchers: Vec<mpsc::UnboundedSender<u64>>,
    sessions: HashMap<SessionId, SessionHandle>,
    /// Receipts waiting for their seq to be durable, in seq order.
    receipts: VecDeque<(u64, SessionId, String, bool)>,
    memory: MemoryGauge,
    memory_waiters: Vec<oneshot::Sender<()>>,
}

impl Core {
    /// `next_seq` and `epoch` come from recovery; everything up to `next_seq - 1` is durable.
    pub fn new(
        broker: Broker,
        journal: Journal,
        next_seq: u64,
        memory: MemoryGauge,
        role_events: mpsc::UnboundedSender<RoleEvent>,
    ) -> Core {
        memory.set_stored(broker.memory_used());
        let epochs = journal.meta().epochs.clone();
        Core {
            broker,
            journal,
            epoch: epochs.last().map_or(1, |e| e.epoch),
            epochs,
            next_seq,
            durable_seq: next_seq - 1,
            mirror: None,
            pending_attach: None,
            frozen: false,
            role_events,
            durable_watchers: Vec::new(),
            replica_failed: false,
            replica_pace: Pace::Eager,
            held_acks: None,
            lost_slave: None,
            alone_from: None,
            serving_alone: false,
            sessions: HashMap::new(),
            receipts: VecDeque::new(),
            memory,
            memory_waiters: Vec::new(),
        }
    }

    /// How this core acknowledges its master's records while it mirrors. With
    /// `"received"` it tells `hook` what it holds (`acknowledge_held`), and its journal
    /// runs at a relaxed pace, as nobody waits for those fsyncs; with `"durable"` the
    /// journal writer tells the hook itself after each fsync.
    pub fn with_slave_ack(mut self, slave_ack: SlaveAck, hook: AckHook) -> Core {
        (self.replica_pace, self.held_acks) = match slave_ack {
            SlaveAck::Received => (Pace::Relaxed, Some(hook)),
            SlaveAck::Durable => (Pace::Eager, None),
        };
        self
    }

    /// Serves requests until `Shutdown` (or until the journal fails).
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) -> Exit {
        let exit = loop {
            let turn = if self.journal.backlog() > 0 {
                // The writer is behind: take no new work until it reports progress.
                Turn::Event(events.next().await)
            } else {
                futures::select! {
                    request = requests.next() => Turn::Request(request),
                    event = events.next() => Turn::Event(event),
                }
            };
            let mut stop = false;
            match turn {
                Turn::Request(Some(Request::Shutdown) | None) => stop = true,
                Turn::Request(Some(request)) => {
                    self.handle(request);
                    // Take what else is waiting, so one dispatch and one journal hand-off
                    // serve the whole batch.
                    for _ in 1..BATCH {
                        match requests.next().now_or_never() {
                            Some(Some(Request::Shutdown) | None) => {
                                stop = true;
                                break;
                            }
                            Some(Some(request)) => self.handle(request),
                            None => break,
                        }
                    }
                }
                Turn::Event(Some(Event::Durable(seq))) => self.durable(seq),
                Turn::Event(Some(Event::Failed(why))) => break Exit::JournalFailed(why),
                Turn::Event(None) => break Exit::JournalFailed("journal writer vanished".into()),
            }
            self.dispatch();
            self.journal.pump();
            self.update_memory();
            if stop {
                break Exit::Shutdown;
            }
        };
        self.finish(events, &exit).await;
        exit
    }

    /// Drains the journal (blocking work, off the executor), releases the receipts it
    /// made durable, and closes every session.
    async fn finish(mut self, mut events: mpsc::UnboundedReceiver<Event>, exit: &Exit) {
        if *exit == Exit::Shutdown {
            crate::runtime::spawn_blocking(self.journal.stopper()).await;
            while let Some(Some(event)) = events.next().now_or_never() {
                if let Event::Durable(seq) = event {
                    self.durable(seq);
                }
            }
        }
        // Closing each channel ends its writer once it has written what is queued.
        for (_, mut handle) in self.sessions.drain() {
            handle.outbound.close_channel();
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Open {
                session,
                outbound,
                kill,
            } => {
                self.sessions
                    .insert(session, SessionHandle { outbound, kill });
            }
            Request::Send {
                session,
                message,
                receipt,
            } => {
                let cost = message.cost();
                let seq = if self.broker.is_duplicate(&message) {
                    // A resend after a failover: the original's record is at or before
                    // the last seq, so its receipt waits for exactly what the original did.
                    log::debug!(
                        "session {}: dropped a resent duplicate for {}",
                        session.0,
                        message.destination
                    );
                    self.next_seq - 1
                } else {
                    self.record(Op::Send(message))
                };
                self.memory.settle(cost, self.broker.memory_used());
                self.receipt_at(session, receipt, seq, false);
            }
            Request::Subscribe {
                session,
                sub,
                destination,
                subscription,
                ack,
                prefetch,
                receipt,
            } => {
                self.broker.subscribe(
                    crate::broker::ConsumerKey { session, sub },
                    destination,
                    subscription,
                    ack,
                    prefetch,
                );
                // Before any MESSAGE of the subscription: the receipt goes first.
                self.receipt_now(session, receipt, false);
            }
            Request::Unsubscribe {
                session,
                sub,
                receipt,
            } => {
                let ops = self
                    .broker
                    .unsubscribe(crate::broker::ConsumerKey { session, sub });
                let seq = self.record_all(ops);
                self.receipt_at(session, receipt, seq, false);
            }
            Request::Ack {
                session,
                ack,
                receipt,
            } => match self.broker.ack(session, ack.sub, ack.id) {
                Ok(removals) => {
                    let seq = self.record_removals(removals);
                    self.receipt_at(session, receipt, seq, false);
                }
                Err(refused) => self.fail_session(session, &refused.0, receipt),
            },
            Request::Nack {
                session,
                ack,
                receipt,
            } => match self.broker.nack(session, ack.sub, ack.id) {
                Ok(ops) => {
                    let seq = self.record_all(ops);
                    self.receipt_at(session, receipt, seq, false);
                }
                Err(refused) => self.fail_session(session, &refused.0, receipt),
            },
            Request::Commit {
                session,
                sends,
                acks,
                nacks,
                receipt,
            } => {
                let cost = cost(&sends);
                self.commit(session, sends, acks, nacks, receipt);
                self.memory.settle(cost, self.broker.memory_used());
            }
            Request::Written { session, sub, ids } => {
                let removals = self
                    .broker
                    .written(crate::broker::ConsumerKey { session, sub }, &ids);
                self.record_removals(removals);
            }
            Request::Barrier {
                session,
                receipt,
                close,
            } => {
                let last = self.next_seq - 1;
                self.receipt_at(session, Some(receipt), last, close);
            }
            Request::Close { session } => self.close_session(session),
            Request::WaitForMemory(waiter) => self.memory_waiters.push(waiter),
            Request::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Request::AttachSlave {
                link,
                position,
                advertised,
                reply,
            } => self.attach_slave(link, position, advertised, reply),
            Request::SlaveAck { link, seq } => self.slave_ack(link, seq),
            Request::SlaveLost { link, why } => self.slave_lost(link, why),
            Request::LostSlave(reply) => {
                let _ = reply.send(self.lost_slave.clone());
            }
            Request::PrepareAlone(reply) => {
                let from = self
                    .alone_from
                    .take()
                    .or((!self.serving_alone).then_some(self.next_seq));
                self.serving_alone = true;
                let _ = reply.send(from);
            }
            Request::ContinueAlone => {
                self.frozen = false;
                self.release_receipts();
            }
            Request::Replicate(records) => self.replicate(records),
            Request::WatchDurable(watcher) => {
                let _ = watcher.unbounded_send(self.durable_seq);
                self.durable_watchers.push(watcher);
            }
            Request::Promote(reply) => self.promote(reply),
            Request::Shutdown => {}
        }
    }

    /// Validates every ACK and NACK of a transaction first, so a bad one rejects the
    /// whole transaction and nothing of it takes effect.
    fn commit(
        &mut self,
        session: SessionId,
        sends: Vec<crate::broker::NewMessage>,
        acks: Vec<AckRef>,
        nacks: Vec<AckRef>,
        receipt: Option<String>,
    ) {
        // A replayed transaction's sends that already took effect are not stored twice.
        let sends: Vec<NewMessage> = sends
            .into_iter()
            .filter(|m| !self.broker.is_duplicate(m))
            .collect();
        let mut removals: Vec<Removal> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (ack, is_ack) in acks
            .iter()
            .map(|a| (a, true))
            .chain(nacks.iter().map(|n| (n, false)))
        {
            // A NACK is checked like an ACK (is the message ours, in flight?) and applied
            // after the commit.
            match self.broker.ack(session, ack.sub, ack.id) {
                Ok(more) if is_ack => {
                    // Cumulative acks overlap; each message is removed once.
                    removals.extend(more.into_iter().filter(|r| seen.insert(r.id)));
                }
                Ok(_) => {}
                Err(refused) => {
                    return self.fail_session(
                        session,
                        &format!("transaction rejected: {}", refused.0),
                        receipt,
                    )
                }
            }
        }
        let mut seq = self.record(Op::Commit {
            sends,
            acks: removals,
        });
        for nack in nacks {
            // A NACK of a message the same transaction acked has nothing left to do.
            if let Ok(ops) = self.broker.nack(session, nack.sub, nack.id) {
                seq = seq.max(self.record_all(ops));
            }
        }
        self.receipt_at(session, receipt, seq, false);
    }

    /// Sequences, applies and journals one op; returns its seq.
    fn record(&mut self, op: Op) -> u64 {
        let seq = self.next_seq;
        // Sized up front: growing the buffer through a 1 KiB body reallocates ~8 times.
        let mut bytes = Vec::with_capacity(match &op {
            Op::Send(message) => message.cost(),
            _ => 64,
        });
        let payload = match codec::encode_into(&op, &mut bytes) {
            Ok(()) => bytes::Bytes::from(bytes),
            // Ops are our own serde types, bounded by the frame and transaction limits,
            // so encoding cannot fail; if it ever does, that is a bug in those types, and
            // journaling a record we cannot read back would be worse than stopping.
            Err(error) => panic!("record {seq} does not encode: {error}"),
        };
        let entry = Entry {
            epoch: self.epoch,
            seq,
            payload,
        };
        self.append(entry, &op);
        seq
    }

    /// Applies the record `entry` (whose payload is `op`), journals it and ships it to the
    /// slave: the one path every record takes, on a master and on a slave alike.
    fn append(&mut self, entry: Entry, op: &Op) {
        // A slave's catch-up skips seqs: non-persistent records were never on disk.
        debug_assert!(entry.seq >= self.next_seq);
        self.next_seq = entry.seq + 1;
        let applied = self.broker.apply(entry.seq, op, true);
        if let Some(mirror) = &self.mirror {
            let record = WireRecord {
                epoch: entry.epoch,
                seq: entry.seq,
                payload: entry.payload.clone(),
            };
            if !mirror.ship(record) {
                // The link task is gone; it reports SlaveLost itself.
                log::debug!("replication link closed while shipping seq {}", entry.seq);
            }
        }
        self.journal.append(entry, &applied);
    }

    /// Records each op in order; returns the last seq (or the last assigned, if none).
    fn record_all(&mut self, ops: Vec<Op>) -> u64 {
        ops.into_iter()
            .fold(self.next_seq - 1, |_, op| self.record(op))
    }

    fn record_removals(&mut self, removals: Vec<Removal>) -> u64 {
        if removals.is_empty() {
            self.next_seq - 1
        } else {
            self.record(Op::Ack(removals))
        }
    }

    fn receipt_frame(receipt: String) -> Frame {
        Frame::new(Command::Receipt).with_header("receipt-id", receipt)
    }

    /// Sends `receipt` once `seq` is durable; `close` ends the session after it.
    fn receipt_at(&mut self, session: SessionId, receipt: Option<String>, seq: u64, close: bool) {
        let Some(receipt) = receipt else { return };
        if seq <= self.release_point() && self.receipts.is_empty() {
            self.receipt_now(session, Some(receipt), close);
        } else {
            self.receipts.push_back((seq, session, receipt, close));
        }
    }

    fn receipt_now(&mut self, session: SessionId, receipt: Option<String>, close: bool) {
        if let Some(receipt) = receipt {
            let frame = Self::receipt_frame(receipt);
            if close {
                // DISCONNECT: the receipt is the last frame, then the session is gone.
                self.send_to(session, Outgoing::Final(frame));
                self.close_session(session);
            } else {
                self.send_to(session, Outgoing::Frame(frame));
            }
        }
    }

    fn durable(&mut self, seq: u64) {
        self.durable_seq = self.durable_seq.max(seq);
        // Acknowledgements held back by the disk may go now.
        self.acknowledge_held();
        self.durable_watchers
            .retain(|watcher| watcher.unbounded_send(self.durable_seq).is_ok());
        self.complete_attach();
        self.release_receipts();
    }

    /// The highest seq whose receipt may go out: durable here and, with a slave attached,
    /// acknowledged by it. Nothing while frozen (slave lost, policy not yet applied).
    fn release_point(&self) -> u64 {
        match (&self.mirror, self.frozen) {
            (_, true) => 0,
            (Some(mirror), false) => mirror.release_point(self.durable_seq),
            (None, false) => self.durable_seq,
        }
    }

    fn release_receipts(&mut self) {
        let point = self.release_point();
        while self.receipts.front().is_some_and(|(s, ..)| *s <= point) {
            if let Some((_, session, receipt, close)) = self.receipts.pop_front() {
                self.receipt_now(session, Some(receipt), close);
            }
        }
    }

    fn dispatch(&mut self) {
        for delivery in self.broker.dispatch() {
            self.deliver(delivery);
        }
    }

    fn deliver(&mut self, delivery: Delivery) {
        let session = delivery.consumer.session;
        self.send_to(session, Outgoing::Deliver(delivery));
    }

    /// Queues for a session; one that has stopped reading is cut off as a slow consumer.
    fn send_to(&mut self, session: SessionId, outgoing: Outgoing) {
        let Some(handle) = self.sessions.get_mut(&session) else {
            return;
        };
        if let Err(error) = handle.outbound.try_send(outgoing) {
            if error.is_full() {
                log::warn!("session {}: its client is not reading and its outbound queue is full (stomp.max_pending_frames); disconnecting it as a slow consumer", session.0);
                (handle.kill)();
            }
            self.close_session(session);
        }
    }

    fn fail_session(&mut self, session: SessionId, message: &str, receipt: Option<String>) {
        let mut frame = Frame::error(message);
        if let Some(receipt) = receipt {
            frame = frame.with_header("receipt-id", receipt);
        }
        self.send_to(session, Outgoing::Final(frame));
        self.close_session(session);
    }

    /// Forgets a session: its unacked messages go back to their queues.
    fn close_session(&mut self, session: SessionId) {
        if let Some(mut handle) = self.sessions.remove(&session) {
            // Closed for every sender (the reader holds one too): the writer drains
            // what is queued and exits.
            handle.outbound.close_channel();
        }
        let ops = self.broker.close_session(session);
        self.record_all(ops);
    }

    fn update_memory(&mut self) {
        self.memory.set_stored(self.broker.memory_used());
        if !self.memory_waiters.is_empty() && !self.memory.over_limit() {
            for waiter in self.memory_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// Queue depths, for the status line.
    pub fn status(&self) -> String {
        let slave = match &self.mirror {
            None => "none".to_string(),
            Some(m) => format!(
                "acked {} lag {} {}",
                m.acked,
                (self.next_seq - 1).saturating_sub(m.acked),
                if m.in_sync { "in-sync" } else { "catching-up" }
            ),
        };
        format!(
            "epoch {} seq {} durable {} messages {} memory {} KiB segments {} slave {}",
            self.epoch,
            self.next_seq - 1,
            self.durable_seq,
            self.broker.message_count(),
            self.broker.memory_used() / 1024,
            self.journal.segment_count(),
            slave
        )
    }
}

enum Turn {
    Request(Option<Request>),
    Event(Option<Event>),
}
