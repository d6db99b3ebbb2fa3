//! Every transition of the role machine, as a table, and the rule that a slave opens
//! its client port only by promotion.

use super::*;
use Action::*;
use Event::*;
use Role::*;

const MASTER: Policy = Policy::MASTER;

fn with(f: impl Fn(&mut Policy)) -> Policy {
    let mut policy = MASTER;
    f(&mut policy);
    policy
}

#[test]
fn every_transition() {
    let slave = with(|p| p.is_slave = true);
    let strict_slave = with(|p| {
        p.is_slave = true;
        p.shutdown_on_master_failure = true
    });
    let waits = with(|p| p.wait_for_slave = true);
    let peers = with(|p| p.has_peers = true);
    let strict_master = with(|p| p.shutdown_on_slave_failure = true);
    let lost = |enough_left| SlaveLost {
        why: "link closed".into(),
        enough_left,
    };
    let gone_slave = |others_in_sync| SlaveGone {
        why: "refused".into(),
        others_in_sync,
    };
    let gone = || MasterLost("connection reset".into());
    let alone = vec![ContinueAlone, OpenReplicationListener, OpenClientListener];
    #[rustfmt::skip]
    let table: Vec<(Role, Event, Policy, Role, Vec<Action>)> = vec![
        (Starting, Started, MASTER, MasterAlone, alone.clone()),
        (Starting, Started, waits, WaitingForSlave, vec![OpenReplicationListener]),
        (Starting, Started, slave, SlaveConnecting, vec![OpenReplicationListener, DialMaster]),
        // A master with peers asks them first, and joins a live master it finds.
        (Starting, Started, peers, Starting, vec![OpenReplicationListener, FindMaster]),
        (Starting, NoMasterFound, peers, MasterAlone, alone.clone()),
        (Starting, MasterFound, peers, SlaveConnecting, vec![DialMaster]),
        (Starting, PeerConflict("same epoch".into()), peers, Stopped, vec![Exit(EXIT_REFUSED)]),
        (WaitingForSlave, SlaveAttached, waits, WaitingForSlave, vec![]),
        (WaitingForSlave, SlaveInSync, waits, MasterWithSlave, vec![RecordInSync, OpenClientListener]),
        (WaitingForSlave, lost(false), waits, WaitingForSlave, vec![ProbeSlave]),
        (WaitingForSlave, SlaveTookOver, waits, Stopped, vec![Exit(EXIT_SUPERSEDED)]),
        (WaitingForSlave, gone_slave(false), waits, WaitingForSlave, vec![Resume]),
        (MasterAlone, SlaveAttached, MASTER, MasterAlone, vec![]),
        (MasterAlone, SlaveInSync, MASTER, MasterWithSlave, vec![RecordInSync]),
        (MasterWithSlave, SlaveInSync, MASTER, MasterWithSlave, vec![]),
        (MasterWithSlave, SlaveAttached, MASTER, MasterWithSlave, vec![]),
        (MasterWithSlave, lost(false), MASTER, MasterCheckingSlave, vec![ProbeSlave]),
        (MasterWithSlave, lost(true), MASTER, MasterCheckingSlave, vec![ProbeSlave]),
        (MasterCheckingSlave, lost(true), MASTER, MasterCheckingSlave, vec![]),
        (MasterCheckingSlave, SlaveTookOver, MASTER, Stopped, vec![Exit(EXIT_SUPERSEDED)]),
        (MasterCheckingSlave, gone_slave(false), MASTER, MasterAlone, vec![ContinueAlone]),
        (MasterCheckingSlave, gone_slave(true), MASTER, MasterWithSlave, vec![Resume]),
        (MasterCheckingSlave, SlaveAttached, MASTER, MasterCheckingSlave, vec![]),
        (MasterCheckingSlave, SlaveInSync, MASTER, MasterCheckingSlave, vec![]),
        // shutdown_on_slave_failure stops when fewer slaves are left in sync than the
        // master needs.
        (MasterWithSlave, lost(false), strict_master, Stopped, vec![Exit(EXIT_SLAVE_FAILED)]),
        (MasterWithSlave, lost(true), strict_master, MasterCheckingSlave, vec![ProbeSlave]),
        (MasterCheckingSlave, lost(false), strict_master, Stopped, vec![Exit(EXIT_SLAVE_FAILED)]),
        (SlaveConnecting, gone(), slave, SlaveConnecting, vec![DialMaster]),
        (SlaveConnecting, MasterReached, slave, SlaveCatchingUp, vec![]),
        (SlaveConnecting, MasterMoved, slave, SlaveConnecting, vec![DialMaster]),
        // An empty or stale slave copies the master's files, then dials again.
        (SlaveConnecting, CopyNeeded, slave, SlaveCopying, vec![CopyStore]),
        (SlaveCopying, StoreCopied, slave, SlaveConnecting, vec![DialMaster]),
        (SlaveCopying, gone(), slave, SlaveConnecting, vec![DialMaster]),
        (SlaveCopying, MasterRefused("password".into()), slave, Stopped, vec![Exit(EXIT_REFUSED)]),
        (SlaveCopying, MasterStopping, slave, SlaveCopying, vec![]),
        (SlaveConnecting, MasterRefused("diverged".into()), slave, Stopped, vec![Exit(EXIT_REFUSED)]),
        (SlaveCatchingUp, gone(), slave, SlaveConnecting, vec![DialMaster]),
        (SlaveCatchingUp, InSyncWithMaster, slave, SlaveMirroring, vec![]),
        (SlaveCatchingUp, MasterStopping, slave, SlaveConnecting, vec![DialMaster]),
        (SlaveMirroring, gone(), slave, SlaveCheckingMaster, vec![ProbeMaster]),
        (SlaveCheckingMaster, MasterAnswered, slave, SlaveConnecting, vec![DialMaster]),
        (SlaveCheckingMaster, MasterMoved, slave, SlaveConnecting, vec![DialMaster]),
        (SlaveCheckingMaster, MasterGone("refused".into()), slave, MasterAlone, vec![OpenReplicationListener, Promote, OpenClientListener]),
        // A master stopping with SIGTERM says so: the succession decides at once.
        (SlaveMirroring, MasterStopping, slave, SlaveCheckingMaster, vec![CheckSuccession]),
        (SlaveMirroring, MasterStopping, strict_slave, Stopped, vec![Exit(EXIT_MASTER_FAILED)]),
        (SlaveCheckingMaster, Shutdown, slave, Stopped, vec![Exit(0)]),
        (SlaveMirroring, gone(), strict_slave, Stopped, vec![Exit(EXIT_MASTER_FAILED)]),
        (SlaveMirroring, MasterRefused("x".into()), slave, Stopped, vec![Exit(EXIT_REFUSED)]),
        (SlaveMirroring, DroppedByMaster("slow".into()), slave, SlaveConnecting, vec![DialMaster]),
        (SlaveCatchingUp, DroppedByMaster("slow".into()), slave, SlaveConnecting, vec![DialMaster]),
        (MasterWithSlave, Shutdown, MASTER, Stopped, vec![Exit(0)]),
        (SlaveMirroring, Shutdown, slave, Stopped, vec![Exit(0)]),
        // ZooKeeper mode: a broker whose election session ended starts over in place.
        (MasterWithSlave, SessionEnded, MASTER, Stopped, vec![Rejoin]),
        (SlaveMirroring, SessionEnded, slave, Stopped, vec![Rejoin]),
        (Starting, SessionEnded, MASTER, Stopped, vec![Rejoin]),
        (Stopped, Started, MASTER, Stopped, vec![]),
        // Events that do not apply to a role change nothing.
        (MasterWithSlave, gone(), MASTER, MasterWithSlave, vec![]),
        (MasterAlone, MasterMoved, MASTER, MasterAlone, vec![]),
        (SlaveMirroring, SlaveInSync, slave, SlaveMirroring, vec![]),
        (SlaveMirroring, MasterFound, slave, SlaveMirroring, vec![]),
    ];
    for (role, event, policy, next, actions) in table {
        let (got_role, got_actions, why) = step(role, &event, policy);
        assert_eq!(
            (got_role, &got_actions),
            (next, &actions),
            "{role} + {event:?}: {why}"
        );
        assert!(!why.is_empty());
    }
}

#[test]
fn a_slave_opens_clients_only_by_promotion() {
    let slave = with(|p| p.is_slave = true);
    for role in [
        SlaveConnecting,
        SlaveCopying,
        SlaveCatchingUp,
        SlaveMirroring,
        SlaveCheckingMaster,
    ] {
        for event in [
            Started,
            MasterReached,
            InSyncWithMaster,
            SlaveInSync,
            SlaveAttached,
            MasterMoved,
            MasterAnswered,
            MasterStopping,
            CopyNeeded,
            StoreCopied,
        ] {
            let (_, actions, _) = step(role, &event, slave);
            assert!(!actions.contains(&OpenClientListener), "{role} + {event:?}");
        }
    }
}
