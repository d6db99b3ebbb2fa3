//! The master's side of a copy: the manifest, each chunk read on the copy's own
//! low-priority thread, and the copies being served, for the status line.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use super::CHUNK;
use crate::codec;
use crate::journal::{segment, StoreMeta, JOURNAL_DIR};
use crate::repl::message::{MasterMessage, SegmentFile, SlaveMessage, MAX_FRAME};
use crate::runtime;
use crate::transport::Transport;

/// Copy streams a master serves at once, from all slaves together: a peer that opens more
/// is refused (and may try again), so copies cannot take every thread and file handle.
pub const MAX_STREAMS: usize = 64;

/// The copies a master is serving, by slave address: bytes sent and the store's size, for
/// the status line; and how many streams are open.
#[derive(Debug, Clone, Default)]
pub struct Copies(
    Arc<Mutex<std::collections::BTreeMap<String, (u64, u64)>>>,
    Arc<AtomicU64>,
);

impl Copies {
    /// Takes a stream's place, if one is free; it is given back when the result drops.
    pub fn admit(&self) -> Option<StreamSlot> {
        let open = self.1.fetch_add(1, Ordering::SeqCst);
        let slot = StreamSlot(self.1.clone());
        (open < MAX_STREAMS as u64).then_some(slot)
    }

    fn update(&self, peer: &str, change: impl FnOnce(&mut (u64, u64))) {
        let mut copies = self.0.lock().unwrap_or_else(|p| p.into_inner());
        change(copies.entry(peer.to_string()).or_default());
    }

    fn forget(&self, peer: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
    }

    /// Each copy served: the slave's address, bytes sent, the store's size.
    pub fn progress(&self) -> Vec<(String, u64, u64)> {
        let copies = self.0.lock().unwrap_or_else(|p| p.into_inner());
        copies
            .iter()
            .map(|(peer, (sent, total))| (peer.clone(), *sent, *total))
            .collect()
    }

    /// "[ADDR sent X of Y MiB] ...", or `None` while nothing is copied.
    pub fn status(&self) -> Option<String> {
        let copies = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (!copies.is_empty()).then(|| {
            copies
                .iter()
                .map(|(peer, (sent, total))| {
                    format!("[{peer} sent {} of {} MiB]", sent >> 20, total >> 20)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
    }
}

/// One open copy stream's place among `MAX_STREAMS`.
pub struct StreamSlot(Arc<AtomicU64>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Forgets a stream's copy when its task ends, however it ends.
struct Served<'a> {
    copies: &'a Copies,
    peer: &'a str,
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        self.copies.forget(self.peer);
    }
}

/// Serves one copy stream whose `CopyHello` passed the checks: the manifest, then every
/// `Fetch` until the slave closes the stream or falls silent for longer than `silence`.
/// It reads the store where it runs, so it runs in the background (`runtime::in_background`)
/// and never on an executor thread: a copy then takes only the CPU time the master's
/// clients leave over, and their receipts keep their pace while a slave syncs.
pub async fn serve(
    transport: Transport,
    data_dir: PathBuf,
    silence: Duration,
    name: String,
    copies: Copies,
) {
    let Transport {
        reader,
        mut writer,
        kill,
        peer,
        ..
    } = transport;
    // However the stream ends, the connection ends with it.
    let _cut = Cut(kill);
    let manifest = match manifest(&data_dir) {
        Ok(manifest) => manifest,
        Err(why) => {
            log::error!("replication: cannot list the store for {peer}: {why}");
            return;
        }
    };
    let files = manifest_size(&manifest);
    if codec::write_frame(&mut writer, &manifest).await.is_err() {
        return;
    }
    log::info!(
        "replication: copy stream from {peer}: {} MiB in the store",
        files >> 20
    );
    // Streams from one slave count together: its name and host (without the port).
    let host = peer
        .rsplit_once(':')
        .map_or(peer.as_str(), |(host, _)| host);
    let slave = format!("{name} at {host}");
    copies.update(&slave, |(_, total)| *total = files);
    let _served = Served {
        copies: &copies,
        peer: &slave,
    };
    let journal = data_dir.join(JOURNAL_DIR);
    let patience = silence.max(Duration::from_secs(30));
    let mut requests = codec::frames::<_, SlaveMessage>(reader, MAX_FRAME).boxed();
    loop {
        let fetch = match runtime::timeout(patience, requests.next()).await {
            Some(Some(Ok(SlaveMessage::Fetch {
                name,
                offset,
                len,
                have,
            }))) => (name, offset, len, have),
            // The slave is done (or gone): nothing to say.
            Some(None) | None => return,
            Some(Some(Ok(other))) => {
                log::warn!("replication: copy stream from {peer}: unexpected {other:?}; closed");
                return;
            }
            Some(Some(Err(error))) => {
                log::warn!("replication: copy stream from {peer}: {error}; closed");
                return;
            }
        };
        let (name, offset, len, have) = fetch;
        if segment::first_seq_of(&name).is_none() || len > CHUNK {
            log::warn!(
                "replication: copy stream from {peer} asked for {len} bytes of {name:?}; closed"
            );
            return;
        }
        let answer = match read_chunk(&journal.join(&name), name, offset, len, have) {
            Ok(answer) => answer,
            Err(why) => {
                log::error!("replication: copy stream from {peer}: {why}; closed");
                return;
            }
        };
        let sent = match &answer {
            MasterMessage::Chunk { data, .. } => data.len() as u64,
            _ => 0,
        };
        if runtime::timeout(patience, codec::write_frame(&mut writer, &answer))
            .await
            .is_none_or(|written| written.is_err())
        {
            return;
        }
        copies.update(&slave, |(done, _)| *done += sent);
    }
}

/// Cuts a connection when dropped.
struct Cut(Arc<dyn Fn() + Send + Sync>);

impl Drop for Cut {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// The store's identity and its segment files as they are now.
fn manifest(data_dir: &Path) -> crate::Result<MasterMessage> {
    let meta = StoreMeta::load(data_dir)?;
    let mut segments = Vec::new();
    for (_, path) in segment::list(&data_dir.join(JOURNAL_DIR))? {
        // A segment deleted between the listing and here is simply not in the copy.
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        segments.push(SegmentFile {
            name,
            len: metadata.len(),
        });
    }
    Ok(MasterMessage::Manifest {
        store_id: meta.store_id,
        epochs: meta.epochs,
        segments,
    })
}

fn manifest_size(manifest: &MasterMessage) -> u64 {
    match manifest {
        MasterMessage::Manifest { segments, .. } => segments.iter().map(|s| s.len).sum(),
        _ => 0,
    }
}

/// The answer to one `Fetch`.
fn read_chunk(
    path: &Path,
    name: String,
    offset: u64,
    len: u32,
    have: Option<u32>,
) -> Result<MasterMessage, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(MasterMessage::Missing { name })
        }
        Err(e) => return Err(format!("opening {}: {e}", path.display())),
    };
    let mut data = vec![0u8; len as usize];
    let mut filled = 0;
    while filled < data.len() {
        match file.read_at(&mut data[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        }
    }
    data.truncate(filled);
    let checksum = crc32fast::hash(&data);
    Ok(if have == Some(checksum) {
        MasterMessage::Same { offset }
    } else if data.iter().all(|b| *b == 0) {
        MasterMessage::Zeros { offset }
    } else {
        MasterMessage::Chunk {
            offset,
            data: data.into(),
            checksum,
        }
    })
}
