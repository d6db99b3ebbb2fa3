//! Delayed delivery (ActiveMQ's `AMQ_SCHEDULED_DELAY`). A message the broker stamped with
//! its delivery time (`DELIVER_AT_HEADER`) is stored waiting, out of dispatch order
//! (`ready.rs`), and released when its time comes. Every broker releases from the time
//! in the record, master and slave alike, so a delay runs on across restarts and
//! failovers; a release writes no record.

use std::collections::BTreeSet;

use super::{Broker, Message, MessageId};

/// The waiting messages, by when they may be delivered; an entry may outlive its
/// message (moved, deleted, expired): it is checked when it comes due.
#[derive(Debug, Default)]
pub(super) struct Schedule {
    due: BTreeSet<(u64, String, MessageId)>,
}

impl Broker {
    /// Notes when a message stored waiting in `queue` may be delivered.
    pub(super) fn note_schedule(&mut self, queue: &str, message: &Message) {
        if let Some(at) = message.deliver_at() {
            self.schedule
                .due
                .insert((at, queue.to_string(), message.id));
        }
    }

    /// Whether a stored message still waits for its time (the shell keeps a clock).
    pub fn has_scheduled(&self) -> bool {
        !self.schedule.due.is_empty()
    }

    /// Puts the waiting messages whose time is at or before `now_ms` in dispatch order.
    pub fn release_due(&mut self, now_ms: u64) {
        while let Some((at, ..)) = self.schedule.due.first() {
            if *at > now_ms {
                return;
            }
            let Some((_, queue, id)) = self.schedule.due.pop_first() else {
                return;
            };
            let Some(stored) = self.queues.get_mut(&queue) else {
                continue;
            };
            if stored.ready.release(id) {
                // It lands among messages the read-ahead and eviction may have passed:
                // both look again from the head (as `put_ready` does).
                stored.read_ahead_to = None;
                stored.evicted_to = None;
                self.mark_dirty(&queue);
            }
        }
    }
}
