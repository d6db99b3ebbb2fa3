//! Record operations: every change of durable state, as the journal stores it and the
//! replication link ships it.
//!
//! An `Op` holds no ids the receiver could compute itself; `Broker::apply` derives them
//! from the record's seq. Adding a variant is a format change: keep old variants decodable.

use serde::{Deserialize, Serialize};

use super::message::{MessageId, NewMessage};
use crate::journal::Epoch;

/// One message leaving one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub queue: String,
    pub id: MessageId,
}

impl Removal {
    pub fn new(queue: impl Into<String>, id: MessageId) -> Removal {
        Removal {
            queue: queue.into(),
            id,
        }
    }
}

/// A change of broker state; the payload of one journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A message added to a queue, or published to a topic's current subscribers.
    Send(NewMessage),
    /// Messages consumed (acknowledged) and so removed.
    Ack(Vec<Removal>),
    /// A transaction's sends and acks, taking effect together.
    Commit {
        sends: Vec<NewMessage>,
        acks: Vec<Removal>,
    },
    /// A message that failed too many deliveries, moved to `DLQ.<queue>`.
    DeadLetter(Removal),
    /// A broker became master in a new epoch (promotion).
    EpochStarted { epoch: Epoch },
    /// Compaction: stored messages written forward, whole, so the old segments that
    /// held them can be deleted. Each keeps its id, queue and place in its queue.
    Carry(Vec<Carried>),
    /// An operator moved these messages (each from its queue) to queue `to`, in order.
    Move { to: String, removals: Vec<Removal> },
    /// An operator deleted `queue`: these messages went with it.
    DeleteQueue {
        queue: String,
        removals: Vec<Removal>,
    },
}

/// One message a `Carry` record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carried {
    /// The queue it is stored in (`DLQ.<name>` once dead-lettered).
    pub queue: String,
    pub id: MessageId,
    /// As its producer sent it.
    pub message: NewMessage,
}
