//! What a client's requests do to the core: each is validated against the broker,
//! becomes zero or more records, and gets its receipt at the seq of the last of them.

use std::collections::HashSet;

use super::{AckRef, Core, Outgoing, Output, Request};
use crate::broker::{ConsumerKey, MessageId, NewMessage, Op, Removal, SessionId};
use crate::journal::Seq;
use crate::stomp::Frame;

impl Core {
    pub(super) fn request(&mut self, session: SessionId, request: Request) {
        match request {
            Request::Send { message, receipt } => {
                if let Err(why) = self.temporaries.use_by(session, &message.destination) {
                    return self.fail_session(session, &why, receipt);
                }
                self.temporaries.reply_to(session, &message);
                let seq = if self.broker.is_duplicate(&message) {
                    // A resend after a failover: the original's record is at or before
                    // the last seq, so its receipt waits for exactly what the original did.
                    log::debug!(
                        "session {}: dropped a resent duplicate for {}",
                        session.0,
                        message.destination
                    );
                    self.next_seq.prev()
                } else {
                    let Some(op) = self.kept_within_bounds(session, Op::Send(message), &receipt)
                    else {
                        return;
                    };
                    self.record(op)
                };
                self.receipt_at(session, receipt, seq, false);
            }
            Request::Subscribe {
                sub,
                subscribing,
                durable,
                receipt,
            } => self.subscribe(ConsumerKey { session, sub }, subscribing, durable, receipt),
            Request::Unsubscribe {
                sub,
                delete_durable,
                receipt,
            } => {
                let ops = sub.map_or_else(Vec::new, |sub| {
                    self.broker.unsubscribe(ConsumerKey { session, sub })
                });
                let mut seq = self.record_all(ops);
                if let Some(queue) = delete_durable {
                    match self.delete_durable(&queue) {
                        Ok(deleted) => seq = deleted,
                        Err(why) => return self.fail_session(session, &why, receipt),
                    }
                }
                self.receipt_at(session, receipt, seq, false);
            }
            Request::Browse { browsing, receipt } => self.browse_for(session, browsing, receipt),
            Request::Ack { ack, receipt } => match self.broker.ack(session, ack.sub, ack.id) {
                Ok(removals) => {
                    let seq = self.record_removals(removals);
                    self.receipt_at(session, receipt, seq, false);
                }
                Err(refused) => self.not_held(session, "ACK", &ack, &refused.0, receipt),
            },
            Request::Nack { ack, receipt } => match self.broker.nack(session, ack.sub, ack.id) {
                Ok(ops) => {
                    let seq = self.record_all(ops);
                    self.receipt_at(session, receipt, seq, false);
                }
                Err(refused) => self.not_held(session, "NACK", &ack, &refused.0, receipt),
            },
            Request::Commit {
                sends,
                acks,
                nacks,
                receipt,
            } => self.commit(session, sends, acks, nacks, receipt),
            Request::Written { sub, ids } => {
                let removals = self.broker.written(ConsumerKey { session, sub }, &ids);
                self.record_removals(removals);
            }
            Request::Barrier { receipt, close } => {
                let last = self.next_seq.prev();
                self.receipt_at(session, Some(receipt), last, close);
            }
            Request::Close => self.close_session(session),
            Request::Admin(op) => self.admin(session, op),
        }
    }

    /// Validates every ACK and NACK of a transaction first, so a bad one rejects the
    /// whole transaction and nothing of it takes effect.
    fn commit(
        &mut self,
        session: SessionId,
        sends: Vec<NewMessage>,
        acks: Vec<AckRef>,
        nacks: Vec<AckRef>,
        receipt: Option<String>,
    ) {
        for message in &sends {
            if let Err(why) = self.temporaries.use_by(session, &message.destination) {
                let why = format!("transaction rejected: {why}");
                return self.fail_session(session, &why, receipt);
            }
        }
        // A replayed transaction's sends that already took effect are not stored twice.
        let sends: Vec<NewMessage> = sends
            .into_iter()
            .filter(|m| !self.broker.is_duplicate(m))
            .collect();
        let mut removals: Vec<Removal> = Vec::new();
        let mut seen = HashSet::new();
        for (ack, is_ack) in acks
            .iter()
            .map(|a| (a, true))
            .chain(nacks.iter().map(|n| (n, false)))
        {
            // A NACK is checked like an ACK (is the message ours, in flight?) and applied
            // after the commit.
            match self.broker.ack(session, ack.sub, ack.id) {
                Ok(more) if is_ack => {
                    // Cumulative acks overlap; each message is removed once.
                    removals.extend(more.into_iter().filter(|r| seen.insert(r.id)));
                }
                Ok(_) => {}
                // Stale (see `not_held`): nothing to do for this one.
                Err(_) if self.issued(&ack.id) => {
                    log::debug!(
                        "session {}: a transaction's ack of {}, not in flight on this connection, ignored",
                        session.0,
                        ack.id
                    );
                }
                Err(_) => {
                    return self.fail_session(
                        session,
                        &format!("transaction rejected: {}", never_issued(ack)),
                        receipt,
                    )
                }
            }
        }
        let commit = Op::Commit {
            sends,
            acks: removals,
        };
        let Some(commit) = self.kept_within_bounds(session, commit, &receipt) else {
            return;
        };
        let mut seq = self.record(commit);
        for nack in nacks {
            // A NACK of a message the same transaction acked has nothing left to do.
            if let Ok(ops) = self.broker.nack(session, nack.sub, nack.id) {
                seq = seq.max(self.record_all(ops));
            }
        }
        self.receipt_at(session, receipt, seq, false);
    }

    /// An ACK or NACK of a message not in flight on this connection. One this store
    /// issued is stale, not an error: a client that received it from the old master acks
    /// it on its new connection after a failover (the message is, or will be, redelivered
    /// with `redelivered:true`), or it went back to its queue when a connection closed.
    /// It is ignored, with its RECEIPT; ending the connection would kill consumers
    /// (stompit's, the Ruby gem's) that ride through failovers. An id this store never
    /// issued is a protocol error.
    fn not_held(
        &mut self,
        session: SessionId,
        verb: &str,
        ack: &AckRef,
        why: &str,
        receipt: Option<String>,
    ) {
        if self.issued(&ack.id) {
            log::debug!("session {}: {verb} ignored: {why}", session.0);
            let last = self.next_seq.prev();
            self.receipt_at(session, receipt, last, false);
        } else {
            self.fail_session(session, &never_issued(ack), receipt);
        }
    }

    /// Whether `id` names a message some record of this store added.
    fn issued(&self, id: &MessageId) -> bool {
        id.seq > Seq::ZERO && id.seq < self.next_seq
    }

    fn record_removals(&mut self, removals: Vec<Removal>) -> Seq {
        if removals.is_empty() {
            self.next_seq.prev()
        } else {
            self.record(Op::Ack(removals))
        }
    }

    pub(super) fn fail_session(
        &mut self,
        session: SessionId,
        message: &str,
        receipt: Option<String>,
    ) {
        let mut frame = Frame::error(message);
        if let Some(receipt) = receipt {
            frame = frame.with_header("receipt-id", receipt);
        }
        self.out
            .push(Output::ToSession(session, Outgoing::Final(frame)));
        self.close_session(session);
    }

    /// Forgets a session: its unacked messages go back to their queues.
    pub(super) fn close_session(&mut self, session: SessionId) {
        self.out.push(Output::CloseSession(session));
        let ops = self.broker.close_session(session);
        self.record_all(ops);
        self.drop_temporaries(session);
    }
}

fn never_issued(ack: &AckRef) -> String {
    format!("message {} was never issued by this broker", ack.id)
}
