//! Operators' ops stepped by hand: what each records, what it answers, and when it is
//! refused.

use super::*;
use crate::core::AdminOp;

fn op(core: &mut Core, op: AdminOp) -> Vec<Output> {
    core.step(Input::Client(SessionId(9), Request::Admin(op)));
    outputs(core)
}

/// The ERROR's `status` header, if the outputs hold an ERROR.
fn refused(outputs: &[Output]) -> Option<String> {
    outputs.iter().find_map(|o| match o {
        Output::ToSession(_, Outgoing::Frame(frame)) if frame.command == Command::Error => {
            frame.header("status").map(str::to_string)
        }
        _ => None,
    })
}

/// The op of each record the outputs journal.
fn recorded(outputs: &[Output]) -> Vec<Op> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Journal(Write::Append { entry, .. }) => {
                Some(codec::decode(&entry.payload).unwrap())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn each_op_is_a_record_answered_with_the_messages_it_affected() {
    let mut core = started(MASTER, SlaveAck::Received);
    for (i, body) in ["a", "b", "c"].iter().enumerate() {
        send(&mut core, body, &format!("s{i}"));
    }
    core.step(Input::Durable(Seq(3)));
    outputs(&mut core);

    let moved = op(
        &mut core,
        AdminOp::Move {
            from: "q".into(),
            to: "r".into(),
        },
    );
    let ops = recorded(&moved);
    assert!(
        matches!(&ops[..], [Op::Move { to, removals }] if to == "r" && removals.len() == 3),
        "{ops:?}"
    );
    assert!(receipts(&moved).is_empty(), "answered once durable");
    core.step(Input::Durable(Seq(4)));
    assert_eq!(receipts(&outputs(&mut core)), ["3"]);
    let (queues, _) = core.destinations();
    let depth = |name: &str| queues.iter().find(|q| q.name == name).map(|q| q.depth);
    assert_eq!((depth("q"), depth("r")), (Some(0), Some(3)));

    let purged = op(&mut core, AdminOp::Purge { queue: "r".into() });
    assert!(matches!(&recorded(&purged)[..], [Op::Ack(removals)] if removals.len() == 3));
    let deleted = op(&mut core, AdminOp::Delete { queue: "q".into() });
    assert!(
        matches!(&recorded(&deleted)[..], [Op::DeleteQueue { queue, removals }] if queue == "q" && removals.is_empty())
    );
    core.step(Input::Durable(Seq(6)));
    assert_eq!(receipts(&outputs(&mut core)), ["3", "0"]);
    assert!(
        core.destinations().0.iter().all(|q| q.name != "q"),
        "deleted"
    );
}

#[test]
fn refusals_record_nothing() {
    let mut core = started(MASTER, SlaveAck::Received);
    send(&mut core, "a", "s");
    core.step(Input::Client(
        SessionId(2),
        Request::Subscribe {
            sub: 1,
            subscribing: Subscribing {
                destination: Destination::Queue("q".into()),
                subscription: "1".into(),
                ack: AckMode::ClientIndividual,
                prefetch: 10,
                selector: None,
            },
            durable: None,
            receipt: None,
        },
    ));
    outputs(&mut core);
    let next = core.next_seq();
    let cases = [
        (
            AdminOp::Purge {
                queue: "none".into(),
            },
            "404",
        ),
        (AdminOp::Delete { queue: "q".into() }, "409"),
        (
            AdminOp::Move {
                from: "q".into(),
                to: "q".into(),
            },
            "400",
        ),
    ];
    for (admin_op, status) in cases {
        let out = op(&mut core, admin_op.clone());
        assert_eq!(refused(&out).as_deref(), Some(status), "{admin_op:?}");
        assert!(recorded(&out).is_empty(), "{admin_op:?}");
    }
    assert_eq!(core.next_seq(), next);

    let mut slave = started(SLAVE, SlaveAck::Received);
    let out = op(&mut slave, AdminOp::Purge { queue: "q".into() });
    assert_eq!(
        refused(&out).as_deref(),
        Some("409"),
        "a slave takes no ops"
    );
}

/// A purge of more messages than one record should hold is several records, each well
/// inside a segment, answered once with the total.
#[test]
fn a_large_purge_is_cut_into_records_that_fit_a_segment() {
    let mut core = started(MASTER, SlaveAck::Received);
    let count = 20_000;
    for i in 0..count {
        core.step(Input::Client(
            SessionId(1),
            Request::Send {
                message: message(&i.to_string()),
                receipt: None,
            },
        ));
    }
    core.step(Input::Durable(core.next_seq().prev()));
    outputs(&mut core);
    let purged = op(&mut core, AdminOp::Purge { queue: "q".into() });
    let records: Vec<(usize, usize)> = purged
        .iter()
        .filter_map(|o| match o {
            Output::Journal(Write::Append { entry, .. }) => match codec::decode(&entry.payload) {
                Ok(Op::Ack(removals)) => Some((removals.len(), entry.payload.len())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(records.len() > 1, "{records:?}");
    assert_eq!(records.iter().map(|(n, _)| n).sum::<usize>(), count);
    // Log::empty(1 MiB) in these tests: a quarter of a segment at most.
    assert!(
        records.iter().all(|(_, bytes)| *bytes <= 256 << 10),
        "{records:?}"
    );
    core.step(Input::Durable(core.next_seq().prev()));
    assert_eq!(receipts(&outputs(&mut core)), [count.to_string()]);
}
