//! The producer de-duplication window: the `dedup-id`s of the most recent messages per
//! destination, so a SEND a failover client resends after losing its receipt is dropped
//! (and receipted) instead of delivered twice.
//!
//! Maintained by `apply` from the records themselves, so a slave, a restarted broker and
//! a copied store rebuild the same window without it being a record of its own. Bounded:
//! the oldest id leaves when a destination's window is full, and ids of messages whose
//! journal segments were deleted are not rebuilt after a restart.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::message::{Destination, NewMessage};

/// The header a client stamps on each SEND (see `client::DEDUP_HEADER`).
pub const DEDUP_HEADER: &str = "dedup-id";

/// One destination's window. Each id is allocated once and shared by the order and the
/// set: this runs for every message on the master and on every slave.
#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<Arc<str>>,
    ids: HashSet<Arc<str>>,
}

#[derive(Debug)]
pub struct DedupWindow {
    per_destination: usize,
    seen: HashMap<Destination, Seen>,
}

fn dedup_id(message: &NewMessage) -> Option<&str> {
    message
        .headers
        .iter()
        .find(|(name, _)| name == DEDUP_HEADER)
        .map(|(_, id)| id.as_str())
}

impl DedupWindow {
    pub fn new(per_destination: usize) -> DedupWindow {
        DedupWindow {
            per_destination,
            seen: HashMap::new(),
        }
    }

    /// Whether this message's id was seen recently at its destination.
    pub fn contains(&self, message: &NewMessage) -> bool {
        dedup_id(message).is_some_and(|id| {
            self.seen
                .get(&message.destination)
                .is_some_and(|s| s.ids.contains(id))
        })
    }

    pub fn insert(&mut self, message: &NewMessage) {
        let Some(id) = dedup_id(message) else { return };
        if self.per_destination == 0 {
            return;
        }
        // The destination is cloned only the first time it is seen.
        let seen = match self.seen.get_mut(&message.destination) {
            Some(seen) => seen,
            None => self.seen.entry(message.destination.clone()).or_default(),
        };
        if seen.ids.contains(id) {
            return;
        }
        let id: Arc<str> = Arc::from(id);
        seen.ids.insert(id.clone());
        seen.order.push_back(id);
        if seen.order.len() > self.per_destination {
            if let Some(oldest) = seen.order.pop_front() {
                seen.ids.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(queue: &str, id: &str) -> NewMessage {
        NewMessage {
            destination: Destination::Queue(queue.into()),
            headers: vec![(DEDUP_HEADER.into(), id.into())],
            body: bytes::Bytes::new(),
            persistent: true,
        }
    }

    #[test]
    fn remembers_the_newest_ids_per_destination() {
        let mut window = DedupWindow::new(2);
        window.insert(&message("a", "1"));
        window.insert(&message("a", "2"));
        assert!(window.contains(&message("a", "1")));
        assert!(!window.contains(&message("b", "1")), "per destination");
        window.insert(&message("a", "3"));
        assert!(!window.contains(&message("a", "1")), "the oldest left");
        assert!(window.contains(&message("a", "3")));
        let mut anonymous = message("a", "x");
        anonymous.headers.clear();
        assert!(!window.contains(&anonymous));
    }
}
