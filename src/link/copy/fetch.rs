//! The slave's side of a copy: rounds against a manifest, over several streams that
//! take chunks from one queue.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::io::AsyncWriteExt;
use futures::StreamExt;

use super::files::{finish, local_checksum, prepare};
use super::progress::Progress;
use super::target::{Target, PIECE};
use super::SYNC_DIR;
use crate::codec;
use crate::config::{Config, Endpoint};
use crate::journal::{EpochStart, StoreMeta};
use crate::link::wire::Wire;
use crate::repl::message::{MasterMessage, SlaveMessage, MAX_FRAME, PROTOCOL_VERSION};
use crate::runtime;
use crate::transport::{Transport, Writer};

/// Manifests a copy tries before giving up on a store that keeps changing under it.
const MAX_ROUNDS: usize = 8;

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
pub(super) struct Job {
    pub(super) name: String,
    pub(super) offset: u64,
    pub(super) len: u32,
    /// The local file was made in this round: its bytes are zeros, not worth a CRC.
    pub(super) fresh: bool,
}

/// An open copy stream and the manifest it was given.
struct CopyStream {
    writer: Writer,
    frames: std::pin::Pin<Box<dyn futures::Stream<Item = crate::Result<MasterMessage>> + Send>>,
    patience: Duration,
}

/// Opens a copy stream to `master`; its manifest too.
async fn open(
    config: &Config,
    wire: &Wire,
    master: &Endpoint,
) -> Result<(CopyStream, MasterMessage), String> {
    let replication = &config.replication;
    let silence =
        Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses));
    let patience = silence.max(Duration::from_secs(30));
    let transport = wire
        .dial(master, patience)
        .await
        .map_err(|e| format!("connecting to {e}"))?;
    let hello = SlaveMessage::CopyHello {
        protocol: PROTOCOL_VERSION,
        user: replication.user.clone().unwrap_or_default(),
        password: replication.password.clone().unwrap_or_default().0,
        name: config.broker.name.clone(),
    };
    let Transport {
        reader, mut writer, ..
    } = transport;
    codec::write_frame(&mut writer, &hello)
        .await
        .map_err(|e| e.to_string())?;
    let reader = futures::io::BufReader::with_capacity(1 << 20, reader);
    let mut copy = CopyStream {
        frames: codec::frames::<_, MasterMessage>(reader, MAX_FRAME).boxed(),
        writer,
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

    /// Says we are done (a TLS session's close_notify, then the end of our direction),
    /// so the master sees a clean end rather than a broken stream.
    async fn close(&mut self) {
        let _ = runtime::timeout(self.patience, self.writer.close()).await;
    }

    async fn ask(&mut self, fetch: &SlaveMessage) -> Result<MasterMessage, String> {
        match runtime::timeout(self.patience, codec::write_frame(&mut self.writer, fetch)).await {
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
pub async fn copy(config: Arc<Config>, wire: Wire, master: Endpoint) -> Result<Copied, String> {
    let dir = config.data_dir().join(SYNC_DIR);
    let streams = config.replication.sync_streams.max(1);
    for round in 1..=MAX_ROUNDS {
        let (first, manifest) = open(&config, &wire, &master).await?;
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
        let worker = |stream| {
            let working = work(stream, queue.clone(), dir.clone(), progress.clone());
            runtime::in_background("copy-fetch", working)
        };
        let mut workers = vec![worker(first)];
        for _ in 1..streams {
            let (stream, manifest) = open(&config, &wire, &master).await?;
            if !matches!(&manifest, MasterMessage::Manifest { store_id: id, .. } if *id == store_id)
            {
                return Err("the master's store changed identity during the copy".into());
            }
            workers.push(worker(stream));
        }
        let ended = futures::future::join_all(workers).await;
        let mut missing = None;
        for end in ended {
            match end.ok_or("a copy stream's thread panicked")?? {
                Ended::Done => {}
                Ended::Missing(name) => missing = Some(name),
            }
        }
        if let Some(name) = missing {
            log::info!("replication: segment {name} was deleted on the master during the copy: listing the store again");
            continue;
        }
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
        // Logged once every file is synced: the rate it gives is the rate to a durable
        // copy, not to the disk's cache.
        log::info!(
            "replication: copied the master's store: {}",
            progress.line()
        );
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

/// One stream's share of the copy: chunks from the queue until it is empty. It writes the
/// files where it runs, so it runs in the background (`runtime::in_background`): the copy
/// takes only the CPU time that the master's clients, on this machine or the master's,
/// leave over.
async fn work(
    mut stream: CopyStream,
    queue: Arc<Mutex<VecDeque<Job>>>,
    dir: PathBuf,
    progress: Arc<Progress>,
) -> Result<Ended, String> {
    loop {
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let Some(job) = job else {
            stream.close().await;
            return Ok(Ended::Done);
        };
        let path = dir.join(&job.name);
        let have = if job.fresh {
            None
        } else {
            Some(local_checksum(&path, job.offset, job.len).map_err(|e| e.to_string())?)
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
                land(&path, offset, &data, &progress, &progress.sent).await?;
            }
            MasterMessage::Zeros { offset } if offset == job.offset => {
                if job.fresh {
                    progress.add(&progress.zeros, len);
                } else {
                    let zeros = vec![0u8; job.len as usize];
                    land(&path, offset, &zeros, &progress, &progress.zeros).await?;
                }
            }
            MasterMessage::Same { offset } if offset == job.offset => {
                progress.add(&progress.held, len)
            }
            MasterMessage::Missing { name } => return Ok(Ended::Missing(name)),
            other => return Err(format!("unexpected answer to a fetch: {other:?}")),
        }
    }
}

/// Writes a chunk into its file a `PIECE` at a time, each after the pause the rate cap
/// asks for, and counts each in `counter` as it lands: the copy's writes reach the disk in
/// an even stream of small pieces, which the master's fsyncs pass quickly.
async fn land(
    path: &Path,
    offset: u64,
    data: &[u8],
    progress: &Progress,
    counter: &AtomicU64,
) -> Result<(), String> {
    let mut target = Target::open(path).map_err(|e| e.to_string())?;
    let mut at = offset;
    for piece in data.chunks(PIECE) {
        let pause = progress.pause();
        if !pause.is_zero() {
            runtime::sleep(pause).await;
        }
        target.write(at, piece).map_err(|e| e.to_string())?;
        progress.add(counter, piece.len() as u64);
        at += piece.len() as u64;
    }
    Ok(())
}
