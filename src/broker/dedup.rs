//! The producer de-duplication window: the `dedup-id`s of the most recent messages per
//! destination, so a SEND a failover client resends after losing its receipt is dropped
//! (and receipted) instead of delivered twice.
//!
//! Maintained by `apply` from the records themselves, so a slave, a restarted broker and
//! a copied store rebuild the same window without it being a record of its own. Bounded:
//! a destination remembers at least its newest `per_destination` ids and at most twice
//! as many, and ids of messages whose journal segments were deleted are not rebuilt after
//! a restart.
//!
//! An id the way mirrormq's client stamps it, `<producer>-<n>` with a counter that
//! climbs, is kept as a number in its producer's ascending list, as ActiveMQ's producer
//! audit keeps producer sequences: a new id is one comparison with the producer's newest
//! and an append, in memory the last message touched. Any other id is kept as a keyed
//! hash in a set, where every insert lands at a random place in a table of up to a
//! megabyte. That table missed the cache on every message: a tenth of a slave's time.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use super::message::{Destination, NewMessage};

/// The header a client stamps on each SEND (see `client::DEDUP_HEADER`).
pub const DEDUP_HEADER: &str = "dedup-id";

/// How far before its producer's newest a counted id may land and still be kept in the
/// list: further back, it goes to the set, so a producer counting backwards cannot make
/// every insert shift a long list.
const MAX_SHIFT: usize = 64;

/// An id or a producer as the window keeps it: 128 bits of two SipHashes under this
/// process's random keys. Kept inline, a lookup touches no string; two strings share a
/// key with a probability of about 2^-128, far below the odds of a memory error.
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

type ByKey = BuildHasherDefault<Prehashed>;

/// An id split the way it is kept: `<producer>-<n>` only when `n` is written the one
/// way it prints (no sign, no leading zero, within a u64), so two different ids never
/// become the same producer and counter.
#[derive(Debug, PartialEq)]
enum Id<'a> {
    Counted { producer: &'a str, n: u64 },
    Other,
}

fn split(id: &str) -> Id<'_> {
    let Some((producer, digits)) = id.rsplit_once('-') else {
        return Id::Other;
    };
    let canonical = !digits.is_empty()
        && digits.bytes().all(|byte| byte.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    match digits.parse() {
        Ok(n) if canonical => Id::Counted { producer, n },
        _ => Id::Other,
    }
}

/// An id looked up: its counter under its producer's key, or its own key.
#[derive(Clone, Copy)]
enum Keyed {
    Counted { producer: Key, n: u64 },
    Other(Key),
}

/// The ids of one generation.
#[derive(Debug, Default)]
struct Generation {
    /// Counted ids by their producer's key, ascending. Every id still counts one towards
    /// `len`, so a client that names a new producer in each id costs a list per id, but
    /// no more ids than the window allows.
    counted: HashMap<Key, Vec<u64>, ByKey>,
    /// Every other id, and counted ids that came too far out of order.
    other: HashSet<Key, ByKey>,
    /// Set once a counted id went to `other`: only then is a counted id looked up there.
    spilled: bool,
    len: usize,
}

impl Generation {
    /// Whether it holds `id`; `whole` is the key of the id's whole text, made only when
    /// a counted id may have spilled.
    fn contains(&self, id: Keyed, whole: impl Fn() -> Key) -> bool {
        match id {
            Keyed::Counted { producer, n } => {
                self.counted.get(&producer).is_some_and(|counters| {
                    // A new id is above the producer's newest: one comparison, no search.
                    counters.last().is_some_and(|newest| n <= *newest)
                        && counters.binary_search(&n).is_ok()
                }) || (self.spilled && self.other.contains(&whole()))
            }
            Keyed::Other(key) => self.other.contains(&key),
        }
    }

    /// Adds `id`; false if it held it already. One lookup of the producer's list
    /// answers both: the slave inserts every message it mirrors.
    fn insert(&mut self, id: Keyed, whole: impl Fn() -> Key) -> bool {
        let added = match id {
            Keyed::Other(key) => self.other.insert(key),
            Keyed::Counted { producer, n } => {
                let counters = self.counted.entry(producer).or_default();
                let at = match counters.last() {
                    Some(newest) if n <= *newest => match counters.binary_search(&n) {
                        Ok(_) => return false,
                        Err(at) => at,
                    },
                    _ => counters.len(),
                };
                if counters.len() - at > MAX_SHIFT {
                    // The list only grows within a generation, so an id that spilled
                    // spills again: `other` alone says whether it is held.
                    self.spilled = true;
                    self.other.insert(whole())
                } else {
                    counters.insert(at, n);
                    true
                }
            }
        };
        self.len += usize::from(added);
        added
    }

    fn clear(&mut self) {
        self.counted.clear();
        self.other.clear();
        self.spilled = false;
        self.len = 0;
    }
}

/// One destination's window, in two generations: the ids since `previous` filled up, and
/// the `per_destination` before them. When `current` fills, it becomes `previous` and
/// the oldest generation goes at once. Dropping the oldest id one at a time instead meant
/// finding it in the set on every insert: a cache miss that was most of the window's
/// cost, about 7% of a slave's work.
#[derive(Debug, Default)]
struct Seen {
    current: Generation,
    previous: Generation,
}

/// This process's two random hash keys.
#[derive(Debug)]
struct Hashes(RandomState, RandomState);

impl Hashes {
    fn key(&self, text: &str) -> Key {
        (u128::from(self.0.hash_one(text)) << 64) | u128::from(self.1.hash_one(text))
    }

    fn keyed(&self, id: &str) -> Keyed {
        match split(id) {
            Id::Counted { producer, n } => Keyed::Counted {
                producer: self.key(producer),
                n,
            },
            Id::Other => Keyed::Other(self.key(id)),
        }
    }
}

#[derive(Debug)]
pub struct DedupWindow {
    per_destination: usize,
    seen: HashMap<Destination, Seen>,
    hashes: Hashes,
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
            hashes: Hashes(RandomState::new(), RandomState::new()),
        }
    }

    /// Whether this message's id was seen recently at its destination.
    pub fn contains(&self, message: &NewMessage) -> bool {
        dedup_id(message).is_some_and(|id| {
            self.seen.get(&message.destination).is_some_and(|seen| {
                let keyed = self.hashes.keyed(id);
                let whole = || self.hashes.key(id);
                seen.current.contains(keyed, whole) || seen.previous.contains(keyed, whole)
            })
        })
    }

    pub fn insert(&mut self, message: &NewMessage) {
        let Some(id) = dedup_id(message) else { return };
        if self.per_destination == 0 {
            return;
        }
        let hashes = &self.hashes;
        let keyed = hashes.keyed(id);
        let whole = || hashes.key(id);
        // The destination is cloned only the first time it is seen.
        let seen = match self.seen.get_mut(&message.destination) {
            Some(seen) => seen,
            None => self.seen.entry(message.destination.clone()).or_default(),
        };
        if !seen.current.insert(keyed, whole) {
            return;
        }
        if seen.current.len >= self.per_destination {
            std::mem::swap(&mut seen.current, &mut seen.previous);
            // Keeps its tables' allocations for the next generation.
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
    /// older than twice that many is: for plain ids, for counted ones, and for counted
    /// ones arriving newest first, which spill to the set.
    #[test]
    fn remembers_at_least_the_window_and_at_most_twice_it() {
        type Shape = (&'static str, fn(usize) -> String);
        let shapes: [Shape; 3] = [
            ("plain", |n| format!("id{n}")),
            ("counted", |n| format!("p-{n}")),
            ("counted backwards", |n| format!("p-{}", 1000 - n)),
        ];
        for (shape, id) in shapes {
            for per_destination in [1, 2, 3, 10, 200] {
                let mut window = DedupWindow::new(per_destination);
                for newest in 0..500 {
                    window.insert(&message("a", &id(newest)));
                    let remembered: Vec<usize> = (0..=newest)
                        .filter(|n| window.contains(&message("a", &id(*n))))
                        .collect();
                    let oldest_kept = (newest + 1).saturating_sub(per_destination);
                    assert!(
                        (oldest_kept..=newest).all(|n| remembered.contains(&n)),
                        "{shape}, window {per_destination} after {newest}: {remembered:?}"
                    );
                    assert!(
                        remembered.len() <= 2 * per_destination,
                        "{shape}, window {per_destination} after {newest}: {remembered:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_id_is_counted_only_when_its_number_prints_that_way() {
        let table = [
            (
                "a1b2-17",
                Id::Counted {
                    producer: "a1b2",
                    n: 17,
                },
            ),
            (
                "a-0",
                Id::Counted {
                    producer: "a",
                    n: 0,
                },
            ),
            ("-5", Id::Counted { producer: "", n: 5 }),
            (
                "a-b-7",
                Id::Counted {
                    producer: "a-b",
                    n: 7,
                },
            ),
            (
                "a-18446744073709551615",
                Id::Counted {
                    producer: "a",
                    n: u64::MAX,
                },
            ),
            ("a-18446744073709551616", Id::Other),
            ("a-07", Id::Other),
            ("a-00", Id::Other),
            ("a-+7", Id::Other),
            ("a-", Id::Other),
            ("a-7x", Id::Other),
            ("a-\u{0661}", Id::Other),
            ("17", Id::Other),
            ("", Id::Other),
        ];
        for (id, expected) in table {
            assert_eq!(split(id), expected, "{id:?}");
        }
    }

    #[test]
    fn counted_ids_are_told_apart_by_producer_and_by_spelling() {
        let mut window = DedupWindow::new(100);
        window.insert(&message("a", "p-7"));
        window.insert(&message("a", "a-07"));
        assert!(window.contains(&message("a", "p-7")));
        assert!(!window.contains(&message("a", "q-7")), "another producer");
        assert!(!window.contains(&message("a", "p-07")), "spelled otherwise");
        assert!(!window.contains(&message("a", "a-7")), "spelled otherwise");
        assert!(window.contains(&message("a", "a-07")));
        assert!(!window.contains(&message("a", "p-6")), "below the newest");
        assert!(!window.contains(&message("a", "p-8")), "above the newest");
    }

    #[test]
    fn counted_ids_out_of_order_are_remembered() {
        let mut window = DedupWindow::new(1000);
        // A failover client resends what it had in flight, behind newer messages; a
        // producer far out of order spills to the set.
        let order: Vec<u64> = [10, 5, 7, 6, 12, 11]
            .into_iter()
            .chain((100..300).rev())
            .collect();
        for n in &order {
            window.insert(&message("a", &format!("p-{n}")));
        }
        for n in 0..400 {
            assert_eq!(
                window.contains(&message("a", &format!("p-{n}"))),
                order.contains(&n),
                "p-{n}"
            );
        }
    }

    /// An id inserted again (a resend the core let through, a replay) takes no room:
    /// counted, spilled or plain, the window still holds as many others.
    #[test]
    fn an_id_inserted_again_takes_no_room() {
        let mut window = DedupWindow::new(200);
        let held: Vec<String> = (100..200)
            .map(|n| format!("p-{n}"))
            .chain(["x".to_string(), "p-10".to_string()])
            .collect();
        for _ in 0..5 {
            for id in &held {
                window.insert(&message("a", id));
            }
        }
        // Enough newer ids to fill the generation the held ones are in, and all but one
        // of the next: had the repeats taken room, a second generation would have filled
        // and the held ids gone with the oldest.
        for n in 200..497 {
            window.insert(&message("a", &format!("p-{n}")));
        }
        for id in &held {
            assert!(window.contains(&message("a", id)), "{id}");
        }
    }

    #[test]
    fn a_window_of_zero_remembers_nothing() {
        let mut window = DedupWindow::new(0);
        window.insert(&message("a", "1"));
        assert!(!window.contains(&message("a", "1")));
    }
}
