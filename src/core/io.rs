//! What goes into the core and what comes out of it.
//!
//! Inputs carry everything the core needs and outputs everything it wants done; neither
//! holds a channel, a socket or a callback. The server's shell turns socket, link and
//! journal events into inputs and carries the outputs out, in order, in the same turn.

use crate::broker::{
    Browsed, Delivery, DurableSubscription, Fetch, MessageId, NewMessage, SessionId, Subscribing,
};
use crate::journal::{Command, EpochStart, Extent, Fetched, Pace, Record, Seq};
use crate::repl::group::{LinkId, Refusal};
use crate::repl::message::{CatchUp, Standing};
use crate::repl::role::{Action, Event};
use crate::stomp::Frame;

/// An ACK or NACK as the session parsed it: which subscription (if the version says) and
/// which message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRef {
    pub sub: Option<u64>,
    pub id: MessageId,
}

/// What a client's session asks of the core.
#[derive(Debug)]
pub enum Request {
    Send {
        message: NewMessage,
        receipt: Option<String>,
    },
    /// `durable`: the subscription keeps what is published while its subscriber is away.
    Subscribe {
        sub: u64,
        subscribing: Subscribing,
        durable: Option<DurableSubscription>,
        receipt: Option<String>,
    },
    /// Ends subscription `sub` of the session, if it has one; `delete_durable` also
    /// deletes the durable subscription with that queue.
    Unsubscribe {
        sub: Option<u64>,
        delete_durable: Option<String>,
        receipt: Option<String>,
    },
    /// A browsing SUBSCRIBE (`browser:true`): the first `limit` ready messages of the
    /// queue, shown without being consumed, then a `browser:end` MESSAGE.
    Browse {
        browsing: Browsing,
        receipt: Option<String>,
    },
    Ack {
        ack: AckRef,
        receipt: Option<String>,
    },
    Nack {
        ack: AckRef,
        receipt: Option<String>,
    },
    /// A transaction's buffered frames, to take effect as one record.
    Commit {
        sends: Vec<NewMessage>,
        acks: Vec<AckRef>,
        nacks: Vec<AckRef>,
        receipt: Option<String>,
    },
    /// An `auto` subscription's messages have been written to the socket.
    Written { sub: u64, ids: Vec<MessageId> },
    /// Send `receipt` once everything before it is durable; `close` ends the session
    /// after it (DISCONNECT).
    Barrier { receipt: String, close: bool },
    /// The connection is gone: requeue what it held.
    Close,
    /// An operator's op from the admin API (`core/admin.rs`), on the admin call's own
    /// session: answered by a RECEIPT whose id is the number of messages affected.
    Admin(super::AdminOp),
}

/// The store a slave mirrors into, as recovered after its master welcomed it.
#[derive(Debug)]
pub struct Store {
    pub broker: crate::broker::Broker,
    pub log: crate::journal::Log,
    pub store_id: String,
    pub epochs: Vec<EpochStart>,
    /// Everything before it is on disk.
    pub next_seq: Seq,
}

/// One input to `Core::step`.
#[derive(Debug)]
pub enum Input {
    /// A client's request, from its session.
    Client(SessionId, Request),
    /// The journal holds every record up to this seq.
    Durable(Seq),
    /// A slave said hello on the replication link (master side).
    Attach {
        link: LinkId,
        standing: Standing,
        /// Where the slave's replication listener will be if it promotes itself.
        advertised: Option<String>,
    },
    /// The slave on `link` holds every record up to `seq` (see `config::SlaveAck`).
    ReplicaAck { link: LinkId, seq: Seq },
    /// The slave on `link` has `bytes` of records unacknowledged, the oldest `ms` old.
    ReplicaLag { link: LinkId, bytes: u64, ms: u64 },
    /// The link failed (closed, silent, or acknowledgements too late).
    Detach { link: LinkId, why: String },
    /// No master answered at the lost slaves' addresses (`Output::ProbeSlaves`), and why.
    SlavesGone(String),
    /// Our master told us the succession (slave side): the in-sync slaves' addresses,
    /// first to take over first.
    Succession(Vec<String>),
    /// A copy of the master's store is this slave's store now (not yet welcomed).
    StoreReplaced(Box<Store>),
    /// Our master welcomed us (slave side): mirror into this store from now on.
    Welcomed(Box<Store>),
    /// Our master welcomed us with a catch-up that appends to our journal as it is: mirror
    /// on into the store the core holds, now the master's (its id and epochs).
    WelcomedInPlace {
        store_id: String,
        epochs: Vec<EpochStart>,
    },
    /// Records from our master, to apply in order (slave side).
    Replicate(Vec<Record>),
    /// Something happened that the role machine decides on.
    Role(Event),
    /// `alone_since` (from `Output::RecordAloneSince`) is on disk.
    AloneRecorded,
    /// Bodies read back from the journal (`Output::Read`).
    Fetched(Vec<(Fetch, Fetched)>),
    /// The clock, in ms from any fixed start: stepped every 100 ms while requests wait
    /// for replicas (`Core::holding`), to time them out.
    Clock(u64),
    /// The election's session (`[election]`) is lost for now (`true`: no receipt may go
    /// out, another broker may be elected), or alive again (`false`).
    Fence(bool),
    /// Time to look for journal segments worth compacting (every
    /// `broker.compact_interval_ms`).
    Compact,
    /// The end of a batch of inputs: dispatch what they made ready to consumers.
    Tick,
}

/// What the master's link needs to serve an attached slave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub store_id: String,
    pub epochs: Vec<EpochStart>,
    pub catch_up: CatchUp,
    /// Records below this come from the journal, from it on from `Output::Ship`.
    pub next_seq: Seq,
    /// The slave is in sync once it holds this seq.
    pub in_sync_at: Seq,
}

/// What the core (or a session's own reader) queues for a session's writer.
#[derive(Debug)]
pub enum Outgoing {
    /// Resolved once the writer has taken everything queued before it (a browse waits
    /// for its client this way).
    Reached(futures::channel::oneshot::Sender<()>),
    Frame(Frame),
    Deliver(Delivery),
    /// A message shown to a browser: it needs no acknowledgement and is not consumed.
    Browsed(Delivery),
    /// Write this frame (an ERROR, or the RECEIPT of a DISCONNECT), then close.
    Final(Frame),
}

/// One thing the core wants done, in order.
#[derive(Debug)]
pub enum Output {
    /// Hand this command to the journal writer.
    Journal(Command),
    /// Set the journal writer's pace.
    Pace(Pace),
    /// Queue this for a session's writer; a session that cannot take it is a slow
    /// consumer: the shell cuts it off and steps `Request::Close` for it.
    ToSession(SessionId, Outgoing),
    /// Forget the session: close its outbound queue (its writer drains it and exits).
    CloseSession(SessionId),
    /// Answer the attach of `link`.
    Attached {
        link: LinkId,
        result: Result<Attached, Refusal>,
    },
    /// Send this record to the slave on `link`.
    Ship { link: LinkId, record: Record },
    /// Tell the slave on `link`, after the records shipped so far, that it is in sync.
    TellInSync(LinkId),
    /// Tell every attached slave the succession (after what was shipped to it so far).
    TellSuccession(Vec<String>),
    /// Ask the lost slaves' addresses whether a master listens there; step
    /// `Event::SlaveTookOver` or `Input::SlavesGone` with the answer.
    ProbeSlaves(Vec<String>),
    /// Our master is lost or stopping: probe it (if `master`), then the succession; step
    /// `MasterAnswered`, `MasterMoved` (after dialling the new master is arranged) or
    /// `MasterGone` with the answer.
    CheckSuccession {
        master: bool,
        succession: Vec<String>,
    },
    /// Acknowledge to our master that we hold every record up to this seq (slave side).
    AckMaster(Seq),
    /// Record in store.toml that receipts go out with one copy from this seq (`Some`),
    /// then step `Input::AloneRecorded`; or that a slave is in sync again (`None`).
    RecordAloneSince(Option<Seq>),
    /// Record the store's epoch history (after a promotion) in store.toml, with the
    /// promoted broker serving alone from its new epoch's first seq.
    RecordEpochs(Vec<EpochStart>),
    /// A role action that needs the outside world: listeners, dialling, probing, exiting.
    Role(Action),
    /// Read these records back from the journal, then step `Input::Fetched`.
    Read(Vec<(Fetch, Extent)>),
    /// Show a browsing subscription these messages (the paged-out ones read back from
    /// the journal where `Extent` says), those its selector takes, then its end.
    Browse {
        session: SessionId,
        browsing: Browsing,
        items: Vec<(Browsed, Option<Extent>)>,
    },
}

/// A browsing subscription (`browser:true`).
#[derive(Debug, Clone)]
pub struct Browsing {
    pub sub: u64,
    pub subscribing: Subscribing,
    /// Most messages shown (`stomp.max_browse`).
    pub limit: usize,
    /// Set by the session at UNSUBSCRIBE: nothing more of the browse is shown.
    pub cancelled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Input {
    /// Whether this input may make messages deliverable or want bodies read ahead, so
    /// that a `Tick` should follow it. A replica's acknowledgement or lag, a journal's
    /// durable report and the clock cannot: with two slaves, a dispatch pass after each
    /// of their acknowledgements cost the master a tenth of its time.
    pub fn may_dispatch(&self) -> bool {
        !matches!(
            self,
            Input::ReplicaAck { .. }
                | Input::ReplicaLag { .. }
                | Input::Durable(_)
                | Input::Fence(_)
                | Input::Tick
        )
    }

    /// The input's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Client(..) => "client request",
            Input::Durable(_) => "durable",
            Input::Attach { .. } => "attach",
            Input::ReplicaAck { .. } => "replica ack",
            Input::ReplicaLag { .. } => "replica lag",
            Input::Detach { .. } => "detach",
            Input::SlavesGone(_) => "slaves gone",
            Input::Succession(_) => "succession",
            Input::StoreReplaced(_) => "store replaced",
            Input::Welcomed(_) => "welcomed",
            Input::WelcomedInPlace { .. } => "welcomed in place",
            Input::Replicate(_) => "replicate",
            Input::Role(_) => "role event",
            Input::AloneRecorded => "alone recorded",
            Input::Fetched(_) => "fetched",
            Input::Compact => "compact",
            Input::Fence(_) => "fence",
            Input::Clock(_) => "clock",
            Input::Tick => "tick",
        }
    }
}

impl Request {
    /// The receipt the client asked for with this request, if any.
    pub fn receipt(&self) -> Option<&str> {
        match self {
            Request::Send { receipt, .. }
            | Request::Subscribe { receipt, .. }
            | Request::Unsubscribe { receipt, .. }
            | Request::Browse { receipt, .. }
            | Request::Ack { receipt, .. }
            | Request::Nack { receipt, .. }
            | Request::Commit { receipt, .. } => receipt.as_deref(),
            Request::Barrier { receipt, .. } => Some(receipt),
            Request::Written { .. } | Request::Close | Request::Admin(_) => None,
        }
    }

    /// Bytes of the messages this request adds, which the session reserved on the memory
    /// gauge before sending it.
    pub fn message_bytes(&self) -> usize {
        match self {
            Request::Send { message, .. } => message.cost(),
            Request::Commit { sends, .. } => sends.iter().map(NewMessage::cost).sum(),
            _ => 0,
        }
    }
}
