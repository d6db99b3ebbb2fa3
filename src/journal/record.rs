//! The record: the one unit of durable history, as the journal stores it, the
//! replication link ships it and recovery replays it.
//!
//! A record is `(Epoch, Seq, payload)`. The payload is opaque here (the broker's encoded
//! `Op`); the journal never decodes it. `Seq` numbers records in one unbroken order across
//! every broker that has held the store; `Epoch` counts masterships (a promotion starts a
//! new one). Both are newtypes so that a seq can never be passed where an epoch, a
//! count or an offset is meant. Their serde form is the bare integer, so the segment
//! format, the wire protocol and `store.toml` are what they were with plain `u64`s.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A record's place in the store's one order of records. Seq 0 is "before the first".
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// Before every record: what a store with no records has "up to".
    pub const ZERO: Seq = Seq(0);
    /// The first record of a new store.
    pub const FIRST: Seq = Seq(1);
    /// No record may carry it: no seq could follow it (recovery and the link refuse it).
    pub const LAST: Seq = Seq(u64::MAX);

    /// The seq after this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }

    /// The seq before this one (`ZERO` stays `ZERO`).
    pub fn prev(self) -> Seq {
        Seq(self.0.saturating_sub(1))
    }

    /// This seq moved `n` records on, stopping at `LAST`.
    pub fn saturating_add(self, n: u64) -> Seq {
        Seq(self.0.saturating_add(n))
    }

    /// How many records lie after `earlier` up to this one (0 if it is not earlier).
    pub fn since(self, earlier: Seq) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A period in which one broker was master. A promotion starts the next one.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch a new store starts in.
    pub const FIRST: Epoch = Epoch(1);

    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a journal ends: its last record's epoch, seq and checksum. The checksum tells
/// whether two stores hold the same record at that seq (see `repl::catchup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: Epoch,
    pub seq: Seq,
    pub checksum: u32,
}

/// One record: its place in history and its opaque payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub epoch: Epoch,
    pub seq: Seq,
    pub payload: bytes::Bytes,
}

impl Record {
    /// Bytes this record takes in a segment.
    pub fn stored_len(&self) -> u64 {
        (super::segment::ENTRY_HEADER_LEN + self.payload.len()) as u64
    }

    /// The checksum the segment entry header carries; also identifies a record across
    /// stores.
    pub fn checksum(&self) -> u32 {
        super::segment::checksum(self.epoch.0, self.seq.0, &self.payload)
    }

    /// Where a journal whose last record is this one ends.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            seq: self.seq,
            checksum: self.checksum(),
        }
    }
}

/// Where a durable record was written in its segment; the ledger knows the segment from
/// the record's seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub offset: u32,
    /// Bytes it takes, entry header included.
    pub len: u32,
}

/// What one applied record means for the journal's segment accounting, as the state
/// machine reports it (`broker::Broker::apply`). Messages are named by the seq of the
/// record that holds them (the one that added them, or the compaction record that
/// carried them forward), which is all the journal needs to find their segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The record must be on disk (it adds or removes a persistent message, or is an epoch).
    pub durable: bool,
    /// Persistent messages this record added to a queue.
    pub added: u32,
    /// The records holding the persistent messages this record removed.
    pub removed: Vec<Seq>,
    /// The records holding every message this record refers to (removed or moved).
    pub mentioned: Vec<Seq>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newtypes_keep_the_bare_integer_on_disk_and_on_the_wire() {
        let record = Record {
            epoch: Epoch(3),
            seq: Seq(42),
            payload: bytes::Bytes::from_static(b"op"),
        };
        let bare = (3u64, 42u64, bytes::Bytes::from_static(b"op"));
        assert_eq!(
            crate::codec::encode(&record).unwrap(),
            crate::codec::encode(&bare).unwrap()
        );
    }

    #[test]
    fn seq_arithmetic_saturates_at_its_ends() {
        assert_eq!(Seq::ZERO.prev(), Seq::ZERO);
        assert_eq!(Seq(7).next(), Seq(8));
        assert_eq!(Seq::LAST.saturating_add(5), Seq::LAST);
        assert_eq!(Seq(10).since(Seq(4)), 6);
        assert_eq!(Seq(4).since(Seq(10)), 0);
    }
}
