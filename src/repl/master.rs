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
use crate::core::replication::Attached;
use crate::core::Request;
use crate::journal::recovery::{self, Mode};
use crate::runtime::{self, TcpListener, TcpStream};

/// A Hello is small; anything bigger before authentication is refused unread.
const MAX_HELLO: usize = 64 * 1024;
/// Records per batch frame.
const BATCH_RECORDS: usize = 1024;

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

async fn refuse(stream: &TcpStream, peer: &str, reason: String) {
    log::warn!("replication: refused slave {peer}: {reason}");
    let mut writer = stream;
    let _ = runtime::timeout(
        Duration::from_secs(1),
        codec::write_frame(&mut writer, &MasterMessage::Refused { reason }),
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
    let (protocol, user, password, position) = match hello {
        Some(Ok(Some(SlaveMessage::Hello {
            protocol,
            user,
            password,
            position,
        }))) => (protocol, user, password, position),
        Some(Ok(Some(_))) => return refuse(&stream, &peer, "expected Hello first".into()).await,
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
            format!("authentication failed for user '{user}'"),
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
            reply,
        })
        .await
        .is_err()
    {
        return;
    }
    let attached = match answer.await {
        Ok(Ok(attached)) => attached,
        Ok(Err(reason)) => return refuse(&stream, &peer, reason).await,
        Err(_) => return,
    };
    let reason = match stream_records(&stream, link, &context, attached, position.last).await {
        Ok(()) => "the core stopped".to_string(),
        Err(why) => why,
    };
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = context
        .requests
        .send(Request::SlaveLost { link, why: reason })
        .await;
}

/// Catches the slave up and streams live records until the link fails; returns why.
async fn stream_records(
    stream: &TcpStream,
    link: u64,
    context: &Context,
    attached: Attached,
    slave_last: Option<(u64, u64, u32)>,
) -> Result<(), String> {
    let replication = &context.config.replication;
    let (from, replace) = match attached.catch_up {
        CatchUp::Append { from } => (from, false),
        CatchUp::Replace { from } => (from, true),
    };
    // For an append, the slave's last record must be ours too (same checksum).
    let check = if replace {
        None
    } else {
        slave_last.filter(|l| l.1 + 1 == from)
    };
    let mut disk = read_journal(
        context.journal_dir.clone(),
        from - u64::from(check.is_some()),
        attached.next_seq,
    );
    if let Some((_, seq, checksum)) = check {
        match disk.next().await {
            Some(record)
                if record.seq == seq
                    && crate::journal::Entry::from(record.clone()).checksum() == checksum => {}
            Some(record) if record.seq == seq => {
                return Err(super::catchup::diverged(&format!(
                    "record {seq} differs between the slave and the master"
                )));
            }
            // The record was not on disk (never durable): nothing to compare.
            _ => disk = read_journal(context.journal_dir.clone(), from, attached.next_seq),
        }
    }
    let mut writer = stream;
    let welcome = MasterMessage::Welcome {
        store_id: attached.store_id.clone(),
        epochs: attached.epochs.clone(),
        catch_up: attached.catch_up.clone(),
        in_sync_at: attached.next_seq - 1,
    };
    codec::write_frame(&mut writer, &welcome)
        .await
        .map_err(|e| e.to_string())?;
    log::info!(
        "replication: slave {} attached ({:?}); in sync once it holds seq {}",
        stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        attached.catch_up,
        attached.next_seq - 1
    );

    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let silence =
        Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses));
    let acks = runtime::spawn(read_acks(
        stream.clone(),
        link,
        context.requests.clone(),
        acked.clone(),
        silence,
        failed.clone(),
    ));
    let heartbeat = Duration::from_millis(replication.heartbeat_ms);
    let ack_timeout = Duration::from_millis(replication.ack_timeout_ms);
    let mut unacked: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut live = attached.live;
    let mut catching_up = true;
    let result = loop {
        if failed.load(Ordering::SeqCst) {
            break Err("the slave's side of the link failed".to_string());
        }
        let acked_now = acked.load(Ordering::SeqCst);
        while unacked.front().is_some_and(|(seq, _)| *seq <= acked_now) {
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
        let source: &mut (dyn futures::Stream<Item = WireRecord> + Unpin + Send) =
            if catching_up { &mut disk } else { &mut live };
        let first = match runtime::timeout(heartbeat, source.next()).await {
            None => {
                if codec::write_frame(&mut writer, &MasterMessage::HeartBeat)
                    .await
                    .is_err()
                {
                    break Err("the link closed".into());
                }
                continue;
            }
            Some(None) if catching_up => {
                catching_up = false;
                continue;
            }
            Some(None) => break Ok(()),
            Some(Some(record)) => record,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_RECORDS {
            match source.next().now_or_never() {
                Some(Some(record)) => batch.push(record),
                _ => break,
            }
        }
        if let Some(last) = batch.last() {
            unacked.push_back((last.seq, Instant::now()));
        }
        if let Err(error) = codec::write_frame(&mut writer, &MasterMessage::Records(batch)).await {
            break Err(format!("the link closed: {error}"));
        }
    };
    failed.store(true, Ordering::SeqCst);
    drop(acks);
    result
}

/// Reads the slave's acknowledgements and heart-beats; marks the link failed on silence.
async fn read_acks(
    stream: TcpStream,
    link: u64,
    mut requests: mpsc::Sender<Request>,
    acked: Arc<AtomicU64>,
    silence: Duration,
    failed: Arc<AtomicBool>,
) {
    let mut reader = &stream;
    loop {
        let message = runtime::timeout(
            silence,
            codec::read_frame::<_, SlaveMessage>(&mut reader, MAX_FRAME),
        )
        .await;
        match message {
            Some(Ok(Some(SlaveMessage::Ack { seq }))) => {
                acked.fetch_max(seq, Ordering::SeqCst);
                if requests
                    .send(Request::SlaveAck { link, seq })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Some(Ok(Some(SlaveMessage::HeartBeat))) => {}
            Some(Ok(Some(SlaveMessage::Hello { .. }))) | Some(Err(_)) | Some(Ok(None)) => break,
            None => {
                log::warn!(
                    "replication: the slave was silent for {} ms",
                    silence.as_millis()
                );
                break;
            }
        }
    }
    failed.store(true, Ordering::SeqCst);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Streams the journal's durable records with `from <= seq < until`, read off the
/// executor by a blocking task.
fn read_journal(dir: PathBuf, from: u64, until: u64) -> mpsc::Receiver<WireRecord> {
    let (mut sender, receiver) = mpsc::channel(BATCH_RECORDS);
    runtime::spawn_blocking(move || {
        let result = recovery::read(&dir, Mode::ReadOnly, |_, entry| {
            if entry.seq >= until {
                return Err(crate::Error::ShuttingDown);
            }
            if entry.seq >= from {
                let record = WireRecord {
                    epoch: entry.epoch,
                    seq: entry.seq,
                    payload: entry.payload,
                };
                futures::executor::block_on(sender.send(record))
                    .map_err(|_| crate::Error::ShuttingDown)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            if !matches!(error, crate::Error::ShuttingDown) {
                log::error!("replication: reading the journal for catch-up failed: {error}");
            }
        }
    });
    receiver
}
