//! One client connection: CONNECT, then frames turned into core requests.
//!
//! Owns what is scoped to a connection: its negotiated version, subscription ids, open
//! transactions, heart-beat deadlines. Validates every frame (required headers, known
//! ids) and answers bad input with an ERROR frame and a close, never a panic; the broker
//! state lives in the core, which this module only talks to through requests. Frames
//! inside a transaction are buffered here and reach the core as one COMMIT.

mod acks;
mod durable;
pub mod handshake;
mod memory;
mod send;
mod timing;
mod unsupported;
pub mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::channel::{mpsc, oneshot};
use futures::SinkExt;

use crate::broker::{is_pattern, AckMode, Destination, NewMessage, SessionId, Subscribing};
use crate::config::{Config, StompConfig};
use crate::connection::{FrameReader, Inbound, ReadError};
use crate::core::{AckRef, Browsing, Outgoing, Request};
use crate::runtime;
use crate::selector::{Limits, Selector};
use crate::stomp::{Command, Frame, ParseLimits, Version};
pub use crate::transport::Transport;
pub use memory::{MemoryGauge, Room};

/// What a session tells the core's task (the server's shell), in order.
pub enum SessionEvent {
    /// A session completed CONNECT; replies go to `outbound`.
    Open {
        session: SessionId,
        outbound: mpsc::Sender<Outgoing>,
        /// Shuts the connection down at once (a slow consumer).
        kill: Box<dyn Fn() + Send>,
        info: SessionInfo,
    },
    /// A request for the core.
    Request(SessionId, Request),
    /// Resolve once that limit has room (a producer waits on it).
    WaitForRoom(Room, oneshot::Sender<()>),
}

/// Who is on a session, for the admin API's connection list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub peer: String,
    pub login: Option<String>,
    pub version: String,
    /// When CONNECT was accepted, in ms since the Unix epoch.
    pub connected_at_ms: u64,
}

/// What every session shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub requests: mpsc::Sender<SessionEvent>,
    pub memory: MemoryGauge,
    pub limits: ParseLimits,
    next_session: AtomicU64,
}

impl Shared {
    pub fn new(
        config: Arc<Config>,
        requests: mpsc::Sender<SessionEvent>,
        memory: MemoryGauge,
    ) -> Shared {
        let limits = ParseLimits {
            max_frame_size: config.stomp.max_frame_size.bytes(),
            max_headers: config.stomp.max_headers,
            max_header_length: config.stomp.max_header_length,
            ..ParseLimits::default()
        };
        Shared {
            config,
            requests,
            memory,
            limits,
            next_session: AtomicU64::new(1),
        }
    }
}

/// A protocol error: the client gets an ERROR frame with this message, then is closed.
struct Fatal(String);

impl<T: std::fmt::Display> From<T> for Fatal {
    fn from(message: T) -> Fatal {
        Fatal(message.to_string())
    }
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    /// DISCONNECT: the core closes the session after the receipt, if one was asked for.
    Disconnected {
        receipt_pending: bool,
    },
}

struct Subscription {
    key: u64,
    /// A browse's off switch (`browser:true`), set at UNSUBSCRIBE.
    browse: Option<Arc<AtomicBool>>,
}

#[derive(Default)]
struct Transaction {
    sends: Vec<NewMessage>,
    acks: Vec<AckRef>,
    nacks: Vec<AckRef>,
    /// Bytes of the buffered messages: the COMMIT record must fit in a journal segment.
    bytes: usize,
}

impl Transaction {
    fn frames(&self) -> usize {
        self.sends.len() + self.acks.len() + self.nacks.len()
    }
}

struct Session {
    id: SessionId,
    version: Version,
    shared: Arc<Shared>,
    requests: mpsc::Sender<SessionEvent>,
    /// The reader's own way to queue frames (receipts it answers itself, ERRORs).
    outbound: mpsc::Sender<Outgoing>,
    subscriptions: HashMap<String, Subscription>,
    next_sub: u64,
    transactions: HashMap<String, Transaction>,
    receipt_clock: Arc<timing::ReceiptClock>,
    /// CONNECT's `client-id`: durable subscriptions are kept under it.
    client_id: Option<String>,
}

/// Serves one accepted connection until it closes.
pub async fn serve(transport: Transport, shared: Arc<Shared>) {
    let id = SessionId(shared.next_session.fetch_add(1, Ordering::Relaxed));
    let Transport {
        reader,
        writer,
        kill,
        peer,
        ..
    } = transport;
    log::debug!("session {}: connection from {peer}", id.0);
    let mut reader = FrameReader::new(reader, shared.limits.clone());
    let (connect, negotiated, connected) =
        match accept_connect(&mut reader, &shared, id, &peer).await {
            Ok(accepted) => accepted,
            Err(Some(error)) => return close_with(writer, kill, error).await,
            Err(None) => return,
        };
    let (outbound, outbound_rx) = mpsc::channel(shared.config.stomp.max_pending_frames);
    let mut session = Session {
        id,
        version: negotiated.version,
        requests: shared.requests.clone(),
        shared: shared.clone(),
        outbound: outbound.clone(),
        subscriptions: HashMap::new(),
        next_sub: 1,
        transactions: HashMap::new(),
        receipt_clock: Arc::default(),
        client_id: connect
            .header("client-id")
            .filter(|id| !id.is_empty())
            .map(str::to_string),
    };
    // CONNECTED goes first on the queue the writer drains, ahead of anything the core sends.
    let mut first = outbound.clone();
    if first.try_send(Outgoing::Frame(connected)).is_err()
        || session
            .requests
            .send(SessionEvent::Open {
                session: id,
                outbound,
                kill: {
                    let kill = kill.clone();
                    Box::new(move || kill())
                },
                info: SessionInfo {
                    peer,
                    login: connect.header("login").map(str::to_string),
                    version: negotiated.version.as_str().to_string(),
                    connected_at_ms: unix_ms(),
                },
            })
            .await
            .is_err()
    {
        return;
    }
    runtime::spawn(writer::run(
        writer,
        kill,
        negotiated.clone(),
        outbound_rx,
        shared.requests.clone(),
        id,
        session.receipt_clock.clone(),
    ));
    crate::meter::METERS.connections.add(1);
    let grace = shared.config.stomp.heartbeat_grace;
    let read_deadline = negotiated.expect_every.map(|every| every.mul_f64(grace));
    let flow = session.read_loop(&mut reader, read_deadline).await;
    if flow
        != (Flow::Disconnected {
            receipt_pending: true,
        })
    {
        let _ = session
            .requests
            .send(SessionEvent::Request(id, Request::Close))
            .await;
    }
    log::debug!("session {}: closed", id.0);
}

/// Reads and checks CONNECT: the frame, what was negotiated and the CONNECTED answer;
/// or the ERROR to close with (`None`: the client left first).
async fn accept_connect(
    reader: &mut FrameReader<crate::transport::Reader>,
    shared: &Shared,
    id: SessionId,
    peer: &str,
) -> Result<(Frame, handshake::Negotiated, Frame), Option<Frame>> {
    let timeout = shared.config.connect_timeout();
    let connect = match runtime::timeout(timeout, reader.read(Version::V1_0)).await {
        None => {
            log::debug!("session {}: no CONNECT within {timeout:?}; closing", id.0);
            return Err(Some(Frame::error(
                "no CONNECT frame within the connect timeout",
            )));
        }
        Some(Ok(Some(Inbound::Frame(frame)))) => frame,
        Some(Ok(Some(Inbound::HeartBeat))) => {
            return Err(Some(Frame::error(
                "expected CONNECT or STOMP, got a heart-beat",
            )))
        }
        Some(Ok(None)) => return Err(None),
        Some(Err(error)) => return Err(Some(Frame::error(error.to_string()))),
    };
    let session_name = format!("{}-{}", shared.config.broker.name, id.0);
    match handshake::negotiate(&connect, &shared.config, &session_name) {
        Ok((negotiated, connected)) => Ok((connect, negotiated, connected)),
        Err(error) => {
            log::info!(
                "session {}: CONNECT from {peer} refused: {}",
                id.0,
                error.header("message").unwrap_or("")
            );
            Err(Some(error))
        }
    }
}

/// Writes `frame` (an ERROR) to a connection that never became a session, then closes it.
pub(crate) async fn close_with(
    writer: crate::transport::Writer,
    kill: Arc<dyn Fn() + Send + Sync>,
    frame: Frame,
) {
    let mut writer = crate::connection::FrameWriter::new(writer, Version::V1_0);
    let _ = runtime::timeout(std::time::Duration::from_secs(1), writer.send(&frame)).await;
    kill();
}

impl Session {
    async fn read_loop(
        &mut self,
        reader: &mut FrameReader<crate::transport::Reader>,
        deadline: Option<std::time::Duration>,
    ) -> Flow {
        loop {
            let read = match deadline {
                Some(deadline) => match runtime::timeout(deadline, reader.read(self.version)).await
                {
                    Some(read) => read,
                    None => {
                        log::info!(
                            "session {}: no heart-beat for {:?}; closing the connection",
                            self.id.0,
                            deadline
                        );
                        return Flow::Continue;
                    }
                },
                None => reader.read(self.version).await,
            };
            let frame = match read {
                Ok(Some(Inbound::Frame(frame))) => frame,
                Ok(Some(Inbound::HeartBeat)) => continue,
                Ok(None) => return Flow::Continue,
                Err(ReadError::Io(error)) => {
                    log::debug!("session {}: {error}", self.id.0);
                    return Flow::Continue;
                }
                Err(error) => {
                    self.fatal(Fatal(error.to_string()), None);
                    return Flow::Continue;
                }
            };
            let receipt = frame.header("receipt").map(str::to_string);
            log::trace!("session {}: {}", self.id.0, frame.command.as_str());
            match self.on_frame(frame).await {
                Ok(Flow::Continue) => {}
                Ok(flow) => return flow,
                Err(fatal) => {
                    self.fatal(fatal, receipt);
                    return Flow::Continue;
                }
            }
        }
    }

    fn fatal(&mut self, fatal: Fatal, receipt: Option<String>) {
        log::debug!("session {}: protocol error: {}", self.id.0, fatal.0);
        let mut frame = Frame::error(fatal.0);
        if let Some(receipt) = receipt {
            frame = frame.with_header("receipt-id", receipt);
        }
        let _ = self.outbound.try_send(Outgoing::Final(frame));
    }

    async fn request(&mut self, request: Request) -> Result<(), Fatal> {
        self.requests
            .send(SessionEvent::Request(self.id, request))
            .await
            .map_err(|_| Fatal("the broker is shutting down".into()))
    }

    /// Answers a frame the session handled itself (it has no durable effect yet).
    fn receipt_now(&mut self, receipt: Option<String>) {
        if let Some(receipt) = receipt {
            let frame = Frame::new(Command::Receipt).with_header("receipt-id", receipt);
            let _ = self.outbound.try_send(Outgoing::Frame(frame));
        }
    }

    async fn on_frame(&mut self, frame: Frame) -> Result<Flow, Fatal> {
        let receipt = frame.header("receipt").map(str::to_string);
        match frame.command {
            Command::Send => self.on_send(frame, receipt).await?,
            Command::Subscribe => self.on_subscribe(&frame, receipt).await?,
            Command::Unsubscribe => self.on_unsubscribe(&frame, receipt).await?,
            Command::Ack | Command::Nack => self.on_ack(&frame, receipt).await?,
            Command::Begin => {
                let name = required(&frame, "transaction")?;
                if self.transactions.contains_key(name) {
                    return Err(Fatal(format!("transaction '{name}' is already open")));
                }
                self.transactions
                    .insert(name.to_string(), Transaction::default());
                self.receipt_now(receipt);
            }
            Command::Commit => {
                let tx = self.take_transaction(&frame)?;
                if !tx.sends.is_empty() {
                    self.wait_for_room(&tx.sends).await?;
                    self.shared.memory.reserve(&tx.sends);
                }
                let (sends, acks, nacks) = (tx.sends, tx.acks, tx.nacks);
                self.request(Request::Commit {
                    sends,
                    acks,
                    nacks,
                    receipt,
                })
                .await?;
            }
            Command::Abort => {
                self.take_transaction(&frame)?;
                self.receipt_now(receipt);
            }
            Command::Disconnect => {
                let receipt_pending = receipt.is_some();
                if let Some(receipt) = receipt {
                    self.request(Request::Barrier {
                        receipt,
                        close: true,
                    })
                    .await?;
                }
                return Ok(Flow::Disconnected { receipt_pending });
            }
            Command::Connect | Command::Stomp => {
                return Err(Fatal(
                    "duplicate CONNECT: this connection is already connected".into(),
                ))
            }
            other => {
                return Err(Fatal(format!(
                    "clients may not send {} frames",
                    other.as_str()
                )))
            }
        }
        Ok(Flow::Continue)
    }

    async fn on_subscribe(&mut self, frame: &Frame, receipt: Option<String>) -> Result<(), Fatal> {
        if let Some(why) = unsupported::refusal(frame) {
            return Err(Fatal(why));
        }
        let destination_text = required(frame, "destination")?;
        let destination = Destination::parse(destination_text, self.id)?;
        if destination
            .temporary_owner()
            .is_some_and(|owner| owner != self.id)
        {
            return Err(Fatal(format!(
                "{destination_text} is another connection's temporary destination: only it may consume from it"
            )));
        }
        let id = match (frame.header("id"), self.version) {
            (Some(id), _) => id.to_string(),
            (None, Version::V1_0) => destination_text.to_string(),
            (None, _) => {
                return Err(Fatal(
                    "SUBSCRIBE needs an 'id' header in STOMP 1.1 and 1.2".into(),
                ))
            }
        };
        if self.subscriptions.contains_key(&id) {
            return Err(Fatal(format!(
                "subscription id '{id}' is already in use on this connection"
            )));
        }
        let ack = match frame.header("ack") {
            None => AckMode::Auto,
            Some(text) => AckMode::parse(text).ok_or_else(|| {
                Fatal(format!(
                    "invalid ack mode '{text}': use auto, client or client-individual"
                ))
            })?,
        };
        let asked = match frame
            .header("activemq.prefetchSize")
            .or(frame.header("prefetch-count"))
        {
            None => self.shared.config.stomp.default_prefetch as usize,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(n) if n >= 1 => n as usize,
                _ => {
                    return Err(Fatal(format!(
                        "invalid prefetch size '{text}': a whole number of at least 1"
                    )))
                }
            },
        };
        // A window larger than half the outbound queue would make a healthy consumer
        // look like a slow one; this way the queue fills only when the client stops
        // reading (a topic flood, unread receipts).
        let prefetch = asked.min((self.shared.config.stomp.max_pending_frames / 2).max(1));
        let selector = self.selector(frame)?;
        let durable = durable::subscription(frame, self.client_id.as_deref(), &destination, &id)?;
        let browsing = is_browsing(frame, &destination)?;
        let key = self.next_sub;
        self.next_sub += 1;
        let browse = browsing.then(Arc::<AtomicBool>::default);
        let subscription = Subscription {
            key,
            browse: browse.clone(),
        };
        self.subscriptions.insert(id.clone(), subscription);
        let subscribing = Subscribing {
            destination,
            subscription: Arc::from(id),
            ack,
            prefetch,
            selector,
        };
        self.request(match browse {
            Some(cancelled) => Request::Browse {
                browsing: Browsing {
                    sub: key,
                    subscribing,
                    limit: self.shared.config.stomp.max_browse,
                    cancelled,
                },
                receipt,
            },
            None => Request::Subscribe {
                sub: key,
                subscribing,
                durable,
                receipt,
            },
        })
        .await
    }

    /// SUBSCRIBE's `selector`, parsed; an empty one selects everything, as in ActiveMQ.
    fn selector(&self, frame: &Frame) -> Result<Option<Arc<Selector>>, Fatal> {
        let Some(text) = frame.header("selector").filter(|t| !t.trim().is_empty()) else {
            return Ok(None);
        };
        match Selector::parse(text, selector_limits(&self.shared.config.stomp)) {
            Ok(selector) => Ok(Some(Arc::new(selector))),
            Err(error) => Err(Fatal(format!("invalid selector {text:?}: {error}"))),
        }
    }

    async fn on_unsubscribe(
        &mut self,
        frame: &Frame,
        receipt: Option<String>,
    ) -> Result<(), Fatal> {
        let id = match (frame.header("id"), self.version) {
            (Some(id), _) => id,
            (None, Version::V1_0) => required(frame, "destination")?,
            (None, _) => return Err(Fatal("UNSUBSCRIBE needs an 'id' header".into())),
        };
        let delete_durable = durable::to_delete(frame, self.client_id.as_deref(), id)?;
        let subscription = self.subscriptions.remove(id);
        if let Some(cancelled) = subscription.as_ref().and_then(|s| s.browse.as_ref()) {
            cancelled.store(true, Ordering::Relaxed);
        }
        let sub = subscription.map(|s| s.key);
        if sub.is_none() && delete_durable.is_none() {
            return Err(Fatal(format!(
                "no subscription with id '{id}' on this connection"
            )));
        }
        self.request(Request::Unsubscribe {
            sub,
            delete_durable,
            receipt,
        })
        .await
    }
}

/// Whether a header's value says yes, as ActiveMQ reads its boolean headers.
fn is_true(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

/// Whether a SUBSCRIBE browses (`browser:true`, ActiveMQ's): only a queue, one by name.
fn is_browsing(frame: &Frame, destination: &Destination) -> Result<bool, Fatal> {
    let asked = frame.header("browser").is_some_and(is_true);
    match destination {
        _ if !asked => Ok(false),
        Destination::Queue(name) if !is_pattern(name) => Ok(true),
        _ => Err(Fatal(format!(
            "'browser:true' browses one queue: {destination} is not one"
        ))),
    }
}

fn required<'f>(frame: &'f Frame, name: &str) -> Result<&'f str, Fatal> {
    match frame.header(name) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(Fatal(format!(
            "{} needs a '{name}' header",
            frame.command.as_str()
        ))),
    }
}

/// Now, in ms since the Unix epoch (the core reads `expires` against the same clock).
pub use crate::core::unix_ms;

/// How large a SUBSCRIBE's selector may be (`[stomp]`'s limits).
pub fn selector_limits(stomp: &StompConfig) -> Limits {
    Limits {
        max_length: stomp.max_header_length,
        max_depth: stomp.max_selector_depth,
        max_pattern: stomp.max_like_pattern,
    }
}
