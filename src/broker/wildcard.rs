//! ActiveMQ's destination wildcards, for subscriptions: `.` separates a name's
//! elements, `*` matches any one element and `>` (last) matches one or more. A topic
//! subscription to a pattern gets what is published to every matching topic; a queue
//! subscription to one consumes from every matching queue, those made later included.
//! A SEND names one destination: the session refuses a pattern there.

use super::{Broker, ConsumerKey, Destination, MessageId};

/// Whether a destination name is a pattern.
pub fn is_pattern(name: &str) -> bool {
    name.split('.')
        .any(|element| element == "*" || element == ">")
}

/// Whether `pattern` matches the destination name `name`. A temporary destination is
/// its connection's alone, and a durable subscription's queue its subscriber's: no
/// pattern reaches them.
pub fn matches(pattern: &str, name: &str) -> bool {
    if super::message::is_temporary_name(name) || super::durable::is_durable_name(name) {
        return false;
    }
    let mut names = name.split('.');
    for element in pattern.split('.') {
        match (element, names.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (element, Some(name)) if element == name => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

impl Broker {
    /// A queue consumer of `pattern` joins every queue there is that matches it.
    pub(super) fn join_matching_queues(&mut self, key: ConsumerKey, pattern: &str) {
        for (name, queue) in self.queues.iter_mut() {
            if matches(pattern, name) {
                queue.consumers.push(key);
                self.dirty.insert(name.clone());
            }
        }
    }

    /// The queue consumers of patterns that a new queue `name` matches.
    pub(super) fn pattern_consumers_of(&self, name: &str) -> Vec<ConsumerKey> {
        self.consumers
            .iter()
            .filter(|(_, consumer)| match &consumer.destination {
                Destination::Queue(pattern) => is_pattern(pattern) && matches(pattern, name),
                Destination::Topic(_) => false,
            })
            .map(|(key, _)| *key)
            .collect()
    }

    /// The queues a consumer takes from: its own, or every one its pattern matches.
    pub(super) fn queues_of(&self, destination: &Destination) -> Vec<String> {
        match destination {
            Destination::Queue(name) if is_pattern(name) => self
                .queues
                .keys()
                .filter(|queue| matches(name, queue))
                .cloned()
                .collect(),
            Destination::Queue(name) => vec![name.clone()],
            Destination::Topic(_) => Vec::new(),
        }
    }

    /// The queue where `key`, a consumer of `destination`, holds message `id` in flight.
    pub(super) fn queue_holding(
        &self,
        key: ConsumerKey,
        destination: &Destination,
        id: MessageId,
    ) -> Option<String> {
        let holds = |queue: &String| {
            self.queues
                .get(queue)
                .and_then(|q| q.in_flight.get(&id))
                .is_some_and(|(_, holder)| *holder == key)
        };
        match destination {
            Destination::Queue(name) if !is_pattern(name) => holds(name).then(|| name.clone()),
            _ => self.queues_of(destination).into_iter().find(|q| holds(q)),
        }
    }

    /// The topic patterns a publish to `topic` reaches, with their subscribers.
    pub(super) fn pattern_subscribers(&self, topic: &str) -> Vec<ConsumerKey> {
        self.topic_patterns
            .iter()
            .filter(|pattern| matches(pattern, topic))
            .filter_map(|pattern| self.topics.get(pattern))
            .flatten()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_activemq_documents() {
        let table = [
            ("PRICE.>", "PRICE.STOCK.NASDAQ.IBM", true),
            ("PRICE.>", "PRICE.STOCK", true),
            ("PRICE.>", "PRICE", false),
            ("PRICE.STOCK.*", "PRICE.STOCK.NYSE", true),
            ("PRICE.STOCK.*", "PRICE.STOCK.NYSE.IBM", false),
            ("PRICE.STOCK.*", "PRICE.STOCK", false),
            ("PRICE.*.NASDAQ.*", "PRICE.STOCK.NASDAQ.FB", true),
            ("PRICE.*.NASDAQ.*", "PRICE.STOCK.NYSE.FB", false),
            ("*", "orders", true),
            ("*", "orders.eu", false),
            (">", "orders.eu", true),
            ("orders", "orders", true),
            // Another connection's temporary destinations are out of every pattern's reach.
            (">", "temp-queue:3.replies", false),
            ("*", "temp-topic:3.news", false),
        ];
        for (pattern, name, expected) in table {
            assert_eq!(matches(pattern, name), expected, "{pattern} ~ {name}");
        }
        assert!(is_pattern("a.*") && is_pattern(">") && is_pattern("a.>"));
        assert!(!is_pattern("a.b*") && !is_pattern("orders"));
    }
}
