//! Segment accounting: which segment each durable record lands in, and which segments
//! hold nothing that recovery still needs, so they can be deleted.
//!
//! A segment may go when it is not the one being written, no message it added is still
//! stored, and every older segment it holds acks or moves for is already gone (if the
//! segment with an ack went first, replay would resurrect the acked message). Pure
//! bookkeeping: the writer thread does the deleting, in order with the appends.

use std::collections::{BTreeMap, BTreeSet};

use super::record::{Applied, Seq};

/// A segment kept by this many live items or fewer is worth compacting whatever it
/// added: carrying them is cheap, and a segment that added little (a durable
/// subscription written forward among acks) would otherwise pin it, and every newer
/// segment behind it, for good.
const FEW_LIVE: u64 = 8;

#[derive(Debug, Default)]
struct SegmentStats {
    /// Persistent messages added here and still stored.
    live: u64,
    /// Persistent messages added here in all (live or not): compaction's yardstick.
    added: u64,
    /// Older segments this one holds acks or moves for.
    refers_to: BTreeSet<Seq>,
}

#[derive(Debug)]
pub struct Ledger {
    segments: BTreeMap<Seq, SegmentStats>,
    current: Seq,
    current_len: u64,
    /// Size of the segment being written (an existing one may predate a config change).
    current_capacity: u64,
    segment_size: u64,
}

impl Ledger {
    /// Starts with the segment being written: its first seq, bytes used (header included)
    /// and file size; new segments get `segment_size`.
    pub fn new(current: Seq, current_len: u64, current_capacity: u64, segment_size: u64) -> Ledger {
        let mut segments = BTreeMap::new();
        segments.insert(current, SegmentStats::default());
        Ledger {
            segments,
            current,
            current_len,
            current_capacity,
            segment_size,
        }
    }

    /// A ledger for recovery to fill (`add_existing`, `note`) before it knows the
    /// segment being written (`recovered`).
    pub fn recovering(segment_size: u64) -> Ledger {
        Ledger {
            segments: BTreeMap::new(),
            current: Seq::ZERO,
            current_len: 0,
            current_capacity: 0,
            segment_size,
        }
    }

    /// Recovery is done: appends continue in segment `current` at `current_len`, up to
    /// `current_capacity`.
    pub fn recovered(&mut self, current: Seq, current_len: u64, current_capacity: u64) {
        self.segments.entry(current).or_default();
        self.current = current;
        self.current_len = current_len;
        self.current_capacity = current_capacity;
    }

    /// Registers an older segment found at recovery.
    pub fn add_existing(&mut self, first_seq: Seq) {
        self.segments.entry(first_seq).or_default();
    }

    /// Decides where the durable record `seq` of `len` bytes goes: whether it starts a new
    /// segment, and its offset there. Records never span segments, so a segment may end
    /// with unused zeros.
    pub fn place(&mut self, seq: Seq, len: u64) -> (bool, u64) {
        let fresh = self.current_len <= super::segment::HEADER_LEN;
        if !fresh && self.current_len + len > self.current_capacity {
            self.current = seq;
            self.current_len = super::segment::HEADER_LEN + len;
            self.current_capacity = self.segment_size;
            self.segments.insert(seq, SegmentStats::default());
            return (true, super::segment::HEADER_LEN);
        }
        let offset = self.current_len;
        self.current_len += len;
        (false, offset)
    }

    /// The segment holding the record `seq`.
    pub fn segment_of(&self, seq: Seq) -> Option<Seq> {
        self.segments
            .range(..=seq)
            .next_back()
            .map(|(first, _)| *first)
    }

    /// Accounts for what a durable record in `segment` did.
    pub fn note(&mut self, segment: Seq, applied: &Applied) {
        for id in &applied.mentioned {
            if let Some(origin) = self.origin(id) {
                if origin != segment {
                    if let Some(stats) = self.segments.get_mut(&segment) {
                        stats.refers_to.insert(origin);
                    }
                }
            }
        }
        for id in &applied.removed {
            if let Some(stats) = self.origin(id).and_then(|o| self.segments.get_mut(&o)) {
                stats.live = stats.live.saturating_sub(1);
            }
        }
        if let Some(stats) = self.segments.get_mut(&segment) {
            stats.live += u64::from(applied.added);
            stats.added += u64::from(applied.added);
        }
    }

    /// The segments worth compacting, oldest first: not being written, kept only by live
    /// messages (nothing they refer to is left), and at most a quarter of what they added
    /// still live, or only a few (`FEW_LIVE`). Each comes with its live count, so a caller can tell a segment that
    /// stays pinned from one its consumers are still draining. The scan stops at the first
    /// segment kept for another reason: compacting a newer one frees nothing while that
    /// one pins it through its acks.
    pub fn sparse_segments(&self) -> Vec<(Seq, u64)> {
        let mut sparse = Vec::new();
        for (first, stats) in &self.segments {
            let pinned_by_refs = stats.refers_to.iter().any(|older| {
                self.segments.contains_key(older) && !sparse.iter().any(|(s, _)| s == older)
            });
            if *first == self.current || pinned_by_refs {
                break;
            }
            if stats.live > 0 && (stats.live * 4 <= stats.added || stats.live <= FEW_LIVE) {
                sparse.push((*first, stats.live));
            } else if stats.live > 0 {
                break;
            }
        }
        sparse
    }

    /// The first seq of the segment after `segment`, if one follows it.
    pub fn next_segment(&self, segment: Seq) -> Option<Seq> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.segments
            .range((Excluded(segment), Unbounded))
            .next()
            .map(|(first, _)| *first)
    }

    /// The segment holding the message added by record `added_by`.
    fn origin(&self, added_by: &Seq) -> Option<Seq> {
        self.segment_of(*added_by)
    }

    /// The segment the next durable record is written to.
    pub fn current(&self) -> Seq {
        self.current
    }

    /// Removes and returns every segment that can now be deleted, oldest first.
    pub fn collect_garbage(&mut self) -> Vec<Seq> {
        let mut deleted = Vec::new();
        loop {
            let next = self.segments.iter().find(|(first, stats)| {
                **first != self.current
                    && stats.live == 0
                    && stats
                        .refers_to
                        .iter()
                        .all(|older| !self.segments.contains_key(older))
            });
            let Some((&first, _)) = next else {
                return deleted;
            };
            self.segments.remove(&first);
            deleted.push(first);
        }
    }

    /// The first seq of the oldest segment still on disk.
    pub fn first_segment(&self) -> Seq {
        self.segments.keys().next().copied().unwrap_or(self.current)
    }

    /// The size of a new segment.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// Segments on disk, for status.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(n: u32) -> Applied {
        Applied {
            durable: true,
            added: n,
            ..Applied::default()
        }
    }

    fn acked(ids: &[u64]) -> Applied {
        let ids: Vec<Seq> = ids.iter().map(|&seq| Seq(seq)).collect();
        Applied {
            durable: true,
            added: 0,
            removed: ids.clone(),
            mentioned: ids,
        }
    }

    /// Places and notes records of 100 bytes in 300-byte segments (two per segment).
    fn record(ledger: &mut Ledger, seq: u64, applied: Applied) {
        ledger.place(Seq(seq), 100);
        let segment = ledger.current();
        ledger.note(segment, &applied);
    }

    #[test]
    fn fully_acked_segments_are_deleted_and_the_current_one_never() {
        let mut ledger = Ledger::new(Seq(1), super::super::segment::HEADER_LEN, 300, 300);
        record(&mut ledger, 1, added(1));
        record(&mut ledger, 2, added(1));
        record(&mut ledger, 3, added(1)); // second segment starts at 3
        assert_eq!(ledger.current(), Seq(3));
        record(&mut ledger, 4, acked(&[1, 2, 3]));
        assert_eq!(ledger.collect_garbage(), vec![Seq(1)]);
        assert_eq!(ledger.segment_count(), 1, "segment 3 is current");
    }

    #[test]
    fn a_segment_with_acks_for_a_live_older_segment_is_kept() {
        let mut ledger = Ledger::new(Seq(1), super::super::segment::HEADER_LEN, 300, 300);
        record(&mut ledger, 1, added(1)); // stays live
        record(&mut ledger, 2, added(1));
        record(&mut ledger, 3, added(1)); // segment 3
        record(&mut ledger, 4, acked(&[2, 3])); // acks into segment 1 and itself
        record(&mut ledger, 5, added(0)); // segment 5
        assert!(
            ledger.collect_garbage().is_empty(),
            "3 holds an ack for live segment 1"
        );
        record(&mut ledger, 6, acked(&[1]));
        assert_eq!(ledger.collect_garbage(), vec![Seq(1), Seq(3)]);
    }

    #[test]
    fn a_segment_kept_by_a_few_live_items_is_sparse_whatever_it_added() {
        let mut ledger = Ledger::new(Seq(1), super::super::segment::HEADER_LEN, 300, 300);
        // A durable subscription written forward among acks: 1 live of 1 added.
        record(&mut ledger, 1, added(1));
        record(&mut ledger, 2, added(0));
        record(&mut ledger, 3, added(20)); // segment 3
        record(&mut ledger, 4, added(0));
        record(&mut ledger, 5, added(0)); // segment 5, being written
        assert_eq!(
            ledger.sparse_segments(),
            vec![(Seq(1), 1)],
            "segment 3, all 20 live, ends the scan"
        );
        record(&mut ledger, 6, acked(&[3; 11]));
        assert_eq!(ledger.sparse_segments(), vec![(Seq(1), 1)], "9 of 20 live");
        record(&mut ledger, 7, acked(&[3]));
        assert_eq!(ledger.sparse_segments(), vec![(Seq(1), 1), (Seq(3), 8)]);
    }
}
