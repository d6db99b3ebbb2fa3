//! The failover client: a STOMP client library that takes ActiveMQ-style failover URLs.
//!
//! `Client::connect(url, login, passcode)` connects to the first reachable address (in
//! list order with `randomize=false`), and a driver task keeps it connected: on a lost
//! connection it reconnects per the URL's options, CONNECTs again, re-subscribes every
//! subscription with the same id, and resends every SEND (and replays every COMMIT)
//! whose receipt had not arrived. Each SEND carries a unique `dedup-id` header, so the
//! broker drops a resent duplicate while still sending its receipt. ACKs for messages
//! delivered before a failover are dropped: the new broker redelivers those messages.
//!
//! Runs on the runtime seam (`runtime`) and the STOMP codec; never reaches into the
//! broker, the journal or replication.

mod driver;
pub mod url;

use std::time::Duration;

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::Stream;

pub use url::{Address, FailoverUrl, Options, UrlError};

/// Header a client stamps on each SEND so a resent copy can be recognised.
pub const DEDUP_HEADER: &str = "dedup-id";

/// What went wrong, by what the caller can do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Every address failed for the allowed number of passes.
    #[error("gave up connecting after {attempts} attempts over {addresses}: {last}")]
    GaveUp {
        attempts: u32,
        addresses: String,
        last: String,
    },
    /// The broker rejected a request (ERROR frame): retrying it would fail again.
    #[error("the broker refused: {0}")]
    Refused(String),
    /// A send waited longer than the URL's `timeout` option.
    #[error("no receipt within {0:?}")]
    Timeout(Duration),
    /// A failover interrupted the transaction. An open one was discarded by the broker;
    /// a COMMIT in flight that held acks cannot be replayed, and its outcome is unknown.
    #[error("transaction '{0}' was interrupted by a failover (rolled back, or in doubt if its COMMIT was in flight)")]
    RolledBack(String),
    #[error("the client is closed")]
    Closed,
}

/// How a subscription's messages are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    Client,
    ClientIndividual,
}

impl AckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }

    pub fn parse(text: &str) -> Option<AckMode> {
        [AckMode::Auto, AckMode::Client, AckMode::ClientIndividual]
            .into_iter()
            .find(|m| m.as_str() == text)
    }
}

/// A received message.
#[derive(Debug, Clone)]
pub struct Message {
    pub destination: String,
    pub message_id: String,
    pub redelivered: bool,
    /// Every header of the MESSAGE frame, the broker's and the sender's.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    ack_id: Option<String>,
    subscription: String,
    /// Which connection delivered it: an ACK from an earlier one is stale.
    generation: u64,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A subscription's messages, in delivery order.
pub struct Subscription {
    pub id: String,
    messages: mpsc::UnboundedReceiver<Message>,
}

impl Stream for Subscription {
    type Item = Message;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Message>> {
        std::pin::Pin::new(&mut self.messages).poll_next(cx)
    }
}

/// A connected client; cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<driver::Command>,
    timeout: Option<Duration>,
}

impl Client {
    /// Connects per `url` (see [`FailoverUrl`]).
    pub async fn connect(
        url: &str,
        login: Option<&str>,
        passcode: Option<&str>,
    ) -> Result<Client, ClientError> {
        let url = FailoverUrl::parse(url)?;
        let timeout = url.options.timeout;
        let commands =
            driver::start(url, login.map(str::to_string), passcode.map(str::to_string)).await?;
        Ok(Client { commands, timeout })
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> driver::Command,
    ) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .unbounded_send(make(reply))
            .map_err(|_| ClientError::Closed)?;
        let answer = match self.timeout {
            Some(limit) => crate::runtime::timeout(limit, answer)
                .await
                .ok_or(ClientError::Timeout(limit))?,
            None => answer.await,
        };
        answer.map_err(|_| ClientError::Closed)?
    }

    /// Sends a message; resolves when the broker's receipt arrives (durable, for a
    /// `persistent:true` message). Resent across failovers until then.
    pub async fn send(
        &self,
        destination: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<(), ClientError> {
        self.send_in(None, destination, body.into(), headers).await
    }

    /// SEND, in a transaction or not; resolves on the receipt.
    async fn send_in(
        &self,
        transaction: Option<&str>,
        destination: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Result<(), ClientError> {
        let frame = driver::send_frame(destination, body, headers, transaction);
        self.ask(|reply| driver::Command::Send { frame, reply })
            .await
    }

    /// Subscribes with the broker's default prefetch.
    pub async fn subscribe(
        &self,
        destination: &str,
        ack: AckMode,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_with(destination, ack, None).await
    }

    /// Subscribes with `prefetch` messages in flight at most.
    pub async fn subscribe_with(
        &self,
        destination: &str,
        ack: AckMode,
        prefetch: Option<u32>,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_with_headers(destination, ack, prefetch, Vec::new())
            .await
    }

    /// Subscribes with more SUBSCRIBE headers (`selector`, ...), which it sends again
    /// when it subscribes again after a failover.
    pub async fn subscribe_with_headers(
        &self,
        destination: &str,
        ack: AckMode,
        prefetch: Option<u32>,
        headers: Vec<(String, String)>,
    ) -> Result<Subscription, ClientError> {
        let (sink, messages) = mpsc::unbounded();
        let destination = destination.to_string();
        let id = self
            .ask(|reply| driver::Command::Subscribe {
                destination,
                ack,
                prefetch,
                headers,
                sink,
                reply,
            })
            .await?;
        Ok(Subscription { id, messages })
    }

    pub async fn unsubscribe(&self, subscription: Subscription) -> Result<(), ClientError> {
        let id = subscription.id.clone();
        self.ask(|reply| driver::Command::Unsubscribe { id, reply })
            .await
    }

    /// Acknowledges a message (for `client` mode, it and every earlier one). An ACK for
    /// a message delivered before a failover is dropped: it will be redelivered.
    pub async fn ack(&self, message: &Message) -> Result<(), ClientError> {
        self.acknowledge(message, true, None).await
    }

    /// Refuses a message: the broker redelivers it (or dead-letters it past its limit).
    pub async fn nack(&self, message: &Message) -> Result<(), ClientError> {
        self.acknowledge(message, false, None).await
    }

    async fn acknowledge(
        &self,
        message: &Message,
        positive: bool,
        transaction: Option<String>,
    ) -> Result<(), ClientError> {
        let message = message.clone();
        self.ask(|reply| driver::Command::Ack {
            message,
            positive,
            transaction,
            reply,
        })
        .await
    }

    /// Opens a transaction; its sends and acks take effect together at `commit`.
    pub async fn begin(&self) -> Result<Transaction, ClientError> {
        let name = self.ask(|reply| driver::Command::Begin { reply }).await?;
        Ok(Transaction {
            client: self.clone(),
            name,
        })
    }

    /// DISCONNECT with a receipt: everything sent before is processed, then the
    /// connection closes.
    pub async fn disconnect(self) -> Result<(), ClientError> {
        self.ask(|reply| driver::Command::Disconnect { reply })
            .await
    }
}

/// An open transaction.
pub struct Transaction {
    client: Client,
    pub name: String,
}

impl Transaction {
    pub async fn send(
        &self,
        destination: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<(), ClientError> {
        self.client
            .send_in(Some(&self.name), destination, body.into(), headers)
            .await
    }

    pub async fn ack(&self, message: &Message) -> Result<(), ClientError> {
        self.client
            .acknowledge(message, true, Some(self.name.clone()))
            .await
    }

    /// Commits; resolves on the receipt. If a failover intervened, the transaction is
    /// replayed when it held only sends (their dedup ids make that safe), and otherwise
    /// fails with `RolledBack`.
    pub async fn commit(self) -> Result<(), ClientError> {
        let name = self.name;
        self.client
            .ask(|reply| driver::Command::Commit { name, reply })
            .await
    }

    pub async fn abort(self) -> Result<(), ClientError> {
        let name = self.name;
        self.client
            .ask(|reply| driver::Command::Abort { name, reply })
            .await
    }
}
