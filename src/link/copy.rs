//! Copying the master's store to a slave file by file: the initial sync of an empty or
//! stale slave, over `replication.sync_streams` concurrent streams, resumable.
//!
//! A slave told `CopyStore` opens copy streams to the master's replication listener. Each
//! says `CopyHello` (version and credentials, as a Hello) and gets a `Manifest`: the
//! store's id, epochs and segment files with their lengths. The files are cut into
//! `CHUNK`s, which the streams take from one queue and `Fetch`, saying the CRC-32 of the
//! bytes the slave holds there already, if any. The master answers `Same` (the slave has
//! it), `Zeros` (preallocated space), the `Chunk` with its CRC-32, or `Missing` (the
//! segment was deleted meanwhile).
//!
//! A copy is bulk work beside the master's clients, who wait on every receipt: each
//! stream runs on a thread of its own at the lowest CPU priority, on both sides
//! (`runtime::in_background`), and the slave writes in small pieces past the page
//! cache (`target.rs`).
//!
//! The copy lands in `sync/` beside the journal, so a slave killed halfway keeps what it
//! copied, and the next copy sends only what differs. A round ends with the files of one
//! manifest: a segment deleted during the round (`Missing`) starts a new round against a
//! new manifest, so the copy is always one set of segments the master held at once. The
//! master keeps serving meanwhile and holds nothing up; what it writes after the manifest
//! reaches the slave afterwards, as an ordinary catch-up from the copy's last record.

mod fetch;
mod files;
mod progress;
mod serve;
mod target;

pub use fetch::{copy, Copied};
pub use serve::{serve, Copies, StreamSlot, MAX_STREAMS};

/// Bytes one `Fetch` asks for at most.
pub const CHUNK: u32 = 1 << 20;
/// The file in `sync/` that marks a finished copy, with the store's identity.
pub const INSTALL: &str = "INSTALL";
/// The slave's folder for a copy under way, beside `journal/`.
pub const SYNC_DIR: &str = "sync";
