//! The broker: all message state, deterministic, with no I/O and no clock.
//!
//! Two kinds of change happen here. Durable changes arrive only as [`Op`]s through
//! [`Broker::apply`], which recovery, the slave and the live master all call, so their
//! states agree by construction. Derived changes (who subscribes, what is in flight to
//! whom, prefetch windows) are made by the other methods and never journaled; when one
//! of them implies a durable change (a message dead-lettered, an ack validated) it
//! returns the `Op` for the caller to sequence and apply.

mod dedup;
mod message;
mod op;
mod paging;
mod queue;
mod ready;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::codec;
use crate::journal::{EpochStart, Record, Seq};
use dedup::DedupWindow;
pub use dedup::DEDUP_HEADER;
pub use message::{
    AckMode, ConsumerKey, Delivery, Destination, Message, MessageId, NewMessage, SessionId,
};
pub use op::{Carried, Op, Removal};
pub use paging::{Fetch, Loaded};
use queue::{Held, Queue, Slot};

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

#[derive(Debug)]
struct Consumer {
    destination: Destination,
    subscription: Arc<str>,
    ack: AckMode,
    prefetch: usize,
    /// Delivered and not yet acknowledged, in delivery order.
    in_flight: VecDeque<MessageId>,
}

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
    /// Persistent messages the last applied record stored, waiting for its placement.
    unplaced: Vec<(String, MessageId)>,
    /// A body stayed or came back in memory since eviction last found nothing more to
    /// page out.
    evictable: bool,
}

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
            unplaced: Vec::new(),
            evictable: false,
        }
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
        let applied = self.apply(record.seq, &op, keep_transient);
        Ok(Replayed {
            applied,
            epoch_started,
        })
    }

    /// Applies the record `seq`. `keep_transient` is false when replaying the journal
    /// after a restart, where non-persistent messages must not come back.
    pub fn apply(&mut self, seq: Seq, op: &Op, keep_transient: bool) -> Applied {
        let mut applied = Applied::default();
        self.unplaced.clear();
        match op {
            Op::Send(message) => self.add(seq, 0, message, keep_transient, &mut applied),
            Op::Ack(removals) => {
                for removal in removals {
                    self.consume(removal, &mut applied);
                }
            }
            Op::Commit { sends, acks } => {
                for (index, message) in sends.iter().enumerate() {
                    self.add(seq, index as u32, message, keep_transient, &mut applied);
                }
                for removal in acks {
                    self.consume(removal, &mut applied);
                }
            }
            Op::DeadLetter(removal) => self.dead_letter(removal, &mut applied),
            Op::EpochStarted { .. } => applied.durable = true,
            Op::Carry(carried) => {
                for carried in carried {
                    self.carry_one(seq, carried, &mut applied);
                }
            }
        }
        applied
    }

    fn add(
        &mut self,
        seq: Seq,
        index: u32,
        new: &NewMessage,
        keep_transient: bool,
        applied: &mut Applied,
    ) {
        if !new.persistent && !keep_transient {
            return;
        }
        self.dedup.insert(new);
        let message = Message::new(MessageId { seq, index }, new);
        match &new.destination {
            Destination::Queue(name) => {
                if message.persistent {
                    applied.durable = true;
                    applied.added += 1;
                    self.unplaced.push((name.clone(), message.id));
                }
                self.store(name, seq, message);
            }
            Destination::Topic(name) => {
                // Topics hold nothing: the message goes to whoever subscribes right now.
                for key in self.topics.get(name).into_iter().flatten() {
                    if let Some(consumer) = self.consumers.get(key) {
                        self.topic_deliveries.push(Delivery {
                            consumer: *key,
                            subscription: consumer.subscription.clone(),
                            ack: consumer.ack,
                            message: message.clone(),
                            redelivered: false,
                        });
                    }
                }
            }
        }
    }

    /// Stores a new message, held by `record`, at the tail of `queue`.
    fn store(&mut self, queue: &str, record: Seq, message: Arc<Message>) {
        self.put_ready(queue, Slot::new(record, message));
    }

    /// Puts a ready slot in its place in `queue`.
    fn put_ready(&mut self, queue: &str, slot: Slot) {
        self.memory += slot.memory();
        match self.queues.get_mut(queue) {
            Some(existing) => existing.insert(slot),
            None => self
                .queues
                .entry(queue.to_string())
                .or_default()
                .insert(slot),
        }
        if !self.dirty.contains(queue) {
            self.dirty.insert(queue.to_string());
        }
    }

    /// Takes a message out of its queue and out of its holder's in-flight list.
    fn take(&mut self, queue: &str, id: MessageId) -> Option<Slot> {
        let (slot, holder) = self.queues.get_mut(queue)?.remove(id)?;
        self.memory -= slot.memory();
        if let Some(holder) = holder {
            if let Some(consumer) = self.consumers.get_mut(&holder) {
                if let Some(position) = consumer.in_flight.iter().position(|m| *m == id) {
                    consumer.in_flight.remove(position);
                }
            }
            // A window slot opened.
            self.dirty.insert(queue.to_string());
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

    fn dead_letter(&mut self, removal: &Removal, applied: &mut Applied) {
        let Some(mut slot) = self.take(&removal.queue, removal.id) else {
            applied.mentioned.push(removal.id.seq);
            return;
        };
        applied.mentioned.push(slot.record);
        applied.durable |= slot.persistent();
        let dlq = format!("{DLQ_PREFIX}{}", removal.queue);
        match slot.held {
            Held::InMemory => {
                if let Some(message) = &slot.message {
                    let moved = dead_lettered(message, &dlq);
                    slot.load(moved);
                }
            }
            // A read out for it answers for the old queue: ask again for the new one.
            Held::Loading => slot.held = Held::Paged,
            Held::Paged | Held::Unreadable => {}
        }
        slot.redeliveries = 0;
        self.put_ready(&dlq, slot);
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

    /// Adds a consumer; its messages flow at the next `dispatch`.
    pub fn subscribe(
        &mut self,
        key: ConsumerKey,
        destination: Destination,
        subscription: Arc<str>,
        ack: AckMode,
        prefetch: usize,
    ) {
        match &destination {
            Destination::Queue(name) => {
                self.queues
                    .entry(name.clone())
                    .or_default()
                    .consumers
                    .push(key);
                self.dirty.insert(name.clone());
            }
            Destination::Topic(name) => self.topics.entry(name.clone()).or_default().push(key),
        }
        self.consumers.insert(
            key,
            Consumer {
                destination,
                subscription,
                ack,
                prefetch: prefetch.max(1),
                in_flight: VecDeque::new(),
            },
        );
    }

    /// Removes a consumer; what it held goes back to the head of its queue. Returns the
    /// dead-letter ops for messages that have now failed too often.
    pub fn unsubscribe(&mut self, key: ConsumerKey) -> Vec<Op> {
        let Some(consumer) = self.consumers.remove(&key) else {
            return Vec::new();
        };
        match &consumer.destination {
            Destination::Queue(name) => {
                if let Some(queue) = self.queues.get_mut(name) {
                    queue.remove_consumer(key);
                }
                self.requeue(name, consumer.in_flight.into_iter().collect())
            }
            Destination::Topic(name) => {
                if let Some(keys) = self.topics.get_mut(name) {
                    keys.retain(|k| *k != key);
                    if keys.is_empty() {
                        self.topics.remove(name);
                    }
                }
                Vec::new()
            }
        }
    }

    /// Removes every consumer of a closed connection.
    pub fn close_session(&mut self, session: SessionId) -> Vec<Op> {
        let keys: Vec<ConsumerKey> = self
            .consumers
            .range(
                ConsumerKey { session, sub: 0 }..=ConsumerKey {
                    session,
                    sub: u64::MAX,
                },
            )
            .map(|(key, _)| *key)
            .collect();
        keys.into_iter()
            .flat_map(|key| self.unsubscribe(key))
            .collect()
    }

    /// Puts delivered messages back in `queue`, each in its place by id, ahead of every
    /// newer message.
    fn requeue(&mut self, queue_name: &str, ids: Vec<MessageId>) -> Vec<Op> {
        let Some(queue) = self.queues.get_mut(queue_name) else {
            return Vec::new();
        };
        let may_dead_letter = !queue_name.starts_with(DLQ_PREFIX);
        let mut failed = Vec::new();
        for id in ids {
            let Some((mut slot, _)) = queue.in_flight.remove(&id) else {
                continue;
            };
            slot.redeliveries = slot.redeliveries.saturating_add(1);
            if may_dead_letter && u32::from(slot.redeliveries) > self.max_redeliveries {
                failed.push(id);
            }
            // A message to dead-letter waits among the ready for the caller's
            // DeadLetter op, which the caller applies before the next dispatch.
            queue.insert(slot);
        }
        self.dirty.insert(queue_name.to_string());
        // Oldest first, as they were sent.
        failed.sort();
        failed
            .into_iter()
            .map(|id| {
                Op::DeadLetter(Removal {
                    queue: queue_name.to_string(),
                    id,
                })
            })
            .collect()
    }

    /// Finds the consumer an ACK or NACK refers to and the messages it covers: in
    /// `client` mode every earlier in-flight message of that subscription too.
    fn acked_range(
        &self,
        session: SessionId,
        sub: Option<u64>,
        id: MessageId,
    ) -> Result<(ConsumerKey, String, Vec<MessageId>), Refused> {
        let refused = || {
            Refused(format!(
                "message {id} is not awaiting an acknowledgement on this connection"
            ))
        };
        let holds = |consumer: &Consumer| consumer.in_flight.iter().position(|m| *m == id);
        let (key, consumer, end) = self
            .session_consumers(session)
            .filter(|(key, _)| sub.is_none_or(|sub| sub == key.sub))
            .find_map(|(key, consumer)| holds(consumer).map(|end| (*key, consumer, end)))
            .ok_or_else(refused)?;
        let Destination::Queue(queue) = &consumer.destination else {
            return Err(refused());
        };
        let ids = if consumer.ack == AckMode::Client {
            consumer.in_flight.iter().take(end + 1).copied().collect()
        } else {
            vec![id]
        };
        Ok((key, queue.clone(), ids))
    }

    /// The consumers of one session, by subscription id.
    fn session_consumers(
        &self,
        session: SessionId,
    ) -> impl Iterator<Item = (&ConsumerKey, &Consumer)> {
        self.consumers.range(
            ConsumerKey { session, sub: 0 }..=ConsumerKey {
                session,
                sub: u64::MAX,
            },
        )
    }

    /// Whether `sub` (or, without one, any subscription of the session) is on a topic,
    /// where messages are not stored and acknowledgements have nothing to remove.
    fn acks_topic(&self, session: SessionId, sub: Option<u64>) -> bool {
        match sub {
            Some(sub) => self
                .consumers
                .get(&ConsumerKey { session, sub })
                .is_some_and(|c| matches!(c.destination, Destination::Topic(_))),
            None => self
                .session_consumers(session)
                .any(|(_, c)| matches!(c.destination, Destination::Topic(_))),
        }
    }

    /// Validates an ACK and returns what it removes; nothing changes until the caller
    /// applies `Op::Ack` (or a commit) with these removals.
    pub fn ack(
        &self,
        session: SessionId,
        sub: Option<u64>,
        id: MessageId,
    ) -> Result<Vec<Removal>, Refused> {
        match self.acked_range(session, sub, id) {
            Ok((_, queue, ids)) => Ok(ids
                .into_iter()
                .map(|id| Removal {
                    queue: queue.clone(),
                    id,
                })
                .collect()),
            Err(_) if self.acks_topic(session, sub) => Ok(Vec::new()),
            Err(refused) => Err(refused),
        }
    }

    /// Applies a NACK: the messages go back to the head of their queue to be redelivered,
    /// or, past `max_redeliveries`, the returned dead-letter ops move them to the DLQ.
    pub fn nack(
        &mut self,
        session: SessionId,
        sub: Option<u64>,
        id: MessageId,
    ) -> Result<Vec<Op>, Refused> {
        let (holder, queue, ids) = match self.acked_range(session, sub, id) {
            Ok(found) => found,
            Err(_) if self.acks_topic(session, sub) => return Ok(Vec::new()),
            Err(refused) => return Err(refused),
        };
        if let Some(consumer) = self.consumers.get_mut(&holder) {
            consumer.in_flight.retain(|m| !ids.contains(m));
        }
        Ok(self.requeue(&queue, ids))
    }

    /// For an `auto` subscription: the messages written to the client, still in flight,
    /// that are now consumed.
    pub fn written(&self, key: ConsumerKey, ids: &[MessageId]) -> Vec<Removal> {
        let Some(consumer) = self.consumers.get(&key) else {
            return Vec::new();
        };
        let Destination::Queue(queue) = &consumer.destination else {
            return Vec::new();
        };
        ids.iter()
            .filter(|id| consumer.in_flight.contains(id))
            .map(|id| Removal {
                queue: queue.clone(),
                id: *id,
            })
            .collect()
    }

    /// Hands ready messages to consumers with room in their prefetch windows,
    /// round-robin, in id order, and returns the deliveries (topic messages included). A
    /// queue whose next message is still in the journal waits for it to be read back
    /// (`paging`), so order holds; an unreadable one is passed over.
    pub fn dispatch(&mut self) -> Vec<Delivery> {
        let mut deliveries = std::mem::take(&mut self.topic_deliveries);
        for name in std::mem::take(&mut self.dirty) {
            let Some(queue) = self.queues.get_mut(&name) else {
                continue;
            };
            let count = queue.consumers.len();
            if count == 0 {
                continue;
            }
            // Unreadable messages at the front, passed over.
            let mut skipped = 0;
            while let Some(pos) = queue.ready.nth(skipped) {
                let Some(slot) = queue.ready.get(pos) else {
                    break;
                };
                let message = match (slot.held, &slot.message) {
                    (Held::InMemory, Some(message)) => message.clone(),
                    (Held::Unreadable, _) => {
                        skipped += 1;
                        continue;
                    }
                    _ => break,
                };
                let chosen = (0..count)
                    .map(|step| (queue.cursor + step) % count)
                    .find(|&i| {
                        self.consumers
                            .get(&queue.consumers[i])
                            .is_some_and(|c| c.in_flight.len() < c.prefetch)
                    });
                let Some(index) = chosen else {
                    break;
                };
                let key = queue.consumers[index];
                queue.cursor = (index + 1) % count;
                let (Some(slot), Some(consumer)) =
                    (queue.take_ready(pos), self.consumers.get_mut(&key))
                else {
                    break;
                };
                consumer.in_flight.push_back(slot.id());
                deliveries.push(Delivery {
                    consumer: key,
                    subscription: consumer.subscription.clone(),
                    ack: consumer.ack,
                    message,
                    redelivered: slot.redeliveries > 0 || slot.maybe_delivered,
                });
                queue.in_flight.insert(slot.id(), (slot, key));
            }
        }
        deliveries
    }

    /// Drops every message that was never journaled, as a restart would.
    pub fn drop_transient(&mut self) {
        let memory = &mut self.memory;
        for queue in self.queues.values_mut() {
            queue.ready.retain(|slot| {
                let keep = slot.persistent();
                if !keep {
                    *memory -= slot.memory();
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
                slot.maybe_delivered = true;
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

/// A message as it is stored once moved to `dlq`: the header `original-destination`
/// says where it came from.
fn dead_lettered(message: &Message, dlq: &str) -> Arc<Message> {
    let mut headers = message.headers.clone();
    headers.push((
        "original-destination".into(),
        message.destination.to_string(),
    ));
    Arc::new(Message {
        id: message.id,
        destination: Destination::Queue(dlq.to_string()),
        headers,
        body: message.body.clone(),
        persistent: message.persistent,
    })
}
