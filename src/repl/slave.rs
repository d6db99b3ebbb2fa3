//! The slave's end of the replication link.
//!
//! `connect` dials the master, says Hello with this store's position and credentials, and
//! returns the Welcome (or why it was refused). `mirror` then feeds the master's records
//! to the core, which journals and applies them exactly as recovery would, and
//! acknowledges each durable seq back. Losing the master (closed link, silence for
//! `heartbeat_ms × heartbeat_misses`) is reported to the role machine, which decides.

use std::sync::Arc;
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
) {
    let replication = &config.replication;
    let silence =
        Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses));
    let heartbeat = Duration::from_millis(replication.heartbeat_ms);
    let (watcher, durable) = mpsc::unbounded();
    if requests.send(Request::WatchDurable(watcher)).await.is_err() {
        return;
    }
    runtime::spawn(acknowledge(link.stream.clone(), durable, heartbeat));
    let mut reader = &link.stream;
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
    let _ = link.stream.shutdown(std::net::Shutdown::Both);
    let _ = events.unbounded_send(event);
}

/// Sends "durable up to N" as the journal reports it, and heart-beats when idle.
async fn acknowledge(
    stream: TcpStream,
    mut durable: mpsc::UnboundedReceiver<u64>,
    heartbeat: Duration,
) {
    let mut writer = &stream;
    let mut last_sent: Option<u64> = None;
    loop {
        let message = match runtime::timeout(heartbeat, durable.next()).await {
            None => SlaveMessage::HeartBeat,
            Some(None) => return,
            Some(Some(mut seq)) => {
                // Coalesce: only the newest durable seq matters.
                while let Ok(newer) = durable.try_recv() {
                    seq = seq.max(newer);
                }
                if last_sent.is_some_and(|last| seq <= last) {
                    continue;
                }
                last_sent = Some(seq);
                SlaveMessage::Ack { seq }
            }
        };
        if codec::write_frame(&mut writer, &message).await.is_err() {
            return;
        }
    }
}
