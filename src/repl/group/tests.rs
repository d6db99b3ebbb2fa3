//! The replication group stepped by hand: receipt release across the disk, the
//! replica's acknowledgements and the role, and the bookkeeping around a lost replica.

use super::*;

const MASTER: Policy = Policy {
    is_slave: false,
    wait_for_slave: false,
    shutdown_on_slave_failure: false,
    shutdown_on_master_failure: false,
};

/// The steps to carry out, without the log entries.
fn work(steps: Vec<Step>) -> Vec<Step> {
    steps
        .into_iter()
        .filter(|s| !matches!(s, Step::Stepped { .. }))
        .collect()
}

fn started(policy: Policy) -> Group {
    let mut group = Group::new(policy);
    group.step(&Event::Started, Seq(1));
    group
}

/// Receipt release: the local journal's durable seq × the replica's acknowledgement ×
/// the role. Records 1..=10 predate the replica's attach (gate from 11); it is in sync
/// once it holds 10.
#[test]
fn receipts_are_released_only_where_disk_and_replica_agree() {
    #[derive(Debug, Clone, Copy)]
    enum Replica {
        None,
        CatchingUp(u64),
        InSync(u64),
        LostInSync,
        LostInSyncCarryingOn,
    }
    #[rustfmt::skip]
    let table = [
        // (replica state, durable, expected release point)
        (Replica::None, 15, 15),
        (Replica::CatchingUp(0), 15, 10),
        (Replica::CatchingUp(0), 8, 8),
        (Replica::CatchingUp(9), 15, 10),
        (Replica::InSync(12), 15, 12),
        (Replica::InSync(15), 12, 12),
        (Replica::InSync(20), 20, 20),
        // Lost while in sync at 13: nothing is released until the decision is
        // recorded, then the disk alone.
        (Replica::LostInSync, 15, 0),
        (Replica::LostInSyncCarryingOn, 15, 15),
    ];
    for (state, durable, expected) in table {
        let mut group = started(MASTER);
        let link = LinkId(1);
        if !matches!(state, Replica::None) {
            group.attach(link, Seq(11), Seq(10), None).unwrap();
        }
        match state {
            Replica::None => {}
            Replica::CatchingUp(acked) => {
                group.acknowledged(link, Seq(acked), Seq(16));
                assert!(!group.replica().unwrap().in_sync);
            }
            Replica::InSync(acked) => {
                group.acknowledged(link, Seq(acked), Seq(21));
                assert_eq!(group.role(), Role::MasterWithSlave);
            }
            Replica::LostInSync | Replica::LostInSyncCarryingOn => {
                group.acknowledged(link, Seq(13), Seq(16));
                let steps = work(group.detached(link, "closed".into(), Seq(16)));
                assert_eq!(steps, vec![Step::Role(Action::ProbeSlave)]);
                assert_eq!(group.role(), Role::MasterCheckingSlave);
            }
        }
        if matches!(state, Replica::LostInSyncCarryingOn) {
            let steps = work(group.step(&Event::SlaveGone("refused".into()), Seq(16)));
            // The first seq that goes out with one copy is the one after the last the
            // replica acknowledged; it is recorded before anything is released.
            assert_eq!(steps, vec![Step::RecordAloneSince(Seq(14))]);
            assert_eq!(group.release_point(Seq(durable)), Seq::ZERO);
            assert_eq!(group.alone_recorded(), Step::Release);
        }
        assert_eq!(
            group.release_point(Seq(durable)),
            Seq(expected),
            "{state:?} with durable {durable}"
        );
    }
}

#[test]
fn a_replica_is_told_once_that_it_is_in_sync_and_the_master_stops_serving_alone() {
    let mut group = started(MASTER);
    assert_eq!(group.role(), Role::MasterAlone);
    group.attach(LinkId(4), Seq(101), Seq(100), None).unwrap();
    assert!(work(group.acknowledged(LinkId(4), Seq(99), Seq(101))) == vec![Step::Release]);
    assert_eq!(
        work(group.acknowledged(LinkId(4), Seq(100), Seq(101))),
        vec![
            Step::TellInSync(LinkId(4)),
            Step::Role(Action::RecordInSync),
            Step::Release
        ]
    );
    assert_eq!(
        work(group.acknowledged(LinkId(4), Seq(101), Seq(102))),
        vec![Step::Release]
    );
    // A late message from another link changes nothing.
    assert!(group.acknowledged(LinkId(3), Seq(500), Seq(102)).is_empty());
    assert!(group.detached(LinkId(3), "old".into(), Seq(102)).is_empty());
    assert_eq!(
        group.attach(LinkId(5), Seq(102), Seq(101), None),
        Err(Refusal {
            reason: "another slave is already attached".into(),
            retry: true
        })
    );
}

#[test]
fn losing_a_replica_that_never_came_in_sync_releases_at_once() {
    let mut group = started(MASTER);
    group.attach(LinkId(1), Seq(11), Seq(10), None).unwrap();
    let steps = work(group.detached(LinkId(1), "closed".into(), Seq(20)));
    assert_eq!(steps, vec![Step::Release]);
    assert_eq!(group.release_point(Seq(19)), Seq(19));
}

#[test]
fn a_strict_master_stops_without_releasing_what_waited_for_its_replica() {
    let mut group = started(Policy {
        shutdown_on_slave_failure: true,
        ..MASTER
    });
    group.attach(LinkId(1), Seq(1), Seq(0), None).unwrap();
    group.acknowledged(LinkId(1), Seq(3), Seq(6));
    let steps = work(group.detached(LinkId(1), "closed".into(), Seq(6)));
    assert_eq!(
        steps,
        vec![Step::Role(Action::Exit(role::EXIT_SLAVE_FAILED))]
    );
    assert_eq!(group.release_point(Seq(5)), Seq::ZERO);
}

#[test]
fn a_promoted_slave_serves_alone_and_records_it_when_a_new_replica_is_lost() {
    let mut group = started(Policy {
        is_slave: true,
        ..MASTER
    });
    for event in [
        Event::MasterReached,
        Event::InSyncWithMaster,
        Event::MasterLost("closed".into()),
    ] {
        group.step(&event, Seq(50));
    }
    let steps = group.step(&Event::MasterGone("refused".into()), Seq(50));
    assert_eq!(group.role(), Role::MasterAlone);
    assert!(steps.contains(&Step::Role(Action::Promote)));
    // Serving alone already: a replica that never came in sync is forgotten at once.
    group.attach(LinkId(9), Seq(51), Seq(50), None).unwrap();
    assert_eq!(
        work(group.detached(LinkId(9), "closed".into(), Seq(60))),
        vec![Step::Release]
    );
}

#[test]
fn no_slave_attaches_while_the_master_decides_what_a_lost_one_means() {
    let mut group = started(MASTER);
    group.attach(LinkId(1), Seq(1), Seq(0), None).unwrap();
    group.acknowledged(LinkId(1), Seq(0), Seq(1));
    group.detached(LinkId(1), "closed".into(), Seq(5));
    assert_eq!(group.role(), Role::MasterCheckingSlave);
    let refused = group.attach(LinkId(2), Seq(5), Seq(4), None).unwrap_err();
    assert!(refused.retry, "{refused:?}");
    let steps = work(group.step(&Event::SlaveGone("refused".into()), Seq(5)));
    assert_eq!(steps, vec![Step::RecordAloneSince(Seq(1))]);
    group.alone_recorded();
    // Decided: a new slave may attach, come in sync and be counted on.
    group.attach(LinkId(2), Seq(5), Seq(4), None).unwrap();
    group.acknowledged(LinkId(2), Seq(4), Seq(5));
    assert_eq!(group.role(), Role::MasterWithSlave);
}
