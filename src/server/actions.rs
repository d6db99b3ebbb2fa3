//! The role machine's actions that need the outside world, carried out for the shell:
//! opening listeners, dialling the master (and making the store the master's), probing,
//! and recording the store's standing in store.toml. What takes time runs as a task of
//! its own and comes back to the shell as a [`Done`].

use std::sync::Arc;
use std::time::Duration;

use futures::future::{AbortHandle, Abortable};
use futures::StreamExt;

use super::clients::{accept, Speaks};
use super::shell::Shell;
use super::store::{prepare_store, read_standing, recover};
use crate::config::{Config, Endpoint};
use crate::core::{Input, Store};
use crate::error::{Error, Result};
use crate::journal::{Epoch, Journal, Seq, StoreMeta, JOURNAL_DIR};
use crate::link::probe::{Probed, Prober};
use crate::link::{copy, master, slave};
use crate::repl::message::CatchUp;
use crate::repl::role::{Action, Event};
use crate::runtime::{self, TcpListener};
use crate::session::Shared;

/// Pause between a master's probes of its lost slave: a slave that decided to promote
/// itself opens its replication listener within this, so three probes cannot miss it.
pub(super) const PROBE_GAP: Duration = Duration::from_millis(50);
/// Longest pause between a slave's attempts to reach its master.
const MAX_DIAL_BACKOFF: Duration = Duration::from_secs(2);
/// The first pause after a failed dial.
const FIRST_DIAL_BACKOFF: Duration = Duration::from_millis(100);

/// What a task started for an action came back with.
pub(super) enum Done {
    /// An event for the role machine (a probe's answer, a dial that failed).
    Event(Event),
    /// Another broker is the master: dial it from now on, then step the event.
    Follow(Endpoint, Event),
    /// No master answered at the lost slaves' addresses, and why.
    SlavesGone(String),
    /// The master's store is copied and ready to install.
    Copied(copy::Copied),
    /// The master welcomed us on this link.
    Welcomed(Box<slave::Link>),
    /// The local store could not be read or prepared: the broker must stop.
    Failed(Error),
    /// An election ended (`[election]`).
    Election(Box<super::shell::Elected>),
    /// The election session's state changed.
    Coordination(crate::zk::Session),
}

impl Shell {
    pub(super) async fn role_action(&mut self, action: Action) -> Result<()> {
        match action {
            Action::OpenClientListener => self.open_client_listener().await,
            Action::OpenReplicationListener => self.open_replication_listener().await,
            Action::DialMaster => self.dial_master().await,
            Action::CopyStore => {
                let Some(master) = self.master.clone() else {
                    self.finish(Done::Event(Event::MasterLost("no master known".into())));
                    return Ok(());
                };
                let (config, wire) = (self.config.clone(), self.wire.clone());
                self.start(async move {
                    match copy::copy(config, wire, master).await {
                        Ok(copied) => Done::Copied(copied),
                        Err(why) => {
                            log::warn!(
                                "replication: the copy of the master's store broke off: {why}"
                            );
                            Done::Event(Event::MasterLost(why))
                        }
                    }
                });
                Ok(())
            }
            Action::FindMaster if self.elects() => {
                self.elect(None, false);
                Ok(())
            }
            Action::FindMaster => {
                let peers = self.config.replication.peers.clone();
                let prober = self.prober();
                let (epoch, empty) = (self.core.epoch(), self.core.next_seq() == Seq(1));
                self.start(async move { find_master(peers, prober, epoch, empty).await });
                Ok(())
            }
            Action::Exit(code) => {
                self.exit = Some(code);
                Ok(())
            }
            Action::Rejoin => {
                self.rejoin = true;
                self.exit = Some(0);
                Ok(())
            }
            // The core and the group carry these out themselves.
            Action::Promote
            | Action::ContinueAlone
            | Action::Resume
            | Action::RecordInSync
            | Action::ProbeSlave
            | Action::ProbeMaster
            | Action::CheckSuccession => Ok(()),
        }
    }

    /// Who probes for this broker: over its wire, as patient as its link.
    pub(super) fn prober(&self) -> Prober {
        Prober {
            wire: self.wire.clone(),
            patience: probe_patience(&self.config),
        }
    }

    /// Asks each lost slave's address whether a master listens there.
    pub(super) fn probe_slaves(&mut self, addresses: Vec<String>) {
        if self.elects() {
            // A lost slave cannot have taken over while this master holds the master
            // node: it leaves the in-sync set instead.
            return self.drop_lost_slaves();
        }
        let prober = self.prober();
        self.start(async move {
            let mut why = "the lost slaves gave no replication address".to_string();
            for address in addresses {
                let Ok(endpoint) = Endpoint::parse(&address) else {
                    continue;
                };
                match probe_lost_slave(&prober, &endpoint).await {
                    Probed::Master(_) => {
                        log::error!("replication: the lost slave answers as a master at {endpoint}: it has taken over");
                        return Done::Event(Event::SlaveTookOver);
                    }
                    Probed::NotMaster { .. } => why = format!("{endpoint} is not a master"),
                    Probed::NoMaster(no) => why = format!("{endpoint}: {no}"),
                }
            }
            Done::SlavesGone(why)
        });
    }

    /// Our master is lost (or said it is stopping): decides, with the succession, whether
    /// this broker dials it again, follows another slave that took over, or promotes.
    pub(super) fn check_succession(&mut self, probe_master: bool, succession: Vec<String>) {
        if self.elects() {
            return self.elect(self.election_epoch(), probe_master);
        }
        let check = super::succession::Succession {
            master: self.master.clone().filter(|_| probe_master),
            own: self.replication_address.clone(),
            members: succession,
            epoch: self.core.epoch(),
            prober: self.prober(),
        };
        self.start(check.run());
    }
    /// Takes back what a task came back with.
    pub(super) async fn take_done(&mut self, done: Done) -> Result<()> {
        match done {
            Done::Event(event) => self.inputs_push(Input::Role(event)),
            Done::Follow(master, event) => {
                log::info!("replication: the master is now {master}");
                self.master = Some(master);
                self.inputs_push(Input::Role(event));
            }
            Done::SlavesGone(why) => self.inputs_push(Input::SlavesGone(why)),
            Done::Copied(copied) => self.install_copy(copied).await?,
            Done::Welcomed(link) => self.welcomed(*link).await?,
            Done::Failed(error) => return Err(error),
            Done::Election(elected) => self.elected(*elected),
            Done::Coordination(state) => self.coordination(state),
        }
        Ok(())
    }

    /// The master welcomed us. When our journal is a prefix of the master's (`Append`),
    /// nothing on disk changes but `store.toml`, and the core already holds what a
    /// recovery would rebuild: it mirrors on at once. (Replaying a big store here would
    /// leave the link silent for seconds, and a master drops a silent slave.) A master
    /// sends `Replace` no more (a store it cannot append to copies its files first, see
    /// `install_copy`); should one come, the journal stops, the store is made the
    /// master's and recovered afresh, and the core mirrors into it.
    async fn welcomed(&mut self, link: slave::Link) -> Result<()> {
        self.dial_backoff = Duration::ZERO;
        log::info!(
            "replication: welcomed by master {} ({}); in sync at seq {}",
            self.master_name(),
            link.welcome.catch_up,
            link.welcome.in_sync_at
        );
        let welcome = link.welcome.clone();
        if let CatchUp::Append { .. } = welcome.catch_up {
            let (store_id, epochs) = (welcome.store_id.clone(), welcome.epochs.clone());
            self.update_store_meta(move |meta| {
                meta.store_id = store_id;
                meta.epochs = epochs;
                meta.alone_since = None;
            })
            .await?;
            self.mirror = Some(slave::Mirror::new(link, &self.config));
            self.inputs_push(Input::WelcomedInPlace {
                store_id: welcome.store_id,
                epochs: welcome.epochs,
            });
            return Ok(());
        }
        self.stop_journal().await;
        let (config, report) = (self.config.clone(), self.journal_report.clone());
        let (journal, store) = runtime::spawn_blocking(move || -> Result<(Journal, Store)> {
            prepare_store(&config, &welcome)?;
            let (journal, store, _) = recover(&config, report)?;
            Ok((journal, store))
        })
        .await?;
        self.journal = journal;
        self.mirror = Some(slave::Mirror::new(link, &self.config));
        self.inputs_push(Input::Welcomed(Box::new(store)));
        Ok(())
    }

    /// The copy is done: the journal stops, the copy becomes the store (`recover`
    /// installs it), and the core takes the recovered store before dialling again.
    async fn install_copy(&mut self, copied: copy::Copied) -> Result<()> {
        log::info!(
            "replication: installing the copy of store {} ({} MiB sent, {} MiB held already, of {} MiB)",
            copied.store_id,
            copied.sent >> 20,
            copied.held >> 20,
            copied.total >> 20
        );
        self.stop_journal().await;
        let (config, report) = (self.config.clone(), self.journal_report.clone());
        let (journal, store) = runtime::spawn_blocking(move || -> Result<(Journal, Store)> {
            let (journal, store, _) = recover(&config, report)?;
            Ok((journal, store))
        })
        .await?;
        self.journal = journal;
        // The copy is done: the next dial is at once, not after a failed one's backoff.
        self.dial_backoff = Duration::ZERO;
        self.inputs_push(Input::StoreReplaced(Box::new(store)));
        self.inputs_push(Input::Role(Event::StoreCopied));
        Ok(())
    }

    pub(super) fn start(&mut self, task: impl std::future::Future<Output = Done> + Send + 'static) {
        let done = self.done_sender.clone();
        runtime::spawn(async move {
            let _ = done.unbounded_send(task.await);
        });
    }

    fn finish(&mut self, done: Done) {
        let _ = self.done_sender.unbounded_send(done);
    }

    fn master_name(&self) -> String {
        self.master
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| "(none known)".into())
    }

    pub(super) async fn bind(endpoint: &Endpoint, what: &str) -> Result<TcpListener> {
        let listener = TcpListener::bind(endpoint.socket_addr())
            .await
            .map_err(|e| Error::net(format!("binding the {what} listener to {endpoint}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::net("reading a listener address", e))?;
        log::info!("{what}: listening on tcp://{local}");
        Ok(listener)
    }

    /// Runs an accept loop until the broker stops (which aborts it and so closes the
    /// listening socket at once).
    pub(super) fn serve(&mut self, accept: impl std::future::Future<Output = ()> + Send + 'static) {
        let (handle, registration) = AbortHandle::new_pair();
        runtime::spawn(Abortable::new(accept, registration));
        self.listeners.push(handle);
    }

    async fn open_client_listener(&mut self) -> Result<()> {
        let shared = Arc::new(Shared::new(
            self.config.clone(),
            self.session_sender.clone(),
            self.memory.clone(),
        ));
        let stomp = &self.config.stomp;
        let mut listeners = vec![(stomp.bind.clone(), Speaks::Tcp)];
        if let Some(ws_bind) = &stomp.ws_bind {
            listeners.push((ws_bind.clone(), Speaks::WebSocket));
        }
        if stomp.tls_bind.is_some() || stomp.wss_bind.is_some() {
            let acceptor = tls_acceptor(&self.config)?;
            if let Some(tls_bind) = &stomp.tls_bind {
                listeners.push((tls_bind.clone(), Speaks::Tls(acceptor.clone())));
            }
            if let Some(wss_bind) = &stomp.wss_bind {
                listeners.push((wss_bind.clone(), Speaks::Wss(acceptor)));
            }
        }
        for (bind, speaks) in listeners {
            let listener = Self::bind(&bind, speaks.name()).await?;
            self.serve_clients(listener, speaks, &shared);
        }
        Ok(())
    }

    /// Accepts clients on `listener`, every listener's counting towards one limit.
    fn serve_clients(&mut self, listener: TcpListener, speaks: Speaks, shared: &Arc<Shared>) {
        let (shared, active) = (shared.clone(), self.active.clone());
        self.serve(async move {
            let mut incoming = listener.incoming();
            while let Some(stream) = incoming.next().await {
                match stream {
                    Ok(stream) => accept(stream, &shared, &active, &speaks),
                    Err(error) => log::warn!("stomp: accept failed: {error}"),
                }
            }
        });
    }

    /// Opens the replication listener once: it answers probes from the start, and
    /// accepts slaves while this broker is a master.
    async fn open_replication_listener(&mut self) -> Result<()> {
        let Some(bind) = self.config.replication.bind.clone() else {
            return Ok(());
        };
        if self.replication_address.is_some() {
            return Ok(());
        }
        let listener = Self::bind(&bind, "replication").await?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::net("reading a listener address", e))?;
        // Where the others probe us and where our successors find us: the bound port,
        // which is known only now for an ephemeral bind.
        let advertised = match &self.config.replication.advertised_uri {
            Some(uri) => uri.to_string(),
            None => format!("tcp://{local}"),
        };
        self.replication_address = Some(advertised);
        if self.wire.is_tls() {
            log::info!("replication: the link is TLS both ways (replication.tls): this listener serves [tls]'s certificate, and the others' are checked against replication.ca");
        }
        let context = master::Context {
            config: self.config.clone(),
            events: self.link_sender.clone(),
            journal_dir: self.config.data_dir().join(JOURNAL_DIR),
            presence: self.presence.clone(),
            copies: self.copies.clone(),
            wire: self.wire.clone(),
        };
        self.serve(master::serve(listener, context));
        Ok(())
    }

    /// Dials the master: the task comes back welcomed, or with why not. First the
    /// journal settles, so the standing the Hello reads from disk is everything the core
    /// holds: a slave without a link appends nothing more until it is welcomed.
    async fn dial_master(&mut self) -> Result<()> {
        self.mirror = None;
        self.settle_journal().await;
        let backoff = self.dial_backoff;
        self.dial_backoff = (backoff * 2).clamp(FIRST_DIAL_BACKOFF, MAX_DIAL_BACKOFF);
        if !backoff.is_zero() {
            log::info!(
                "replication: retrying in {} ms (a slave that never attached does not promote)",
                backoff.as_millis()
            );
        }
        let Some(master) = self.master.clone() else {
            self.finish(Done::Event(Event::MasterLost("no master known".into())));
            return Ok(());
        };
        let dial = Dial {
            config: self.config.clone(),
            prober: self.prober(),
            master,
            advertised: self.replication_address.clone(),
            others: self.others(),
            epoch: self.core.epoch(),
        };
        self.start(async move {
            if !backoff.is_zero() {
                runtime::sleep(backoff).await;
            }
            dial.run().await
        });
        Ok(())
    }

    pub(super) async fn update_store_meta(
        &mut self,
        change: impl FnOnce(&mut StoreMeta) + Send + 'static,
    ) -> Result<()> {
        let dir = self.config.data_dir().to_path_buf();
        runtime::spawn_blocking(move || -> Result<()> {
            let mut meta = StoreMeta::load(&dir)?;
            change(&mut meta);
            meta.save(&dir)
        })
        .await
    }
}

impl Shell {
    /// The other brokers this one knows of: the configured peers and the succession the
    /// master told, without itself.
    fn others(&self) -> Vec<Endpoint> {
        let own = self.replication_address.as_deref();
        let told = self
            .core
            .succession()
            .iter()
            .filter_map(|a| Endpoint::parse(a).ok());
        let mut others: Vec<Endpoint> = Vec::new();
        for endpoint in self.config.replication.peers.iter().cloned().chain(told) {
            if Some(endpoint.to_string().as_str()) != own && !others.contains(&endpoint) {
                others.push(endpoint);
            }
        }
        others
    }
}

/// One attempt to reach the master with this store's standing.
struct Dial {
    config: Arc<Config>,
    prober: Prober,
    master: Endpoint,
    advertised: Option<String>,
    /// Where to ask for the master should it be unreachable.
    others: Vec<Endpoint>,
    epoch: Epoch,
}

impl Dial {
    async fn run(self) -> Done {
        let reading = self.config.clone();
        let standing = match runtime::spawn_blocking(move || read_standing(&reading)).await {
            Ok(standing) => standing,
            Err(error) => return Done::Failed(error),
        };
        let master = &self.master;
        let advertised = self.advertised.clone();
        match slave::connect(
            &self.config,
            &self.prober.wire,
            master,
            advertised,
            standing,
        )
        .await
        {
            Ok(link) => Done::Welcomed(Box::new(link)),
            Err(slave::DialError::Refused(reason)) => {
                log::error!("replication: master {master} refused this slave: {reason}");
                Done::Event(Event::MasterRefused(reason))
            }
            Err(slave::DialError::Copy) => {
                log::info!("replication: master {master} has nothing this store can append to: copying the master's store");
                Done::Event(Event::CopyNeeded)
            }
            Err(slave::DialError::Redirect(to)) => {
                log::info!("replication: {master} is not the master; it follows {to}");
                match Endpoint::parse(&to) {
                    Ok(to) => match follow(&self.prober, &to, self.epoch).await {
                        Some(done) => done,
                        None => Done::Event(Event::MasterLost(format!(
                            "{master} follows {to}, which is not a master this store can follow"
                        ))),
                    },
                    Err(why) => Done::Event(Event::MasterLost(format!(
                        "{master} follows an unreadable address {to:?}: {why}"
                    ))),
                }
            }
            Err(slave::DialError::Unreachable(why)) => {
                log::warn!("replication: master {master} unreachable ({why})");
                // Another broker may have taken over: ask the ones we know.
                for other in self.others.iter().filter(|o| *o != master) {
                    if let Some(done) = follow(&self.prober, other, self.epoch).await {
                        return done;
                    }
                }
                Done::Event(Event::MasterLost(why))
            }
        }
    }
}

/// Follows `address` if a master at least as new as this store's epoch answers there.
async fn follow(prober: &Prober, address: &Endpoint, epoch: Epoch) -> Option<Done> {
    match prober.once(address).await {
        Probed::Master(Some(theirs)) if theirs >= epoch => {
            Some(Done::Follow(address.clone(), Event::MasterMoved))
        }
        _ => None,
    }
}

/// A master with peers asks them for a live master before it starts: it joins one whose
/// epoch is at least its store's (or any, with an empty store; the catch-up then decides
/// whether their histories agree), and refuses to start next to an older one. While a
/// peer answers as an in-sync slave, it may be about to take over (this broker's old
/// slaves, still deciding): it asks again, for at most four probe patiences.
async fn find_master(peers: Vec<Endpoint>, prober: Prober, epoch: Epoch, empty: bool) -> Done {
    let deadline = std::time::Instant::now() + prober.patience * 4;
    loop {
        let mut asked = peers.clone();
        let mut queue = peers.clone();
        let mut deciding = None;
        while let Some(peer) = (!queue.is_empty()).then(|| queue.remove(0)) {
            match prober.once(&peer).await {
                Probed::Master(Some(theirs)) if theirs >= epoch || empty => {
                    log::info!("replication: peer {peer} is the master in epoch {theirs} (this store is at epoch {epoch})");
                    return Done::Follow(peer, Event::MasterFound);
                }
                Probed::Master(Some(theirs)) => {
                    return Done::Event(Event::PeerConflict(format!(
                        "peer {peer} is a live master in epoch {theirs}, older than this store's epoch {epoch}: following it or starting as a second master could lose receipted messages; stop one of them, or resync this store from the master with scripts/resync.sh"
                    )));
                }
                Probed::Master(None) => {
                    return Done::Event(Event::PeerConflict(format!(
                        "peer {peer} answers, but its answer cannot be read or its certificate cannot be trusted (the line above says which), so it may be a live master: starting next to it could make two; fix the peer or its certificate, or stop it"
                    )));
                }
                Probed::NotMaster { candidate, master } => {
                    if candidate {
                        deciding = Some(peer.clone());
                    }
                    // A slave names its master: ask it too, once.
                    if let Some(master) = master.and_then(|m| Endpoint::parse(&m).ok()) {
                        if !asked.contains(&master) {
                            asked.push(master.clone());
                            queue.push(master);
                        }
                    }
                }
                Probed::NoMaster(why) => log::info!("replication: peer {peer}: {why}"),
            }
        }
        match deciding {
            Some(peer) if std::time::Instant::now() < deadline => {
                log::info!("replication: peer {peer} is an in-sync slave that may be taking over: asking again");
                runtime::sleep(PROBE_GAP).await;
            }
            _ => return Done::Event(Event::NoMasterFound),
        }
    }
}

/// Probes a lost slave: while it answers as an in-sync slave it may be deciding to take
/// over, so it is asked again until it is a master, or not a candidate, or gone.
async fn probe_lost_slave(prober: &Prober, address: &Endpoint) -> Probed {
    let deadline = std::time::Instant::now() + prober.patience * 4;
    loop {
        let probed = prober.ask(address, 3, PROBE_GAP).await;
        let deciding = matches!(
            probed,
            Probed::NotMaster {
                candidate: true,
                ..
            }
        );
        if !deciding || std::time::Instant::now() >= deadline {
            return probed;
        }
        runtime::sleep(PROBE_GAP).await;
    }
}

/// How long a probe waits for an answer: as long as the link waits for a heart-beat.
pub(super) fn probe_patience(config: &Config) -> Duration {
    let replication = &config.replication;
    Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses))
}

/// The TLS listeners' acceptor, from `[tls]` (config validation ensures there is one).
pub(super) fn tls_acceptor(config: &Config) -> Result<crate::tls::Acceptor> {
    let tls = config
        .tls
        .as_ref()
        .ok_or_else(|| Error::Config("a TLS listener needs a [tls] section".into()))?;
    crate::tls::Acceptor::from_files(&tls.cert, &tls.key, tls.client_ca.as_deref())
        .map_err(|why| Error::Config(format!("[tls]: {why}")))
}
