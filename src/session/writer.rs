//! A session's writer task: everything queued for one client goes out here, batched.
//!
//! It drains the session's outbound queue, formats MESSAGE frames, writes each batch
//! with one call, sends heart-beats when idle, and tells the core which `auto`
//! deliveries reached the socket (so they count as consumed only once written). It ends
//! when the queue closes or after a `Final` frame, and then shuts the socket down, which
//! also ends the session's reader.

use std::collections::HashMap;

use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, StreamExt};

use super::SessionEvent;
use crate::broker::{AckMode, Delivery, MessageId, SessionId};
use crate::connection::FrameWriter;
use crate::core::{Outgoing, Request};
use crate::runtime;
use crate::stomp::{Command, Frame, Version};

/// Stop adding to a batch past this many bytes, so a flood still flushes regularly.
const BATCH_BYTES: usize = 256 * 1024;

/// The `ack` header value of a delivery: the subscription key and the message id. The
/// core checks the key against the session, so a client cannot ack for another.
pub fn ack_id(sub: u64, id: MessageId) -> String {
    format!("{sub}.{id}")
}

/// Parses an `ack` value made by [`ack_id`].
pub fn parse_ack_id(text: &str) -> Option<(u64, MessageId)> {
    let (sub, id) = text.split_once('.')?;
    Some((sub.parse().ok()?, MessageId::parse(id)?))
}

fn message_frame(delivery: &Delivery, version: Version) -> Frame {
    let message = &delivery.message;
    let mut frame = Frame::new(Command::Message)
        .with_header("subscription", &*delivery.subscription)
        .with_header("message-id", message.id.to_string())
        .with_header("destination", message.destination.to_string());
    if version == Version::V1_2 && delivery.ack != AckMode::Auto {
        frame = frame.with_header("ack", ack_id(delivery.consumer.sub, message.id));
    }
    if delivery.redelivered {
        frame = frame.with_header("redelivered", "true");
    }
    if message.persistent {
        frame = frame.with_header("persistent", "true");
    }
    frame.headers.extend(message.headers.iter().cloned());
    frame.with_body(message.body.clone())
}

/// Writes what is queued for session `session`, as `negotiated`, until the queue closes;
/// then closes the connection (`kill`).
pub async fn run(
    writer: crate::transport::Writer,
    kill: std::sync::Arc<dyn Fn() + Send + Sync>,
    negotiated: super::handshake::Negotiated,
    mut outbound: mpsc::Receiver<Outgoing>,
    mut requests: mpsc::Sender<SessionEvent>,
    session: SessionId,
    receipt_clock: std::sync::Arc<super::timing::ReceiptClock>,
) {
    let (version, send_every) = (negotiated.version, negotiated.send_every);
    let mut writer = FrameWriter::new(writer, version);
    'session: loop {
        let first = match send_every {
            Some(every) => match runtime::timeout(every, outbound.next()).await {
                Some(item) => item,
                None => {
                    writer.queue_heart_beat();
                    if writer.flush().await.is_err() {
                        break;
                    }
                    continue;
                }
            },
            None => outbound.next().await,
        };
        let Some(first) = first else { break };
        let mut written_auto: HashMap<u64, Vec<MessageId>> = HashMap::new();
        let mut finished = false;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Frame(frame) => {
                    if frame.command == Command::Receipt {
                        receipt_clock.receipted(frame.header("receipt-id"));
                    }
                    writer.queue(&frame)
                }
                Outgoing::Deliver(delivery) => {
                    writer.queue(&message_frame(&delivery, version));
                    if delivery.ack == AckMode::Auto {
                        written_auto
                            .entry(delivery.consumer.sub)
                            .or_default()
                            .push(delivery.message.id);
                    }
                }
                Outgoing::Browsed(delivery) => writer.queue(&message_frame(&delivery, version)),
                Outgoing::Reached(reached) => {
                    let _ = reached.send(());
                }
                Outgoing::Final(frame) => {
                    writer.queue(&frame);
                    finished = true;
                    break;
                }
            }
            if writer.pending() < BATCH_BYTES {
                next = outbound.next().now_or_never().flatten();
            }
        }
        if writer.flush().await.is_err() {
            break 'session;
        }
        for (sub, ids) in written_auto {
            if requests
                .send(SessionEvent::Request(
                    session,
                    Request::Written { sub, ids },
                ))
                .await
                .is_err()
            {
                break 'session;
            }
        }
        if finished {
            break;
        }
    }
    // Bounded: over TLS or WebSocket a close writes (close_notify, a Close frame), and a
    // client that reads nothing more must not hold this task and its socket.
    let _ = runtime::timeout(std::time::Duration::from_secs(1), writer.close()).await;
    kill();
}
