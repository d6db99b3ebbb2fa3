//! A blocking STOMP client for tests, built on the crate's own frame parser, so tests
//! can send exactly the bytes they mean, including malformed ones.

use std::io::{Read as _, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mirrormq::stomp::{self, Command, Frame, ParseLimits, Parsed, Version};

pub struct Client {
    pub stream: TcpStream,
    buffer: Vec<u8>,
    pub version: Version,
}

/// What a read ended with.
#[derive(Debug)]
pub enum Got {
    Frame(Frame),
    /// The broker closed the connection.
    Closed,
    /// Nothing arrived within the timeout.
    Silent,
}

impl Client {
    /// Opens a TCP connection without sending anything.
    pub fn open(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buffer: Vec::new(),
            version: Version::V1_0,
        }
    }

    /// Connects with STOMP 1.2 as admin/admin.
    pub fn connect(port: u16) -> Client {
        Client::connect_with(
            port,
            &[
                ("accept-version", "1.2"),
                ("login", "admin"),
                ("passcode", "admin"),
            ],
        )
    }

    /// Sends CONNECT with these headers and expects CONNECTED.
    pub fn connect_with(port: u16, headers: &[(&str, &str)]) -> Client {
        let mut client = Client::open(port);
        client.send_frame(Command::Connect, headers, b"");
        let connected = client.expect(Command::Connected);
        client.version = Version::parse(connected.header("version").unwrap_or("1.0")).unwrap();
        client
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send_frame(&mut self, command: Command, headers: &[(&str, &str)], body: &[u8]) {
        let frame = headers
            .iter()
            .fold(Frame::new(command), |f, (k, v)| f.with_header(*k, *v))
            .with_body(body.to_vec());
        let mut out = Vec::new();
        stomp::encode(&frame, self.version, &mut out);
        // The broker may already have closed on an earlier error; the read will say so.
        let _ = self.stream.write_all(&out);
    }

    /// A persistent SEND of `body` asking for `receipt`, without waiting for it.
    pub fn send_persistent(&mut self, destination: &str, receipt: &str, body: &[u8]) {
        self.send_frame(
            Command::Send,
            &[
                ("destination", destination),
                ("persistent", "true"),
                ("receipt", receipt),
            ],
            body,
        );
    }

    /// SEND with a receipt, waiting for the RECEIPT.
    pub fn send_receipted(&mut self, destination: &str, body: &str, persistent: bool) {
        let receipt = format!("r-{body}");
        let persistent = if persistent { "true" } else { "false" };
        self.send_frame(
            Command::Send,
            &[
                ("destination", destination),
                ("persistent", persistent),
                ("receipt", &receipt),
            ],
            body.as_bytes(),
        );
        let frame = self.expect(Command::Receipt);
        assert_eq!(frame.header("receipt-id"), Some(receipt.as_str()));
    }

    pub fn subscribe(&mut self, destination: &str, id: &str, ack: &str, prefetch: u32) {
        let prefetch = prefetch.to_string();
        let receipt = format!("sub-{id}");
        self.send_frame(
            Command::Subscribe,
            &[
                ("destination", destination),
                ("id", id),
                ("ack", ack),
                ("activemq.prefetchSize", &prefetch),
                ("receipt", &receipt),
            ],
            b"",
        );
        self.expect(Command::Receipt);
    }

    /// ACKs a MESSAGE the way this client's version says.
    pub fn ack(&mut self, message: &Frame, receipt: Option<&str>) {
        self.ack_or_nack(Command::Ack, message, receipt)
    }

    pub fn nack(&mut self, message: &Frame, receipt: Option<&str>) {
        self.ack_or_nack(Command::Nack, message, receipt)
    }

    fn ack_or_nack(&mut self, command: Command, message: &Frame, receipt: Option<&str>) {
        let mut headers: Vec<(&str, &str)> = match self.version {
            Version::V1_2 => vec![("id", message.header("ack").unwrap())],
            _ => vec![
                ("message-id", message.header("message-id").unwrap()),
                ("subscription", message.header("subscription").unwrap()),
            ],
        };
        if let Some(receipt) = receipt {
            headers.push(("receipt", receipt));
        }
        self.send_frame(command, &headers, b"");
        if receipt.is_some() {
            self.expect(Command::Receipt);
        }
    }

    /// Reads one frame (skipping heart-beats) within `timeout`.
    pub fn read(&mut self, timeout: Duration) -> Got {
        let deadline = Instant::now() + timeout;
        loop {
            match stomp::parse(&self.buffer, self.version, &ParseLimits::default()) {
                Ok(Parsed::Frame { frame, consumed }) => {
                    self.buffer.drain(..consumed);
                    return Got::Frame(frame);
                }
                Ok(Parsed::HeartBeat { consumed }) => {
                    self.buffer.drain(..consumed);
                    continue;
                }
                Ok(Parsed::Incomplete) => {}
                Err(error) => panic!("broker sent a bad frame: {error}"),
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Got::Silent;
            };
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Got::Silent
                }
                Err(_) => return Got::Closed,
            }
        }
    }

    /// Reads the next frame and checks its command.
    pub fn expect(&mut self, command: Command) -> Frame {
        match self.read(super::PATIENCE) {
            Got::Frame(frame) if frame.command == command => frame,
            other => panic!("expected {}, got {other:?}", command.as_str()),
        }
    }

    /// Expects an ERROR whose message contains `text`, then the connection closing.
    pub fn expect_error(&mut self, text: &str) -> Frame {
        let error = self.expect(Command::Error);
        let message = error.header("message").unwrap_or("").to_string();
        assert!(
            message.contains(text),
            "ERROR message {message:?} lacks {text:?}"
        );
        self.expect_closed();
        error
    }

    pub fn expect_closed(&mut self) {
        match self.read(super::PATIENCE) {
            Got::Closed => {}
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }

    /// Waits for the RECEIPT `id` (passing earlier receipts), keeping the MESSAGEs that
    /// arrive before it.
    pub fn await_receipt(&mut self, id: &str) -> Vec<Frame> {
        let mut messages = Vec::new();
        loop {
            match self.read(super::PATIENCE) {
                Got::Frame(frame) if frame.command == Command::Message => messages.push(frame),
                Got::Frame(frame)
                    if frame.command == Command::Receipt
                        && frame.header("receipt-id") == Some(id) =>
                {
                    return messages
                }
                Got::Frame(frame) if frame.command == Command::Receipt => {}
                other => panic!("expected RECEIPT {id}, got {other:?}"),
            }
        }
    }

    /// Sends `count` persistent messages `m0..` pipelined (all sends first, then all
    /// receipts, which must come in order).
    pub fn send_many(&mut self, queue: &str, count: usize) {
        let bodies: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
        self.send_pipelined(queue, &bodies);
    }

    /// Sends a persistent message of each body pipelined (all sends first, then all
    /// receipts, which must come in order).
    pub fn send_pipelined(&mut self, queue: &str, bodies: &[String]) {
        for (i, body) in bodies.iter().enumerate() {
            let receipt = format!("r{i}");
            self.send_frame(
                Command::Send,
                &[
                    ("destination", queue),
                    ("persistent", "true"),
                    ("receipt", &receipt),
                ],
                body.as_bytes(),
            );
        }
        for i in 0..bodies.len() {
            let receipt = self.expect(Command::Receipt);
            assert_eq!(
                receipt.header("receipt-id"),
                Some(format!("r{i}").as_str()),
                "receipts come in order"
            );
        }
    }

    /// Subscribes to `queue`, receives and acks `count` messages, returns their bodies.
    pub fn drain(&mut self, queue: &str, count: usize) -> Vec<String> {
        self.subscribe(queue, "drain", "client-individual", 100);
        self.take(count)
    }

    /// Receives `count` messages on this connection's subscriptions and acks each (with
    /// no receipt: the next MESSAGE may come before it would); returns their bodies.
    pub fn take(&mut self, count: usize) -> Vec<String> {
        (0..count)
            .map(|_| {
                let message = self.expect(Command::Message);
                self.ack(&message, None);
                body(&message)
            })
            .collect()
    }

    /// Commits a transaction of three persistent SENDs `c0..c2` to `queue` (waiting for
    /// its receipt), then leaves a second transaction with one SEND `open` uncommitted,
    /// and waits for a barrier receipt so everything before it was processed.
    pub fn commit_three_and_leave_one_open(&mut self, queue: &str) {
        self.send_frame(Command::Begin, &[("transaction", "t1")], b"");
        for body in ["c0", "c1", "c2"] {
            self.send_frame(
                Command::Send,
                &[
                    ("destination", queue),
                    ("persistent", "true"),
                    ("transaction", "t1"),
                ],
                body.as_bytes(),
            );
        }
        self.send_frame(
            Command::Commit,
            &[("transaction", "t1"), ("receipt", "commit")],
            b"",
        );
        self.await_receipt("commit");
        self.send_frame(Command::Begin, &[("transaction", "t2")], b"");
        self.send_frame(
            Command::Send,
            &[
                ("destination", queue),
                ("persistent", "true"),
                ("transaction", "t2"),
            ],
            b"open",
        );
        self.send_frame(
            Command::Send,
            &[("destination", "/queue/barrier"), ("receipt", "barrier")],
            b"x",
        );
        self.await_receipt("barrier");
    }

    /// Receives `n` MESSAGE frames.
    pub fn receive(&mut self, n: usize) -> Vec<Frame> {
        (0..n).map(|_| self.expect(Command::Message)).collect()
    }

    pub fn disconnect(mut self) {
        self.send_frame(Command::Disconnect, &[("receipt", "bye")], b"");
        self.expect(Command::Receipt);
    }
}

pub fn body(frame: &Frame) -> String {
    String::from_utf8_lossy(&frame.body).into_owned()
}
