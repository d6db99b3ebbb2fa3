//! What sessions ask of the core, and what the core sends back to a session.
//!
//! Requests carry everything the core needs; the core never calls back into a session.
//! Every reply travels on the session's own bounded outbound queue, in order.

use std::sync::Arc;

use futures::channel::{mpsc, oneshot};

use crate::broker::{AckMode, Delivery, Destination, MessageId, NewMessage, SessionId};
use crate::stomp::Frame;

/// An ACK or NACK as the session parsed it: which subscription (if the version says) and
/// which message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRef {
    pub sub: Option<u64>,
    pub id: MessageId,
}

/// A request from a session to the core.
pub enum Request {
    /// A session completed CONNECT; replies go to `outbound`.
    Open {
        session: SessionId,
        outbound: mpsc::Sender<Outgoing>,
        /// Shuts the connection down at once (a slow consumer).
        kill: Box<dyn Fn() + Send>,
    },
    Send {
        session: SessionId,
        message: NewMessage,
        receipt: Option<String>,
    },
    Subscribe {
        session: SessionId,
        sub: u64,
        destination: Destination,
        subscription: Arc<str>,
        ack: AckMode,
        prefetch: usize,
        receipt: Option<String>,
    },
    Unsubscribe {
        session: SessionId,
        sub: u64,
        receipt: Option<String>,
    },
    Ack {
        session: SessionId,
        ack: AckRef,
        receipt: Option<String>,
    },
    Nack {
        session: SessionId,
        ack: AckRef,
        receipt: Option<String>,
    },
    /// A transaction's buffered frames, to take effect as one record.
    Commit {
        session: SessionId,
        sends: Vec<NewMessage>,
        acks: Vec<AckRef>,
        nacks: Vec<AckRef>,
        receipt: Option<String>,
    },
    /// An `auto` subscription's messages have been written to the socket.
    Written {
        session: SessionId,
        sub: u64,
        ids: Vec<MessageId>,
    },
    /// Send `receipt` once everything before it is durable; `close` ends the session
    /// after it (DISCONNECT).
    Barrier {
        session: SessionId,
        receipt: String,
        close: bool,
    },
    /// The connection is gone: requeue what it held.
    Close { session: SessionId },
    /// Resolve once message memory is below the limit (a producer waits on it).
    WaitForMemory(oneshot::Sender<()>),
    /// A slave said hello on the replication link (master side).
    AttachSlave {
        /// Identifies the link, so a late message from a dead one is ignored.
        link: u64,
        position: crate::repl::message::Position,
        /// Where the slave's replication listener will be if it promotes itself.
        advertised: Option<String>,
        reply: oneshot::Sender<Result<super::replication::Attached, super::replication::Refusal>>,
    },
    /// The slave holds every record up to this seq (see `config::SlaveAck`).
    SlaveAck { link: u64, seq: u64 },
    /// The replication link failed (closed, silent, or acknowledgements too late).
    SlaveLost { link: u64, why: String },
    /// Where the lost slave said it would listen if it promoted itself, for the probe.
    LostSlave(oneshot::Sender<Option<String>>),
    /// The role machine chose to go on without a slave: reply with the first seq whose
    /// receipt may go out without a slave's copy, or `None` if this core was already
    /// serving alone (the driver records it in store.toml before `ContinueAlone`).
    PrepareAlone(oneshot::Sender<Option<u64>>),
    /// Release the receipts held since the slave was lost.
    ContinueAlone,
    /// Records from our master, to apply in order (slave side).
    Replicate(Vec<crate::repl::message::WireRecord>),
    /// Tell this channel every durable seq.
    WatchDurable(mpsc::UnboundedSender<u64>),
    /// Become master in a new epoch.
    Promote(oneshot::Sender<Vec<crate::journal::store::EpochStart>>),
    /// A one-line summary of the broker's state, for the periodic status log.
    Status(oneshot::Sender<String>),
    /// Stop: finish in-flight journal writes, release their receipts, return.
    Shutdown,
}

/// What the core (or the session's own reader) queues for a session's writer.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Frame),
    Deliver(Delivery),
    /// Write this frame (an ERROR, or the RECEIPT of a DISCONNECT), then close.
    Final(Frame),
}
