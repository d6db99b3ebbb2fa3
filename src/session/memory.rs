//! The memory gauge: message bytes held by the core plus those sessions are sending,
//! read by sessions to slow producers at `broker.max_memory`, and set by the server's
//! shell from what the core reports after each turn.

use std::sync::atomic::{AtomicUsize, Ordering};
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
}

impl MemoryGauge {
    pub fn new(limit: usize) -> MemoryGauge {
        MemoryGauge {
            stored: Arc::new(AtomicUsize::new(0)),
            reserved: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    pub fn over_limit(&self) -> bool {
        self.stored.load(Ordering::Relaxed) + self.reserved.load(Ordering::Relaxed) >= self.limit
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
