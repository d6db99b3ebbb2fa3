//! The role state machine: which role a broker plays and what it must do when something
//! happens. No I/O, no clock: `step(role, event, policy)` returns the next role and the
//! actions to take, so every transition is a row in a table test. `repl::group` wraps it
//! with the replicas' bookkeeping, and the core carries the actions out.
//!
//! Invariants:
//! - A slave keeps its client listener closed while it connects, catches up or mirrors.
//! - A slave that never reached in-sync never promotes itself; it keeps dialling.
//! - Of the in-sync slaves, the first in the master's succession order that is alive
//!   promotes; the others find it and follow it (`ProbeMaster`, `CheckSuccession`).
//! - A slave promotes after a lost link only once a probe found no master at its
//!   master's address; after the master said it was stopping (SIGTERM), without one.
//! - Promotion starts a new epoch before the client listener opens.
//! - Losing an in-sync slave never degrades silently: the master stops, or probes the
//!   slave's replication listener (a master there means it took over, and this broker
//!   stops) and then carries on with the others or alone, and says so.
//! - A broker configured as master with `peers` first asks them: a live master at least
//!   as new as its store makes it that master's slave instead (rejoin after a failover).

use std::fmt;

mod event;
pub use event::{
    Action, Event, EXIT_MASTER_FAILED, EXIT_REFUSED, EXIT_SLAVE_FAILED, EXIT_SUPERSEDED,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Recovered; a master with `peers` asks them for a live master first.
    Starting,
    /// A master with `wait_for_slave`: no clients until a slave is in sync.
    WaitingForSlave,
    /// A master serving clients with no slave in sync.
    MasterAlone,
    /// A master that lost an in-sync slave, asking whether the slave took over.
    MasterCheckingSlave,
    /// A master whose in-sync slaves acknowledge every record before the client's receipt.
    MasterWithSlave,
    SlaveConnecting,
    /// A slave copying the master's segment files (it held nothing the master could
    /// append to); it says Hello again once the copy is its store.
    SlaveCopying,
    SlaveCatchingUp,
    SlaveMirroring,
    /// An in-sync slave that lost its master, asking whether it is really gone and
    /// which in-sync slave takes over.
    SlaveCheckingMaster,
    Stopped,
}

impl Role {
    /// A master's roles: it serves clients (or waits for a slave to) and accepts slaves.
    pub fn is_master(self) -> bool {
        matches!(
            self,
            Role::WaitingForSlave
                | Role::MasterAlone
                | Role::MasterCheckingSlave
                | Role::MasterWithSlave
        )
    }

    /// Roles in which this broker may promote itself should its master die: it holds
    /// every record its master receipted.
    pub fn is_candidate(self) -> bool {
        matches!(self, Role::SlaveMirroring | Role::SlaveCheckingMaster)
    }
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
            Role::SlaveCopying => "slave-copying",
            Role::SlaveCatchingUp => "slave-catching-up",
            Role::SlaveMirroring => "slave-mirroring",
            Role::SlaveCheckingMaster => "slave-checking-master",
            Role::Stopped => "stopped",
        };
        f.write_str(name)
    }
}

/// The ActiveMQ options, whether this broker starts as a slave, and the group's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub is_slave: bool,
    /// `replication.peers` is not empty: a master asks them for a live master first.
    pub has_peers: bool,
    pub wait_for_slave: bool,
    pub shutdown_on_slave_failure: bool,
    pub shutdown_on_master_failure: bool,
    /// `replication.max_slaves`: slaves attached at once.
    pub max_slaves: usize,
    /// `replication.min_replicas`: slaves in sync a master needs to take persistent work
    /// (and, with `wait_for_slave`, to open its client port).
    pub min_replicas: usize,
    /// `replication.min_replicas_timeout_ms`: how long work waits for them.
    pub min_replicas_timeout_ms: u64,
}

impl Policy {
    /// A master with every option at its default: what the tests start from.
    #[cfg(test)]
    pub const MASTER: Policy = Policy {
        is_slave: false,
        has_peers: false,
        wait_for_slave: false,
        shutdown_on_slave_failure: false,
        shutdown_on_master_failure: false,
        max_slaves: 4,
        min_replicas: 0,
        min_replicas_timeout_ms: 5000,
    };
}

/// How a master starts once it knows no peer is a master.
fn start_as_master(policy: Policy, why: &str) -> (Role, Vec<Action>, String) {
    use Action::*;
    if policy.wait_for_slave {
        (
            Role::WaitingForSlave,
            vec![OpenReplicationListener],
            format!("{why}; wait_for_slave: no clients until a slave is in sync"),
        )
    } else {
        (
            Role::MasterAlone,
            vec![ContinueAlone, OpenReplicationListener, OpenClientListener],
            why.to_string(),
        )
    }
}

/// The next role, the actions to take, and why (for the log line).
pub fn step(role: Role, event: &Event, policy: Policy) -> (Role, Vec<Action>, String) {
    use Action::*;
    use Event::*;
    use Role::*;
    let (next, actions, why): (Role, Vec<Action>, String) = match (role, event) {
        (_, Shutdown) => (Stopped, vec![Exit(0)], "shutdown requested".into()),
        (Stopped, _) => (Stopped, vec![], "already stopped".into()),
        (_, SessionEnded) => (
            Stopped,
            vec![Rejoin],
            "the election session ended: rejoining the group from the store on disk".into(),
        ),
        (Starting, Started) if policy.is_slave => (
            SlaveConnecting,
            vec![OpenReplicationListener, DialMaster],
            "configured as a slave".into(),
        ),
        (Starting, Started) if policy.has_peers => (
            Starting,
            vec![OpenReplicationListener, FindMaster],
            "configured as a master: asking the peers for a live master first".into(),
        ),
        (Starting, Started) => start_as_master(policy, "configured as a master"),
        (Starting, NoMasterFound) => start_as_master(policy, "no peer is a master"),
        (Starting, MasterFound) => (
            SlaveConnecting,
            vec![DialMaster],
            "a peer is the master: joining it as its slave".into(),
        ),
        (Starting, PeerConflict(why)) => (Stopped, vec![Exit(EXIT_REFUSED)], why.clone()),
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
        (MasterWithSlave | MasterCheckingSlave, SlaveInSync) => {
            (role, vec![], "another slave in sync".into())
        }
        (
            MasterWithSlave | MasterCheckingSlave,
            SlaveLost {
                why,
                enough_left: false,
            },
        ) if policy.shutdown_on_slave_failure => (
            Stopped,
            vec![Exit(EXIT_SLAVE_FAILED)],
            format!("in-sync slave lost ({why}), fewer left than this master needs; shutdown_on_slave_failure"),
        ),
        // Waiting for min_replicas slaves, one in sync was lost: no client was served,
        // but it may have taken over all the same.
        (WaitingForSlave, SlaveLost { why, .. }) => (
            WaitingForSlave,
            vec![ProbeSlave],
            format!("in-sync slave lost ({why}); checking whether it took over"),
        ),
        (WaitingForSlave, SlaveTookOver) => (
            Stopped,
            vec![Exit(EXIT_SUPERSEDED)],
            "a lost slave has taken over as master: stopping; restart this broker and it joins the new master".into(),
        ),
        (WaitingForSlave, SlaveGone { why, .. }) => (
            WaitingForSlave,
            vec![Resume],
            format!("no master at the slave's address ({why}); still waiting for slaves"),
        ),
        (MasterWithSlave, SlaveLost { why, .. }) => (
            MasterCheckingSlave,
            vec![ProbeSlave],
            format!("in-sync slave lost ({why}); checking whether it took over"),
        ),
        // The group probes this one's address after the probe under way.
        (MasterCheckingSlave, SlaveLost { why, .. }) => (
            MasterCheckingSlave,
            vec![],
            format!("another in-sync slave lost ({why})"),
        ),
        (MasterCheckingSlave, SlaveTookOver) => (
            Stopped,
            vec![Exit(EXIT_SUPERSEDED)],
            "a lost slave has taken over as master: stopping without releasing the receipts it does not hold; restart this broker and it joins the new master".into(),
        ),
        (
            MasterCheckingSlave,
            SlaveGone {
                why,
                others_in_sync: true,
            },
        ) => (
            MasterWithSlave,
            vec![Resume],
            format!("no master at the slave's address ({why}); carrying on with the slaves in sync"),
        ),
        (MasterCheckingSlave, SlaveGone { why, .. }) => (
            MasterAlone,
            vec![ContinueAlone],
            format!("no master at the slave's address ({why}); continuing without a copy"),
        ),
        (WaitingForSlave | MasterAlone | MasterWithSlave | MasterCheckingSlave, SlaveAttached) => {
            (role, vec![], "slave attached; catching up".into())
        }
        (SlaveConnecting, MasterReached) => {
            (SlaveCatchingUp, vec![], "master accepted us".into())
        }
        (SlaveConnecting, CopyNeeded) => (
            SlaveCopying,
            vec![CopyStore],
            "this store holds nothing the master can append to: copying the master's".into(),
        ),
        (SlaveCopying, StoreCopied) => (
            SlaveConnecting,
            vec![DialMaster],
            "copied the master's store: dialling it to catch up".into(),
        ),
        (SlaveCopying, MasterLost(why)) => (
            SlaveConnecting,
            vec![DialMaster],
            format!("the copy broke off ({why}); the next one resumes it"),
        ),
        (SlaveCatchingUp, InSyncWithMaster) => {
            (SlaveMirroring, vec![], "caught up with the master".into())
        }
        (SlaveCatchingUp | SlaveMirroring, DroppedByMaster(why)) => (
            SlaveConnecting,
            vec![DialMaster],
            format!("the master dropped us ({why}) and carries on; not promoting"),
        ),
        (SlaveConnecting | SlaveCatchingUp, MasterLost(why)) => (
            SlaveConnecting,
            vec![DialMaster],
            format!("master unreachable ({why}); never in sync, so not promoting"),
        ),
        (SlaveConnecting | SlaveCatchingUp, MasterStopping) => (
            SlaveConnecting,
            vec![DialMaster],
            "the master is stopping; never in sync, so not promoting".into(),
        ),
        (SlaveConnecting | SlaveCheckingMaster, MasterMoved) => (
            SlaveConnecting,
            vec![DialMaster],
            "another broker is the master: dialling it".into(),
        ),
        (
            SlaveConnecting | SlaveCopying | SlaveCatchingUp | SlaveMirroring,
            MasterRefused(why),
        ) => (
            Stopped,
            vec![Exit(EXIT_REFUSED)],
            format!("master refused us: {why}"),
        ),
        (SlaveMirroring, MasterLost(why)) if policy.shutdown_on_master_failure => (
            Stopped,
            vec![Exit(EXIT_MASTER_FAILED)],
            format!("master lost ({why}); shutdown_on_master_failure"),
        ),
        (SlaveMirroring, MasterLost(why)) => (
            SlaveCheckingMaster,
            vec![ProbeMaster],
            format!("master lost ({why}); checking that it is gone"),
        ),
        // A master that answers may carry on without us (its probe of us finds no master
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
        // It closed its listeners first and released only what we acknowledged: the
        // first in-sync slave takes over at once, without a probe it could still answer.
        (SlaveMirroring, MasterStopping) => (
            SlaveCheckingMaster,
            vec![CheckSuccession],
            "the master is stopping: the first in-sync slave takes over".into(),
        ),
        (SlaveCheckingMaster, MasterGone(why)) => (
            MasterAlone,
            vec![OpenReplicationListener, Promote, OpenClientListener],
            format!("master gone ({why}); promoting"),
        ),
        (role, event) => (role, vec![], format!("ignored {event:?}")),
    };
    (next, actions, why)
}

#[cfg(test)]
mod tests;
