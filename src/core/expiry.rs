//! Delayed messages are released as their time comes (`broker/schedule.rs`, no record).
//! Expired messages leave their queues by records (the broker finds them,
//! `broker/expiry.rs`): dropped (`Op::Ack`), or moved to `DLQ.<queue>` with
//! `broker.dead_letter_expired`, in records that fit a segment. Only a master records;
//! a slave applies what its master recorded, and looks for itself once promoted.

use std::collections::BTreeMap;

use super::Core;
use crate::broker::{Op, Removal, DLQ_PREFIX};

/// Now, in ms since the Unix epoch: the clock `expires` is read against (the core's
/// default `now`; sessions stamp times with it too).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Core {
    /// Records the removal of every ready message expired at `now_ms`; whether there was
    /// any.
    pub(super) fn expire(&mut self, now_ms: u64) -> bool {
        if !self.broker.has_expiring() {
            return false;
        }
        if !self.role().is_master() {
            self.broker.forget_expired(now_ms);
            return false;
        }
        let mut by_queue: BTreeMap<String, Vec<Removal>> = BTreeMap::new();
        let expired = self.broker.take_expired(now_ms);
        let any = !expired.is_empty();
        for removal in expired {
            by_queue
                .entry(removal.queue.clone())
                .or_default()
                .push(removal);
        }
        for (queue, removals) in by_queue {
            log::debug!(
                "expired: {} message(s) of {queue} {}",
                removals.len(),
                if self.dead_letter_expired {
                    "moved to its dead-letter queue"
                } else {
                    "dropped"
                }
            );
            let ops: Vec<Op> = self
                .chunked(&queue, &removals)
                .into_iter()
                .map(|chunk| match self.dead_letter_expired {
                    true => Op::Move {
                        to: format!("{DLQ_PREFIX}{queue}"),
                        removals: chunk,
                    },
                    false => Op::Ack(chunk),
                })
                .collect();
            self.record_all(ops);
        }
        any
    }

    /// `broker.dead_letter_expired`: expired messages go to `DLQ.<queue>`, not away.
    pub fn set_dead_letter_expired(&mut self, on: bool) {
        self.dead_letter_expired = on;
    }

    /// Replaces the wall clock (tests).
    pub fn set_clock(&mut self, now: fn() -> u64) {
        self.now = now;
    }

    /// Whether a stored message may still expire or waits for its delivery time: the
    /// shell keeps the clock ticking.
    pub fn has_timers(&self) -> bool {
        self.broker.has_expiring() || self.broker.has_scheduled()
    }
}
