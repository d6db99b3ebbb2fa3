//! The producer de-duplication window: the `dedup-id`s of the most recent messages per
//! destination, so a SEND a failover client resends after losing its receipt is dropped
//! (and receipted) instead of delivered twice.
//!
//! Maintained by `apply` from the records themselves, so a slave, a restarted broker and
//! a copied store rebuild the same window without it being a record of its own. Bounded:
//! a destination remembers at least its newest `per_destination` ids and at most twice
//! as many, and ids of messages whose journal segments were deleted are not rebuilt after
//! a restart.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use super::message::{Destination, NewMessage};

/// The header a client stamps on each SEND (see `client::DEDUP_HEADER`).
pub const DEDUP_HEADER: &str = "dedup-id";

/// An id as the window keeps it: 128 bits of two SipHashes under this process's random
/// keys. Kept inline, a lookup touches no string (comparing stored strings missed the
/// cache on every message, a tenth of a slave's time); two ids share a key with a
/// probability of about 2^-128, far below the odds of a memory error.
type Key = u128;

/// Hashes a `Key` by taking its low bits: they are random already, and secret (the keys
/// are), so a client cannot choose ids that collide in the table.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `Key`s are hashed here; any other input still hashes, just slower.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

type Ids = HashSet<Key, BuildHasherDefault<Prehashed>>;

/// One destination's window, in two generations: the ids since `previous` filled up, and
/// the `per_destination` before them. When `current` fills, it becomes `previous` and
/// the oldest generation goes at once. Dropping the oldest id one at a time instead meant
/// finding it in the set on every insert: a cache miss that was most of the window's
/// cost, about 7% of a slave's work.
#[derive(Debug, Default)]
struct Seen {
    current: Ids,
    previous: Ids,
}

#[derive(Debug)]
pub struct DedupWindow {
    per_destination: usize,
    seen: HashMap<Destination, Seen>,
    /// The two hash keys of this process.
    keys: (RandomState, RandomState),
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
            keys: (RandomState::new(), RandomState::new()),
        }
    }

    fn key(&self, id: &str) -> Key {
        let high = self.keys.0.hash_one(id);
        let low = self.keys.1.hash_one(id);
        (u128::from(high) << 64) | u128::from(low)
    }

    /// Whether this message's id was seen recently at its destination.
    pub fn contains(&self, message: &NewMessage) -> bool {
        dedup_id(message).is_some_and(|id| {
            self.seen.get(&message.destination).is_some_and(|s| {
                let key = self.key(id);
                s.current.contains(&key) || s.previous.contains(&key)
            })
        })
    }

    pub fn insert(&mut self, message: &NewMessage) {
        let Some(id) = dedup_id(message) else { return };
        if self.per_destination == 0 {
            return;
        }
        let key = self.key(id);
        // The destination is cloned only the first time it is seen.
        let seen = match self.seen.get_mut(&message.destination) {
            Some(seen) => seen,
            None => self.seen.entry(message.destination.clone()).or_default(),
        };
        if !seen.current.insert(key) {
            return;
        }
        if seen.current.len() >= self.per_destination {
            std::mem::swap(&mut seen.current, &mut seen.previous);
            // Keeps its allocation for the next generation.
            seen.current.clear();
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
        let mut anonymous = message("a", "x");
        anonymous.headers.clear();
        assert!(!window.contains(&anonymous));
    }

    /// After each insert, the newest `per_destination` ids are all remembered and nothing
    /// older than twice that many is.
    #[test]
    fn remembers_at_least_the_window_and_at_most_twice_it() {
        for per_destination in [1, 2, 3, 10] {
            let mut window = DedupWindow::new(per_destination);
            for newest in 0..50 {
                window.insert(&message("a", &newest.to_string()));
                let remembered: Vec<usize> = (0..=newest)
                    .filter(|id| window.contains(&message("a", &id.to_string())))
                    .collect();
                let oldest_kept = (newest + 1).saturating_sub(per_destination);
                assert!(
                    (oldest_kept..=newest).all(|id| remembered.contains(&id)),
                    "window {per_destination} after {newest}: {remembered:?}"
                );
                assert!(
                    remembered.len() <= 2 * per_destination,
                    "window {per_destination} after {newest}: {remembered:?}"
                );
            }
        }
    }

    #[test]
    fn a_window_of_zero_remembers_nothing() {
        let mut window = DedupWindow::new(0);
        window.insert(&message("a", "1"));
        assert!(!window.contains(&message("a", "1")));
    }
}
