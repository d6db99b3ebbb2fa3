//! The journal: the store on disk, as append-only segments of checksummed records.
//!
//! Owns `DATA_DIR/journal/*.seg` (format in `segment.rs` and docs/journal-format.md),
//! the store identity (`store.rs`), the directory lock (`lock.rs`), recovery, and the
//! group-commit writer thread. Records are opaque payloads here: the journal never
//! decodes an `Op`; recovery hands entries to a caller-supplied `apply`, which reports
//! back (as `broker::Applied`) what the record added and removed, and the ledger uses
//! that to delete segments nothing needs any more. Never blocks an executor thread: the
//! core hands commands over with `pump`, which does not wait.

mod ledger;
pub mod lock;
pub mod recovery;
pub mod segment;
mod spare;
pub mod store;
pub mod writer;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crossbeam_channel::TrySendError;

pub use segment::Entry;
pub use store::StoreMeta;
pub use writer::{Event, Pace};

use crate::broker::Applied;
use crate::error::{Error, Result};
use ledger::Ledger;
use writer::{Command, Writer};

/// The journal's folder inside a data directory.
pub const JOURNAL_DIR: &str = "journal";

/// What recovery found, for the start-up summary.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub store_id: String,
    pub new_store: bool,
    pub epoch: u64,
    pub records: u64,
    pub segments: usize,
    /// The seq the next record gets.
    pub next_seq: u64,
    /// The last record's (epoch, seq, checksum).
    pub last: Option<(u64, u64, u32)>,
    pub torn_tail: Option<(PathBuf, u64)>,
}

/// The core's handle on the store.
pub struct Journal {
    /// `None` once handed to `stopper`.
    writer: Option<Writer>,
    ledger: Ledger,
    /// Commands not yet taken by the writer's bounded queue.
    outbox: VecDeque<Command>,
    /// While a slave reads segments to catch up, deletions wait here.
    held_deletions: Option<Vec<u64>>,
    meta: StoreMeta,
    dir: PathBuf,
    /// The seq of the last record written to disk (non-durable ones are not).
    last_durable_seq: u64,
}

impl Journal {
    /// Recovers the store in `data_dir` through `apply` and starts the writer, which
    /// calls `report` from its own thread.
    pub fn open(
        data_dir: &Path,
        segment_size: u64,
        report: Box<dyn Fn(Event) + Send>,
        mut apply: impl FnMut(&Entry) -> Result<Applied>,
    ) -> Result<(Journal, Recovered)> {
        let dir = data_dir.join(JOURNAL_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let (meta, new_store) = StoreMeta::load_or_create(data_dir)?;
        let mut notes = Vec::new();
        let summary = recovery::read(&dir, recovery::Mode::Repair, |segment, entry| {
            let applied = apply(&entry)?;
            notes.push((segment, applied));
            Ok(())
        })?;
        let next_seq = summary
            .last
            .map(|(_, seq, _)| seq + 1)
            .unwrap_or(1)
            .max(summary.tail.map_or(1, |(first, _)| first));
        let tail = recovery::open_tail(&dir, &summary, next_seq, segment_size)?;
        let mut ledger = Ledger::new(tail.first_seq, tail.offset, tail.capacity, segment_size);
        for first in &summary.segments {
            ledger.add_existing(*first);
        }
        for (segment, applied) in &notes {
            ledger.note(*segment, applied);
        }
        let mut journal = Journal {
            writer: Some(Writer::start(tail, segment_size, report)),
            ledger,
            outbox: VecDeque::new(),
            held_deletions: None,
            meta: meta.clone(),
            dir: dir.clone(),
            last_durable_seq: summary.last.map_or(0, |(_, seq, _)| seq),
        };
        // Segments emptied before the last stop go now.
        journal.queue_garbage();
        let recovered = Recovered {
            store_id: meta.store_id.clone(),
            new_store,
            epoch: meta.current_epoch(),
            records: summary.entries,
            segments: journal.ledger.segment_count(),
            next_seq,
            last: summary.last,
            torn_tail: summary.torn_tail_at,
        };
        Ok((journal, recovered))
    }

    /// Queues a record the broker has applied. Durable ones are written and fsynced;
    /// the others only mark their place in seq order.
    pub fn append(&mut self, entry: Entry, applied: &Applied) {
        if !applied.durable {
            self.outbox.push_back(Command::Append {
                entry,
                durable: false,
                new_segment: false,
            });
            return;
        }
        self.last_durable_seq = entry.seq;
        let new_segment = self.ledger.place(entry.seq, entry.stored_len());
        self.ledger.note(self.ledger.current(), applied);
        self.outbox.push_back(Command::Append {
            entry,
            durable: true,
            new_segment,
        });
        if !applied.removed.is_empty() {
            self.queue_garbage();
        }
    }

    fn queue_garbage(&mut self) {
        for first_seq in self.ledger.collect_garbage() {
            match &mut self.held_deletions {
                Some(held) => held.push(first_seq),
                None => self.outbox.push_back(Command::Delete(first_seq)),
            }
        }
    }

    /// Holds segment deletions (a catch-up is reading the segments) or releases them.
    pub fn hold_deletions(&mut self, hold: bool) {
        match (hold, self.held_deletions.take()) {
            (true, held) => self.held_deletions = Some(held.unwrap_or_default()),
            (false, Some(held)) => self.outbox.extend(held.into_iter().map(Command::Delete)),
            (false, None) => {}
        }
    }

    /// How eagerly the writer fsyncs (see `Pace`).
    pub fn set_pace(&self, pace: Pace) {
        if let Some(writer) = &self.writer {
            writer.set_pace(pace);
        }
    }

    /// The seq of the last record written to disk.
    pub fn last_durable_seq(&self) -> u64 {
        self.last_durable_seq
    }

    /// Adds epochs found in the journal (`EpochStarted` records) that `store.toml` lacks
    /// (a crash between the record and the file, or epochs mirrored from a master), and
    /// saves the file if it changed. Blocking: call at start-up.
    pub fn merge_epochs(&mut self, data_dir: &Path, found: &[store::EpochStart]) -> Result<()> {
        let mut changed = false;
        for start in found {
            if !self.meta.epochs.iter().any(|e| e.epoch == start.epoch) {
                self.meta.epochs.push(*start);
                changed = true;
            }
        }
        if changed {
            self.meta.epochs.sort_by_key(|e| e.epoch);
            self.meta.save(data_dir)?;
        }
        Ok(())
    }

    /// The first seq the journal may still hold: records before it were deleted.
    pub fn first_retained(&self) -> u64 {
        self.ledger.first_segment()
    }

    /// The journal's folder (catch-up reads segments from it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hands queued commands to the writer without blocking; true if none are left.
    pub fn pump(&mut self) -> bool {
        let Some(writer) = &self.writer else {
            return self.outbox.is_empty();
        };
        while let Some(command) = self.outbox.pop_front() {
            match writer.try_send(command) {
                Ok(()) => {}
                Err(TrySendError::Full(command)) => {
                    self.outbox.push_front(command);
                    return false;
                }
                // The writer stopped and reported why; the core is already stopping.
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        true
    }

    /// Commands waiting for room in the writer's queue.
    pub fn backlog(&self) -> usize {
        self.outbox.len()
    }

    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    pub fn segment_count(&self) -> usize {
        self.ledger.segment_count()
    }

    /// Takes the writer and what is still queued for it; the returned closure writes it
    /// all out and stops the thread. It blocks: run it off the executor. The journal
    /// accepts nothing more afterwards.
    pub fn stopper(&mut self) -> impl FnOnce() + Send + 'static {
        let writer = self.writer.take();
        let mut outbox = std::mem::take(&mut self.outbox);
        move || {
            let Some(writer) = writer else { return };
            'commands: while let Some(mut command) = outbox.pop_front() {
                loop {
                    match writer.try_send(command) {
                        Ok(()) => break,
                        // The writer is draining, so a full queue frees up; wait for room.
                        Err(TrySendError::Full(back)) => {
                            command = back;
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        // It stopped on an error it has reported: nothing more to write.
                        Err(TrySendError::Disconnected(_)) => break 'commands,
                    }
                }
            }
            writer.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn persistent() -> Applied {
        Applied {
            durable: true,
            added: 1,
            removed: Vec::new(),
            mentioned: Vec::new(),
        }
    }

    /// A relaxed writer (a slave acknowledging on receipt) still makes every record
    /// durable on its own, the last one included, and the store reads them all back.
    #[test]
    fn a_relaxed_journal_makes_every_record_durable_without_more_coming() {
        let dir = tempfile::tempdir().unwrap();
        let (events, durable) = mpsc::channel();
        let report = Box::new(move |event| {
            let _ = events.send(event);
        });
        let (mut journal, recovered) =
            Journal::open(dir.path(), 1 << 20, report, |_| Ok(persistent())).unwrap();
        journal.set_pace(Pace::Relaxed);
        for seq in recovered.next_seq..recovered.next_seq + 3 {
            let payload = bytes::Bytes::from(format!("record {seq}"));
            journal.append(
                Entry {
                    epoch: 1,
                    seq,
                    payload,
                },
                &persistent(),
            );
            assert!(journal.pump());
            // Each record alone: the writer must not wait for a next one to sync this.
            loop {
                match durable.recv_timeout(Duration::from_secs(10)) {
                    Ok(Event::Durable(done)) if done >= seq => break,
                    Ok(Event::Durable(_)) => {}
                    other => panic!("record {seq} not made durable: {other:?}"),
                }
            }
        }
        journal.stopper()();
        let mut read = Vec::new();
        recovery::read(
            &dir.path().join(JOURNAL_DIR),
            recovery::Mode::ReadOnly,
            |_, entry| {
                read.push(entry.payload);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(read, ["record 1", "record 2", "record 3"]);
    }
}
