//! The master's end of the replication link.
//!
//! Accepts one slave at a time. Nothing from the store is sent before the slave's Hello
//! has passed the protocol-version and credential checks and the core has agreed to the
//! attach (no other slave, histories compatible). Then: the catch-up records, read from
//! the journal on disk, and the live records the core ships, batched, with heart-beats
//! when idle. The slave is declared lost when the link closes, when it is silent for
//! `heartbeat_ms × heartbeat_misses`, or when a record goes unacknowledged for
//! `ack_timeout_ms`: no wait is unbounded.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, SinkExt, StreamExt};

use super::message::{
    CatchUp, MasterMessage, SlaveMessage, WireRecord, MAX_FRAME, PROTOCOL_VERSION,
};
use crate::codec;
use crate::config::Config;
use crate::core::mirror::Shipment;
use crate::core::replication::{Attached, Refusal};
use crate::core::Request;
use crate::journal::recovery::{self, Mode};
use crate::journal::Entry;
use crate::runtime::{self, TcpListener, TcpStream};

/// A Hello is small; anything bigger before authentication is refused unread.
const MAX_HELLO: usize = 64 * 1024;
/// Records per batch frame, and bytes: a batch stays far below `MAX_FRAME`.
const BATCH_RECORDS: usize = 1024;
const BATCH_BYTES: usize = 4 << 20;
/// Batches sent but not acknowledged before the sender waits for the slave.
const MAX_UNACKED_BATCHES: usize = 64;

static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub requests: mpsc::Sender<Request>,
    pub journal_dir: PathBuf,
}

/// Accepts slaves until the listener is dropped.
pub async fn serve(listener: TcpListener, context: Context) {
    let mut incoming = listener.incoming();
    while let Some(stream) = incoming.next().await {
        match stream {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                runtime::spawn(handle(stream, context.clone()));
            }
            Err(error) => log::warn!("replication: accept failed: {error}"),
        }
    }
}

async fn refuse(stream: &TcpStream, peer: &str, refusal: impl Into<Refusal>) {
    let Refusal { reason, retry } = refusal.into();
    log::warn!("replication: refused slave {peer}: {reason}");
    let mut writer = stream;
    let _ = runtime::timeout(
        Duration::from_secs(1),
        codec::write_frame(&mut writer, &MasterMessage::Refused { reason, retry }),
    )
    .await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Tells a probing broker that a master listens here; nothing from the store is sent.
async fn answer_probe(stream: &TcpStream, peer: &str) {
    log::info!("replication: {peer} probed: answered that a master listens here");
    let mut writer = stream;
    let _ = runtime::timeout(
        Duration::from_secs(1),
        codec::write_frame(&mut writer, &MasterMessage::Alive),
    )
    .await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

async fn handle(stream: TcpStream, mut context: Context) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let replication = &context.config.replication;
    let silence =
        Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses));
    let mut reader = &stream;
    let hello = runtime::timeout(
        silence.max(Duration::from_secs(5)),
        codec::read_frame::<_, SlaveMessage>(&mut reader, MAX_HELLO),
    )
    .await;
    let (protocol, user, password, position, advertised) = match hello {
        Some(Ok(Some(SlaveMessage::Hello {
            protocol,
            user,
            password,
            position,
            advertised,
        }))) => (protocol, user, password, position, advertised),
        Some(Ok(Some(SlaveMessage::Probe))) => return answer_probe(&stream, &peer).await,
        Some(Ok(Some(_))) => {
            return refuse(&stream, &peer, "expected Hello first".to_string()).await
        }
        Some(Err(error)) => return refuse(&stream, &peer, format!("bad Hello: {error}")).await,
        Some(Ok(None)) | None => {
            log::warn!("replication: {peer} connected but sent no Hello; closed");
            return;
        }
    };
    if protocol != PROTOCOL_VERSION {
        let reason = format!("protocol version mismatch: the slave speaks {protocol}, this master speaks {PROTOCOL_VERSION}");
        return refuse(&stream, &peer, reason).await;
    }
    if context.config.requires_login() && !context.config.authenticate(&user, &password) {
        return refuse(
            &stream,
            &peer,
            format!("authentication failed for user {user:?}"),
        )
        .await;
    }
    let link = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
    let (reply, answer) = oneshot::channel();
    if context
        .requests
        .send(Request::AttachSlave {
            link,
            position: position.clone(),
            advertised,
            reply,
        })
        .await
        .is_err()
    {
        return;
    }
    let attached = match answer.await {
        Ok(Ok(attached)) => attached,
        Ok(Err(refusal)) => return refuse(&stream, &peer, refusal).await,
        Err(_) => return,
    };
    let reason = match stream_records(&stream, link, &context, attached, position.last).await {
        // The master is stopping: the slave may take over, as after a crash.
        Ok(()) => "the master is stopping".to_string(),
        Err(LinkEnd::Refused(refusal)) => {
            let why = refusal.reason.clone();
            refuse(&stream, &peer, refusal).await;
            why
        }
        Err(LinkEnd::Failed(why)) => {
            // A live master dropping a live slave tells it so: the slave dials again
            // instead of promoting itself next to us. A write shutdown lets the
            // message arrive before the end of the stream.
            let mut writer = &stream;
            let dropped = MasterMessage::Dropped {
                reason: why.clone(),
            };
            let _ = runtime::timeout(
                Duration::from_millis(200),
                codec::write_frame(&mut writer, &dropped),
            )
            .await;
            why
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = context
        .requests
        .send(Request::SlaveLost { link, why: reason })
        .await;
}

/// How a link ended early.
enum LinkEnd {
    /// Before the Welcome: the slave is refused (finally, or to retry later).
    Refused(Refusal),
    /// After the Welcome: the slave is dropped.
    Failed(String),
}

impl From<String> for LinkEnd {
    fn from(why: String) -> LinkEnd {
        LinkEnd::Failed(why)
    }
}

/// Catches the slave up and streams live records until the link fails; returns why.
async fn stream_records(
    stream: &TcpStream,
    link: u64,
    context: &Context,
    attached: Attached,
    slave_last: Option<(u64, u64, u32)>,
) -> Result<(), LinkEnd> {
    let replication = &context.config.replication;
    let ack_timeout = Duration::from_millis(replication.ack_timeout_ms);
    let (from, replace) = match attached.catch_up {
        CatchUp::Append { from } => (from, false),
        CatchUp::Replace { from } => (from, true),
    };
    // For an append, the slave's last record must be the master's record at that seq:
    // a slave only ever journals records its master journaled, so one missing from the
    // master's retained journal means the histories differ.
    let check = if replace {
        None
    } else {
        slave_last.filter(|last| last.1 + 1 == from)
    };
    let mut disk = read_journal(
        context.journal_dir.clone(),
        from - u64::from(check.is_some()),
        attached.next_seq,
    );
    if let Some((_, seq, checksum)) = check {
        match disk.next().await {
            Some(Ok(record))
                if record.seq == seq && Entry::from(record.clone()).checksum() == checksum => {}
            // A read that failed may pass: the slave dials again.
            Some(Err(reason)) => {
                return Err(LinkEnd::Refused(Refusal {
                    reason,
                    retry: true,
                }))
            }
            _ => {
                let reason = super::catchup::diverged(&format!(
                    "the slave's record {seq} is not the master's record {seq}"
                ));
                return Err(LinkEnd::Refused(reason.into()));
            }
        }
    }
    let mut writer = stream;
    let welcome = MasterMessage::Welcome {
        store_id: attached.store_id.clone(),
        epochs: attached.epochs.clone(),
        catch_up: attached.catch_up.clone(),
        in_sync_at: attached.in_sync_at,
    };
    write(&mut writer, &welcome, ack_timeout)
        .await
        .map_err(LinkEnd::Failed)?;
    log::info!(
        "replication: slave {} attached ({:?}); in sync once it holds seq {}",
        stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        attached.catch_up,
        attached.in_sync_at
    );

    let failed = Arc::new(AtomicBool::new(false));
    // The highest seq written to the slave: an acknowledgement above it is a lie that
    // would release receipts for records the slave does not hold.
    let shipped = Arc::new(AtomicU64::new(from.saturating_sub(1)));
    let silence =
        Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses));
    let (acks_tx, mut acks) = mpsc::unbounded();
    let ack_reader = runtime::spawn(read_acks(
        stream.clone(),
        link,
        context.requests.clone(),
        acks_tx,
        silence,
        failed.clone(),
        shipped.clone(),
    ));
    let heartbeat = Duration::from_millis(replication.heartbeat_ms);
    let mut unacked: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut acked = 0;
    let mut live = attached.live.map(Ok);
    let mut disk = disk.map(|item| item.map(Shipment::Record));
    let mut catching_up = true;
    let result = loop {
        if failed.load(Ordering::SeqCst) {
            break Err("the slave's side of the link failed".to_string());
        }
        while let Ok(seq) = acks.try_recv() {
            acked = seq;
        }
        while unacked.front().is_some_and(|(seq, _)| *seq <= acked) {
            unacked.pop_front();
        }
        if let Some((seq, sent)) = unacked.front() {
            if sent.elapsed() > ack_timeout {
                break Err(format!(
                    "the slave did not acknowledge seq {seq} within {} ms",
                    ack_timeout.as_millis()
                ));
            }
        }
        if unacked.len() >= MAX_UNACKED_BATCHES {
            // Flow control: the slave is behind; wait for its acknowledgements, still
            // beating so the slave never takes the wait for a dead master.
            match runtime::timeout(heartbeat, acks.next()).await {
                Some(Some(seq)) => acked = seq,
                _ => write(&mut writer, &MasterMessage::HeartBeat, ack_timeout).await?,
            }
            continue;
        }
        let source: &mut (dyn futures::Stream<Item = Result<Shipment, String>> + Unpin + Send) =
            if catching_up { &mut disk } else { &mut live };
        let first = match runtime::timeout(heartbeat, source.next()).await {
            None => {
                write(&mut writer, &MasterMessage::HeartBeat, ack_timeout).await?;
                continue;
            }
            Some(None) if catching_up => {
                catching_up = false;
                continue;
            }
            Some(None) => break Ok(()),
            Some(Some(Err(why))) => break Err(why),
            Some(Some(Ok(Shipment::InSync))) => {
                write(&mut writer, &MasterMessage::InSync, ack_timeout).await?;
                continue;
            }
            Some(Some(Ok(Shipment::Record(record)))) => record,
        };
        let mut bytes = first.payload.len();
        let mut batch = vec![first];
        let mut then_in_sync = false;
        while batch.len() < BATCH_RECORDS && bytes < BATCH_BYTES {
            match source.next().now_or_never() {
                Some(Some(Ok(Shipment::Record(record)))) => {
                    bytes += record.payload.len();
                    batch.push(record);
                }
                Some(Some(Ok(Shipment::InSync))) => {
                    then_in_sync = true;
                    break;
                }
                Some(Some(Err(why))) => return Err(LinkEnd::Failed(why)),
                _ => break,
            }
        }
        if let Some(last) = batch.last() {
            unacked.push_back((last.seq, Instant::now()));
            shipped.store(last.seq, Ordering::SeqCst);
        }
        if let Err(why) = write(&mut writer, &MasterMessage::Records(batch), ack_timeout).await {
            break Err(why);
        }
        if then_in_sync {
            write(&mut writer, &MasterMessage::InSync, ack_timeout).await?;
        }
    };
    failed.store(true, Ordering::SeqCst);
    drop(ack_reader);
    result.map_err(LinkEnd::Failed)
}

/// Writes one message, bounded by `limit`: a slave that stops reading cannot stall us.
async fn write(
    writer: &mut &TcpStream,
    message: &MasterMessage,
    limit: Duration,
) -> Result<(), String> {
    match runtime::timeout(limit, codec::write_frame(writer, message)).await {
        Some(Ok(())) => Ok(()),
        Some(Err(error)) => Err(format!("the link closed: {error}")),
        None => Err(format!(
            "the slave took no data for {} ms",
            limit.as_millis()
        )),
    }
}

/// Reads the slave's acknowledgements and heart-beats; marks the link failed on silence.
async fn read_acks(
    stream: TcpStream,
    link: u64,
    mut requests: mpsc::Sender<Request>,
    progress: mpsc::UnboundedSender<u64>,
    silence: Duration,
    failed: Arc<AtomicBool>,
    shipped: Arc<AtomicU64>,
) {
    // Buffered: acknowledgements are a few bytes each, many per read.
    let mut reader = futures::io::BufReader::with_capacity(64 << 10, &stream);
    loop {
        let message = runtime::timeout(
            silence,
            codec::read_frame::<_, SlaveMessage>(&mut reader, MAX_FRAME),
        )
        .await;
        match message {
            Some(Ok(Some(SlaveMessage::Ack { seq }))) if seq > shipped.load(Ordering::SeqCst) => {
                log::warn!(
                    "replication: the slave acknowledged seq {seq}, beyond the last seq sent to it ({}); dropping it",
                    shipped.load(Ordering::SeqCst)
                );
                break;
            }
            Some(Ok(Some(SlaveMessage::Ack { seq }))) => {
                let _ = progress.unbounded_send(seq);
                if requests
                    .send(Request::SlaveAck { link, seq })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Some(Ok(Some(SlaveMessage::HeartBeat))) => {}
            Some(Ok(Some(SlaveMessage::Hello { .. } | SlaveMessage::Probe)))
            | Some(Err(_))
            | Some(Ok(None)) => break,
            None => {
                log::warn!(
                    "replication: the slave was silent for {} ms",
                    silence.as_millis()
                );
                break;
            }
        }
    }
    // The sender notices, tells the slave why, and closes the link.
    failed.store(true, Ordering::SeqCst);
}

/// Streams the journal's durable records with `from <= seq < until`, read off the
/// executor by a blocking task. A read that fails ends the stream with the error, so the
/// link fails rather than treat a partial catch-up as complete.
fn read_journal(dir: PathBuf, from: u64, until: u64) -> mpsc::Receiver<Result<WireRecord, String>> {
    let (mut sender, receiver) = mpsc::channel(BATCH_RECORDS);
    runtime::spawn_blocking(move || {
        let mut last = None;
        let result = recovery::read(&dir, Mode::ReadOnly, |_, entry| {
            if entry.seq >= until {
                return Err(crate::Error::ShuttingDown);
            }
            last = Some(entry.seq);
            if entry.seq >= from {
                let record = WireRecord {
                    epoch: entry.epoch,
                    seq: entry.seq,
                    payload: entry.payload,
                };
                futures::executor::block_on(sender.send(Ok(record)))
                    .map_err(|_| crate::Error::ShuttingDown)?;
            }
            Ok(())
        });
        match result {
            Ok(_) | Err(crate::Error::ShuttingDown) => {}
            // Everything below `until` was delivered: a half-written record past it, in
            // the segment still being written, is not our business.
            Err(_) if last.is_some_and(|seq| seq + 1 >= until) => {}
            Err(error) => {
                let why = format!("reading the journal for catch-up failed: {error}");
                log::error!("replication: {why}");
                let _ = futures::executor::block_on(sender.send(Err(why)));
            }
        }
    });
    receiver
}
