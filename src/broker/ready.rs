//! A queue's ready messages in the order dispatch takes them: higher `priority` first
//! (0 to 9, 4 without the header, as in JMS and ActiveMQ), and within one priority in id
//! order, which is the order they were sent (a requeued message goes back to its place).
//!
//! One `Lane` (`lane.rs`) per priority. Most queues use one lane, so finding a message by
//! id (an acknowledgement) costs a binary search in the few non-empty lanes. A `Key`
//! (priority and id) names a place in dispatch order, for the paging cursors.
//!
//! One more lane holds the messages sent with a delay, until they are released into
//! their priority's lane: they are stored (counted, found, carried by compaction) but
//! not in dispatch order.

use std::cmp::Ordering;

use super::lane::{Lane, LanePos};
use super::message::MessageId;
use super::queue::Slot;

/// Priorities 0..=9.
const LANES: usize = 10;
/// The lane of the messages waiting for their delivery time.
const WAITING: usize = LANES;

/// Where a slot is: its lane (priority) and its place in the lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    lane: usize,
    at: LanePos,
}

/// A place in dispatch order: higher priority first, then lower id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    pub priority: u8,
    pub id: MessageId,
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
pub(super) struct Ready {
    /// By priority: `lanes[9]` is dispatched first; `lanes[WAITING]` not at all.
    lanes: [Lane; LANES + 1],
    len: usize,
}

impl Ready {
    pub fn len(&self) -> usize {
        self.len
    }

    /// The lanes in dispatch order, with their priority.
    fn in_order(&self) -> impl Iterator<Item = (usize, &Lane)> {
        self.lanes[..LANES].iter().enumerate().rev()
    }

    pub fn get(&self, pos: Pos) -> Option<&Slot> {
        self.lanes[pos.lane].get(pos.at)
    }

    pub fn get_mut(&mut self, pos: Pos) -> Option<&mut Slot> {
        self.lanes[pos.lane].get_mut(pos.at)
    }

    /// Puts a slot in its place: behind every ready message of its priority sent
    /// before it.
    pub fn insert(&mut self, slot: Slot) {
        self.len += 1;
        let lane = match slot.waiting() {
            true => WAITING,
            false => lane_of(slot.priority()),
        };
        self.lanes[lane].insert(slot);
    }

    /// Where the slot of `id` is, waiting or not.
    pub fn find(&self, id: MessageId) -> Option<Pos> {
        self.lanes
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, lane)| lane.len() > 0)
            .find_map(|(lane, slots)| slots.find(id).map(|at| Pos { lane, at }))
    }

    /// Moves a waiting message into dispatch order; false if it is not waiting here.
    pub fn release(&mut self, id: MessageId) -> bool {
        let Some(at) = self.lanes[WAITING].find(id) else {
            return false;
        };
        let Some(mut slot) = self.lanes[WAITING].remove(at) else {
            return false;
        };
        slot.release();
        self.lanes[lane_of(slot.priority())].insert(slot);
        true
    }

    /// Takes the slot at `pos` out.
    pub fn remove(&mut self, pos: Pos) -> Option<Slot> {
        let slot = self.lanes[pos.lane].remove(pos.at)?;
        self.len -= 1;
        Some(slot)
    }

    /// The position of the `n`th slot in dispatch order (from 0).
    pub fn nth(&self, mut n: usize) -> Option<Pos> {
        for (lane, slots) in self.in_order() {
            if n < slots.len() {
                return slots.nth(n).map(|at| Pos { lane, at });
            }
            n -= slots.len();
        }
        None
    }

    /// How many slots are at or before `key` in dispatch order.
    pub fn count_through(&self, key: Key) -> usize {
        let lane = lane_of(key.priority);
        let before: usize = self.lanes[lane + 1..LANES].iter().map(Lane::len).sum();
        before + self.lanes[lane].count_through(key.id)
    }

    /// The slots from the `n`th on, in dispatch order.
    pub fn iter_mut_from(&mut self, mut n: usize) -> impl Iterator<Item = &mut Slot> {
        let mut skip = [0; LANES];
        for (lane, slots) in self.in_order() {
            skip[lane] = n.min(slots.len());
            n -= skip[lane];
        }
        self.lanes[..LANES]
            .iter_mut()
            .zip(skip)
            .rev()
            .flat_map(|(lane, skip)| lane.iter_mut_from(skip))
    }

    /// The slots whose id's seq is below `seq`, waiting ones included.
    pub fn iter_mut_below(&mut self, seq: crate::journal::Seq) -> impl Iterator<Item = &mut Slot> {
        self.lanes
            .iter_mut()
            .rev()
            .flat_map(move |lane| lane.iter_mut_below(seq))
    }

    /// The seq of the oldest message (each lane's first is its oldest).
    pub fn oldest(&self) -> Option<crate::journal::Seq> {
        self.lanes
            .iter()
            .filter_map(|lane| lane.iter().next().map(|slot| slot.seq))
            .min()
    }

    /// The slots in dispatch order, then the waiting ones.
    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.in_order()
            .flat_map(|(_, lane)| lane.iter())
            .chain(self.lanes[WAITING].iter())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.lanes.iter_mut().rev().flat_map(Lane::iter_mut)
    }

    /// Keeps the slots `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Slot) -> bool) {
        for lane in &mut self.lanes {
            lane.retain(&mut keep);
        }
        self.len = self.lanes.iter().map(Lane::len).sum();
    }
}

/// The lane of a priority; out-of-range ones (never stored: SEND refuses them) clamp.
fn lane_of(priority: u8) -> usize {
    usize::from(priority).min(LANES - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::Message;
    use crate::broker::{Destination, NewMessage};
    use crate::journal::Seq;

    fn slot(seq: u64, priority: Option<&str>) -> Slot {
        let new = NewMessage {
            destination: Destination::Queue("q".into()),
            headers: priority
                .map(|p| vec![("priority".to_string(), p.to_string())])
                .unwrap_or_default(),
            body: bytes::Bytes::new(),
            persistent: true,
        };
        Slot::new(Seq(seq), Message::new(MessageId::new(Seq(seq), 0), &new))
    }

    fn order(ready: &Ready) -> Vec<u64> {
        ready.iter().map(|s| s.seq.0).collect()
    }

    /// Higher priority first, first in first out within one; positions, counts and
    /// iteration from a position all follow that order.
    #[test]
    fn dispatch_order_is_priority_then_arrival() {
        let mut ready = Ready::default();
        let sent = [
            (1, None),
            (2, Some("9")),
            (3, Some("0")),
            (4, Some("9")),
            (5, Some("4")),
            (6, Some("7")),
        ];
        for (seq, priority) in sent {
            ready.insert(slot(seq, priority));
        }
        assert_eq!(order(&ready), [2, 4, 6, 1, 5, 3]);
        assert_eq!(ready.len(), 6);
        assert_eq!(ready.oldest(), Some(Seq(1)), "not the first to go");
        // A requeued priority-9 message goes back ahead of the other.
        let pos = ready.find(MessageId::new(Seq(2), 0)).unwrap();
        let taken = ready.remove(pos).unwrap();
        assert_eq!(order(&ready), [4, 6, 1, 5, 3]);
        ready.insert(taken);
        assert_eq!(order(&ready), [2, 4, 6, 1, 5, 3]);
        for (n, seq) in [2, 4, 6, 1, 5, 3].into_iter().enumerate() {
            let pos = ready.nth(n).unwrap();
            assert_eq!(ready.get(pos).unwrap().seq.0, seq);
            assert_eq!(ready.find(MessageId::new(Seq(seq), 0)), Some(pos));
            let key = ready.get(pos).unwrap().key();
            assert_eq!(ready.count_through(key), n + 1);
            let from: Vec<u64> = ready.iter_mut_from(n).map(|s| s.seq.0).collect();
            assert_eq!(from, [2, 4, 6, 1, 5, 3][n..]);
        }
        assert!(ready.nth(6).is_none());
        let below: Vec<u64> = ready.iter_mut_below(Seq(4)).map(|s| s.seq.0).collect();
        assert_eq!(below, [2, 1, 3]);
        ready.retain(|s| s.seq.0 % 2 == 0);
        assert_eq!(order(&ready), [2, 4, 6]);
        assert_eq!(ready.len(), 3);
    }

    /// A message sent with a delay is stored but out of dispatch order until released.
    #[test]
    fn a_waiting_message_is_found_but_not_dispatched_until_released() {
        let mut ready = Ready::default();
        let mut delayed = slot(1, Some("9"));
        delayed.mark_waiting();
        ready.insert(delayed);
        ready.insert(slot(2, None));
        assert_eq!(ready.len(), 2);
        assert_eq!(order(&ready), [2, 1], "dispatch order, then the waiting");
        assert_eq!(
            ready.nth(0).and_then(|p| ready.get(p)).map(|s| s.seq.0),
            Some(2)
        );
        assert!(ready.nth(1).is_none());
        assert!(ready.find(MessageId::new(Seq(1), 0)).is_some());
        assert!(!ready.release(MessageId::new(Seq(2), 0)), "not waiting");
        assert!(ready.release(MessageId::new(Seq(1), 0)));
        assert_eq!(order(&ready), [1, 2], "priority 9 first once released");
        assert_eq!(ready.len(), 2);
    }

    /// A key names a place whether or not its message is still there.
    #[test]
    fn keys_order_by_priority_then_id() {
        let key = |priority, seq| Key {
            priority,
            id: MessageId::new(Seq(seq), 0),
        };
        assert!(key(9, 10) < key(4, 1));
        assert!(key(4, 1) < key(4, 2));
        let mut ready = Ready::default();
        for (seq, priority) in [(1, Some("9")), (3, Some("9")), (2, None)] {
            ready.insert(slot(seq, priority));
        }
        assert_eq!(ready.count_through(key(9, 2)), 1);
        assert_eq!(ready.count_through(key(4, 0)), 2);
        assert_eq!(ready.count_through(key(0, 0)), 3);
    }
}
