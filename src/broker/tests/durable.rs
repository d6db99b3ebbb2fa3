//! Broker tests of durable topic subscriptions: which records keep which messages, and
//! that the state comes back from whichever records a compacted journal still holds.

use super::*;

fn subscription(name: &str, topic: &str, selector: Option<&str>) -> DurableSubscription {
    DurableSubscription {
        client_id: "app".into(),
        name: name.into(),
        topic: topic.into(),
        selector: selector.map(str::to_string),
    }
}

fn published(topic: &str, body: &str, color: &str) -> NewMessage {
    let mut message = msg(topic, body, true);
    message.destination = Destination::Topic(topic.into());
    message.headers.push(("color".into(), color.into()));
    message
}

impl Harness {
    /// Publishes as the core records it: the copies durable subscriptions keep named.
    fn publish(&mut self, message: NewMessage) -> Applied {
        let id = MessageId::new(self.seq.next(), 0);
        let copies: Vec<(u32, String)> = self
            .broker
            .durable_copies(id, &message)
            .into_iter()
            .map(|queue| (0, queue))
            .collect();
        match copies.is_empty() {
            true => self.apply(Op::Send(message)),
            false => self.apply(Op::Kept {
                op: Box::new(Op::Send(message)),
                copies,
            }),
        }
    }

    fn depth(&self, queue: &str) -> usize {
        self.broker
            .queue_depths()
            .into_iter()
            .find(|(name, _)| name == queue)
            .map_or(0, |(_, depth)| depth)
    }
}

#[test]
fn each_subscription_keeps_what_its_topic_and_selector_take() {
    let mut h = Harness::new();
    let all = subscription("all", "prices.eu", None);
    let blue = subscription("blue", "prices.*", Some("color = 'blue'"));
    h.apply(Op::Subscribed(all.clone()));
    h.apply(Op::Subscribed(blue.clone()));
    let applied = h.publish(published("prices.eu", "red", "red"));
    assert_eq!(
        applied.added, 1,
        "one persistent copy: the selector refused the other"
    );
    h.publish(published("prices.eu", "blue", "blue"));
    h.publish(published("prices.us", "blue-us", "blue"));
    h.publish(published("other", "unkept", "blue"));
    assert_eq!(h.depth(&all.queue()), 2);
    assert_eq!(h.depth(&blue.queue()), 2);
    // The subscriber consumes its queue in order; the messages still say their topic.
    subscribe(&mut h, key(S1, 1), &blue.queue(), AckMode::Auto, 10);
    let delivered = h.broker.dispatch(NOW);
    assert_eq!(Harness::bodies(&delivered), ["blue", "blue-us"]);
    assert_eq!(
        delivered[0].message.destination,
        Destination::Topic("prices.eu".into())
    );
}

#[test]
fn a_compacted_journal_replays_to_the_same_subscriptions_and_backlogs() {
    let mut h = Harness::new();
    let sub = subscription("s", "t", None);
    let made = h.apply(Op::Subscribed(sub.clone()));
    assert_eq!((made.durable, made.added), (true, 1));
    h.publish(published("t", "one", "red"));
    h.publish(published("t", "two", "red"));
    // Compaction writes the subscription forward: the record that made it may go.
    let rewritten = h.apply(Op::Subscribed(sub.clone()));
    assert_eq!(rewritten.removed, [Seq(1)]);
    assert_eq!(
        h.depth(&sub.queue()),
        2,
        "a rewrite leaves the backlog alone"
    );
    let mut replayed = Broker::new(2, 100);
    for (seq, op) in h.records.iter().skip(1) {
        replayed.apply(*seq, op.clone(), false);
    }
    assert_eq!(replayed.durable(&sub.queue()), Some(&sub));
    assert_eq!(replayed.queue_depths(), [(sub.queue(), 2)]);
}

#[test]
fn deleting_the_queue_deletes_the_subscription_and_frees_its_record() {
    let mut h = Harness::new();
    let sub = subscription("s", "t", None);
    h.apply(Op::Subscribed(sub.clone()));
    let kept = h.publish(published("t", "one", "red"));
    assert_eq!(kept.added, 1);
    let removals = h.broker.delete_plan(&sub.queue()).unwrap();
    let deleted = h.apply(Op::DeleteQueue {
        queue: sub.queue(),
        removals,
    });
    assert_eq!(deleted.removed, [Seq(2), Seq(1)]);
    assert_eq!(h.broker.durable(&sub.queue()), None);
    let after = h.publish(published("t", "two", "red"));
    assert_eq!(after.added, 0, "nobody keeps it now");
    assert!(h.broker.queue_depths().is_empty());
}

#[test]
fn no_queue_pattern_reaches_a_subscription_queue() {
    let mut h = Harness::new();
    let sub = subscription("s", "t", None);
    h.apply(Op::Subscribed(sub.clone()));
    h.publish(published("t", "kept", "red"));
    subscribe(&mut h, key(S1, 1), ">", AckMode::Auto, 10);
    assert!(h.broker.dispatch(NOW).is_empty());
    assert_eq!(h.depth(&sub.queue()), 1);
}

#[test]
fn a_delete_in_several_records_ends_the_subscription_with_the_last() {
    let mut h = Harness::new();
    let sub = subscription("s", "t", None);
    h.apply(Op::Subscribed(sub.clone()));
    h.publish(published("t", "one", "red"));
    h.publish(published("t", "two", "red"));
    let mut removals = h.broker.delete_plan(&sub.queue()).unwrap();
    let last = removals.split_off(1);
    h.apply(Op::DeleteQueue {
        queue: sub.queue(),
        removals,
    });
    // A crash here leaves the subscription whole, with one message less.
    assert_eq!(h.broker.durable(&sub.queue()), Some(&sub));
    h.apply(Op::DeleteQueue {
        queue: sub.queue(),
        removals: last,
    });
    assert_eq!(h.broker.durable(&sub.queue()), None);
}
