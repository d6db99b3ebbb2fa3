//! Hostile peers at the replication port (issue 6, items 4 and 5): random and mutated
//! bytes and refused Hellos from peers that have not authenticated, fake slaves that
//! authenticate and then send garbage, huge acks, and acks beyond what the master has
//! shipped; the real slave must stay in sync and lose nothing.
//!
//! `HOSTILE_SEED=N cargo test --test hostile_replication` replays a run, and
//! `HOSTILE_DEBUG=1` prints what the master answered to each unauthenticated peer.
//!
//! Two tests began as bugs found in src/ (a huge and a forged Ack); each is fixed.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::hostile::{
    alive, assert_never_panicked, contains, hello, mutate, parse_master_output, proc_kib,
    read_master_message, read_until_closed, repl_frame, round_trip, say_and_hang_up, seed,
    slave_frame, store_precious, storm, well_behaved, Rng, CLOSE_WITHIN, RSS_GROWTH_BOUND_KIB,
    SERVED_WITHIN,
};
use common::{master_replication, Broker, Pair, Site, PATIENCE};
use mirrormq::codec;
use mirrormq::journal::Seq;
use mirrormq::repl::message::{MasterMessage, SlaveMessage, PROTOCOL_VERSION};

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
        // CopyStore carries nothing from the store: a well-formed Hello of another store
        // is told to copy, which needs its own authenticated streams.
        None
        | Some(MasterMessage::Alive { .. })
        | Some(MasterMessage::CopyStore)
        | Some(MasterMessage::Refused { retry: false, .. }) => {}
        Some(MasterMessage::Refused {
            reason,
            retry: true,
        }) => assert!(reason.contains("max_slaves"), "{context}: {reason}"),
        Some(other) => panic!("{context}: the master answered {other:?} before authentication"),
    }
    label
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

#[test]
fn bad_bytes_at_the_replication_port_get_nothing_from_the_store_and_the_slave_stays_in_sync() {
    const CASES: usize = 1000;
    let seed = seed();
    // One slave at most: a well-formed Hello among the bad bytes is refused, not served.
    let mut pair = Pair::start("max_slaves = 1", "");
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

/// Authenticates as a slave with an empty journal of the master's store `store`, takes
/// the Welcome, throws garbage and hangs up: the master must drop the link (closing it)
/// and carry on.
fn authenticated_round(port: u16, store: &str, seed: u64, round: usize) -> &'static str {
    let mut rng = Rng::for_case(seed ^ 0xa5a5, round);
    let (label, garbage) = authenticated_garbage(&mut rng, round);
    let context = format!("seed {seed} authenticated round {round} ({label})");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(&slave_frame(&hello(
            "admin",
            "admin",
            PROTOCOL_VERSION,
            store,
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
    let store = store_id(&pair.master);
    let mut seen = BTreeMap::new();
    for round in 0..ROUNDS {
        let label = std::panic::catch_unwind(|| authenticated_round(port, &store, seed, round))
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
/// authenticated peer (an empty journal of the master's store) that has its Welcome.
fn master_with_a_welcomed_peer(site: &Site) -> (Broker, TcpStream, Seq) {
    let master = site.start("", "", &master_replication(""));
    master.client().send_receipted("/queue/q", "stored", true);
    let port = master.wait_for_port("replication");
    let store = store_id(&master);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(&slave_frame(&hello(
            "admin",
            "admin",
            PROTOCOL_VERSION,
            &store,
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

/// A copy stream that asks for anything but a chunk of a segment file (a path outside the
/// journal, another file of the store, too many bytes) is closed with nothing sent; one
/// with a wrong password gets nothing at all; a good one gets its chunk, and the master
/// serves its clients throughout.
#[test]
fn a_copy_stream_gets_segment_bytes_only_and_only_after_authentication() {
    let site = Site::new();
    let master = site.start("", "", &master_replication(""));
    master.client().send_receipted("/queue/q", "stored", true);
    let port = master.wait_for_port("replication");
    let copy_hello = |password: &str| SlaveMessage::CopyHello {
        protocol: PROTOCOL_VERSION,
        user: "admin".into(),
        password: password.into(),
        name: "hostile".into(),
    };
    // A wrong password: refused, no manifest.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(&slave_frame(&copy_hello("wrong")))
        .unwrap();
    let (answer, _) = read_master_message(&mut stream).unwrap();
    assert!(
        matches!(answer, MasterMessage::Refused { retry: false, .. }),
        "{answer:?}"
    );
    let fetches = [
        ("../store.toml", 0, 1024),
        ("/etc/passwd", 0, 1024),
        ("store.toml", 0, 1024),
        ("00000000000000000001.seg/../../store.toml", 0, 1024),
        ("1.seg", 0, 1024),
        ("00000000000000000001.seg", 0, u32::MAX),
    ];
    for (name, offset, len) in fetches {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(&slave_frame(&copy_hello("admin")))
            .unwrap();
        let (manifest, _) = read_master_message(&mut stream).unwrap();
        assert!(
            matches!(manifest, MasterMessage::Manifest { .. }),
            "{manifest:?}"
        );
        let fetch = SlaveMessage::Fetch {
            name: name.into(),
            offset,
            len,
            have: None,
        };
        stream.write_all(&slave_frame(&fetch)).unwrap();
        let (rest, _) = read_until_closed(&mut stream, CLOSE_WITHIN)
            .unwrap_or_else(|e| panic!("{name}: the master {e}"));
        assert!(rest.is_empty(), "{name}: the master answered {rest:?}");
    }
    // A good fetch: the segment's header, checked.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(&slave_frame(&copy_hello("admin")))
        .unwrap();
    let (manifest, _) = read_master_message(&mut stream).unwrap();
    let MasterMessage::Manifest { segments, .. } = manifest else {
        panic!("{manifest:?}");
    };
    let fetch = SlaveMessage::Fetch {
        name: segments[0].name.clone(),
        offset: 0,
        len: 8,
        have: None,
    };
    stream.write_all(&slave_frame(&fetch)).unwrap();
    match read_master_message(&mut stream).unwrap().0 {
        MasterMessage::Chunk { data, checksum, .. } => {
            assert_eq!(&data[..], b"MMQJRNL1");
            assert_eq!(checksum, crc32fast::hash(b"MMQJRNL1"));
        }
        other => panic!("expected a chunk, got {other:?}"),
    }
    assert!(round_trip(master.port).is_ok(), "the master still serves");
    assert!(!master.log.text().contains("panicked"));
}
