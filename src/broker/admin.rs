//! What operators see of the broker and what they may do to it: per-destination counts
//! (for the admin API and the metrics), browsing a queue without consuming it, and the
//! plans of the operator's ops (purge, move, delete), each of which is a journal record
//! (`Op::Ack`, `Op::Move`, `Op::DeleteQueue`) so slaves, restarts and failovers keep it.
//!
//! The counts are this broker's since it started (replayed records count too): a slave
//! mirrors stored messages, not consumers, so its in-flight counts are zero.

use std::sync::Arc;

use super::queue::Slot;
use super::{Broker, Destination, Fetch, Message, MessageId, Removal};
use crate::journal::Seq;

/// Arrivals, departures and bytes of one queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    pub enqueued: u64,
    pub dequeued: u64,
    /// The stored messages' footprints, paged out or not.
    pub bytes: u64,
}

impl QueueCounts {
    pub(super) fn arrived(&mut self, slot: &Slot) {
        self.enqueued += 1;
        self.bytes += u64::from(slot.cost);
    }

    pub(super) fn left(&mut self, slot: &Slot) {
        self.dequeued += 1;
        self.bytes = self.bytes.saturating_sub(u64::from(slot.cost));
    }
}

/// Messages published to a subscribed topic, and deliveries made of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TopicCounts {
    pub published: u64,
    pub delivered: u64,
}

/// One destination as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationStats {
    pub name: String,
    /// Stored messages, ready and in flight (0 for a topic: topics store nothing).
    pub depth: usize,
    pub consumers: usize,
    pub enqueued: u64,
    pub dequeued: u64,
    pub in_flight: usize,
    pub bytes: u64,
    /// The seq of the record that added the oldest stored message.
    pub oldest: Option<Seq>,
}

/// One message of a browse: in memory, or where to read it from the journal.
#[derive(Debug, Clone)]
pub struct Browsed {
    pub id: MessageId,
    pub redeliveries: u16,
    pub size: u32,
    pub body: BrowsedBody,
}

#[derive(Debug, Clone)]
pub enum BrowsedBody {
    InMemory(Arc<Message>),
    /// Paged out: read it from the journal with this fetch (`messages_from`).
    Paged(Fetch),
    /// Its record did not read back.
    Unreadable,
}

/// Why an operator's op is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRefusal {
    NoSuchQueue(String),
    /// The queue has consumers, which hold its in-flight messages.
    HasConsumers(String, usize),
}

impl std::fmt::Display for AdminRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminRefusal::NoSuchQueue(name) => write!(f, "no queue named {name}"),
            AdminRefusal::HasConsumers(name, n) => write!(
                f,
                "queue {name} has {n} consumer(s): close them before deleting it"
            ),
        }
    }
}

impl Broker {
    /// Every queue, by name.
    pub fn queue_stats(&self) -> Vec<DestinationStats> {
        let mut stats: Vec<DestinationStats> = self
            .queues
            .iter()
            .map(|(name, queue)| {
                let oldest_ready = queue.ready.oldest();
                let oldest_in_flight = queue.in_flight.keys().map(|id| id.seq).min();
                DestinationStats {
                    name: name.clone(),
                    depth: queue.depth(),
                    consumers: queue.consumers.len(),
                    enqueued: queue.counts.enqueued,
                    dequeued: queue.counts.dequeued,
                    in_flight: queue.in_flight.len(),
                    bytes: queue.counts.bytes,
                    oldest: oldest_ready.into_iter().chain(oldest_in_flight).min(),
                }
            })
            .collect();
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    /// Every topic with subscribers, by name.
    pub fn topic_stats(&self) -> Vec<DestinationStats> {
        let mut stats: Vec<DestinationStats> = self
            .topics
            .iter()
            .map(|(name, keys)| {
                let counts = self.topic_counts.get(name).copied().unwrap_or_default();
                DestinationStats {
                    name: name.clone(),
                    depth: 0,
                    consumers: keys.len(),
                    enqueued: counts.published,
                    dequeued: counts.delivered,
                    in_flight: 0,
                    bytes: 0,
                    oldest: None,
                }
            })
            .collect();
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    /// The first `limit` ready messages of `queue`, in the order they will be delivered;
    /// `None` if there is no such queue.
    pub fn browse(&self, queue: &str, limit: usize) -> Option<Vec<Browsed>> {
        let stored = self.queues.get(queue)?;
        let browsed = stored
            .ready
            .iter()
            .take(limit)
            .map(|slot| Browsed {
                id: slot.id(),
                redeliveries: slot.redeliveries,
                size: slot.cost,
                body: match (slot.resident(), slot.at) {
                    (Some(message), _) => BrowsedBody::InMemory(message.clone()),
                    (None, Some(at)) if slot.awaits_body() => BrowsedBody::Paged(Fetch {
                        queue: queue.to_string(),
                        id: slot.id(),
                        record: slot.record,
                        at,
                    }),
                    (None, _) => BrowsedBody::Unreadable,
                },
            })
            .collect();
        Some(browsed)
    }

    /// The ready messages of `queue`, to remove as one `Op::Ack` (a purge): the ones in
    /// flight stay with their consumers, who acknowledge or return them.
    pub fn purge_plan(&self, queue: &str) -> Result<Vec<Removal>, AdminRefusal> {
        let stored = self
            .queues
            .get(queue)
            .ok_or_else(|| AdminRefusal::NoSuchQueue(queue.to_string()))?;
        Ok(stored
            .ready
            .iter()
            .map(|slot| Removal::new(queue, slot.id()))
            .collect())
    }

    /// What deleting `queue` removes (`Op::DeleteQueue`): refused while it has consumers.
    pub fn delete_plan(&self, queue: &str) -> Result<Vec<Removal>, AdminRefusal> {
        let stored = self
            .queues
            .get(queue)
            .ok_or_else(|| AdminRefusal::NoSuchQueue(queue.to_string()))?;
        if !stored.consumers.is_empty() {
            return Err(AdminRefusal::HasConsumers(
                queue.to_string(),
                stored.consumers.len(),
            ));
        }
        self.purge_plan(queue)
    }

    /// The temporary queues there are (`Destination::temporary_owner`).
    pub fn temporary_queues(&self) -> Vec<String> {
        self.queues
            .keys()
            .filter(|name| {
                Destination::Queue((*name).clone())
                    .temporary_owner()
                    .is_some()
            })
            .cloned()
            .collect()
    }

    /// Drops an emptied queue (applying `Op::DeleteQueue`); one that still holds messages
    /// or consumers (never so on a master, which planned the delete) stays.
    pub(super) fn forget_queue(&mut self, queue: &str) {
        if self
            .queues
            .get(queue)
            .is_some_and(|q| q.depth() == 0 && q.consumers.is_empty())
        {
            self.queues.remove(queue);
            self.dirty.remove(queue);
        }
    }
}
