//! Toolkit of the hostile-peer tests (tests/hostile_stomp.rs, tests/hostile_replication.rs
//! and tests/access.rs): seeded randomness and byte mutation, sockets that say their
//! piece and hang up, the replication wire spoken by hand, a well-behaved client that
//! must stay served while the hostile ones rage, and probes of the broker process.
//!
//! Randomness is a seeded xorshift generator. Every test that uses it prints its seed;
//! `HOSTILE_SEED=N cargo test --test hostile_stomp` (or `--test hostile_replication`)
//! replays a run.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{body, Got};
use super::{Broker, Client, PATIENCE};
use mirrormq::codec;
use mirrormq::repl::message::{MasterMessage, SlaveMessage, Standing};
use mirrormq::stomp::{Command, Version};

/// How long a hostile connection may stay open after it has said everything (half-close).
pub const CLOSE_WITHIN: Duration = Duration::from_secs(10);
/// Longest round trip the well-behaved client may see while the storm rages.
pub const SERVED_WITHIN: Duration = Duration::from_secs(5);
/// RSS a broker may gain between warm-up and the end of a storm.
pub const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;

/// The one user of the brokers under test, admin/admin.
pub const USERS: &str = "[[users]]\nname = \"admin\"\npassword = \"admin\"";

// ---------------------------------------------------------------------------------------
// Deterministic randomness.

/// xorshift64: small, seeded, good enough to pick bytes and cases.
pub struct Rng(u64);

impl Rng {
    /// The generator for case `index` of a run: cases replay one by one.
    pub fn for_case(seed: u64, index: usize) -> Rng {
        // splitmix64 of (seed, index), so neighbouring cases are unrelated; never zero.
        let mut z = seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo)
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The run's seed: `HOSTILE_SEED` or a fixed default, printed so a failure names it.
pub fn seed() -> u64 {
    let seed = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d69_7272_6f72_6d71);
    eprintln!("hostile: seed {seed} (replay with HOSTILE_SEED={seed})");
    seed
}

/// Damages `bytes` in 1 to `most` places: bit flips, random bytes, NULs, EOLs, colons
/// and backslashes, insertions, deletions, duplications and truncation.
pub fn mutate(rng: &mut Rng, mut bytes: Vec<u8>, most: usize) -> Vec<u8> {
    for _ in 0..rng.range(1, most + 1) {
        let len = bytes.len();
        let at = rng.below(len + 1);
        let inside = at.min(len.saturating_sub(1));
        match rng.below(11) {
            0 if len > 0 => bytes[inside] ^= 1 << rng.below(8),
            1 if len > 0 => bytes[inside] = rng.next() as u8,
            2 => bytes.insert(at, 0),
            3 => bytes.insert(at, b'\n'),
            4 => {
                bytes.splice(at..at, *b"\r\n");
            }
            5 => {
                let n = rng.range(1, 17);
                let junk = rng.bytes(n);
                bytes.splice(at..at, junk);
            }
            6 => {
                let end = (at + rng.range(1, 17)).min(len);
                bytes.drain(at..end);
            }
            7 => bytes.truncate(at),
            8 => {
                let end = (at + rng.range(1, 33)).min(len);
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => bytes.insert(at, *rng.pick(b":\\\r")),
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------
// Process and socket helpers.

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The process exists and has not exited (an unreaped child is a zombie, state Z).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn assert_never_panicked(broker: &Broker, what: &str) {
    let log = broker.log.text();
    assert!(!log.contains("panicked"), "{what} panicked:\n{log}");
}

/// Reads until the peer closes; `Err` if it is still open after `within`. The flag says
/// whether the close was a reset (the peer closed with our bytes unread).
pub fn read_until_closed(
    stream: &mut TcpStream,
    within: Duration,
) -> Result<(Vec<u8>, bool), String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(format!(
                "still open {within:?} after our half-close ({} bytes received)",
                got.len()
            ));
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return Ok((got, false)),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Ok((got, true)),
        }
    }
}

/// Writes `bytes` in random pieces (so frames are split across reads), ignoring errors
/// (the peer may close on an early error), then half-closes and waits for the close.
pub fn say_and_hang_up(
    stream: &mut TcpStream,
    rng: &mut Rng,
    bytes: &[u8],
) -> Result<(Vec<u8>, bool), String> {
    stream
        .set_write_timeout(Some(CLOSE_WITHIN))
        .expect("write timeout");
    let mut at = 0;
    while at < bytes.len() {
        let piece = if rng.chance(30) {
            rng.range(1, 64)
        } else {
            bytes.len()
        };
        let end = (at + piece).min(bytes.len());
        if stream.write_all(&bytes[at..end]).is_err() {
            break;
        }
        at = end;
    }
    let _ = stream.shutdown(Shutdown::Write);
    read_until_closed(stream, CLOSE_WITHIN)
}

/// A client that sends and receives with receipts until told to stop, asserting that
/// every receipt and message comes, in order, within `SERVED_WITHIN`. Returns how many
/// round trips it made and the slowest.
pub fn well_behaved(
    port: u16,
    queue: &'static str,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(usize, Duration)> {
    let mut producer = Client::connect(port);
    let mut consumer = Client::connect(port);
    consumer.subscribe(queue, "good", "auto", 100);
    std::thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        let mut n = 0;
        while !(stop.load(Ordering::SeqCst) && n >= 20) {
            let started = Instant::now();
            let text = format!("good-{n}");
            producer.send_frame(
                Command::Send,
                &[
                    ("destination", queue),
                    ("persistent", "true"),
                    ("receipt", &text),
                ],
                text.as_bytes(),
            );
            match producer.read(SERVED_WITHIN) {
                Got::Frame(f) if f.command == Command::Receipt => {
                    assert_eq!(f.header("receipt-id"), Some(text.as_str()))
                }
                other => panic!("well-behaved send {n}: expected its RECEIPT, got {other:?}"),
            }
            match consumer.read(SERVED_WITHIN) {
                Got::Frame(f) if f.command == Command::Message => assert_eq!(body(&f), text),
                other => panic!("well-behaved receive {n}: expected its MESSAGE, got {other:?}"),
            }
            slowest = slowest.max(started.elapsed());
            n += 1;
        }
        (n, slowest)
    })
}

/// A connection that has sent its CONNECT (as admin, STOMP 1.2) and not read the answer.
pub fn connect_unanswered(port: u16) -> Client {
    let mut client = Client::open(port);
    client.send_frame(
        Command::Connect,
        &[
            ("accept-version", "1.2"),
            ("login", "admin"),
            ("passcode", "admin"),
        ],
        b"",
    );
    client
}

/// Connects and sends one persistent receipted message; says what failed, if anything.
pub fn round_trip(port: u16) -> Result<(), String> {
    let mut client = connect_unanswered(port);
    match client.read(SERVED_WITHIN) {
        Got::Frame(f) if f.command == Command::Connected => client.version = Version::V1_2,
        other => return Err(format!("CONNECT: {other:?}")),
    }
    client.send_frame(
        Command::Send,
        &[
            ("destination", "/queue/round-trip"),
            ("persistent", "true"),
            ("receipt", "rt"),
        ],
        b"round trip",
    );
    match client.read(SERVED_WITHIN) {
        Got::Frame(f) if f.command == Command::Receipt => Ok(()),
        other => Err(format!("SEND: {other:?}")),
    }
}

/// Sends `count` persistent receipted messages `precious-i-MARKER` to `queue`.
pub fn store_precious(client: &mut Client, queue: &str, count: usize, marker: &str) -> Vec<String> {
    let bodies: Vec<String> = (0..count)
        .map(|i| format!("precious-{i}-{marker}"))
        .collect();
    client.send_pipelined(queue, &bodies);
    bodies
}

/// Runs `cases` on `threads` threads: case `i` is `run(i)`; returns how often each label
/// came up.
pub fn storm(
    cases: std::ops::Range<usize>,
    threads: usize,
    run: impl Fn(usize) -> &'static str + Send + Sync + 'static,
) -> BTreeMap<&'static str, usize> {
    let run = Arc::new(run);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let run = run.clone();
            let cases = cases.clone();
            std::thread::spawn(move || {
                let mut seen = BTreeMap::new();
                for i in cases.filter(|i| i % threads == t) {
                    *seen.entry(run(i)).or_insert(0) += 1;
                }
                seen
            })
        })
        .collect();
    let mut seen = BTreeMap::new();
    for worker in workers {
        for (label, n) in worker.join().expect("a storm thread failed") {
            *seen.entry(label).or_insert(0) += n;
        }
    }
    seen
}

// ---------------------------------------------------------------------------------------
// The replication wire, spoken by hand.

/// One frame of the replication wire: a u32 little-endian length, then the payload.
pub fn repl_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

pub fn slave_frame(message: &SlaveMessage) -> Vec<u8> {
    repl_frame(&codec::encode(message).unwrap())
}

pub fn hello(user: &str, password: &str, protocol: u32, store_id: &str) -> SlaveMessage {
    SlaveMessage::Hello {
        protocol,
        user: user.into(),
        password: password.into(),
        standing: Standing {
            store_id: store_id.into(),
            epochs: vec![],
            last: None,
            alone_since: None,
        },
        advertised: None,
        name: "hostile".into(),
    }
}

/// Splits what a master sent into messages; returns them and the unparsed tail.
pub fn parse_master_output(bytes: &[u8]) -> Result<(Vec<MasterMessage>, usize), String> {
    let mut at = 0;
    let mut messages = Vec::new();
    while bytes.len() - at >= 4 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let Some(payload) = bytes.get(at + 4..at + 4 + len) else {
            break;
        };
        let message = codec::decode::<MasterMessage>(payload)
            .map_err(|e| format!("the master sent an undecodable frame at byte {at}: {e}"))?;
        messages.push(message);
        at += 4 + len;
    }
    Ok((messages, bytes.len() - at))
}

/// Reads until one whole master message has arrived; returns it and the bytes after it.
pub fn read_master_message(stream: &mut TcpStream) -> Result<(MasterMessage, Vec<u8>), String> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if got.len() >= 4 {
            let len = u32::from_le_bytes(got[..4].try_into().unwrap()) as usize;
            if got.len() >= 4 + len {
                let message = codec::decode(&got[4..4 + len]).map_err(|e| e.to_string())?;
                return Ok((message, got.split_off(4 + len)));
            }
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or("the master did not answer")?;
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("the master closed after {} bytes", got.len())),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the master's answer: {e}")),
        }
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
