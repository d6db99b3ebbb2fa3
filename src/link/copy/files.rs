//! The copy's files on the slave: `sync/` made to match a manifest, a chunk's CRC, and
//! the finished copy marked for install (`target.rs` writes the chunks).

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::fetch::Job;
use super::{CHUNK, INSTALL};
use crate::journal::{segment, StoreMeta};
use crate::repl::message::SegmentFile;

/// Makes `sync/` hold exactly the manifest's files at their lengths, and lists the chunks.
pub(super) fn prepare(dir: &Path, segments: &[SegmentFile]) -> crate::Result<VecDeque<Job>> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e| crate::Error::io(path, e)
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // An install marker of an earlier copy no longer describes what will be here.
    let _ = std::fs::remove_file(dir.join(INSTALL));
    for (_, path) in segment::list(dir)? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !segments.iter().any(|s| s.name == name) {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    let mut jobs = VecDeque::new();
    for file in segments {
        if segment::first_seq_of(&file.name).is_none() {
            return Err(crate::Error::Protocol(format!(
                "the master listed {:?}, which is not a segment file",
                file.name
            )));
        }
        let path = dir.join(&file.name);
        let fresh = !path.exists();
        let local = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        local.set_len(file.len).map_err(io(&path))?;
        let mut offset = 0;
        while offset < file.len {
            let len = (file.len - offset).min(u64::from(CHUNK)) as u32;
            jobs.push_back(Job {
                name: file.name.clone(),
                offset,
                len,
                fresh,
            });
            offset += u64::from(len);
        }
    }
    Ok(jobs)
}

/// The CRC-32 of the bytes this slave holds at `offset`.
pub(super) fn local_checksum(path: &Path, offset: u64, len: u32) -> crate::Result<u32> {
    let file = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
    let mut data = vec![0u8; len as usize];
    file.read_exact_at(&mut data, offset)
        .map_err(|e| crate::Error::io(path, e))?;
    Ok(crc32fast::hash(&data))
}

/// Ends a copy: the last segment cut after its last whole record (it was being written
/// while it was copied), every file synced, then the install marker with the store's
/// identity.
pub(super) fn finish(dir: &Path, last: Option<&str>, meta: &StoreMeta) -> crate::Result<()> {
    if let Some(last) = last {
        crate::journal::recovery::cut_after_last_record(&dir.join(last))?;
    }
    for (_, path) in segment::list(dir)? {
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| crate::Error::io(&path, e))?;
    }
    meta.save_as(&dir.join(INSTALL))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| crate::Error::io(dir, e))
}
