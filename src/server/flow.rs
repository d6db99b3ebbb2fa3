//! Flow control, as the shell applies it after each turn: producers held at the memory
//! limit (`broker.max_memory`) and, for persistent messages, at the store limit
//! (`broker.max_disk`), and client requests left unread while the journal is behind.

use super::shell::Shell;

impl Shell {
    /// Whether client requests are taken: not while the journal writer's queue is full,
    /// nor while more than `unwritten_limit` bytes of records wait to be written (they
    /// are in memory until then, whatever the broker has paged out).
    pub(super) fn accepting(&self) -> bool {
        self.journal.backlog() == 0 && self.journal.unwritten_bytes() < self.unwritten_limit()
    }

    /// An eighth of `broker.max_memory`, between 1 MiB and 64 MiB.
    fn unwritten_limit(&self) -> usize {
        (self.config.broker.max_memory.bytes() / 8).clamp(1 << 20, 64 << 20)
    }

    /// Tells the gauge what the core holds in memory and on disk, and lets go the
    /// producers whose limit has room again.
    pub(super) fn update_memory(&mut self) {
        self.memory.set_stored(self.core.memory_used());
        let (used, limit) = (self.core.disk_used(), self.config.broker.max_disk.0);
        // Full once another segment would not fit.
        let full = used + self.config.broker.segment_size.0 > limit;
        if self.memory.set_disk_full(full) {
            if full {
                log::warn!("store limit reached: the journal takes {} MiB of broker.max_disk {} MiB; producers of persistent messages wait until consumers acknowledge enough to free a segment", used >> 20, limit >> 20);
            } else {
                log::info!(
                    "store limit: room again ({} MiB of {} MiB); producers go on",
                    used >> 20,
                    limit >> 20
                );
            }
        }
        for (room, waiter) in std::mem::take(&mut self.room_waiters) {
            if self.memory.has_room(room) {
                // The session looks again, and may wait for the other limit.
                let _ = waiter.send(());
            } else if !waiter.is_canceled() {
                self.room_waiters.push((room, waiter));
            }
        }
    }
}
