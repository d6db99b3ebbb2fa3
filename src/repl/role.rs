//! The role state machine: which role a broker plays and what it must do when something
//! happens. No I/O, no clock: `step(role, event, policy)` returns the next role and the
//! actions to take, so every transition is a row in a table test. `repl::group` wraps it
//! with the replica bookkeeping, and the core carries the actions out.
//!
//! Invariants:
//! - A slave keeps its client listener closed while it connects, catches up or mirrors.
//! - A slave that never reached in-sync never promotes itself; it keeps dialling.
//! - A slave that was in sync keeps that standing while it dials again only when its
//!   master said it was stopping (SIGTERM): if the dial then finds no master, it probes
//!   and may promote. A master that merely answered a probe may carry on alone without
//!   it, so that slave dials as one that is not in sync.
//! - Promotion starts a new epoch before the client listener opens.
//! - Losing the slave never degrades silently: the master either stops or says so.
//! - Neither side takes a step that could make two masters on the strength of a lost
//!   link alone: a slave probes its master before promoting itself, a master probes its
//!   slave's replication listener before carrying on alone (see `repl::probe`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Starting,
    /// A master with `wait_for_slave`: no clients until a slave is in sync.
    WaitingForSlave,
    /// A master serving clients with no slave in sync.
    MasterAlone,
    /// A master that lost its in-sync slave, asking whether the slave took over.
    MasterCheckingSlave,
    /// A master whose slave acknowledges every record before the client's receipt.
    MasterWithSlave,
    SlaveConnecting,
    SlaveCatchingUp,
    SlaveMirroring,
    /// A slave that lost its master, asking whether it is really gone.
    SlaveCheckingMaster,
    /// A slave that was in sync whose master said it was stopping: dialling it again. It
    /// holds everything the master receipted, so it may promote if the master is gone.
    SlaveRedialing,
    Stopped,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Role::Starting => "starting",
            Role::WaitingForSlave => "waiting-for-slave",
            Role::MasterAlone => "master-alone",
            Role::MasterWithSlave => "master-with-slave",
            Role::MasterCheckingSlave => "master-checking-slave",
            Role::SlaveConnecting => "slave-connecting",
            Role::SlaveCatchingUp => "slave-catching-up",
            Role::SlaveMirroring => "slave-mirroring",
            Role::SlaveCheckingMaster => "slave-checking-master",
            Role::SlaveRedialing => "slave-redialing",
            Role::Stopped => "stopped",
        };
        f.write_str(name)
    }
}

/// The three ActiveMQ options, plus whether this broker starts as a slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub is_slave: bool,
    pub wait_for_slave: bool,
    pub shutdown_on_slave_failure: bool,
    pub shutdown_on_master_failure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started,
    /// A slave's Hello was accepted; it is catching up.
    SlaveAttached,
    /// The slave acknowledged everything up to its in-sync point.
    SlaveInSync,
    SlaveLost(String),
    /// The lost slave's replication listener answered: it is a master now.
    SlaveTookOver,
    /// No master answered at the lost slave's address (and why).
    SlaveGone(String),
    /// Our master welcomed us; catch-up begins.
    MasterReached,
    /// We hold everything the master had when we attached.
    InSyncWithMaster,
    /// The link to our master closed, went silent, or could not be opened.
    MasterLost(String),
    /// The lost master answered a probe: it is alive.
    MasterAnswered,
    /// The lost master did not answer a probe (and why).
    MasterGone(String),
    /// Our master refused us (credentials, protocol, divergence): retrying cannot help.
    MasterRefused(String),
    /// Our master, alive, dropped us and carries on alone: dial again, never promote.
    DroppedByMaster(String),
    /// Our master said it is stopping cleanly: it released nothing we do not hold.
    MasterStopping,
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    OpenClientListener,
    OpenReplicationListener,
    DialMaster,
    /// Ask the lost master whether it is alive; answer with `MasterAnswered`/`MasterGone`.
    ProbeMaster,
    /// Ask the lost slave's address whether a master listens there; answer with
    /// `SlaveTookOver`/`SlaveGone`.
    ProbeSlave,
    /// Start a new epoch as master (a record, and the store's epoch history).
    Promote,
    /// Forget the slave: receipts wait for the local journal only, and say so loudly.
    /// Records in store.toml that this broker serves alone first (`alone_since`).
    ContinueAlone,
    /// A slave is in sync: record in store.toml that receipts no longer go out alone.
    RecordInSync,
    /// Stop without releasing receipts that still wait for the slave.
    Exit(i32),
}

/// Exit code when a master stops because its slave failed (`shutdown_on_slave_failure`).
pub const EXIT_SLAVE_FAILED: i32 = 3;
/// Exit code when a slave stops because its master failed (`shutdown_on_master_failure`).
pub const EXIT_MASTER_FAILED: i32 = 4;
/// Exit code when the master refused this slave.
pub const EXIT_REFUSED: i32 = 5;
/// Exit code when a master finds that its lost slave has taken over.
pub const EXIT_SUPERSEDED: i32 = 6;

/// The next role, the actions to take, and why (for the log line).
pub fn step(role: Role, event: &Event, policy: Policy) -> (Role, Vec<Action>, String) {
    use Action::*;
    use Event::*;
    use Role::*;
    let (next, actions, why): (Role, Vec<Action>, String) = match (role, event) {
        (_, Shutdown) => (Stopped, vec![Exit(0)], "shutdown requested".into()),
        (Stopped, _) => (Stopped, vec![], "already stopped".into()),
        (Starting, Started) if policy.is_slave => (
            SlaveConnecting,
            vec![DialMaster],
            "configured as a slave".into(),
        ),
        (Starting, Started) if policy.wait_for_slave => (
            WaitingForSlave,
            vec![OpenReplicationListener],
            "wait_for_slave: no clients until a slave is in sync".into(),
        ),
        (Starting, Started) => (
            MasterAlone,
            vec![ContinueAlone, OpenReplicationListener, OpenClientListener],
            "configured as a master".into(),
        ),
        (WaitingForSlave, SlaveInSync) => (
            MasterWithSlave,
            vec![RecordInSync, OpenClientListener],
            "slave in sync".into(),
        ),
        (MasterAlone, SlaveInSync) => (
            MasterWithSlave,
            vec![RecordInSync],
            "slave in sync".into(),
        ),
        (MasterWithSlave, SlaveLost(why)) if policy.shutdown_on_slave_failure => (
            Stopped,
            vec![Exit(EXIT_SLAVE_FAILED)],
            format!("slave lost ({why}); shutdown_on_slave_failure"),
        ),
        (MasterWithSlave, SlaveLost(why)) => (
            MasterCheckingSlave,
            vec![ProbeSlave],
            format!("slave lost ({why}); checking whether it took over"),
        ),
        (MasterCheckingSlave, SlaveTookOver) => (
            Stopped,
            vec![Exit(EXIT_SUPERSEDED)],
            "the slave has taken over as master: stopping without releasing the receipts it does not hold; restart this broker as its slave".into(),
        ),
        (MasterCheckingSlave, SlaveGone(why)) => (
            MasterAlone,
            vec![ContinueAlone],
            format!("no master at the slave's address ({why}); continuing without a copy"),
        ),
        // A slave that was still catching up was not relied on yet: forget it.
        (WaitingForSlave | MasterAlone, SlaveLost(why)) => (
            role,
            vec![ContinueAlone],
            format!("catching-up slave lost ({why})"),
        ),
        (WaitingForSlave | MasterAlone, SlaveAttached) => {
            (role, vec![], "slave attached; catching up".into())
        }
        (SlaveConnecting | SlaveRedialing, MasterReached) => {
            (SlaveCatchingUp, vec![], "master accepted us".into())
        }
        (SlaveCatchingUp, InSyncWithMaster) => {
            (SlaveMirroring, vec![], "caught up with the master".into())
        }
        (SlaveCatchingUp | SlaveMirroring, DroppedByMaster(why)) => (
            SlaveConnecting,
            vec![DialMaster],
            format!("the master dropped us ({why}) and carries on alone; not promoting"),
        ),
        (SlaveConnecting | SlaveCatchingUp, MasterLost(why)) => (
            SlaveConnecting,
            vec![DialMaster],
            format!("master unreachable ({why}); never in sync, so not promoting"),
        ),
        (
            SlaveConnecting | SlaveCatchingUp | SlaveMirroring | SlaveRedialing,
            MasterRefused(why),
        ) => (
            Stopped,
            vec![Exit(EXIT_REFUSED)],
            format!("master refused us: {why}"),
        ),
        (SlaveMirroring | SlaveRedialing, MasterLost(why)) if policy.shutdown_on_master_failure => (
            Stopped,
            vec![Exit(EXIT_MASTER_FAILED)],
            format!("master lost ({why}); shutdown_on_master_failure"),
        ),
        (SlaveMirroring | SlaveRedialing, MasterLost(why)) => (
            SlaveCheckingMaster,
            vec![ProbeMaster],
            format!("master lost ({why}); checking that it is gone"),
        ),
        // A master that answers may carry on alone (its probe of us finds no master
        // here) and receipt what we never get: we are no longer one it relies on.
        (SlaveCheckingMaster, MasterAnswered) => (
            SlaveConnecting,
            vec![DialMaster],
            "the master still answers: dialling it again, not promoting".into(),
        ),
        (SlaveMirroring, MasterStopping) if policy.shutdown_on_master_failure => (
            Stopped,
            vec![Exit(EXIT_MASTER_FAILED)],
            "the master is stopping; shutdown_on_master_failure".into(),
        ),
        // It closed its listeners first and released only what we acknowledged: if it is
        // gone when we dial, we hold all it receipted.
        (SlaveMirroring, MasterStopping) => (
            SlaveRedialing,
            vec![DialMaster],
            "the master is stopping: dialling it again, promoting if it is gone".into(),
        ),
        (SlaveRedialing, DroppedByMaster(why)) => (
            SlaveConnecting,
            vec![DialMaster],
            format!("the master dropped us ({why}) and carries on alone; not promoting"),
        ),
        // The replication listener opens first, so that the old master, should it wake
        // now, finds a master at our address and stops rather than carry on alone.
        (SlaveCheckingMaster, MasterGone(why)) => (
            MasterAlone,
            vec![OpenReplicationListener, Promote, OpenClientListener],
            format!("master lost and silent ({why}); promoting"),
        ),
        (role, event) => (role, vec![], format!("ignored {event:?}")),
    };
    (next, actions, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use Event::*;
    use Role::*;

    const MASTER: Policy = Policy {
        is_slave: false,
        wait_for_slave: false,
        shutdown_on_slave_failure: false,
        shutdown_on_master_failure: false,
    };

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
        let strict_master = with(|p| p.shutdown_on_slave_failure = true);
        let lost = || SlaveLost("link closed".into());
        let gone = || MasterLost("connection reset".into());
        #[rustfmt::skip]
        let table: Vec<(Role, Event, Policy, Role, Vec<Action>)> = vec![
            (Starting, Started, MASTER, MasterAlone, vec![ContinueAlone, OpenReplicationListener, OpenClientListener]),
            (Starting, Started, waits, WaitingForSlave, vec![OpenReplicationListener]),
            (Starting, Started, slave, SlaveConnecting, vec![DialMaster]),
            (WaitingForSlave, SlaveAttached, waits, WaitingForSlave, vec![]),
            (WaitingForSlave, SlaveInSync, waits, MasterWithSlave, vec![RecordInSync, OpenClientListener]),
            (WaitingForSlave, lost(), waits, WaitingForSlave, vec![ContinueAlone]),
            (MasterAlone, SlaveAttached, MASTER, MasterAlone, vec![]),
            (MasterAlone, SlaveInSync, MASTER, MasterWithSlave, vec![RecordInSync]),
            (MasterAlone, lost(), strict_master, MasterAlone, vec![ContinueAlone]),
            (MasterWithSlave, lost(), MASTER, MasterCheckingSlave, vec![ProbeSlave]),
            (MasterCheckingSlave, SlaveTookOver, MASTER, Stopped, vec![Exit(EXIT_SUPERSEDED)]),
            (MasterCheckingSlave, SlaveGone("refused".into()), MASTER, MasterAlone, vec![ContinueAlone]),
            (MasterCheckingSlave, SlaveAttached, MASTER, MasterCheckingSlave, vec![]),
            (MasterWithSlave, lost(), strict_master, Stopped, vec![Exit(EXIT_SLAVE_FAILED)]),
            (SlaveConnecting, gone(), slave, SlaveConnecting, vec![DialMaster]),
            (SlaveConnecting, MasterReached, slave, SlaveCatchingUp, vec![]),
            (SlaveConnecting, MasterRefused("diverged".into()), slave, Stopped, vec![Exit(EXIT_REFUSED)]),
            (SlaveCatchingUp, gone(), slave, SlaveConnecting, vec![DialMaster]),
            (SlaveCatchingUp, InSyncWithMaster, slave, SlaveMirroring, vec![]),
            (SlaveMirroring, gone(), slave, SlaveCheckingMaster, vec![ProbeMaster]),
            (SlaveCheckingMaster, MasterAnswered, slave, SlaveConnecting, vec![DialMaster]),
            // A master stopping with SIGTERM says so: the slave that was in sync dials,
            // finds no master, probes and promotes.
            (SlaveMirroring, MasterStopping, slave, SlaveRedialing, vec![DialMaster]),
            (SlaveMirroring, MasterStopping, strict_slave, Stopped, vec![Exit(EXIT_MASTER_FAILED)]),
            (SlaveCatchingUp, MasterStopping, slave, SlaveCatchingUp, vec![]),
            (SlaveRedialing, gone(), slave, SlaveCheckingMaster, vec![ProbeMaster]),
            (SlaveRedialing, gone(), strict_slave, Stopped, vec![Exit(EXIT_MASTER_FAILED)]),
            (SlaveRedialing, MasterReached, slave, SlaveCatchingUp, vec![]),
            (SlaveRedialing, DroppedByMaster("slow".into()), slave, SlaveConnecting, vec![DialMaster]),
            (SlaveRedialing, MasterRefused("diverged".into()), slave, Stopped, vec![Exit(EXIT_REFUSED)]),
            (SlaveCheckingMaster, MasterGone("refused".into()), slave, MasterAlone, vec![OpenReplicationListener, Promote, OpenClientListener]),
            (SlaveCheckingMaster, Shutdown, slave, Stopped, vec![Exit(0)]),
            (SlaveMirroring, gone(), strict_slave, Stopped, vec![Exit(EXIT_MASTER_FAILED)]),
            (SlaveMirroring, MasterRefused("x".into()), slave, Stopped, vec![Exit(EXIT_REFUSED)]),
            (SlaveMirroring, DroppedByMaster("slow".into()), slave, SlaveConnecting, vec![DialMaster]),
            (SlaveCatchingUp, DroppedByMaster("slow".into()), slave, SlaveConnecting, vec![DialMaster]),
            (MasterWithSlave, Shutdown, MASTER, Stopped, vec![Exit(0)]),
            (SlaveMirroring, Shutdown, slave, Stopped, vec![Exit(0)]),
            (Stopped, Started, MASTER, Stopped, vec![]),
            // Events that do not apply to a role change nothing.
            (MasterWithSlave, gone(), MASTER, MasterWithSlave, vec![]),
            (SlaveMirroring, SlaveInSync, slave, SlaveMirroring, vec![]),
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
            SlaveCatchingUp,
            SlaveMirroring,
            SlaveCheckingMaster,
            SlaveRedialing,
        ] {
            for event in [
                Started,
                MasterReached,
                InSyncWithMaster,
                SlaveInSync,
                SlaveAttached,
            ] {
                let (_, actions, _) = step(role, &event, slave);
                assert!(!actions.contains(&OpenClientListener), "{role} + {event:?}");
            }
        }
    }
}
