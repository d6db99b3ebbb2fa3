//! Hostile peers at live ports (issue 6, items 4 and 5): random and mutated bytes at the
//! STOMP port and at the replication port, before and after authenticating; a thousand
//! clients at once; trickled and missing CONNECTs; credentials in the log; constant-time
//! comparison; one client acting on another's subscription or transaction.
//!
//! Randomness is a seeded xorshift generator. Every test that uses it prints its seed;
//! `HOSTILE_SEED=N cargo test --test hostile` replays a run, and `HOSTILE_DEBUG=1` prints
//! what the broker answered to each hostile STOMP connection.
//!
//! Four tests began as bugs this file found in src/ (a huge or forged Ack, a password
//! padded with NULs, a trickled frame re-parsed per read); each is fixed.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::client::{body, Got};
use common::{master_replication, Broker, Client, Pair, Site, PATIENCE};
use mirrormq::codec;
use mirrormq::journal::Seq;
use mirrormq::repl::message::{MasterMessage, SlaveMessage, Standing, PROTOCOL_VERSION};
use mirrormq::stomp::{self, Command, Frame, ParseLimits, Parsed, Version};

/// How long a hostile connection may stay open after it has said everything (half-close).
const CLOSE_WITHIN: Duration = Duration::from_secs(10);
/// Longest round trip the well-behaved client may see while the storm rages.
const SERVED_WITHIN: Duration = Duration::from_secs(5);
/// RSS a broker may gain between warm-up and the end of a storm.
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;

const USERS: &str = "[[users]]\nname = \"admin\"\npassword = \"admin\"";

// ---------------------------------------------------------------------------------------
// Deterministic randomness.

/// xorshift64: small, seeded, good enough to pick bytes and cases.
struct Rng(u64);

impl Rng {
    /// The generator for case `index` of a run: cases replay one by one.
    fn for_case(seed: u64, index: usize) -> Rng {
        // splitmix64 of (seed, index), so neighbouring cases are unrelated; never zero.
        let mut z = seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The run's seed: `HOSTILE_SEED` or a fixed default, printed so a failure names it.
fn seed() -> u64 {
    let seed = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d69_7272_6f72_6d71);
    eprintln!("hostile: seed {seed} (replay with HOSTILE_SEED={seed})");
    seed
}

/// Damages `bytes` in 1 to `most` places: bit flips, random bytes, NULs, EOLs, colons
/// and backslashes, insertions, deletions, duplications and truncation.
fn mutate(rng: &mut Rng, mut bytes: Vec<u8>, most: usize) -> Vec<u8> {
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
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The process exists and has not exited (an unreaped child is a zombie, state Z).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn assert_never_panicked(broker: &Broker, what: &str) {
    let log = broker.log.text();
    assert!(!log.contains("panicked"), "{what} panicked:\n{log}");
}

/// Reads until the peer closes; `Err` if it is still open after `within`. The flag says
/// whether the close was a reset (the peer closed with our bytes unread).
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Result<(Vec<u8>, bool), String> {
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
fn say_and_hang_up(
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

/// Parses what a broker sent on a STOMP connection: frames and heart-beats, switching
/// to the version a CONNECTED names. Returns the frames and the unparsed tail.
fn parse_stomp_output(bytes: &[u8], mut version: Version) -> Result<(Vec<Frame>, usize), String> {
    let limits = ParseLimits {
        max_frame_size: 64 << 20,
        max_headers: 100_000,
        max_header_length: 1 << 20,
        ..ParseLimits::default()
    };
    let mut at = 0;
    let mut frames = Vec::new();
    loop {
        match stomp::parse(&bytes[at..], version, &limits) {
            Ok(Parsed::Frame { frame, consumed }) => {
                at += consumed;
                if frame.command == Command::Connected {
                    version = Version::parse(frame.header("version").unwrap_or("1.0"))
                        .ok_or("CONNECTED names an unknown version")?;
                }
                frames.push(frame);
            }
            Ok(Parsed::HeartBeat { consumed }) => at += consumed,
            Ok(Parsed::Incomplete) => return Ok((frames, bytes.len() - at)),
            Err(error) => {
                return Err(format!(
                    "the broker sent a malformed frame at byte {at}: {error}: {:?}",
                    String::from_utf8_lossy(&bytes[at..bytes.len().min(at + 200)])
                ))
            }
        }
    }
}

/// A client that sends and receives with receipts until told to stop, asserting that
/// every receipt and message comes, in order, within `SERVED_WITHIN`. Returns how many
/// round trips it made and the slowest.
fn well_behaved(
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
fn connect_unanswered(port: u16) -> Client {
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
fn round_trip(port: u16) -> Result<(), String> {
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
fn store_precious(client: &mut Client, queue: &str, count: usize, marker: &str) -> Vec<String> {
    let bodies: Vec<String> = (0..count)
        .map(|i| format!("precious-{i}-{marker}"))
        .collect();
    for (i, text) in bodies.iter().enumerate() {
        let receipt = format!("p{i}");
        client.send_frame(
            Command::Send,
            &[
                ("destination", queue),
                ("persistent", "true"),
                ("receipt", &receipt),
            ],
            text.as_bytes(),
        );
    }
    for i in 0..count {
        let receipt = client.expect(Command::Receipt);
        assert_eq!(receipt.header("receipt-id"), Some(format!("p{i}").as_str()));
    }
    bodies
}

/// Runs `cases` on `threads` threads: case `i` is `run(i)`; returns how often each label
/// came up.
fn storm(
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
// Bad bytes at the STOMP port.

/// Limits of the broker under the STOMP storm: small, so cases past them are cheap.
const FUZZ_MAX_FRAME: usize = 256 * 1024;
const FUZZ_MAX_HEADERS: usize = 64;
const FUZZ_MAX_HEADER_LENGTH: usize = 1024;

/// Real frames to damage; the hostile clients only ever name `/queue/fz` and `/topic/fz`.
const TEMPLATES: &[&[u8]] = &[
    b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\nlogin:admin\npasscode:admin\nheart-beat:0,0\n\n\0",
    b"STOMP\naccept-version:1.2\nlogin:admin\npasscode:admin\n\n\0",
    b"SEND\ndestination:/queue/fz\npersistent:true\nreceipt:s1\ncontent-length:5\n\nhello\0",
    b"SEND\ndestination:/topic/fz\nx-user:a\\cb\n\nno length\0",
    b"SUBSCRIBE\ndestination:/queue/fz\nid:1\nack:client-individual\nactivemq.prefetchSize:3\nreceipt:s2\n\n\0",
    b"ACK\nid:1.mmq-3-0\nreceipt:s3\n\n\0",
    b"NACK\nmessage-id:mmq-3-0\nsubscription:1\n\n\0",
    b"BEGIN\ntransaction:t\n\n\0SEND\ndestination:/queue/fz\ntransaction:t\n\nin tx\0COMMIT\ntransaction:t\nreceipt:s4\n\n\0",
    b"UNSUBSCRIBE\nid:1\n\n\0",
    b"DISCONNECT\nreceipt:s5\n\n\0",
    b"\n\r\n\n",
];

/// How a hostile STOMP connection begins.
#[derive(Debug, Clone, Copy)]
enum Handshake {
    /// Its bytes are the first thing the broker reads.
    None,
    /// A proper CONNECT in this version, answered, before its bytes.
    Awaited(&'static str),
    /// A proper CONNECT sent in the same write as its bytes.
    Pipelined,
}

const PIPELINED_CONNECT: &[u8] = b"CONNECT\naccept-version:1.2\nlogin:admin\npasscode:admin\n\n\0";

/// One hostile STOMP connection: how it starts, then the bytes it throws.
struct StompCase {
    label: &'static str,
    handshake: Handshake,
    bytes: Vec<u8>,
}

fn stomp_case(rng: &mut Rng) -> StompCase {
    let handshake = match rng.below(10) {
        0..=3 => Handshake::None,
        4..=7 => Handshake::Awaited(["1.0", "1.1", "1.2"][rng.below(3)]),
        _ => Handshake::Pipelined,
    };
    let connected = !matches!(handshake, Handshake::None);
    let send_head = b"SEND\ndestination:/queue/fz\nreceipt:big\n".to_vec();
    let (label, bytes) = match rng.below(13) {
        0..=2 => {
            let n = rng.range(1, 4096);
            ("random bytes", rng.bytes(n))
        }
        3..=5 => {
            // A few real frames, the last (sometimes an earlier one too) damaged.
            let mut bytes = Vec::new();
            if !connected && rng.chance(60) {
                bytes.extend(mutate(rng, TEMPLATES[0].to_vec(), 3));
            }
            let frames = rng.range(1, 5);
            for i in 0..frames {
                let template = rng.pick(TEMPLATES).to_vec();
                if i + 1 == frames || rng.chance(20) {
                    bytes.extend(mutate(rng, template, 3));
                } else {
                    bytes.extend(template);
                }
            }
            ("mutated frames", bytes)
        }
        6 => {
            let n = rng.range(1, 2048);
            let bytes = (0..n).map(|_| *rng.pick(b"\0\n\r:\\SENDCO\0\n")).collect();
            ("NULs and EOLs", bytes)
        }
        7 => {
            let mut bytes = if connected {
                send_head
            } else {
                b"CONNECT\naccept-version:1.2\nlogin:admin\npasscode:admin\n".to_vec()
            };
            for i in 0..FUZZ_MAX_HEADERS + rng.range(1, 2000) {
                bytes.extend(format!("h{i}:v\n").bytes());
            }
            bytes.extend(b"\nbody\0");
            ("too many headers", bytes)
        }
        8 => {
            let n = FUZZ_MAX_HEADER_LENGTH + rng.range(1, 100_000);
            let bytes = if rng.chance(50) {
                let mut bytes = send_head;
                bytes.extend(b"h:");
                bytes.extend(std::iter::repeat_n(b'v', n));
                bytes.extend(b"\n\nbody\0");
                bytes
            } else {
                // A command line that never ends.
                std::iter::repeat_n(b'S', n).collect()
            };
            ("over-long line", bytes)
        }
        9 => {
            let length = rng
                .pick(&[
                    "18446744073709551616",
                    "99999999999999999999999999",
                    "262145",
                    "262000",
                    "-1",
                    "+5",
                    "0x10",
                    " 5",
                    "",
                    "5",
                ])
                .to_string();
            let mut bytes = send_head;
            bytes.extend(format!("content-length:{length}\n\n").bytes());
            let n = rng.range(0, 64);
            bytes.extend(rng.bytes(n));
            ("bad content-length", bytes)
        }
        10 => {
            let mut bytes = send_head;
            if rng.chance(50) {
                bytes.extend(format!("content-length:{}\n", FUZZ_MAX_FRAME / 2).bytes());
            }
            bytes.push(b'\n');
            let n = FUZZ_MAX_FRAME + rng.range(1, 4096);
            bytes.extend(std::iter::repeat_n(b'x', n));
            bytes.push(0);
            ("oversized frame", bytes)
        }
        11 => {
            let bytes = rng
                .pick(&[
                    &b"SEND\ndestination:/queue/\xff\xfe\n\n\0"[..],
                    b"SEND\ndestination:/queue/fz\nh:\\t\n\n\0",
                    b"SEND\ndestination:/queue/fz\nh:trailing\\\n\n\0",
                    b"SEND\ndestination:/queue/fz\nno colon here\n\n\0",
                    b"CONNECT\nlogin:\xc3\x28\n\n\0",
                    b"SUBSCRIBE\ndestination:/queue/fz\nid:\xed\xa0\x80\n\n\0",
                    b"SEND\n:\n\n\0",
                    b"\0\0\0",
                ])
                .to_vec();
            ("bad text", bytes)
        }
        _ => {
            let mut bytes = b"SEND\ndestination:/queue/fz\nreceipt:first\n\nvalid first\0".to_vec();
            let n = rng.range(1, 512);
            bytes.extend(rng.bytes(n));
            ("valid then garbage", bytes)
        }
    };
    let bytes = match handshake {
        Handshake::Pipelined => [PIPELINED_CONNECT, &bytes].concat(),
        _ => bytes,
    };
    StompCase {
        label,
        handshake,
        bytes,
    }
}

/// Runs hostile STOMP case `index`: the broker must answer with well-formed frames only,
/// say nothing after an ERROR, and close once we hang up.
fn hostile_stomp(port: u16, seed: u64, index: usize) -> &'static str {
    let mut rng = Rng::for_case(seed, index);
    let case = stomp_case(&mut rng);
    let context = format!(
        "seed {seed} case {index} ({}, handshake {:?})",
        case.label, case.handshake
    );
    let (mut stream, version) = match case.handshake {
        Handshake::Awaited(version) => {
            let client = Client::connect_with(
                port,
                &[
                    ("accept-version", version),
                    ("login", "admin"),
                    ("passcode", "admin"),
                ],
            );
            (client.stream, client.version)
        }
        Handshake::None | Handshake::Pipelined => {
            let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_nodelay(true).unwrap();
            (stream, Version::V1_0)
        }
    };
    let (received, reset) = say_and_hang_up(&mut stream, &mut rng, &case.bytes)
        .unwrap_or_else(|e| panic!("{context}: the broker {e}"));
    let (frames, tail) =
        parse_stomp_output(&received, version).unwrap_or_else(|e| panic!("{context}: {e}"));
    assert!(
        tail == 0 || reset,
        "{context}: the broker closed in the middle of a frame"
    );
    if let Some(error) = frames.iter().position(|f| f.command == Command::Error) {
        assert_eq!(
            error + 1,
            frames.len(),
            "{context}: frames followed an ERROR: {frames:?}"
        );
    }
    let connected: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.command == Command::Connected)
        .map(|(i, _)| i)
        .collect();
    match case.handshake {
        Handshake::Awaited(_) => assert!(connected.is_empty(), "{context}: {frames:?}"),
        Handshake::Pipelined => assert_eq!(connected, [0], "{context}: {frames:?}"),
        Handshake::None => assert!(
            connected.is_empty() || connected == [0],
            "{context}: {frames:?}"
        ),
    }
    if std::env::var("HOSTILE_DEBUG").is_ok() {
        eprintln!(
            "case {index} {} {:?}: {} bytes sent, reset {reset}, {:?}",
            case.label,
            case.handshake,
            case.bytes.len(),
            frames
                .iter()
                .map(|f| format!(
                    "{} {}",
                    f.command.as_str(),
                    f.header("message").unwrap_or("")
                ))
                .collect::<Vec<_>>()
        );
    }
    case.label
}

#[test]
fn random_and_mutated_stomp_bytes_harm_neither_the_store_nor_other_clients() {
    const CASES: usize = 3000;
    let seed = seed();
    let site = Site::new();
    let mut broker = site.start(
        "",
        &format!(
            "max_frame_size = \"{FUZZ_MAX_FRAME}B\"\nmax_headers = {FUZZ_MAX_HEADERS}\nmax_header_length = {FUZZ_MAX_HEADER_LENGTH}"
        ),
        USERS,
    );
    let port = broker.port;
    let pid = broker.pid();
    let marker = format!("stomp-marker-{seed}");
    let precious = store_precious(&mut broker.client(), "/queue/precious", 200, &marker);

    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(port, "/queue/good", stop.clone());
    // Warm-up: the allocator and the async runtime reach their working size.
    let warm_up = 200;
    let mut seen = storm(0..warm_up, 8, move |i| hostile_stomp(port, seed, i));
    let rss_before = proc_kib(pid, "VmRSS");
    for (label, n) in storm(warm_up..CASES, 8, move |i| hostile_stomp(port, seed, i)) {
        *seen.entry(label).or_insert(0) += n;
    }
    let rss_after = proc_kib(pid, "VmRSS");
    stop.store(true, Ordering::SeqCst);
    let (round_trips, slowest) = good.join().expect("the well-behaved client was not served");
    eprintln!(
        "hostile: {seen:?}; well-behaved round trips {round_trips} (slowest {slowest:?}); RSS {rss_before} -> {rss_after} KiB, peak {} KiB",
        proc_kib(pid, "VmHWM")
    );

    assert!(alive(pid), "the broker died (seed {seed})");
    assert_never_panicked(&broker, "the broker");
    assert!(
        rss_after.saturating_sub(rss_before) < RSS_GROWTH_BOUND_KIB,
        "seed {seed}: RSS grew from {rss_before} to {rss_after} KiB during the storm"
    );
    assert_eq!(seen.values().sum::<usize>(), CASES);

    // Everything stored is there, in order, now and after a kill -9 and recovery.
    let mut reader = broker.client();
    reader.subscribe("/queue/precious", "check", "client-individual", 1000);
    let bodies: Vec<String> = reader.receive(precious.len()).iter().map(body).collect();
    assert_eq!(
        bodies, precious,
        "seed {seed}: stored messages survive the storm"
    );
    drop(reader);
    broker.kill9();
    let broker = Broker::start(&broker.config);
    assert_eq!(
        broker.client().drain("/queue/precious", precious.len()),
        precious,
        "seed {seed}: stored messages survive the storm and a crash"
    );
    assert_never_panicked(&broker, "the restarted broker");
}

// ---------------------------------------------------------------------------------------
// Bad bytes at the replication port.

/// One frame of the replication wire: a u32 little-endian length, then the payload.
fn repl_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn slave_frame(message: &SlaveMessage) -> Vec<u8> {
    repl_frame(&codec::encode(message).unwrap())
}

fn hello(user: &str, password: &str, protocol: u32, store_id: &str) -> SlaveMessage {
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
    }
}

/// Splits what a master sent into messages; returns them and the unparsed tail.
fn parse_master_output(bytes: &[u8]) -> Result<(Vec<MasterMessage>, usize), String> {
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
fn read_master_message(stream: &mut TcpStream) -> Result<(MasterMessage, Vec<u8>), String> {
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The store id a broker logged at start-up.
fn store_id(broker: &Broker) -> String {
    let line = broker
        .log
        .wait_for(", store ", PATIENCE)
        .expect("a start-up line");
    let rest = &line[line.find(", store ").unwrap() + ", store ".len()..];
    rest.split([' ', ';']).next().unwrap().to_string()
}

/// What a peer that has not authenticated throws at the replication port.
fn unauthenticated_bytes(rng: &mut Rng) -> (&'static str, Vec<u8>) {
    let valid = codec::encode(&hello("admin", "admin", PROTOCOL_VERSION, "fuzz")).unwrap();
    match rng.below(12) {
        0 | 1 => {
            let n = rng.range(0, 2048);
            ("random bytes", rng.bytes(n))
        }
        2 => {
            let len: u32 = *rng.pick(&[
                u32::MAX,
                1 << 31,
                256 << 20,
                (256 << 20) + 1,
                (64 << 10) + 1,
            ]);
            let mut bytes = len.to_le_bytes().to_vec();
            let n = rng.range(0, 64);
            bytes.extend(rng.bytes(n));
            ("huge length prefix", bytes)
        }
        3 => {
            // A length the master accepts, then fewer bytes than it says.
            let len = *rng.pick(&[64 << 10, 1000, 4]);
            let mut bytes = (len as u32).to_le_bytes().to_vec();
            let n = rng.range(0, len);
            bytes.extend(rng.bytes(n));
            ("short frame", bytes)
        }
        4 => {
            let n = rng.range(0, 512);
            ("garbage payload", repl_frame(&rng.bytes(n)))
        }
        5 | 6 => ("mutated Hello", mutate(rng, repl_frame(&valid), 3)),
        7 => ("mutated Hello payload", repl_frame(&mutate(rng, valid, 3))),
        8 => {
            let message = match rng.below(5) {
                0 => hello("admin", "wrong", PROTOCOL_VERSION, "fuzz"),
                1 => hello("nobody", "admin", PROTOCOL_VERSION, "fuzz"),
                2 => hello("", "", PROTOCOL_VERSION, "fuzz"),
                3 => hello("admin", "admin\0", PROTOCOL_VERSION, "fuzz"),
                _ => hello("admin", "admin", PROTOCOL_VERSION + 1, "fuzz"),
            };
            ("refused Hello", slave_frame(&message))
        }
        9 => {
            let first = match rng.below(3) {
                0 => SlaveMessage::Ack {
                    seq: Seq(rng.next()),
                },
                1 => SlaveMessage::HeartBeat,
                _ => SlaveMessage::Probe,
            };
            let mut bytes = slave_frame(&first);
            bytes.extend(repl_frame(&valid));
            ("not a Hello first", bytes)
        }
        10 => {
            // A valid Hello with a byte too many inside its frame.
            let mut payload = valid;
            payload.push(rng.next() as u8);
            ("Hello with trailing bytes", repl_frame(&payload))
        }
        _ => {
            let mut bytes = repl_frame(&valid);
            let n = rng.range(1, 512);
            bytes.extend(rng.bytes(n));
            ("Hello then garbage", bytes)
        }
    }
}

/// Runs unauthenticated replication case `index`: at most one answer, a refusal (or the
/// probe's `Alive`), nothing from the store, and the link closes.
fn hostile_replication(port: u16, seed: u64, index: usize, secrets: &[Vec<u8>]) -> &'static str {
    let mut rng = Rng::for_case(seed, index);
    let (label, bytes) = unauthenticated_bytes(&mut rng);
    let context = format!("seed {seed} replication case {index} ({label})");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (received, reset) = say_and_hang_up(&mut stream, &mut rng, &bytes)
        .unwrap_or_else(|e| panic!("{context}: the master {e}"));
    for secret in secrets {
        assert!(
            !contains(&received, secret),
            "{context}: the master sent {:?} before authentication",
            String::from_utf8_lossy(secret)
        );
    }
    let (messages, tail) =
        parse_master_output(&received).unwrap_or_else(|e| panic!("{context}: {e}"));
    assert!(tail == 0 || reset, "{context}: the master closed mid-frame");
    assert!(messages.len() <= 1, "{context}: {messages:?}");
    if std::env::var("HOSTILE_DEBUG").is_ok() {
        eprintln!("replication case {index} {label}: reset {reset}, {messages:?}");
    }
    match messages.first() {
        None | Some(MasterMessage::Alive) | Some(MasterMessage::Refused { retry: false, .. }) => {}
        Some(MasterMessage::Refused {
            reason,
            retry: true,
        }) => assert!(reason.contains("another slave"), "{context}: {reason}"),
        Some(other) => panic!("{context}: the master answered {other:?} before authentication"),
    }
    label
}

#[test]
fn bad_bytes_at_the_replication_port_get_nothing_from_the_store_and_the_slave_stays_in_sync() {
    const CASES: usize = 1000;
    let seed = seed();
    let mut pair = Pair::start("", "");
    pair.master
        .log
        .wait_for("-> master-with-slave", PATIENCE)
        .expect("the master relies on its slave");
    let port = pair.master.wait_for_port("replication");
    let pid = pair.master.pid();
    let marker = format!("repl-marker-{seed}");
    let precious = store_precious(&mut pair.master.client(), "/queue/precious", 100, &marker);
    let secrets = vec![marker.into_bytes(), store_id(&pair.master).into_bytes()];

    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(pair.master.port, "/queue/good", stop.clone());
    let rss_before = proc_kib(pid, "VmRSS");
    let seen = storm(0..CASES, 6, move |i| {
        hostile_replication(port, seed, i, &secrets)
    });
    let rss_after = proc_kib(pid, "VmRSS");
    stop.store(true, Ordering::SeqCst);
    let (round_trips, slowest) = good.join().expect("the well-behaved client was not served");
    eprintln!(
        "hostile: {seen:?}; well-behaved round trips {round_trips} (slowest {slowest:?}); master RSS {rss_before} -> {rss_after} KiB"
    );
    assert_eq!(seen.values().sum::<usize>(), CASES);
    assert!(alive(pid), "the master died (seed {seed})");
    assert_never_panicked(&pair.master, "the master");
    assert_never_panicked(&pair.slave, "the slave");
    assert!(
        rss_after.saturating_sub(rss_before) < RSS_GROWTH_BOUND_KIB,
        "seed {seed}: master RSS grew from {rss_before} to {rss_after} KiB"
    );
    // The real link never wavered: every receipt above waited for the slave.
    let master_log = pair.master.log.text();
    assert!(!master_log.contains("slave lost"), "{master_log}");
    assert!(!pair.slave.log.text().contains("slave-checking-master"));

    // The slave holds everything: it takes over with every stored message.
    pair.master.kill9();
    pair.slave.wait_for_role("master-alone");
    pair.slave.wait_until_listening();
    assert_eq!(
        pair.slave.client().drain("/queue/precious", precious.len()),
        precious,
        "seed {seed}: the slave holds every stored message"
    );
    assert_never_panicked(&pair.slave, "the promoted slave");
}

/// What an authenticated peer throws after its Welcome, for round `round`.
fn authenticated_garbage(rng: &mut Rng, round: usize) -> (&'static str, Vec<u8>) {
    let ack = |seq: u64| slave_frame(&SlaveMessage::Ack { seq: Seq(seq) });
    match round % 11 {
        0 => {
            let n = rng.range(1, 2048);
            ("random bytes", rng.bytes(n))
        }
        1 => {
            let len: u32 = *rng.pick(&[u32::MAX, (256 << 20) + 1, 256 << 20]);
            let mut bytes = len.to_le_bytes().to_vec();
            let n = rng.range(0, 64);
            bytes.extend(rng.bytes(n));
            ("huge length prefix", bytes)
        }
        2 => {
            let n = rng.range(0, 512);
            ("garbage payload", repl_frame(&rng.bytes(n)))
        }
        3 => {
            let mut bytes = ack(3);
            bytes.extend(ack(0));
            bytes.extend(ack(rng.below(50) as u64));
            ("acks out of order", bytes)
        }
        4 => {
            let frame = [
                ack(rng.below(50) as u64),
                slave_frame(&SlaveMessage::HeartBeat),
            ]
            .concat();
            ("mutated acks", mutate(rng, frame, 3))
        }
        5 => (
            "a second Hello",
            slave_frame(&hello("admin", "admin", PROTOCOL_VERSION, "again")),
        ),
        6 => ("a Probe", slave_frame(&SlaveMessage::Probe)),
        7 => {
            let mut bytes = Vec::new();
            for _ in 0..rng.range(1, 5) {
                bytes.extend(slave_frame(&SlaveMessage::HeartBeat));
            }
            let n = rng.range(1, 256);
            bytes.extend(rng.bytes(n));
            ("heart-beats then garbage", bytes)
        }
        8 => {
            let mut bytes = 50u32.to_le_bytes().to_vec();
            let n = rng.range(0, 50);
            bytes.extend(rng.bytes(n));
            ("short frame", bytes)
        }
        9 => {
            let mut payload = codec::encode(&SlaveMessage::Ack { seq: Seq(1) }).unwrap();
            payload.push(0);
            ("ack with trailing bytes", repl_frame(&payload))
        }
        _ => ("nothing", Vec::new()),
    }
}

/// Authenticates as a slave, takes the Welcome, throws garbage and hangs up: the master
/// must drop the link (closing it) and carry on.
fn authenticated_round(port: u16, seed: u64, round: usize) -> &'static str {
    let mut rng = Rng::for_case(seed ^ 0xa5a5, round);
    let (label, garbage) = authenticated_garbage(&mut rng, round);
    let context = format!("seed {seed} authenticated round {round} ({label})");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let store = format!("fake-{round}");
    stream
        .write_all(&slave_frame(&hello(
            "admin",
            "admin",
            PROTOCOL_VERSION,
            &store,
        )))
        .unwrap();
    let (welcome, mut received) =
        read_master_message(&mut stream).unwrap_or_else(|e| panic!("{context}: {e}"));
    assert!(
        matches!(welcome, MasterMessage::Welcome { .. }),
        "{context}: expected a Welcome, got {welcome:?}"
    );
    let (rest, reset) = say_and_hang_up(&mut stream, &mut rng, &garbage)
        .unwrap_or_else(|e| panic!("{context}: the master {e}"));
    received.extend(rest);
    let (messages, tail) =
        parse_master_output(&received).unwrap_or_else(|e| panic!("{context}: {e}"));
    assert!(tail == 0 || reset, "{context}: the master closed mid-frame");
    for message in &messages {
        assert!(
            matches!(
                message,
                MasterMessage::Records(_)
                    | MasterMessage::HeartBeat
                    | MasterMessage::InSync
                    | MasterMessage::Dropped { .. }
            ),
            "{context}: unexpected {message:?}"
        );
    }
    label
}

#[test]
fn a_peer_that_authenticates_then_sends_garbage_is_dropped_and_nothing_is_lost() {
    const ROUNDS: usize = 22;
    let seed = seed();
    let mut pair = Pair::start("", "");
    let port = pair.master.wait_for_port("replication");
    let marker = format!("auth-marker-{seed}");
    let precious = store_precious(&mut pair.master.client(), "/queue/precious", 100, &marker);
    // The real slave steps aside so that the hostile peers can attach.
    pair.slave.kill9();
    pair.master
        .log
        .wait_for(
            "-> master-alone (no master at the slave's address",
            PATIENCE,
        )
        .expect("the master carries on alone");

    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(pair.master.port, "/queue/good", stop.clone());
    let mut seen = BTreeMap::new();
    for round in 0..ROUNDS {
        let label = std::panic::catch_unwind(|| authenticated_round(port, seed, round))
            .unwrap_or_else(|_| panic!("master log:\n{}", pair.master.log.text()));
        *seen.entry(label).or_insert(0) += 1;
        // The link is gone once the role machine heard of it; a peer the master came
        // to rely on is gone once the master is alone again.
        let log = &pair.master.log;
        assert!(
            log.wait_for_count("slave lost", round + 2, PATIENCE),
            "seed {seed}: the master never let go of round {round}:\n{}",
            log.text()
        );
        let checking = log.text().matches("-> master-checking-slave").count();
        assert!(log.wait_for_count("-> master-alone", checking + 1, PATIENCE));
    }
    assert!(alive(pair.master.pid()), "the master died (seed {seed})");

    // The real slave comes back, catches up and mirrors; then the master dies.
    let config = pair.slave.config.clone();
    pair.slave = Broker::spawn(&config);
    pair.slave.wait_for_role("slave-mirroring");
    let mut client = pair.master.client();
    let after: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    for text in &after {
        client.send_receipted("/queue/after", text, true);
    }
    stop.store(true, Ordering::SeqCst);
    let (round_trips, slowest) = good.join().expect("the well-behaved client was not served");
    eprintln!("hostile: {seen:?}; well-behaved round trips {round_trips} (slowest {slowest:?})");
    assert_never_panicked(&pair.master, "the master");
    pair.master.kill9();
    pair.slave.wait_for_role("master-alone");
    pair.slave.wait_until_listening();
    let mut survivor = pair.slave.client();
    assert_eq!(
        survivor.drain("/queue/precious", precious.len()),
        precious,
        "seed {seed}: stored before the hostile peers"
    );
    assert_eq!(
        pair.slave.client().drain("/queue/after", after.len()),
        after,
        "seed {seed}: stored after them"
    );
    assert_never_panicked(&pair.slave, "the slave");
}

/// A master with a replication listener and no slave, one stored message, and an
/// authenticated peer that has its Welcome.
fn master_with_a_welcomed_peer(site: &Site) -> (Broker, TcpStream, Seq) {
    let master = site.start("", "", &master_replication(""));
    master.client().send_receipted("/queue/q", "stored", true);
    let port = master.wait_for_port("replication");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(&slave_frame(&hello(
            "admin",
            "admin",
            PROTOCOL_VERSION,
            "peer",
        )))
        .unwrap();
    match read_master_message(&mut stream).unwrap().0 {
        MasterMessage::Welcome { in_sync_at, .. } => (master, stream, in_sync_at),
        other => panic!("expected a Welcome, got {other:?}"),
    }
}

#[test]
fn a_huge_ack_does_not_take_the_master_down() {
    for seq in [u64::MAX, i64::MAX as u64 + 1] {
        let site = Site::new();
        let (master, mut stream, _) = master_with_a_welcomed_peer(&site);
        stream
            .write_all(&slave_frame(&SlaveMessage::Ack { seq: Seq(seq) }))
            .unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        read_until_closed(&mut stream, CLOSE_WITHIN).expect("the master closes the link");
        if master.log.wait_for("slave lost", SERVED_WITHIN).is_none() {
            panic!(
                "ack {seq}: the master never let the peer go:\n{}",
                master.log.text()
            );
        }
        let served = round_trip(master.port);
        let log = master.log.text();
        assert!(
            served.is_ok() && alive(master.pid()) && !log.contains("panicked"),
            "ack {seq}: the master no longer serves ({served:?}):\n{log}"
        );
    }
}

#[test]
fn an_ack_beyond_what_the_master_shipped_is_not_taken_as_in_sync() {
    let site = Site::new();
    let (master, mut stream, in_sync_at) = master_with_a_welcomed_peer(&site);
    // Acknowledge, before reading any record, far more than the master holds.
    stream
        .write_all(&slave_frame(&SlaveMessage::Ack {
            seq: in_sync_at.saturating_add(1_000_000),
        }))
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    read_until_closed(&mut stream, CLOSE_WITHIN).expect("the master closes the link");
    master
        .log
        .wait_for("slave lost", PATIENCE)
        .expect("the master lets the peer go");
    let log = master.log.text();
    assert!(
        !log.contains("-> master-with-slave"),
        "the master relied on a slave that acknowledged records it was never sent:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------
// Many clients, slow clients, credentials, other clients' acks and transactions.

#[test]
fn a_thousand_concurrent_clients_are_held_and_served_and_the_next_one_is_refused() {
    const CLIENTS: usize = 1000;
    let site = Site::new();
    let broker = site.start("", &format!("max_connections = {CLIENTS}"), USERS);
    let started = Instant::now();
    let mut clients: Vec<Client> = Vec::with_capacity(CLIENTS);
    // In batches below the listen backlog, every CONNECT of a batch written before any
    // CONNECTED is read.
    while clients.len() < CLIENTS {
        let mut batch: Vec<Client> = (0..100).map(|_| connect_unanswered(broker.port)).collect();
        for client in &mut batch {
            client.expect(Command::Connected);
            client.version = Version::V1_2;
        }
        clients.append(&mut batch);
    }
    let connected = started.elapsed();

    // All 1,000 are held: one more is turned away with an ERROR, then closed.
    let mut excess = Client::open(broker.port);
    let error = excess.expect_error("too many connections");
    assert_eq!(
        error.header("message"),
        Some(format!("too many connections (limit {CLIENTS})").as_str())
    );

    // Every held client is served: one persistent receipted SEND each, all in flight.
    for (i, client) in clients.iter_mut().enumerate() {
        let receipt = format!("r{i}");
        client.send_frame(
            Command::Send,
            &[
                ("destination", "/queue/crowd"),
                ("persistent", "true"),
                ("receipt", &receipt),
            ],
            format!("c{i}").as_bytes(),
        );
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let receipt = client.expect(Command::Receipt);
        assert_eq!(receipt.header("receipt-id"), Some(format!("r{i}").as_str()));
    }
    clients[0].subscribe("/queue/crowd", "all", "auto", 1000);
    let mut bodies: Vec<String> = clients[0].receive(CLIENTS).iter().map(body).collect();
    bodies.sort();
    let mut expected: Vec<String> = (0..CLIENTS).map(|i| format!("c{i}")).collect();
    expected.sort();
    assert_eq!(bodies, expected);
    eprintln!(
        "hostile: {CLIENTS} clients connected in {connected:?}, all served in {:?}; broker RSS {} KiB",
        started.elapsed(),
        proc_kib(broker.pid(), "VmRSS")
    );
    assert_never_panicked(&broker, "the broker");
}

#[test]
fn trickled_or_missing_connects_are_timed_out_and_give_their_slots_back() {
    const SLOTS: usize = 50;
    const TIMEOUT: Duration = Duration::from_millis(1000);
    let site = Site::new();
    let broker = site.start(
        "",
        &format!(
            "connect_timeout_ms = {}\nmax_connections = {SLOTS}",
            TIMEOUT.as_millis()
        ),
        USERS,
    );
    let opened = Instant::now();
    // One client trickles a CONNECT, a byte every 20 ms: it never falls silent, but the
    // whole frame would take over 4 s. The others send nothing at all.
    let mut trickler = Client::open(broker.port);
    let mut frame = b"CONNECT\naccept-version:1.2\nlogin:admin\npasscode:admin\nx-pad:".to_vec();
    frame.extend(std::iter::repeat_n(b'p', 140));
    frame.extend(b"\n\n\0");
    let total = frame.len();
    let mut writer = trickler.stream.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let mut sent = 0;
        for byte in frame {
            if writer.write_all(&[byte]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        sent
    });
    let mut silent: Vec<Client> = (1..SLOTS).map(|_| Client::open(broker.port)).collect();
    // Every slot is taken (connections are accepted in order): the next is refused.
    Client::open(broker.port).expect_error("too many connections");

    trickler.expect_error("no CONNECT frame within the connect timeout");
    let trickled_for = opened.elapsed();
    for client in &mut silent {
        client.expect_error("no CONNECT frame within the connect timeout");
    }
    let all_closed = opened.elapsed();
    let sent = trickle.join().unwrap();
    assert!(
        sent < total,
        "the trickled CONNECT was cut off ({sent} of {total} bytes sent)"
    );
    assert!(
        trickled_for >= TIMEOUT && trickled_for < TIMEOUT + Duration::from_millis(2500),
        "the trickler was closed after {trickled_for:?}, the timeout is {TIMEOUT:?}"
    );
    assert!(
        all_closed < TIMEOUT + Duration::from_secs(4),
        "silent clients were closed after {all_closed:?}"
    );
    // The slots come back: a real client gets in (a slot frees just after its close).
    let deadline = Instant::now() + PATIENCE;
    loop {
        match round_trip(broker.port) {
            Ok(()) => break,
            Err(why) if Instant::now() < deadline && why.contains("too many connections") => {}
            Err(why) => panic!("no slot came back: {why}"),
        }
    }
    assert_never_panicked(&broker, "the broker");
}

const SECRET: &str = "s3cr3t-Pw-7f3a9c-k0ff";
/// A wrong guess that is almost the secret.
const NEAR_MISS: &str = "s3cr3t-Pw-7f3a9c-k0fX";

fn assert_no_credentials(broker: &Broker, who: &str) {
    let log = broker.log.text();
    for secret in [SECRET, NEAR_MISS] {
        assert!(
            !log.contains(secret),
            "{who} logged the password {secret}:\n{log}"
        );
    }
}

#[test]
fn passwords_never_reach_the_log_even_at_trace_level() {
    let users = format!("[[users]]\nname = \"operator\"\npassword = \"{SECRET}\"");
    let master_site = Site::new();
    let config = master_site.write_config(
        "broker.toml",
        "",
        "",
        &format!(
            "[replication]\nbind = \"tcp://127.0.0.1:0\"\n{}\n{users}",
            common::FAST_LINK
        ),
    );
    let mut master = Broker::spawn_with_log_level(&config, "trace");
    master.wait_until_listening();
    let port = master.port;
    let replication = master.wait_for_port("replication");

    // STOMP: good logins in every version, then a duplicate CONNECT.
    for version in ["1.0", "1.1", "1.2"] {
        let mut client = Client::connect_with(
            port,
            &[
                ("accept-version", version),
                ("login", "operator"),
                ("passcode", SECRET),
            ],
        );
        client.send_receipted("/queue/q", &format!("v{version}"), true);
        if version == "1.2" {
            client.send_frame(
                Command::Connect,
                &[("login", "operator"), ("passcode", SECRET)],
                b"",
            );
            client.expect_error("duplicate CONNECT");
        } else {
            client.disconnect();
        }
    }
    // STOMP: refused and malformed logins that carry the secret or a near miss.
    let refused: Vec<Vec<u8>> = vec![
        format!("CONNECT\naccept-version:1.2\nlogin:operator\npasscode:{NEAR_MISS}\n\n\0").into(),
        format!("STOMP\naccept-version:1.2\nlogin:{SECRET}\npasscode:{NEAR_MISS}\n\n\0").into(),
        format!("CONNECT\nlogin:operator\npasscode:{SECRET}x\n\n\0").into(),
        format!("CONNECT\nlogin:nobody\npasscode:{SECRET}\n\n\0").into(),
        [
            format!("CONNECT\nlogin:operator\npasscode:{SECRET}").as_bytes(),
            b"\xff\n\n\0",
        ]
        .concat(),
        format!("CONNECT\nlogin:operator\npasscode {SECRET}\n\n\0").into(),
        format!(
            "CONNECT\nlogin:operator\npasscode:{SECRET}\nh:{}\n\n\0",
            "v".repeat(20_000)
        )
        .into(),
        format!("CONNECT\nlogin:operator\npasscode:{SECRET}\n\n").into(), // never finished
    ];
    for bytes in &refused {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (answer, _) =
            say_and_hang_up(&mut stream, &mut Rng::for_case(1, 1), bytes).expect("closed");
        assert!(
            contains(&answer, b"ERROR"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }

    // Replication: a good Hello (then hang up), a near miss, and a Hello whose password
    // is not UTF-8.
    let mut good = TcpStream::connect(("127.0.0.1", replication)).unwrap();
    good.write_all(&slave_frame(&hello(
        "operator",
        SECRET,
        PROTOCOL_VERSION,
        "peer",
    )))
    .unwrap();
    assert!(matches!(
        read_master_message(&mut good).unwrap().0,
        MasterMessage::Welcome { .. }
    ));
    drop(good);
    master
        .log
        .wait_for("slave lost", PATIENCE)
        .expect("the peer is let go");
    let mut not_utf8 = slave_frame(&hello("operator", SECRET, PROTOCOL_VERSION, "peer"));
    let at = not_utf8
        .windows(SECRET.len())
        .position(|w| w == SECRET.as_bytes())
        .unwrap();
    not_utf8[at + SECRET.len() - 1] = 0xff;
    for bytes in [
        slave_frame(&hello("operator", NEAR_MISS, PROTOCOL_VERSION, "peer")),
        not_utf8,
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", replication)).unwrap();
        let (answer, _) =
            say_and_hang_up(&mut stream, &mut Rng::for_case(1, 1), &bytes).expect("closed");
        let (messages, _) = parse_master_output(&answer).unwrap();
        assert!(
            matches!(messages[..], [MasterMessage::Refused { retry: false, .. }]),
            "{messages:?}"
        );
    }

    // Real slaves: one with the password mirrors, one with a near miss is refused.
    let slave_config = |site: &Site, password: &str| {
        site.write_config(
            "broker.toml",
            "",
            "",
            &format!(
                "[replication]\nmaster_connector_uri = \"tcp://127.0.0.1:{replication}\"\nuser = \"operator\"\npassword = \"{password}\"\nbind = \"tcp://127.0.0.1:0\"\n{}\n{users}",
                common::FAST_LINK
            ),
        )
    };
    let slave_site = Site::new();
    let slave = Broker::spawn_with_log_level(&slave_config(&slave_site, SECRET), "trace");
    slave.wait_for_role("slave-mirroring");
    let wrong_site = Site::new();
    let mut wrong = Broker::spawn_with_log_level(&slave_config(&wrong_site, NEAR_MISS), "trace");
    assert_eq!(
        wrong.wait().code(),
        Some(mirrormq::repl::role::EXIT_REFUSED)
    );
    Client::connect_with(
        port,
        &[
            ("accept-version", "1.2"),
            ("login", "operator"),
            ("passcode", SECRET),
        ],
    )
    .send_receipted("/queue/q", "mirrored", true);

    let master_log = master.log.text();
    assert!(
        master_log.contains("TRACE") && master_log.contains("CONNECT from"),
        "the master logged at trace level, refusals included:\n{master_log}"
    );
    assert_no_credentials(&master, "the master");
    assert_no_credentials(&slave, "the slave");
    assert_no_credentials(&wrong, "the refused slave");
}

#[test]
fn no_client_can_ack_nack_or_commit_on_another_clients_subscription_or_transaction() {
    let site = Site::new();
    let broker = site.start("", "", USERS);
    let mut producer = broker.client();
    for text in ["m0", "m1"] {
        producer.send_receipted("/queue/x", text, true);
    }
    // The owner holds both messages, unacknowledged.
    let mut owner = broker.client();
    owner.subscribe("/queue/x", "s", "client-individual", 10);
    let held = owner.receive(2);
    // A bystander on the same queue would get anything that went back to it.
    let mut bystander = broker.client();
    bystander.subscribe("/queue/x", "s", "client-individual", 10);

    // Intruders, each with a subscription of the same id (so of the same internal key),
    // in every version and inside a transaction: each is refused and closed.
    let intruder = |version: &str| {
        let mut client = Client::connect_with(
            broker.port,
            &[
                ("accept-version", version),
                ("login", "admin"),
                ("passcode", "admin"),
            ],
        );
        client.subscribe("/queue/other", "s", "client-individual", 10);
        client
    };
    for version in ["1.0", "1.1", "1.2"] {
        let mut ack = intruder(version);
        ack.ack(&held[0], None);
        ack.expect_error("not awaiting an acknowledgement on this connection");
        let mut nack = intruder(version);
        nack.nack(&held[1], None);
        nack.expect_error("not awaiting an acknowledgement on this connection");
    }
    let mut in_tx = intruder("1.2");
    in_tx.send_frame(Command::Begin, &[("transaction", "t")], b"");
    in_tx.send_frame(
        Command::Ack,
        &[("id", held[0].header("ack").unwrap()), ("transaction", "t")],
        b"",
    );
    in_tx.send_frame(
        Command::Commit,
        &[("transaction", "t"), ("receipt", "c")],
        b"",
    );
    in_tx.expect_error("not awaiting an acknowledgement on this connection");
    // On a topic, acks are no-ops: a topic subscriber's ack of the owner's message may be
    // accepted (as a no-op) or refused, but it must change nothing.
    let mut on_topic = broker.client();
    on_topic.subscribe("/topic/t", "s", "client-individual", 10);
    for (verb, message, receipt) in [
        (Command::Nack, &held[1], "n"),
        (Command::Ack, &held[0], "a"),
    ] {
        on_topic.send_frame(
            verb,
            &[("id", message.header("ack").unwrap()), ("receipt", receipt)],
            b"",
        );
        match on_topic.read(PATIENCE) {
            Got::Frame(f) if f.command == Command::Receipt => {}
            Got::Frame(f) if f.command == Command::Error => break,
            other => panic!("expected a RECEIPT or an ERROR, got {other:?}"),
        }
    }

    // Transactions are per connection: another client cannot commit or abort one.
    owner.send_frame(Command::Begin, &[("transaction", "tx")], b"");
    owner.send_frame(
        Command::Send,
        &[("destination", "/queue/tx"), ("transaction", "tx")],
        b"in tx",
    );
    owner.send_frame(
        Command::Send,
        &[("destination", "/queue/b"), ("receipt", "b")],
        b"x",
    );
    owner.await_receipt("b");
    for verb in [Command::Commit, Command::Abort] {
        let mut other = broker.client();
        other.send_frame(verb, &[("transaction", "tx"), ("receipt", "r")], b"");
        other.expect_error("no open transaction 'tx'");
    }

    // Nothing the intruders did took effect: the owner still holds both messages (its
    // acks succeed), the owner's transaction commits once, and once the owner has gone
    // the bystander's first message is a new one: m0 and m1 were never redelivered.
    owner.ack(&held[0], Some("a0"));
    owner.ack(&held[1], Some("a1"));
    owner.send_frame(
        Command::Commit,
        &[("transaction", "tx"), ("receipt", "c")],
        b"",
    );
    owner.await_receipt("c");
    owner.disconnect();
    producer.send_receipted("/queue/x", "m2", true);
    assert_eq!(body(&bystander.expect(Command::Message)), "m2");
    let mut reader = broker.client();
    reader.subscribe("/queue/tx", "s", "auto", 10);
    assert_eq!(body(&reader.expect(Command::Message)), "in tx");
    producer.send_receipted("/queue/tx", "after", true);
    assert_eq!(
        body(&reader.expect(Command::Message)),
        "after",
        "the transaction's message came once"
    );
}

#[test]
fn credential_comparison_takes_as_long_wherever_a_guess_differs() {
    use mirrormq::config::{constant_time_eq, Config};
    use std::hint::black_box;
    const LEN: usize = 256 * 1024;
    let secret = vec![b'k'; LEN];
    let differ_at = |i: usize| {
        let mut guess = secret.clone();
        guess[i] = b'x';
        guess
    };
    let guesses = [
        secret.clone(),
        differ_at(0),
        differ_at(LEN / 2),
        differ_at(LEN - 1),
    ];
    let password = String::from_utf8(secret.clone()).unwrap();
    let config = Config::parse(
        &format!(
            "[broker]\nname = \"t\"\ndata_dir = \"d\"\n[[users]]\nname = \"admin\"\npassword = \"{password}\"\n"
        ),
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let logins: Vec<(&str, String)> = vec![
        ("admin", password.clone()),
        ("admin", String::from_utf8(differ_at(0)).unwrap()),
        ("admin", String::from_utf8(differ_at(LEN - 1)).unwrap()),
        ("nobody", password.clone()),
    ];
    // The fastest of several runs of each, interleaved, so that load on the machine
    // does not favour one of them.
    let mut eq_best = [Duration::MAX; 4];
    let mut auth_best = [Duration::MAX; 4];
    for _ in 0..7 {
        for (best, guess) in eq_best.iter_mut().zip(&guesses) {
            let started = Instant::now();
            black_box(constant_time_eq(black_box(&secret), black_box(guess)));
            *best = (*best).min(started.elapsed());
        }
        for (best, (login, passcode)) in auth_best.iter_mut().zip(&logins) {
            let started = Instant::now();
            black_box(config.authenticate(black_box(login), black_box(passcode)));
            *best = (*best).min(started.elapsed());
        }
    }
    let verdicts: Vec<bool> = guesses
        .iter()
        .map(|g| constant_time_eq(&secret, g))
        .collect();
    assert_eq!(verdicts, [true, false, false, false]);
    let accepted: Vec<bool> = logins
        .iter()
        .map(|(l, p)| config.authenticate(l, p))
        .collect();
    assert_eq!(accepted, [true, false, false, false]);
    // An early-exit comparison would be thousands of times faster on the first guess.
    for (what, best) in [("constant_time_eq", eq_best), ("authenticate", auth_best)] {
        let fastest = *best.iter().min().unwrap();
        let slowest = *best.iter().max().unwrap();
        eprintln!("hostile: {what}: {best:?}");
        assert!(
            slowest < fastest * 3,
            "{what} takes {best:?} for guesses that are right, wrong at the first, middle and last byte"
        );
    }
}

#[test]
fn a_password_padded_with_nul_bytes_is_not_the_password() {
    let site = Site::new();
    let broker = site.start("", "max_header_length = 100000", USERS);
    let mut padded = b"admin".to_vec();
    padded.extend(vec![0u8; 65_536]);
    let mut client = Client::open(broker.port);
    client.raw(
        &[
            &b"CONNECT\naccept-version:1.2\nlogin:admin\npasscode:"[..],
            &padded,
            b"\n\n\0",
        ]
        .concat(),
    );
    match client.read(PATIENCE) {
        Got::Frame(f) if f.command == Command::Error => {}
        other => panic!("a padded passcode logged in: {other:?}"),
    }
    assert!(!mirrormq::config::constant_time_eq(b"admin", &padded));
}

#[test]
fn peers_trickling_big_unfinished_frames_do_not_stall_other_clients() {
    const TRICKLERS: usize = 8;
    const TRICKLE_FOR: Duration = Duration::from_secs(6);
    let site = Site::new();
    let broker = site.start("", "", USERS);
    let port = broker.port;
    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(port, "/queue/good", stop.clone());
    // Unauthenticated: a CONNECT whose body never ends, 1,400 bytes every 2 ms each, far
    // below the frame size limit and the connect timeout.
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_nodelay(true).unwrap();
                stream
                    .write_all(b"CONNECT\naccept-version:1.2\n\n")
                    .unwrap();
                let piece = [b'x'; 1400];
                let started = Instant::now();
                while started.elapsed() < TRICKLE_FOR && stream.write_all(&piece).is_ok() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    for trickler in tricklers {
        trickler.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let (round_trips, slowest) = good
        .join()
        .expect("the well-behaved client was not served (see its panic above)");
    assert!(
        slowest < Duration::from_secs(1),
        "{round_trips} round trips, the slowest took {slowest:?}"
    );
}
