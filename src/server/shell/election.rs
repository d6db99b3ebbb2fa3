//! The shell's side of the ZooKeeper election (`[election]`): the role actions that ask
//! the election instead of the peers (finding the master at start, the decision after a
//! lost master, and a lost slave, which leaves the in-sync set before any receipt goes
//! out without it), the in-sync set written as slaves come in sync, the fencing of a
//! master whose session is lost, and resigning at a stop.
//!
//! Fencing: a master's client learns its session is unreachable (Disconnected) at most
//! two fifths of the session timeout after it last heard from the ensemble (the client's
//! connection timeout, `zk.rs`): the master stops releasing receipts at once, well before
//! the ensemble could end the session and elect another. Back (reconnected to any server
//! within the timeout), the session is the same and so is the master: receipts flow
//! again. Ended (Expired, which the client says at the latest 7/5 of the timeout after
//! it last heard), the broker stops this role: its client port closes and its clients
//! fail over; then it starts again in place from its store (`server::run`), joins the
//! election with a new session, and follows the master there is (its unreceipted tail
//! replaced, as for any returning master).

use std::sync::Arc;

use super::*;
use crate::election::{Elector, Outcome};
use crate::journal::Epoch;
use crate::repl::election::Candidate;
use crate::runtime;
use crate::zk::Session;

/// Pause between attempts while ZooKeeper is unreachable or an election failed.
const RETRY: Duration = Duration::from_secs(1);

/// This broker's part in the election, once joined.
pub(super) struct Election {
    elector: Arc<Elector>,
    /// In-sync set updates, written in order by one task.
    isr: mpsc::UnboundedSender<IsrUpdate>,
    /// The election epoch of the master this broker follows or is.
    pub(super) epoch: Option<Epoch>,
    /// The session is not known to be alive: receipts are fenced off.
    fenced: bool,
    /// This broker was elected master (it resigns at a stop).
    leads: bool,
}

struct IsrUpdate {
    members: Vec<String>,
    written: Option<oneshot::Sender<()>>,
}

/// What an election task came back with.
pub struct Elected {
    /// Set when this task joined the election.
    joined: Option<Arc<Elector>>,
    outcome: Outcome,
    /// The task decided after a lost master (else at start).
    after_loss: bool,
}

impl Shell {
    pub(in crate::server) fn elects(&self) -> bool {
        self.config.election.is_some()
    }

    /// The election epoch of the master this broker follows or is, once known.
    pub(in crate::server) fn election_epoch(&self) -> Option<Epoch> {
        self.election.as_ref().and_then(|e| e.epoch)
    }

    /// Runs the election (joining it first, waiting for ZooKeeper and saying so), at
    /// start (`lost: None`) or after losing the master of election epoch `lost`.
    pub(in crate::server) fn elect(&mut self, lost: Option<Epoch>, probe_master: bool) {
        let Some(config) = self.config.election.clone() else {
            return;
        };
        let joined = self.election.as_ref().map(|e| e.elector.clone());
        let me = Candidate {
            name: self.config.broker.name.clone(),
            replication: self.replication_address.clone().unwrap_or_default(),
            epoch: self.core.epoch(),
            seq: self.core.next_seq().prev(),
        };
        let master = self.master.clone().filter(|_| probe_master);
        let prober = self.prober();
        let after_loss = lost.is_some() || probe_master;
        self.start(async move {
            if let Some(master) = &master {
                if let crate::link::probe::Probed::Master(_) = prober.once(master).await {
                    return Done::Event(Event::MasterAnswered);
                }
            }
            let (elector, fresh) = match joined {
                Some(elector) => (elector, false),
                None => loop {
                    let timeout = config.session_timeout();
                    match Elector::join(&config.zookeeper, &config.path, timeout, me.clone()).await
                    {
                        Ok(elector) => {
                            log::info!(
                                "election: joined {} at {} as {}",
                                config.path,
                                config.zookeeper,
                                me.name
                            );
                            break (Arc::new(elector), true);
                        }
                        Err(why) => {
                            log::warn!("election: {why}; trying again in {} ms", RETRY.as_millis());
                            runtime::sleep(RETRY).await;
                        }
                    }
                },
            };
            loop {
                match elector.elect(lost).await {
                    Ok(outcome) => {
                        let joined = fresh.then_some(elector);
                        return Done::Election(Box::new(Elected {
                            joined,
                            outcome,
                            after_loss,
                        }));
                    }
                    // A session that ended cannot elect: this shell stops and the next
                    // one joins afresh.
                    Err(why) if ended(elector.session()) => {
                        return Done::Event(Event::MasterLost(format!(
                            "the election session ended ({why})"
                        )))
                    }
                    Err(why) => {
                        log::warn!("election: {why}; trying again in {} ms", RETRY.as_millis());
                        runtime::sleep(RETRY).await;
                    }
                }
            }
        });
    }

    /// Takes back an election's outcome: follow a master, or be one.
    pub(in crate::server) fn elected(&mut self, elected: Elected) {
        if let Some(elector) = elected.joined {
            self.joined(elector);
        }
        let Some(election) = &mut self.election else {
            return;
        };
        let event = match elected.outcome {
            Outcome::Elected { epoch } => {
                election.epoch = Some(epoch);
                election.leads = true;
                if elected.after_loss {
                    Event::MasterGone(format!("elected master in election epoch {epoch}"))
                } else {
                    Event::NoMasterFound
                }
            }
            Outcome::Follow { replication, epoch } => {
                election.epoch = Some(epoch);
                election.leads = false;
                match Endpoint::parse(&replication) {
                    Ok(master) if self.master.as_ref() == Some(&master) && elected.after_loss => {
                        Event::MasterAnswered
                    }
                    Ok(master) => {
                        log::info!(
                            "election: the master is {replication} (election epoch {epoch})"
                        );
                        self.master = Some(master);
                        if elected.after_loss {
                            Event::MasterMoved
                        } else {
                            Event::MasterFound
                        }
                    }
                    Err(why) => Event::MasterLost(format!(
                        "the master node names an unreadable address {replication:?}: {why}"
                    )),
                }
            }
        };
        self.inputs_push(Input::Role(event));
    }

    /// Keeps the elector, starts the in-sync set's writer and the session's watcher.
    fn joined(&mut self, elector: Arc<Elector>) {
        let (isr, mut updates) = mpsc::unbounded::<IsrUpdate>();
        let writer = elector.clone();
        runtime::spawn(async move {
            while let Some(update) = updates.next().await {
                while let Err(why) = writer.write_isr(&update.members).await {
                    if ended(writer.session()) {
                        // Fenced and stopping: nothing may be released without it.
                        return;
                    }
                    log::warn!("election: writing the in-sync set: {why}; trying again");
                    runtime::sleep(RETRY / 10).await;
                }
                if let Some(written) = update.written {
                    let _ = written.send(());
                }
            }
        });
        let mut states = elector.states();
        let done = self.done_sender.clone();
        runtime::spawn(async move {
            loop {
                let state = states.next().await;
                if done.unbounded_send(Done::Coordination(state)).is_err() {
                    return;
                }
            }
        });
        self.election = Some(Election {
            elector,
            isr,
            epoch: None,
            fenced: false,
            leads: false,
        });
    }

    /// As master: writes the in-sync set (this broker, then `succession`).
    pub(in crate::server) fn write_isr(
        &self,
        succession: &[String],
        written: Option<oneshot::Sender<()>>,
    ) {
        let (Some(election), Some(own)) = (&self.election, &self.replication_address) else {
            return;
        };
        let mut members = vec![own.clone()];
        members.extend(succession.iter().cloned());
        let _ = election.isr.unbounded_send(IsrUpdate { members, written });
    }

    /// A lost slave leaves the in-sync set in ZooKeeper before any receipt goes out
    /// without it: it may not be elected from then on.
    pub(in crate::server) fn drop_lost_slaves(&mut self) {
        // The succession the master tells its slaves: the in-sync ones, in order.
        let in_sync = self.core.in_sync_addresses();
        let (written, wait) = oneshot::channel();
        self.write_isr(&in_sync, Some(written));
        self.start(async move {
            let _ = wait.await;
            Done::SlavesGone("removed from the in-sync set in ZooKeeper".into())
        });
    }

    /// The election session's state changed: fence a master's receipts while it is not
    /// known to be alive; stop once it may have ended.
    pub(in crate::server) fn coordination(&mut self, state: Session) {
        let is_master = self.core.role().is_master();
        let Some(election) = &mut self.election else {
            return;
        };
        match state {
            Session::Connected => {
                if election.fenced {
                    log::info!("election: the ZooKeeper session is back; receipts go out again");
                    election.fenced = false;
                    self.inputs_push(Input::Fence(false));
                }
            }
            Session::Disconnected if is_master => {
                log::warn!("election: ZooKeeper unreachable: no receipt goes out until the session is back");
                election.fenced = true;
                self.inputs_push(Input::Fence(true));
            }
            Session::Disconnected => {
                log::warn!("election: ZooKeeper unreachable; a slave waits for it");
            }
            Session::Expired | Session::Closed => {
                log::warn!(
                    "election: the ZooKeeper session ended: another broker may be master now"
                );
                // Nothing more goes out from this role, whatever the stop finishes: a
                // paused master may hear of the end before it heard of the loss.
                // Its master node went with the session: there is nothing to resign.
                election.leads = false;
                if is_master && !election.fenced {
                    election.fenced = true;
                    self.inputs_push(Input::Fence(true));
                }
                self.inputs_push(Input::Role(Event::SessionEnded));
            }
        }
    }

    /// At a stop: a master deletes its node, so the first in-sync slave claims at once.
    pub(in crate::server) async fn resign(&mut self) {
        if let Some(election) = self.election.as_ref().filter(|e| e.leads) {
            match election.elector.resign().await {
                Ok(()) => log::info!("election: resigned: the first in-sync slave takes over"),
                Err(why) => log::warn!("election: resigning: {why}"),
            }
        }
    }
}

/// Whether the election session is over for good.
fn ended(session: Session) -> bool {
    matches!(session, Session::Expired | Session::Closed)
}
