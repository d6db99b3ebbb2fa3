//! Broker core tests: queues, acks, redelivery, the DLQ and transactions as records.

use super::*;
use crate::journal::Epoch;

const S1: SessionId = SessionId(1);
const S2: SessionId = SessionId(2);

fn key(session: SessionId, sub: u64) -> ConsumerKey {
    ConsumerKey { session, sub }
}

fn msg(queue: &str, body: &str, persistent: bool) -> NewMessage {
    NewMessage {
        destination: Destination::Queue(queue.into()),
        headers: vec![("k".into(), "v".into())],
        body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        persistent,
    }
}

/// A broker fed through `apply` as the core does, with its own seq counter.
struct Harness {
    broker: Broker,
    seq: Seq,
    records: Vec<(Seq, Op)>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            broker: Broker::new(2, 100),
            seq: Seq::ZERO,
            records: Vec::new(),
        }
    }
    fn apply(&mut self, op: Op) -> Applied {
        self.seq = self.seq.next();
        self.records.push((self.seq, op.clone()));
        self.broker.apply(self.seq, &op, true)
    }
    fn send(&mut self, queue: &str, body: &str) -> MessageId {
        self.apply(Op::Send(msg(queue, body, true)));
        MessageId {
            seq: self.seq,
            index: 0,
        }
    }
    fn bodies(deliveries: &[Delivery]) -> Vec<String> {
        deliveries
            .iter()
            .map(|d| String::from_utf8_lossy(&d.message.body).into_owned())
            .collect()
    }
}

fn subscribe(h: &mut Harness, k: ConsumerKey, queue: &str, ack: AckMode, prefetch: usize) {
    h.broker.subscribe(
        k,
        Destination::Queue(queue.into()),
        Arc::from(format!("sub-{}", k.sub)),
        ack,
        prefetch,
    );
}

#[test]
fn queue_is_fifo_and_respects_the_prefetch_window() {
    let mut h = Harness::new();
    for body in ["a", "b", "c"] {
        h.send("q", body);
    }
    subscribe(&mut h, key(S1, 1), "q", AckMode::ClientIndividual, 2);
    let first = h.broker.dispatch();
    assert_eq!(Harness::bodies(&first), ["a", "b"]);
    assert!(h.broker.dispatch().is_empty(), "window of 2 is full");
    let removals = h.broker.ack(S1, Some(1), first[0].message.id).unwrap();
    h.apply(Op::Ack(removals));
    assert_eq!(Harness::bodies(&h.broker.dispatch()), ["c"]);
}

#[test]
fn messages_round_robin_across_consumers() {
    let mut h = Harness::new();
    subscribe(&mut h, key(S1, 1), "q", AckMode::ClientIndividual, 10);
    subscribe(&mut h, key(S2, 1), "q", AckMode::ClientIndividual, 10);
    for body in ["a", "b", "c", "d"] {
        h.send("q", body);
    }
    let deliveries = h.broker.dispatch();
    let owners: Vec<SessionId> = deliveries.iter().map(|d| d.consumer.session).collect();
    assert_eq!(owners, [S1, S2, S1, S2]);
}

#[test]
fn client_ack_is_cumulative_and_individual_is_not() {
    let mut h = Harness::new();
    for body in ["a", "b", "c"] {
        h.send("q", body);
    }
    subscribe(&mut h, key(S1, 1), "q", AckMode::Client, 10);
    let deliveries = h.broker.dispatch();
    let removals = h.broker.ack(S1, Some(1), deliveries[1].message.id).unwrap();
    assert_eq!(removals.len(), 2, "client mode acks a and b");

    let mut h = Harness::new();
    for body in ["a", "b", "c"] {
        h.send("q", body);
    }
    subscribe(&mut h, key(S1, 1), "q", AckMode::ClientIndividual, 10);
    let deliveries = h.broker.dispatch();
    let removals = h.broker.ack(S1, Some(1), deliveries[1].message.id).unwrap();
    assert_eq!(
        removals,
        vec![Removal {
            queue: "q".into(),
            id: deliveries[1].message.id
        }]
    );
}

#[test]
fn ack_from_another_connection_or_subscription_is_refused() {
    let mut h = Harness::new();
    let id = h.send("q", "a");
    subscribe(&mut h, key(S1, 1), "q", AckMode::Client, 10);
    h.broker.dispatch();
    assert!(h.broker.ack(S2, None, id).is_err());
    assert!(h.broker.ack(S1, Some(7), id).is_err());
    assert!(h
        .broker
        .ack(
            S1,
            None,
            MessageId {
                seq: Seq(99),
                index: 0
            }
        )
        .is_err());
    assert!(h.broker.nack(S2, None, id).is_err());
    assert!(h.broker.ack(S1, None, id).is_ok());
}

#[test]
fn closing_a_connection_requeues_in_order_marked_redelivered() {
    let mut h = Harness::new();
    for body in ["a", "b", "c"] {
        h.send("q", body);
    }
    subscribe(&mut h, key(S1, 1), "q", AckMode::Client, 2);
    assert_eq!(h.broker.dispatch().len(), 2);
    assert!(h.broker.close_session(S1).is_empty());
    subscribe(&mut h, key(S2, 1), "q", AckMode::Client, 10);
    let again = h.broker.dispatch();
    assert_eq!(Harness::bodies(&again), ["a", "b", "c"]);
    let flags: Vec<bool> = again.iter().map(|d| d.redelivered).collect();
    assert_eq!(flags, [true, true, false]);
}

#[test]
fn nack_redelivers_then_dead_letters_past_the_limit() {
    let mut h = Harness::new(); // max_redeliveries = 2
    let id = h.send("orders", "poison");
    subscribe(&mut h, key(S1, 1), "orders", AckMode::ClientIndividual, 1);
    for round in 0..3 {
        let delivered = h.broker.dispatch();
        assert_eq!(delivered.len(), 1, "round {round}");
        assert_eq!(delivered[0].redelivered, round > 0);
        let ops = h.broker.nack(S1, Some(1), id).unwrap();
        if round < 2 {
            assert!(ops.is_empty());
        } else {
            assert_eq!(
                ops,
                vec![Op::DeadLetter(Removal {
                    queue: "orders".into(),
                    id
                })]
            );
            let applied = h.apply(ops[0].clone());
            assert!(applied.durable);
        }
    }
    assert!(h.broker.dispatch().is_empty());
    assert_eq!(h.broker.queue_depths(), vec![("DLQ.orders".to_string(), 1)]);
    subscribe(&mut h, key(S2, 1), "DLQ.orders", AckMode::Auto, 10);
    let dead = h.broker.dispatch();
    assert_eq!(dead[0].message.id, id, "the id survives the move");
    assert!(dead[0]
        .message
        .headers
        .contains(&("original-destination".into(), "/queue/orders".into())));
}

#[test]
fn commit_is_one_record_and_replays_to_the_same_state() {
    let mut h = Harness::new();
    let a = h.send("q", "a");
    subscribe(&mut h, key(S1, 1), "q", AckMode::ClientIndividual, 10);
    h.broker.dispatch();
    let acks = h.broker.ack(S1, Some(1), a).unwrap();
    let applied = h.apply(Op::Commit {
        sends: vec![
            msg("q", "b", true),
            msg("r", "c", true),
            msg("r", "transient", false),
        ],
        acks,
    });
    assert_eq!(applied.added, 2);
    assert_eq!(applied.removed, vec![a.seq]);
    assert!(applied.durable);
    assert_eq!(
        h.broker.queue_depths(),
        vec![("q".into(), 1), ("r".into(), 2)]
    );

    // Recovery: the same records, without transient messages, give the durable state.
    let mut replayed = Broker::new(2, 100);
    for (seq, op) in &h.records {
        replayed.apply(*seq, op, false);
    }
    assert_eq!(
        replayed.queue_depths(),
        vec![("q".into(), 1), ("r".into(), 1)]
    );
}

#[test]
fn applied_reports_durability_by_persistence() {
    let mut h = Harness::new();
    let transient = h.apply(Op::Send(msg("q", "t", false)));
    assert_eq!(transient, Applied::default());
    let id = MessageId {
        seq: h.seq,
        index: 0,
    };
    let ack = h.apply(Op::Ack(vec![Removal {
        queue: "q".into(),
        id,
    }]));
    assert!(!ack.durable, "acking a transient message needs no fsync");
    let unknown = h.apply(Op::Ack(vec![Removal {
        queue: "q".into(),
        id,
    }]));
    assert_eq!(unknown.mentioned, vec![id.seq]);
    assert!(h.apply(Op::EpochStarted { epoch: Epoch(2) }).durable);
}

#[test]
fn auto_mode_consumes_only_what_was_written() {
    let mut h = Harness::new();
    let a = h.send("q", "a");
    subscribe(&mut h, key(S1, 1), "q", AckMode::Auto, 10);
    h.broker.dispatch();
    let removals = h.broker.written(
        key(S1, 1),
        &[
            a,
            MessageId {
                seq: Seq(50),
                index: 0,
            },
        ],
    );
    assert_eq!(removals.len(), 1);
    h.apply(Op::Ack(removals));
    assert_eq!(h.broker.message_count(), 0);
    assert_eq!(h.broker.memory_used(), 0);
}

#[test]
fn topics_reach_every_current_subscriber_and_store_nothing() {
    let mut h = Harness::new();
    let topic = Destination::Topic("news".into());
    h.broker
        .subscribe(key(S1, 1), topic.clone(), Arc::from("a"), AckMode::Auto, 1);
    h.broker.subscribe(
        key(S2, 1),
        topic.clone(),
        Arc::from("b"),
        AckMode::Client,
        1,
    );
    let mut news = msg("x", "hello", true);
    news.destination = topic;
    let applied = h.apply(Op::Send(news));
    assert!(!applied.durable);
    let deliveries = h.broker.dispatch();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(h.broker.message_count(), 0);
    assert!(h
        .broker
        .ack(S2, Some(1), deliveries[1].message.id)
        .unwrap()
        .is_empty());
    h.broker.unsubscribe(key(S1, 1));
    h.broker.unsubscribe(key(S2, 1));
    let mut later = msg("x", "later", true);
    later.destination = Destination::Topic("news".into());
    h.apply(Op::Send(later));
    assert!(h.broker.dispatch().is_empty());
}

#[test]
fn after_a_restart_or_promotion_stored_messages_are_marked_maybe_delivered() {
    let mut h = Harness::new();
    h.send("q", "a");
    h.broker.mark_all_maybe_delivered();
    h.send("q", "b");
    subscribe(&mut h, key(S1, 1), "q", AckMode::Auto, 10);
    let flags: Vec<bool> = h.broker.dispatch().iter().map(|d| d.redelivered).collect();
    assert_eq!(
        flags,
        [true, false],
        "only what the old broker held is marked"
    );
}
