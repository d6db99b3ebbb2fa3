//! Hostile peers at the STOMP client port (issue 6, items 4 and 5): random and mutated
//! bytes before and after CONNECT, frames past every limit, a thousand clients at once,
//! trickled and missing CONNECTs, and peers trickling big frames that never end.
//!
//! `HOSTILE_SEED=N cargo test --test hostile_stomp` replays a run of the random cases,
//! and `HOSTILE_DEBUG=1` prints what the broker answered to each hostile connection.
//!
//! `peers_trickling_big_unfinished_frames_do_not_stall_other_clients` began as a bug
//! found in src/ (a trickled frame re-parsed on every read); it is fixed.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::body;
use common::hostile::{
    alive, assert_never_panicked, connect_unanswered, mutate, proc_kib, round_trip,
    say_and_hang_up, seed, store_precious, storm, well_behaved, Rng, RSS_GROWTH_BOUND_KIB, USERS,
};
use common::{Broker, Client, Site, PATIENCE};
use mirrormq::stomp::{self, Command, Frame, ParseLimits, Parsed, Version};

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
// Many clients, slow clients.

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
