//! Durable topic subscriptions in the core: making, changing and deleting them as
//! records, and naming, in each record that publishes to a topic, the subscriptions
//! that keep its messages (`broker::durable` says why the record names them).
//!
//! As in ActiveMQ, one subscriber at a time: a second SUBSCRIBE to a subscription in use
//! is refused. Subscribing again with another topic or selector makes a new
//! subscription: the old one's backlog is deleted with it.

use super::Core;
use crate::broker::{
    ConsumerKey, Destination, DurableSubscription, MessageId, NewMessage, Op, SessionId,
    Subscribing,
};
use crate::journal::Seq;

impl Core {
    /// A SUBSCRIBE: a durable one first makes (or changes) its subscription, then
    /// consumes from its queue; the receipt waits for the record that made it.
    pub(super) fn subscribe(
        &mut self,
        key: ConsumerKey,
        mut subscribing: Subscribing,
        durable: Option<DurableSubscription>,
        receipt: Option<String>,
    ) {
        let session = key.session;
        if let Err(why) = self.temporaries.use_by(session, &subscribing.destination) {
            return self.fail_session(session, &why, receipt);
        }
        let mut made = None;
        if let Some(wanted) = durable {
            match self.make_durable(&wanted) {
                Ok(seq) => made = seq,
                Err(why) => return self.fail_session(session, &why, receipt),
            }
            // Its selector chose what the queue keeps; everything there is for it.
            subscribing.destination = Destination::Queue(wanted.queue());
            subscribing.selector = None;
        }
        self.broker.subscribe(key, subscribing);
        match (receipt, made) {
            (Some(receipt), Some(seq)) => self.receipt_at(session, Some(receipt), seq, false),
            // Before any MESSAGE of the subscription: the receipt goes first.
            (Some(receipt), None) => self.receipt_now(session, receipt, false),
            (None, _) => {}
        }
    }

    /// Records the subscription `wanted` unless it exists as it is; returns the seq of
    /// the last record written, if any.
    fn make_durable(&mut self, wanted: &DurableSubscription) -> Result<Option<Seq>, String> {
        let queue = wanted.queue();
        if self.broker.durable_in_use(&queue) {
            return Err(format!(
                "durable subscription '{}' of client '{}' is in use by another subscriber",
                wanted.name, wanted.client_id
            ));
        }
        match self.broker.durable(&queue) {
            Some(existing) if existing == wanted => return Ok(None),
            // Without a client id, unrelated clients may share a subscription id (stompjs
            // calls its first one sub-0): another topic is theirs, not a change of this one.
            Some(existing) if wanted.client_id.is_empty() => {
                return Err(format!(
                    "durable subscription '{}' exists for topic {} (selector {:?}): UNSUBSCRIBE it with durable:true first, or connect with a client-id of your own",
                    wanted.name, existing.topic, existing.selector
                ))
            }
            Some(existing) => {
                log::info!(
                    "durable subscription '{}' of client '{}' changed (topic {} selector {:?}, was {} {:?}): it starts again, its backlog deleted",
                    wanted.name, wanted.client_id, wanted.topic, wanted.selector, existing.topic, existing.selector
                );
                self.delete_durable(&queue)?;
            }
            None => log::debug!(
                "durable subscription '{}' of client '{}' made on topic {}",
                wanted.name,
                wanted.client_id,
                wanted.topic
            ),
        }
        Ok(Some(self.record(Op::Subscribed(wanted.clone()))))
    }

    /// Deletes the durable subscription of `queue` and its backlog; returns the seq a
    /// receipt waits for. Deleting one that is not there does nothing (a client that
    /// resends its UNSUBSCRIBE after a failover is not refused).
    pub(super) fn delete_durable(&mut self, queue: &str) -> Result<Seq, String> {
        if self.broker.durable(queue).is_none() {
            log::debug!("no durable subscription {queue} to delete");
            return Ok(self.next_seq.prev());
        }
        let removals = self.broker.delete_plan(queue).map_err(|_| {
            format!("durable subscription {queue} is in use by a subscriber: it cannot be deleted")
        })?;
        let ops = self.delete_ops(queue, removals);
        Ok(self.record_all(ops))
    }

    /// `op` as it will be recorded (`keeping`), unless naming the subscriptions that keep
    /// it makes its record larger than a quarter of a journal segment (records never
    /// span segments, and a slave refuses what it could not store): then the client gets
    /// an ERROR and nothing is recorded.
    pub(super) fn kept_within_bounds(
        &mut self,
        session: SessionId,
        op: Op,
        receipt: &Option<String>,
    ) -> Option<Op> {
        let op = self.keeping(op);
        let bound = (self.log.segment_size() / 4) as usize;
        if let Op::Kept { copies, .. } = &op {
            if op.size_hint() > bound {
                let why = format!(
                    "refused: {} durable subscription copies would make a record of about {} bytes, more than a quarter of a journal segment ({bound} bytes, broker.segment_size); send fewer messages in one transaction",
                    copies.len(),
                    op.size_hint()
                );
                self.fail_session(session, &why, receipt.clone());
                return None;
            }
        }
        Some(op)
    }

    /// `op` as recorded: a `Send` or `Commit` whose topic messages durable subscriptions
    /// keep names their queues.
    fn keeping(&self, op: Op) -> Op {
        let sends: &[NewMessage] = match &op {
            Op::Send(message) => std::slice::from_ref(message),
            Op::Commit { sends, .. } => sends,
            _ => return op,
        };
        let seq = self.next_seq;
        let copies: Vec<(u32, String)> = sends
            .iter()
            .enumerate()
            .flat_map(|(index, message)| {
                let id = MessageId::new(seq, index as u32);
                let queues = self.broker.durable_copies(id, message);
                queues.into_iter().map(move |queue| (index as u32, queue))
            })
            .collect();
        match copies.is_empty() {
            true => op,
            false => Op::Kept {
                op: Box::new(op),
                copies,
            },
        }
    }

    /// Compaction of `records`: the subscriptions recorded there are written forward.
    pub(super) fn carry_durables(&mut self, records: &std::ops::Range<Seq>) {
        for subscription in self.broker.durables_recorded_in(records) {
            self.record(Op::Subscribed(subscription));
        }
    }
}
