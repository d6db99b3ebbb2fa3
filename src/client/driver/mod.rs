//! The failover driver: one task that owns the connection and everything that must
//! survive losing it.
//!
//! Commands from `Client` handles arrive on a channel. While connected they become
//! frames; receipts complete them. When the connection is lost the driver reconnects
//! (ActiveMQ's algorithm: passes over the address list, the failed address moved to the
//! end, delays growing from `initialReconnectDelay` by `reconnectDelayExponent` up to
//! `maxReconnectDelay`), then restores: every subscription again with the same id, every
//! unreceipted SEND again with the same `dedup-id`, every COMMIT in flight replayed with
//! its transaction's sends (or failed as rolled back if it acked anything).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt};

mod connect;

use super::url::{Address, FailoverUrl};
use super::{AckMode, ClientError, Message, DEDUP_HEADER};
use crate::connection::FrameWriter;
use crate::runtime::{self, TcpStream};
use crate::stomp::{Command as Verb, Frame};

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;
/// A connection's directions: the TCP stream, or TLS over it.
type ReadHalf = crate::transport::Reader;
type WriteHalf = crate::transport::Writer;

pub enum Command {
    Send {
        frame: Frame,
        reply: Reply<()>,
    },
    Subscribe {
        destination: String,
        ack: AckMode,
        prefetch: Option<u32>,
        /// More SUBSCRIBE headers (a `selector`).
        headers: Vec<(String, String)>,
        sink: mpsc::UnboundedSender<Message>,
        reply: Reply<String>,
    },
    Unsubscribe {
        id: String,
        reply: Reply<()>,
    },
    Ack {
        message: Message,
        positive: bool,
        transaction: Option<String>,
        reply: Reply<()>,
    },
    Begin {
        reply: Reply<String>,
    },
    Commit {
        name: String,
        reply: Reply<()>,
    },
    Abort {
        name: String,
        reply: Reply<()>,
    },
    Disconnect {
        reply: Reply<()>,
    },
}

/// A SEND frame without the receipt and dedup id the driver adds.
pub fn send_frame(
    destination: &str,
    body: Bytes,
    headers: &[(&str, &str)],
    transaction: Option<&str>,
) -> Frame {
    let mut frame = Frame::new(Verb::Send).with_header("destination", destination);
    if let Some(name) = transaction {
        frame = frame.with_header("transaction", name);
    }
    for (name, value) in headers {
        frame = frame.with_header(*name, *value);
    }
    frame.with_body(body)
}

/// Heart-beat interval the client offers and asks for.
pub(super) const HEART_BEAT: Duration = Duration::from_millis(1000);
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) enum Arrival {
    Frame(Frame),
    Lost(String),
}

pub(super) struct Connection {
    pub(super) address: Address,
    pub(super) stream: TcpStream,
    pub(super) writer: FrameWriter<WriteHalf>,
    pub(super) arrivals: mpsc::UnboundedReceiver<Arrival>,
    pub(super) send_every: Option<Duration>,
}

enum Waiter {
    Done(Reply<()>),
    Subscribed(Reply<String>, String),
    Disconnected(Reply<()>),
}

struct PendingSend {
    frame: Frame,
    reply: Reply<()>,
    transaction: Option<String>,
}

#[derive(Default)]
struct OpenTransaction {
    sends: Vec<Frame>,
    acked: bool,
    rolled_back: bool,
}

struct Subscribed {
    frame: Frame,
    sink: mpsc::UnboundedSender<Message>,
}

pub(super) struct Driver {
    pub(super) url: FailoverUrl,
    pub(super) login: Option<String>,
    pub(super) passcode: Option<String>,
    /// Makes this client's dedup ids unique among all clients.
    client_id: String,
    counter: u64,
    generation: u64,
    pub(super) order: Vec<Address>,
    sends: BTreeMap<u64, PendingSend>,
    commits: BTreeMap<u64, (String, Reply<()>)>,
    waiters: HashMap<u64, Waiter>,
    subscriptions: BTreeMap<String, Subscribed>,
    transactions: HashMap<String, OpenTransaction>,
}

enum End {
    Lost(String),
    Finished,
}

/// Connects (per `startupMaxReconnectAttempts`) and starts the driver task.
pub async fn start(
    url: FailoverUrl,
    login: Option<String>,
    passcode: Option<String>,
) -> Result<mpsc::UnboundedSender<Command>, ClientError> {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut driver = Driver {
        order: url.addresses.clone(),
        url,
        login,
        passcode,
        client_id: format!("{random:016x}"),
        counter: 0,
        generation: 0,
        sends: BTreeMap::new(),
        commits: BTreeMap::new(),
        waiters: HashMap::new(),
        subscriptions: BTreeMap::new(),
        transactions: HashMap::new(),
    };
    let connection = driver.reconnect(true).await?;
    let (commands, receiver) = mpsc::unbounded();
    runtime::spawn(driver.run(connection, receiver));
    Ok(commands)
}

impl Driver {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    async fn run(
        mut self,
        mut connection: Connection,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        loop {
            match self.serve(&mut connection, &mut commands).await {
                End::Finished => return,
                End::Lost(why) => {
                    let _ = connection.stream.shutdown(std::net::Shutdown::Both);
                    log::warn!(
                        "client: connection to {} lost ({why}); failing over",
                        connection.address
                    );
                    // The address that failed goes to the end: with randomize=false the
                    // next one (the slave) is tried first.
                    if let Some(at) = self.order.iter().position(|a| *a == connection.address) {
                        let failed = self.order.remove(at);
                        self.order.push(failed);
                    }
                    self.generation += 1;
                    match self.reconnect(false).await {
                        Ok(fresh) => {
                            connection = fresh;
                            log::info!("client: reconnected to {}", connection.address);
                            self.restore(&mut connection);
                            if let Err(error) = connection.writer.flush().await {
                                log::warn!(
                                    "client: restoring state on {} failed: {error}",
                                    connection.address
                                );
                            }
                        }
                        Err(error) => return self.give_up(error, commands),
                    }
                }
            }
        }
    }

    /// Fails everything waiting and every later command with `error`.
    fn give_up(mut self, error: ClientError, mut commands: mpsc::UnboundedReceiver<Command>) {
        log::error!("client: {error}");
        for (_, pending) in std::mem::take(&mut self.sends) {
            let _ = pending.reply.send(Err(error.clone()));
        }
        for (_, (_, reply)) in std::mem::take(&mut self.commits) {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, waiter) in std::mem::take(&mut self.waiters) {
            waiter.fail(error.clone());
        }
        commands.close();
        while let Ok(command) = commands.try_recv() {
            command.fail(error.clone());
        }
    }

    async fn serve(
        &mut self,
        connection: &mut Connection,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> End {
        // Heart-beats are due a beat after our last write, whatever we receive meanwhile.
        let mut last_write = std::time::Instant::now();
        loop {
            let send_every = connection.send_every;
            let beat = async move {
                match send_every {
                    Some(every) => runtime::sleep(every.saturating_sub(last_write.elapsed())).await,
                    None => futures::future::pending().await,
                }
            };
            futures::select! {
                command = commands.next() => match command {
                    Some(command) => self.command(command, connection),
                    // Every handle is gone: leave quietly.
                    None => return End::Finished,
                },
                arrival = connection.arrivals.next() => match arrival {
                    Some(Arrival::Frame(frame)) => {
                        if let Some(end) = self.arrive(frame) {
                            return end;
                        }
                    }
                    Some(Arrival::Lost(why)) => return End::Lost(why),
                    None => return End::Lost("reader stopped".into()),
                },
                _ = beat.fuse() => connection.writer.queue_heart_beat(),
            }
            while let Some(Some(command)) = commands.next().now_or_never() {
                self.command(command, connection);
            }
            if connection.writer.pending() > 0 {
                last_write = std::time::Instant::now();
            }
            if let Err(error) = connection.writer.flush().await {
                return End::Lost(error.to_string());
            }
        }
    }

    fn command(&mut self, command: Command, connection: &mut Connection) {
        match command {
            Command::Send { mut frame, reply } => {
                let transaction = frame.header("transaction").map(str::to_string);
                if let Some(name) = &transaction {
                    match self.transactions.get_mut(name) {
                        Some(tx) if tx.rolled_back => {
                            let _ = reply.send(Err(ClientError::RolledBack(name.clone())));
                            return;
                        }
                        Some(_) => {}
                        None => {
                            let _ = reply.send(Err(ClientError::Refused(format!(
                                "no open transaction '{name}'"
                            ))));
                            return;
                        }
                    }
                }
                let n = self.next();
                frame = frame.with_header("receipt", format!("c{n}"));
                if frame.header(DEDUP_HEADER).is_none() {
                    frame = frame.with_header(DEDUP_HEADER, format!("{}-{n}", self.client_id));
                }
                if let Some(tx) = transaction
                    .as_ref()
                    .and_then(|name| self.transactions.get_mut(name))
                {
                    tx.sends.push(frame.clone());
                }
                connection.writer.queue(&frame);
                self.sends.insert(
                    n,
                    PendingSend {
                        frame,
                        reply,
                        transaction,
                    },
                );
            }
            Command::Subscribe {
                destination,
                ack,
                prefetch,
                headers,
                sink,
                reply,
            } => {
                let n = self.next();
                let id = format!("sub-{n}");
                let mut frame = Frame::new(Verb::Subscribe)
                    .with_header("destination", destination)
                    .with_header("id", id.clone())
                    .with_header("ack", ack.as_str());
                if let Some(prefetch) = prefetch {
                    frame = frame.with_header("activemq.prefetchSize", prefetch.to_string());
                }
                frame.headers.extend(headers);
                self.subscriptions.insert(
                    id.clone(),
                    Subscribed {
                        frame: frame.clone(),
                        sink,
                    },
                );
                connection
                    .writer
                    .queue(&frame.with_header("receipt", format!("c{n}")));
                self.waiters.insert(n, Waiter::Subscribed(reply, id));
            }
            Command::Unsubscribe { id, reply } => {
                self.subscriptions.remove(&id);
                let n = self.next();
                connection.writer.queue(
                    &Frame::new(Verb::Unsubscribe)
                        .with_header("id", id)
                        .with_header("receipt", format!("c{n}")),
                );
                self.waiters.insert(n, Waiter::Done(reply));
            }
            Command::Ack {
                message,
                positive,
                transaction,
                reply,
            } => {
                if message.generation != self.generation {
                    // Delivered by a connection that is gone: the broker redelivers it.
                    log::debug!(
                        "client: dropping a stale acknowledgement of {}",
                        message.message_id
                    );
                    let _ = reply.send(Ok(()));
                    return;
                }
                let Some(ack_id) = message.ack_id else {
                    let _ = reply.send(Err(ClientError::Refused(format!(
                        "subscription {} does not take acknowledgements",
                        message.subscription
                    ))));
                    return;
                };
                let mut frame = Frame::new(if positive { Verb::Ack } else { Verb::Nack })
                    .with_header("id", ack_id);
                if let Some(name) = transaction {
                    if let Some(tx) = self.transactions.get_mut(&name) {
                        tx.acked = true;
                    }
                    frame = frame.with_header("transaction", name);
                }
                connection.writer.queue(&frame);
                let _ = reply.send(Ok(()));
            }
            Command::Begin { reply } => {
                let name = format!("tx-{}", self.next());
                connection
                    .writer
                    .queue(&Frame::new(Verb::Begin).with_header("transaction", name.clone()));
                self.transactions
                    .insert(name.clone(), OpenTransaction::default());
                let _ = reply.send(Ok(name));
            }
            Command::Commit { name, reply } => match self.transactions.get(&name) {
                Some(tx) if !tx.rolled_back => {
                    let n = self.next();
                    connection.writer.queue(&commit_frame(&name, n));
                    self.commits.insert(n, (name, reply));
                }
                _ => {
                    self.transactions.remove(&name);
                    let _ = reply.send(Err(ClientError::RolledBack(name)));
                }
            },
            Command::Abort { name, reply } => {
                if self
                    .transactions
                    .remove(&name)
                    .is_some_and(|tx| !tx.rolled_back)
                {
                    connection
                        .writer
                        .queue(&Frame::new(Verb::Abort).with_header("transaction", name));
                }
                let _ = reply.send(Ok(()));
            }
            Command::Disconnect { reply } => {
                let n = self.next();
                connection
                    .writer
                    .queue(&Frame::new(Verb::Disconnect).with_header("receipt", format!("c{n}")));
                self.waiters.insert(n, Waiter::Disconnected(reply));
            }
        }
    }

    /// Handles a frame from the broker; `Some` ends the connection.
    fn arrive(&mut self, frame: Frame) -> Option<End> {
        match frame.command {
            Verb::Message => {
                let subscription = frame.header("subscription").unwrap_or_default().to_string();
                let message = Message {
                    destination: frame.header("destination").unwrap_or_default().to_string(),
                    message_id: frame.header("message-id").unwrap_or_default().to_string(),
                    redelivered: frame.header("redelivered") == Some("true"),
                    ack_id: frame.header("ack").map(str::to_string),
                    subscription: subscription.clone(),
                    generation: self.generation,
                    headers: frame.headers,
                    body: frame.body,
                };
                if let Some(subscribed) = self.subscriptions.get(&subscription) {
                    let _ = subscribed.sink.unbounded_send(message);
                }
                None
            }
            Verb::Receipt => {
                let n = receipt_number(&frame)?;
                if let Some(pending) = self.sends.remove(&n) {
                    let _ = pending.reply.send(Ok(()));
                } else if let Some((name, reply)) = self.commits.remove(&n) {
                    self.transactions.remove(&name);
                    let _ = reply.send(Ok(()));
                } else if let Some(waiter) = self.waiters.remove(&n) {
                    if let Waiter::Disconnected(reply) = waiter {
                        let _ = reply.send(Ok(()));
                        return Some(End::Finished);
                    }
                    waiter.succeed();
                }
                None
            }
            Verb::Error => {
                let why = frame
                    .header("message")
                    .unwrap_or("ERROR without a message")
                    .to_string();
                // An error tied to a request fails that request: resending would fail again.
                if let Some(n) = receipt_number(&frame) {
                    let refused = ClientError::Refused(why.clone());
                    if let Some(pending) = self.sends.remove(&n) {
                        let _ = pending.reply.send(Err(refused));
                    } else if let Some((name, reply)) = self.commits.remove(&n) {
                        self.transactions.remove(&name);
                        let _ = reply.send(Err(refused));
                    } else if let Some(waiter) = self.waiters.remove(&n) {
                        waiter.fail(refused);
                    }
                }
                Some(End::Lost(format!("broker error: {why}")))
            }
            _ => None,
        }
    }
}

fn commit_frame(name: &str, n: u64) -> Frame {
    Frame::new(Verb::Commit)
        .with_header("transaction", name)
        .with_header("receipt", format!("c{n}"))
}

fn receipt_number(frame: &Frame) -> Option<u64> {
    frame.header("receipt-id")?.strip_prefix('c')?.parse().ok()
}

impl Waiter {
    fn succeed(self) {
        match self {
            Waiter::Done(reply) | Waiter::Disconnected(reply) => {
                let _ = reply.send(Ok(()));
            }
            Waiter::Subscribed(reply, id) => {
                let _ = reply.send(Ok(id));
            }
        }
    }

    fn fail(self, error: ClientError) {
        match self {
            Waiter::Done(reply) | Waiter::Disconnected(reply) => {
                let _ = reply.send(Err(error));
            }
            Waiter::Subscribed(reply, _) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

impl Command {
    fn fail(self, error: ClientError) {
        match self {
            Command::Send { reply, .. }
            | Command::Unsubscribe { reply, .. }
            | Command::Ack { reply, .. }
            | Command::Commit { reply, .. }
            | Command::Abort { reply, .. }
            | Command::Disconnect { reply } => {
                let _ = reply.send(Err(error));
            }
            Command::Subscribe { reply, .. } | Command::Begin { reply } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}
