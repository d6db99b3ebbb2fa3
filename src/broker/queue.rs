//! One queue: its messages, the ready list in FIFO order, and its consumers in
//! round-robin order.
//!
//! Invariant: every entry is either in `ready` (holder `None`) or in flight to exactly one
//! consumer (holder `Some`); a message that is neither exists only between a requeue that
//! decided to dead-letter it and the `DeadLetter` op the caller applies next.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::message::{ConsumerKey, Message, MessageId};

/// A stored message and what the broker knows about its deliveries.
#[derive(Debug)]
pub(super) struct Entry {
    pub message: Arc<Message>,
    /// Times it went back to the queue after a delivery (connection lost, NACK).
    pub redeliveries: u32,
    /// The consumer it is in flight to, if any.
    pub holder: Option<ConsumerKey>,
    /// It may have been delivered by a broker that is gone (a restart, a failover): its
    /// next delivery carries `redelivered:true`, as a hint to the consumer.
    pub maybe_delivered: bool,
}

#[derive(Debug, Default)]
pub(super) struct Queue {
    pub entries: HashMap<MessageId, Entry>,
    pub ready: VecDeque<MessageId>,
    pub consumers: Vec<ConsumerKey>,
    /// Index into `consumers` of the next one to offer a message to.
    pub cursor: usize,
}

impl Queue {
    /// Appends a new message at the tail.
    pub fn push_back(&mut self, message: Arc<Message>) {
        let id = message.id;
        self.entries.insert(
            id,
            Entry {
                message,
                redeliveries: 0,
                holder: None,
                maybe_delivered: false,
            },
        );
        self.ready.push_back(id);
    }

    /// Removes a message wherever it is; the caller fixes the holder's in-flight list.
    pub fn remove(&mut self, id: MessageId) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        if entry.holder.is_none() {
            // Acks mostly hit the oldest messages, so search from the front.
            if let Some(position) = self.ready.iter().position(|ready| *ready == id) {
                self.ready.remove(position);
            }
        }
        Some(entry)
    }

    pub fn remove_consumer(&mut self, key: ConsumerKey) {
        self.consumers.retain(|k| *k != key);
        if self.cursor >= self.consumers.len() {
            self.cursor = 0;
        }
    }

    /// Messages stored, ready or in flight.
    pub fn depth(&self) -> usize {
        self.entries.len()
    }
}
