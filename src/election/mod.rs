//! The master election through ZooKeeper, as one broker takes part in it: register as a
//! candidate, then elect (follow the master there is, or claim, or wait for a change),
//! and, as master, keep the in-sync set and resign. `repl::election::decide` makes every
//! decision; this is its I/O, over the `zk` seam.
//!
//! The shell drives it for the role actions (`server/shell/election.rs`); tested here
//! against real ZooKeeper servers (tests/election.rs) and in the broker
//! (tests/zk_group.rs).

use std::time::Duration;

use crate::journal::Epoch;
use crate::repl::election::{self, Candidate, Decision, MasterNode, View};
use crate::zk::{Claim, Coordinator, Session, States};

/// How often a waiting broker looks again even if no watch fired (a watch set just as the
/// session reconnects can be lost).
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// The nodes of one group, under its path.
#[derive(Debug, Clone)]
struct Paths {
    root: String,
    master: String,
    epoch: String,
    isr: String,
    candidates: String,
}

impl Paths {
    fn new(root: &str) -> Paths {
        let root = root.trim_end_matches('/').to_string();
        Paths {
            master: format!("{root}/master"),
            epoch: format!("{root}/epoch"),
            isr: format!("{root}/isr"),
            candidates: format!("{root}/candidates"),
            root,
        }
    }
}

/// What an election ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Another broker is master: attach to it.
    Follow { replication: String, epoch: Epoch },
    /// This broker is master in `epoch`; the in-sync set is this broker alone.
    Elected { epoch: Epoch },
}

/// One broker's part in its group's election.
pub struct Elector {
    zk: Coordinator,
    paths: Paths,
    me: Candidate,
}

impl Elector {
    /// Opens a session with `servers`, makes the group's nodes where missing and
    /// registers `me` as a candidate (an ephemeral node of the session).
    pub async fn join(
        servers: &str,
        root: &str,
        session_timeout: Duration,
        me: Candidate,
    ) -> Result<Elector, String> {
        let zk = Coordinator::connect(servers, session_timeout).await?;
        let paths = Paths::new(root);
        zk.ensure(&paths.candidates).await?;
        let node = format!("{}/{}", paths.candidates, me.name);
        if !zk
            .create_ephemeral(&node, me.to_string().as_bytes())
            .await?
        {
            return Err(format!(
                "election: a broker named {} is registered already ({node}); names must differ, or an earlier session of this one has not expired yet",
                me.name
            ));
        }
        Ok(Elector { zk, paths, me })
    }

    pub fn session_timeout(&self) -> Duration {
        self.zk.session_timeout()
    }

    pub fn session(&self) -> Session {
        self.zk.session()
    }

    pub fn states(&self) -> States {
        self.zk.states()
    }

    /// What the group's nodes show now, with a watch on the master node.
    async fn view(&self) -> Result<(View, crate::zk::Change), String> {
        let (master, change) = self.zk.read_and_watch(&self.paths.master).await?;
        let master = master
            .map(|node| MasterNode::parse(&node.data))
            .transpose()
            .map_err(|why| format!("election: {}: {why}", self.paths.master))?;
        let epoch = match self.zk.read(&self.paths.epoch).await? {
            Some(node) => {
                let text = String::from_utf8_lossy(&node.data);
                let epoch = text.trim().parse().map_err(|_| {
                    format!(
                        "election: {} holds {text:?}, not an epoch",
                        self.paths.epoch
                    )
                })?;
                Some((Epoch(epoch), node.version))
            }
            None => None,
        };
        let isr = match self.zk.read(&self.paths.isr).await? {
            Some(node) => Some((election::parse_isr(&node.data)?, node.version)),
            None => None,
        };
        let mut candidates = Vec::new();
        for name in self.zk.children(&self.paths.candidates).await? {
            let path = format!("{}/{name}", self.paths.candidates);
            if let Some(node) = self.zk.read(&path).await? {
                match Candidate::parse(&node.data) {
                    Ok(candidate) => candidates.push(candidate),
                    Err(why) => log::warn!("election: {path}: {why}; not counted"),
                }
            }
        }
        let view = View {
            master,
            epoch,
            isr,
            candidates,
        };
        Ok((view, change))
    }

    /// Runs the election until this broker follows a master or is one. `lost`: the epoch
    /// of a master this broker lost its link to. Its node stays until its session
    /// expires, so it is waited on, for at most twice the session timeout; a master still
    /// there after that is alive (only the link broke) and is followed again.
    pub async fn elect(&self, lost: Option<Epoch>) -> Result<Outcome, String> {
        let mut said = String::new();
        let lost_until = std::time::Instant::now() + self.zk.session_timeout() * 2;
        loop {
            let (view, change) = self.view().await?;
            let decision = match (&view.master, lost) {
                (Some(master), Some(epoch))
                    if master.epoch == epoch && std::time::Instant::now() < lost_until =>
                {
                    Decision::Wait(format!(
                        "the lost master {} (epoch {epoch}) still holds the master node: waiting for its session to expire",
                        master.name
                    ))
                }
                _ => election::decide(&self.me, &view),
            };
            match decision {
                Decision::Follow { replication, epoch } => {
                    return Ok(Outcome::Follow { replication, epoch })
                }
                Decision::Claim {
                    epoch,
                    epoch_version,
                    isr_version,
                } => {
                    let master = MasterNode {
                        name: self.me.name.clone(),
                        replication: self.me.replication.clone(),
                        epoch,
                    };
                    let epoch_text = epoch.to_string();
                    let isr = election::isr_text(std::slice::from_ref(&self.me.replication));
                    let master_text = master.to_string();
                    let claim = Claim {
                        epoch_path: &self.paths.epoch,
                        epoch_version,
                        epoch: epoch_text.as_bytes(),
                        isr_path: &self.paths.isr,
                        isr_version,
                        isr: isr.as_bytes(),
                        master_path: &self.paths.master,
                        master: master_text.as_bytes(),
                    };
                    if self.zk.claim(&claim).await? {
                        log::info!("election: this broker is master in epoch {epoch}");
                        return Ok(Outcome::Elected { epoch });
                    }
                    // Another broker moved first: look again.
                }
                Decision::Wait(why) => {
                    if why != said {
                        log::info!("election: waiting: {why}");
                        said = why;
                    }
                    let _ = crate::runtime::timeout(LOOK_AGAIN, change.changed()).await;
                }
            }
        }
    }

    /// As master: the replication addresses of the brokers that hold every receipted
    /// record, this one first. Written
    /// before the master counts on a new slave, and before it releases receipts without
    /// a lost one.
    pub async fn write_isr(&self, members: &[String]) -> Result<(), String> {
        let text = election::isr_text(members);
        loop {
            let version = match self.zk.read(&self.paths.isr).await? {
                Some(node) => node.version,
                None => return Err(format!("election: {} is gone", self.paths.isr)),
            };
            if self
                .zk
                .set(&self.paths.isr, text.as_bytes(), version)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
    }

    /// As master, stopping: deletes the master node at once, so the first in-sync broker
    /// claims without waiting for this session to expire.
    pub async fn resign(&self) -> Result<(), String> {
        if let Some(node) = self.zk.read(&self.paths.master).await? {
            let master = MasterNode::parse(&node.data)?;
            if master.name == self.me.name {
                self.zk.delete(&self.paths.master, node.version).await?;
            }
        }
        Ok(())
    }

    /// The group's path, for logs.
    pub fn root(&self) -> &str {
        &self.paths.root
    }
}
