//! Bodies past the memory limit: paged out to the journal, read back ahead of the
//! consumers, and gathered for compaction.
//!
//! The broker does no I/O. Once a record is placed in the journal (`placed`), the
//! persistent messages it stored keep only their slot in memory if the broker holds more
//! than `page_above` bytes, and always while it mirrors a master. `wanted_reads` names
//! the bodies to read back: for each queue with consumers, a window of its next
//! messages; the caller reads them (the journal's reader thread) and hands each record to
//! `loaded`. Compaction asks for every message a run of records holds
//! (`gather_to_carry`), in memory, to write them forward in one record.

#[cfg(test)]
mod tests;

use std::collections::hash_map::{Entry, HashMap};
use std::ops::Range;
use std::sync::Arc;

use super::message::{Destination, Message, MessageId, NewMessage};
use super::op::{Carried, Op};
use super::queue::{Held, SLOT_COST};
use super::Broker;
use crate::codec;
use crate::journal::{Fetched, Placement, Seq};

/// Messages of a queue with consumers kept in memory, or on their way, ahead of them.
const READ_AHEAD: usize = 1024;
/// ... and at most this many bytes of them: a quarter of the paging point (an eighth of
/// `broker.max_memory`), within these bounds.
const READ_AHEAD_BYTES: std::ops::RangeInclusive<usize> = (64 << 10)..=(4 << 20);

/// A body to read back: the message, and the record and place it was asked for at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub queue: String,
    pub id: MessageId,
    pub record: Seq,
    pub at: Placement,
}

/// What one read back gave, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    /// In memory again, or no longer wanted (consumed or moved meanwhile).
    Done,
    /// The record did not give the message back; it is held and never delivered.
    Unreadable(String),
}

impl Broker {
    /// Pages persistent messages out once the broker holds more than `page_above`
    /// bytes; `None` keeps every body in memory.
    pub fn set_paging(&mut self, page_above: Option<usize>) {
        self.page_above = page_above;
    }

    /// While this broker mirrors a master it keeps no persistent body in memory: each is
    /// paged out as its record is placed, and those already in memory are evicted. A
    /// slave has no consumers, so those bodies would only duplicate its journal, and
    /// taking fresh memory for each one at the master's rate was a tenth of a slave's
    /// work. Promoted, it reads them back ahead of its consumers like any paged body.
    pub fn set_mirroring(&mut self, mirroring: bool) {
        self.mirroring = mirroring;
        self.evictable = true;
    }

    /// Whether this broker mirrors a master (see `set_mirroring`).
    pub fn mirroring(&self) -> bool {
        self.mirroring
    }

    /// Past how many bytes held bodies are paged out, now.
    fn paging_point(&self) -> Option<usize> {
        if self.mirroring {
            Some(0)
        } else {
            self.page_above
        }
    }

    /// The record `record` was written at `at`: the persistent messages it stored know
    /// where they are, and past the paging point keep only their slot in memory (and
    /// older bodies are paged out too, if the slots alone have grown past it).
    pub fn placed(&mut self, record: Seq, at: Placement) {
        let paging_point = self.paging_point();
        for (name, id) in std::mem::take(&mut self.unplaced) {
            let Some(queue) = self.queues.get_mut(&name) else {
                continue;
            };
            let Some(pos) = queue.find_ready(id) else {
                // In flight (carried forward while delivered): in memory for good reason.
                if let Some((slot, _)) = queue.in_flight.get_mut(&id) {
                    if slot.record == record {
                        slot.at = Some(at);
                    }
                }
                continue;
            };
            let Some(slot) = queue.ready.get_mut(pos) else {
                continue;
            };
            if slot.record != record {
                continue;
            }
            slot.at = Some(at);
            let over = paging_point.is_some_and(|limit| self.memory > limit);
            if over && slot.page_out() {
                queue.paged += 1;
                self.memory = self.memory - slot.cost as usize + SLOT_COST;
            } else if slot.held == Held::InMemory {
                // Kept in memory: a candidate once the slots grow past the paging point.
                self.evictable = true;
            }
        }
        self.evict();
    }

    /// While the broker holds more than its paging point, pages out bodies of ready
    /// messages, in each queue from past its read-ahead window towards the back: those
    /// are the ones its consumers need last.
    fn evict(&mut self) {
        let Some(limit) = self.paging_point() else {
            return;
        };
        if !self.evictable {
            return;
        }
        for queue in self.queues.values_mut() {
            if self.memory <= limit {
                return;
            }
            let from = match queue.evicted_to {
                Some(last) => queue.ready.count_through(last),
                None => 0,
            };
            for slot in queue.ready.iter_mut_from(from.max(READ_AHEAD)) {
                if self.memory <= limit {
                    break;
                }
                let cost = slot.cost as usize;
                if slot.page_out() {
                    queue.paged += 1;
                    self.memory = self.memory - cost + SLOT_COST;
                }
                queue.evicted_to = Some(slot.key());
            }
        }
        if self.memory > limit {
            // Every body past the windows is out: nothing to do until one comes back.
            self.evictable = false;
        }
    }

    /// Bodies to read back now, marked as being read: for every queue with consumers, its
    /// next `READ_AHEAD` messages, once fewer than half of them are left in memory.
    /// Only records up to `durable` are on disk to be read.
    pub fn wanted_reads(&mut self, durable: Seq) -> Vec<Fetch> {
        let mut wanted = Vec::new();
        let mut wait_for: Option<Seq> = None;
        let window_bytes = (self.page_above.unwrap_or(usize::MAX) / 4)
            .clamp(*READ_AHEAD_BYTES.start(), *READ_AHEAD_BYTES.end());
        for (name, queue) in &mut self.queues {
            if queue.paged == 0 || queue.consumers.is_empty() {
                continue;
            }
            let blocked_at = queue.blocked_at.take();
            let (from, span) = match blocked_at {
                // Dispatch stopped at a paged message behind ones it passed over, which
                // stay at the head: read from there, not from the head.
                Some(key) => (queue.ready.count_through(key).saturating_sub(1), READ_AHEAD),
                None => {
                    let ahead = match queue.read_ahead_to {
                        Some(last) => queue.ready.count_through(last),
                        None => 0,
                    };
                    if ahead >= READ_AHEAD / 2 {
                        continue;
                    }
                    (ahead, READ_AHEAD - ahead)
                }
            };
            let mut bytes = 0;
            for slot in queue.ready.iter_mut_from(from).take(span) {
                if bytes >= window_bytes {
                    break;
                }
                if slot.held == Held::Paged {
                    let (Some(at), true) = (slot.at, slot.record <= durable) else {
                        // Read once the journal says it holds the record
                        // (`reads_wait_for`), from where this read stopped.
                        wait_for = Some(wait_for.map_or(slot.record, |w| w.min(slot.record)));
                        queue.blocked_at = blocked_at;
                        break;
                    };
                    slot.held = Held::Loading;
                    bytes += slot.cost as usize;
                    wanted.push(Fetch {
                        queue: name.clone(),
                        id: slot.id(),
                        record: slot.record,
                        at,
                    });
                }
                queue.read_ahead_to = Some(slot.key());
            }
        }
        self.reads_wait_for = wait_for;
        wanted
    }

    /// Whether the last read-ahead stopped at a record the journal now holds (`durable`
    /// and before): the read-ahead is due again, though nothing else changed. A promoted
    /// slave's bodies are all paged out, and its consumers may come before its journal
    /// has reported the last records it mirrored durable.
    pub fn reads_wait_for(&self, durable: Seq) -> bool {
        self.reads_wait_for.is_some_and(|record| record <= durable)
    }

    /// A body read back: the message is in memory again and may be dispatched.
    pub fn loaded(&mut self, fetch: &Fetch, fetched: Fetched) -> Loaded {
        let op = decoded(fetch, fetched);
        self.load_from(fetch, op.as_ref().map_err(String::clone))
    }

    /// A batch of bodies read back, each record decoded once however many of its
    /// messages the batch holds (a `Carry` or `Commit` record holds many); returns why
    /// each unreadable one was held back.
    pub fn loaded_batch(&mut self, batch: Vec<(Fetch, Fetched)>) -> Vec<String> {
        let mut records: HashMap<Seq, Result<Op, String>> = HashMap::new();
        let mut unreadable = Vec::new();
        for (fetch, fetched) in batch {
            let op = match records.entry(fetch.record) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(decoded(&fetch, fetched)),
            };
            if let Loaded::Unreadable(why) =
                self.load_from(&fetch, op.as_ref().map_err(String::clone))
            {
                unreadable.push(why);
            }
        }
        unreadable
    }

    /// Puts the message `fetch` names back in memory from its decoded record.
    fn load_from(&mut self, fetch: &Fetch, op: Result<&Op, String>) -> Loaded {
        let Some(queue) = self.queues.get_mut(&fetch.queue) else {
            return Loaded::Done;
        };
        let Some(slot) = queue
            .find_ready(fetch.id)
            .and_then(|pos| queue.ready.get_mut(pos))
        else {
            return Loaded::Done;
        };
        if slot.held != Held::Loading || slot.at != Some(fetch.at) || slot.record != fetch.record {
            // Consumed, moved or carried forward since: a newer read is its answer.
            return Loaded::Done;
        }
        let message = op.and_then(|op| message_in(op, fetch.id, &fetch.queue));
        queue.paged -= 1;
        match message {
            Ok(message) => {
                // The record's form may cost other than the slot said (a moved message
                // carries `original-destination`): the queue's bytes follow.
                let before = u64::from(slot.cost);
                slot.load(message);
                queue.counts.bytes =
                    (queue.counts.bytes + u64::from(slot.cost)).saturating_sub(before);
                self.memory = self.memory - SLOT_COST + slot.cost as usize;
                self.evictable = true;
                self.mark_dirty(&fetch.queue);
                Loaded::Done
            }
            Err(why) => {
                slot.held = Held::Unreadable;
                Loaded::Unreadable(format!(
                    "message {} in queue {} cannot be read back, so it is held and not delivered: {why}",
                    fetch.id, fetch.queue
                ))
            }
        }
    }

    /// The messages the records in `records` hold, to carry forward in one `Carry`
    /// record, or, while some of their bodies are in the journal only, the reads that
    /// bring them back (the caller asks again once they are in). Unreadable ones are
    /// left where they are: carrying them forward would lose them.
    pub fn gather_to_carry(
        &mut self,
        records: Range<Seq>,
        durable: Seq,
    ) -> Result<Vec<Carried>, Vec<Fetch>> {
        let mut carried = Vec::new();
        let mut reads = Vec::new();
        let mut waiting = false;
        for (name, queue) in &mut self.queues {
            // Ready slots are by id, and a message's record is never older than its id.
            let in_flight = queue.in_flight.values_mut().map(|(slot, _)| slot);
            for slot in queue.ready.iter_mut_below(records.end).chain(in_flight) {
                if !records.contains(&slot.record) || !slot.persistent() {
                    continue;
                }
                match (slot.held, &slot.message, slot.at) {
                    (Held::InMemory, Some(message), _) => carried.push(Carried {
                        queue: name.clone(),
                        id: slot.id(),
                        message: as_sent(message),
                    }),
                    (Held::Paged, _, Some(at)) if slot.record <= durable => {
                        reads.push(Fetch {
                            queue: name.clone(),
                            id: slot.id(),
                            record: slot.record,
                            at,
                        });
                        slot.held = Held::Loading;
                    }
                    (Held::Unreadable, _, _) => {}
                    _ => waiting = true,
                }
            }
        }
        if reads.is_empty() && !waiting {
            carried.sort_by_key(|c| c.id);
            Ok(carried)
        } else {
            Err(reads)
        }
    }
}

/// The messages the fetches asked for, out of the records the reads gave, each record
/// decoded once however many of its messages are asked for (a browse of paged-out
/// messages reads them so, without loading them into their queue).
pub fn messages_from(batch: Vec<(Fetch, Fetched)>) -> Vec<Result<Arc<Message>, String>> {
    let mut records: HashMap<Seq, Result<Op, String>> = HashMap::new();
    batch
        .into_iter()
        .map(|(fetch, fetched)| {
            let op = match records.entry(fetch.record) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(decoded(&fetch, fetched)),
            };
            let op = op.as_ref().map_err(String::clone)?;
            message_in(op, fetch.id, &fetch.queue)
        })
        .collect()
}

/// The record a read gave, decoded, or why there is none.
fn decoded(fetch: &Fetch, fetched: Fetched) -> Result<Op, String> {
    match fetched {
        Fetched::Record(record) if record.seq == fetch.record => {
            codec::decode(&record.payload).map_err(|e| format!("the record does not decode: {e}"))
        }
        Fetched::Record(record) => Err(format!(
            "the record there is seq {}, not {}",
            record.seq, fetch.record
        )),
        Fetched::Gone => Err(format!(
            "the segment holding record {} is gone",
            fetch.record
        )),
        Fetched::Bad(why) => Err(why),
    }
}

/// The message `id` out of a decoded record, as stored in `queue`.
fn message_in(op: &Op, id: MessageId, queue: &str) -> Result<Arc<Message>, String> {
    let new = match op {
        // Written in id order (`gather_to_carry`); a topic message kept by several
        // durable subscriptions is there once for each, maybe dead-lettered in one.
        Op::Carry(carried) => {
            let from = carried.partition_point(|c| c.id < id);
            let same_id = carried[from..].iter().take_while(|c| c.id == id);
            same_id
                .clone()
                .find(|c| c.queue == queue)
                .or_else(|| same_id.clone().next())
                .or_else(|| carried.iter().find(|c| c.id == id))
                .map(|c| &c.message)
        }
        op => sent_in(op, id.index),
    };
    let new = new.ok_or_else(|| format!("the record holds no message {id}"))?;
    Ok(stored_message(id, new, queue))
}

/// Message `index` of a record that sends messages.
fn sent_in(op: &Op, index: u32) -> Option<&NewMessage> {
    match op {
        Op::Send(message) if index == 0 => Some(message),
        Op::Commit { sends, .. } => sends.get(index as usize),
        Op::Kept { op, .. } => sent_in(op, index),
        _ => None,
    }
}

/// A message as stored in `queue`: one found in another queue than the one it was sent
/// to (or than its durable subscription's) was dead-lettered or moved there, and says
/// where it came from.
pub(super) fn stored_message(id: MessageId, new: &NewMessage, queue: &str) -> Arc<Message> {
    let message = Message::new(id, new);
    match &new.destination {
        Destination::Queue(name) if name != queue => super::relocated(&message, queue),
        // A topic message is stored as sent in a durable subscription's queue, and as
        // moved anywhere else (the subscription's dead-letter queue, an operator's move).
        Destination::Topic(_) if !super::durable::is_durable_name(queue) => {
            super::relocated(&message, queue)
        }
        _ => message,
    }
}

/// A stored message as a producer would send it to the queue that holds it now.
fn as_sent(message: &Message) -> NewMessage {
    NewMessage {
        destination: message.destination.clone(),
        headers: message.headers.clone(),
        body: message.body.clone(),
        persistent: message.persistent,
    }
}
