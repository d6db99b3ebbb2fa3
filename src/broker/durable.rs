//! Durable topic subscriptions (ActiveMQ's `activemq.subscriptionName` under a
//! connection's `client-id`): each keeps, in a queue of its own, the topic messages
//! published while it exists, whether its subscriber is connected or not.
//!
//! A subscription is a record (`Op::Subscribed`), so slaves, restarts and failovers know
//! it, and it goes with its queue (`Op::DeleteQueue`). Which subscriptions keep a message
//! is decided once, by the master, as the message is recorded: the record names their
//! queues (`Op::Kept`), so replaying it needs nothing of the subscriptions of that time.
//! That matters because compaction writes a subscription's record forward, past messages
//! it kept. The subscription's selector is applied then too, so its queue holds only
//! what its subscriber takes. The subscriber consumes from the queue as from any queue:
//! in order, acknowledged, redelivered.
//!
//! A subscription counts as one live item of the segment holding its record (the ledger
//! keeps that segment while it lives), and compaction writes it forward like a message.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::message::{Message, MessageId, NewMessage};
use super::wildcard::{is_pattern, matches};
use super::{Applied, Broker, Destination};
use crate::journal::Seq;
use crate::selector::{Limits, Selector};

/// The internal name prefix of a durable subscription's queue.
pub const DURABLE_PREFIX: &str = "durable:";

/// A durable subscription, as its record holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableSubscription {
    pub client_id: String,
    pub name: String,
    /// The topic, or topic pattern, whose messages it keeps.
    pub topic: String,
    /// Only the messages this selects are kept.
    pub selector: Option<String>,
}

impl DurableSubscription {
    /// The queue that keeps its messages.
    pub fn queue(&self) -> String {
        queue_name(&self.client_id, &self.name)
    }
}

/// The queue of client `client_id`'s subscription `name`: `durable:CLIENT:NAME`, with a
/// `:` or `\` in the client id escaped (`\c`, `\\`, as STOMP headers do) so that no two
/// pairs share a queue.
pub fn queue_name(client_id: &str, name: &str) -> String {
    let client = client_id.replace('\\', "\\\\").replace(':', "\\c");
    format!("{DURABLE_PREFIX}{client}:{name}")
}

/// Whether an internal queue name is a durable subscription's.
pub(super) fn is_durable_name(name: &str) -> bool {
    name.starts_with(DURABLE_PREFIX)
}

#[derive(Debug)]
struct Kept {
    subscription: DurableSubscription,
    /// The record that holds it now.
    record: Seq,
    selector: Option<Selector>,
}

/// The durable subscriptions there are, by queue, with the topics they keep.
#[derive(Debug)]
pub(super) struct Durables {
    by_queue: HashMap<String, Kept>,
    /// The queues keeping each topic named exactly.
    by_topic: HashMap<String, Vec<String>>,
    /// The queues of subscriptions to topic patterns.
    by_pattern: Vec<String>,
    /// How large a recorded selector may be (the session's limits).
    limits: Limits,
}

impl Default for Durables {
    fn default() -> Durables {
        Durables {
            by_queue: HashMap::new(),
            by_topic: HashMap::new(),
            by_pattern: Vec::new(),
            limits: Limits {
                max_length: 16 * 1024,
                max_depth: 32,
                max_pattern: 256,
            },
        }
    }
}

impl Durables {
    /// Adds or rewrites a subscription held by `record`; returns the record that held it
    /// before, if it existed.
    fn insert(&mut self, subscription: &DurableSubscription, record: Seq) -> Option<Seq> {
        let queue = subscription.queue();
        let before = self.remove(&queue);
        let selector = subscription.selector.as_deref().and_then(|text| {
            Selector::parse(text, self.limits)
                .map_err(|error| {
                    // Parsed under the session's limits when made: only a stricter config
                    // since gets here, and keeping everything loses nothing.
                    log::warn!(
                        "durable subscription {queue}: selector {text:?} no longer parses ({error}); it keeps every message of its topic"
                    )
                })
                .ok()
        });
        match is_pattern(&subscription.topic) {
            true => self.by_pattern.push(queue.clone()),
            false => self
                .by_topic
                .entry(subscription.topic.clone())
                .or_default()
                .push(queue.clone()),
        }
        self.by_queue.insert(
            queue,
            Kept {
                subscription: subscription.clone(),
                record,
                selector,
            },
        );
        before
    }

    /// Forgets the subscription of `queue`; returns the record that held it.
    fn remove(&mut self, queue: &str) -> Option<Seq> {
        let kept = self.by_queue.remove(queue)?;
        self.by_pattern.retain(|q| q != queue);
        if let Some(queues) = self.by_topic.get_mut(&kept.subscription.topic) {
            queues.retain(|q| q != queue);
            if queues.is_empty() {
                self.by_topic.remove(&kept.subscription.topic);
            }
        }
        Some(kept.record)
    }

    /// The queues of subscriptions to `topic` (named, or matching their pattern), with
    /// their selectors.
    fn of_topic<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = (&'a String, &'a Kept)> {
        let named = self.by_topic.get(topic).into_iter().flatten();
        let patterned = self.by_pattern.iter().filter(move |queue| {
            self.by_queue
                .get(*queue)
                .is_some_and(|kept| matches(&kept.subscription.topic, topic))
        });
        named
            .chain(patterned)
            .filter_map(|queue| Some((queue, self.by_queue.get(queue)?)))
    }
}

impl Broker {
    /// Recorded selectors are parsed again (on slaves, at replay) under these limits.
    pub fn set_selector_limits(&mut self, limits: Limits) {
        self.durables.limits = limits;
    }

    /// The durable subscription whose queue is `queue`.
    pub fn durable(&self, queue: &str) -> Option<&DurableSubscription> {
        self.durables
            .by_queue
            .get(queue)
            .map(|kept| &kept.subscription)
    }

    /// Whether a subscriber consumes from durable subscription queue `queue` now.
    pub fn durable_in_use(&self, queue: &str) -> bool {
        self.queues
            .get(queue)
            .is_some_and(|q| !q.consumers.is_empty())
    }

    /// The queues of the durable subscriptions that keep `message` (its selector
    /// permitting), if it goes to a topic and is recorded with id `id`.
    pub fn durable_copies(&self, id: MessageId, message: &NewMessage) -> Vec<String> {
        let Destination::Topic(topic) = &message.destination else {
            return Vec::new();
        };
        if self.durables.by_queue.is_empty() {
            return Vec::new();
        }
        // Built only if a selector must read it.
        let mut stored: Option<Arc<Message>> = None;
        let mut queues = Vec::new();
        for (queue, kept) in self.durables.of_topic(topic) {
            let selected = match &kept.selector {
                None => true,
                Some(selector) => {
                    let stored = stored.get_or_insert_with(|| Message::new(id, message));
                    selector.matches(stored.as_ref())
                }
            };
            if selected {
                queues.push(queue.clone());
            }
        }
        queues
    }

    /// The subscriptions whose records lie in `records`, for compaction to write forward.
    pub fn durables_recorded_in(&self, records: &Range<Seq>) -> Vec<DurableSubscription> {
        let mut found: Vec<(Seq, DurableSubscription)> = self
            .durables
            .by_queue
            .values()
            .filter(|kept| records.contains(&kept.record))
            .map(|kept| (kept.record, kept.subscription.clone()))
            .collect();
        found.sort_by_key(|(record, _)| *record);
        found.into_iter().map(|(_, s)| s).collect()
    }

    /// Applies `Op::Subscribed`: the subscription lives in `record` now (its queue, and
    /// what it holds, are untouched: a rewrite by compaction, or a replay that met the
    /// queue's carried messages first).
    pub(super) fn subscribed(
        &mut self,
        record: Seq,
        subscription: &DurableSubscription,
        applied: &mut Applied,
    ) {
        applied.durable = true;
        applied.added += 1;
        if let Some(before) = self.durables.insert(subscription, record) {
            applied.removed.push(before);
            applied.mentioned.push(before);
        }
        self.queue_or_new(&subscription.queue());
    }

    /// Part of `Op::DeleteQueue`: a durable subscription's queue takes the subscription
    /// with it.
    pub(super) fn unsubscribed(&mut self, queue: &str, applied: &mut Applied) {
        if let Some(record) = self.durables.remove(queue) {
            applied.removed.push(record);
            applied.mentioned.push(record);
        }
    }
}
