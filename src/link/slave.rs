//! The slave's end of the replication link.
//!
//! `connect` dials the master, says Hello with this store's standing and credentials,
//! and returns the Welcome (or why it was refused). The open link is then a [`Mirror`],
//! which the server's shell polls in the same task that runs the core: it reads the
//! master's records (handed to the core, which journals and applies them exactly as
//! recovery would), and it writes the acknowledgements the core outputs, so the socket
//! has one owner and an acknowledgement leaves in the turn that decided it. Losing the
//! master (closed link, silence for `heartbeat_ms × heartbeat_misses`) is reported to
//! the role machine, which decides.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};

use super::wire::{DialFailure, Wire};
use crate::codec;
use crate::config::{Config, Endpoint};
use crate::journal::{EpochStart, Record, Seq};
use crate::repl::message::{
    CatchUp, MasterMessage, SlaveMessage, Standing, MAX_FRAME, PROTOCOL_VERSION,
};
use crate::repl::role::Event;
use crate::runtime;
use crate::transport::{Transport, Writer};

/// Why a dial did not produce a link.
#[derive(Debug)]
pub enum DialError {
    /// Worth retrying: the master is not there (yet).
    Unreachable(String),
    /// Retrying cannot help: credentials, protocol, divergence.
    Refused(String),
    /// The broker dialled is not a master; it follows this one.
    Redirect(String),
    /// The master has nothing this store can append to: copy its store first.
    Copy,
}

/// What the master said when it welcomed us.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub store_id: String,
    pub epochs: Vec<EpochStart>,
    pub catch_up: CatchUp,
    pub in_sync_at: Seq,
}

/// An open, welcomed link.
pub struct Link {
    pub transport: Transport,
    pub welcome: Welcome,
}

/// Dials the master at `master` and says Hello with this store's standing and where
/// this broker's replication listener is (`advertised`); the link once welcomed.
pub async fn connect(
    config: &Config,
    wire: &Wire,
    master: &Endpoint,
    advertised: Option<String>,
    standing: Standing,
) -> Result<Link, DialError> {
    let replication = &config.replication;
    let patience = Duration::from_millis(
        (replication.heartbeat_ms * u64::from(replication.heartbeat_misses)).max(2000),
    );
    // Over TLS, the master's certificate is checked here, before the password is sent.
    let mut transport = match wire.dial(master, patience).await {
        Ok(transport) => transport,
        Err(DialFailure::Untrusted(why)) => return Err(DialError::Refused(why)),
        Err(DialFailure::Unreachable(why)) => return Err(DialError::Unreachable(why)),
    };
    let hello = SlaveMessage::Hello {
        protocol: PROTOCOL_VERSION,
        user: replication.user.clone().unwrap_or_default(),
        password: replication.password.clone().unwrap_or_default().0,
        standing,
        advertised,
        name: config.broker.name.clone(),
    };
    codec::write_frame(&mut transport.writer, &hello)
        .await
        .map_err(|e| DialError::Unreachable(e.to_string()))?;
    // The master may read the journal before it answers; give it the ack timeout too.
    let answer_within = patience + Duration::from_millis(replication.ack_timeout_ms);
    match runtime::timeout(
        answer_within,
        codec::read_frame::<_, MasterMessage>(&mut transport.reader, MAX_FRAME),
    )
    .await
    {
        Some(Ok(Some(MasterMessage::Welcome {
            store_id,
            epochs,
            catch_up,
            in_sync_at,
        }))) => Ok(Link {
            transport,
            welcome: Welcome {
                store_id,
                epochs,
                catch_up,
                in_sync_at,
            },
        }),
        Some(Ok(Some(MasterMessage::Refused {
            reason,
            retry: true,
        }))) => Err(DialError::Unreachable(reason)),
        Some(Ok(Some(MasterMessage::CopyStore))) => Err(DialError::Copy),
        Some(Ok(Some(MasterMessage::Following {
            master: Some(master),
            ..
        }))) => Err(DialError::Redirect(master)),
        Some(Ok(Some(MasterMessage::Following { master: None, .. }))) => Err(
            DialError::Unreachable("the broker there is not a master (yet)".into()),
        ),
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

/// What the master's side of an open link said.
#[derive(Debug)]
pub enum Heard {
    /// Records to apply, in order.
    Records(Vec<Record>),
    /// Nothing the core needs (a heart-beat).
    Nothing,
    /// The in-sync slaves' addresses, first to take over first.
    Succession(Vec<String>),
    /// An event for the role machine; after one that ends the link, `next` says no more.
    Role(Event),
}

/// An open link to our master, read and written by one task.
pub struct Mirror {
    writer: Writer,
    /// Cuts the link at its end.
    kill: Arc<dyn Fn() + Send + Sync>,
    /// Ends our direction after a failed write, so the master sees it at once.
    end_writes: Arc<dyn Fn() + Send + Sync>,
    frames: Pin<Box<dyn Stream<Item = crate::Result<MasterMessage>> + Send>>,
    /// The highest seq the master has sent on this link (before any, the one before its
    /// catch-up starts): no acknowledgement goes past it. A store whose journal resumes
    /// after a gap of non-persistent seqs would otherwise report a durable seq the master
    /// has not sent yet, and the master drops a slave that acknowledges such a seq.
    received: Seq,
    /// The highest seq acknowledged on this link.
    acked: Option<Seq>,
    last_heard: Instant,
    last_written: Instant,
    silence: Duration,
    heartbeat: Duration,
    /// Set once the link has ended: nothing more is read or written.
    ended: bool,
    /// Set once a write failed: nothing more is written.
    unwritable: bool,
}

impl Mirror {
    pub fn new(link: Link, config: &Config) -> Mirror {
        let replication = &config.replication;
        // Buffered: one read takes many record batches, not two reads per frame.
        let Transport {
            reader,
            writer,
            kill,
            end_writes,
            ..
        } = link.transport;
        let reader = futures::io::BufReader::with_capacity(1 << 20, reader);
        Mirror {
            frames: codec::frames::<_, MasterMessage>(reader, MAX_FRAME).boxed(),
            writer,
            kill,
            end_writes,
            received: link.welcome.catch_up.from().prev(),
            acked: None,
            last_heard: Instant::now(),
            last_written: Instant::now(),
            silence: Duration::from_millis(
                replication.heartbeat_ms * u64::from(replication.heartbeat_misses),
            ),
            heartbeat: Duration::from_millis(replication.heartbeat_ms),
            ended: false,
            unwritable: false,
        }
    }

    /// Writes a heart-beat if one is due. Call it outside any `select!`: a write cut
    /// halfway would leave half a frame on the link.
    pub async fn tend(&mut self) {
        if self.last_written.elapsed() >= self.heartbeat {
            self.write(&SlaveMessage::HeartBeat).await;
        }
    }

    /// What the master says next, waiting at most until a heart-beat is due (then
    /// `Nothing`: call `tend`). It only reads, so dropping it halfway loses nothing. Only
    /// a closed or silent link means the master is gone; bytes we cannot read mean it is
    /// alive and speaking something else, and promoting then would make two masters.
    pub async fn next(&mut self) -> Heard {
        if self.ended {
            return futures::future::pending().await;
        }
        if self.last_heard.elapsed() > self.silence {
            return self.end(Event::MasterLost(format!(
                "no heart-beat for {} ms",
                self.silence.as_millis()
            )));
        }
        let wait = self
            .heartbeat
            .saturating_sub(self.last_written.elapsed())
            .min(self.silence.saturating_sub(self.last_heard.elapsed()));
        let Some(frame) = runtime::timeout(wait, self.frames.next()).await else {
            return Heard::Nothing;
        };
        self.last_heard = Instant::now();
        match frame {
            Some(Ok(MasterMessage::Records(records))) => {
                if let Some(last) = records.last() {
                    self.received = self.received.max(last.seq);
                }
                Heard::Records(records)
            }
            Some(Ok(MasterMessage::HeartBeat)) => Heard::Nothing,
            // Only the master's word makes this slave one the pair relies on.
            Some(Ok(MasterMessage::InSync)) => Heard::Role(Event::InSyncWithMaster),
            Some(Ok(MasterMessage::Succession(succession))) => Heard::Succession(succession),
            Some(Ok(MasterMessage::Stopping)) => self.end(Event::MasterStopping),
            Some(Ok(MasterMessage::Dropped { reason })) => self.end(Event::DroppedByMaster(reason)),
            Some(Ok(other)) => self.end(Event::MasterRefused(format!(
                "unexpected message {other:?}"
            ))),
            None => self.end(Event::MasterLost("the master closed the link".into())),
            Some(Err(crate::Error::Codec(why))) => self.end(Event::MasterRefused(format!(
                "unreadable replication frame: {why}"
            ))),
            Some(Err(error)) => self.end(Event::MasterLost(error.to_string())),
        }
    }

    /// Acknowledges that this slave holds every record up to `seq`: never past what the
    /// master sent, never backwards.
    pub async fn ack(&mut self, seq: Seq) {
        let seq = seq.min(self.received);
        if self.acked.is_none_or(|acked| seq > acked) {
            self.acked = Some(seq);
            self.write(&SlaveMessage::Ack { seq }).await;
        }
    }

    /// Writes one message, bounded by a heart-beat interval of silence: a master that
    /// stops reading is one we stop talking to, and the read side reports it lost.
    async fn write(&mut self, message: &SlaveMessage) {
        if self.ended || self.unwritable {
            // Counts as written: a heart-beat that cannot be written is not due again.
            self.last_written = Instant::now();
            return;
        }
        let written =
            runtime::timeout(self.silence, codec::write_frame(&mut self.writer, message)).await;
        self.last_written = Instant::now();
        if !matches!(written, Some(Ok(()))) {
            // What the master said last (a Dropped, say) may still be read; nothing more
            // is written, and the read side reports the link's end. The master sees our
            // end at once rather than after a silence, and drops this slave.
            log::warn!("replication: cannot write to the master; closing the link");
            self.unwritable = true;
            (self.end_writes)();
        }
    }

    fn end(&mut self, event: Event) -> Heard {
        self.ended = true;
        (self.kill)();
        Heard::Role(event)
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        (self.kill)();
    }
}
