//! Consumers: subscriptions, dispatch to them in round-robin within their prefetch
//! windows, their acknowledgements and NACKs, and what goes back to a queue when a
//! consumer leaves. Nothing here is a record by itself; what must be journaled comes
//! back to the caller as an `Op` (a dead letter) or a list of `Removal`s (an ack).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::message::Message;
use super::queue::Held;
use super::wildcard::is_pattern;
use super::{
    AckMode, Broker, ConsumerKey, Delivery, Destination, MessageId, Op, Refused, Removal,
    SessionId, DLQ_PREFIX,
};
use crate::selector::Selector;

#[derive(Debug)]
pub(super) struct Consumer {
    pub destination: Destination,
    pub subscription: Arc<str>,
    pub ack: AckMode,
    pub prefetch: usize,
    /// Only the messages it selects are delivered to it (SUBSCRIBE's `selector`).
    pub selector: Option<Arc<Selector>>,
    /// Delivered and not yet acknowledged, in delivery order.
    pub in_flight: VecDeque<MessageId>,
}

impl Consumer {
    /// Whether this consumer takes `message`, its selector permitting.
    pub fn selects(&self, message: &Message) -> bool {
        self.selector
            .as_ref()
            .is_none_or(|selector| selector.matches(message))
    }

    fn has_room(&self) -> bool {
        self.in_flight.len() < self.prefetch
    }
}

/// What a SUBSCRIBE asks of the broker, beyond who asks.
#[derive(Debug, Clone)]
pub struct Subscribing {
    pub destination: Destination,
    /// The client's subscription id, echoed in each MESSAGE.
    pub subscription: Arc<str>,
    pub ack: AckMode,
    pub prefetch: usize,
    pub selector: Option<Arc<Selector>>,
}

impl Broker {
    /// Adds a consumer; its messages flow at the next `dispatch`.
    pub fn subscribe(&mut self, key: ConsumerKey, asked: Subscribing) {
        let Subscribing {
            destination,
            subscription,
            ack,
            prefetch,
            selector,
        } = asked;
        match &destination {
            Destination::Queue(name) if is_pattern(name) => self.join_matching_queues(key, name),
            Destination::Queue(name) => {
                self.queue_or_new(name).consumers.push(key);
                self.dirty.insert(name.clone());
            }
            Destination::Topic(name) => {
                self.topics.entry(name.clone()).or_default().push(key);
                if is_pattern(name) {
                    self.topic_patterns.insert(name.clone());
                } else {
                    self.topic_counts.entry(name.clone()).or_default();
                }
            }
        }
        self.consumers.insert(
            key,
            Consumer {
                destination,
                subscription,
                ack,
                prefetch: prefetch.max(1),
                selector,
                in_flight: VecDeque::new(),
            },
        );
    }

    /// Removes a consumer; what it held goes back to the head of its queue. Returns the
    /// dead-letter ops for messages that have now failed too often.
    pub fn unsubscribe(&mut self, key: ConsumerKey) -> Vec<Op> {
        let Some(consumer) = self.consumers.remove(&key) else {
            return Vec::new();
        };
        match &consumer.destination {
            Destination::Queue(_) => {
                // What it held goes back to the queue it came from (one of several, for a
                // pattern); then it leaves them all.
                let mut held: BTreeMap<String, Vec<MessageId>> = BTreeMap::new();
                for id in consumer.in_flight {
                    if let Some(queue) = self.queue_holding(key, &consumer.destination, id) {
                        held.entry(queue).or_default().push(id);
                    }
                }
                for name in self.queues_of(&consumer.destination) {
                    if let Some(queue) = self.queues.get_mut(&name) {
                        queue.remove_consumer(key);
                    }
                }
                held.into_iter()
                    .flat_map(|(queue, ids)| self.requeue(&queue, ids))
                    .collect()
            }
            Destination::Topic(name) => {
                if let Some(keys) = self.topics.get_mut(name) {
                    keys.retain(|k| *k != key);
                    if keys.is_empty() {
                        self.topics.remove(name);
                        self.topic_counts.remove(name);
                        self.topic_patterns.remove(name);
                    }
                }
                Vec::new()
            }
        }
    }

    /// Removes every consumer of a closed connection.
    pub fn close_session(&mut self, session: SessionId) -> Vec<Op> {
        let keys: Vec<ConsumerKey> = self
            .consumers
            .range(
                ConsumerKey { session, sub: 0 }..=ConsumerKey {
                    session,
                    sub: u64::MAX,
                },
            )
            .map(|(key, _)| *key)
            .collect();
        keys.into_iter()
            .flat_map(|key| self.unsubscribe(key))
            .collect()
    }

    /// Puts delivered messages back in `queue`, each in its place by id, ahead of every
    /// newer message.
    fn requeue(&mut self, queue_name: &str, ids: Vec<MessageId>) -> Vec<Op> {
        let Some(queue) = self.queues.get_mut(queue_name) else {
            return Vec::new();
        };
        let may_dead_letter = !queue_name.starts_with(DLQ_PREFIX);
        let mut failed = Vec::new();
        let mut requeued_expiring = Vec::new();
        for id in ids {
            let Some((mut slot, _)) = queue.in_flight.remove(&id) else {
                continue;
            };
            slot.redeliveries = slot.redeliveries.saturating_add(1);
            if may_dead_letter && u32::from(slot.redeliveries) > self.max_redeliveries {
                failed.push(id);
            }
            // Its expiry was forgotten while it was in flight.
            if let Some(at) = slot.resident().and_then(|m| m.expires_at()) {
                requeued_expiring.push((at, id));
            }
            // A message to dead-letter waits among the ready for the caller's
            // DeadLetter op, which the caller applies before the next dispatch.
            queue.insert(slot);
        }
        for (at, id) in requeued_expiring {
            self.note_expiry_at(queue_name, at, id);
        }
        self.mark_dirty(queue_name);
        // Oldest first, as they were sent.
        failed.sort();
        failed
            .into_iter()
            .map(|id| Op::DeadLetter(Removal::new(queue_name, id)))
            .collect()
    }

    /// Finds the consumer an ACK or NACK refers to and the messages it covers: in
    /// `client` mode every earlier in-flight message of that subscription too.
    fn acked_range(
        &self,
        session: SessionId,
        sub: Option<u64>,
        id: MessageId,
    ) -> Result<(ConsumerKey, Vec<Removal>), Refused> {
        let refused = || {
            Refused(format!(
                "message {id} is not awaiting an acknowledgement on this connection"
            ))
        };
        // The queue's in-flight map says who holds the message, without a scan.
        let (key, consumer) = self
            .session_consumers(session)
            .filter(|(key, _)| sub.is_none_or(|sub| sub == key.sub))
            .find(|(key, consumer)| {
                self.queue_holding(**key, &consumer.destination, id)
                    .is_some()
            })
            .ok_or_else(refused)?;
        let ids: Vec<MessageId> = if consumer.ack == AckMode::Client {
            let end = consumer
                .in_flight
                .iter()
                .position(|m| *m == id)
                .ok_or_else(refused)?;
            consumer.in_flight.iter().take(end + 1).copied().collect()
        } else {
            vec![id]
        };
        let removals = ids
            .into_iter()
            .filter_map(|id| {
                let queue = self.queue_holding(*key, &consumer.destination, id)?;
                Some(Removal::new(queue, id))
            })
            .collect();
        Ok((*key, removals))
    }

    /// The consumers of one session, by subscription id.
    fn session_consumers(
        &self,
        session: SessionId,
    ) -> impl Iterator<Item = (&ConsumerKey, &Consumer)> {
        self.consumers.range(
            ConsumerKey { session, sub: 0 }..=ConsumerKey {
                session,
                sub: u64::MAX,
            },
        )
    }

    /// Whether `sub` (or, without one, any subscription of the session) is on a topic,
    /// where messages are not stored and acknowledgements have nothing to remove.
    fn acks_topic(&self, session: SessionId, sub: Option<u64>) -> bool {
        match sub {
            Some(sub) => self
                .consumers
                .get(&ConsumerKey { session, sub })
                .is_some_and(|c| matches!(c.destination, Destination::Topic(_))),
            None => self
                .session_consumers(session)
                .any(|(_, c)| matches!(c.destination, Destination::Topic(_))),
        }
    }

    /// Validates an ACK and returns what it removes; nothing changes until the caller
    /// applies `Op::Ack` (or a commit) with these removals.
    pub fn ack(
        &self,
        session: SessionId,
        sub: Option<u64>,
        id: MessageId,
    ) -> Result<Vec<Removal>, Refused> {
        match self.acked_range(session, sub, id) {
            Ok((_, removals)) => Ok(removals),
            Err(_) if self.acks_topic(session, sub) => Ok(Vec::new()),
            Err(refused) => Err(refused),
        }
    }

    /// Applies a NACK: the messages go back to the head of their queue to be redelivered,
    /// or, past `max_redeliveries`, the returned dead-letter ops move them to the DLQ.
    pub fn nack(
        &mut self,
        session: SessionId,
        sub: Option<u64>,
        id: MessageId,
    ) -> Result<Vec<Op>, Refused> {
        let (holder, removals) = match self.acked_range(session, sub, id) {
            Ok(found) => found,
            Err(_) if self.acks_topic(session, sub) => return Ok(Vec::new()),
            Err(refused) => return Err(refused),
        };
        if let Some(consumer) = self.consumers.get_mut(&holder) {
            consumer
                .in_flight
                .retain(|m| !removals.iter().any(|r| r.id == *m));
        }
        let mut by_queue: BTreeMap<String, Vec<MessageId>> = BTreeMap::new();
        for removal in removals {
            by_queue.entry(removal.queue).or_default().push(removal.id);
        }
        Ok(by_queue
            .into_iter()
            .flat_map(|(queue, ids)| self.requeue(&queue, ids))
            .collect())
    }

    /// For an `auto` subscription: the messages written to the client, still in flight,
    /// that are now consumed.
    pub fn written(&self, key: ConsumerKey, ids: &[MessageId]) -> Vec<Removal> {
        let Some(consumer) = self.consumers.get(&key) else {
            return Vec::new();
        };
        ids.iter()
            .filter(|id| consumer.in_flight.contains(id))
            .filter_map(|id| {
                let queue = self.queue_holding(key, &consumer.destination, *id)?;
                Some(Removal::new(queue, *id))
            })
            .collect()
    }

    /// Hands ready messages to consumers with room in their prefetch windows,
    /// round-robin, in id order, and returns the deliveries (topic messages included). A
    /// queue whose next message is still in the journal waits for it to be read back
    /// (`paging`), so order holds; an unreadable one, or one expired at `now_ms`, is
    /// passed over (`take_expired` reports the expired). A message that no
    /// consumer with room selects stays where it is for the others, and the ones behind
    /// it are offered, up to `selector_scan` messages passed over.
    pub fn dispatch(&mut self, now_ms: u64) -> Vec<Delivery> {
        let mut deliveries = std::mem::take(&mut self.topic_deliveries);
        for name in std::mem::take(&mut self.dirty) {
            let expires = super::expiry::expires_in(&name);
            let mut expired = Vec::new();
            let Some(queue) = self.queues.get_mut(&name) else {
                continue;
            };
            let count = queue.consumers.len();
            if count == 0 {
                continue;
            }
            // Messages at the front passed over: unreadable, or selected by no one.
            let mut skipped = 0;
            let mut passed_over = 0;
            while let Some(pos) = queue.ready.nth(skipped) {
                let Some(slot) = queue.ready.get(pos) else {
                    break;
                };
                let key = slot.key();
                let message = match (slot.held, &slot.message) {
                    (Held::InMemory, Some(message)) => message.clone(),
                    (Held::Unreadable, _) => {
                        skipped += 1;
                        continue;
                    }
                    _ => {
                        if skipped > 0 {
                            queue.blocked_at = Some(key);
                        }
                        break;
                    }
                };
                if expires && message.expires_at().is_some_and(|at| at <= now_ms) {
                    // Never delivered; the caller records its removal.
                    expired.push(message.id);
                    skipped += 1;
                    continue;
                }
                let mut any_room = false;
                let chosen = (0..count)
                    .map(|step| (queue.cursor + step) % count)
                    .find(|&i| {
                        self.consumers.get(&queue.consumers[i]).is_some_and(|c| {
                            let room = c.has_room();
                            any_room |= room;
                            room && c.selects(&message)
                        })
                    });
                let Some(index) = chosen else {
                    if !any_room || passed_over >= self.selector_scan {
                        break;
                    }
                    skipped += 1;
                    passed_over += 1;
                    continue;
                };
                let key = queue.consumers[index];
                queue.cursor = (index + 1) % count;
                let (Some(slot), Some(consumer)) =
                    (queue.take_ready(pos), self.consumers.get_mut(&key))
                else {
                    break;
                };
                consumer.in_flight.push_back(slot.id());
                deliveries.push(Delivery {
                    consumer: key,
                    subscription: consumer.subscription.clone(),
                    ack: consumer.ack,
                    message,
                    redelivered: slot.redeliveries > 0 || slot.maybe_delivered(),
                });
                queue.in_flight.insert(slot.id(), (slot, key));
            }
            for id in expired {
                self.met_expired(&name, id);
            }
        }
        deliveries
    }
}
