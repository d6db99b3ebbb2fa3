//! The core stepped by hand: an in-memory log, no thread, no file, no socket. Each test
//! feeds inputs and reads the outputs a server would carry out.

use super::*;
use crate::broker::{AckMode, Destination, Fetch, NewMessage, Subscribing};
use crate::journal::{Command as Write, Fetched, Pace};
use crate::repl::group::LinkId;
use crate::repl::message::{CatchUp, Standing};
use crate::repl::role::{Action, Event};

const MASTER: Policy = Policy::MASTER;

const SLAVE: Policy = Policy {
    is_slave: true,
    ..MASTER
};

fn empty_store() -> Store {
    Store {
        broker: Broker::new(6, 0),
        log: Log::empty(1 << 20),
        store_id: "A".into(),
        epochs: vec![EpochStart {
            epoch: Epoch::FIRST,
            first_seq: Seq::FIRST,
        }],
        next_seq: Seq::FIRST,
    }
}

fn message(body: &str) -> NewMessage {
    NewMessage {
        destination: Destination::Queue("q".into()),
        headers: Vec::new(),
        body: body.to_string().into(),
        persistent: true,
    }
}

/// A core stepped through `Started`, with what that produced thrown away.
fn started(policy: Policy, slave_ack: SlaveAck) -> Core {
    let mut core = Core::new(empty_store(), policy, slave_ack);
    core.step(Input::Role(Event::Started));
    if !policy.is_slave {
        // The master records that it serves alone before it releases anything.
        assert!(outputs(&mut core)
            .iter()
            .any(|o| matches!(o, Output::RecordAloneSince(Some(Seq(1))))));
        core.step(Input::AloneRecorded);
    }
    outputs(&mut core);
    core
}

fn outputs(core: &mut Core) -> Vec<Output> {
    let mut out = Vec::new();
    core.take_outputs(&mut out);
    out
}

/// The receipt ids the outputs send, in order.
fn receipts(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ToSession(_, Outgoing::Frame(frame)) if frame.command == Command::Receipt => {
                frame.header("receipt-id").map(str::to_string)
            }
            _ => None,
        })
        .collect()
}

fn send(core: &mut Core, body: &str, receipt: &str) -> Vec<Output> {
    core.step(Input::Client(
        SessionId(1),
        Request::Send {
            message: message(body),
            receipt: Some(receipt.into()),
        },
    ));
    outputs(core)
}

/// A slave with an empty journal of the master's store (store "A") asks to attach on
/// `link`.
fn attach_empty_slave(core: &mut Core, link: LinkId, advertised: Option<&str>) {
    core.step(Input::Attach {
        link,
        standing: Standing {
            store_id: "A".into(),
            epochs: Vec::new(),
            last: None,
            alone_since: None,
        },
        advertised: advertised.map(str::to_string),
    });
}

fn good(seq: u64) -> Record {
    Record {
        epoch: Epoch::FIRST,
        seq: Seq(seq),
        payload: codec::encode(&Op::Send(message("m"))).unwrap().into(),
    }
}

#[test]
fn a_send_is_journaled_and_its_receipt_waits_for_the_disk() {
    let mut core = started(MASTER, SlaveAck::Received);
    let out = send(&mut core, "one", "r1");
    assert!(
        matches!(&out[..], [Output::Journal(Write::Append { durable: true, entry, .. })] if entry.seq == Seq(1)),
        "{out:?}"
    );
    core.step(Input::Durable(Seq(1)));
    assert_eq!(receipts(&outputs(&mut core)), ["r1"]);
}

/// The rule that matters most: no RECEIPT before the local disk and the in-sync slave
/// both hold the record, whichever comes first.
#[test]
fn with_a_slave_a_receipt_waits_for_both_the_disk_and_the_slave() {
    let mut core = started(MASTER, SlaveAck::Received);
    let link = LinkId(7);
    attach_empty_slave(&mut core, link, None);
    let out = outputs(&mut core);
    let attached = out.iter().find_map(|o| match o {
        Output::Attached {
            link: l,
            result: Ok(attached),
        } if *l == link => Some(attached.clone()),
        _ => None,
    });
    let attached = attached.expect("the empty store is attached at once");
    assert_eq!(attached.catch_up, CatchUp::Append { from: Seq(1) });
    // An empty store has nothing to catch up on: the slave is in sync at its attach.
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::TellInSync(l) if *l == link)));
    assert_eq!(core.role(), Role::MasterWithSlave);

    // Disk first, then the slave.
    let out = send(&mut core, "one", "r1");
    assert!(out.iter().any(
        |o| matches!(o, Output::Ship { link: l, record } if *l == link && record.seq == Seq(1))
    ));
    core.step(Input::Durable(Seq(1)));
    assert!(
        receipts(&outputs(&mut core)).is_empty(),
        "the slave has not acknowledged"
    );
    core.step(Input::ReplicaAck { link, seq: Seq(1) });
    assert_eq!(receipts(&outputs(&mut core)), ["r1"]);

    // The slave first, then the disk.
    send(&mut core, "two", "r2");
    core.step(Input::ReplicaAck { link, seq: Seq(2) });
    assert!(
        receipts(&outputs(&mut core)).is_empty(),
        "not on this disk yet"
    );
    core.step(Input::Durable(Seq(2)));
    assert_eq!(receipts(&outputs(&mut core)), ["r2"]);
}

#[test]
fn losing_the_in_sync_slave_holds_receipts_until_serving_alone_is_recorded() {
    let mut core = started(MASTER, SlaveAck::Received);
    let link = LinkId(1);
    attach_empty_slave(&mut core, link, Some("tcp://127.0.0.1:1"));
    core.step(Input::ReplicaAck { link, seq: Seq(0) });
    send(&mut core, "one", "r1");
    core.step(Input::Durable(Seq(1)));
    core.step(Input::Detach {
        link,
        why: "closed".into(),
    });
    let out = outputs(&mut core);
    assert!(receipts(&out).is_empty());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::ProbeSlaves(a) if a == &["tcp://127.0.0.1:1"])));
    core.step(Input::SlavesGone("refused".into()));
    let out = outputs(&mut core);
    assert!(
        receipts(&out).is_empty(),
        "not before alone_since is on disk"
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::RecordAloneSince(Some(Seq(1))))));
    core.step(Input::AloneRecorded);
    assert_eq!(receipts(&outputs(&mut core)), ["r1"]);
}

/// A slave that was welcomed into an empty store.
fn mirroring(slave_ack: SlaveAck) -> Core {
    let mut core = Core::new(empty_store(), SLAVE, slave_ack);
    core.step(Input::Role(Event::Started));
    assert!(outputs(&mut core)
        .iter()
        .any(|o| matches!(o, Output::Role(Action::DialMaster))));
    core.step(Input::Welcomed(Box::new(empty_store())));
    let out = outputs(&mut core);
    let pace = match slave_ack {
        SlaveAck::Received => Pace::Relaxed,
        SlaveAck::Durable => Pace::Eager,
    };
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Pace(p) if *p == pace)));
    // The first acknowledgement tells the master where the slave stands.
    assert!(out.iter().any(|o| matches!(o, Output::AckMaster(Seq(0)))));
    assert_eq!(core.role(), Role::SlaveCatchingUp);
    assert!(core.broker.mirroring(), "bodies stay in the journal");
    core
}

fn acks(outputs: &[Output]) -> Vec<u64> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::AckMaster(seq) => Some(seq.0),
            _ => None,
        })
        .collect()
}

#[test]
fn received_acknowledges_what_was_applied_before_the_disk_has_it_and_never_past_a_bad_record() {
    let mut core = mirroring(SlaveAck::Received);
    core.step(Input::Replicate(vec![good(1), good(2)]));
    // No durable report has come in.
    assert_eq!(acks(&outputs(&mut core)), [2]);
    let unreadable = Record {
        payload: bytes::Bytes::from_static(b"not an op"),
        ..good(4)
    };
    core.step(Input::Replicate(vec![good(3), unreadable, good(5)]));
    let out = outputs(&mut core);
    assert_eq!(acks(&out), [3]);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Role(Action::Exit(crate::repl::role::EXIT_REFUSED))
    )));
    core.step(Input::Replicate(vec![good(6)]));
    core.step(Input::Durable(Seq(6)));
    assert!(acks(&outputs(&mut core)).is_empty());
}

#[test]
fn durable_acknowledges_only_what_the_disk_holds() {
    let mut core = mirroring(SlaveAck::Durable);
    core.step(Input::Replicate(vec![good(1), good(2)]));
    assert!(acks(&outputs(&mut core)).is_empty());
    core.step(Input::Durable(Seq(1)));
    assert_eq!(acks(&outputs(&mut core)), [1]);
    core.step(Input::Durable(Seq(2)));
    assert_eq!(acks(&outputs(&mut core)), [2]);
}

#[test]
fn a_slave_acknowledges_at_most_a_writer_queue_past_its_disk() {
    use replication::{held, MAX_ACKED_AHEAD_OF_DISK};
    assert_eq!(held(Seq(21), Seq(0)), Seq(20));
    assert_eq!(
        held(Seq(20_000), Seq(100)),
        Seq(100 + MAX_ACKED_AHEAD_OF_DISK)
    );
    assert_eq!(held(Seq::LAST, Seq(u64::MAX - 3)), Seq(u64::MAX - 1));
}

/// A slave that mirrored record 1, was in sync, and promoted itself when its master was
/// lost and the probe found none.
fn promoted_after_one_record() -> Core {
    let mut core = mirroring(SlaveAck::Received);
    core.step(Input::Replicate(vec![good(1)]));
    for event in [
        Event::InSyncWithMaster,
        Event::MasterLost("closed".into()),
        Event::MasterGone("refused".into()),
    ] {
        core.step(Input::Role(event));
    }
    assert_eq!(core.role(), Role::MasterAlone);
    core
}

#[test]
fn a_promoted_slave_starts_an_epoch_and_records_it() {
    let mut core = promoted_after_one_record();
    let out = outputs(&mut core);
    assert_eq!(core.epoch(), Epoch(2));
    assert!(out.iter().any(|o| matches!(o, Output::Pace(Pace::Eager))));
    assert!(!core.broker.mirroring(), "consumers read bodies back");
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Journal(Write::Append { entry, .. }) if entry.seq == Seq(2) && entry.epoch == Epoch(2)
    )));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::RecordEpochs(epochs) if epochs.last() == Some(&EpochStart { epoch: Epoch(2), first_seq: Seq(2) })
    )));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Role(Action::OpenClientListener))));
}

#[test]
fn a_promoted_slave_reads_a_body_back_once_its_journal_holds_the_record() {
    // Record 1 is applied and paged out; the relaxed journal has not reported it
    // durable yet.
    let mut core = promoted_after_one_record();
    outputs(&mut core);
    core.step(Input::Client(SessionId(2), subscribe_to_q()));
    core.step(Input::Tick);
    let reads = |out: Vec<Output>| -> Vec<Fetch> {
        out.into_iter()
            .filter_map(|o| match o {
                Output::Read(reads) => Some(reads.into_iter().map(|(fetch, _)| fetch)),
                _ => None,
            })
            .flatten()
            .collect()
    };
    assert!(
        reads(outputs(&mut core)).is_empty(),
        "a record is read back only once it is on disk"
    );
    // The promotion's epoch record (seq 2) made everything before it durable: the body
    // is read back without waiting for anything else to happen, and delivered.
    core.step(Input::Durable(Seq(2)));
    let fetches = reads(outputs(&mut core));
    assert_eq!(
        fetches.iter().map(|f| f.record).collect::<Vec<_>>(),
        [Seq(1)]
    );
    let fetched = fetches
        .into_iter()
        .map(|fetch| (fetch, Fetched::Record(good(1))))
        .collect();
    core.step(Input::Fetched(fetched));
    core.step(Input::Tick);
    assert!(outputs(&mut core).iter().any(|o| matches!(
        o,
        Output::ToSession(SessionId(2), Outgoing::Deliver(d)) if &d.message.body[..] == b"m"
    )));
}

fn subscribe_to_q() -> Request {
    Request::Subscribe {
        sub: 1,
        subscribing: Subscribing {
            destination: Destination::Queue("q".into()),
            subscription: "s".into(),
            ack: AckMode::Client,
            prefetch: 10,
            selector: None,
        },
        durable: None,
        receipt: None,
    }
}

#[test]
fn a_subscriber_gets_the_message_and_its_session_closing_requeues_it() {
    let mut core = started(MASTER, SlaveAck::Received);
    core.step(Input::Client(SessionId(2), subscribe_to_q()));
    send(&mut core, "one", "r1");
    core.step(Input::Tick);
    let delivered = outputs(&mut core)
        .iter()
        .filter(|o| matches!(o, Output::ToSession(SessionId(2), Outgoing::Deliver(_))))
        .count();
    assert_eq!(delivered, 1);
    core.step(Input::Client(SessionId(2), Request::Close));
    let out = outputs(&mut core);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::CloseSession(SessionId(2)))));
    assert_eq!(core.broker.message_count(), 1, "requeued, not lost");
}

mod admin;
mod held;
