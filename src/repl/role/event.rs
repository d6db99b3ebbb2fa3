//! What happens to a broker that the role machine decides on (`Event`), what it decides
//! to do (`Action`), and the exit codes of the roles that end in a stop.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started,
    /// A peer is a live master at least as new as this store: join it (the server now
    /// dials it).
    MasterFound,
    /// No peer is a live master: start as configured.
    NoMasterFound,
    /// A peer is a live master this store must not follow (and why).
    PeerConflict(String),
    /// A slave's Hello was accepted; it is catching up.
    SlaveAttached,
    /// A slave holds every record receipted so far and is counted on from now.
    SlaveInSync,
    /// An in-sync slave was lost; `enough_left` says whether the slaves left in sync are
    /// as many as the master needs (one, or `min_replicas`).
    SlaveLost {
        why: String,
        enough_left: bool,
    },
    /// A lost slave's replication listener answered as a master: it took over.
    SlaveTookOver,
    /// No master answered at the lost slaves' addresses (and why).
    SlaveGone {
        why: String,
        others_in_sync: bool,
    },
    /// Our master has nothing we can append to: copy its store first.
    CopyNeeded,
    /// The copy of the master's store is our store now.
    StoreCopied,
    /// Our master welcomed us; catch-up begins.
    MasterReached,
    /// We hold everything the master had when we attached.
    InSyncWithMaster,
    /// The link to our master closed, went silent, or could not be opened.
    MasterLost(String),
    /// The lost master answered a probe: it is alive.
    MasterAnswered,
    /// The lost master did not answer, and no slave before us in the succession is
    /// left to take over (and why).
    MasterGone(String),
    /// Another broker is the master now (an in-sync slave took over, or the broker we
    /// dialled named its master): the server dials it next.
    MasterMoved,
    /// Our master refused us (credentials, protocol, divergence): retrying cannot help.
    MasterRefused(String),
    /// Our master, alive, dropped us and carries on: dial again, never promote.
    DroppedByMaster(String),
    /// Our master said it is stopping cleanly: it released nothing we do not hold.
    MasterStopping,
    /// The election's session ended (ZooKeeper mode): another broker may be master now.
    /// Stop this role, with nothing more released, and join the group afresh.
    SessionEnded,
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    OpenClientListener,
    /// Opens the replication listener if it is not open: it answers probes as a slave
    /// until this broker is a master, then accepts slaves.
    OpenReplicationListener,
    /// Ask the peers for a live master; answer with `MasterFound`, `NoMasterFound` or
    /// `PeerConflict`.
    FindMaster,
    DialMaster,
    /// Copy the master's segment files into this store (`link::copy`); answer with
    /// `StoreCopied`, or `MasterLost` if the copy broke off (the next one resumes it).
    CopyStore,
    /// Probe the lost master, then the succession; answer with `MasterAnswered`,
    /// `MasterMoved` or `MasterGone`.
    ProbeMaster,
    /// As `ProbeMaster`, without probing a master that said it is stopping.
    CheckSuccession,
    /// Ask the lost slaves' addresses whether a master listens there; answer with
    /// `SlaveTookOver`/`SlaveGone`.
    ProbeSlave,
    /// Start a new epoch as master (a record, and the store's epoch history).
    Promote,
    /// No slave is in sync: receipts wait for the local journal only, and say so loudly.
    /// Records in store.toml that this broker serves alone first (`alone_since`).
    ContinueAlone,
    /// The lost slave did not take over and others are in sync: release again.
    Resume,
    /// A slave is in sync: record in store.toml that receipts no longer go out alone.
    RecordInSync,
    /// Stop without releasing receipts that still wait for a slave.
    Exit(i32),
    /// Stop this role like `Exit`, then start again in the same process from the store on
    /// disk: recover, join the election, follow whoever is master.
    Rejoin,
}

/// Exit code when a master stops because its slave failed (`shutdown_on_slave_failure`).
pub const EXIT_SLAVE_FAILED: i32 = 3;
/// Exit code when a slave stops because its master failed (`shutdown_on_master_failure`).
pub const EXIT_MASTER_FAILED: i32 = 4;
/// Exit code when the master refused this slave, or a peer is a master it must not join.
pub const EXIT_REFUSED: i32 = 5;
/// Exit code when a master finds that its lost slave has taken over.
pub const EXIT_SUPERSEDED: i32 = 6;
