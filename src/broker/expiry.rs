//! Message expiry: `expires` on SEND, in ms since the Unix epoch (0 or none: never), as
//! in ActiveMQ. An expired message is never delivered. Dispatch passes over one it meets
//! and reports it; `take_expired` also finds the ready ones whose time has passed
//! wherever they are in their queue, bodies paged out or not, because the broker keeps
//! each expiring message's time beside it. Either way the caller records their removal
//! (dropped, or moved to `DLQ.<queue>`), so slaves, restarts and the disk see it.
//! Messages in a dead-letter queue never expire: that is where an expired one may go.

use std::collections::BTreeSet;

use super::{Broker, Message, MessageId, Removal, DLQ_PREFIX};

/// The expiring messages stored, by when they expire; an entry may outlive its message
/// (consumed, moved): it is checked when it comes due.
#[derive(Debug, Default)]
pub(super) struct Expiring {
    due: BTreeSet<(u64, String, MessageId)>,
    /// What dispatch met expired since the last `take_expired`.
    met: Vec<Removal>,
}

/// Whether messages in `queue` can expire.
pub(super) fn expires_in(queue: &str) -> bool {
    !queue.starts_with(DLQ_PREFIX)
}

impl Broker {
    /// Notes when a message stored in `queue` expires, if it does.
    pub(super) fn note_expiry(&mut self, queue: &str, message: &Message) {
        if let Some(at) = message.expires_at() {
            self.note_expiry_at(queue, at, message.id);
        }
    }

    pub(super) fn note_expiry_at(&mut self, queue: &str, at: u64, id: MessageId) {
        if expires_in(queue) {
            self.expiring.due.insert((at, queue.to_string(), id));
        }
    }

    /// Forgets the entries come due without removing anything: a slave's (its master
    /// records the removals), so its index does not grow for ever.
    pub fn forget_expired(&mut self, now_ms: u64) {
        while self
            .expiring
            .due
            .first()
            .is_some_and(|(at, ..)| *at <= now_ms)
        {
            self.expiring.due.pop_first();
        }
        self.expiring.met.clear();
    }

    /// Dispatch met this expired message at the head of `queue`.
    pub(super) fn met_expired(&mut self, queue: &str, id: MessageId) {
        let removal = Removal::new(queue, id);
        if !self.expiring.met.contains(&removal) {
            self.expiring.met.push(removal);
        }
    }

    /// Whether any stored message may still expire (the shell keeps a clock running).
    pub fn has_expiring(&self) -> bool {
        !self.expiring.due.is_empty() || !self.expiring.met.is_empty()
    }

    /// The ready messages expired at `now_ms`: those dispatch met and those whose time
    /// has come. Each is still stored until the caller applies its removal.
    pub fn take_expired(&mut self, now_ms: u64) -> Vec<Removal> {
        let mut expired = std::mem::take(&mut self.expiring.met);
        let met: std::collections::HashSet<MessageId> = expired.iter().map(|r| r.id).collect();
        while let Some((at, ..)) = self.expiring.due.first() {
            if *at > now_ms {
                break;
            }
            let Some((_, queue, id)) = self.expiring.due.pop_first() else {
                break;
            };
            // One in flight is the consumer's now; if it comes back, dispatch meets it.
            let ready = self
                .queues
                .get(&queue)
                .is_some_and(|q| q.find_ready(id).is_some());
            if ready && !met.contains(&id) {
                expired.push(Removal::new(&queue, id));
            }
        }
        expired
    }
}
