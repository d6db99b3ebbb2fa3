//! The memory gauge: message bytes held by the core plus those sessions are sending,
//! read by sessions to slow producers at `broker.max_memory`, and whether the journal is
//! at `broker.max_disk`, which slows producers of persistent messages; set by the
//! server's shell from what the core reports after each turn.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::broker::NewMessage;

/// Shared gauge of message memory, read by sessions to slow producers.
///
/// `stored` is what the broker holds (set by the core); `reserved` is what sessions have
/// sent on but the core has not applied yet. Counting both keeps the limit firm: without
/// `reserved`, a burst could overshoot it by a whole request queue.
#[derive(Debug, Clone)]
pub struct MemoryGauge {
    stored: Arc<AtomicUsize>,
    reserved: Arc<AtomicUsize>,
    limit: usize,
    disk_full: Arc<AtomicBool>,
}

/// What a producer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Message memory below `broker.max_memory`.
    Memory,
    /// The journal below `broker.max_disk` (persistent messages only).
    Disk,
}

impl MemoryGauge {
    pub fn new(limit: usize) -> MemoryGauge {
        MemoryGauge {
            stored: Arc::new(AtomicUsize::new(0)),
            reserved: Arc::new(AtomicUsize::new(0)),
            limit,
            disk_full: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn over_limit(&self) -> bool {
        self.stored.load(Ordering::Relaxed) + self.reserved.load(Ordering::Relaxed) >= self.limit
    }

    /// What a producer of these messages must wait for first, if anything.
    pub fn wait_for(&self, messages: &[NewMessage]) -> Option<Room> {
        if self.over_limit() {
            Some(Room::Memory)
        } else if messages.iter().any(|m| m.persistent) && !self.has_room(Room::Disk) {
            Some(Room::Disk)
        } else {
            None
        }
    }

    pub fn has_room(&self, room: Room) -> bool {
        match room {
            Room::Memory => !self.over_limit(),
            Room::Disk => !self.disk_full.load(Ordering::Relaxed),
        }
    }

    /// Sets whether the journal is at its limit; true if that changed.
    pub fn set_disk_full(&self, full: bool) -> bool {
        self.disk_full.swap(full, Ordering::Relaxed) != full
    }

    /// A session is about to send these messages to the core.
    pub fn reserve(&self, messages: &[NewMessage]) {
        self.reserved.fetch_add(cost(messages), Ordering::Relaxed);
    }

    /// The core holds `stored` bytes of messages.
    pub fn set_stored(&self, stored: usize) {
        self.stored.store(stored, Ordering::Relaxed);
    }

    /// The core has applied them and holds `stored` bytes: count them there instead.
    /// `stored` goes up before `reserved` goes down, so the sum never dips below truth.
    pub fn settle(&self, cost: usize, stored: usize) {
        self.set_stored(stored);
        let _ = self
            .reserved
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                Some(r.saturating_sub(cost))
            });
    }
}

pub fn cost(messages: &[NewMessage]) -> usize {
    messages.iter().map(NewMessage::cost).sum()
}
