//! The shell: the one task that runs the core. It owns every channel into the core, the
//! journal handle, the sessions' outbound queues, the replication links' queues and the
//! slave's open link, turns what arrives on them into `core::Input`s, and carries the
//! core's outputs out, in order, in the same turn. Work that takes time (dialling a
//! master, probing, binding a listener) runs beside it (`actions`) and comes back as an
//! input; nothing here decides anything the core could.
//!
//! Backpressure: while the journal writer's queue is full, client requests are left in
//! their bounded channel (the sessions, and so the producers, wait); journal reports,
//! replication traffic and role events are always read.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::future::AbortHandle;
use futures::{FutureExt, StreamExt};

use super::actions::Done;
use crate::broker::{Fetch, SessionId};
use crate::config::Config;
use crate::config::Endpoint;
use crate::core::{Attached, Core, Input, Outgoing, Output, Request};
use crate::error::Result;
use crate::journal::{self, Journal, ReadBatch, Reader, Seq};
use crate::link::copy::Copies;
use crate::link::slave::{Heard, Mirror};
use crate::link::wire::Wire;
use crate::link::{LinkEvent, Presence, SharedPresence, Shipment};
use crate::repl::group::{LinkId, Refusal};
use crate::repl::role::Event;
use crate::session::{MemoryGauge, Room, SessionEvent, SessionInfo};

mod admin;
mod browse;
mod election;
mod journal_events;
mod links;
mod timers;

pub(super) use election::Elected;

/// Depth of the queue from sessions into the core: full means producers wait.
pub(super) const REQUEST_QUEUE: usize = 4096;
/// Depth of the queue from the replication links into the core.
const LINK_QUEUE: usize = 1024;
/// Session events taken per turn before the core dispatches and the journal is pumped.
const BATCH: usize = 512;
/// Records a slave applies in one step at most when several frames are read at once.
const MAX_COALESCED: usize = 16 * 1024;
/// How often the core's clock ticks while requests wait for replicas: their timeout is
/// this precise.
const CLOCK_TICK: Duration = Duration::from_millis(100);
/// A core step longer than this is logged: replication heart-beats wait for it.
const SLOW_STEP: Duration = Duration::from_millis(100);

/// How the core reaches one session.
struct SessionHandle {
    outbound: mpsc::Sender<Outgoing>,
    /// Shuts the socket down at once, for a client that stopped reading.
    kill: Box<dyn Fn() + Send>,
    /// Who is on it; `None` for an admin call's own session.
    info: Option<SessionInfo>,
}

/// How a shell ended.
pub(super) struct Ended {
    pub(super) code: i32,
    /// Start a new shell from the store (the broker rejoins its group) instead of exiting.
    pub(super) rejoin: bool,
    /// Handed to the next shell.
    pub(super) signals: mpsc::UnboundedReceiver<i32>,
}

/// What woke the shell.
enum Wake {
    Session(Option<SessionEvent>),
    Link(Option<LinkEvent>),
    Journal(Option<journal::Event>),
    Fetched(Option<ReadBatch<Fetch>>),
    Mirror(Heard),
    Done(Option<Done>),
    Admin(Option<crate::admin::Call>),
    Signal,
    Idle,
}

pub(super) struct Shell {
    pub(super) config: Arc<Config>,
    /// How this broker reaches the others' replication listeners, and serves its own.
    pub(super) wire: Wire,
    pub(super) core: Core,
    pub(super) journal: Journal,
    journal_events: mpsc::UnboundedReceiver<journal::Event>,
    pub(super) journal_report: mpsc::UnboundedSender<journal::Event>,
    /// Reads records back for paged-out bodies and compaction.
    reader: Reader<Fetch>,
    fetched: mpsc::UnboundedReceiver<ReadBatch<Fetch>>,
    session_events: mpsc::Receiver<SessionEvent>,
    pub(super) session_sender: mpsc::Sender<SessionEvent>,
    sessions: HashMap<SessionId, SessionHandle>,
    link_events: mpsc::Receiver<LinkEvent>,
    pub(super) link_sender: mpsc::Sender<LinkEvent>,
    /// Each attached slave's shipment queue, by link.
    live: HashMap<LinkId, mpsc::UnboundedSender<Shipment>>,
    /// Each attached slave's `broker.name`, from its Hello (for the admin API).
    replica_names: HashMap<LinkId, String>,
    /// The slaves whose links failed lately, for the admin API.
    lost_replicas: admin::LostReplicas,
    /// Records for each link, gathered in this turn.
    shipping: HashMap<LinkId, Vec<crate::journal::Record>>,
    attach_replies: HashMap<LinkId, oneshot::Sender<Result<Attached, Refusal>>>,
    /// The open link to our master, on a slave.
    pub(super) mirror: Option<Mirror>,
    /// The master this broker dials as a slave: `master_connector_uri` at first, then
    /// whichever broker took over or a peer named.
    pub(super) master: Option<Endpoint>,
    /// Where this broker's replication listener is, once open (told to the master, and
    /// by it to the other slaves).
    pub(super) replication_address: Option<String>,
    /// What the replication listener answers, kept current after every core step.
    pub(super) presence: SharedPresence,
    /// The store copies the replication listener serves (to empty or stale slaves).
    pub(super) copies: Copies,
    done: mpsc::UnboundedReceiver<Done>,
    pub(super) done_sender: mpsc::UnboundedSender<Done>,
    signals: mpsc::UnboundedReceiver<i32>,
    pub(super) memory: MemoryGauge,
    /// Producers waiting for memory or disk, with what they wait for.
    pub(super) room_waiters: Vec<(Room, oneshot::Sender<()>)>,
    /// Accept loops of the open listeners, aborted first at a stop.
    pub(super) listeners: Vec<AbortHandle>,
    pub(super) active: Arc<AtomicUsize>,
    /// Inputs that carrying out outputs produced (a slow consumer cut off, ...).
    inputs: VecDeque<Input>,
    /// An input since the last `Tick` may have made messages deliverable.
    tick_due: bool,
    outputs: Vec<Output>,
    /// Set when the broker must stop, with the exit code.
    pub(super) exit: Option<i32>,
    /// The stop ends this shell only: the broker starts again from its store
    /// (`Action::Rejoin`).
    pub(super) rejoin: bool,
    /// The pause before the next dial (grows while the master is unreachable).
    pub(super) dial_backoff: Duration,
    next_status: Option<Instant>,
    /// When to look for segments to compact next.
    next_compaction: Option<Instant>,
    /// The start of the core's clock (`Input::Clock`), and when it is next due while
    /// requests wait for replicas.
    clock_start: Instant,
    next_clock: Instant,
    /// Calls from the admin listener, and its sending end (for the listener).
    admin_calls: mpsc::Receiver<crate::admin::Call>,
    pub(super) admin_sender: mpsc::Sender<crate::admin::Call>,
    /// Admin ops stepped so far (each gets a session of its own).
    admin_sessions: u64,
    /// The number of the core's last role change and when the shell saw it (Unix ms).
    last_change: (u64, u64),
    seq_clock: admin::SeqClock,
    started_at_ms: u64,
    /// This broker's part in the ZooKeeper election, once joined (`[election]`).
    election: Option<election::Election>,
}

/// The channels a shell reads, made before the journal that reports into one of them.
pub(super) struct Channels {
    pub journal_events: (
        mpsc::UnboundedSender<journal::Event>,
        mpsc::UnboundedReceiver<journal::Event>,
    ),
}

impl Channels {
    pub fn new() -> Channels {
        Channels {
            journal_events: mpsc::unbounded(),
        }
    }
}

/// When a periodic job set to `interval_ms` (0 = never) is next due.
fn due_in(interval_ms: u64) -> Option<Instant> {
    (interval_ms > 0).then(|| Instant::now() + Duration::from_millis(interval_ms))
}

impl Shell {
    pub(super) fn new(
        config: Arc<Config>,
        wire: Wire,
        core: Core,
        journal: Journal,
        channels: Channels,
        signals: mpsc::UnboundedReceiver<i32>,
    ) -> Shell {
        let (session_sender, session_events) = mpsc::channel(REQUEST_QUEUE);
        let (link_sender, link_events) = mpsc::channel(LINK_QUEUE);
        let (done_sender, done) = mpsc::unbounded();
        let (journal_report, journal_events) = channels.journal_events;
        let (fetched_report, fetched) = mpsc::unbounded();
        let reader = Reader::start(
            config.data_dir().join(journal::JOURNAL_DIR),
            Box::new(move |batch| {
                let _ = fetched_report.unbounded_send(batch);
            }),
        );
        let config_master = config.replication.master_connector_uri.clone();
        let (admin_sender, admin_calls) = crate::admin::channel();
        let core_epoch = core.epoch();
        Shell {
            memory: MemoryGauge::new(config.broker.max_memory.bytes()),
            next_status: due_in(config.broker.status_interval_ms),
            next_compaction: due_in(config.broker.compact_interval_ms),
            reader,
            fetched,
            config,
            wire,
            core,
            journal,
            journal_events,
            journal_report,
            session_events,
            session_sender,
            sessions: HashMap::new(),
            link_events,
            link_sender,
            live: HashMap::new(),
            shipping: HashMap::new(),
            replica_names: HashMap::new(),
            lost_replicas: admin::LostReplicas::default(),
            attach_replies: HashMap::new(),
            mirror: None,
            master: config_master,
            replication_address: None,
            copies: Copies::default(),
            presence: Arc::new(std::sync::Mutex::new(Presence::NotMaster {
                epoch: core_epoch,
                candidate: false,
                master: None,
            })),
            done,
            done_sender,
            signals,
            room_waiters: Vec::new(),
            listeners: Vec::new(),
            active: Arc::new(AtomicUsize::new(0)),
            inputs: VecDeque::new(),
            tick_due: false,
            outputs: Vec::new(),
            exit: None,
            rejoin: false,
            dial_backoff: Duration::ZERO,
            clock_start: Instant::now(),
            next_clock: Instant::now(),
            admin_calls,
            admin_sender,
            admin_sessions: 0,
            last_change: (0, 0),
            seq_clock: admin::SeqClock::default(),
            started_at_ms: crate::session::unix_ms(),
            election: None,
        }
    }

    /// Runs the broker until the role machine, a signal or the journal stops it.
    pub(super) async fn run(mut self) -> Result<Ended> {
        self.open_admin_listener().await?;
        self.turn(Input::Role(Event::Started)).await?;
        while self.exit.is_none() {
            if let Some(mirror) = &mut self.mirror {
                mirror.tend().await;
            }
            let wake = self.wait().await;
            self.wake(wake).await?;
            self.status();
            self.watch_core();
            self.compaction().await?;
            self.clock().await?;
        }
        let code = self.exit.unwrap_or(0);
        Ok(self.stop(code).await)
    }

    /// Waits for the next thing to do, until the next status line is due at the latest.
    async fn wait(&mut self) -> Wake {
        let accepting = self.accepting();
        let clock = (self.core.holding() || self.core.has_timers()).then_some(self.next_clock);
        let next = [self.next_status, self.next_compaction, clock];
        let until_due = next
            .iter()
            .flatten()
            .min()
            .map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(Instant::now())
            });
        let session_events = &mut self.session_events;
        let sessions = async {
            if accepting {
                session_events.next().await
            } else {
                futures::future::pending().await
            }
        };
        let mirror = &mut self.mirror;
        let heard = async {
            match mirror {
                Some(mirror) => mirror.next().await,
                None => futures::future::pending().await,
            }
        };
        let woken = async {
            futures::select! {
                event = self.journal_events.next() => Wake::Journal(event),
                fetched = self.fetched.next() => Wake::Fetched(fetched),
                event = self.link_events.next() => Wake::Link(event),
                heard = heard.fuse() => Wake::Mirror(heard),
                done = self.done.next() => Wake::Done(done),
                call = self.admin_calls.next() => Wake::Admin(call),
                event = sessions.fuse() => Wake::Session(event),
                _ = self.signals.next() => Wake::Signal,
            }
        };
        crate::runtime::timeout(until_due, woken)
            .await
            .unwrap_or(Wake::Idle)
    }

    async fn wake(&mut self, wake: Wake) -> Result<()> {
        match wake {
            Wake::Session(Some(event)) => self.session_event(event),
            // Every session holds a sender, and so does the shell: this never ends.
            Wake::Session(None) => {}
            Wake::Link(Some(event)) => self.link_event(event),
            Wake::Link(None) => {}
            Wake::Journal(Some(event)) => self.journal_event(event),
            Wake::Journal(None) => {}
            Wake::Fetched(Some(batch)) => self.inputs.push_back(Input::Fetched(batch)),
            Wake::Fetched(None) => {}
            Wake::Mirror(heard) => self.heard(heard),
            Wake::Done(Some(done)) => self.take_done(done).await?,
            Wake::Done(None) => {}
            Wake::Admin(Some(call)) => self.admin_call(call),
            Wake::Admin(None) => {}
            Wake::Signal => {
                log::info!("signal: shutting down (no new connections; finishing journal writes)");
                self.inputs.push_back(Input::Role(Event::Shutdown));
            }
            Wake::Idle => {}
        }
        self.take_ready();
        self.run_inputs().await
    }

    /// Takes what else is waiting on the journal's, the links' and the sessions'
    /// channels, so one dispatch and one journal hand-off serve the whole batch.
    fn take_ready(&mut self) {
        while let Some(Some(event)) = self.journal_events.next().now_or_never() {
            self.journal_event(event);
        }
        for _ in 0..BATCH {
            match self.link_events.next().now_or_never() {
                Some(Some(event)) => self.link_event(event),
                _ => break,
            }
        }
        if self.accepting() {
            for _ in 0..BATCH {
                match self.session_events.next().now_or_never() {
                    Some(Some(event)) => self.session_event(event),
                    _ => break,
                }
            }
        }
    }

    /// Queues an input for the next `run_inputs`.
    pub(super) fn inputs_push(&mut self, input: Input) {
        self.inputs.push_back(input);
    }

    /// Steps the core with `input` and everything it leads to.
    pub(super) async fn turn(&mut self, input: Input) -> Result<()> {
        self.inputs.push_back(input);
        self.run_inputs().await
    }

    /// Steps every queued input, carries out the outputs, dispatches, pumps the journal.
    async fn run_inputs(&mut self) -> Result<()> {
        while let Some(input) = self.inputs.pop_front() {
            let reserved = match &input {
                Input::Client(_, request) => request.message_bytes(),
                _ => 0,
            };
            let dispatches = input.may_dispatch();
            self.step(input);
            if reserved > 0 {
                self.memory.settle(reserved, self.core.memory_used());
            }
            self.tick_due |= dispatches;
            if self.inputs.is_empty() && std::mem::take(&mut self.tick_due) {
                self.step(Input::Tick);
            }
            // The buffer is taken out and put back, so its capacity serves every turn.
            let mut outputs = std::mem::take(&mut self.outputs);
            self.core.take_outputs(&mut outputs);
            for output in outputs.drain(..) {
                if let Some(waits) = self.carry_out(output) {
                    self.carry_out_waiting(waits).await?;
                }
            }
            self.outputs = outputs;
        }
        self.ship();
        self.journal.pump();
        self.update_memory();
        Ok(())
    }

    /// Steps the core, and says so when one step kept every link and session of this
    /// executor thread waiting (a replication heart-beat may have been missed).
    fn step(&mut self, input: Input) {
        let kind = input.kind();
        let started = Instant::now();
        self.core.step(input);
        let took = started.elapsed();
        if took > SLOW_STEP {
            log::warn!("the core took {} ms for one {kind} input", took.as_millis());
        }
        self.update_presence();
    }

    fn session_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Open {
                session,
                outbound,
                kill,
                info,
            } => {
                let info = Some(info);
                self.sessions.insert(
                    session,
                    SessionHandle {
                        outbound,
                        kill,
                        info,
                    },
                );
            }
            SessionEvent::Request(session, request) => {
                self.inputs.push_back(Input::Client(session, request))
            }
            SessionEvent::WaitForRoom(room, waiter) => self.room_waiters.push((room, waiter)),
        }
    }

    /// Carries out one output of the core at once; gives back the ones that must wait
    /// for I/O (`carry_out_waiting`). The outputs of every message are of the first kind.
    fn carry_out(&mut self, output: Output) -> Option<Output> {
        match output {
            Output::Journal(command) => self.journal.send(command),
            Output::Pace(pace) => self.journal.set_pace(pace),
            Output::ToSession(session, outgoing) => self.queue_for(session, outgoing),
            Output::CloseSession(session) => {
                if let Some(mut handle) = self.sessions.remove(&session) {
                    // Closed for every sender (the reader holds one too): the writer
                    // drains what is queued and exits.
                    handle.outbound.close_channel();
                }
            }
            Output::Attached { link, result } => {
                if result.is_err() {
                    self.live.remove(&link);
                    self.replica_names.remove(&link);
                }
                if let Some(reply) = self.attach_replies.remove(&link) {
                    let _ = reply.send(result);
                }
            }
            // Gathered per link and handed over once a turn (`ship`): a channel message
            // per record and slave cost the master more than the slave's whole link.
            Output::Ship { link, record } => self.shipping.entry(link).or_default().push(record),
            Output::TellInSync(link) => {
                self.ship();
                if let Some(live) = self.live.get(&link) {
                    let _ = live.unbounded_send(Shipment::InSync);
                }
            }
            Output::TellSuccession(succession) => {
                // The in-sync set in ZooKeeper before the slaves hear it (`[election]`).
                self.write_isr(&succession, None);
                self.ship();
                for live in self.live.values() {
                    let _ = live.unbounded_send(Shipment::Succession(succession.clone()));
                }
            }
            Output::ProbeSlaves(addresses) => self.probe_slaves(addresses),
            Output::CheckSuccession { master, succession } => {
                self.check_succession(master, succession)
            }
            Output::Read(batch) => self.reader.read(batch),
            Output::Browse {
                session,
                browsing,
                items,
            } => self.browse(session, browsing, items),
            waits => return Some(waits),
        }
        None
    }

    /// Carries out an output that waits for I/O: a write to the master, store.toml, a
    /// role action.
    async fn carry_out_waiting(&mut self, output: Output) -> Result<()> {
        match output {
            Output::AckMaster(seq) => {
                if let Some(mirror) = &mut self.mirror {
                    mirror.ack(seq).await;
                }
            }
            Output::RecordAloneSince(since) => self.record_alone_since(since).await?,
            Output::RecordEpochs(epochs) => self.record_epochs(epochs).await?,
            Output::Role(action) => self.role_action(action).await?,
            done => {
                let _ = self.carry_out(done);
            }
        }
        Ok(())
    }

    /// Queues for a session; one that has stopped reading is cut off as a slow consumer.
    fn queue_for(&mut self, session: SessionId, outgoing: Outgoing) {
        let Some(handle) = self.sessions.get_mut(&session) else {
            return;
        };
        if let Err(error) = handle.outbound.try_send(outgoing) {
            if error.is_full() {
                log::warn!("session {}: its client is not reading and its outbound queue is full (stomp.max_pending_frames); disconnecting it as a slow consumer", session.0);
                (handle.kill)();
            }
            handle.outbound.close_channel();
            self.sessions.remove(&session);
            self.inputs
                .push_back(Input::Client(session, Request::Close));
        }
    }

    /// Closes the listeners first (a stopping master answers no probe), finishes the
    /// journal (releasing the receipts it made due), closes every link and session.
    async fn stop(mut self, code: i32) -> Ended {
        for listener in self.listeners.drain(..) {
            listener.abort();
        }
        self.mirror = None;
        self.stop_journal().await;
        let code = match self.run_inputs().await {
            Ok(()) => code,
            Err(error) => {
                log::error!("stopping: {error}");
                code.max(1)
            }
        };
        self.resign().await;
        // Closing a link's queue ends it ("the master is stopping").
        self.live.clear();
        // Closing each channel ends its writer once it has written what is queued.
        for (_, mut handle) in self.sessions.drain() {
            handle.outbound.close_channel();
        }
        super::drain_sessions(&self.active).await;
        let rejoin = self.rejoin && code == 0;
        if rejoin {
            log::info!("stopped this role; starting again from the store to rejoin the group");
        } else {
            log::info!("stopped (exit code {code})");
        }
        Ended {
            code,
            rejoin,
            signals: self.signals,
        }
    }
}
