//! The STOMP frame model: protocol versions, commands, frames, and the header
//! coding rules (escaping, trimming) that the parser and the encoder share.
//!
//! Must not: know about bytes on the wire beyond the header coding table, do
//! I/O, or validate frame semantics (required headers, who may send what);
//! those belong to the parser/encoder and to the broker.
//!
//! Invariants: `Frame::headers` keeps wire order and duplicates; lookups take
//! the first occurrence. One escape table serves both directions, so what the
//! encoder escapes is exactly what the parser unescapes.

use bytes::Bytes;

/// A STOMP protocol version; ordered so that "highest common version" is a max.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    pub fn parse(s: &str) -> Option<Version> {
        match s {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Stomp,
    Connected,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    Message,
    Receipt,
    Error,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Connected => "CONNECTED",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Commands are case-sensitive on the wire: `send` is not `SEND`.
    pub fn parse(s: &[u8]) -> Option<Command> {
        Some(match s {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"CONNECTED" => Command::Connected,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    /// Whether the frame may carry a body (SEND, MESSAGE, ERROR).
    pub fn has_body(self) -> bool {
        matches!(self, Command::Send | Command::Message | Command::Error)
    }

    /// CONNECT, STOMP, CONNECTED: their headers are never escaped, in any version.
    pub fn is_connect(self) -> bool {
        matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Frame {
    pub fn new(command: Command) -> Frame {
        Frame {
            command,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Appends, so a repeated name keeps every value (the first one is the one that counts).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Frame {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// An ERROR frame: `message` as its header and, for humans, as a text body.
    pub fn error(message: impl Into<String>) -> Frame {
        let message = message.into();
        Frame::new(Command::Error)
            .with_header("message", message.clone())
            .with_header("content-type", "text/plain")
            .with_body(message.into_bytes())
    }

    /// The spec says a repeated header's first value is the one used.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header_name, _)| header_name == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Pairs of (byte after the backslash, byte it stands for). 1.1 knows the first
/// three; 1.2 adds `\r`, kept last so that 1.1's table is a prefix of 1.2's.
const ESCAPES: [(u8, u8); 4] = [(b'\\', b'\\'), (b'n', b'\n'), (b'c', b':'), (b'r', b'\r')];
const ESCAPES_KNOWN_TO_1_1: usize = 3;

/// For each byte: does any version's table escape it? A quick screen before `escape_code`.
const ESCAPED_BY_SOME_VERSION: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < ESCAPES.len() {
        table[ESCAPES[i].1 as usize] = true;
        i += 1;
    }
    table
};

/// How header names and values of one frame are written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderCoding {
    /// Bytes as they are: CONNECT/STOMP/CONNECTED in every version.
    Raw,
    /// STOMP 1.0: no escapes; values are trimmed when read, as ActiveMQ does.
    TrimmedValues,
    /// STOMP 1.1+: backslash escapes; any sequence not in the table is fatal.
    Escaped(&'static [(u8, u8)]),
}

impl HeaderCoding {
    pub(super) fn for_frame(command: Command, version: Version) -> HeaderCoding {
        if command.is_connect() {
            return HeaderCoding::Raw;
        }
        match version {
            Version::V1_0 => HeaderCoding::TrimmedValues,
            Version::V1_1 => HeaderCoding::Escaped(&ESCAPES[..ESCAPES_KNOWN_TO_1_1]),
            Version::V1_2 => HeaderCoding::Escaped(&ESCAPES),
        }
    }

    /// The byte that `\code` stands for, if this coding defines that escape.
    pub(super) fn unescaped(self, code: u8) -> Option<u8> {
        self.escape_table()
            .iter()
            .find(|(escape_code, _)| *escape_code == code)
            .map(|(_, raw)| *raw)
    }

    /// The code to write after a backslash in place of `raw`, if it must be escaped.
    pub(super) fn escape_code(self, raw: u8) -> Option<u8> {
        self.escape_table()
            .iter()
            .find(|(_, raw_byte)| *raw_byte == raw)
            .map(|(code, _)| *code)
    }

    pub(super) fn trims_values(self) -> bool {
        self == HeaderCoding::TrimmedValues
    }

    pub(super) fn uses_escapes(self) -> bool {
        matches!(self, HeaderCoding::Escaped(_))
    }

    /// False when `text` can be written as it is: the usual case, checked without
    /// looking each byte up in the escape table.
    pub(super) fn may_escape(self, text: &[u8]) -> bool {
        self.uses_escapes()
            && text
                .iter()
                .any(|&b| ESCAPED_BY_SOME_VERSION[usize::from(b)])
    }

    fn escape_table(self) -> &'static [(u8, u8)] {
        match self {
            HeaderCoding::Escaped(table) => table,
            HeaderCoding::Raw | HeaderCoding::TrimmedValues => &[],
        }
    }
}
