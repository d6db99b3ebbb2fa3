//! Paging stepped by hand: records kept in a Vec stand in for the journal, and the
//! reader's answers are handed to `loaded` as the core would.

use super::*;
use crate::broker::{AckMode, BrowsedBody, ConsumerKey, Delivery, Removal, SessionId, Subscribing};
use crate::journal::{Applied, Epoch, Record};
/// The wall clock the tests dispatch at (ms since the Unix epoch).
const NOW: u64 = 1_000_000;

const CONSUMER: ConsumerKey = ConsumerKey {
    session: SessionId(1),
    sub: 1,
};

/// A broker and the journal it wrote, as records by seq.
struct Paged {
    broker: Broker,
    journal: Vec<Record>,
}

impl Paged {
    /// `page_above`: the broker's paging point (0 pages every persistent body out).
    fn new(page_above: usize) -> Paged {
        let mut broker = Broker::new(6, 0);
        broker.set_paging(Some(page_above));
        Paged {
            broker,
            journal: Vec::new(),
        }
    }

    /// Every body paged out: messages `m0..` sent, and a consumer with a window of 10.
    fn subscribed_to(count: usize) -> Paged {
        let mut paged = Paged::new(0);
        for i in 0..count {
            paged.send(&format!("m{i}"));
        }
        paged.subscribe(10);
        paged
    }

    fn next_seq(&self) -> Seq {
        Seq(self.journal.len() as u64 + 1)
    }

    /// Applies `op` as the core does: apply, then place a durable record.
    fn record(&mut self, op: Op) -> Applied {
        let seq = self.next_seq();
        let payload = codec::encode(&op).unwrap().into();
        let applied = self.broker.apply(seq, op, true);
        let record = Record {
            epoch: Epoch::FIRST,
            seq,
            payload,
        };
        self.journal.push(record);
        if applied.durable {
            self.broker.placed(seq, placement(seq));
        }
        applied
    }

    fn send(&mut self, body: &str) {
        self.record(Op::Send(NewMessage {
            destination: Destination::Queue("q".into()),
            headers: vec![("n".into(), body.into())],
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            persistent: true,
        }));
    }

    /// What the reader would answer for each fetch.
    fn read(&self, fetches: &[Fetch]) -> Vec<(Fetch, Fetched)> {
        fetches
            .iter()
            .map(|fetch| {
                let record = self.journal[fetch.record.0 as usize - 1].clone();
                (fetch.clone(), Fetched::Record(record))
            })
            .collect()
    }

    /// Reads back what the broker wants and dispatches, until nothing more comes.
    fn drain(&mut self) -> Vec<String> {
        let mut bodies = Vec::new();
        loop {
            let durable = self.next_seq().prev();
            let fetches = self.broker.wanted_reads(durable);
            let unreadable = self.broker.loaded_batch(self.read(&fetches));
            assert!(unreadable.is_empty(), "{unreadable:?}");
            let deliveries = self.broker.dispatch(NOW);
            if deliveries.is_empty() && fetches.is_empty() {
                return bodies;
            }
            self.ack(&deliveries);
            bodies.extend(deliveries.iter().map(body));
        }
    }

    fn ack(&mut self, deliveries: &[Delivery]) {
        let removals: Vec<Removal> = deliveries
            .iter()
            .flat_map(|d| {
                self.broker
                    .ack(d.consumer.session, Some(d.consumer.sub), d.message.id)
            })
            .flatten()
            .collect();
        if !removals.is_empty() {
            self.record(Op::Ack(removals));
        }
    }

    fn subscribe(&mut self, prefetch: usize) {
        self.subscribe_selecting(prefetch, None);
    }

    fn subscribe_selecting(&mut self, prefetch: usize, selector: Option<&str>) {
        let limits = crate::selector::Limits {
            max_length: 100,
            max_depth: 4,
            max_pattern: 10,
        };
        let selector =
            selector.map(|text| Arc::new(crate::selector::Selector::parse(text, limits).unwrap()));
        self.broker.subscribe(
            CONSUMER,
            Subscribing {
                destination: Destination::Queue("q".into()),
                subscription: Arc::from("s"),
                ack: AckMode::ClientIndividual,
                prefetch,
                selector,
            },
        );
    }
}

/// A made-up place for record `seq`, different for every record.
fn placement(seq: Seq) -> Placement {
    Placement {
        offset: seq.0 as u32 * 100,
        len: 100,
    }
}

fn body(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.message.body).into_owned()
}

fn bodies(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// However much is paged out, every body comes back, in order, and the memory the broker
/// counts goes back to nothing once the queue is drained.
#[test]
fn paged_bodies_come_back_in_order_and_the_memory_account_balances() {
    // (paging point, messages, prefetch)
    let cases = [
        (0, 3000, 1),
        (0, 3000, 500),
        (50_000, 3000, 100),   // some in memory, the rest paged
        (usize::MAX, 200, 10), // never paged
    ];
    for (page_above, count, prefetch) in cases {
        let mut paged = Paged::new(page_above);
        for i in 0..count {
            paged.send(&format!("m{i}"));
        }
        let held = paged.broker.memory_used();
        if page_above == 0 {
            assert_eq!(held, count * SLOT_COST, "only slots are held");
        }
        paged.subscribe(prefetch);
        assert_eq!(
            paged.drain(),
            bodies(0..count),
            "case {page_above} {count} {prefetch}"
        );
        assert_eq!(
            paged.broker.memory_used(),
            0,
            "case {page_above} {count} {prefetch}"
        );
        assert_eq!(paged.broker.message_count(), 0);
    }
}

/// A broker that mirrors a master keeps only slots, whatever its paging point, including
/// for the bodies it held before; promoted, it gives every body back to its consumer.
#[test]
fn a_mirroring_broker_holds_only_slots_and_reads_them_back_once_promoted() {
    let mut paged = Paged::new(usize::MAX);
    for i in 0..2000 {
        paged.send(&format!("m{i}"));
    }
    assert!(paged.broker.memory_used() > 2000 * SLOT_COST, "never paged");
    paged.broker.set_mirroring(true);
    for i in 2000..3000 {
        paged.send(&format!("m{i}"));
    }
    // Only the first `READ_AHEAD` stay: eviction leaves a queue's read-ahead window.
    let mut window = Paged::new(usize::MAX);
    for i in 0..READ_AHEAD {
        window.send(&format!("m{i}"));
    }
    let expected = window.broker.memory_used() + (3000 - READ_AHEAD) * SLOT_COST;
    assert_eq!(paged.broker.memory_used(), expected);
    paged.broker.set_mirroring(false);
    paged.subscribe(100);
    assert_eq!(paged.drain(), bodies(0..3000));
    assert_eq!(paged.broker.memory_used(), 0);
}

/// Only records the journal holds are read: a body whose record is not durable yet waits,
/// and the broker says when the journal has caught up with it.
#[test]
fn nothing_is_read_before_its_record_is_durable() {
    let mut paged = Paged::subscribed_to(5);
    assert!(
        paged.broker.dispatch(NOW).is_empty(),
        "the first body is on disk only"
    );
    let fetches = paged.broker.wanted_reads(Seq(2));
    let asked: Vec<Seq> = fetches.iter().map(|f| f.record).collect();
    assert_eq!(asked, [Seq(1), Seq(2)]);
    // (durable, read-ahead due again?)
    for (durable, due) in [(2, false), (3, true), (5, true)] {
        assert_eq!(paged.broker.reads_wait_for(Seq(durable)), due, "{durable}");
    }
    let asked: Vec<Seq> = paged
        .broker
        .wanted_reads(Seq(5))
        .iter()
        .map(|f| f.record)
        .collect();
    assert_eq!(asked, [Seq(3), Seq(4), Seq(5)]);
    assert!(
        !paged.broker.reads_wait_for(Seq(5)),
        "nothing waits any more"
    );
}

/// A record that does not read back holds its message back, says where, and lets the
/// others through; an answer for a message consumed meanwhile changes nothing.
#[test]
fn a_damaged_body_is_held_back_and_a_late_answer_is_ignored() {
    let mut paged = Paged::subscribed_to(4);
    let fetches = paged.broker.wanted_reads(Seq(4));
    let mut answers = paged.read(&fetches);
    answers[1].1 =
        Fetched::Bad("journal/00000000000000000001.seg at offset 200: checksum mismatch".into());
    let late = answers.pop().unwrap();
    for (fetch, fetched) in answers {
        let loaded = paged.broker.loaded(&fetch, fetched);
        if fetch.record == Seq(2) {
            let Loaded::Unreadable(why) = loaded else {
                panic!("the damaged body was taken: {loaded:?}");
            };
            assert!(
                why.contains("offset 200") && why.contains("mmq-2-0"),
                "{why}"
            );
        }
    }
    // m1 is passed over; m3's body is still on its way, so the queue waits there.
    let first = paged.broker.dispatch(NOW);
    assert_eq!(first.iter().map(body).collect::<Vec<_>>(), ["m0", "m2"]);
    // m3's answer comes: it is taken and m3 goes out.
    assert_eq!(paged.broker.loaded(&late.0, late.1.clone()), Loaded::Done);
    assert_eq!(
        paged
            .broker
            .dispatch(NOW)
            .iter()
            .map(body)
            .collect::<Vec<_>>(),
        ["m3"]
    );
    // The same answer again, for a message now in flight, changes nothing.
    assert_eq!(paged.broker.loaded(&late.0, late.1), Loaded::Done);
    assert_eq!(
        paged.broker.message_count(),
        4,
        "the unreadable one is kept"
    );
}

/// Compaction: the messages a run of records holds are gathered (bodies read back first),
/// carried forward in one record that becomes their holder, and a store replayed without
/// the original records rebuilds the same messages from it.
#[test]
fn carried_messages_move_to_the_new_record_and_replay_without_their_originals() {
    // m1..m4 consumed: records 1 and 6 hold m0 and m5, all that is left.
    let mut paged = Paged::subscribed_to(6);
    let fetches = paged.broker.wanted_reads(Seq(6));
    for (fetch, fetched) in paged.read(&fetches) {
        paged.broker.loaded(&fetch, fetched);
    }
    let delivered = paged.broker.dispatch(NOW);
    paged.ack(&delivered[1..5]);
    // The same journal replayed, as after a restart: m0 and m5 are paged out.
    let mut fresh = Paged::new(0);
    std::mem::swap(&mut fresh.journal, &mut paged.journal);
    for record in &fresh.journal {
        let replayed = fresh.broker.replay(record, false).unwrap();
        if replayed.applied.durable {
            fresh.broker.placed(record.seq, placement(record.seq));
        }
    }
    let records = Seq(1)..Seq(7);
    let reads = fresh
        .broker
        .gather_to_carry(records.clone(), Seq(7))
        .expect_err("the bodies are on disk only");
    assert_eq!(reads.len(), 2);
    for (fetch, fetched) in fresh.read(&reads) {
        fresh.broker.loaded(&fetch, fetched);
    }
    let carried = fresh.broker.gather_to_carry(records, Seq(7)).unwrap();
    let ids: Vec<String> = carried.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(ids, ["mmq-1-0", "mmq-6-0"]);
    let applied = fresh.record(Op::Carry(carried));
    assert_eq!(
        (applied.added, applied.removed.clone()),
        (2, vec![Seq(1), Seq(6)])
    );
    // Replayed from the Carry record alone (the segments before it deleted).
    let mut replayed = Paged::new(0);
    let carry = fresh.journal.last().unwrap().clone();
    replayed.broker.replay(&carry, false).unwrap();
    replayed.broker.placed(carry.seq, placement(carry.seq));
    replayed.journal = fresh.journal.clone();
    replayed.subscribe(10);
    assert_eq!(replayed.drain(), ["m0", "m5"]);
    fresh.subscribe(10);
    assert_eq!(fresh.drain(), ["m0", "m5"]);
}

/// Paged-out messages moved into a queue whose read-ahead has passed their ids (older
/// than what it holds) are read back and delivered all the same, in id order, and each
/// copy says the same where it was sent, whether it stayed in memory or was rebuilt.
#[test]
fn moved_paged_messages_behind_the_read_ahead_are_delivered() {
    let mut paged = Paged::new(0);
    let sent_to_dlq = |body: &str| {
        Op::Send(NewMessage {
            destination: Destination::Queue("elsewhere".into()),
            headers: Vec::new(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            persistent: true,
        })
    };
    paged.record(sent_to_dlq("old0"));
    paged.record(sent_to_dlq("old1"));
    for i in 0..3 {
        paged.send(&format!("m{i}"));
    }
    paged.subscribe(10);
    // The consumer takes q's messages: the read-ahead has looked past them.
    let first = paged.drain();
    assert_eq!(first, bodies(0..3));
    let removals = paged.broker.purge_plan("elsewhere").unwrap();
    paged.record(Op::Move {
        to: "q".into(),
        removals,
    });
    let moved = paged.drain();
    assert_eq!(moved, ["old0", "old1"], "not stuck behind the cursor");
}

/// A message moved away and back carries no `original-destination` in memory, exactly as
/// its record rebuilds it.
#[test]
fn a_message_moved_back_is_stored_as_sent() {
    let mut broker = Broker::new(6, 0);
    let sent = NewMessage {
        destination: Destination::Queue("a".into()),
        headers: vec![("k".into(), "v".into())],
        body: bytes::Bytes::from_static(b"x"),
        persistent: true,
    };
    broker.apply(Seq(1), Op::Send(sent.clone()), true);
    let id = MessageId::new(Seq(1), 0);
    broker.apply(
        Seq(2),
        Op::Move {
            to: "b".into(),
            removals: vec![Removal::new("a", id)],
        },
        true,
    );
    let in_b = broker.browse("b", 1).unwrap();
    let BrowsedBody::InMemory(message) = &in_b[0].body else {
        panic!("in memory")
    };
    assert_eq!(
        message.headers.last(),
        Some(&("original-destination".to_string(), "/queue/a".to_string()))
    );
    assert_eq!(
        *stored_message(id, &sent, "b"),
        **message,
        "rebuilt from its record"
    );
    broker.apply(
        Seq(3),
        Op::Move {
            to: "a".into(),
            removals: vec![Removal::new("b", id)],
        },
        true,
    );
    let in_a = broker.browse("a", 1).unwrap();
    let BrowsedBody::InMemory(back) = &in_a[0].body else {
        panic!("in memory")
    };
    assert_eq!(
        back.headers, sent.headers,
        "no original-destination once back"
    );
    assert_eq!(*stored_message(id, &sent, "a"), **back);
}

/// Paged-out messages behind more unselected ones than the read-ahead reaches on its own
/// (and fewer than `selector_scan`) are still read back: it goes on from where dispatch
/// stopped, not from the head.
#[test]
fn a_selecting_consumer_is_not_starved_behind_unselected_paged_messages() {
    let mut paged = Paged::new(0);
    for i in 0..900 {
        paged.send(&format!("b{i}"));
    }
    for i in 0..20 {
        paged.send(&format!("a{i}"));
    }
    paged.subscribe_selecting(10, Some("n LIKE 'a%'"));
    let expected: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    assert_eq!(paged.drain(), expected);
}
