//! The replication group stepped by hand: receipt release across the disk, the
//! replicas' acknowledgements and the role; the succession; and the bookkeeping around a
//! lost replica.

use super::*;

const MASTER: Policy = Policy::MASTER;

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

fn address(n: u64) -> Option<String> {
    Some(format!("tcp://127.0.0.1:{n}"))
}

/// A master with a replica on `link` that caught up at seq `at` and is in sync.
fn with_in_sync(group: &mut Group, link: u64, at: u64) {
    group
        .attach(LinkId(link), Seq(at + 1), Seq(at), address(link))
        .unwrap();
    group.release_point(Seq(at));
    group.acknowledged(LinkId(link), Seq(at), Seq(at + 1));
    assert!(group
        .replicas()
        .iter()
        .any(|r| r.link == LinkId(link) && r.in_sync));
}

/// Receipt release: the local journal's durable seq × the replica's acknowledgement ×
/// the role. The replica attached when records 1..=10 were durable, and 10 had been
/// released.
#[test]
fn receipts_are_released_only_where_disk_and_gating_replicas_agree() {
    #[derive(Debug, Clone, Copy)]
    enum Replica {
        None,
        /// Catching up: it holds nothing up.
        CatchingUp(u64),
        InSync(u64),
        LostInSync,
        LostInSyncCarryingOn,
    }
    #[rustfmt::skip]
    let table = [
        // (replica state, durable, expected release point)
        (Replica::None, 15, 15),
        (Replica::CatchingUp(0), 15, 15),
        (Replica::CatchingUp(9), 8, 10),
        (Replica::InSync(12), 15, 12),
        (Replica::InSync(15), 12, 12),
        (Replica::InSync(20), 20, 20),
        // Lost while in sync: nothing more is released until the decision is
        // recorded, then the disk alone.
        (Replica::LostInSync, 15, 10),
        (Replica::LostInSyncCarryingOn, 15, 15),
    ];
    for (state, durable, expected) in table {
        let mut group = started(MASTER);
        let link = LinkId(1);
        assert_eq!(group.release_point(Seq(10)), Seq(10));
        if !matches!(state, Replica::None) {
            group.attach(link, Seq(11), Seq(10), None).unwrap();
        }
        match state {
            Replica::None => {}
            Replica::CatchingUp(acked) => {
                group.acknowledged(link, Seq(acked), Seq(16));
                assert_eq!(group.replicas()[0].state(), "catching-up");
            }
            Replica::InSync(acked) => {
                group.acknowledged(link, Seq(acked), Seq(21));
                assert_eq!(group.role(), Role::MasterWithSlave);
            }
            Replica::LostInSync | Replica::LostInSyncCarryingOn => {
                group.acknowledged(link, Seq(10), Seq(16));
                assert_eq!(group.role(), Role::MasterWithSlave);
                let steps = work(group.detached(link, "closed".into(), Seq(16)));
                assert_eq!(
                    steps,
                    vec![Step::ProbeSlaves(vec![]), Step::TellSuccession(vec![])]
                );
                assert_eq!(group.role(), Role::MasterCheckingSlave);
            }
        }
        if matches!(state, Replica::LostInSyncCarryingOn) {
            let steps = work(group.slaves_gone("refused".into(), Seq(16)));
            // The first seq that goes out with one copy is the one after the last
            // released; it is recorded before anything more is released.
            assert_eq!(steps, vec![Step::RecordAloneSince(Seq(11))]);
            assert_eq!(group.release_point(Seq(durable)), Seq(10));
            assert_eq!(group.alone_recorded(), Step::Release);
        }
        assert_eq!(
            group.release_point(Seq(durable)),
            Seq(expected),
            "{state:?} with durable {durable}"
        );
    }
}

/// A replica that caught up while receipts went on holds up those after the ones already
/// released, and is in sync once it holds those.
#[test]
fn a_caught_up_replica_joins_behind_what_was_released_then_is_in_sync() {
    let mut group = started(MASTER);
    group
        .attach(LinkId(4), Seq(101), Seq(100), address(4))
        .unwrap();
    assert_eq!(group.release_point(Seq(130)), Seq(130));
    // Caught up to its attach point, behind what was released: it gates from 131.
    assert_eq!(
        work(group.acknowledged(LinkId(4), Seq(120), Seq(141))),
        vec![Step::Release]
    );
    assert_eq!(group.replicas()[0].state(), "joining");
    assert_eq!(group.release_point(Seq(140)), Seq(130));
    assert_eq!(
        work(group.acknowledged(LinkId(4), Seq(135), Seq(141))),
        vec![
            Step::TellSuccession(vec!["tcp://127.0.0.1:4".into()]),
            Step::TellInSync(LinkId(4)),
            Step::Role(Action::RecordInSync),
            Step::Release
        ]
    );
    assert_eq!(group.release_point(Seq(140)), Seq(135));
    assert_eq!(
        work(group.acknowledged(LinkId(4), Seq(141), Seq(142))),
        vec![Step::Release]
    );
    // A late message from another link changes nothing.
    assert!(group.acknowledged(LinkId(3), Seq(500), Seq(142)).is_empty());
    assert!(group.detached(LinkId(3), "old".into(), Seq(142)).is_empty());
}

#[test]
fn two_slaves_in_sync_form_the_succession_in_the_order_they_joined() {
    let mut group = started(MASTER);
    with_in_sync(&mut group, 7, 10);
    group
        .attach(LinkId(3), Seq(11), Seq(10), address(3))
        .unwrap();
    let steps = work(group.acknowledged(LinkId(3), Seq(10), Seq(11)));
    assert!(steps.contains(&Step::TellSuccession(vec![
        "tcp://127.0.0.1:7".into(),
        "tcp://127.0.0.1:3".into()
    ])));
    // Both hold receipts up: the slower one decides.
    group.acknowledged(LinkId(7), Seq(18), Seq(21));
    group.acknowledged(LinkId(3), Seq(14), Seq(21));
    assert_eq!(group.release_point(Seq(20)), Seq(14));
    // The first is lost: receipts wait while it is probed, then the other carries them.
    let steps = work(group.detached(LinkId(7), "closed".into(), Seq(21)));
    assert_eq!(
        steps,
        vec![
            Step::ProbeSlaves(vec!["tcp://127.0.0.1:7".into()]),
            Step::TellSuccession(vec!["tcp://127.0.0.1:3".into()])
        ]
    );
    group.acknowledged(LinkId(3), Seq(20), Seq(21));
    assert_eq!(group.release_point(Seq(20)), Seq(14));
    assert_eq!(
        work(group.slaves_gone("refused".into(), Seq(21))),
        vec![Step::Release]
    );
    assert_eq!(group.role(), Role::MasterWithSlave);
    assert_eq!(group.release_point(Seq(20)), Seq(20));
}

#[test]
fn a_second_slave_lost_during_a_check_is_probed_before_the_decision() {
    let mut group = started(MASTER);
    with_in_sync(&mut group, 1, 10);
    with_in_sync(&mut group, 2, 10);
    group.detached(LinkId(1), "closed".into(), Seq(11));
    let steps = work(group.detached(LinkId(2), "closed".into(), Seq(11)));
    assert_eq!(steps, vec![Step::TellSuccession(vec![])]);
    assert_eq!(
        work(group.slaves_gone("refused".into(), Seq(11))),
        vec![Step::ProbeSlaves(vec!["tcp://127.0.0.1:2".into()])]
    );
    assert_eq!(
        work(group.slaves_gone("refused".into(), Seq(11))),
        vec![Step::RecordAloneSince(Seq(11))]
    );
    assert_eq!(group.role(), Role::MasterAlone);
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
fn a_strict_master_stops_when_its_last_in_sync_replica_is_lost() {
    let mut group = started(Policy {
        shutdown_on_slave_failure: true,
        ..MASTER
    });
    with_in_sync(&mut group, 1, 0);
    with_in_sync(&mut group, 2, 0);
    group.acknowledged(LinkId(1), Seq(3), Seq(6));
    group.acknowledged(LinkId(2), Seq(3), Seq(6));
    assert_eq!(group.release_point(Seq(5)), Seq(3));
    // One is left: it checks and carries on.
    let steps = work(group.detached(LinkId(1), "closed".into(), Seq(6)));
    assert_eq!(
        steps[0],
        Step::ProbeSlaves(vec!["tcp://127.0.0.1:1".into()])
    );
    group.slaves_gone("refused".into(), Seq(6));
    let steps = work(group.detached(LinkId(2), "closed".into(), Seq(6)));
    assert_eq!(steps[0], Step::Role(Action::Exit(role::EXIT_SLAVE_FAILED)));
    group.acknowledged(LinkId(2), Seq(5), Seq(6));
    assert_eq!(
        group.release_point(Seq(5)),
        Seq(3),
        "nothing more is released"
    );
}

#[test]
fn a_master_refuses_slaves_past_max_slaves_and_a_slave_refuses_all() {
    let mut group = started(Policy {
        max_slaves: 1,
        ..MASTER
    });
    group.attach(LinkId(1), Seq(1), Seq(0), None).unwrap();
    let refused = group.attach(LinkId(2), Seq(1), Seq(0), None).unwrap_err();
    assert!(
        refused.retry && refused.reason.contains("max_slaves"),
        "{refused:?}"
    );
    let mut slave = started(Policy {
        is_slave: true,
        ..MASTER
    });
    let refused = slave.attach(LinkId(2), Seq(1), Seq(0), None).unwrap_err();
    assert!(
        refused.retry && refused.reason.contains("not a master"),
        "{refused:?}"
    );
}

#[test]
fn a_slave_checks_the_succession_it_was_told_and_promotes_serving_alone() {
    let mut group = started(Policy {
        is_slave: true,
        ..MASTER
    });
    group.step(&Event::MasterReached, Seq(50));
    group.step(&Event::InSyncWithMaster, Seq(50));
    group.told(vec!["tcp://127.0.0.1:1".into(), "tcp://127.0.0.1:2".into()]);
    let steps = work(group.step(&Event::MasterLost("closed".into()), Seq(50)));
    assert_eq!(
        steps,
        vec![Step::CheckSuccession {
            master: true,
            succession: vec!["tcp://127.0.0.1:1".into(), "tcp://127.0.0.1:2".into()]
        }]
    );
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
    with_in_sync(&mut group, 1, 0);
    group.detached(LinkId(1), "closed".into(), Seq(5));
    assert_eq!(group.role(), Role::MasterCheckingSlave);
    let refused = group.attach(LinkId(2), Seq(5), Seq(4), None).unwrap_err();
    assert!(refused.retry, "{refused:?}");
    let steps = work(group.slaves_gone("refused".into(), Seq(5)));
    assert_eq!(steps, vec![Step::RecordAloneSince(Seq(1))]);
    group.alone_recorded();
    // Decided: a new slave may attach, come in sync and be counted on.
    group.attach(LinkId(2), Seq(5), Seq(4), None).unwrap();
    group.acknowledged(LinkId(2), Seq(4), Seq(5));
    assert_eq!(group.role(), Role::MasterWithSlave);
}

/// Records 1..=2 were non-persistent (never on disk) and released; nothing is durable.
/// A slave attaching then has nothing to catch up on and no record will come for it to
/// acknowledge: it is in sync at its attach. One attaching after durable record 3 is
/// in sync once it holds 3, though it never holds 1 and 2.
#[test]
fn a_slave_that_can_hold_nothing_more_is_in_sync_without_a_record() {
    let mut group = started(MASTER);
    group.release_point(Seq(2));
    let steps = work(group.attach(LinkId(1), Seq(3), Seq(0), address(1)).unwrap());
    assert!(steps.contains(&Step::TellInSync(LinkId(1))), "{steps:?}");

    let mut group = started(MASTER);
    group.release_point(Seq(3));
    let steps = work(group.attach(LinkId(2), Seq(4), Seq(3), address(2)).unwrap());
    assert!(
        !steps.contains(&Step::TellInSync(LinkId(2))),
        "catching up: {steps:?}"
    );
    let steps = group.acknowledged(LinkId(2), Seq(3), Seq(4));
    assert!(steps.contains(&Step::TellInSync(LinkId(2))), "{steps:?}");
}

/// A fenced master (its election session unreachable) releases nothing new until the
/// fence is lifted, whatever the disk and the replicas hold.
#[test]
fn a_fenced_master_releases_nothing_until_the_fence_is_lifted() {
    let mut group = started(MASTER);
    with_in_sync(&mut group, 1, 0);
    group.acknowledged(LinkId(1), Seq(5), Seq(6));
    assert_eq!(group.release_point(Seq(3)), Seq(3));
    assert_eq!(group.fence(true), Step::Release);
    group.acknowledged(LinkId(1), Seq(9), Seq(10));
    assert_eq!(group.release_point(Seq(9)), Seq(3), "fenced");
    group.fence(false);
    assert_eq!(group.release_point(Seq(9)), Seq(9));
}
