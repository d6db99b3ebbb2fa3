//! The replication link: the async ends of the wire protocol (`repl::message`), above the
//! core and below the server. One task owns each socket, reading and writing it.
//!
//! - `master`: the master's end, one task per slave: authenticate, let the core decide
//!   the attach, catch up from the journal on disk, stream live records, read
//!   acknowledgements, time out.
//! - `slave`: the slave's end: dial and say hello; then the server's shell polls the
//!   open link (`slave::Mirror`) itself, so the acknowledgements the core outputs are
//!   written by the task that owns the socket, with no hand-off.
//! - `catchup`: the master's read of the journal for a slave's catch-up.
//! - `copy`: an empty or stale slave's copy of the master's segment files, over
//!   concurrent, resumable streams.
//! - `probe`: "is a master listening there?", asked before promoting or carrying on alone.
//! - `wire`: how brokers reach each other's listeners: TCP, or TLS with
//!   `replication.tls` (the dialling side checks the certificate before it says a word).
//!
//! A master's links talk to the server only through [`LinkEvent`]s, in order, on one
//! channel; the slave's `Mirror` is read and written by the server's shell itself.

mod catchup;
pub mod copy;
pub mod master;
pub mod probe;
pub mod slave;
pub mod wire;

use std::sync::{Arc, Mutex};

use futures::channel::{mpsc, oneshot};

use crate::config::Endpoint;
use crate::core::Attached;
use crate::journal::{Epoch, Record, Seq};
use crate::repl::group::{LinkId, Refusal};
use crate::repl::message::Standing;

/// What the core hands a master's link, in order.
#[derive(Debug)]
pub enum Shipment {
    Record(Record),
    /// Records shipped together (one turn of the core's).
    Records(Vec<Record>),
    /// The slave has acknowledged its in-sync point: tell it the master relies on it.
    InSync,
    /// The in-sync slaves' addresses, first to take over first.
    Succession(Vec<String>),
}

impl std::fmt::Display for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presence::Master { epoch } => write!(f, "master in epoch {epoch}"),
            Presence::NotMaster {
                epoch,
                candidate,
                master,
            } => {
                let kind = if *candidate {
                    "in-sync slave"
                } else {
                    "not a master"
                };
                match master {
                    Some(master) => write!(f, "{kind} in epoch {epoch}, following {master}"),
                    None => write!(f, "{kind} in epoch {epoch}, following no master"),
                }
            }
        }
    }
}

/// What this broker's replication listener says it is, kept current by the shell after
/// every step of the core: a probe is answered from it, and a Hello goes to the core
/// only while it says master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Master {
        epoch: Epoch,
    },
    NotMaster {
        epoch: Epoch,
        /// An in-sync slave, which may take over should its master die.
        candidate: bool,
        /// Kept as the address, not its text: the shell compares it after every step of
        /// the core, and formatting it there cost a slave an allocation per step.
        master: Option<Endpoint>,
    },
}

/// The presence, shared between the shell (which writes it) and the listener.
pub type SharedPresence = Arc<Mutex<Presence>>;

/// What a master's link tells the server.
#[derive(Debug)]
pub enum LinkEvent {
    /// A slave passed the handshake and asks to attach; `live` takes its shipments once
    /// the core agrees, and `reply` the core's answer.
    Attach {
        link: LinkId,
        standing: Standing,
        advertised: Option<String>,
        /// The slave's `broker.name`.
        name: String,
        live: mpsc::UnboundedSender<Shipment>,
        reply: oneshot::Sender<Result<Attached, Refusal>>,
    },
    /// The slave holds every record up to `seq`.
    Acked { link: LinkId, seq: Seq },
    /// What the slave has not acknowledged yet: bytes of records, and the age of the
    /// oldest (every heart-beat interval, for the status line).
    Lag { link: LinkId, bytes: u64, ms: u64 },
    /// The link ended, and why.
    Detached { link: LinkId, why: String },
}
