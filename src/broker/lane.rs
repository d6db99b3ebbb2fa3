//! One priority's lane of a queue's ready messages (`ready.rs`), in id order, in chunks.
//!
//! One `VecDeque` of millions of slots grows by doubling, copying every slot: at four
//! million slots that copy (192 MiB, and a fresh 384 MiB to fault in) stalled a broker for
//! more than its peer's heart-beat silence. Chunks of at most `CHUNK` slots grow and
//! shrink one chunk at a time. A chunk is a `VecDeque` too: dispatch takes from the
//! front of the first one, which must not shift the rest of the chunk every time. Slots are found by id (binary search over the chunks,
//! then within one); positions near the front, where dispatch works, are found by
//! walking the few chunks before them.

use std::collections::VecDeque;

use super::message::MessageId;
use super::queue::Slot;

/// Slots per chunk; a chunk split by inserts in its middle holds up to twice this.
const CHUNK: usize = 4096;

/// Where a slot is: its chunk and its index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LanePos {
    chunk: usize,
    index: usize,
}

#[derive(Debug, Default)]
pub(super) struct Lane {
    /// Never an empty chunk.
    chunks: VecDeque<VecDeque<Slot>>,
    len: usize,
}

impl Lane {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, pos: LanePos) -> Option<&Slot> {
        self.chunks.get(pos.chunk)?.get(pos.index)
    }

    pub fn get_mut(&mut self, pos: LanePos) -> Option<&mut Slot> {
        self.chunks.get_mut(pos.chunk)?.get_mut(pos.index)
    }

    /// Puts a slot in its place by id: at the back for a new message.
    pub fn insert(&mut self, slot: Slot) {
        self.len += 1;
        let id = slot.id();
        let at_back = match self.chunks.back() {
            Some(last) if last.back().is_some_and(|l| l.id() > id) => None,
            Some(last) => Some(last.len() < CHUNK),
            None => Some(false),
        };
        match (at_back, self.chunks.back_mut()) {
            (Some(true), Some(last)) => return last.push_back(slot),
            (Some(_), _) => {
                let mut chunk = VecDeque::with_capacity(CHUNK);
                chunk.push_back(slot);
                return self.chunks.push_back(chunk);
            }
            (None, _) => {}
        }
        // Into the first chunk whose last slot is newer.
        let chunk = self
            .chunks
            .partition_point(|c| c.back().is_some_and(|l| l.id() < id));
        let slots = &mut self.chunks[chunk];
        let index = slots.partition_point(|s| s.id() < id);
        slots.insert(index, slot);
        if slots.len() > 2 * CHUNK {
            let half = slots.split_off(CHUNK);
            self.chunks.insert(chunk + 1, half);
        }
    }

    /// Where the slot of `id` is.
    pub fn find(&self, id: MessageId) -> Option<LanePos> {
        // The newest is the one most often asked for (placing what was just stored).
        let last = self.chunks.len().checked_sub(1)?;
        if self.chunks[last].back().is_some_and(|s| s.id() == id) {
            return Some(LanePos {
                chunk: last,
                index: self.chunks[last].len() - 1,
            });
        }
        let chunk = self
            .chunks
            .partition_point(|c| c.back().is_some_and(|l| l.id() < id));
        let index = self
            .chunks
            .get(chunk)?
            .binary_search_by(|s| s.id().cmp(&id))
            .ok()?;
        Some(LanePos { chunk, index })
    }

    /// Takes the slot at `pos` out.
    pub fn remove(&mut self, pos: LanePos) -> Option<Slot> {
        let chunk = self.chunks.get_mut(pos.chunk)?;
        if pos.index >= chunk.len() {
            return None;
        }
        let slot = chunk.remove(pos.index)?;
        if chunk.is_empty() {
            self.chunks.remove(pos.chunk);
        }
        self.len -= 1;
        Some(slot)
    }

    /// The position of the `n`th slot (from 0), walking the chunks before it.
    pub fn nth(&self, mut n: usize) -> Option<LanePos> {
        for (chunk, slots) in self.chunks.iter().enumerate() {
            if n < slots.len() {
                return Some(LanePos { chunk, index: n });
            }
            n -= slots.len();
        }
        None
    }

    /// How many slots have an id up to `id`.
    pub fn count_through(&self, id: MessageId) -> usize {
        let mut count = 0;
        for slots in &self.chunks {
            if slots.back().is_some_and(|l| l.id() <= id) {
                count += slots.len();
            } else {
                return count + slots.partition_point(|s| s.id() <= id);
            }
        }
        count
    }

    /// The slots from the `n`th on, in order.
    pub fn iter_mut_from(&mut self, mut n: usize) -> impl Iterator<Item = &mut Slot> {
        let mut skip_chunks = 0;
        for slots in &self.chunks {
            if n < slots.len() {
                break;
            }
            n -= slots.len();
            skip_chunks += 1;
        }
        self.chunks.iter_mut().skip(skip_chunks).flatten().skip(n)
    }

    /// The slots whose id's seq is below `seq`, in order.
    pub fn iter_mut_below(&mut self, seq: crate::journal::Seq) -> impl Iterator<Item = &mut Slot> {
        self.chunks
            .iter_mut()
            .flatten()
            .take_while(move |slot| slot.seq < seq)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.chunks.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.chunks.iter_mut().flatten()
    }

    /// Keeps the slots `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Slot) -> bool) {
        for chunk in &mut self.chunks {
            chunk.retain(&mut keep);
        }
        self.chunks.retain(|chunk| !chunk.is_empty());
        self.len = self.chunks.iter().map(VecDeque::len).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::Message;
    use crate::broker::{Destination, NewMessage};
    use crate::journal::Seq;

    fn slot(seq: u64) -> Slot {
        let new = NewMessage {
            destination: Destination::Queue("q".into()),
            headers: Vec::new(),
            body: bytes::Bytes::new(),
            persistent: true,
        };
        let id = MessageId {
            seq: Seq(seq),
            index: 0,
        };
        Slot::new(Seq(seq), Message::new(id, &new))
    }

    fn seqs(ready: &Lane) -> Vec<u64> {
        ready.iter().map(|s| s.seq.0).collect()
    }

    /// Appends, inserts in the middle (splitting a chunk), finds, removes and counts stay
    /// in id order whatever the chunk boundaries.
    #[test]
    fn slots_stay_in_id_order_across_chunks() {
        let mut ready = Lane::default();
        let mut model: Vec<u64> = Vec::new();
        // Even seqs appended: several chunks.
        for seq in (0..3 * CHUNK as u64).map(|n| n * 2 + 2) {
            ready.insert(slot(seq));
            model.push(seq);
        }
        // Odd seqs into the first chunk, more than it holds: it splits.
        for seq in (0..CHUNK as u64 + 10).map(|n| n * 2 + 1) {
            ready.insert(slot(seq));
            model.push(seq);
        }
        model.sort_unstable();
        assert_eq!(seqs(&ready), model);
        assert_eq!(ready.len(), model.len());
        // Every slot is found where it is, and removing from anywhere keeps the order.
        for (n, seq) in [
            (0usize, 1u64),
            (model.len() / 2, model[model.len() / 2]),
            (model.len() - 1, *model.last().unwrap()),
        ] {
            let id = MessageId {
                seq: Seq(seq),
                index: 0,
            };
            let pos = ready.find(id).expect("found");
            assert_eq!(ready.nth(n), Some(pos));
            assert_eq!(ready.count_through(id), n + 1);
        }
        for seq in [model[0], model[CHUNK], *model.last().unwrap()] {
            let id = MessageId {
                seq: Seq(seq),
                index: 0,
            };
            let pos = ready.find(id).unwrap();
            assert_eq!(ready.remove(pos).map(|s| s.seq.0), Some(seq));
            model.retain(|s| *s != seq);
        }
        assert_eq!(seqs(&ready), model);
        let from: Vec<u64> = ready.iter_mut_from(CHUNK + 3).map(|s| s.seq.0).collect();
        assert_eq!(from, model[CHUNK + 3..]);
        ready.retain(|s| s.seq.0 % 3 != 0);
        model.retain(|s| s % 3 != 0);
        assert_eq!(seqs(&ready), model);
        assert_eq!(ready.len(), model.len());
        assert!(ready
            .find(MessageId {
                seq: Seq(3),
                index: 0
            })
            .is_none());
    }
}
