//! The role driver: starts and stops the core, the listeners and the replication link
//! as the role machine (`repl::role`) asks, and logs every role change.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::{BoxFuture, FutureExt};
use futures::{SinkExt, StreamExt};

use super::store::{prepare_store, read_position, recover};
use super::{accept, drain_sessions};
use crate::config::{Config, Endpoint};
use crate::core::{Core, Exit, MemoryGauge, Request};
use crate::error::{Error, Result};
use crate::journal::{StoreMeta, JOURNAL_DIR};
use crate::repl::probe::{self, Probed};
use crate::repl::role::{self, Action, Event, Policy, Role};
use crate::repl::{master, slave};
use crate::runtime::{self, TcpListener};
use crate::session::Shared;

/// Depth of the queue from sessions into the core: full means producers wait.
const REQUEST_QUEUE: usize = 4096;
/// Pause between a master's probes of its lost slave: a slave that decided to promote
/// itself opens its replication listener within this, so three probes cannot miss it.
const PROBE_GAP: Duration = Duration::from_millis(50);
/// Longest pause between a slave's attempts to reach its master.
const MAX_DIAL_BACKOFF: Duration = Duration::from_secs(2);

/// What can wake the driver.
enum Wake {
    Role(Event),
    Signal,
    CoreStopped(Exit),
    Status,
}

pub(super) struct Driver {
    config: Arc<Config>,
    policy: Policy,
    role: Role,
    signals: mpsc::UnboundedReceiver<i32>,
    role_events: mpsc::UnboundedSender<Event>,
    role_rx: mpsc::UnboundedReceiver<Event>,
    requests: Option<mpsc::Sender<Request>>,
    core_task: Option<BoxFuture<'static, Exit>>,
    memory: MemoryGauge,
    listeners: Vec<runtime::JoinHandle<()>>,
    active: Arc<AtomicUsize>,
    /// Where a slave's link takes the seqs it may acknowledge (from the core or the
    /// journal writer, as `slave_ack` says).
    ack_hook: slave::AckHook,
}

impl Driver {
    pub(super) fn new(config: Arc<Config>, signals: mpsc::UnboundedReceiver<i32>) -> Driver {
        let replication = &config.replication;
        let policy = Policy {
            is_slave: replication.master_connector_uri.is_some(),
            wait_for_slave: replication.wait_for_slave,
            shutdown_on_slave_failure: replication.shutdown_on_slave_failure,
            shutdown_on_master_failure: replication.shutdown_on_master_failure,
        };
        let (role_events, role_rx) = mpsc::unbounded();
        Driver {
            memory: MemoryGauge::new(config.broker.max_memory.bytes()),
            config,
            policy,
            role: Role::Starting,
            signals,
            role_events,
            role_rx,
            requests: None,
            core_task: None,
            listeners: Vec::new(),
            active: Arc::new(AtomicUsize::new(0)),
            ack_hook: slave::AckHook::default(),
        }
    }

    pub(super) async fn run(mut self) -> Result<i32> {
        if !self.config.requires_login() {
            log::warn!("no [[users]] configured: any client may connect without a login");
        }
        if !self.policy.is_slave {
            self.start_core()?;
        }
        if let Some(code) = self.handle(Event::Started).await? {
            return Ok(self.stop(code).await);
        }
        let interval = self.config.broker.status_interval_ms;
        loop {
            let status_tick = async move {
                if interval == 0 {
                    futures::future::pending::<()>().await
                } else {
                    runtime::sleep(Duration::from_millis(interval)).await
                }
            };
            let core = async {
                match &mut self.core_task {
                    Some(task) => task.await,
                    None => futures::future::pending().await,
                }
            };
            let wake = futures::select! {
                event = self.role_rx.next() => match event { Some(e) => Wake::Role(e), None => Wake::Signal },
                _ = self.signals.next() => Wake::Signal,
                exit = core.fuse() => Wake::CoreStopped(exit),
                _ = status_tick.fuse() => Wake::Status,
            };
            let outcome = match wake {
                Wake::Role(event) => self.handle(event).await?,
                Wake::Signal => {
                    log::info!(
                        "signal: shutting down (no new connections; finishing journal writes)"
                    );
                    self.handle(Event::Shutdown).await?
                }
                Wake::CoreStopped(Exit::JournalFailed(why)) => {
                    self.core_task = None;
                    log::error!("stopping: the journal cannot write ({why}); no further receipts can be honoured");
                    Some(1)
                }
                Wake::CoreStopped(Exit::Shutdown) => {
                    self.core_task = None;
                    Some(0)
                }
                Wake::Status => {
                    let status = self.core_status().await;
                    log::info!("status: role {}, {status}", self.role);
                    None
                }
            };
            if let Some(code) = outcome {
                return Ok(self.stop(code).await);
            }
        }
    }

    /// Steps the role machine and performs its actions; `Some(code)` means exit.
    fn handle(&mut self, event: Event) -> BoxFuture<'_, Result<Option<i32>>> {
        async move {
            let (next, actions, why) = role::step(self.role, &event, self.policy);
            if next != self.role {
                let status = self.core_status().await;
                log::info!("role: {} -> {next} ({why}); {status}", self.role);
                self.role = next;
            } else if !actions.is_empty() {
                log::info!("role: {} ({why})", self.role);
            }
            for action in actions {
                match action {
                    Action::OpenClientListener => self.open_client_listener().await?,
                    Action::OpenReplicationListener => self.open_replication_listener().await?,
                    Action::DialMaster => {
                        if let Some(code) = self.dial_master().await? {
                            return Ok(Some(code));
                        }
                    }
                    Action::Promote => self.promote().await?,
                    Action::ContinueAlone => self.continue_alone().await?,
                    Action::RecordInSync => {
                        self.update_store_meta(|meta| meta.alone_since = None)
                            .await?
                    }
                    Action::ProbeMaster => {
                        let event = self.probe_master().await;
                        return self.handle(event).await;
                    }
                    Action::ProbeSlave => {
                        let event = self.probe_slave().await;
                        return self.handle(event).await;
                    }
                    Action::Exit(code) => return Ok(Some(code)),
                }
            }
            Ok(None)
        }
        .boxed()
    }

    fn start_core(&mut self) -> Result<()> {
        let (events_tx, events_rx) = mpsc::unbounded();
        let (broker, journal, recovered) = recover(&self.config, events_tx, self.ack_hook.clone())?;
        log::info!(
            "broker '{}' ({}): data dir {}, store {}{}; recovered epoch {}, {} records in {} segments, next seq {}, {} messages in {} queues",
            self.config.broker.name,
            if self.policy.is_slave { "slave" } else { "master" },
            self.config.data_dir().display(),
            recovered.store_id,
            if recovered.new_store { " (new)" } else { "" },
            recovered.epoch,
            recovered.records,
            recovered.segments,
            recovered.next_seq,
            broker.message_count(),
            broker.queue_depths().len()
        );
        if let Some((file, offset)) = &recovered.torn_tail {
            log::warn!(
                "recovered: cut a torn tail in {} at offset {offset}",
                file.display()
            );
        }
        let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
        let core = Core::new(
            broker,
            journal,
            recovered.next_seq,
            self.memory.clone(),
            self.role_events.clone(),
        )
        .with_slave_ack(self.config.replication.slave_ack, self.ack_hook.clone());
        self.core_task = Some(runtime::spawn(core.run(requests_rx, events_rx)).boxed());
        self.requests = Some(requests);
        Ok(())
    }

    async fn stop_core(&mut self) -> Exit {
        if let Some(mut requests) = self.requests.take() {
            let _ = requests.send(Request::Shutdown).await;
        }
        match self.core_task.take() {
            Some(task) => task.await,
            None => Exit::Shutdown,
        }
    }

    async fn request(&mut self, request: Request) {
        if let Some(requests) = &mut self.requests {
            let _ = requests.send(request).await;
        }
    }

    async fn core_status(&mut self) -> String {
        let (reply, answer) = oneshot::channel();
        self.request(Request::Status(reply)).await;
        answer.await.unwrap_or_else(|_| "core not running".into())
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

    async fn open_client_listener(&mut self) -> Result<()> {
        let listener = Self::bind(&self.config.stomp.bind, "stomp").await?;
        let Some(requests) = self.requests.clone() else {
            return Ok(());
        };
        let shared = Arc::new(Shared::new(
            self.config.clone(),
            requests,
            self.memory.clone(),
        ));
        let active = self.active.clone();
        self.listeners.push(runtime::spawn(async move {
            let mut incoming = listener.incoming();
            while let Some(stream) = incoming.next().await {
                match stream {
                    Ok(stream) => accept(stream, &shared, &active),
                    Err(error) => log::warn!("stomp: accept failed: {error}"),
                }
            }
        }));
        Ok(())
    }

    async fn open_replication_listener(&mut self) -> Result<()> {
        let Some(bind) = self.config.replication.bind.clone() else {
            return Ok(());
        };
        let listener = Self::bind(&bind, "replication").await?;
        let Some(requests) = self.requests.clone() else {
            return Ok(());
        };
        let context = master::Context {
            config: self.config.clone(),
            requests,
            journal_dir: self.config.data_dir().join(JOURNAL_DIR),
        };
        self.listeners
            .push(runtime::spawn(master::serve(listener, context)));
        Ok(())
    }

    /// Dials until welcomed (stopping a running core first), prepares the store, starts
    /// the core and the mirror. `Some(code)` if the broker must exit instead.
    async fn dial_master(&mut self) -> Result<Option<i32>> {
        if self.core_task.is_some() {
            self.stop_core().await;
        }
        let master = self
            .config
            .replication
            .master_connector_uri
            .clone()
            .map(|m| m.to_string())
            .unwrap_or_default();
        let mut backoff = Duration::from_millis(100);
        let link = loop {
            let config = self.config.clone();
            let position = runtime::spawn_blocking(move || read_position(&config)).await?;
            match slave::connect(&self.config, position).await {
                Ok(link) => break link,
                Err(slave::DialError::Refused(reason)) => {
                    log::error!("replication: master {master} refused this slave: {reason}");
                    let (next, _, why) =
                        role::step(self.role, &Event::MasterRefused(reason), self.policy);
                    log::info!("role: {} -> {next} ({why})", self.role);
                    self.role = next;
                    return Ok(Some(role::EXIT_REFUSED));
                }
                Err(slave::DialError::Unreachable(why)) => {
                    log::warn!("replication: master {master} unreachable ({why}); retrying in {} ms (a slave that never attached does not promote)", backoff.as_millis());
                    let wait = runtime::sleep(backoff).fuse();
                    futures::pin_mut!(wait);
                    futures::select! {
                        _ = wait => {}
                        _ = self.signals.next() => return Ok(Some(0)),
                    }
                    backoff = (backoff * 2).min(MAX_DIAL_BACKOFF);
                }
            }
        };
        let config = self.config.clone();
        let prepared = {
            let link_meta = slave::Link {
                stream: link.stream.clone(),
                store_id: link.store_id.clone(),
                epochs: link.epochs.clone(),
                catch_up: link.catch_up.clone(),
                in_sync_at: link.in_sync_at,
            };
            runtime::spawn_blocking(move || prepare_store(&config, &link_meta)).await
        };
        prepared?;
        self.start_core()?;
        log::info!(
            "replication: welcomed by master {master} ({:?}); in sync at seq {}",
            link.catch_up,
            link.in_sync_at
        );
        let requests = self.requests.clone().expect("the core was just started");
        // Queued before the mirror starts, so it precedes the mirror's in-sync event.
        let _ = self.role_events.unbounded_send(Event::MasterReached);
        runtime::spawn(slave::mirror(
            link,
            self.config.clone(),
            requests,
            self.role_events.clone(),
            self.ack_hook.clone(),
        ));
        Ok(None)
    }

    /// Records in store.toml from which seq receipts may go out with one copy, before
    /// the core releases any: a diverged tail past it may hold receipted messages.
    async fn continue_alone(&mut self) -> Result<()> {
        log::warn!("replication: no slave: receipts now wait for this broker's journal only; messages have ONE copy until a slave attaches");
        let (reply, answer) = oneshot::channel();
        self.request(Request::PrepareAlone(reply)).await;
        if let Ok(Some(seq)) = answer.await {
            self.update_store_meta(move |meta| meta.alone_since = Some(seq))
                .await?;
        }
        self.request(Request::ContinueAlone).await;
        Ok(())
    }

    async fn update_store_meta(
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

    /// How long a probe waits for an answer: as long as the link waits for a heart-beat.
    fn probe_patience(&self) -> Duration {
        let replication = &self.config.replication;
        Duration::from_millis(replication.heartbeat_ms * u64::from(replication.heartbeat_misses))
    }

    async fn probe_master(&mut self) -> Event {
        let Some(master) = self.config.replication.master_connector_uri.clone() else {
            return Event::MasterGone("no master_connector_uri".into());
        };
        match probe::probe(&master, self.probe_patience(), 1, Duration::ZERO).await {
            Probed::Master => Event::MasterAnswered,
            Probed::NoMaster(why) => Event::MasterGone(why),
        }
    }

    /// Asks a few times: a slave that is promoting opens its listener within moments.
    async fn probe_slave(&mut self) -> Event {
        let (reply, answer) = oneshot::channel();
        self.request(Request::LostSlave(reply)).await;
        let address = answer.await.ok().flatten();
        let Some(endpoint) = address.as_deref().and_then(|a| Endpoint::parse(a).ok()) else {
            return Event::SlaveGone("the slave gave no replication address".into());
        };
        match probe::probe(&endpoint, self.probe_patience(), 3, PROBE_GAP).await {
            Probed::Master => {
                log::error!("replication: the lost slave answers as a master at {endpoint}: it has taken over");
                Event::SlaveTookOver
            }
            Probed::NoMaster(why) => Event::SlaveGone(why),
        }
    }

    async fn promote(&mut self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.request(Request::Promote(reply)).await;
        let epochs = answer.await.map_err(|_| Error::ShuttingDown)?;
        let saved = epochs.clone();
        // A promoted broker serves alone from its first seq until a slave is in sync.
        let alone_since = epochs.last().map(|start| start.first_seq);
        self.update_store_meta(move |meta| {
            meta.epochs = saved;
            meta.alone_since = alone_since;
        })
        .await?;
        if let Some(start) = epochs.last() {
            log::info!(
                "promoted: now master in epoch {} from seq {}",
                start.epoch,
                start.first_seq
            );
        }
        Ok(())
    }

    /// Closes listeners, stops the core (releasing what became durable), drains sessions.
    async fn stop(mut self, code: i32) -> i32 {
        self.listeners.clear();
        let exit = self.stop_core().await;
        drain_sessions(&self.active).await;
        let code = match (code, exit) {
            (0, Exit::JournalFailed(_)) => 1,
            (code, _) => code,
        };
        log::info!("stopped (exit code {code})");
        code
    }
}
