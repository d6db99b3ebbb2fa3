//! The master's end of the replication link: one task per slave, which owns its socket.
//! The listener runs on every broker with `replication.bind`: while the broker is not a
//! master it answers probes and Hellos with `Following` (see `Presence`).
//!
//! Nothing from the store is sent before the slave's Hello has passed the
//! protocol-version and credential checks and the core has agreed to the attach (a
//! master, fewer than `max_slaves` attached, histories compatible; a store with nothing
//! to append to is told to copy the master's first, see `copy`). Then: the catch-up
//! records, read from the journal
//! on disk, and the live records the core ships, batched, with heart-beats when idle,
//! while the slave's acknowledgements are read on the same task. The slave is declared
//! lost when the link closes, when it is silent for `heartbeat_ms × heartbeat_misses`,
//! or when a record goes unacknowledged for `ack_timeout_ms`: no wait is unbounded.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, SinkExt, Stream, StreamExt};

use super::{catchup, copy, LinkEvent, Presence, SharedPresence, Shipment};
use crate::codec;
use crate::config::Config;
use crate::core::Attached;
use crate::journal::{Position, Record, Seq};
use crate::repl::group::{LinkId, Refusal};
use crate::repl::message::{CatchUp, MasterMessage, SlaveMessage, MAX_FRAME, PROTOCOL_VERSION};
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
    pub events: mpsc::Sender<LinkEvent>,
    pub journal_dir: PathBuf,
    pub presence: SharedPresence,
    /// The store copies this master serves, for the status line.
    pub copies: copy::Copies,
}

impl Context {
    fn presence(&self) -> Presence {
        // A panic elsewhere cannot leave the presence half-written: it is one store.
        self.presence
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
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

/// Writes a last message, best effort, waiting at most `within`: the link ends anyway.
async fn say_last(stream: &TcpStream, message: &MasterMessage, within: Duration) {
    let mut writer = stream;
    let _ = runtime::timeout(within, codec::write_frame(&mut writer, message)).await;
}

async fn refuse(stream: &TcpStream, peer: &str, refusal: impl Into<Refusal>) {
    let Refusal { reason, retry } = refusal.into();
    log::warn!("replication: refused slave {peer}: {reason}");
    let refused = MasterMessage::Refused { reason, retry };
    say_last(stream, &refused, Duration::from_secs(1)).await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// What this broker answers a probe, or a Hello while it is not a master.
fn answer(presence: Presence) -> MasterMessage {
    match presence {
        Presence::Master { epoch } => MasterMessage::Alive { epoch },
        Presence::NotMaster {
            epoch,
            candidate,
            master,
        } => MasterMessage::Following {
            epoch,
            candidate,
            master,
        },
    }
}

/// The protocol-version and credential checks every slave stream passes first.
fn admit(context: &Context, protocol: u32, user: &str, password: &str) -> Result<(), Refusal> {
    if protocol != PROTOCOL_VERSION {
        return Err(format!("protocol version mismatch: the slave speaks {protocol}, this master speaks {PROTOCOL_VERSION}").into());
    }
    if context.config.requires_login() && !context.config.authenticate(user, password) {
        return Err(format!("authentication failed for user {user:?}").into());
    }
    Ok(())
}

/// Answers a slave's Hello while this broker is not a master: where the master is.
async fn say_not_master(stream: &TcpStream, peer: &str, presence: Presence) {
    log::info!(
        "replication: {peer} said Hello, but this broker is not a master: answered {presence:?}"
    );
    say_last(stream, &answer(presence), Duration::from_secs(1)).await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Tells a probing broker what listens here; nothing from the store is sent.
async fn answer_probe(stream: &TcpStream, peer: &str, presence: Presence) {
    log::info!("replication: {peer} probed: answered {presence:?}");
    say_last(stream, &answer(presence), Duration::from_secs(1)).await;
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
    let (protocol, user, password, standing, advertised) = match hello {
        Some(Ok(Some(SlaveMessage::Hello {
            protocol,
            user,
            password,
            standing,
            advertised,
        }))) => (protocol, user, password, standing, advertised),
        Some(Ok(Some(SlaveMessage::Probe))) => {
            return answer_probe(&stream, &peer, context.presence()).await
        }
        Some(Ok(Some(SlaveMessage::CopyHello {
            protocol,
            user,
            password,
        }))) => {
            if let Err(refusal) = admit(&context, protocol, &user, &password) {
                return refuse(&stream, &peer, refusal).await;
            }
            if let presence @ Presence::NotMaster { .. } = context.presence() {
                return say_not_master(&stream, &peer, presence).await;
            }
            let data_dir = context.config.data_dir().to_path_buf();
            let copies = context.copies.clone();
            let Some(_slot) = copies.admit() else {
                let reason = format!(
                    "{} copy streams are open already; try again later",
                    copy::MAX_STREAMS
                );
                let refusal = Refusal {
                    reason,
                    retry: true,
                };
                return refuse(&stream, &peer, refusal).await;
            };
            return copy::serve(stream, data_dir, silence, peer, copies).await;
        }
        Some(Ok(Some(_))) => {
            return refuse(&stream, &peer, "expected Hello first".to_string()).await
        }
        Some(Err(error)) => return refuse(&stream, &peer, format!("bad Hello: {error}")).await,
        Some(Ok(None)) | None => {
            log::warn!("replication: {peer} connected but sent no Hello; closed");
            return;
        }
    };
    if let Err(refusal) = admit(&context, protocol, &user, &password) {
        return refuse(&stream, &peer, refusal).await;
    }
    if let presence @ Presence::NotMaster { .. } = context.presence() {
        return say_not_master(&stream, &peer, presence).await;
    }
    let link = LinkId(NEXT_LINK.fetch_add(1, Ordering::Relaxed));
    let (reply, answer) = oneshot::channel();
    let (live, live_rx) = mpsc::unbounded();
    let attach = LinkEvent::Attach {
        link,
        standing: standing.clone(),
        advertised,
        live,
        reply,
    };
    if context.events.send(attach).await.is_err() {
        return;
    }
    let attached = match answer.await {
        Ok(Ok(attached)) => attached,
        Ok(Err(refusal)) => return refuse(&stream, &peer, refusal).await,
        Err(_) => return,
    };
    if let CatchUp::Replace { .. } = attached.catch_up {
        // Nothing to append to: the slave copies the segment files over copy streams,
        // resumably, then says Hello again with the copy as its store.
        log::info!("replication: slave {peer} holds nothing this master can append to: it copies the store (Replace)");
        say_last(&stream, &MasterMessage::CopyStore, Duration::from_secs(1)).await;
        let _ = stream.shutdown(std::net::Shutdown::Both);
        let why = "sent to copy the store".to_string();
        let _ = context.events.send(LinkEvent::Detached { link, why }).await;
        return;
    }
    let reason = match serve_slave(&stream, link, &context, attached, live_rx, standing.last).await
    {
        // The master is stopping: the slave may take over, as after a crash.
        Ok(()) => {
            say_last(
                &stream,
                &MasterMessage::Stopping,
                Duration::from_millis(200),
            )
            .await;
            "the master is stopping".to_string()
        }
        Err(LinkEnd::Refused(refusal)) => {
            let why = refusal.reason.clone();
            refuse(&stream, &peer, refusal).await;
            why
        }
        Err(LinkEnd::Failed(why)) => {
            // A live master dropping a live slave tells it so: the slave dials again
            // instead of promoting itself next to us. A write shutdown lets the
            // message arrive before the end of the stream.
            let dropped = MasterMessage::Dropped {
                reason: why.clone(),
            };
            say_last(&stream, &dropped, Duration::from_millis(200)).await;
            why
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = context
        .events
        .send(LinkEvent::Detached { link, why: reason })
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

/// What woke the link's task.
enum Wake {
    Slave(Option<crate::Result<SlaveMessage>>),
    Shipment(Option<Result<Shipment, String>>),
}

/// Catches the slave up and streams live records until the link fails; returns why.
async fn serve_slave(
    stream: &TcpStream,
    link: LinkId,
    context: &Context,
    attached: Attached,
    live: mpsc::UnboundedReceiver<Shipment>,
    slave_last: Option<Position>,
) -> Result<(), LinkEnd> {
    let replication = &context.config.replication;
    let ack_timeout = Duration::from_millis(replication.ack_timeout_ms);
    let silence =
        Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses));
    let heartbeat = Duration::from_millis(replication.heartbeat_ms);
    let mut events = context.events.clone();
    let from = attached.catch_up.from();
    // For an append, the slave's last record must be the master's record at that seq:
    // a slave only ever journals records its master journaled, so one missing from the
    // master's retained journal means the histories differ.
    let check = match attached.catch_up {
        CatchUp::Replace { .. } => None,
        CatchUp::Append { .. } => slave_last.filter(|last| last.seq.next() == from),
    };
    let start = if check.is_some() { from.prev() } else { from };
    let mut disk = catchup::read_journal(context.journal_dir.clone(), start, attached.next_seq);
    if let Some(last) = check {
        match disk.next().await {
            Some(Ok(record)) if record.position() == last => {}
            // A read that failed may pass: the slave dials again.
            Some(Err(reason)) => {
                return Err(LinkEnd::Refused(Refusal {
                    reason,
                    retry: true,
                }))
            }
            _ => {
                let reason = crate::repl::catchup::diverged(&format!(
                    "the slave's record {} is not the master's record {}",
                    last.seq, last.seq
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
    write(&mut writer, &welcome, ack_timeout).await?;
    log::info!(
        "replication: slave {} attached ({:?}); in sync once it holds seq {}",
        stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        attached.catch_up,
        attached.in_sync_at
    );
    // Buffered: acknowledgements are a few bytes each, many per read.
    let reader = futures::io::BufReader::with_capacity(64 << 10, stream.clone());
    let mut acks = codec::frames::<_, SlaveMessage>(reader, MAX_FRAME).boxed();
    let mut disk = disk.map(|item| item.map(Shipment::Record));
    // The shell hands over a turn's records at once; the batches are cut here.
    let mut live = live
        .flat_map(|shipment| {
            futures::stream::iter(match shipment {
                Shipment::Records(records) => records.into_iter().map(Shipment::Record).collect(),
                other => vec![other],
            })
        })
        .map(Ok);
    let mut catching_up = true;
    // The highest seq written to the slave: an acknowledgement above it is a lie that
    // would release receipts for records the slave does not hold.
    let mut shipped = from.prev();
    // Each batch written and not yet acknowledged: its last seq, when, and its bytes.
    let mut unacked: VecDeque<(Seq, Instant, usize)> = VecDeque::new();
    let mut last_heard = Instant::now();
    let mut last_written = Instant::now();
    let mut last_lag = Instant::now();
    loop {
        // One clock reading a turn: this loop turns for every batch and acknowledgement.
        let now = Instant::now();
        if now.duration_since(last_lag) >= heartbeat {
            // How far the slave is behind, for the status line.
            last_lag = now;
            let lag = LinkEvent::Lag {
                link,
                bytes: unacked.iter().map(|(_, _, bytes)| *bytes as u64).sum(),
                ms: unacked.front().map_or(0, |(_, sent, _)| {
                    now.duration_since(*sent).as_millis() as u64
                }),
            };
            if events.send(lag).await.is_err() {
                return Err("the core stopped".to_string().into());
            }
        }
        if now.duration_since(last_heard) > silence {
            return Err(format!("the slave was silent for {} ms", silence.as_millis()).into());
        }
        if let Some((seq, sent, _)) = unacked.front() {
            if now.duration_since(*sent) > ack_timeout {
                return Err(format!(
                    "the slave did not acknowledge seq {seq} within {} ms",
                    ack_timeout.as_millis()
                )
                .into());
            }
        }
        if now.duration_since(last_written) >= heartbeat {
            write(&mut writer, &MasterMessage::HeartBeat, ack_timeout).await?;
            last_written = Instant::now();
        }
        // Flow control: with a full window, only the slave's acknowledgements are read.
        let window_open = unacked.len() < MAX_UNACKED_BATCHES;
        let source: &mut (dyn Stream<Item = Result<Shipment, String>> + Unpin + Send) =
            if catching_up { &mut disk } else { &mut live };
        let woken = {
            let ack = acks.next().fuse();
            let shipment = async {
                if window_open {
                    source.next().await
                } else {
                    futures::future::pending().await
                }
            }
            .fuse();
            futures::pin_mut!(ack, shipment);
            let next = async {
                futures::select! {
                    message = ack => Wake::Slave(message),
                    shipment = shipment => Wake::Shipment(shipment),
                }
            };
            // Wakes at least every heart-beat interval to beat and check the deadlines.
            runtime::timeout(heartbeat.saturating_sub(last_written.elapsed()), next).await
        };
        match woken {
            None => {}
            Some(Wake::Slave(message)) => {
                last_heard = Instant::now();
                match message {
                    Some(Ok(SlaveMessage::Ack { seq })) if seq > shipped => {
                        return Err(format!(
                            "the slave acknowledged seq {seq}, beyond the last seq sent to it ({shipped})"
                        )
                        .into());
                    }
                    Some(Ok(SlaveMessage::Ack { seq })) => {
                        while unacked.front().is_some_and(|(s, _, _)| *s <= seq) {
                            unacked.pop_front();
                        }
                        let acked = LinkEvent::Acked { link, seq };
                        if events.send(acked).await.is_err() {
                            return Err("the core stopped".to_string().into());
                        }
                    }
                    Some(Ok(SlaveMessage::HeartBeat)) => {}
                    Some(Ok(other)) => {
                        return Err(format!("unexpected message from the slave: {other:?}").into())
                    }
                    Some(Err(error)) => return Err(format!("the link failed: {error}").into()),
                    None => return Err("the slave closed the link".to_string().into()),
                }
            }
            Some(Wake::Shipment(None)) if catching_up => catching_up = false,
            Some(Wake::Shipment(None)) => return Ok(()),
            Some(Wake::Shipment(Some(Err(why)))) => return Err(why.into()),
            Some(Wake::Shipment(Some(Ok(Shipment::Record(first))))) => {
                let (batch, then) = gather(first, source)?;
                if let Some(last) = batch.last() {
                    let bytes = batch.iter().map(|r| r.payload.len()).sum();
                    unacked.push_back((last.seq, Instant::now(), bytes));
                    shipped = last.seq;
                }
                write(&mut writer, &MasterMessage::Records(batch), ack_timeout).await?;
                if let Some(notice) = then {
                    write(&mut writer, &notice, ack_timeout).await?;
                }
                last_written = Instant::now();
            }
            Some(Wake::Shipment(Some(Ok(notice)))) => {
                write(&mut writer, &notice_message(notice), ack_timeout).await?;
                last_written = Instant::now();
            }
        }
    }
}

/// The message for a shipment that is not a record.
fn notice_message(notice: Shipment) -> MasterMessage {
    match notice {
        Shipment::InSync => MasterMessage::InSync,
        Shipment::Succession(succession) => MasterMessage::Succession(succession),
        Shipment::Record(record) => MasterMessage::Records(vec![record]),
        Shipment::Records(records) => MasterMessage::Records(records),
    }
}

/// The batch that starts with `first`: what else `source` has ready, within the batch
/// limits, and the notice (in sync, succession) that came right after it, if one did.
fn gather(
    first: Record,
    source: &mut (dyn Stream<Item = Result<Shipment, String>> + Unpin + Send),
) -> Result<(Vec<Record>, Option<MasterMessage>), LinkEnd> {
    let mut bytes = first.payload.len();
    let mut batch = vec![first];
    while batch.len() < BATCH_RECORDS && bytes < BATCH_BYTES {
        match source.next().now_or_never() {
            Some(Some(Ok(Shipment::Record(record)))) => {
                bytes += record.payload.len();
                batch.push(record);
            }
            Some(Some(Ok(notice))) => return Ok((batch, Some(notice_message(notice)))),
            Some(Some(Err(why))) => return Err(LinkEnd::Failed(why)),
            _ => break,
        }
    }
    Ok((batch, None))
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
