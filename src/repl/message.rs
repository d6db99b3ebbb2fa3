//! The replication wire protocol: what master and slave say to each other.
//!
//! Every message is one length-prefixed frame (`codec::write_frame`). The slave speaks
//! first with `Hello`; until the master has checked its credentials and protocol version
//! and answered `Welcome`, the master sends nothing from the store. Records travel in
//! batches; the slave acknowledges cumulatively ("I hold everything up to seq N").
//! Heart-beats go both ways when a side has nothing else to say. Bump `PROTOCOL_VERSION`
//! on any change.
//!
//! `Probe` asks "is a master listening here?" before a broker takes a role that would
//! make two masters: a slave probes its master and the other in-sync slaves before
//! promoting itself, a master probes its lost slave before carrying on alone, a master
//! with peers probes them before it starts. Every broker with a replication listener
//! answers: a master `Alive` with its epoch, a slave `Following` with its master. Neither
//! carries anything from the store. A slave answers a Hello with `Following` too, so a
//! slave dialling it is sent on to the master.

use serde::{Deserialize, Serialize};

use crate::journal::{Epoch, EpochStart, Position, Record, Seq};

/// The protocol both sides must speak exactly. 6: records may hold `Op::Subscribed` and
/// `Op::Kept` (durable subscriptions), which a slave of version 5 could not decode.
pub const PROTOCOL_VERSION: u32 = 6;

/// Largest frame either side accepts: above any one record (a segment at most), while
/// batches are cut far below it.
pub const MAX_FRAME: usize = 256 << 20;

/// Where a slave's store stands, so the master can decide how to catch it up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub store_id: String,
    pub epochs: Vec<EpochStart>,
    /// Where its journal ends; `None` for an empty journal.
    pub last: Option<Position>,
    /// Set while this store's broker serves alone (receipts without a slave's copy):
    /// the first seq of that period. `None` once a slave came in sync after it: from then
    /// on no receipt went out without the slave. A forked tail is discarded automatically
    /// only when it is `None`.
    pub alone_since: Option<Seq>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlaveMessage {
    Hello {
        protocol: u32,
        user: String,
        password: String,
        standing: Standing,
        /// Where this slave's replication listener will be if it promotes itself: the
        /// master probes it there before carrying on alone.
        advertised: Option<String>,
        /// The slave's `broker.name`, for the master's status and admin API.
        name: String,
    },
    /// The slave holds every record up to and including `seq`: handed to its core with
    /// `slave_ack = "received"`, fsynced in its journal with `"durable"`.
    Ack {
        seq: Seq,
    },
    HeartBeat,
    /// Is a master listening here? Answered with `Alive` or `Following`, then the link
    /// closes.
    Probe,
    /// The first message of a copy stream (a slave copying the master's segment files,
    /// after `CopyStore`): answered with `Manifest`, then `Fetch`es.
    CopyHello {
        protocol: u32,
        user: String,
        password: String,
        /// The slave's `broker.name`: the master's status shows the copy under it.
        name: String,
    },
    /// Send `len` bytes of segment file `name` from `offset`, unless their CRC-32 is
    /// `have` (the slave holds them already): answered with `Chunk`, `Zeros`, `Same` or
    /// `Missing`.
    Fetch {
        name: String,
        offset: u64,
        len: u32,
        have: Option<u32>,
    },
}

/// One segment file of the master's store, as a copy stream lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentFile {
    pub name: String,
    pub len: u64,
}

/// How the slave's store will be brought level with the master's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatchUp {
    /// The slave's journal is a prefix: records follow from `from`.
    Append { from: Seq },
    /// The slave holds nothing the master needs: it empties its journal and takes every
    /// record the master still has, from `from`.
    Replace { from: Seq },
}

impl std::fmt::Display for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatchUp::Append { from } => write!(f, "appending the master's records from seq {from}"),
            CatchUp::Replace { from } => {
                write!(
                    f,
                    "replacing the journal with the master's records from seq {from}"
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MasterMessage {
    Welcome {
        store_id: String,
        epochs: Vec<EpochStart>,
        catch_up: CatchUp,
        /// The slave is in sync once it has acknowledged this seq.
        in_sync_at: Seq,
    },
    /// `retry`: the refusal may pass (another slave is attached); otherwise it is final.
    Refused {
        reason: String,
        retry: bool,
    },
    Records(Vec<Record>),
    /// The master now relies on this slave: every receipt waits for its acknowledgement.
    /// Only from here on may the slave promote itself if the master dies.
    InSync,
    /// The master is dropping this slave (silent, too slow, catch-up failed) and carries
    /// on without it: the slave must not promote, but dial again.
    Dropped {
        reason: String,
    },
    HeartBeat,
    /// The answer to `Probe`: a master listens here, in this epoch.
    Alive {
        epoch: Epoch,
    },
    /// The answer of a broker that is not a master, to a `Probe` or a `Hello`: its
    /// epoch, whether it may take over should its master die (an in-sync slave), and
    /// its master's replication address if it has one.
    Following {
        epoch: Epoch,
        candidate: bool,
        master: Option<String>,
    },
    /// The in-sync slaves' replication addresses, first to take over first; sent to
    /// every slave whenever the set changes.
    Succession(Vec<String>),
    /// The answer to a Hello whose store holds nothing this master can append to: copy
    /// the master's segment files over copy streams (`CopyHello`), then say Hello again.
    CopyStore,
    /// The answer to `CopyHello`: the store's identity and its segment files now.
    Manifest {
        store_id: String,
        epochs: Vec<EpochStart>,
        segments: Vec<SegmentFile>,
    },
    /// Bytes of the file asked for, from `offset`, and their CRC-32.
    Chunk {
        offset: u64,
        data: bytes::Bytes,
        checksum: u32,
    },
    /// The bytes asked for are all zeros (the preallocated end of a segment).
    Zeros {
        offset: u64,
    },
    /// The slave holds the bytes asked for already (their CRC-32 matched).
    Same {
        offset: u64,
    },
    /// The file is gone (the master deleted the segment): list the store again.
    Missing {
        name: String,
    },
    /// The master is stopping cleanly (SIGTERM): it has closed its listeners and released
    /// what it will release, and sends nothing more. The first in-sync slave of the
    /// succession takes over without probing it; the others follow that one.
    Stopping,
}
