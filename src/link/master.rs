//! The master's end of the replication link: one task per slave, which owns its socket.
//! The listener runs on every broker with `replication.bind`: while the broker is not a
//! master it answers probes and Hellos with `Following` (see `Presence`).
//!
//! Nothing from the store is sent before the slave's Hello has passed the
//! protocol-version and credential checks and the core has agreed to the attach (a
//! master, fewer than `max_slaves` attached, histories compatible; a store with nothing
//! to append to is told to copy the master's first, see `copy`). Then `stream` serves
//! it until the link ends, and this task says why: stopping, dropped or refused.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::io::AsyncWriteExt;
use futures::{SinkExt, StreamExt};

use super::wire::Wire;
use super::{copy, LinkEvent, Presence, SharedPresence};
use crate::codec;
use crate::config::Config;
use crate::repl::group::{LinkId, Refusal};
use crate::repl::message::{CatchUp, MasterMessage, SlaveMessage, PROTOCOL_VERSION};
use crate::runtime::{self, TcpListener, TcpStream};
use crate::transport::{Reader, Transport, Writer};

/// A Hello is small; anything bigger before authentication is refused unread.
const MAX_HELLO: usize = 64 * 1024;

mod stream;
use stream::{serve_slave, LinkEnd};

static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub events: mpsc::Sender<LinkEvent>,
    pub journal_dir: PathBuf,
    pub presence: SharedPresence,
    /// The store copies this master serves, for the status line.
    pub copies: copy::Copies,
    /// TLS or plain TCP, as `replication.tls` says.
    pub wire: Wire,
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
                runtime::spawn(handle(stream, context.clone()));
            }
            Err(error) => log::warn!("replication: accept failed: {error}"),
        }
    }
}

/// The master's side of one connection once its handshakes are done: where its last
/// words go, and how to cut it.
struct Peer {
    writer: Writer,
    kill: Arc<dyn Fn() + Send + Sync>,
    end_writes: Arc<dyn Fn() + Send + Sync>,
    address: String,
}

impl Peer {
    /// The connection whole again, with its `reader`, for a task that serves it to the end.
    fn into_transport(self, reader: Reader) -> Transport {
        Transport {
            reader,
            writer: self.writer,
            kill: self.kill,
            end_writes: self.end_writes,
            peer: self.address,
        }
    }

    /// Writes a last message, best effort, waiting at most `within`, and ends the
    /// connection after it: the message arrives before the end of the stream.
    async fn say_last(mut self, message: &MasterMessage, within: Duration) {
        let said = async {
            codec::write_frame(&mut self.writer, message).await?;
            // A TLS session's close_notify, then the end of our direction.
            self.writer
                .close()
                .await
                .map_err(|e| crate::Error::net("closing the link", e))
        };
        let _ = runtime::timeout(within, said).await;
        (self.kill)();
    }

    async fn refuse(self, refusal: impl Into<Refusal>) {
        let Refusal { reason, retry } = refusal.into();
        log::warn!("replication: refused slave {}: {reason}", self.address);
        let refused = MasterMessage::Refused { reason, retry };
        self.say_last(&refused, Duration::from_secs(1)).await;
    }

    /// Answers a slave's Hello while this broker is not a master: where the master is.
    async fn say_not_master(self, presence: Presence) {
        log::info!(
            "replication: {} said Hello, but this broker is not a master: answered {presence:?}",
            self.address
        );
        self.say_last(&answer(presence), Duration::from_secs(1))
            .await;
    }

    /// Tells a probing broker what listens here; nothing from the store is sent.
    async fn answer_probe(self, presence: Presence) {
        log::info!("replication: {} probed: answered {presence}", self.address);
        self.say_last(&answer(presence), Duration::from_secs(1))
            .await;
    }
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
            master: master.as_ref().map(ToString::to_string),
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

async fn handle(stream: TcpStream, mut context: Context) {
    let address = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let replication = &context.config.replication;
    let silence =
        Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses));
    let patience = silence.max(Duration::from_secs(5));
    let Transport {
        mut reader,
        writer,
        kill,
        end_writes,
        ..
    } = match context.wire.accept(stream, patience).await {
        Ok(transport) => transport,
        Err(why) => {
            log::warn!("replication: {address}: {why}; closed");
            return;
        }
    };
    let mut peer = Peer {
        writer,
        kill,
        end_writes,
        address: address.clone(),
    };
    let hello = runtime::timeout(
        patience,
        codec::read_frame::<_, SlaveMessage>(&mut reader, MAX_HELLO),
    )
    .await;
    let (protocol, user, password, standing, advertised, name) = match hello {
        Some(Ok(Some(SlaveMessage::Hello {
            protocol,
            user,
            password,
            standing,
            advertised,
            name,
        }))) => (protocol, user, password, standing, advertised, name),
        Some(Ok(Some(SlaveMessage::Probe))) => return peer.answer_probe(context.presence()).await,
        Some(Ok(Some(SlaveMessage::CopyHello {
            protocol,
            user,
            password,
            name,
        }))) => {
            if let Err(refusal) = admit(&context, protocol, &user, &password) {
                return peer.refuse(refusal).await;
            }
            if let presence @ Presence::NotMaster { .. } = context.presence() {
                return peer.say_not_master(presence).await;
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
                return peer.refuse(refusal).await;
            };
            let transport = peer.into_transport(reader);
            let serving = copy::serve(transport, data_dir, silence, name, copies);
            runtime::in_background("copy-serve", serving).await;
            return;
        }
        Some(Ok(Some(_))) => return peer.refuse("expected Hello first".to_string()).await,
        Some(Err(error)) => return peer.refuse(format!("bad Hello: {error}")).await,
        Some(Ok(None)) | None => {
            log::warn!("replication: {address} connected but sent no Hello; closed");
            (peer.kill)();
            return;
        }
    };
    if let Err(refusal) = admit(&context, protocol, &user, &password) {
        return peer.refuse(refusal).await;
    }
    if let presence @ Presence::NotMaster { .. } = context.presence() {
        return peer.say_not_master(presence).await;
    }
    let link = LinkId(NEXT_LINK.fetch_add(1, Ordering::Relaxed));
    let (reply, answer) = oneshot::channel();
    let (live, live_rx) = mpsc::unbounded();
    let attach = LinkEvent::Attach {
        link,
        standing: standing.clone(),
        advertised,
        name,
        live,
        reply,
    };
    if context.events.send(attach).await.is_err() {
        return;
    }
    let attached = match answer.await {
        Ok(Ok(attached)) => attached,
        Ok(Err(refusal)) => return peer.refuse(refusal).await,
        Err(_) => return,
    };
    if let CatchUp::Replace { .. } = attached.catch_up {
        // Nothing to append to: the slave copies the segment files over copy streams,
        // resumably, then says Hello again with the copy as its store.
        log::info!("replication: slave {address} holds nothing this master can append to: it copies the master's store");
        peer.say_last(&MasterMessage::CopyStore, Duration::from_secs(1))
            .await;
        let why = "sent to copy the store".to_string();
        let _ = context.events.send(LinkEvent::Detached { link, why }).await;
        return;
    }
    let ended = serve_slave(
        reader,
        &mut peer,
        link,
        &context,
        attached,
        live_rx,
        standing.last,
    )
    .await;
    let reason = match ended {
        // The master is stopping: the slave may take over, as after a crash.
        Ok(()) => {
            peer.say_last(&MasterMessage::Stopping, Duration::from_millis(200))
                .await;
            "the master is stopping".to_string()
        }
        Err(LinkEnd::Refused(refusal)) => {
            let why = refusal.reason.clone();
            peer.refuse(refusal).await;
            why
        }
        Err(LinkEnd::Failed(why)) => {
            // A live master dropping a live slave tells it so: the slave dials again
            // instead of promoting itself next to us.
            let dropped = MasterMessage::Dropped {
                reason: why.clone(),
            };
            peer.say_last(&dropped, Duration::from_millis(200)).await;
            why
        }
    };
    let _ = context
        .events
        .send(LinkEvent::Detached { link, why: reason })
        .await;
}
