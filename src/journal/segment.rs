//! The segment file format: bytes only, no policy.
//!
//! ```text
//! segment  = header entry* zero-fill
//! header   = "MMQJRNL1" (8 bytes) | first_seq u64 LE                        16 bytes
//! entry    = len u32 LE | crc u32 LE | epoch u64 LE | seq u64 LE | payload   24 + len bytes
//!            crc = CRC-32 (IEEE) of epoch | seq | payload; len > 0
//! ```
//! Files are preallocated, with zeros written (fdatasync into written blocks is about
//! twice as fast as into a growing file) or with `fallocate` (see [`Fill`]); either way
//! they read as zeros, so an all-zero entry header marks the end of the data.
//! A segment is named after its first seq, `{first_seq:020}.seg`, and created under a
//! temporary name and renamed, so a crash never leaves a half-written header.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"MMQJRNL1";
pub const HEADER_LEN: u64 = 16;
pub const ENTRY_HEADER_LEN: usize = 24;
const SUFFIX: &str = ".seg";

use super::record::{Epoch, Record, Seq};

impl Record {
    /// Appends the stored form to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.checksum().to_le_bytes());
        out.extend_from_slice(&self.epoch.0.to_le_bytes());
        out.extend_from_slice(&self.seq.0.to_le_bytes());
        out.extend_from_slice(&self.payload);
    }
}

pub(super) fn checksum(epoch: u64, seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&epoch.to_le_bytes());
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// What sits at one offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Slot {
    /// A valid record and the offset after it.
    Entry(Record, usize),
    /// Zeros: no more data in this segment.
    End,
    /// Bytes that are not a valid entry; `span_end` is where they claim to end.
    Bad { reason: String, span_end: usize },
}

/// Reads the entry at `offset` of a whole segment's bytes; the record's payload shares
/// `data`'s buffer (no copy).
pub fn read_slot(data: &bytes::Bytes, offset: usize) -> Slot {
    let Some(header) = data.get(offset..offset + ENTRY_HEADER_LEN) else {
        let rest = data.get(offset..).unwrap_or(&[]);
        return if rest.iter().all(|b| *b == 0) {
            Slot::End
        } else {
            Slot::Bad {
                reason: "partial entry header".into(),
                span_end: data.len(),
            }
        };
    };
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let long = |at: usize| u64::from(word(at)) | (u64::from(word(at + 4)) << 32);
    let (len, crc, epoch, seq) = (word(0) as usize, word(4), long(8), long(16));
    if header.iter().all(|b| *b == 0) {
        return Slot::End;
    }
    let start = offset + ENTRY_HEADER_LEN;
    let Some(end) = start.checked_add(len).filter(|end| *end <= data.len()) else {
        return Slot::Bad {
            reason: format!("entry length {len} runs past the end of the segment"),
            span_end: start,
        };
    };
    let payload = &data[start..end];
    if len == 0 || checksum(epoch, seq, payload) != crc {
        return Slot::Bad {
            reason: "checksum mismatch".into(),
            span_end: start + len,
        };
    }
    Slot::Entry(
        Record {
            epoch: Epoch(epoch),
            seq: Seq(seq),
            payload: data.slice(start..end),
        },
        end,
    )
}

/// The file name of the segment whose first record is `first_seq`.
pub fn path_for(dir: &Path, first_seq: Seq) -> PathBuf {
    dir.join(format!("{:020}{SUFFIX}", first_seq.0))
}

/// The first seq a segment file name stands for; `None` for any other name (so a name a
/// peer sent cannot point outside the journal folder).
pub fn first_seq_of(name: &str) -> Option<Seq> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().map(Seq)
}

/// Segment files in `dir`, oldest first, with their first seqs.
pub fn list(dir: &Path) -> Result<Vec<(Seq, PathBuf)>> {
    let mut segments = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = item.map_err(|e| Error::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(first) = first_seq_of(name) {
            segments.push((first, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Checks a segment's header; the file name and the header must agree.
pub fn check_header(data: &[u8], first_seq: Seq, path: &Path) -> Result<()> {
    let corrupt = |reason: &str| Error::Corrupt {
        file: path.to_path_buf(),
        offset: 0,
        reason: reason.to_string(),
    };
    if data.len() < HEADER_LEN as usize || &data[..8] != MAGIC {
        return Err(corrupt("not a mirrormq journal segment (bad magic)"));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&data[8..16]);
    if Seq(u64::from_le_bytes(seq)) != first_seq {
        return Err(corrupt("header's first seq does not match the file name"));
    }
    Ok(())
}

/// How a new segment's space is claimed. Both read as zeros and both hold the whole
/// segment's space, so an append never finds the disk full halfway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Written full of zeros: an fdatasync of appends then writes the data alone. For a
    /// writer whose every fsync is on the path of a receipt.
    Zeros,
    /// Reserved with `fallocate` and not written: the disk is spared writing the segment
    /// twice (32 MiB of zeros every 32 MiB of records), but an fdatasync also records
    /// which reserved blocks now hold data. For a writer that fsyncs every 50 ms (a slave
    /// acknowledging on receipt); where `fallocate` is not supported, zeros are written.
    Reserved,
}

/// Creates a segment of `size` bytes claimed by `fill`, durably, and opens it for writing.
pub fn create(dir: &Path, first_seq: Seq, size: u64, fill: Fill) -> Result<File> {
    let temporary = dir.join(format!("{:020}.tmp", first_seq.0));
    let file = preallocated(&temporary, size, fill)?;
    install(file, &temporary, dir, first_seq)
}

/// Makes `path` a file of `size` bytes claimed by `fill`, and syncs it: a segment without
/// a header.
pub fn preallocated(path: &Path, size: u64, fill: Fill) -> Result<File> {
    let io = |e| Error::io(path, e);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(path)
        .map_err(io)?;
    let filled = (|| {
        let reserved = fill == Fill::Reserved && reserve(&file, size)?;
        if !reserved {
            write_zeros(&mut file, size)?;
        }
        file.sync_all()
    })();
    if let Err(error) = filled {
        // A disk that filled up gets back what this file took.
        let _ = std::fs::remove_file(path);
        return Err(io(error));
    }
    Ok(file)
}

/// Reserves `size` bytes for `file` without writing them; false where the file system
/// cannot (then nothing was reserved).
fn reserve(file: &File, size: u64) -> std::io::Result<bool> {
    use rustix::fs::{fallocate, FallocateFlags};
    match fallocate(file, FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Writes `size` zeros at the start of `file`.
fn write_zeros(file: &mut File, size: u64) -> std::io::Result<()> {
    // Static zeros: a buffer allocated per segment would be memory the allocator keeps
    // committed on every thread that made a segment.
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut written = 0;
    while written < size {
        let n = ZEROS.len().min((size - written) as usize);
        file.write_all(&ZEROS[..n])?;
        written += n as u64;
    }
    Ok(())
}

/// Makes the preallocated `file` at `temporary` the segment starting at `first_seq`: its
/// header, durably, then the rename to its name, durably.
pub fn install(file: File, temporary: &Path, dir: &Path, first_seq: Seq) -> Result<File> {
    let io = |e| Error::io(temporary, e);
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&first_seq.0.to_le_bytes());
    file.write_all_at(&header, 0).map_err(io)?;
    file.sync_data().map_err(io)?;
    let path = path_for(dir, first_seq);
    std::fs::rename(temporary, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, payload: &[u8]) -> Record {
        Record {
            epoch: Epoch(1),
            seq: Seq(seq),
            payload: bytes::Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn both_fills_make_a_file_of_zeros_that_holds_its_space() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        for fill in [Fill::Zeros, Fill::Reserved] {
            let path = dir.path().join(format!("{fill:?}"));
            let size = 256 << 10;
            let file = preallocated(&path, size, fill).unwrap();
            let metadata = file.metadata().unwrap();
            assert_eq!(metadata.len(), size, "{fill:?}");
            // Held, not sparse: an append cannot find the disk full halfway.
            assert!(metadata.blocks() * 512 >= size, "{fill:?}: {metadata:?}");
            assert!(std::fs::read(&path).unwrap().iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn entries_round_trip_and_zeros_end_the_data() {
        let mut data = vec![0u8; 16];
        entry(5, b"hello").encode_into(&mut data);
        entry(6, b"world!").encode_into(&mut data);
        data.extend_from_slice(&[0u8; 64]);
        let data = bytes::Bytes::from(data);
        let Slot::Entry(first, next) = read_slot(&data, 16) else {
            panic!("first entry")
        };
        assert_eq!(first, entry(5, b"hello"));
        let Slot::Entry(second, next) = read_slot(&data, next) else {
            panic!("second entry")
        };
        assert_eq!(second.seq, Seq(6));
        assert_eq!(read_slot(&data, next), Slot::End);
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let mut clean = Vec::new();
        entry(9, b"payload bytes").encode_into(&mut clean);
        for at in 0..clean.len() {
            let mut data = clean.clone();
            data[at] ^= 0x40;
            assert!(
                matches!(read_slot(&data.into(), 0), Slot::Bad { .. }),
                "flip at {at}"
            );
        }
    }

    #[test]
    fn truncated_entries_are_bad_not_panics() {
        let mut clean = Vec::new();
        entry(9, b"payload").encode_into(&mut clean);
        for cut in 1..clean.len() {
            assert!(
                matches!(
                    read_slot(&clean[..cut].to_vec().into(), 0),
                    Slot::Bad { .. }
                ),
                "cut at {cut}"
            );
        }
    }
}
