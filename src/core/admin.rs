//! What the admin API reads of the core (`status`, `destinations`, `browse`) and the
//! operator's ops it sequences (`Request::Admin`).
//!
//! An op is planned against the broker as it is, recorded like any client's request
//! (so it is journaled, shipped to every slave and survives a restart or a failover),
//! and answered like one: a RECEIPT once the record is released (its `receipt-id` is
//! the number of messages affected), or an ERROR with a `status` header (404, 409, 400).

use super::{Core, Outgoing, Output};
use crate::broker::{AdminRefusal, Browsed, BrowsedBody, DestinationStats, Op, Removal, SessionId};
use crate::journal::{Epoch, Extent, Seq};
use crate::repl::group::LinkId;
use crate::repl::role::Role;
use crate::stomp::Frame;

/// An operator's op on a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOp {
    /// Remove the queue's ready messages.
    Purge { queue: String },
    /// Remove the queue and its messages (refused while it has consumers).
    Delete { queue: String },
    /// Move the queue's ready messages to the back of queue `to`.
    Move { from: String, to: String },
}

/// The last role change: from, to, why, and the seq it happened at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub from: Role,
    pub to: Role,
    pub why: String,
    pub at_seq: Seq,
    /// Counts the changes so far, so the shell can stamp each with the time it saw it.
    pub number: u64,
}

/// One attached slave, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub link: LinkId,
    pub address: Option<String>,
    pub state: &'static str,
    pub acked: Seq,
    pub lag_records: u64,
    pub lag_bytes: u64,
    pub lag_ms: u64,
}

/// The core's part of `GET /api/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreStatus {
    pub role: Role,
    pub epoch: Epoch,
    pub last_seq: Seq,
    pub durable_seq: Seq,
    pub messages: usize,
    pub paged: usize,
    pub memory_used: usize,
    pub disk_used: u64,
    pub segments: usize,
    pub replicas: Vec<ReplicaStatus>,
    pub in_sync: usize,
    pub min_replicas: usize,
    /// On a slave: the in-sync slaves its master told it, first to take over first.
    pub succession: Vec<String>,
    pub last_change: Option<RoleChange>,
}

impl Core {
    pub fn admin_status(&self) -> CoreStatus {
        let last = self.next_seq.prev();
        CoreStatus {
            role: self.role(),
            epoch: self.epoch,
            last_seq: last,
            durable_seq: self.durable_seq,
            messages: self.broker.message_count(),
            paged: self.broker.paged_count(),
            memory_used: self.broker.memory_used(),
            disk_used: self.log.disk_used(),
            segments: self.log.segment_count(),
            replicas: self
                .group
                .replicas()
                .iter()
                .map(|r| ReplicaStatus {
                    link: r.link,
                    address: r.advertised.clone(),
                    state: r.state(),
                    acked: r.acked,
                    lag_records: last.since(r.acked),
                    lag_bytes: r.lag_bytes,
                    lag_ms: r.lag_ms,
                })
                .collect(),
            in_sync: self.group.in_sync_count(),
            min_replicas: self.group.policy().min_replicas,
            succession: self.succession().to_vec(),
            last_change: self.last_change.clone(),
        }
    }

    /// On a master: the in-sync slaves' addresses, first to take over first.
    pub fn in_sync_addresses(&self) -> Vec<String> {
        self.group.succession_addresses()
    }

    /// Whether the slave on `link` is attached (one of the replicas).
    pub fn has_replica(&self, link: LinkId) -> bool {
        self.group.replicas().iter().any(|r| r.link == link)
    }

    pub fn last_change(&self) -> Option<&RoleChange> {
        self.last_change.as_ref()
    }

    /// Every queue and every subscribed topic.
    pub fn destinations(&self) -> (Vec<DestinationStats>, Vec<DestinationStats>) {
        (self.broker.queue_stats(), self.broker.topic_stats())
    }

    /// The first `limit` ready messages of `queue`, each paged-out one with where its
    /// record is (`journal::read_now` reads it); `None` if there is no such queue.
    pub fn browse(&self, queue: &str, limit: usize) -> Option<Vec<(Browsed, Option<Extent>)>> {
        let browsed = self.broker.browse(queue, limit)?;
        Some(
            browsed
                .into_iter()
                .map(|item| {
                    let extent = match &item.body {
                        BrowsedBody::Paged(fetch) => self.log.extent(fetch.record, fetch.at),
                        _ => None,
                    };
                    (item, extent)
                })
                .collect(),
        )
    }

    /// Plans, records and answers an operator's op.
    pub(super) fn admin(&mut self, session: SessionId, op: AdminOp) {
        if !self.role().is_master() {
            // A slave records only what its master sends: an op here would diverge it.
            let why = format!(
                "this broker is {}: only the master takes operations",
                self.role()
            );
            return self.refuse(session, 409, why);
        }
        let (queue, planned) = match &op {
            AdminOp::Purge { queue } => (queue, self.broker.purge_plan(queue)),
            AdminOp::Delete { queue } => (queue, self.broker.delete_plan(queue)),
            AdminOp::Move { from, to } if from == to => {
                return self.refuse(session, 400, format!("{from} is the queue to move from"))
            }
            AdminOp::Move { from, .. } => (from, self.broker.purge_plan(from)),
        };
        let removals = match planned {
            Ok(removals) => removals,
            Err(refusal @ AdminRefusal::NoSuchQueue(_)) => {
                return self.refuse(session, 404, refusal.to_string())
            }
            Err(refusal @ AdminRefusal::HasConsumers(..)) => {
                return self.refuse(session, 409, refusal.to_string())
            }
        };
        let chunks = self.chunked(queue, &removals);
        let affected = removals.len();
        log::info!(
            "admin: {} ({affected} message(s), {} record(s))",
            describe(&op),
            chunks.len().max(1)
        );
        let ops: Vec<Op> = match op {
            AdminOp::Purge { .. } => chunks.into_iter().map(Op::Ack).collect(),
            AdminOp::Move { to, .. } => chunks
                .into_iter()
                .map(|removals| Op::Move {
                    to: to.clone(),
                    removals,
                })
                .collect(),
            AdminOp::Delete { queue } => self.delete_ops(&queue, removals),
        };
        let seq = self.record_all(ops);
        self.receipt_at(session, Some(affected.to_string()), seq, false);
    }

    /// Removals of `queue` in records each well inside a segment (a purge of millions of
    /// messages as one record would not fit one, and the journal would stop).
    pub(super) fn chunked(&self, queue: &str, removals: &[Removal]) -> Vec<Vec<Removal>> {
        let per_record = (self.log.segment_size() as usize / 4 / (queue.len() + 32)).max(1);
        removals
            .chunks(per_record)
            .map(<[Removal]>::to_vec)
            .collect()
    }

    /// The records that delete `queue` with `removals`: the last one deletes the queue,
    /// so there is at least one, even for an empty queue.
    pub(super) fn delete_ops(&self, queue: &str, removals: Vec<Removal>) -> Vec<Op> {
        let mut chunks = self.chunked(queue, &removals);
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        chunks
            .into_iter()
            .map(|removals| Op::DeleteQueue {
                queue: queue.to_string(),
                removals,
            })
            .collect()
    }

    fn refuse(&mut self, session: SessionId, status: u16, why: String) {
        let frame = Frame::error(why).with_header("status", status.to_string());
        self.out
            .push(Output::ToSession(session, Outgoing::Frame(frame)));
    }
}

/// An operator's op for the log.
fn describe(op: &AdminOp) -> String {
    match op {
        AdminOp::Purge { queue } => format!("purge of queue {queue}"),
        AdminOp::Delete { queue } => format!("delete of queue {queue}"),
        AdminOp::Move { from, to } => format!("move from queue {from} to queue {to}"),
    }
}
