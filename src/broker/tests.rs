//! Broker core tests: queues, acks, redelivery, the DLQ and transactions as records.

mod delivery;
mod durable;

use super::*;
use crate::journal::Epoch;
use crate::selector::Selector;

const S1: SessionId = SessionId(1);
/// The wall clock the tests dispatch at (ms since the Unix epoch).
const NOW: u64 = 1_000_000;

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
        self.broker.apply(self.seq, op, true)
    }
    fn send(&mut self, queue: &str, body: &str) -> MessageId {
        self.apply(Op::Send(msg(queue, body, true)));
        MessageId {
            seq: self.seq,
            index: 0,
        }
    }
    /// The bodies of the deliveries to consumer `to`.
    fn bodies_to(deliveries: &[Delivery], to: ConsumerKey) -> Vec<String> {
        let picked: Vec<Delivery> = deliveries
            .iter()
            .filter(|d| d.consumer == to)
            .cloned()
            .collect();
        Harness::bodies(&picked)
    }

    fn bodies(deliveries: &[Delivery]) -> Vec<String> {
        deliveries
            .iter()
            .map(|d| String::from_utf8_lossy(&d.message.body).into_owned())
            .collect()
    }
}

fn subscribe(h: &mut Harness, k: ConsumerKey, queue: &str, ack: AckMode, prefetch: usize) {
    subscribe_to(h, k, Destination::Queue(queue.into()), ack, prefetch, None);
}

fn subscribe_to(
    h: &mut Harness,
    k: ConsumerKey,
    destination: Destination,
    ack: AckMode,
    prefetch: usize,
    selector: Option<&str>,
) {
    let limits = crate::selector::Limits {
        max_length: 1000,
        max_depth: 10,
        max_pattern: 100,
    };
    h.broker.subscribe(
        k,
        Subscribing {
            destination,
            subscription: Arc::from(format!("sub-{}", k.sub)),
            ack,
            prefetch,
            selector: selector.map(|text| Arc::new(Selector::parse(text, limits).unwrap())),
        },
    );
}

#[test]
fn queue_is_fifo_and_respects_the_prefetch_window() {
    let mut h = Harness::new();
    for body in ["a", "b", "c"] {
        h.send("q", body);
    }
    subscribe(&mut h, key(S1, 1), "q", AckMode::ClientIndividual, 2);
    let first = h.broker.dispatch(NOW);
    assert_eq!(Harness::bodies(&first), ["a", "b"]);
    assert!(h.broker.dispatch(NOW).is_empty(), "window of 2 is full");
    let removals = h.broker.ack(S1, Some(1), first[0].message.id).unwrap();
    h.apply(Op::Ack(removals));
    assert_eq!(Harness::bodies(&h.broker.dispatch(NOW)), ["c"]);
}

#[test]
fn messages_round_robin_across_consumers() {
    let mut h = Harness::new();
    subscribe(&mut h, key(S1, 1), "q", AckMode::ClientIndividual, 10);
    subscribe(&mut h, key(S2, 1), "q", AckMode::ClientIndividual, 10);
    for body in ["a", "b", "c", "d"] {
        h.send("q", body);
    }
    let deliveries = h.broker.dispatch(NOW);
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
    let deliveries = h.broker.dispatch(NOW);
    let removals = h.broker.ack(S1, Some(1), deliveries[1].message.id).unwrap();
    assert_eq!(removals.len(), 2, "client mode acks a and b");

    let mut h = Harness::new();
    for body in ["a", "b", "c"] {
        h.send("q", body);
    }
    subscribe(&mut h, key(S1, 1), "q", AckMode::ClientIndividual, 10);
    let deliveries = h.broker.dispatch(NOW);
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
    h.broker.dispatch(NOW);
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
    assert_eq!(h.broker.dispatch(NOW).len(), 2);
    assert!(h.broker.close_session(S1).is_empty());
    subscribe(&mut h, key(S2, 1), "q", AckMode::Client, 10);
    let again = h.broker.dispatch(NOW);
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
        let delivered = h.broker.dispatch(NOW);
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
    assert!(h.broker.dispatch(NOW).is_empty());
    assert_eq!(h.broker.queue_depths(), vec![("DLQ.orders".to_string(), 1)]);
    subscribe(&mut h, key(S2, 1), "DLQ.orders", AckMode::Auto, 10);
    let dead = h.broker.dispatch(NOW);
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
    h.broker.dispatch(NOW);
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
        replayed.apply(*seq, op.clone(), false);
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
    h.broker.dispatch(NOW);
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
    subscribe_to(&mut h, key(S1, 1), topic.clone(), AckMode::Auto, 1, None);
    subscribe_to(&mut h, key(S2, 1), topic.clone(), AckMode::Client, 1, None);
    let mut news = msg("x", "hello", true);
    news.destination = topic;
    let applied = h.apply(Op::Send(news));
    assert!(!applied.durable);
    let deliveries = h.broker.dispatch(NOW);
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
    assert!(h.broker.dispatch(NOW).is_empty());
}

#[test]
fn after_a_restart_or_promotion_stored_messages_are_marked_maybe_delivered() {
    let mut h = Harness::new();
    h.send("q", "a");
    h.broker.mark_all_maybe_delivered();
    h.send("q", "b");
    subscribe(&mut h, key(S1, 1), "q", AckMode::Auto, 10);
    let flags: Vec<bool> = h
        .broker
        .dispatch(NOW)
        .iter()
        .map(|d| d.redelivered)
        .collect();
    assert_eq!(
        flags,
        [true, false],
        "only what the old broker held is marked"
    );
}

/// `apply`, row by row: from the state the earlier rows left, each record reports what
/// the journal must know (`Applied`) and leaves the queue depths shown, both when the
/// live broker applies it (`keep_transient`) and when recovery replays it.
#[test]
fn apply_table() {
    fn removal(queue: &str, seq: u64, index: u32) -> Removal {
        Removal::new(queue, MessageId::new(Seq(seq), index))
    }
    fn applied(durable: bool, added: u32, removed: &[u64], mentioned: &[u64]) -> Applied {
        Applied {
            durable,
            added,
            removed: removed.iter().copied().map(Seq).collect(),
            mentioned: mentioned.iter().copied().map(Seq).collect(),
        }
    }
    let topic = NewMessage {
        destination: Destination::Topic("t".into()),
        ..msg("unused", "news", true)
    };
    #[rustfmt::skip]
    type Depths = &'static [(&'static str, usize)];
    let rows: Vec<(Op, Applied, Applied, Depths, Depths)> = vec![
        // (the record at seq row + 1, live Applied, replayed Applied, live depths,
        // replayed depths; an empty queue is not listed)
        (
            Op::Send(msg("q", "a", true)),
            applied(true, 1, &[], &[]),
            applied(true, 1, &[], &[]),
            &[("q", 1)],
            &[("q", 1)],
        ),
        (
            Op::Send(msg("q", "b", false)),
            applied(false, 0, &[], &[]),
            applied(false, 0, &[], &[]),
            &[("q", 2)],
            &[("q", 1)],
        ),
        (
            Op::Send(topic),
            applied(false, 0, &[], &[]),
            applied(false, 0, &[], &[]),
            &[("q", 2)],
            &[("q", 1)],
        ),
        (
            Op::Commit {
                sends: vec![msg("r", "c", true), msg("r", "d", true)],
                acks: vec![removal("q", 1, 0)],
            },
            applied(true, 2, &[1], &[1]),
            applied(true, 2, &[1], &[1]),
            &[("q", 1), ("r", 2)],
            &[("r", 2)],
        ),
        // The transient message is acked: nothing for the disk.
        (
            Op::Ack(vec![removal("q", 2, 0)]),
            applied(false, 0, &[], &[2]),
            applied(false, 0, &[], &[2]),
            &[("r", 2)],
            &[("r", 2)],
        ),
        (
            Op::DeadLetter(removal("r", 4, 1)),
            applied(true, 0, &[], &[4]),
            applied(true, 0, &[], &[4]),
            &[("DLQ.r", 1), ("r", 1)],
            &[("DLQ.r", 1), ("r", 1)],
        ),
        // A removal of a message that is not there changes nothing but is still noted.
        (
            Op::Ack(vec![removal("q", 99, 0)]),
            applied(false, 0, &[], &[99]),
            applied(false, 0, &[], &[99]),
            &[("DLQ.r", 1), ("r", 1)],
            &[("DLQ.r", 1), ("r", 1)],
        ),
        (
            Op::EpochStarted { epoch: Epoch(2) },
            applied(true, 0, &[], &[]),
            applied(true, 0, &[], &[]),
            &[("DLQ.r", 1), ("r", 1)],
            &[("DLQ.r", 1), ("r", 1)],
        ),
    ];
    let mut live = Broker::new(2, 100);
    let mut replayed = Broker::new(2, 100);
    let depths = |broker: &Broker| -> Vec<(String, usize)> { broker.queue_depths() };
    let owned = |rows: &[(&str, usize)]| -> Vec<(String, usize)> {
        rows.iter().map(|(q, n)| (q.to_string(), *n)).collect()
    };
    for (n, (op, want_live, want_replayed, live_depths, replayed_depths)) in
        rows.into_iter().enumerate()
    {
        let seq = Seq(n as u64 + 1);
        assert_eq!(
            live.apply(seq, op.clone(), true),
            want_live,
            "row {n} live: {op:?}"
        );
        let record = Record {
            epoch: Epoch::FIRST,
            seq,
            payload: codec::encode(&op).unwrap().into(),
        };
        let replay = replayed.replay(&record, false).unwrap();
        assert_eq!(replay.applied, want_replayed, "row {n} replayed: {op:?}");
        let started = matches!(op, Op::EpochStarted { .. });
        assert_eq!(replay.epoch_started.is_some(), started, "row {n}");
        assert_eq!(depths(&live), owned(live_depths), "row {n} live depths");
        assert_eq!(
            depths(&replayed),
            owned(replayed_depths),
            "row {n} replayed depths"
        );
    }
    // A payload that is not an Op is refused, and changes nothing.
    let garbage = Record {
        epoch: Epoch::FIRST,
        seq: Seq(100),
        payload: bytes::Bytes::from_static(b"not an op"),
    };
    let error = replayed.replay(&garbage, false).unwrap_err();
    assert!(error.contains("record seq 100 does not decode"), "{error}");
}
