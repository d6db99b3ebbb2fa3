//! An attached slave's stream: the catch-up records read from the journal, then the live
//! records the core ships, batched and pipelined under a window, with heart-beats when
//! idle, while the slave's acknowledgements are read on the same task. The slave is lost
//! when the link closes, when it is silent for `heartbeat_ms × heartbeat_misses`, or when
//! a batch goes unacknowledged for `ack_timeout_ms`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, Stream, StreamExt};

use super::{Context, Peer};
use crate::codec;
use crate::core::Attached;
use crate::journal::{Position, Record, Seq};
use crate::link::{catchup, LinkEvent, Shipment};
use crate::repl::group::{LinkId, Refusal};
use crate::repl::message::{CatchUp, MasterMessage, SlaveMessage, MAX_FRAME};
use crate::runtime;
use crate::transport::{Reader, Writer};

/// Records per batch frame, and bytes: a batch stays far below `MAX_FRAME`.
const BATCH_RECORDS: usize = 1024;
const BATCH_BYTES: usize = 4 << 20;
/// Batches sent but not acknowledged before the sender waits for the slave.
const MAX_UNACKED_BATCHES: usize = 64;

/// How a link ended early.
pub(super) enum LinkEnd {
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
/// It reads all of `reader`, and writes to `peer` until the end, when the caller says the
/// last word.
pub(super) async fn serve_slave(
    reader: Reader,
    peer: &mut Peer,
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
    let Peer {
        writer, address, ..
    } = peer;
    let welcome = MasterMessage::Welcome {
        store_id: attached.store_id.clone(),
        epochs: attached.epochs.clone(),
        catch_up: attached.catch_up.clone(),
        in_sync_at: attached.in_sync_at,
    };
    write(writer, &welcome, ack_timeout).await?;
    log::info!(
        "replication: slave {address} attached ({}); in sync once it holds seq {}",
        attached.catch_up,
        attached.in_sync_at
    );
    // Buffered: acknowledgements are a few bytes each, many per read.
    let reader = futures::io::BufReader::with_capacity(64 << 10, reader);
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
            write(writer, &MasterMessage::HeartBeat, ack_timeout).await?;
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
                write(writer, &MasterMessage::Records(batch), ack_timeout).await?;
                if let Some(notice) = then {
                    write(writer, &notice, ack_timeout).await?;
                }
                last_written = Instant::now();
            }
            Some(Wake::Shipment(Some(Ok(notice)))) => {
                write(writer, &notice_message(notice), ack_timeout).await?;
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
    writer: &mut Writer,
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
