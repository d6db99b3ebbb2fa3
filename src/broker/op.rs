//! Record operations: every change of durable state, as the journal stores it and the
//! replication link ships it.
//!
//! An `Op` holds no ids the receiver could compute itself; `Broker::apply` derives them
//! from the record's seq. Adding a variant is a format change: keep old variants decodable.

use serde::{Deserialize, Serialize};

use super::durable::DurableSubscription;
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
    /// A durable topic subscription made, or written forward by compaction
    /// (`durable.rs`).
    Subscribed(DurableSubscription),
    /// A `Send` or `Commit` some of whose topic messages durable subscriptions keep: each
    /// `(index, queue)` stores message `index` of `op` in that subscription's queue too.
    Kept {
        op: Box<Op>,
        copies: Vec<(u32, String)>,
    },
}

impl Op {
    /// About the bytes its record takes, to size the buffer it is encoded into.
    pub fn size_hint(&self) -> usize {
        match self {
            Op::Send(message) => message.cost(),
            Op::Kept { op, copies } => {
                op.size_hint()
                    + copies
                        .iter()
                        .map(|(_, queue)| queue.len() + 16)
                        .sum::<usize>()
            }
            _ => 64,
        }
    }
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
