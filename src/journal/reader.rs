//! The journal reader thread: reads records back from their segments, in batches, for
//! messages whose bodies were paged out of memory (and for compaction).
//!
//! The core asks for records by [`Extent`] (segment, offset, length), each with a tag the
//! reader hands back untouched; the thread sorts a batch by place, reads neighbouring
//! records with one `pread` each run, checks every record's checksum and reports the
//! batch in one event. It never runs on an executor thread. A record that does not read
//! back whole comes back as an error naming the file and offset; a segment deleted since
//! the request (its records were compacted forward) comes back as `Gone`, which the
//! caller answers by asking again where the record is now.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender};

use super::record::{Record, Seq};
use super::segment::{self, Slot};

/// Where one record lies: its segment (by first seq), offset and stored length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Extent {
    pub segment: Seq,
    pub offset: u64,
    pub len: u32,
}

/// What reading one record gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Record(Record),
    /// The segment no longer exists: the record was moved by compaction.
    Gone,
    /// The bytes are not the record asked for: the file, offset and why.
    Bad(String),
}

/// Two requested records closer than this are read with one `pread`, gap included.
const MAX_GAP: u64 = 64 << 10;
/// The most one `pread` reads.
const MAX_RUN: u64 = 4 << 20;

/// What a batch of reads gave, in the order asked, each with the caller's tag.
pub type ReadBatch<T> = Vec<(T, Fetched)>;

/// The handle on the reader thread; dropping it ends the thread.
pub struct Reader<T: Send + 'static> {
    sender: Sender<Vec<(T, Extent)>>,
}

impl<T: Send + 'static> Reader<T> {
    /// Starts the thread over the segments in `dir`; `report` gets each batch's results,
    /// in the order they were asked for.
    pub fn start(dir: PathBuf, report: Box<dyn Fn(ReadBatch<T>) + Send>) -> Reader<T> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("journal-reader".into())
            .spawn(move || serve(&dir, &receiver, &*report))
            .expect("spawning the journal reader thread");
        Reader { sender }
    }

    /// Asks for a batch of records; never blocks.
    pub fn read(&self, batch: Vec<(T, Extent)>) {
        let _ = self.sender.send(batch);
    }
}

fn serve<T>(dir: &Path, receiver: &Receiver<Vec<(T, Extent)>>, report: &dyn Fn(ReadBatch<T>)) {
    while let Ok(batch) = receiver.recv() {
        // Files are opened afresh each batch: a segment may have been deleted and made
        // again under its name (a slave's store replaced by its master's).
        let mut files = Files::default();
        let extents: Vec<Extent> = batch.iter().map(|(_, extent)| *extent).collect();
        let mut fetched = read_batch(dir, &mut files, &extents);
        let results = batch
            .into_iter()
            .zip(fetched.iter_mut())
            .map(|((tag, _), result)| (tag, std::mem::replace(result, Fetched::Gone)))
            .collect();
        report(results);
    }
}

/// Reads `extents` at once on this thread (a browse of paged-out messages: a few, rarely;
/// never call it on an executor thread).
pub fn read_now(dir: &Path, extents: &[Extent]) -> Vec<Fetched> {
    read_batch(dir, &mut Files::default(), extents)
}

/// The segment files one batch has opened, by first seq.
#[derive(Default)]
struct Files {
    open: HashMap<Seq, File>,
}

impl Files {
    fn get(&mut self, dir: &Path, segment: Seq) -> std::io::Result<&File> {
        match self.open.entry(segment) {
            std::collections::hash_map::Entry::Occupied(open) => Ok(open.into_mut()),
            std::collections::hash_map::Entry::Vacant(vacant) => {
                Ok(vacant.insert(File::open(segment::path_for(dir, segment))?))
            }
        }
    }
}

/// Reads every extent, neighbours together; the results are in the order asked.
fn read_batch(dir: &Path, files: &mut Files, extents: &[Extent]) -> Vec<Fetched> {
    let mut order: Vec<usize> = (0..extents.len()).collect();
    order.sort_by_key(|&i| extents[i]);
    let mut results = vec![Fetched::Gone; extents.len()];
    let mut start = 0;
    while start < order.len() {
        let first = extents[order[start]];
        let mut end = start + 1;
        let mut run_end = first.offset + u64::from(first.len);
        while let Some(&next) = order.get(end) {
            let next = extents[next];
            let next_end = next.offset + u64::from(next.len);
            if next.segment != first.segment
                || next.offset > run_end + MAX_GAP
                || next_end - first.offset > MAX_RUN
            {
                break;
            }
            run_end = run_end.max(next_end);
            end += 1;
        }
        let run = read_run(dir, files, first.segment, first.offset, run_end);
        let mut previous: Option<(Extent, usize)> = None;
        for &index in &order[start..end] {
            results[index] = match (&run, previous) {
                (Err(fetched), _) => fetched.clone(),
                // Several messages of one record (a Carry, a Commit): checked once.
                (Ok(_), Some((extent, done))) if extent == extents[index] => results[done].clone(),
                (Ok(bytes), _) => record_in(dir, bytes, first.offset, extents[index]),
            };
            previous = Some((extents[index], index));
        }
        start = end;
    }
    results
}

/// The bytes of `segment` from `from` to `to`, or what to report for every record in it.
fn read_run(
    dir: &Path,
    files: &mut Files,
    segment: Seq,
    from: u64,
    to: u64,
) -> Result<bytes::Bytes, Fetched> {
    let path = segment::path_for(dir, segment);
    let file = match files.get(dir, segment) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Fetched::Gone),
        Err(e) => return Err(Fetched::Bad(format!("{}: {e}", path.display()))),
    };
    let mut buffer = vec![0u8; (to - from) as usize];
    let mut done = 0;
    while done < buffer.len() {
        match file.read_at(&mut buffer[done..], from + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Fetched::Bad(format!("{}: {e}", path.display()))),
        }
    }
    buffer.truncate(done);
    Ok(bytes::Bytes::from(buffer))
}

/// The record at `extent`, checked, out of a run read from `run_start`.
fn record_in(dir: &Path, run: &bytes::Bytes, run_start: u64, extent: Extent) -> Fetched {
    let at = (extent.offset - run_start) as usize;
    let bad = |reason: &str| {
        Fetched::Bad(format!(
            "{} at offset {}: {reason}",
            segment::path_for(dir, extent.segment).display(),
            extent.offset
        ))
    };
    let end = at + extent.len as usize;
    if end > run.len() {
        return bad("the segment ends before the record");
    }
    let bytes = run.slice(at..end);
    match segment::read_slot(&bytes, 0) {
        Slot::Entry(record, end) if end == bytes.len() => Fetched::Record(record),
        Slot::Entry(..) => bad("the record there has another length"),
        Slot::End => bad("zeros where a record should be"),
        Slot::Bad { reason, .. } => bad(&reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::Epoch;

    fn record(seq: u64, body: &str) -> Record {
        Record {
            epoch: Epoch(1),
            seq: Seq(seq),
            payload: bytes::Bytes::from(body.to_string()),
        }
    }

    /// Writes a segment holding `records`; returns their extents.
    fn segment_with(dir: &Path, first: Seq, records: &[Record]) -> Vec<Extent> {
        let mut data = Vec::new();
        data.extend_from_slice(segment::MAGIC);
        data.extend_from_slice(&first.0.to_le_bytes());
        let mut extents = Vec::new();
        for record in records {
            let offset = data.len() as u64;
            record.encode_into(&mut data);
            extents.push(Extent {
                segment: first,
                offset,
                len: record.stored_len() as u32,
            });
        }
        data.resize(data.len() + 4096, 0);
        std::fs::write(segment::path_for(dir, first), data).unwrap();
        extents
    }

    #[test]
    fn records_come_back_in_the_order_asked_whole_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<Record> = (1..=5)
            .map(|s| record(s, &"x".repeat(s as usize * 100)))
            .collect();
        let extents = segment_with(dir.path(), Seq(1), &records);
        let mut files = Files::default();
        let asked = [extents[3], extents[0], extents[4], extents[1]];
        let fetched = read_batch(dir.path(), &mut files, &asked);
        let expected: Vec<Fetched> = [3, 0, 4, 1]
            .iter()
            .map(|&i| Fetched::Record(records[i].clone()))
            .collect();
        assert_eq!(fetched, expected);
    }

    #[test]
    fn a_damaged_record_is_reported_with_its_file_and_offset_and_a_deleted_segment_as_gone() {
        let dir = tempfile::tempdir().unwrap();
        let records = [record(1, "first"), record(2, "second")];
        let extents = segment_with(dir.path(), Seq(1), &records);
        let path = segment::path_for(dir.path(), Seq(1));
        let mut data = std::fs::read(&path).unwrap();
        data[extents[1].offset as usize + 26] ^= 0xff;
        std::fs::write(&path, data).unwrap();
        let missing = Extent {
            segment: Seq(99),
            offset: 16,
            len: 30,
        };
        let fetched = read_batch(
            dir.path(),
            &mut Files::default(),
            &[extents[0], extents[1], missing],
        );
        assert_eq!(fetched[0], Fetched::Record(records[0].clone()));
        let Fetched::Bad(why) = &fetched[1] else {
            panic!("the damaged record read back as {:?}", fetched[1]);
        };
        assert!(
            why.contains(&format!("offset {}", extents[1].offset)),
            "{why}"
        );
        assert!(why.contains("00000000000000000001.seg"), "{why}");
        assert_eq!(fetched[2], Fetched::Gone);
    }
}
