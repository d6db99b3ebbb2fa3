//! One queue: its ready messages in dispatch order (priority, then id), the ones in
//! flight to consumers, and its consumers in round-robin order.
//!
//! Invariant: every stored message is either in `ready` or in `in_flight` (held by
//! exactly one consumer); a message that is neither exists only between a requeue that
//! decided to dead-letter it and the `DeadLetter` op the caller applies next.
//!
//! `ready` (`ready.rs`, a lane of chunks per priority) keeps each priority sorted by id.
//! Ids grow with the seq of the record that added a message, so new messages go at the
//! back of their lane, a requeued one goes back to where it was (ahead of every newer one
//! of its priority, which is where a redelivery belongs), and an acknowledgement finds
//! its message by binary search. A ready message costs one `Slot`
//! (48 bytes) in memory while its body is paged out: that is what lets a queue hold a
//! backlog many times the memory limit.

use std::collections::HashMap;
use std::sync::Arc;

use super::message::{ConsumerKey, Message, MessageId};
use super::ready::{Key, Pos, Ready};
use crate::journal::{Placement, Seq};

/// Memory a stored message costs while its body is only in the journal: its slot, and
/// half a slot again for the ready list's spare capacity (it grows by doubling).
pub const SLOT_COST: usize = std::mem::size_of::<Slot>() * 3 / 2;

/// Where a stored message's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    InMemory,
    /// Only in the journal, at `Slot::at` of `Slot::record`.
    Paged,
    /// Being read back.
    Loading,
    /// Its record did not read back: it is held and never delivered (the log said why).
    Unreadable,
}

/// A stored message and what the broker knows about its deliveries: 48 bytes, laid out
/// flat because a deep queue holds millions of them.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    /// The message id's seq and index (`id()`).
    pub seq: Seq,
    pub index: u32,
    /// The record holding the message in the journal: the one that added it, or the
    /// compaction record that carried it forward.
    pub record: Seq,
    /// Where that record is in its segment, once placed (persistent messages only).
    pub at: Option<Placement>,
    /// The message, while `held` is `InMemory`.
    pub message: Option<Arc<Message>>,
    /// Its footprint in memory (`Message::footprint`).
    pub cost: u32,
    pub held: Held,
    /// Times it went back to the queue after a delivery (connection lost, NACK).
    pub redeliveries: u16,
    marks: Marks,
}

/// Its priority (0 to 9, the low four bits), whether it may have been delivered by a
/// broker that is gone (the top bit) and whether it waits for its delivery time (the
/// next): one byte, so that a slot stays 48 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marks(u8);

const MAYBE_DELIVERED: u8 = 0x80;
const WAITING: u8 = 0x40;

impl Slot {
    /// A message in memory, held by `record`.
    pub fn new(record: Seq, message: Arc<Message>) -> Slot {
        let waiting = if message.deliver_at().is_some() {
            WAITING
        } else {
            0
        };
        let marks = Marks(message.priority() | waiting);
        Slot {
            seq: message.id.seq,
            index: message.id.index,
            record,
            at: None,
            cost: message.footprint() as u32,
            message: Some(message),
            held: Held::InMemory,
            redeliveries: 0,
            marks,
        }
    }

    /// Its priority, 0 to 9: higher is dispatched first.
    pub fn priority(&self) -> u8 {
        self.marks.0 & 0x0f
    }

    /// It may have been delivered by a broker that is gone (a restart, a failover): its
    /// next delivery carries `redelivered:true`, as a hint to the consumer.
    pub fn maybe_delivered(&self) -> bool {
        self.marks.0 & MAYBE_DELIVERED != 0
    }

    pub fn mark_maybe_delivered(&mut self) {
        self.marks.0 |= MAYBE_DELIVERED;
    }

    /// It was sent with a delay (`AMQ_SCHEDULED_DELAY`) not yet released: dispatch does
    /// not see it.
    pub fn waiting(&self) -> bool {
        self.marks.0 & WAITING != 0
    }

    pub fn release(&mut self) {
        self.marks.0 &= !WAITING;
    }

    #[cfg(test)]
    pub fn mark_waiting(&mut self) {
        self.marks.0 |= WAITING;
    }

    /// Its place in dispatch order.
    pub fn key(&self) -> Key {
        Key {
            priority: self.priority(),
            id: self.id(),
        }
    }

    pub fn id(&self) -> MessageId {
        MessageId::new(self.seq, self.index)
    }

    /// The message, if it is in memory.
    pub fn resident(&self) -> Option<&Arc<Message>> {
        match self.held {
            Held::InMemory => self.message.as_ref(),
            _ => None,
        }
    }

    /// Bytes this message holds in memory, for the memory limit.
    pub fn memory(&self) -> usize {
        match self.held {
            Held::InMemory => self.cost as usize,
            _ => SLOT_COST,
        }
    }

    /// Whether the body is not in memory (paged or being read back).
    pub fn awaits_body(&self) -> bool {
        matches!(self.held, Held::Paged | Held::Loading)
    }

    /// Whether it is persistent: only persistent messages are journaled, so one whose
    /// body is not in memory is.
    pub fn persistent(&self) -> bool {
        self.resident().is_none_or(|message| message.persistent)
    }

    /// Drops the body from memory if its record is placed in the journal; true if it was.
    pub fn page_out(&mut self) -> bool {
        if self.held != Held::InMemory || self.at.is_none() || !self.persistent() {
            return false;
        }
        self.message = None;
        self.held = Held::Paged;
        true
    }

    /// The body is back in memory.
    pub fn load(&mut self, message: Arc<Message>) {
        self.cost = message.footprint() as u32;
        self.message = Some(message);
        self.held = Held::InMemory;
    }
}

#[derive(Debug, Default)]
pub(super) struct Queue {
    /// Ready messages, sorted by id.
    pub ready: Ready,
    /// Delivered and not yet acknowledged, with the consumer holding each.
    pub in_flight: HashMap<MessageId, (Slot, ConsumerKey)>,
    pub consumers: Vec<ConsumerKey>,
    /// Index into `consumers` of the next one to offer a message to.
    pub cursor: usize,
    /// Ready messages whose body is not in memory.
    pub paged: usize,
    /// The last message the read-ahead has looked at (`paging::wanted_reads`).
    pub read_ahead_to: Option<Key>,
    /// The last message eviction has paged out or passed (`paging::evict`).
    pub evicted_to: Option<Key>,
    /// A paged-out message dispatch stopped at behind messages it passed over (none
    /// selected them, or they are unreadable): the read-ahead reads from there next.
    pub blocked_at: Option<Key>,
    /// What the admin API shows: arrivals, departures, bytes stored.
    pub counts: super::admin::QueueCounts,
}

impl Queue {
    /// Puts a ready message in its place by id (at the back, for a new one).
    pub fn insert(&mut self, slot: Slot) {
        if slot.awaits_body() {
            self.paged += 1;
        }
        self.ready.insert(slot);
    }

    /// Where a ready message is in `ready`.
    pub fn find_ready(&self, id: MessageId) -> Option<Pos> {
        self.ready.find(id)
    }

    /// The slot of a stored message, ready or in flight.
    pub fn slot_mut(&mut self, id: MessageId) -> Option<&mut Slot> {
        match self.ready.find(id) {
            Some(pos) => self.ready.get_mut(pos),
            None => self.in_flight.get_mut(&id).map(|(slot, _)| slot),
        }
    }

    /// Takes the ready message at `pos` out of `ready`.
    pub fn take_ready(&mut self, pos: Pos) -> Option<Slot> {
        let slot = self.ready.remove(pos)?;
        if slot.awaits_body() {
            self.paged -= 1;
        }
        Some(slot)
    }

    /// Removes a message wherever it is, with the consumer that held it; the caller
    /// fixes that consumer's in-flight list.
    pub fn remove(&mut self, id: MessageId) -> Option<(Slot, Option<ConsumerKey>)> {
        if let Some((slot, holder)) = self.in_flight.remove(&id) {
            return Some((slot, Some(holder)));
        }
        let pos = self.find_ready(id)?;
        self.take_ready(pos).map(|slot| (slot, None))
    }

    pub fn remove_consumer(&mut self, key: ConsumerKey) {
        self.consumers.retain(|k| *k != key);
        if self.cursor >= self.consumers.len() {
            self.cursor = 0;
        }
    }

    /// Messages stored, ready or in flight.
    pub fn depth(&self) -> usize {
        self.ready.len() + self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    /// A paged-out message costs its slot: the backlog's memory figures count on 48.
    #[test]
    fn a_slot_is_48_bytes() {
        assert_eq!(std::mem::size_of::<super::Slot>(), 48);
    }
}
