//! The journal writer thread: appends entries and fsyncs them in groups.
//!
//! One thread owns the segment being written. It takes every command waiting in its
//! channel, writes the batch with one `pwrite`, calls `fdatasync` once, performs the
//! segment deletions that came with the batch, and reports the highest seq now durable.
//! While that fsync runs the next batch queues up: that is the group commit. Never run
//! on an executor thread. Its `Pace` says whether anyone waits on each fsync: eager for a
//! master's receipts, relaxed for a slave with `slave_ack = "received"`, which writes each
//! batch as it comes and fsyncs them together every 50 ms at most. An I/O error
//! stops the writer and is reported: a broker that cannot write must not acknowledge
//! anything more.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};

use super::record::{Record, Seq};
use super::segment::{self, Fill};
use super::spare::Spare;
use crate::error::{Error, Result};

/// How long the writer keeps looking for work after a batch before it sleeps. Waking a
/// sleeping thread costs tens of µs on a virtual machine, on the path of every receipt;
/// records that come one at a time (a producer waiting for each receipt) arrive well
/// within this. Looking yields the CPU each time, so it takes nothing runnable threads
/// need.
const LINGER: Duration = Duration::from_micros(1000);

/// Longest wait for a batch to grow to its usual size (see `State::gather`).
const COMMIT_DELAY: Duration = Duration::from_micros(150);

/// With the disk full, how often the writer tries again to make a segment, and how often
/// it says so.
const FULL_DISK_RETRY: Duration = Duration::from_millis(200);
const FULL_DISK_WARNING: Duration = Duration::from_secs(10);

/// Whether an error is the disk being full.
fn is_disk_full(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull)
}

/// At a relaxed pace, the longest a written record waits for its fsync...
pub(super) const RELAXED_INTERVAL: Duration = Duration::from_millis(50);
/// ...and the most records that wait for one: far below the 8,192 records a slave may
/// acknowledge beyond its disk (`core::replication::MAX_ACKED_AHEAD_OF_DISK`), so a
/// slave's acknowledgements never wait for these fsyncs while its disk keeps up.
pub(super) const RELAXED_RECORDS: usize = 2048;

/// At a relaxed pace, while batches keep coming (one within `RELAXED_BUSY`), how long
/// the writer sleeps before it takes what came, instead of waiting on its queue: a writer
/// parked on the queue is woken by the core's thread for each batch, a futex wake there
/// and a context switch here. At a master's windowed rate those wakeups took about a
/// fifth of a slave's samples; napping cut a slave's CPU per message by about 13%.
const RELAXED_POLL: Duration = Duration::from_millis(2);
const RELAXED_BUSY: Duration = Duration::from_millis(20);

/// Whether anyone waits for each fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Receipts (or a master's receipts, through this slave's acknowledgements) wait for
    /// the fsync: linger for the next record, and fsync as soon as a batch is in.
    Eager,
    /// Nobody waits (a slave that acknowledges on receipt): sleep until work comes (napping
    /// `RELAXED_POLL` between batches while they keep coming), write each batch as it
    /// comes, and fsync once `RELAXED_INTERVAL` has passed since the
    /// last fsync or `RELAXED_RECORDS` records wait for one. Every fsync is a cache flush
    /// the disk makes the master's fsyncs queue behind wherever the two share it (and on
    /// a virtual machine, a flush of the host's file); at one a millisecond, two slaves
    /// on the master's disk slowed its windowed receipts by about 5%.
    Relaxed,
}

/// The next command: a waiting one, one that arrives within `LINGER`, or the next one
/// after sleeping; `None` once every sender is gone.
fn next_command(receiver: &Receiver<Command>) -> Option<Command> {
    let started = Instant::now();
    loop {
        match receiver.try_recv() {
            Ok(command) => return Some(command),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if started.elapsed() < LINGER => std::thread::yield_now(),
            Err(TryRecvError::Empty) => return receiver.recv().ok(),
        }
    }
}

/// What the writer does next.
enum Next {
    /// Start a batch with this command.
    Command(Command),
    /// Sync what is written and report it durable.
    SyncDue,
    /// Every sender is gone.
    Closed,
}

/// Work for the writer, in seq order.
#[derive(Debug)]
pub enum Command {
    /// A record. Non-durable ones are not written but still advance the durable seq, so
    /// receipts are released in seq order. `new_segment` starts a segment first.
    Append {
        entry: Record,
        durable: bool,
        new_segment: bool,
    },
    /// Delete the segment starting at this seq, after the preceding appends are durable.
    Delete(Seq),
    /// Finish what is queued, then exit.
    Stop,
}

/// What the writer reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Every record up to and including this seq is durable (or needs no disk).
    Durable(Seq),
    /// The writer stopped on an error; nothing more will become durable.
    Failed(String),
}

/// Where appends continue after recovery.
#[derive(Debug)]
pub struct Tail {
    pub dir: PathBuf,
    pub first_seq: Seq,
    pub file: File,
    pub offset: u64,
    /// The segment file's size: appends never go past it.
    pub capacity: u64,
}

/// The handle the core holds: a bounded queue into the thread.
pub struct Writer {
    sender: Sender<Command>,
    /// The pace, shared with the thread: true for `Pace::Relaxed`.
    relaxed: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const QUEUE_DEPTH: usize = 8192;
const MAX_BATCH: usize = 4096;

impl Writer {
    /// Starts the thread; `report` is called on it for every event.
    pub fn start(tail: Tail, segment_size: u64, report: Box<dyn Fn(Event) + Send>) -> Writer {
        let (sender, receiver) = crossbeam_channel::bounded(QUEUE_DEPTH);
        let relaxed = Arc::new(AtomicBool::new(false));
        let pace = relaxed.clone();
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || {
                let mut state = State::new(tail, segment_size, pace);
                if let Err(error) = state.run(&receiver, &*report) {
                    log::error!("journal writer stopped: {error}");
                    report(Event::Failed(error.to_string()));
                }
            })
            .expect("spawning the journal writer thread");
        Writer {
            sender,
            relaxed,
            thread: Some(thread),
        }
    }

    /// Sets the pace from the next batch on.
    pub fn set_pace(&self, pace: Pace) {
        self.relaxed.store(pace == Pace::Relaxed, Ordering::Relaxed);
    }

    /// Queues a command without blocking; gives it back if the queue is full or the
    /// thread has stopped.
    pub fn try_send(&self, command: Command) -> std::result::Result<(), TrySendError<Command>> {
        self.sender.try_send(command)
    }

    /// Finishes everything queued and joins the thread. Blocks: call off the executor.
    pub fn stop(mut self) {
        let _ = self.sender.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The usual batch after one of `batch` records: the largest recent one, shrinking by an
/// eighth (at least one) per batch, so that after a burst a lone producer is back to
/// single batches, without the commit delay, within a few dozen fsyncs.
fn next_usual_batch(usual: usize, batch: usize) -> usize {
    batch.max(usual - usual.div_ceil(8)).max(1)
}

struct State {
    tail: Tail,
    segment_size: u64,
    /// The next segment, made ahead once this one is half full.
    spare: Spare,
    buffer: Vec<u8>,
    /// The largest recent batch, decaying: how many senders are usually in flight.
    usual_batch: usize,
    /// See `Writer::set_pace`.
    relaxed: Arc<AtomicBool>,
    /// When the last fsync returned (the relaxed pace keeps them apart).
    last_sync: Instant,
    /// Bytes written since the last fsync.
    dirty: bool,
    /// The highest seq written (or, not durable, passed) and not yet reported durable.
    /// Eager, it is reported at the end of its batch; relaxed, it may wait for the fsync
    /// that `sync_due` or `next_batch_start` calls for.
    unsynced: Option<Seq>,
    /// How many records wait for the next fsync.
    unsynced_records: usize,
    /// When the last batch started.
    last_batch: Instant,
}

impl State {
    fn new(tail: Tail, segment_size: u64, relaxed: Arc<AtomicBool>) -> State {
        State {
            spare: Spare::new(&tail.dir, segment_size),
            tail,
            segment_size,
            buffer: Vec::with_capacity(1 << 20),
            usual_batch: 1,
            relaxed,
            last_sync: Instant::now(),
            dirty: false,
            unsynced: None,
            unsynced_records: 0,
            last_batch: Instant::now(),
        }
    }

    fn run(&mut self, receiver: &Receiver<Command>, report: &dyn Fn(Event)) -> Result<()> {
        loop {
            let first = match self.next_batch_start(receiver) {
                Next::Command(command) => command,
                Next::SyncDue => {
                    self.sync_and_report(report)?;
                    continue;
                }
                Next::Closed => return self.sync_and_report(report),
            };
            self.last_batch = Instant::now();
            let batch = self.gather(first, receiver);
            let mut durable_to = None;
            let mut deletions = Vec::new();
            let mut stop = false;
            for command in batch {
                match command {
                    Command::Append {
                        entry,
                        durable,
                        new_segment,
                    } => {
                        if durable {
                            if new_segment {
                                self.roll(entry.seq)?;
                            }
                            entry.encode_into(&mut self.buffer);
                            self.unsynced_records += 1;
                        }
                        durable_to = Some(entry.seq);
                    }
                    Command::Delete(first_seq) => deletions.push(first_seq),
                    Command::Stop => stop = true,
                }
            }
            self.unsynced = durable_to.or(self.unsynced);
            self.write()?;
            let relaxed = self.relaxed.load(Ordering::Relaxed);
            if relaxed && !stop && deletions.is_empty() && !self.sync_due() {
                continue;
            }
            self.sync()?;
            if !deletions.is_empty() {
                for first_seq in deletions {
                    let path = segment::path_for(&self.tail.dir, first_seq);
                    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                    log::debug!("journal: deleted segment {}", path.display());
                }
                // Deletions must reach the disk in the order the ledger chose them.
                segment::sync_dir(&self.tail.dir)?;
            }
            if let Some(seq) = self.unsynced.take() {
                report(Event::Durable(seq));
            }
            if stop {
                return Ok(());
            }
        }
    }

    /// Syncs what is written and reports it durable, if anything waits for that.
    fn sync_and_report(&mut self, report: &dyn Fn(Event)) -> Result<()> {
        if let Some(seq) = self.unsynced.take() {
            self.sync()?;
            report(Event::Durable(seq));
        }
        Ok(())
    }

    /// Whether the relaxed pace syncs now (see `Pace::Relaxed`).
    fn sync_due(&self) -> bool {
        self.unsynced_records >= RELAXED_RECORDS || self.until_sync_due().is_zero()
    }

    /// How long what is written may still wait for its fsync at the relaxed pace.
    fn until_sync_due(&self) -> Duration {
        RELAXED_INTERVAL.saturating_sub(self.last_sync.elapsed())
    }

    /// The first command of the next batch, at the current pace, or the sync that is due
    /// first: relaxed, what is written waits for its fsync until `RELAXED_INTERVAL` from
    /// the last one at most; eager (a promotion came meanwhile), not at all. Relaxed and
    /// busy, it naps first (`RELAXED_POLL`).
    fn next_batch_start(&self, receiver: &Receiver<Command>) -> Next {
        let relaxed = self.relaxed.load(Ordering::Relaxed);
        if relaxed && self.last_batch.elapsed() < RELAXED_BUSY {
            // Not past a sync that falls due meanwhile.
            let nap = match self.unsynced {
                Some(_) => RELAXED_POLL.min(self.until_sync_due()),
                None => RELAXED_POLL,
            };
            std::thread::sleep(nap);
            if let Ok(command) = receiver.try_recv() {
                return Next::Command(command);
            }
        }
        let next = if self.unsynced.is_some() {
            let wait = if relaxed {
                self.until_sync_due()
            } else {
                Duration::ZERO
            };
            match receiver.recv_timeout(wait) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => return Next::SyncDue,
                Err(RecvTimeoutError::Disconnected) => None,
            }
        } else if relaxed {
            receiver.recv().ok()
        } else {
            next_command(receiver)
        };
        next.map_or(Next::Closed, Next::Command)
    }

    /// The commands to make durable together: `first`, what is waiting, and, when recent
    /// batches were bigger, what arrives within `COMMIT_DELAY` until it is as big. Eight
    /// producers each waiting for a receipt send again within microseconds of each other;
    /// without the wait the first one's fsync starts alone and the others queue behind it
    /// for a second fsync, every round. A lone producer's batches are single: no wait.
    fn gather(&mut self, first: Command, receiver: &Receiver<Command>) -> Vec<Command> {
        let mut batch = vec![first];
        let started = Instant::now();
        // Relaxed, nobody waits for the batch (its fsync comes later anyway); nor do its
        // batches say how many senders a master will have in flight.
        let relaxed = self.relaxed.load(Ordering::Relaxed);
        let usual_batch = if relaxed { 1 } else { self.usual_batch };
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(command) => batch.push(command),
                Err(TryRecvError::Empty)
                    if batch.len() < usual_batch && started.elapsed() < COMMIT_DELAY =>
                {
                    std::thread::yield_now()
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if !relaxed {
            self.usual_batch = next_usual_batch(self.usual_batch, batch.len());
        }
        batch
    }

    /// Writes the buffered entries at the tail.
    fn write(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let path = segment::path_for(&self.tail.dir, self.tail.first_seq);
        let io = |e| Error::io(&path, e);
        if self.tail.offset + self.buffer.len() as u64 > self.tail.capacity {
            // Only a record larger than a whole segment gets here; config forbids that.
            return Err(Error::Corrupt {
                file: path.clone(),
                offset: self.tail.offset,
                reason: "record does not fit in a segment".into(),
            });
        }
        self.tail
            .file
            .write_all_at(&self.buffer, self.tail.offset)
            .map_err(io)?;
        self.dirty = true;
        self.tail.offset += self.buffer.len() as u64;
        self.buffer.clear();
        if self.tail.offset > self.tail.capacity / 2 {
            self.spare.prepare(self.fill());
        }
        Ok(())
    }

    /// How new segments claim their space at the current pace (see `segment::Fill`).
    fn fill(&self) -> Fill {
        if self.relaxed.load(Ordering::Relaxed) {
            Fill::Reserved
        } else {
            Fill::Zeros
        }
    }

    /// Makes what is written durable.
    fn sync(&mut self) -> Result<()> {
        self.unsynced_records = 0;
        if !std::mem::take(&mut self.dirty) {
            return Ok(());
        }
        let syncing = Instant::now();
        self.tail.file.sync_data().map_err(|e| {
            let path = segment::path_for(&self.tail.dir, self.tail.first_seq);
            Error::io(&path, e)
        })?;
        self.last_sync = Instant::now();
        crate::meter::METERS
            .fsync
            .observe(self.last_sync.duration_since(syncing));
        Ok(())
    }

    /// Makes what is buffered durable in the old segment, then continues in a new one.
    /// With the disk full the new segment cannot be made: the writer says so and tries
    /// again every `FULL_DISK_RETRY`, and nothing after it becomes durable meanwhile, so
    /// no receipt goes out; the segments written so far stay whole.
    fn roll(&mut self, first_seq: Seq) -> Result<()> {
        self.write()?;
        self.sync()?;
        let mut warned: Option<Instant> = None;
        let file = loop {
            match self.spare.take(first_seq, self.fill()) {
                Ok(file) => break file,
                Err(error) if is_disk_full(&error) => {
                    if warned.is_none_or(|at| at.elapsed() >= FULL_DISK_WARNING) {
                        log::error!("journal: the disk is full ({error}): no new segment can be made, so nothing more is receipted; free space on the journal's disk and the broker goes on by itself");
                        warned = Some(Instant::now());
                    }
                    std::thread::sleep(FULL_DISK_RETRY);
                }
                Err(error) => return Err(error),
            }
        };
        if warned.is_some() {
            log::warn!("journal: space again: segment {first_seq} made; receipts go on");
        }
        self.tail.file = file;
        self.tail.first_seq = first_seq;
        self.tail.offset = segment::HEADER_LEN;
        self.tail.capacity = self.segment_size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::Epoch;

    /// A writer's state on a fresh segment in `dir`, at the relaxed pace.
    fn relaxed_state(dir: &std::path::Path) -> State {
        let size = 1 << 20;
        let file = segment::create(dir, Seq(1), size, Fill::Zeros).unwrap();
        let tail = Tail {
            dir: dir.to_path_buf(),
            first_seq: Seq(1),
            file,
            offset: segment::HEADER_LEN,
            capacity: size,
        };
        State::new(tail, size, Arc::new(AtomicBool::new(true)))
    }

    fn append(seq: u64) -> Command {
        Command::Append {
            entry: Record {
                epoch: Epoch::FIRST,
                seq: Seq(seq),
                payload: bytes::Bytes::from_static(b"record"),
            },
            durable: true,
            new_segment: false,
        }
    }

    /// Busy at a relaxed pace, the writer naps before it takes the next batch, however
    /// soon records come, so nobody has to wake it; idle, it waits on its queue.
    #[test]
    fn a_busy_relaxed_writer_naps_before_its_next_batch_and_an_idle_one_waits() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = relaxed_state(dir.path());
        let (sender, receiver) = crossbeam_channel::bounded(16);
        let sending = std::thread::spawn(move || {
            for seq in 1..=3 {
                sender.send(append(seq)).unwrap();
                std::thread::sleep(Duration::from_micros(300));
            }
            sender
        });
        // A batch was just written.
        state.last_batch = Instant::now();
        let started = Instant::now();
        let Next::Command(first) = state.next_batch_start(&receiver) else {
            panic!("no command")
        };
        assert!(started.elapsed() >= RELAXED_POLL, "{:?}", started.elapsed());
        let sender = sending.join().unwrap();
        assert_eq!(state.gather(first, &receiver).len(), 3);
        // Idle: waits on the queue, and takes what comes.
        state.last_batch = Instant::now() - RELAXED_BUSY;
        sender.send(append(4)).unwrap();
        assert!(matches!(
            state.next_batch_start(&receiver),
            Next::Command(Command::Append { entry, .. }) if entry.seq == Seq(4)
        ));
    }

    #[test]
    fn the_usual_batch_decays_to_one_after_a_burst() {
        let mut usual = next_usual_batch(1, 4096);
        assert_eq!(usual, 4096);
        let mut batches = 0;
        while usual > 1 {
            usual = next_usual_batch(usual, 1);
            batches += 1;
            assert!(
                batches < 100,
                "still {usual} after {batches} single batches"
            );
        }
        // Eight producers keep it at eight.
        assert_eq!(next_usual_batch(usual, 8), 8);
        assert_eq!(next_usual_batch(8, 8), 8);
    }
}
