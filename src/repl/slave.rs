//! The slave's end of the replication link.
//!
//! `connect` dials the master, says Hello with this store's position and credentials, and
//! returns the Welcome (or why it was refused). `mirror` then feeds the master's records
//! to the core, which journals and applies them exactly as recovery would, and
//! acknowledges back the last seq it holds. Losing the master (closed link, silence for
//! `heartbeat_ms × heartbeat_misses`) is reported to the role machine, which decides.
//!
//! Acknowledgements are on every replicated receipt's critical path, so whoever learns
//! first that a seq may be acknowledged writes the `Ack` itself, through the `AckHook`
//! that `mirror` installs: with `slave_ack = "received"` (the default) the core, right
//! after it has applied a batch (see `Core::acknowledge_held`); with `"durable"` the
//! journal writer thread, the moment its fsync returns. Either way the core's durable
//! watch acknowledges too (the first seq, and as a fallback), and heart-beats fill the
//! silences. All of them go through one `AckSender`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

use super::message::{CatchUp, MasterMessage, Position, SlaveMessage, MAX_FRAME, PROTOCOL_VERSION};
use super::role::Event as RoleEvent;
use crate::codec;
use crate::config::Config;
use crate::core::Request;
use crate::journal::store::EpochStart;
use crate::runtime::{self, TcpStream};

/// Where a slave's link takes the seqs it may acknowledge: from the core (`slave_ack =
/// "received"`) or from the journal writer thread (`"durable"`, see `server::recover`).
/// Empty while no link mirrors.
#[derive(Clone, Default)]
pub struct AckHook(Arc<Mutex<Option<Acknowledge>>>);

/// What a link acknowledges a seq with.
pub type Acknowledge = Box<dyn Fn(u64) + Send>;

impl AckHook {
    /// Acknowledges `seq` on the link that mirrors now, if there is one.
    pub fn ack(&self, seq: u64) {
        if let Some(ack) = self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            ack(seq);
        }
    }

    /// Installs what acknowledges (a link's `AckSender`), or empties the hook.
    pub fn set(&self, ack: Option<Acknowledge>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = ack;
    }
}

/// The slave's one writer on the link: whole small frames, under one lock, on the
/// socket's non-blocking handle. A write that would block means the master stopped
/// reading: the link is shut down, and the read loop reports the master lost.
struct AckSender {
    stream: Mutex<std::net::TcpStream>,
    /// The highest seq acknowledged: the hook and the durable watch both report each seq.
    acked: AtomicU64,
    /// The highest seq the master has sent on this link (before any, the one before its
    /// catch-up starts): no acknowledgement goes past it. A store whose journal resumes
    /// after a gap of non-persistent seqs would otherwise report a durable seq the master
    /// has not sent yet, and the master drops a slave that acknowledges such a seq.
    received: AtomicU64,
    /// A write failed and the link is shut: nothing more is written (or warned about).
    closed: AtomicBool,
}

impl AckSender {
    fn new(stream: std::net::TcpStream, received: u64) -> AckSender {
        AckSender {
            stream: Mutex::new(stream),
            acked: AtomicU64::new(0),
            received: AtomicU64::new(received),
            closed: AtomicBool::new(false),
        }
    }

    /// The master sent records up to `seq`.
    fn received(&self, seq: u64) {
        self.received.fetch_max(seq, Ordering::SeqCst);
    }

    fn ack(&self, seq: u64) {
        let seq = seq.min(self.received.load(Ordering::SeqCst));
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        // Under the lock, so acknowledgements leave in increasing order.
        if self.acked.fetch_max(seq, Ordering::SeqCst) < seq || seq == 0 {
            self.send(&mut stream, &SlaveMessage::Ack { seq });
        }
    }

    fn heartbeat(&self) {
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        self.send(&mut stream, &SlaveMessage::HeartBeat);
    }

    fn send(&self, stream: &mut std::net::TcpStream, message: &SlaveMessage) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let written = codec::frame(message)
            .map_err(|e| e.to_string())
            .and_then(|frame| stream.write_all(&frame).map_err(|e| e.to_string()));
        if let Err(why) = written {
            log::warn!("replication: cannot write to the master ({why}); closing the link");
            self.closed.store(true, Ordering::SeqCst);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Why a dial did not produce a link.
#[derive(Debug)]
pub enum DialError {
    /// Worth retrying: the master is not there (yet).
    Unreachable(String),
    /// Retrying cannot help: credentials, protocol, divergence.
    Refused(String),
}

/// An open, welcomed link.
pub struct Link {
    pub stream: TcpStream,
    pub store_id: String,
    pub epochs: Vec<EpochStart>,
    pub catch_up: CatchUp,
    pub in_sync_at: u64,
}

pub async fn connect(config: &Config, position: Position) -> Result<Link, DialError> {
    let replication = &config.replication;
    let Some(master) = &replication.master_connector_uri else {
        return Err(DialError::Refused(
            "no master_connector_uri configured".into(),
        ));
    };
    let patience = Duration::from_millis(
        (replication.heartbeat_ms * u64::from(replication.heartbeat_misses)).max(2000),
    );
    let stream = match runtime::timeout(patience, runtime::connect(&master.socket_addr())).await {
        Some(Ok(stream)) => stream,
        Some(Err(error)) => return Err(DialError::Unreachable(error.to_string())),
        None => return Err(DialError::Unreachable("connect timed out".into())),
    };
    let hello = SlaveMessage::Hello {
        protocol: PROTOCOL_VERSION,
        user: replication.user.clone().unwrap_or_default(),
        password: replication.password.clone().unwrap_or_default(),
        position,
        // An ephemeral bind (port 0) cannot be known before it opens: nothing to probe.
        advertised: replication
            .advertised_uri
            .as_ref()
            .or(replication.bind.as_ref())
            .filter(|endpoint| endpoint.port != 0)
            .map(|endpoint| endpoint.to_string()),
    };
    let mut writer = &stream;
    codec::write_frame(&mut writer, &hello)
        .await
        .map_err(|e| DialError::Unreachable(e.to_string()))?;
    let mut reader = &stream;
    // The master may read the journal before it answers; give it the ack timeout too.
    let answer_within = patience + Duration::from_millis(replication.ack_timeout_ms);
    match runtime::timeout(
        answer_within,
        codec::read_frame::<_, MasterMessage>(&mut reader, MAX_FRAME),
    )
    .await
    {
        Some(Ok(Some(MasterMessage::Welcome {
            store_id,
            epochs,
            catch_up,
            in_sync_at,
        }))) => Ok(Link {
            stream,
            store_id,
            epochs,
            catch_up,
            in_sync_at,
        }),
        Some(Ok(Some(MasterMessage::Refused {
            reason,
            retry: true,
        }))) => Err(DialError::Unreachable(reason)),
        // Dropped before the Welcome: something passing went wrong on the master's side.
        Some(Ok(Some(MasterMessage::Dropped { reason }))) => Err(DialError::Unreachable(reason)),
        Some(Ok(Some(MasterMessage::Refused {
            reason,
            retry: false,
        }))) => Err(DialError::Refused(reason)),
        Some(Ok(Some(other))) => Err(DialError::Refused(format!(
            "unexpected first message {other:?}"
        ))),
        Some(Ok(None)) => Err(DialError::Unreachable("the master closed the link".into())),
        Some(Err(error)) => Err(DialError::Unreachable(error.to_string())),
        None => Err(DialError::Unreachable("no answer to Hello".into())),
    }
}

/// Mirrors until the link fails; reports `InSyncWithMaster` when the master says so,
/// then `MasterLost`, `DroppedByMaster` or `MasterRefused`.
pub async fn mirror(
    link: Link,
    config: Arc<Config>,
    mut requests: mpsc::Sender<Request>,
    events: mpsc::UnboundedSender<RoleEvent>,
    hook: AckHook,
) {
    let replication = &config.replication;
    let silence =
        Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses));
    let heartbeat = Duration::from_millis(replication.heartbeat_ms);
    let (CatchUp::Append { from } | CatchUp::Replace { from }) = link.catch_up;
    let sender = match runtime::std_handle(&link.stream) {
        Ok(handle) => Arc::new(AckSender::new(handle, from.saturating_sub(1))),
        Err(error) => {
            let _ = events.unbounded_send(RoleEvent::MasterLost(error.to_string()));
            return;
        }
    };
    let (watcher, durable) = mpsc::unbounded();
    if requests.send(Request::WatchDurable(watcher)).await.is_err() {
        return;
    }
    let acks = sender.clone();
    hook.set(Some(Box::new(move |seq| acks.ack(seq))));
    runtime::spawn(acknowledge(sender.clone(), durable, heartbeat));
    // Buffered: one read takes many record batches, not two reads per frame.
    let mut reader = futures::io::BufReader::with_capacity(1 << 20, &link.stream);
    // Only a closed or silent link means the master is gone; bytes we cannot read mean it
    // is alive and speaking something else, and promoting then would make two masters.
    let event = loop {
        match runtime::timeout(
            silence,
            codec::read_frame::<_, MasterMessage>(&mut reader, MAX_FRAME),
        )
        .await
        {
            Some(Ok(Some(MasterMessage::Records(records)))) => {
                if let Some(last) = records.last() {
                    sender.received(last.seq);
                }
                if requests.send(Request::Replicate(records)).await.is_err() {
                    break RoleEvent::MasterLost("the core stopped".into());
                }
            }
            Some(Ok(Some(MasterMessage::HeartBeat))) => {}
            // Only the master's word makes this slave one the pair relies on.
            Some(Ok(Some(MasterMessage::InSync))) => {
                let _ = events.unbounded_send(RoleEvent::InSyncWithMaster);
            }
            Some(Ok(Some(MasterMessage::Dropped { reason }))) => {
                break RoleEvent::DroppedByMaster(reason)
            }
            Some(Ok(Some(other))) => {
                break RoleEvent::MasterRefused(format!("unexpected message {other:?}"))
            }
            Some(Ok(None)) => break RoleEvent::MasterLost("the master closed the link".into()),
            Some(Err(crate::Error::Codec(why))) => {
                break RoleEvent::MasterRefused(format!("unreadable replication frame: {why}"))
            }
            Some(Err(error)) => break RoleEvent::MasterLost(error.to_string()),
            None => {
                break RoleEvent::MasterLost(format!(
                    "no heart-beat for {} ms",
                    silence.as_millis()
                ))
            }
        }
    };
    hook.set(None);
    let _ = link.stream.shutdown(std::net::Shutdown::Both);
    let _ = events.unbounded_send(event);
}

/// Acknowledges what the core reports durable (the journal hook usually got there
/// first), and heart-beats when idle.
async fn acknowledge(
    sender: Arc<AckSender>,
    mut durable: mpsc::UnboundedReceiver<u64>,
    heartbeat: Duration,
) {
    loop {
        match runtime::timeout(heartbeat, durable.next()).await {
            None => sender.heartbeat(),
            Some(None) => return,
            Some(Some(mut seq)) => {
                // Coalesce: only the newest durable seq matters.
                while let Ok(newer) = durable.try_recv() {
                    seq = seq.max(newer);
                }
                sender.ack(seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    use super::*;

    fn next_message(master: &mut TcpStream) -> SlaveMessage {
        let mut length = [0u8; 4];
        master.read_exact(&mut length).unwrap();
        let mut payload = vec![0u8; u32::from_le_bytes(length) as usize];
        master.read_exact(&mut payload).unwrap();
        codec::decode(&payload).unwrap()
    }

    #[test]
    fn acknowledgements_never_pass_what_the_master_sent_nor_go_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let slave_end = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut master, _) = listener.accept().unwrap();
        master
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Catch-up starts at seq 6; the store's journal says it is durable to 9.
        let sender = AckSender::new(slave_end, 5);
        sender.ack(9);
        assert!(matches!(
            next_message(&mut master),
            SlaveMessage::Ack { seq: 5 }
        ));
        sender.received(12);
        sender.ack(9);
        sender.ack(8);
        sender.ack(20);
        sender.heartbeat();
        let said: Vec<_> = (0..3).map(|_| next_message(&mut master)).collect();
        assert!(
            matches!(
                said[..],
                [
                    SlaveMessage::Ack { seq: 9 },
                    SlaveMessage::Ack { seq: 12 },
                    SlaveMessage::HeartBeat
                ]
            ),
            "{said:?}"
        );
    }
}
