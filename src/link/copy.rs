//! Copying the master's store to a slave file by file: the initial sync of an empty or
//! stale slave, over `replication.sync_streams` concurrent streams, resumable.
//!
//! A slave told `CopyStore` opens copy streams to the master's replication listener. Each
//! says `CopyHello` (version and credentials, as a Hello) and gets a `Manifest`: the
//! store's id, epochs and segment files with their lengths. The files are cut into
//! `CHUNK`s, which the streams take from one queue and `Fetch`, saying the CRC-32 of the
//! bytes the slave holds there already, if any. The master reads each chunk off the
//! executor and answers `Same` (the slave has it), `Zeros` (preallocated space), the
//! `Chunk` with its CRC-32, or `Missing` (the segment was deleted meanwhile).
//!
//! The copy lands in `sync/` beside the journal, so a slave killed halfway keeps what it
//! copied, and the next copy sends only what differs. A round ends with the files of one
//! manifest: a segment deleted during the round (`Missing`) starts a new round against a
//! new manifest, so the copy is always one set of segments the master held at once. The
//! master keeps serving meanwhile and holds nothing up; what it writes after the manifest
//! reaches the slave afterwards, as an ordinary catch-up from the copy's last record.

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::codec;
use crate::config::{Config, Endpoint};
use crate::journal::{segment, EpochStart, StoreMeta, JOURNAL_DIR};
use crate::repl::message::{MasterMessage, SegmentFile, SlaveMessage, MAX_FRAME, PROTOCOL_VERSION};
use crate::runtime::{self, TcpStream};

/// Bytes one `Fetch` asks for at most.
pub const CHUNK: u32 = 1 << 20;
/// Manifests a copy tries before giving up on a store that keeps changing under it.
const MAX_ROUNDS: usize = 8;
/// How often the copy logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// The file in `sync/` that marks a finished copy, with the store's identity.
pub const INSTALL: &str = "INSTALL";
/// The slave's folder for a copy under way, beside `journal/`.
pub const SYNC_DIR: &str = "sync";

// ---- the master's side ----------------------------------------------------------------

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
pub async fn serve(
    stream: TcpStream,
    data_dir: PathBuf,
    silence: Duration,
    peer: String,
    copies: Copies,
) {
    let listing = data_dir.clone();
    let manifest = match runtime::spawn_blocking(move || manifest(&listing)).await {
        Ok(manifest) => manifest,
        Err(why) => {
            log::error!("replication: cannot list the store for {peer}: {why}");
            return;
        }
    };
    let files = manifest_size(&manifest);
    let mut writer = &stream;
    if codec::write_frame(&mut writer, &manifest).await.is_err() {
        return;
    }
    log::info!(
        "replication: copy stream from {peer}: {} MiB in the store",
        files >> 20
    );
    // Streams from one slave count together (the peer's address without its port).
    let slave = peer
        .rsplit_once(':')
        .map_or(peer.as_str(), |(host, _)| host)
        .to_string();
    copies.update(&slave, |(_, total)| *total = files);
    let _served = Served {
        copies: &copies,
        peer: &slave,
    };
    let journal = data_dir.join(JOURNAL_DIR);
    let patience = silence.max(Duration::from_secs(30));
    let mut requests = codec::frames::<_, SlaveMessage>(stream.clone(), MAX_FRAME).boxed();
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
        let dir = journal.clone();
        let answer =
            runtime::spawn_blocking(move || read_chunk(&dir.join(&name), name, offset, len, have))
                .await;
        let answer = match answer {
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

// ---- the slave's side -----------------------------------------------------------------

/// What a finished copy holds.
#[derive(Debug, Clone)]
pub struct Copied {
    pub store_id: String,
    pub epochs: Vec<EpochStart>,
    /// Bytes the master sent, and bytes the slave held already (resumed).
    pub sent: u64,
    pub held: u64,
    pub total: u64,
}

/// One chunk to copy.
#[derive(Debug, Clone)]
struct Job {
    name: String,
    offset: u64,
    len: u32,
    /// The local file was made in this round: its bytes are zeros, not worth a CRC.
    fresh: bool,
}

/// Counts shared by the streams, and the progress line.
struct Progress {
    total: u64,
    /// `replication.sync_max_rate`, bytes a second.
    max_rate: Option<u64>,
    sent: AtomicU64,
    held: AtomicU64,
    /// Preallocated space: zeros on both sides, nothing sent.
    zeros: AtomicU64,
    done: AtomicU64,
    started: Instant,
    logged: Mutex<Instant>,
}

impl Progress {
    fn new(total: u64, max_rate: Option<u64>) -> Progress {
        Progress {
            total,
            max_rate,
            sent: AtomicU64::new(0),
            held: AtomicU64::new(0),
            zeros: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started: Instant::now(),
            logged: Mutex::new(Instant::now()),
        }
    }

    fn add(&self, counter: &AtomicU64, bytes: u64) {
        counter.fetch_add(bytes, Ordering::Relaxed);
        self.done.fetch_add(bytes, Ordering::Relaxed);
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.elapsed() >= PROGRESS_EVERY {
            *logged = Instant::now();
            log::info!("replication: copying the master's store: {}", self.line());
        }
    }

    /// How long a stream waits before its next fetch to keep the copy under its rate.
    fn pause(&self) -> Duration {
        let Some(rate) = self.max_rate.filter(|r| *r > 0) else {
            return Duration::ZERO;
        };
        let sent = self.sent.load(Ordering::Relaxed);
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        due.saturating_sub(self.started.elapsed())
    }

    /// "X of Y MiB (Z MiB held already), R MB/s, ETA S s".
    fn line(&self) -> String {
        let done = self.done.load(Ordering::Relaxed);
        let sent = self.sent.load(Ordering::Relaxed);
        let held = self.held.load(Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / seconds;
        let eta = (self.total.saturating_sub(done)) as f64 / rate.max(1.0);
        format!(
            "{} of {} MiB ({} MiB sent, {} MiB held already), {:.0} MB/s, ETA {:.0} s",
            done >> 20,
            self.total >> 20,
            sent >> 20,
            held >> 20,
            rate / 1e6,
            eta
        )
    }
}

/// An open copy stream and the manifest it was given.
struct CopyStream {
    stream: TcpStream,
    frames: std::pin::Pin<Box<dyn futures::Stream<Item = crate::Result<MasterMessage>> + Send>>,
    patience: Duration,
}

/// Opens a copy stream to `master`; its manifest too.
async fn open(config: &Config, master: &Endpoint) -> Result<(CopyStream, MasterMessage), String> {
    let replication = &config.replication;
    let silence =
        Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses));
    let patience = silence.max(Duration::from_secs(30));
    let stream = match runtime::timeout(patience, runtime::connect(&master.socket_addr())).await {
        Some(Ok(stream)) => stream,
        Some(Err(error)) => return Err(format!("connecting to {master}: {error}")),
        None => return Err(format!("connecting to {master}: timed out")),
    };
    let _ = stream.set_nodelay(true);
    let hello = SlaveMessage::CopyHello {
        protocol: PROTOCOL_VERSION,
        user: replication.user.clone().unwrap_or_default(),
        password: replication.password.clone().unwrap_or_default(),
    };
    let mut writer = &stream;
    codec::write_frame(&mut writer, &hello)
        .await
        .map_err(|e| e.to_string())?;
    let reader = futures::io::BufReader::with_capacity(1 << 20, stream.clone());
    let mut copy = CopyStream {
        frames: codec::frames::<_, MasterMessage>(reader, MAX_FRAME).boxed(),
        stream,
        patience,
    };
    match copy.read().await? {
        manifest @ MasterMessage::Manifest { .. } => Ok((copy, manifest)),
        other => Err(format!("{master} answered the copy with {other:?}")),
    }
}

impl CopyStream {
    async fn read(&mut self) -> Result<MasterMessage, String> {
        match runtime::timeout(self.patience, self.frames.next()).await {
            Some(Some(Ok(message))) => Ok(message),
            Some(Some(Err(error))) => Err(error.to_string()),
            Some(None) => Err("the master closed the copy stream".into()),
            None => Err(format!(
                "the master sent nothing for {} ms",
                self.patience.as_millis()
            )),
        }
    }

    async fn ask(&mut self, fetch: &SlaveMessage) -> Result<MasterMessage, String> {
        let mut writer = &self.stream;
        match runtime::timeout(self.patience, codec::write_frame(&mut writer, fetch)).await {
            Some(Ok(())) => self.read().await,
            Some(Err(error)) => Err(error.to_string()),
            None => Err("the master took no data".into()),
        }
    }
}

/// How a stream's work ended.
enum Ended {
    Done,
    /// A segment of the manifest is gone: start a new round.
    Missing(String),
}

/// Copies the master's store into `data_dir/sync/` and marks it ready to install.
pub async fn copy(config: Arc<Config>, master: Endpoint) -> Result<Copied, String> {
    let dir = config.data_dir().join(SYNC_DIR);
    let streams = config.replication.sync_streams.max(1);
    for round in 1..=MAX_ROUNDS {
        let (first, manifest) = open(&config, &master).await?;
        let MasterMessage::Manifest {
            store_id,
            epochs,
            segments,
        } = manifest
        else {
            unreachable!("open returns a manifest");
        };
        let total: u64 = segments.iter().map(|s| s.len).sum();
        let preparing = (dir.clone(), segments.clone());
        let jobs = runtime::spawn_blocking(move || prepare(&preparing.0, &preparing.1))
            .await
            .map_err(|e| e.to_string())?;
        log::info!(
            "replication: copying the master's store (round {round}): {} segments, {} MiB, over {streams} streams",
            segments.len(),
            total >> 20
        );
        let max_rate = config.replication.sync_max_rate.map(|r| r.bytes() as u64);
        let progress = Arc::new(Progress::new(total, max_rate));
        let queue = Arc::new(Mutex::new(jobs));
        let mut workers = vec![work(first, queue.clone(), dir.clone(), progress.clone())];
        for _ in 1..streams {
            let (stream, manifest) = open(&config, &master).await?;
            if !matches!(&manifest, MasterMessage::Manifest { store_id: id, .. } if *id == store_id)
            {
                return Err("the master's store changed identity during the copy".into());
            }
            workers.push(work(stream, queue.clone(), dir.clone(), progress.clone()));
        }
        let ended = futures::future::join_all(workers).await;
        let mut missing = None;
        for end in ended {
            match end? {
                Ended::Done => {}
                Ended::Missing(name) => missing = Some(name),
            }
        }
        if let Some(name) = missing {
            log::info!("replication: segment {name} was deleted on the master during the copy: listing the store again");
            continue;
        }
        log::info!(
            "replication: copied the master's store: {}",
            progress.line()
        );
        let meta = StoreMeta {
            store_id: store_id.clone(),
            epochs: epochs.clone(),
            alone_since: None,
        };
        let last = segments.last().map(|s| s.name.clone());
        let finishing = dir.clone();
        runtime::spawn_blocking(move || finish(&finishing, last.as_deref(), &meta))
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Copied {
            store_id,
            epochs,
            sent: progress.sent.load(Ordering::Relaxed),
            held: progress.held.load(Ordering::Relaxed),
            total,
        });
    }
    Err(format!(
        "the master's segments changed under {MAX_ROUNDS} copies in a row"
    ))
}

/// Makes `sync/` hold exactly the manifest's files at their lengths, and lists the chunks.
fn prepare(dir: &Path, segments: &[SegmentFile]) -> crate::Result<VecDeque<Job>> {
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

/// One stream's share of the copy: chunks from the queue until it is empty.
async fn work(
    mut stream: CopyStream,
    queue: Arc<Mutex<VecDeque<Job>>>,
    dir: PathBuf,
    progress: Arc<Progress>,
) -> Result<Ended, String> {
    loop {
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let Some(job) = job else {
            return Ok(Ended::Done);
        };
        let pause = progress.pause();
        if !pause.is_zero() {
            runtime::sleep(pause).await;
        }
        let path = dir.join(&job.name);
        let have = if job.fresh {
            None
        } else {
            let (path, offset, len) = (path.clone(), job.offset, job.len);
            Some(
                runtime::spawn_blocking(move || local_checksum(&path, offset, len))
                    .await
                    .map_err(|e| e.to_string())?,
            )
        };
        let fetch = SlaveMessage::Fetch {
            name: job.name.clone(),
            offset: job.offset,
            len: job.len,
            have,
        };
        let len = u64::from(job.len);
        match stream.ask(&fetch).await? {
            MasterMessage::Chunk {
                offset,
                data,
                checksum,
            } if offset == job.offset && data.len() as u64 <= len => {
                if crc32fast::hash(&data) != checksum {
                    return Err(format!(
                        "chunk {} at {offset} failed its checksum",
                        job.name
                    ));
                }
                let wrote = data.len() as u64;
                runtime::spawn_blocking(move || write_at(&path, offset, &data))
                    .await
                    .map_err(|e| e.to_string())?;
                progress.add(&progress.sent, wrote);
            }
            MasterMessage::Zeros { offset } if offset == job.offset => {
                if !job.fresh {
                    let zeros = vec![0u8; job.len as usize];
                    runtime::spawn_blocking(move || write_at(&path, offset, &zeros))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                progress.add(&progress.zeros, len);
            }
            MasterMessage::Same { offset } if offset == job.offset => {
                progress.add(&progress.held, len)
            }
            MasterMessage::Missing { name } => return Ok(Ended::Missing(name)),
            other => return Err(format!("unexpected answer to a fetch: {other:?}")),
        }
    }
}

/// The CRC-32 of the bytes this slave holds at `offset`.
fn local_checksum(path: &Path, offset: u64, len: u32) -> crate::Result<u32> {
    let file = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
    let mut data = vec![0u8; len as usize];
    file.read_exact_at(&mut data, offset)
        .map_err(|e| crate::Error::io(path, e))?;
    Ok(crc32fast::hash(&data))
}

/// Writes a chunk and syncs it. Unsynced, the copy's dirty pages pile up by the hundred
/// megabytes, and on a disk the master shares (ext4's ordered mode) its next fsync waits
/// for their write-back: the master's receipts stall while the copy runs.
fn write_at(path: &Path, offset: u64, data: &[u8]) -> crate::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| crate::Error::io(path, e))?;
    file.write_all_at(data, offset)
        .and_then(|()| file.sync_data())
        .map_err(|e| crate::Error::io(path, e))
}

/// Ends a copy: the last segment cut after its last whole record (it was being written
/// while it was copied), every file synced, then the install marker with the store's
/// identity.
fn finish(dir: &Path, last: Option<&str>, meta: &StoreMeta) -> crate::Result<()> {
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
