//! The role machine's actions that need the outside world, carried out for the shell:
//! opening listeners, dialling the master (and making the store the master's), probing,
//! and recording the store's standing in store.toml. What takes time runs as a task of
//! its own and comes back to the shell as a [`Done`].

use std::sync::Arc;
use std::time::Duration;

use futures::future::{AbortHandle, Abortable};
use futures::StreamExt;

use super::shell::Shell;
use super::store::{prepare_store, read_standing, recover};
use crate::config::{Config, Endpoint};
use crate::core::{Input, Store};
use crate::error::{Error, Result};
use crate::journal::{Journal, StoreMeta, JOURNAL_DIR};
use crate::link::probe::{self, Probed};
use crate::link::{master, slave};
use crate::repl::message::CatchUp;
use crate::repl::role::{Action, Event};
use crate::runtime::{self, TcpListener};
use crate::session::Shared;

/// Pause between a master's probes of its lost slave: a slave that decided to promote
/// itself opens its replication listener within this, so three probes cannot miss it.
const PROBE_GAP: Duration = Duration::from_millis(50);
/// Longest pause between a slave's attempts to reach its master.
const MAX_DIAL_BACKOFF: Duration = Duration::from_secs(2);
/// The first pause after a failed dial.
const FIRST_DIAL_BACKOFF: Duration = Duration::from_millis(100);

/// What a task started for an action came back with.
pub(super) enum Done {
    /// An event for the role machine (a probe's answer, a dial that failed).
    Event(Event),
    /// The master welcomed us on this link.
    Welcomed(Box<slave::Link>),
    /// The local store could not be read or prepared: the broker must stop.
    Failed(Error),
}

impl Shell {
    pub(super) async fn role_action(&mut self, action: Action) -> Result<()> {
        match action {
            Action::OpenClientListener => self.open_client_listener().await,
            Action::OpenReplicationListener => self.open_replication_listener().await,
            Action::DialMaster => self.dial_master().await,
            Action::ProbeMaster => {
                let Some(master) = self.config.replication.master_connector_uri.clone() else {
                    self.finish(Done::Event(Event::MasterGone(
                        "no master_connector_uri".into(),
                    )));
                    return Ok(());
                };
                let patience = probe_patience(&self.config);
                self.start(async move {
                    Done::Event(
                        match probe::probe(&master, patience, 1, Duration::ZERO).await {
                            Probed::Master => Event::MasterAnswered,
                            Probed::NoMaster(why) => Event::MasterGone(why),
                        },
                    )
                });
                Ok(())
            }
            Action::ProbeSlave => {
                let address = self.core.lost_slave_address().map(str::to_string);
                let Some(endpoint) = address.as_deref().and_then(|a| Endpoint::parse(a).ok())
                else {
                    self.finish(Done::Event(Event::SlaveGone(
                        "the slave gave no replication address".into(),
                    )));
                    return Ok(());
                };
                let patience = probe_patience(&self.config);
                self.start(async move {
                    Done::Event(match probe::probe(&endpoint, patience, 3, PROBE_GAP).await {
                        Probed::Master => {
                            log::error!("replication: the lost slave answers as a master at {endpoint}: it has taken over");
                            Event::SlaveTookOver
                        }
                        Probed::NoMaster(why) => Event::SlaveGone(why),
                    })
                });
                Ok(())
            }
            Action::Exit(code) => {
                self.exit = Some(code);
                Ok(())
            }
            // The core carries these out itself.
            Action::Promote | Action::ContinueAlone | Action::RecordInSync => Ok(()),
        }
    }

    /// Takes back what a task came back with.
    pub(super) async fn take_done(&mut self, done: Done) -> Result<()> {
        match done {
            Done::Event(event) => self.inputs_push(Input::Role(event)),
            Done::Welcomed(link) => self.welcomed(*link).await?,
            Done::Failed(error) => return Err(error),
        }
        Ok(())
    }

    /// The master welcomed us. When our journal is a prefix of the master's (`Append`),
    /// nothing on disk changes but `store.toml`, and the core already holds what a
    /// recovery would rebuild: it mirrors on at once. (Replaying a big store here would
    /// leave the link silent for seconds, and a master drops a silent slave.) Otherwise
    /// the journal stops (it has written what it had), the store is made the master's and
    /// recovered afresh, and the core mirrors into it. Until then the journal ran, so a
    /// slave that promotes after a failed dial can write.
    async fn welcomed(&mut self, link: slave::Link) -> Result<()> {
        self.dial_backoff = Duration::ZERO;
        log::info!(
            "replication: welcomed by master {} ({:?}); in sync at seq {}",
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

    fn start(&mut self, task: impl std::future::Future<Output = Done> + Send + 'static) {
        let done = self.done_sender.clone();
        runtime::spawn(async move {
            let _ = done.unbounded_send(task.await);
        });
    }

    fn finish(&mut self, done: Done) {
        let _ = self.done_sender.unbounded_send(done);
    }

    fn master_name(&self) -> String {
        self.config
            .replication
            .master_connector_uri
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default()
    }

    async fn bind(endpoint: &Endpoint, what: &str) -> Result<TcpListener> {
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
    fn serve(&mut self, accept: impl std::future::Future<Output = ()> + Send + 'static) {
        let (handle, registration) = AbortHandle::new_pair();
        runtime::spawn(Abortable::new(accept, registration));
        self.listeners.push(handle);
    }

    async fn open_client_listener(&mut self) -> Result<()> {
        let listener = Self::bind(&self.config.stomp.bind, "stomp").await?;
        let shared = Arc::new(Shared::new(
            self.config.clone(),
            self.session_sender.clone(),
            self.memory.clone(),
        ));
        let active = self.active.clone();
        self.serve(async move {
            let mut incoming = listener.incoming();
            while let Some(stream) = incoming.next().await {
                match stream {
                    Ok(stream) => super::accept(stream, &shared, &active),
                    Err(error) => log::warn!("stomp: accept failed: {error}"),
                }
            }
        });
        Ok(())
    }

    async fn open_replication_listener(&mut self) -> Result<()> {
        let Some(bind) = self.config.replication.bind.clone() else {
            return Ok(());
        };
        let listener = Self::bind(&bind, "replication").await?;
        let context = master::Context {
            config: self.config.clone(),
            events: self.link_sender.clone(),
            journal_dir: self.config.data_dir().join(JOURNAL_DIR),
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
        let config = self.config.clone();
        let master = self.master_name();
        self.start(async move {
            if !backoff.is_zero() {
                runtime::sleep(backoff).await;
            }
            dial(config, &master).await
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

/// One attempt to reach the master with this store's standing.
async fn dial(config: Arc<Config>, master: &str) -> Done {
    let reading = config.clone();
    let standing = match runtime::spawn_blocking(move || read_standing(&reading)).await {
        Ok(standing) => standing,
        Err(error) => return Done::Failed(error),
    };
    match slave::connect(&config, standing).await {
        Ok(link) => Done::Welcomed(Box::new(link)),
        Err(slave::DialError::Refused(reason)) => {
            log::error!("replication: master {master} refused this slave: {reason}");
            Done::Event(Event::MasterRefused(reason))
        }
        Err(slave::DialError::Unreachable(why)) => {
            log::warn!("replication: master {master} unreachable ({why})");
            Done::Event(Event::MasterLost(why))
        }
    }
}

/// How long a probe waits for an answer: as long as the link waits for a heart-beat.
fn probe_patience(config: &Config) -> Duration {
    let replication = &config.replication;
    Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses))
}
