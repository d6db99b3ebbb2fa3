//! `replication.min_replicas` stepped by hand: persistent work held, released in order
//! once a slave is in sync, and failed with an ERROR after its timeout.

use super::*;

/// `min_replicas = 1`: a master alone holds persistent work back, unapplied, with what
/// its session sends after it, and lets the rest through; a slave in sync releases it in
/// order.
#[test]
fn with_min_replicas_persistent_work_waits_for_a_slave_in_sync() {
    let policy = Policy {
        min_replicas: 1,
        ..MASTER
    };
    let mut core = started(policy, SlaveAck::Received);
    assert!(send(&mut core, "held", "r1").is_empty(), "nothing applied");
    assert!(core.holding());
    // The same session's next frame waits behind it, even a non-persistent one.
    let mut transient = message("after");
    transient.persistent = false;
    core.step(Input::Client(
        SessionId(1),
        Request::Send {
            message: transient.clone(),
            receipt: Some("r2".into()),
        },
    ));
    // Another session's non-persistent SEND needs no replica.
    core.step(Input::Client(
        SessionId(2),
        Request::Send {
            message: transient,
            receipt: Some("other".into()),
        },
    ));
    assert_eq!(
        core.next_seq(),
        Seq(2),
        "only the other session's SEND was applied"
    );
    core.step(Input::Durable(Seq(1)));
    assert_eq!(receipts(&outputs(&mut core)), ["other"]);

    let link = LinkId(3);
    attach_empty_slave(&mut core, link, None);
    core.step(Input::ReplicaAck { link, seq: Seq(1) });
    assert!(!core.holding(), "released once a slave is in sync");
    let out = outputs(&mut core);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Ship { record, .. } if record.seq == Seq(2))));
    core.step(Input::Durable(Seq(3)));
    core.step(Input::ReplicaAck { link, seq: Seq(3) });
    assert_eq!(receipts(&outputs(&mut core)), ["r1", "r2"]);
}

/// Held work that waits `min_replicas_timeout_ms` fails its session with an ERROR that
/// says how many slaves are in sync and how many are needed; nothing of it is applied.
#[test]
fn held_work_times_out_with_an_error_and_nothing_applied() {
    let policy = Policy {
        min_replicas: 2,
        min_replicas_timeout_ms: 1000,
        ..MASTER
    };
    let mut core = started(policy, SlaveAck::Received);
    send(&mut core, "held", "r1");
    core.step(Input::Clock(500));
    core.step(Input::Clock(1400));
    assert!(outputs(&mut core).is_empty(), "not yet: 900 ms held");
    core.step(Input::Clock(1500));
    let out = outputs(&mut core);
    let error = out.iter().find_map(|o| match o {
        Output::ToSession(SessionId(1), Outgoing::Final(frame)) => Some(frame),
        _ => None,
    });
    let error = error.expect("an ERROR for the held session");
    assert_eq!(error.command, Command::Error);
    assert_eq!(error.header("receipt-id"), Some("r1"));
    let text = format!("{error:?}");
    assert!(text.contains("0 slave(s) in sync, 2 needed"), "{text}");
    assert!(!core.holding());
    assert_eq!(core.next_seq(), Seq(1), "nothing was applied");
}
