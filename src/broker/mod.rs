//! The broker: all message state, deterministic, with no I/O and no clock.
//!
//! Two kinds of change happen here. Durable changes arrive only as [`Op`]s through
//! [`Broker::apply`], which recovery, the slave and the live master all call, so their
//! states agree by construction. Derived changes (who subscribes, what is in flight to
//! whom, prefetch windows) are made by the other methods and never journaled; when one
//! of them implies a durable change (a message dead-lettered, an ack validated) it
//! returns the `Op` for the caller to sequence and apply.

mod admin;
mod consumers;
mod dedup;
mod durable;
mod expiry;
mod lane;
mod message;
mod op;
mod paging;
mod queue;
mod ready;
mod schedule;
#[cfg(test)]
mod tests;
mod wildcard;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::codec;
use crate::journal::{EpochStart, Record, Seq};
pub use admin::{AdminRefusal, Browsed, BrowsedBody, DestinationStats};
use consumers::Consumer;
pub use consumers::Subscribing;
use dedup::DedupWindow;
pub use dedup::DEDUP_HEADER;
pub use durable::{queue_name as durable_queue, DurableSubscription};
pub use message::{
    AckMode, ConsumerKey, Delivery, Destination, Message, MessageId, NewMessage, SessionId,
    DELIVER_AT_HEADER,
};
pub use op::{Carried, Op, Removal};
pub use paging::{messages_from, Fetch, Loaded};
use queue::{Held, Queue, Slot};
pub use wildcard::is_pattern;

/// What one `apply` changed, for the journal's segment accounting.
pub use crate::journal::Applied;

/// What replaying one record did: its accounting, and the epoch it started, if it is an
/// `EpochStarted` record (the store's epoch history is rebuilt from these).
#[derive(Debug, PartialEq, Eq)]
pub struct Replayed {
    pub applied: Applied,
    pub epoch_started: Option<EpochStart>,
}

/// An ACK or NACK the broker refuses, with the text for the ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// All queues, topics and consumers of one broker.
#[derive(Debug)]
pub struct Broker {
    queues: HashMap<String, Queue>,
    topics: HashMap<String, Vec<ConsumerKey>>,
    consumers: BTreeMap<ConsumerKey, Consumer>,
    /// Queues whose ready list or consumers changed since the last dispatch.
    dirty: BTreeSet<String>,
    /// Topic messages applied since the last dispatch.
    topic_deliveries: Vec<Delivery>,
    /// Bytes held in memory: resident messages whole, paged ones by their slot.
    memory: usize,
    max_redeliveries: u32,
    dedup: DedupWindow,
    /// Past this much memory, new persistent messages keep only their slot in memory
    /// once their record is placed in the journal (`None`: never).
    page_above: Option<usize>,
    /// This broker mirrors a master: every persistent body is paged out (`paging.rs`).
    mirroring: bool,
    /// The first record the last read-ahead stopped at because the journal had not yet
    /// reported it durable (`paging.rs`).
    reads_wait_for: Option<Seq>,
    /// Persistent messages the last applied record stored, waiting for its placement.
    unplaced: Vec<(String, MessageId)>,
    /// A body stayed or came back in memory since eviction last found nothing more to
    /// page out.
    evictable: bool,
    /// Messages published to and delivered from each subscribed topic (`admin.rs`).
    topic_counts: HashMap<String, admin::TopicCounts>,
    /// Ready messages a dispatch passes over, at most, looking for ones a selector
    /// takes (`broker.selector_scan`).
    selector_scan: usize,
    /// When stored messages expire (`expiry.rs`).
    expiring: expiry::Expiring,
    /// The topic patterns subscribed to (`wildcard.rs`), also keys of `topics`.
    topic_patterns: BTreeSet<String>,
    /// When waiting messages may be delivered (`schedule.rs`).
    schedule: schedule::Schedule,
    /// The durable topic subscriptions (`durable.rs`).
    durables: durable::Durables,
}

/// Unselected ready messages a dispatch passes over, unless configured otherwise
/// (`broker.selector_scan`).
pub const DEFAULT_SELECTOR_SCAN: usize = 1000;

/// Prefix of the queue a poison message of queue `NAME` moves to.
pub const DLQ_PREFIX: &str = "DLQ.";

impl Broker {
    /// `dedup_window`: recent `dedup-id`s remembered per destination (0 = none).
    pub fn new(max_redeliveries: u32, dedup_window: usize) -> Broker {
        Broker {
            queues: HashMap::new(),
            topics: HashMap::new(),
            consumers: BTreeMap::new(),
            dirty: BTreeSet::new(),
            topic_deliveries: Vec::new(),
            memory: 0,
            max_redeliveries,
            dedup: DedupWindow::new(dedup_window),
            page_above: None,
            mirroring: false,
            reads_wait_for: None,
            unplaced: Vec::new(),
            evictable: false,
            topic_counts: HashMap::new(),
            selector_scan: DEFAULT_SELECTOR_SCAN,
            expiring: expiry::Expiring::default(),
            topic_patterns: BTreeSet::new(),
            schedule: schedule::Schedule::default(),
            durables: durable::Durables::default(),
        }
    }

    /// How many unselected ready messages a dispatch passes over at most.
    pub fn set_selector_scan(&mut self, messages: usize) {
        self.selector_scan = messages.max(1);
    }

    /// Decodes a record written by any broker of the store and applies it: the one path
    /// by which recovery, a slave and `mirrormq verify` turn records into state. A
    /// payload that does not decode is refused with why, and nothing is applied.
    pub fn replay(&mut self, record: &Record, keep_transient: bool) -> Result<Replayed, String> {
        let op: Op = codec::decode(&record.payload)
            .map_err(|e| format!("record seq {} does not decode: {e}", record.seq))?;
        let epoch_started = match op {
            Op::EpochStarted { epoch } => Some(EpochStart {
                epoch,
                first_seq: record.seq,
            }),
            _ => None,
        };
        let applied = self.apply(record.seq, op, keep_transient);
        Ok(Replayed {
            applied,
            epoch_started,
        })
    }

    /// Applies the record `seq`. `keep_transient` is false when replaying the journal
    /// after a restart, where non-persistent messages must not come back.
    pub fn apply(&mut self, seq: Seq, op: Op, keep_transient: bool) -> Applied {
        let mut applied = Applied::default();
        self.unplaced.clear();
        self.apply_op(seq, op, keep_transient, &mut applied, None);
        applied
    }

    /// `apply`'s work. With `built` (for `Op::Kept`), the messages the sends made go in
    /// it by index, so the copies share them rather than build their own. The op is
    /// taken whole, so each message moves its headers and destination into the store
    /// instead of copying them.
    fn apply_op(
        &mut self,
        seq: Seq,
        op: Op,
        keep_transient: bool,
        applied: &mut Applied,
        mut built: Option<&mut Vec<Option<Arc<Message>>>>,
    ) {
        match op {
            Op::Send(message) => self.add(seq, 0, message, keep_transient, applied, built),
            Op::Commit { sends, acks } => {
                for (index, message) in sends.into_iter().enumerate() {
                    let built = built.as_deref_mut();
                    self.add(seq, index as u32, message, keep_transient, applied, built);
                }
                for removal in &acks {
                    self.consume(removal, applied);
                }
            }
            Op::Ack(removals) => {
                for removal in &removals {
                    self.consume(removal, applied);
                }
            }
            Op::DeadLetter(removal) => {
                let dlq = format!("{DLQ_PREFIX}{}", removal.queue);
                self.relocate(&removal, &dlq, applied)
            }
            Op::Move { to, removals } => {
                for removal in &removals {
                    self.relocate(removal, &to, applied);
                }
            }
            Op::DeleteQueue { queue, removals } => {
                for removal in &removals {
                    self.consume(removal, applied);
                }
                // A delete in several records (a large backlog) ends the subscription
                // with its last: a crash in between leaves it whole, with less backlog.
                if self.queues.get(&queue).is_none_or(|q| q.depth() == 0) {
                    self.unsubscribed(&queue, applied);
                }
                self.forget_queue(&queue);
                // Written even when it removed nothing: a restart must not bring back
                // the queue the sends before it made.
                applied.durable = true;
            }
            Op::Subscribed(subscription) => self.subscribed(seq, &subscription, applied),
            Op::Kept { op, copies } => {
                let mut made = Vec::new();
                self.apply_op(seq, *op, keep_transient, applied, Some(&mut made));
                for (index, queue) in &copies {
                    // A send that was not kept (transient, replayed) has no copies either.
                    if let Some(Some(message)) = made.get(*index as usize) {
                        self.store_new(queue, seq, message.clone(), applied);
                    }
                }
            }
            Op::EpochStarted { .. } => applied.durable = true,
            Op::Carry(carried) => {
                for carried in &carried {
                    self.carry_one(seq, carried, applied);
                }
            }
        }
    }

    /// Files message `index` of record `seq`: in its queue, or to a topic's current
    /// subscribers, unless it is transient and not kept (`keep_transient`). With `built`,
    /// what it filed (or `None`) goes there too, at its index.
    fn add(
        &mut self,
        seq: Seq,
        index: u32,
        new: NewMessage,
        keep_transient: bool,
        applied: &mut Applied,
        built: Option<&mut Vec<Option<Arc<Message>>>>,
    ) {
        if !new.persistent && !keep_transient {
            if let Some(built) = built {
                built.push(None);
            }
            return;
        }
        self.dedup.insert(&new);
        let message = Message::made(MessageId { seq, index }, new);
        if let Some(built) = built {
            built.push(Some(message.clone()));
        }
        match &message.destination {
            Destination::Queue(name) => self.store_new(name, seq, message.clone(), applied),
            Destination::Topic(name) => self.publish(name, &message),
        }
    }

    /// Stores `message`, new in record `seq`, in `queue`; a persistent one makes the
    /// record durable and waits for its placement.
    fn store_new(&mut self, queue: &str, seq: Seq, message: Arc<Message>, applied: &mut Applied) {
        if message.persistent {
            applied.durable = true;
            applied.added += 1;
            self.unplaced.push((queue.to_string(), message.id));
        }
        self.store(queue, seq, message);
    }

    /// Hands `message` to whoever subscribes to topic `name` right now, to the topic or
    /// to a pattern matching it: topics hold nothing.
    fn publish(&mut self, name: &str, message: &Arc<Message>) {
        let patterned = match self.topic_patterns.is_empty() {
            true => Vec::new(),
            false => self.pattern_subscribers(name),
        };
        let exact = self.topics.get(name);
        if exact.is_none() && patterned.is_empty() {
            return;
        }
        let before = self.topic_deliveries.len();
        for key in exact.into_iter().flatten().chain(&patterned) {
            match self.consumers.get(key) {
                Some(consumer) if consumer.selects(message) => {
                    self.topic_deliveries.push(Delivery {
                        consumer: *key,
                        subscription: consumer.subscription.clone(),
                        ack: consumer.ack,
                        message: message.clone(),
                        redelivered: false,
                    });
                }
                _ => {}
            }
        }
        if let Some(counts) = self.topic_counts.get_mut(name) {
            counts.published += 1;
            counts.delivered += (self.topic_deliveries.len() - before) as u64;
        }
    }

    /// Stores a new message, held by `record`, at the tail of `queue`.
    fn store(&mut self, queue: &str, record: Seq, message: Arc<Message>) {
        self.note_expiry(queue, &message);
        self.note_schedule(queue, &message);
        self.put_ready(queue, Slot::new(record, message));
    }

    /// Puts a ready slot in its place in `queue`.
    fn put_ready(&mut self, queue: &str, slot: Slot) {
        self.memory += slot.memory();
        let existing = self.queue_or_new(queue);
        existing.counts.arrived(&slot);
        // A message that goes in behind the read-ahead or eviction cursor (one moved or
        // dead-lettered here, older than what the queue held) would never be read back
        // or paged out: both look again from the head.
        let key = slot.key();
        if existing.read_ahead_to.is_some_and(|last| key <= last) {
            existing.read_ahead_to = None;
        }
        if existing.evicted_to.is_some_and(|last| key <= last) {
            existing.evicted_to = None;
        }
        existing.insert(slot);
        self.mark_dirty(queue);
    }

    /// The queue `name`, made if new: consumers of patterns it matches join it.
    fn queue_or_new(&mut self, name: &str) -> &mut Queue {
        if !self.queues.contains_key(name) {
            let consumers = self.pattern_consumers_of(name);
            let queue = self.queues.entry(name.to_string()).or_default();
            queue.consumers = consumers;
        }
        self.queues.get_mut(name).expect("made above")
    }

    /// Dispatch looks at `queue` next time (without a new String when it already will).
    fn mark_dirty(&mut self, queue: &str) {
        if !self.dirty.contains(queue) {
            self.dirty.insert(queue.to_string());
        }
    }

    /// Takes a message out of its queue and out of its holder's in-flight list.
    fn take(&mut self, queue: &str, id: MessageId) -> Option<Slot> {
        let stored = self.queues.get_mut(queue)?;
        let (slot, holder) = stored.remove(id)?;
        stored.counts.left(&slot);
        self.memory -= slot.memory();
        if let Some(holder) = holder {
            if let Some(consumer) = self.consumers.get_mut(&holder) {
                if let Some(position) = consumer.in_flight.iter().position(|m| *m == id) {
                    consumer.in_flight.remove(position);
                }
            }
            // A window slot opened.
            self.mark_dirty(queue);
        }
        Some(slot)
    }

    fn consume(&mut self, removal: &Removal, applied: &mut Applied) {
        let Some(slot) = self.take(&removal.queue, removal.id) else {
            // Gone already; the mention keeps this record's segment from outliving the
            // record that added it.
            applied.mentioned.push(removal.id.seq);
            return;
        };
        applied.mentioned.push(slot.record);
        if slot.persistent() {
            applied.durable = true;
            applied.removed.push(slot.record);
        }
    }

    /// Moves a stored message to the back of queue `to` (a dead-letter queue, or where
    /// an operator moved it); its headers say where it came from.
    fn relocate(&mut self, removal: &Removal, to: &str, applied: &mut Applied) {
        let Some(mut slot) = self.take(&removal.queue, removal.id) else {
            applied.mentioned.push(removal.id.seq);
            return;
        };
        applied.mentioned.push(slot.record);
        applied.durable |= slot.persistent();
        match slot.held {
            Held::InMemory => {
                if let Some(message) = &slot.message {
                    let moved = relocated(message, to);
                    self.note_expiry(to, &moved);
                    slot.load(moved);
                }
            }
            // A read out for it answers for the old queue: ask again for the new one.
            Held::Loading => slot.held = Held::Paged,
            Held::Paged | Held::Unreadable => {}
        }
        slot.redeliveries = 0;
        // Moved by an operator (or dead-lettered): deliverable in its new queue now.
        slot.release();
        self.put_ready(to, slot);
    }

    /// Applies one message of a compaction record: the message now lives in `record`.
    fn carry_one(&mut self, record: Seq, carried: &Carried, applied: &mut Applied) {
        applied.durable = true;
        applied.added += 1;
        self.unplaced.push((carried.queue.clone(), carried.id));
        if let Some(slot) = self
            .queues
            .get_mut(&carried.queue)
            .and_then(|queue| queue.slot_mut(carried.id))
        {
            applied.removed.push(slot.record);
            applied.mentioned.push(slot.record);
            slot.record = record;
            // The new place is set when this record is placed; a read out for the old
            // place is answered by `loaded`, which sees the record changed.
            slot.at = None;
            if slot.held == Held::Loading {
                slot.held = Held::Paged;
            }
            return;
        }
        // Replaying a journal whose older segments, with the message's own record, are
        // gone: this record is where the message lives now.
        let message = paging::stored_message(carried.id, &carried.message, &carried.queue);
        self.store(&carried.queue, record, message);
    }

    /// Whether a producer already sent this message (same `dedup-id`, same destination)
    /// recently: a resend after a failover, to be receipted but not stored again.
    pub fn is_duplicate(&self, message: &NewMessage) -> bool {
        self.dedup.contains(message)
    }

    /// Drops every message that was never journaled, as a restart would.
    pub fn drop_transient(&mut self) {
        let memory = &mut self.memory;
        for queue in self.queues.values_mut() {
            let counts = &mut queue.counts;
            queue.ready.retain(|slot| {
                let keep = slot.persistent();
                if !keep {
                    *memory -= slot.memory();
                    counts.left(slot);
                }
                keep
            });
        }
    }

    /// After a restart or a promotion: every stored message may have been delivered by
    /// the broker that held it before, so its next delivery says `redelivered:true`.
    pub fn mark_all_maybe_delivered(&mut self) {
        for queue in self.queues.values_mut() {
            let in_flight = queue.in_flight.values_mut().map(|(slot, _)| slot);
            for slot in queue.ready.iter_mut().chain(in_flight) {
                slot.mark_maybe_delivered();
            }
        }
    }

    /// Message bytes held, for the memory limit.
    pub fn memory_used(&self) -> usize {
        self.memory
    }

    /// (queue name, stored messages) for every non-empty queue, by name.
    pub fn queue_depths(&self) -> Vec<(String, usize)> {
        let mut depths: Vec<(String, usize)> = self
            .queues
            .iter()
            .filter(|(_, q)| q.depth() > 0)
            .map(|(name, q)| (name.clone(), q.depth()))
            .collect();
        depths.sort();
        depths
    }

    /// Ready messages whose bodies are only in the journal.
    pub fn paged_count(&self) -> usize {
        self.queues.values().map(|q| q.paged).sum()
    }

    /// Messages stored across all queues.
    pub fn message_count(&self) -> usize {
        self.queues.values().map(Queue::depth).sum()
    }
}

/// A message as it is stored once moved to queue `to`: its destination is `to`, and,
/// unless `to` is where it was sent, the header `original-destination` says where that
/// was. It depends only on the message as sent and `to`, however often and through which
/// queues it moved, so a copy kept in memory and one rebuilt from its record (a paged-out
/// body, a restart, a slave) agree.
fn relocated(message: &Message, to: &str) -> Arc<Message> {
    let sent_to = message
        .headers
        .iter()
        .find(|(name, _)| name == ORIGINAL_DESTINATION)
        .map_or_else(
            || message.destination.to_string(),
            |(_, value)| value.clone(),
        );
    let mut headers: Vec<(String, String)> = message
        .headers
        .iter()
        // Where it came from is said once; a delay was spent where it was (it is released
        // when moved).
        .filter(|(name, _)| name != ORIGINAL_DESTINATION && name != DELIVER_AT_HEADER)
        .cloned()
        .collect();
    let destination = Destination::Queue(to.to_string());
    if sent_to != destination.to_string() {
        headers.push((ORIGINAL_DESTINATION.into(), sent_to));
    }
    Arc::new(Message {
        id: message.id,
        destination,
        headers,
        body: message.body.clone(),
        persistent: message.persistent,
    })
}

/// The header a dead-lettered or moved message carries: the destination it was sent to.
pub const ORIGINAL_DESTINATION: &str = "original-destination";
