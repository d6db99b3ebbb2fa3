//! Reading a journal back: every valid entry, in order, to a callback.
//!
//! A bad entry in the last segment with only zeros after it is a torn tail (a crash
//! mid-write): it is cut with a warning and overwritten with zeros, so the next append
//! starts clean. A bad entry anywhere else is corruption and stops the start, naming the
//! file and the offset. Seqs must increase, and stay within their segment's range (from
//! its name to the next segment's); segments are read oldest first.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::record::{Placement, Position, Record, Seq};
use super::segment::{self, Slot};
use super::writer::Tail;
use crate::error::{Error, Result};

/// Whether recovery may repair a torn tail (a broker) or only report it (`verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Repair,
    ReadOnly,
}

/// The outcome of reading the whole journal.
#[derive(Debug, Default)]
pub struct Summary {
    pub segments: Vec<Seq>,
    pub entries: u64,
    /// Where the journal ends: its last record, if any.
    pub last: Option<Position>,
    /// Where the torn tail was cut, if there was one.
    pub torn_tail_at: Option<(std::path::PathBuf, u64)>,
    /// First seq and end offset of the last segment.
    pub tail: Option<(Seq, u64)>,
}

/// Seqs start at 1 and grow by one a record, so this one is never reached; a store that
/// claims it is corrupt, and continuing after it would overflow the next seq.
const LAST_SEQ: Seq = Seq::LAST;
const NO_ROOM: &str = "no seq is left for the next record";

/// Reads every segment in `dir`, calling `each(segment_first_seq, placement, entry)` in
/// seq order.
pub fn read(
    dir: &Path,
    mode: Mode,
    each: impl FnMut(Seq, Placement, Record) -> Result<()>,
) -> Result<Summary> {
    read_from(dir, mode, Seq::ZERO, each)
}

/// `read`, skipping the segments that hold only records before `from` (a catch-up's
/// first seq): the summary then covers only the segments read.
pub fn read_from(
    dir: &Path,
    mode: Mode,
    from: Seq,
    mut each: impl FnMut(Seq, Placement, Record) -> Result<()>,
) -> Result<Summary> {
    let segments = segment::list(dir)?;
    let firsts: Vec<Seq> = segments.iter().map(|(first_seq, _)| *first_seq).collect();
    let mut summary = Summary::default();
    let count = segments.len();
    let mut progress = Progress::new(mode, count);
    for (position, (first_seq, path)) in segments.into_iter().enumerate() {
        progress.segment(position, summary.entries);
        let is_last = position + 1 == count;
        let next_first = firsts.get(position + 1).copied();
        if next_first.is_some_and(|next| next <= from) {
            continue;
        }
        let data = match std::fs::read(&path) {
            Ok(data) => bytes::Bytes::from(data),
            // Read beside a running writer (a slave's standing, a catch-up, `verify`): a
            // segment it deleted meanwhile held nothing recovery needs.
            Err(e) if mode == Mode::ReadOnly && e.kind() == std::io::ErrorKind::NotFound => {
                continue
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        segment::check_header(&data, first_seq, &path)?;
        if first_seq == LAST_SEQ {
            return Err(corrupt(
                &path,
                0,
                format!("segment named seq {LAST_SEQ}: {NO_ROOM}"),
            ));
        }
        summary.segments.push(first_seq);
        let mut offset = segment::HEADER_LEN as usize;
        loop {
            match segment::read_slot(&data, offset) {
                Slot::Entry(entry, next) => {
                    let in_order = summary.last.is_none_or(|last| entry.seq > last.seq);
                    // A segment holds the seqs from its name up to the next one's name.
                    // The ledger finds a record's segment by its seq: one outside that
                    // range would be counted against the wrong segment, which could be
                    // deleted while still needed, or stop the next start once older
                    // segments are gone.
                    let in_segment =
                        entry.seq >= first_seq && next_first.is_none_or(|next| entry.seq < next);
                    if entry.seq == LAST_SEQ {
                        let reason = format!("seq {LAST_SEQ}: {NO_ROOM}");
                        return Err(corrupt(&path, offset as u64, reason));
                    }
                    if !in_order {
                        let reason = format!("seq {} out of order", entry.seq);
                        return Err(corrupt(&path, offset as u64, reason));
                    }
                    if !in_segment {
                        let reason = format!(
                            "seq {} outside its segment's range (from {first_seq} to the next segment's {})",
                            entry.seq,
                            next_first.map_or("none".to_string(), |next| next.to_string()),
                        );
                        return Err(corrupt(&path, offset as u64, reason));
                    }
                    summary.last = Some(entry.position());
                    summary.entries += 1;
                    let placement = Placement {
                        offset: offset as u32,
                        len: (next - offset) as u32,
                    };
                    each(first_seq, placement, entry)?;
                    offset = next;
                }
                Slot::End => {
                    if let Some(junk) = data[offset..].iter().position(|b| *b != 0) {
                        return Err(corrupt(
                            &path,
                            (offset + junk) as u64,
                            "data after the end marker".into(),
                        ));
                    }
                    break;
                }
                Slot::Bad { reason, span_end } => {
                    let rest_is_zero = data
                        .get(span_end..)
                        .is_none_or(|rest| rest.iter().all(|b| *b == 0));
                    if !(is_last && rest_is_zero) {
                        return Err(corrupt(&path, offset as u64, reason));
                    }
                    if mode == Mode::Repair {
                        log::warn!(
                            "journal: torn tail in {} at offset {offset} ({reason}): cut; the records from there were never acknowledged",
                            path.display()
                        );
                        let end = span_end.min(data.len());
                        zero_range(&path, offset as u64, end - offset)?;
                    }
                    summary.torn_tail_at = Some((path.clone(), offset as u64));
                    break;
                }
            }
        }
        if is_last {
            summary.tail = Some((first_seq, offset as u64));
        }
    }
    Ok(summary)
}

/// A broker's start-up says how far recovery is, every `PROGRESS_EVERY`, so a big store
/// is visibly being read rather than hung.
struct Progress {
    log: bool,
    segments: usize,
    last: Instant,
}

const PROGRESS_EVERY: Duration = Duration::from_secs(2);

impl Progress {
    fn new(mode: Mode, segments: usize) -> Progress {
        let log = mode == Mode::Repair;
        if log && segments > 1 {
            log::info!("recovery: reading {segments} journal segments");
        }
        Progress {
            log,
            segments,
            last: Instant::now(),
        }
    }

    fn segment(&mut self, done: usize, records: u64) {
        if self.log && self.last.elapsed() >= PROGRESS_EVERY {
            log::info!(
                "recovery: {done} of {} segments read, {records} records so far",
                self.segments
            );
            self.last = Instant::now();
        }
    }
}

fn corrupt(path: &Path, offset: u64, reason: String) -> Error {
    Error::Corrupt {
        file: path.to_path_buf(),
        offset,
        reason,
    }
}

/// Zeros a copied segment after its last whole record: it was copied while the master
/// wrote it, so a chunk copied early may hold half a record, or zeros before records a
/// later chunk brought. Returns where the data ends.
pub fn cut_after_last_record(path: &Path) -> Result<u64> {
    let data = bytes::Bytes::from(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    let mut offset = segment::HEADER_LEN as usize;
    while let Slot::Entry(_, next) = segment::read_slot(&data, offset) {
        offset = next;
    }
    if data
        .get(offset..)
        .is_some_and(|rest| rest.iter().any(|b| *b != 0))
    {
        zero_range(path, offset as u64, data.len() - offset)?;
    }
    Ok(offset as u64)
}

fn zero_range(path: &Path, offset: u64, len: usize) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all_at(&vec![0u8; len], offset)
        .map_err(|e| Error::io(path, e))?;
    file.sync_data().map_err(|e| Error::io(path, e))
}

/// Opens the segment to append to: the last one, or a new first one at `next_seq`.
pub fn open_tail(dir: &Path, summary: &Summary, next_seq: Seq, segment_size: u64) -> Result<Tail> {
    match summary.tail {
        Some((first_seq, offset)) => {
            let path = segment::path_for(dir, first_seq);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            let capacity = file.metadata().map_err(|e| Error::io(&path, e))?.len();
            Ok(Tail {
                dir: dir.to_path_buf(),
                first_seq,
                file,
                offset,
                capacity,
            })
        }
        None => Ok(Tail {
            dir: dir.to_path_buf(),
            first_seq: next_seq,
            file: segment::create(dir, next_seq, segment_size, segment::Fill::Zeros)?,
            offset: segment::HEADER_LEN,
            capacity: segment_size,
        }),
    }
}

#[cfg(test)]
mod tests;
