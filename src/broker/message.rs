//! Messages, their ids, destinations, and the consumer keys that name who holds them.
//!
//! A message id is derived from the `(seq, index)` of the record that added it, so the
//! master, its slave and a replayed journal all give a message the same id without
//! storing it, and `MessageId::seq` tells which journal segment holds the message.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::durable::{is_durable_name, DURABLE_PREFIX};
use crate::journal::Seq;

/// Identifies a message: the seq of the record that added it and its place in that record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId {
    pub seq: Seq,
    pub index: u32,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mmq-{}-{}", self.seq, self.index)
    }
}

impl MessageId {
    pub fn new(seq: Seq, index: u32) -> MessageId {
        MessageId { seq, index }
    }

    /// Parses the `message-id` header value this broker wrote.
    pub fn parse(text: &str) -> Option<MessageId> {
        let rest = text.strip_prefix("mmq-")?;
        let (seq, index) = rest.split_once('-')?;
        Some(MessageId {
            seq: Seq(seq.parse().ok()?),
            index: index.parse().ok()?,
        })
    }
}

/// Where a message goes: `/queue/NAME` (one consumer each) or `/topic/NAME` (every subscriber).
///
/// A temporary destination (ActiveMQ's `/temp-queue/NAME`, `/temp-topic/NAME`) belongs to
/// the connection that names it: session N's `/temp-queue/NAME` is the queue
/// `temp-queue:N.NAME`, which other connections (given it in a `reply-to`) reach as
/// `/remote-temp-queue/N.NAME`. Plain `/queue/` and `/topic/` names may not take those
/// prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Destination {
    Queue(String),
    Topic(String),
}

/// The internal name prefixes of temporary queues and topics.
const TEMP_QUEUE: &str = "temp-queue:";
const TEMP_TOPIC: &str = "temp-topic:";

/// The STOMP prefixes a client may use: each one's internal prefix, whether it names a
/// queue, and whether the name is the using connection's own (`/temp-`) or already
/// carries its owner (`/remote-temp-`, what MESSAGE and `reply-to` headers show).
const FORMS: [(&str, Option<&str>, bool, bool); 6] = [
    ("/queue/", None, true, false),
    ("/topic/", None, false, false),
    ("/temp-queue/", Some(TEMP_QUEUE), true, true),
    ("/temp-topic/", Some(TEMP_TOPIC), false, true),
    ("/remote-temp-queue/", Some(TEMP_QUEUE), true, false),
    ("/remote-temp-topic/", Some(TEMP_TOPIC), false, false),
];

/// Whether an internal destination name is a temporary destination's.
pub(super) fn is_temporary_name(name: &str) -> bool {
    name.starts_with(TEMP_QUEUE) || name.starts_with(TEMP_TOPIC)
}

impl Destination {
    /// Parses a STOMP `destination` header sent on session `by` (whose `/temp-queue/` and
    /// `/temp-topic/` names it makes its own).
    pub fn parse(text: &str, by: SessionId) -> Result<Destination, String> {
        let Some((prefix, temp, queue, own)) =
            FORMS.iter().find(|(prefix, ..)| text.starts_with(prefix))
        else {
            return Err(format!(
                "unsupported destination '{text}': use /queue/NAME, /topic/NAME, /temp-queue/NAME or /temp-topic/NAME"
            ));
        };
        let name = &text[prefix.len()..];
        if name.is_empty() {
            return Err(format!("destination '{text}' has an empty name"));
        }
        let name = match temp {
            None if is_temporary_name(name) || is_durable_name(name) => {
                return Err(format!(
                    "destination '{text}': names starting '{TEMP_QUEUE}', '{TEMP_TOPIC}' or '{DURABLE_PREFIX}' are the broker's"
                ))
            }
            None => name.to_string(),
            Some(temp) if *own => format!("{temp}{}.{name}", by.0),
            Some(temp) => {
                let owned = name.split_once('.').is_some_and(|(owner, rest)| {
                    owner.parse::<u64>().is_ok() && !rest.is_empty()
                });
                if !owned {
                    return Err(format!(
                        "destination '{text}' names no temporary destination (the reply-to of one reads {prefix}N.NAME)"
                    ));
                }
                format!("{temp}{name}")
            }
        };
        Ok(if *queue {
            Destination::Queue(name)
        } else {
            Destination::Topic(name)
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(name) | Destination::Topic(name) => name,
        }
    }

    /// The session a temporary destination belongs to; `None` for any other.
    pub fn temporary_owner(&self) -> Option<SessionId> {
        let name = self.name();
        let rest = name
            .strip_prefix(TEMP_QUEUE)
            .or_else(|| name.strip_prefix(TEMP_TOPIC))?;
        let (owner, _) = rest.split_once('.')?;
        owner.parse().ok().map(SessionId)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, name) = match self {
            Destination::Queue(name) => match name.strip_prefix(TEMP_QUEUE) {
                Some(rest) => ("/remote-temp-queue/", rest),
                None => ("/queue/", name.as_str()),
            },
            Destination::Topic(name) => match name.strip_prefix(TEMP_TOPIC) {
                Some(rest) => ("/remote-temp-topic/", rest),
                None => ("/topic/", name.as_str()),
            },
        };
        write!(f, "{prefix}{name}")
    }
}

/// A message as a producer sent it, before the record that adds it gives it an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    pub destination: Destination,
    /// User headers only: the broker's own (message-id, subscription, ...) are stripped.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// `persistent:true`: journaled and fsynced; otherwise held in memory only.
    pub persistent: bool,
}

impl NewMessage {
    /// Bytes it will hold once stored; the same measure as `Message::footprint`.
    pub fn cost(&self) -> usize {
        footprint(&self.headers, &self.body)
    }
}

fn footprint(headers: &[(String, String)], body: &Bytes) -> usize {
    const OVERHEAD: usize = 128;
    let headers: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
    OVERHEAD + body.len() + headers
}

/// A stored message. Shared by `Arc` between the queue and every delivery of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub destination: Destination,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub persistent: bool,
}

impl Message {
    /// A copy of `new` stored as message `id`.
    pub fn new(id: MessageId, new: &NewMessage) -> Arc<Message> {
        Message::made(id, new.clone())
    }

    /// `new` stored as message `id`, its headers moved rather than copied.
    pub fn made(id: MessageId, new: NewMessage) -> Arc<Message> {
        Arc::new(Message {
            id,
            destination: new.destination,
            headers: new.headers,
            body: new.body,
            persistent: new.persistent,
        })
    }

    /// When it may be delivered, in ms since the Unix epoch, if it was sent with a delay:
    /// the `mmq-deliver-at` header the broker stamped.
    pub fn deliver_at(&self) -> Option<u64> {
        self.headers
            .iter()
            .find(|(name, _)| name == DELIVER_AT_HEADER)
            .and_then(|(_, value)| value.parse::<u64>().ok())
    }

    /// When it expires, in ms since the Unix epoch: its `expires` header, unless 0.
    pub fn expires_at(&self) -> Option<u64> {
        self.headers
            .iter()
            .find(|(name, _)| name == "expires")
            .and_then(|(_, value)| value.trim().parse::<u64>().ok())
            .filter(|at| *at > 0)
    }

    /// Its `priority` header, 0 to 9; 4 (JMS's default) without one. SEND refuses any
    /// other value, so a stored one is always valid; an unreadable one counts as 4.
    pub fn priority(&self) -> u8 {
        self.headers
            .iter()
            .find(|(name, _)| name == "priority")
            .and_then(|(_, value)| value.trim().parse::<u8>().ok())
            .filter(|priority| *priority <= 9)
            .unwrap_or(DEFAULT_PRIORITY)
    }

    /// Bytes this message holds in memory, for the memory limit.
    pub fn footprint(&self) -> usize {
        const OVERHEAD: usize = 128;
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum();
        OVERHEAD + self.body.len() + headers
    }
}

/// What a selector reads: the message's own headers, and the broker's `message-id`,
/// `destination` and `persistent`.
impl crate::selector::Headers for Message {
    fn header(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match name {
            "message-id" => Some(Cow::Owned(self.id.to_string())),
            "destination" => Some(Cow::Owned(self.destination.to_string())),
            "persistent" => Some(Cow::Borrowed(if self.persistent {
                "true"
            } else {
                "false"
            })),
            _ => self
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| Cow::Borrowed(value.as_str())),
        }
    }
}

/// The header the broker stamps on a message sent with `AMQ_SCHEDULED_DELAY`: when it
/// may be delivered, in ms since the Unix epoch (a client's own is dropped).
pub const DELIVER_AT_HEADER: &str = "mmq-deliver-at";

/// JMS's default priority, a message's without a `priority` header.
pub const DEFAULT_PRIORITY: u8 = 4;

/// A client connection, as the core knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// One subscription of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerKey {
    pub session: SessionId,
    pub sub: u64,
}

/// STOMP's three acknowledgement modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Consumed once written to the socket.
    Auto,
    /// An ACK covers that message and every earlier one of the subscription.
    Client,
    /// An ACK covers exactly one message.
    ClientIndividual,
}

impl AckMode {
    pub fn parse(text: &str) -> Option<AckMode> {
        match text {
            "auto" => Some(AckMode::Auto),
            "client" => Some(AckMode::Client),
            "client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }
}

/// A message on its way to one consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub consumer: ConsumerKey,
    pub subscription: Arc<str>,
    pub ack: AckMode,
    pub message: Arc<Message>,
    pub redelivered: bool,
}
