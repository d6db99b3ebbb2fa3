//! The journal: the store on disk, as append-only segments of checksummed records.
//!
//! Owns `DATA_DIR/journal/*.seg` (format in `segment.rs` and docs/journal-format.md),
//! the store identity (`store.rs`), the directory lock (`lock.rs`), recovery, and the
//! group-commit writer thread. It defines the [`Record`] every layer shares, with its
//! [`Seq`], [`Epoch`] and [`Position`]. Records are opaque payloads here: the journal
//! never decodes an `Op`; recovery hands records to a caller-supplied `apply`, which
//! reports back (as an [`Applied`]) what the record added and removed, and the ledger
//! uses that to delete segments nothing needs any more. Imports nothing of the broker or
//! of replication.
//!
//! Split in two: [`Log`] is the bookkeeping, with no I/O, that the core owns and that
//! emits writer [`Command`]s; [`Journal`] is the handle on the writer thread that the
//! server feeds those commands to, never blocking an executor thread.

mod ledger;
pub mod lock;
pub mod reader;
mod record;
pub mod recovery;
pub mod segment;
mod spare;
pub mod store;
pub mod writer;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crossbeam_channel::TrySendError;

pub use reader::{read_now, Extent, Fetched, ReadBatch, Reader};
pub use record::{Applied, Epoch, Placement, Position, Record, Seq};
pub use store::{EpochStart, StoreMeta};
pub use writer::{Command, Event, Pace};

use crate::error::{Error, Result};
use ledger::Ledger;
use writer::Writer;

/// The journal's folder inside a data directory.
pub const JOURNAL_DIR: &str = "journal";

/// What recovery found, for the start-up summary.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub meta: StoreMeta,
    pub new_store: bool,
    pub records: u64,
    pub segments: usize,
    /// The seq the next record gets.
    pub next_seq: Seq,
    /// Where the journal ends.
    pub last: Option<Position>,
    pub torn_tail: Option<(PathBuf, u64)>,
}

/// The journal's bookkeeping, with no I/O: where each durable record goes, which
/// segments may be deleted, and the writer commands that follow. The core owns it and
/// emits its commands; the server hands them to the writer thread (`Journal`).
#[derive(Debug)]
pub struct Log {
    ledger: Ledger,
    /// While a slave reads segments to catch up, deletions wait here.
    held_deletions: Option<Vec<Seq>>,
    /// The seq of the last record written to disk (non-durable ones are not).
    last_durable_seq: Seq,
}

impl Log {
    /// The log of a new, empty store whose segments hold `segment_size` bytes.
    pub fn empty(segment_size: u64) -> Log {
        Log {
            ledger: Ledger::new(Seq::FIRST, segment::HEADER_LEN, segment_size, segment_size),
            held_deletions: None,
            last_durable_seq: Seq::ZERO,
        }
    }

    /// Accounts for a record the broker has applied and emits the writer's commands:
    /// durable records are written and fsynced, the others only mark their place in seq
    /// order; segments the record emptied are deleted after it. Returns where a durable
    /// record goes in its segment.
    pub fn append(
        &mut self,
        record: Record,
        applied: &Applied,
        mut emit: impl FnMut(Command),
    ) -> Option<Placement> {
        if !applied.durable {
            emit(Command::Append {
                entry: record,
                durable: false,
                new_segment: false,
            });
            return None;
        }
        self.last_durable_seq = record.seq;
        let len = record.stored_len();
        let (new_segment, offset) = self.ledger.place(record.seq, len);
        self.ledger.note(self.ledger.current(), applied);
        emit(Command::Append {
            entry: record,
            durable: true,
            new_segment,
        });
        if !applied.removed.is_empty() {
            self.collect_garbage(emit);
        }
        // Segments hold at most 256 MiB (config), so both fit.
        Some(Placement {
            offset: offset as u32,
            len: len as u32,
        })
    }

    /// Where the durable record `record` lies, given where it was placed in its segment.
    pub fn extent(&self, record: Seq, placement: Placement) -> Option<Extent> {
        Some(Extent {
            segment: self.ledger.segment_of(record)?,
            offset: u64::from(placement.offset),
            len: placement.len,
        })
    }

    /// Segments worth compacting, oldest first, with their live message counts.
    pub fn sparse_segments(&self) -> Vec<(Seq, u64)> {
        self.ledger.sparse_segments()
    }

    /// The seqs of the records segment `first` holds: from it up to the next segment.
    pub fn segment_range(&self, first: Seq) -> std::ops::Range<Seq> {
        first..self.ledger.next_segment(first).unwrap_or(Seq::LAST)
    }

    fn collect_garbage(&mut self, mut emit: impl FnMut(Command)) {
        for first_seq in self.ledger.collect_garbage() {
            match &mut self.held_deletions {
                Some(held) => held.push(first_seq),
                None => emit(Command::Delete(first_seq)),
            }
        }
    }

    /// Holds segment deletions (a catch-up is reading the segments) or releases them.
    pub fn hold_deletions(&mut self, hold: bool, emit: impl FnMut(Command)) {
        match (hold, self.held_deletions.take()) {
            (true, held) => self.held_deletions = Some(held.unwrap_or_default()),
            (false, Some(held)) => held.into_iter().map(Command::Delete).for_each(emit),
            (false, None) => {}
        }
    }

    /// The seq of the last record written to disk.
    pub fn last_durable_seq(&self) -> Seq {
        self.last_durable_seq
    }

    /// The first seq the journal may still hold: records before it were deleted.
    pub fn first_retained(&self) -> Seq {
        self.ledger.first_segment()
    }

    pub fn segment_count(&self) -> usize {
        self.ledger.segment_count()
    }

    /// Bytes the segments take on disk, the next one made ahead included. Segments are
    /// written full of zeros when made, so this is what they hold from the start.
    pub fn disk_used(&self) -> u64 {
        (self.ledger.segment_count() as u64 + 1) * self.ledger.segment_size()
    }

    /// The size of a new segment: no record may be larger.
    pub fn segment_size(&self) -> u64 {
        self.ledger.segment_size()
    }
}

/// The handle on the journal writer thread: commands wait here, in order, for room in
/// its bounded queue, and nothing here ever blocks an executor thread.
pub struct Journal {
    /// `None` once handed to `stopper`.
    writer: Option<Writer>,
    /// Commands not yet taken by the writer's bounded queue.
    outbox: VecDeque<Command>,
    /// Records handed over and not yet reported durable, with their payload bytes: they
    /// are held in memory until written.
    unwritten: VecDeque<(Seq, usize)>,
    unwritten_bytes: usize,
}

impl Journal {
    /// Recovers the store in `data_dir` through `apply`, which is given every record in
    /// order with its place in its segment, and starts the writer, which calls `report` from its own thread. Segments
    /// emptied before the last stop are queued for deletion.
    pub fn open(
        data_dir: &Path,
        segment_size: u64,
        report: Box<dyn Fn(Event) + Send>,
        mut apply: impl FnMut(&Record, Placement) -> Result<Applied>,
    ) -> Result<(Journal, Log, Recovered)> {
        let dir = data_dir.join(JOURNAL_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let (meta, new_store) = StoreMeta::load_or_create(data_dir)?;
        // Accounted as read: a record only mentions segments read before its own.
        let mut ledger = Ledger::recovering(segment_size);
        let summary = recovery::read(
            &dir,
            recovery::Mode::Repair,
            |segment, placement, record| {
                let applied = apply(&record, placement)?;
                ledger.add_existing(segment);
                ledger.note(segment, &applied);
                Ok(())
            },
        )?;
        let next_seq = summary
            .last
            .map_or(Seq::FIRST, |last| last.seq.next())
            .max(summary.tail.map_or(Seq::FIRST, |(first, _)| first));
        let tail = recovery::open_tail(&dir, &summary, next_seq, segment_size)?;
        for first in &summary.segments {
            ledger.add_existing(*first);
        }
        ledger.recovered(tail.first_seq, tail.offset, tail.capacity);
        let mut log = Log {
            ledger,
            held_deletions: None,
            last_durable_seq: summary.last.map_or(Seq::ZERO, |last| last.seq),
        };
        let mut journal = Journal {
            writer: Some(Writer::start(tail, segment_size, report)),
            outbox: VecDeque::new(),
            unwritten: VecDeque::new(),
            unwritten_bytes: 0,
        };
        log.collect_garbage(|command| journal.send(command));
        let recovered = Recovered {
            meta,
            new_store,
            records: summary.entries,
            segments: log.segment_count(),
            next_seq,
            last: summary.last,
            torn_tail: summary.torn_tail_at,
        };
        Ok((journal, log, recovered))
    }

    /// Queues a command for the writer (`pump` hands it over).
    pub fn send(&mut self, command: Command) {
        if let Command::Append {
            entry,
            durable: true,
            ..
        } = &command
        {
            self.unwritten.push_back((entry.seq, entry.payload.len()));
            self.unwritten_bytes += entry.payload.len();
        }
        self.outbox.push_back(command);
    }

    /// The writer reported every record up to `seq` durable: they are out of memory.
    pub fn written_up_to(&mut self, seq: Seq) {
        while let Some(&(first, bytes)) = self.unwritten.front() {
            if first > seq {
                break;
            }
            self.unwritten.pop_front();
            self.unwritten_bytes -= bytes;
        }
    }

    /// Payload bytes handed to the writer and not yet durable.
    pub fn unwritten_bytes(&self) -> usize {
        self.unwritten_bytes
    }

    /// How eagerly the writer fsyncs (see `Pace`).
    pub fn set_pace(&self, pace: Pace) {
        if let Some(writer) = &self.writer {
            writer.set_pace(pace);
        }
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

    /// A relaxed journal (a slave acknowledging on receipt) in a temporary directory,
    /// and the events its writer reports.
    fn relaxed_journal(dir: &std::path::Path) -> (Journal, Log, Seq, mpsc::Receiver<Event>) {
        let (events, reported) = mpsc::channel();
        let report = Box::new(move |event| {
            let _ = events.send(event);
        });
        let (journal, log, recovered) =
            Journal::open(dir, 1 << 20, report, |_, _| Ok(persistent())).unwrap();
        journal.set_pace(Pace::Relaxed);
        (journal, log, recovered.next_seq, reported)
    }

    fn append(journal: &mut Journal, log: &mut Log, seq: Seq) {
        let record = Record {
            epoch: Epoch::FIRST,
            seq,
            payload: bytes::Bytes::from(format!("record {seq}")),
        };
        log.append(record, &persistent(), |command| journal.send(command));
        assert!(journal.pump());
    }

    /// A relaxed writer (a slave acknowledging on receipt) still makes every record
    /// durable on its own, the last one included, and the store reads them all back.
    #[test]
    fn a_relaxed_journal_makes_every_record_durable_without_more_coming() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, mut log, first, durable) = relaxed_journal(dir.path());
        for seq in (first.0..first.0 + 3).map(Seq) {
            append(&mut journal, &mut log, seq);
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
            |_, _, entry| {
                read.push(entry.payload);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(read, ["record 1", "record 2", "record 3"]);
    }

    /// Records that trickle in share the relaxed writer's fsyncs: it reports (fsyncs)
    /// once per `RELAXED_INTERVAL` or `RELAXED_RECORDS` at most, where an eager one
    /// reports each of these records on its own; the last report covers them all.
    #[test]
    fn a_relaxed_journal_syncs_records_that_trickle_in_together() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, mut log, first, durable) = relaxed_journal(dir.path());
        let records = 100;
        let started = std::time::Instant::now();
        for seq in (first.0..first.0 + records).map(Seq) {
            append(&mut journal, &mut log, seq);
            // The pace of a slave's records under a light load: each arrives alone.
            std::thread::sleep(Duration::from_millis(2));
        }
        let last = Seq(first.0 + records - 1);
        let mut reports = 0;
        loop {
            match durable.recv_timeout(Duration::from_secs(10)) {
                Ok(Event::Durable(done)) => {
                    reports += 1;
                    if done == last {
                        break;
                    }
                }
                other => panic!("record {last} not made durable: {other:?}"),
            }
        }
        let intervals = started.elapsed().as_millis() / writer::RELAXED_INTERVAL.as_millis();
        let most = intervals as usize + records as usize / writer::RELAXED_RECORDS + 2;
        assert!(
            reports <= most,
            "{reports} fsyncs for {records} records in {:?}; at most {most} expected",
            started.elapsed()
        );
        journal.stopper()();
    }
}
