//! Backlogs larger than memory, with real broker processes: bodies paged out to the
//! journal and read back in order, the store limit, compaction under a pinned message,
//! a failover and a catch-up with a paged store, and a damaged paged body.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::client::body;
use common::hostile::proc_kib;
use common::{Broker, Client, Pair, Site, PATIENCE};
use mirrormq::stomp::Command;

/// A small broker: 4 MiB of message memory, 256 KiB segments, frames up to 64 KiB.
const SMALL: &str = "max_memory = \"4MiB\"\nsegment_size = \"256KiB\"";
const SMALL_FRAMES: &str = "max_frame_size = \"64KiB\"";

/// The body of message `i`: 4 KiB, different for every message and every byte position.
fn payload(i: usize) -> String {
    let head = format!("message {i:06} ");
    let fill: String = (0..4096 - head.len())
        .map(|k| char::from(b'a' + ((i * 7 + k) % 26) as u8))
        .collect();
    head + &fill
}

/// Sends messages `range` to `queue`, persistent, in pipelined runs of 200.
fn produce(client: &mut Client, queue: &str, range: std::ops::Range<usize>) {
    let bodies: Vec<String> = range.map(payload).collect();
    for run in bodies.chunks(200) {
        client.send_pipelined(queue, run);
    }
}

/// Receives `count` messages and acks each, the last with a receipt it waits for;
/// returns their bodies. Messages past `count` stay unacknowledged.
fn consume(client: &mut Client, count: usize) -> Vec<String> {
    let mut bodies = Vec::with_capacity(count);
    for n in 0..count {
        let message = client.expect(Command::Message);
        bodies.push(body(&message));
        if n + 1 < count {
            client.ack(&message, None);
            continue;
        }
        let id = message.header("ack").unwrap();
        client.send_frame(Command::Ack, &[("id", id), ("receipt", "last")], b"");
        client.await_receipt("last");
    }
    bodies
}

/// Subscribes `consumer` to /queue/deep and checks messages `0..count` come, each once,
/// in order, byte for byte.
fn drain_in_order(consumer: &mut Client, count: usize, prefetch: u32) {
    consumer.subscribe("/queue/deep", "s", "client-individual", prefetch);
    let bodies = consume(consumer, count);
    for (i, got) in bodies.iter().enumerate() {
        assert!(
            *got == payload(i),
            "message {i} came back wrong or out of order"
        );
    }
}

fn segments(data_dir: &Path) -> usize {
    common::entries_named(&data_dir.join("journal"), |name| name.ends_with(".seg"))
}

/// Starts a producer of `count` messages on another thread, waits for the broker to log
/// `held_back`, and checks the producer is still waiting for receipts then.
fn producer_held_back(
    broker: &Broker,
    count: usize,
    held_back: &str,
) -> std::thread::JoinHandle<()> {
    let port = broker.port;
    let producer = std::thread::spawn(move || {
        let mut client = Client::connect(port);
        produce(&mut client, "/queue/full", 0..count);
    });
    broker
        .log
        .wait_for(held_back, PATIENCE)
        .unwrap_or_else(|| panic!("never logged {held_back:?}:\n{}", broker.log.text()));
    assert!(!producer.is_finished(), "the producer was not held back");
    producer
}

/// Waits until `done` holds, looking every 20 ms, for at most `PATIENCE`.
fn await_condition(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ten times the memory limit goes in, and comes back out in order, byte for byte, with
/// the broker's peak resident memory well below the backlog.
#[test]
fn a_backlog_ten_times_memory_comes_back_in_order_with_memory_bounded() {
    let site = Site::new();
    let broker = site.start(SMALL, SMALL_FRAMES, "");
    let pid = broker.pid();
    let mut producer = broker.client();
    // A round trip first, so the threads, buffers and allocator pages any traffic needs
    // are there before the baseline: what is measured is what the backlog adds.
    produce(&mut producer, "/queue/warm", 0..100);
    let mut warm = broker.client();
    warm.subscribe("/queue/warm", "w", "client-individual", 200);
    assert_eq!(consume(&mut warm, 100).len(), 100);
    let before_mib = proc_kib(pid, "VmRSS") / 1024;
    let count = 10_000; // 40 MiB of bodies against 4 MiB of memory
    produce(&mut producer, "/queue/deep", 0..count);
    drain_in_order(&mut broker.client(), count, 200);
    let grew_mib = proc_kib(pid, "VmHWM") / 1024 - before_mib;
    assert!(
        grew_mib < 4 + 12,
        "the broker grew by {grew_mib} MiB at its peak for a 40 MiB backlog with max_memory 4 MiB"
    );
}

/// A segment kept only by one old message is compacted away: the journal shrinks while
/// the message stays, and the message survives a restart.
#[test]
fn compaction_frees_segments_pinned_by_one_old_message_which_survives_a_restart() {
    let site = Site::new();
    let mut broker = site.start(COMPACTING, SMALL_FRAMES, "");
    let mut client = broker.client();
    client.send_pipelined("/queue/pinned", &["the old one".to_string()]);
    flow_until_compacted(&broker, &site, &mut client);
    broker.kill9();
    let broker = site.start(COMPACTING, SMALL_FRAMES, "");
    let mut client = broker.client();
    assert_eq!(client.drain("/queue/pinned", 1), ["the old one"]);
    assert!(segments(&site.data_dir()) <= 3);
}

/// A durable subscription made in the first segment, with a message it keeps, is written
/// forward by compaction: after the journal shrank and a kill -9, the subscription still
/// keeps what is published, and its subscriber gets both messages.
#[test]
fn compaction_carries_a_durable_subscription_and_its_backlog_through_a_restart() {
    let site = Site::new();
    let mut broker = site.start(COMPACTING, SMALL_FRAMES, "");
    let subscribe = |port: u16| {
        let mut subscriber = Client::connect_with(
            port,
            &[
                ("accept-version", "1.2"),
                ("login", "admin"),
                ("passcode", "admin"),
                ("client-id", "app"),
            ],
        );
        subscriber.send_frame(
            Command::Subscribe,
            &[
                ("destination", "/topic/t"),
                ("id", "d"),
                ("ack", "client-individual"),
                ("activemq.subscriptionName", "s"),
                ("receipt", "subscribed"),
            ],
            b"",
        );
        subscriber.expect(Command::Receipt);
        subscriber
    };
    subscribe(broker.port).disconnect();
    let mut client = broker.client();
    client.send_receipted("/topic/t", "kept before", true);
    flow_until_compacted(&broker, &site, &mut client);
    broker.kill9();
    let broker = site.start(COMPACTING, SMALL_FRAMES, "");
    broker
        .client()
        .send_receipted("/topic/t", "kept after", true);
    assert_eq!(
        subscribe(broker.port).take(2),
        ["kept before", "kept after"]
    );
}

/// `SMALL`, compacting every 100 ms.
const COMPACTING: &str =
    "max_memory = \"4MiB\"\nsegment_size = \"256KiB\"\ncompact_interval_ms = 100";

/// Sends 8 MiB through another queue, 32 segments' worth, each acked at once, and waits
/// until compaction has shrunk the journal to a few segments.
fn flow_until_compacted(broker: &Broker, site: &Site, client: &mut Client) {
    let mut consumer = broker.client();
    consumer.subscribe("/queue/flow", "f", "client-individual", 200);
    for round in 0..10 {
        produce(client, "/queue/flow", round * 200..round * 200 + 200);
        consume(&mut consumer, 200);
    }
    broker
        .log
        .wait_for("journal: compacting segment", PATIENCE)
        .unwrap_or_else(|| panic!("no compaction:\n{}", broker.log.text()));
    await_condition("the journal shrinks to a few segments", || {
        segments(&site.data_dir()) <= 3
    });
}

/// At `max_disk` a producer of persistent messages waits, with a warning in the log, and
/// goes on once a consumer's acknowledgements free segments.
#[test]
fn the_store_limit_holds_producers_back_and_lets_them_go_when_space_is_freed() {
    let site = Site::new();
    let config = format!("{SMALL}\nmax_disk = \"1MiB\"");
    let broker = site.start(&config, SMALL_FRAMES, "");
    let count = 600; // 2.4 MiB: more than the limit allows at once
    let producer = producer_held_back(&broker, count, "store limit reached");
    let mut consumer = broker.client();
    consumer.subscribe("/queue/full", "s", "client-individual", 50);
    let bodies = consume(&mut consumer, count);
    producer.join().expect("the producer got every receipt");
    assert!(bodies.iter().enumerate().all(|(i, b)| *b == payload(i)));
    assert!(broker
        .log
        .wait_for("store limit: room again", PATIENCE)
        .is_some());
}

/// A master with a paged backlog is killed while its consumer is reading bodies back;
/// the slave, which caught the backlog up after starting late, serves the rest in order:
/// nothing receipted is lost.
#[test]
fn a_slave_catches_up_a_paged_store_and_serves_it_after_kill_9_of_the_master() {
    let mut pair = Pair::start_with(SMALL, SMALL_FRAMES, "", "");
    // The slave leaves; the master pages a backlog alone; the slave comes back.
    pair.slave.kill9();
    let mut producer = pair.master.client();
    let count = 3000;
    produce(&mut producer, "/queue/deep", 0..count);
    let slave = Broker::spawn(&pair.slave.config);
    slave.wait_for_role("slave-mirroring");
    pair.slave = slave;
    let mut consumer = pair.master.client();
    consumer.subscribe("/queue/deep", "s", "client-individual", 100);
    let first = consume(&mut consumer, 1000);
    pair.master.kill9();
    pair.slave.wait_until_listening();
    let mut consumer = pair.slave.client();
    consumer.subscribe("/queue/deep", "s", "client-individual", 100);
    let rest = consume(&mut consumer, count - 1000);
    let all: Vec<String> = first.into_iter().chain(rest).collect();
    for (i, got) in all.iter().enumerate() {
        assert!(
            *got == payload(i),
            "message {i} came back wrong or out of order"
        );
    }
}

/// A paged body damaged on disk is reported with its file and offset and held back;
/// every other message is delivered and the broker keeps serving.
#[test]
fn a_damaged_paged_body_is_reported_with_its_file_and_offset_and_the_rest_flow() {
    let site = Site::new();
    let broker = site.start(SMALL, SMALL_FRAMES, "");
    let mut producer = broker.client();
    let count = 3000;
    produce(&mut producer, "/queue/deep", 0..count);
    // Damage the body of message 2500, which is paged out by now.
    let marker = format!("message {:06} ", 2500);
    let journal = site.data_dir().join("journal");
    let damaged = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find_map(|path| {
            let mut data = std::fs::read(&path).ok()?;
            let at = data
                .windows(marker.len())
                .position(|w| w == marker.as_bytes())?;
            data[at + marker.len() + 100] ^= 0x20;
            std::fs::write(&path, data).unwrap();
            Some(path)
        })
        .expect("message 2500 is in a segment");
    let mut consumer = broker.client();
    consumer.subscribe("/queue/deep", "s", "client-individual", 100);
    let bodies = consume(&mut consumer, count - 1);
    let expected: Vec<String> = (0..count).filter(|i| *i != 2500).map(payload).collect();
    assert!(
        bodies == expected,
        "the other messages did not all come, in order"
    );
    let line = broker
        .log
        .wait_for("cannot be read back", PATIENCE)
        .expect("the damage is reported");
    let name = damaged.file_name().unwrap().to_string_lossy().to_string();
    assert!(line.contains(&name) && line.contains("at offset"), "{line}");
    common::hostile::assert_never_panicked(&broker, "the broker");
    assert!(common::hostile::round_trip(broker.port).is_ok());
}

/// The disk itself fills up (a 3 MiB tmpfs, mounted in a mount namespace of the broker's
/// own, so no root is needed): the journal cannot make its next segment, says so, and
/// receipts stop; once space is freed it goes on by itself, and every receipted message
/// is there.
#[test]
fn a_full_disk_stops_receipts_loudly_and_they_go_on_when_space_returns() {
    let site = Site::new();
    let mount = site.dir.path().join("disk");
    std::fs::create_dir(&mount).unwrap();
    let config = site.write_config(
        "broker.toml",
        &format!("{SMALL}\ndata_dir = \"disk/data\""),
        SMALL_FRAMES,
        "",
    );
    // The site's data_dir line comes first in [broker]; the one for the tmpfs replaces it.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replacen("data_dir = \"data\"\n", "", 1);
    std::fs::write(&config, text).unwrap();
    let mut command = std::process::Command::new("unshare");
    command.args([
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        "mount -t tmpfs -o size=3m tmpfs \"$0\" && head -c 1048576 /dev/zero >\"$0/filler\" && exec \"$1\" broker --config \"$2\"",
        mount.to_str().unwrap(),
        common::binary(),
        config.to_str().unwrap(),
    ]);
    let broker = Broker::start_through(command, &config);
    let count = 1000; // 4 MiB: more than the disk holds
    let producer = producer_held_back(&broker, count, "the disk is full");
    // Seen from the broker's mount namespace, the filler goes: space returns.
    let filler = format!("/proc/{}/root{}/filler", broker.pid(), mount.display());
    let mut consumer = broker.client();
    consumer.subscribe("/queue/full", "s", "client-individual", 50);
    std::fs::remove_file(&filler).expect("removing the filler inside the broker's tmpfs");
    let bodies = consume(&mut consumer, count);
    producer.join().expect("the producer got every receipt");
    assert!(bodies.iter().enumerate().all(|(i, b)| *b == payload(i)));
    assert!(broker.log.wait_for("space again", PATIENCE).is_some());
    common::hostile::assert_never_panicked(&broker, "the broker");
}

/// An empty slave attached to a master that already holds a paged backlog copies all of
/// it, and serves it in order once the master is killed.
#[test]
fn an_empty_slave_copies_a_paged_backlog_whole_and_serves_it_after_kill_9() {
    let master_site = Site::new();
    let mut master = Broker::spawn(&master_site.write_config(
        "broker.toml",
        SMALL,
        SMALL_FRAMES,
        &common::master_replication(""),
    ));
    let replication_port = master.wait_for_port("replication");
    master.wait_until_listening();
    let mut producer = master.client();
    let count = 3000;
    produce(&mut producer, "/queue/deep", 0..count);
    let slave_site = Site::new();
    let config = slave_site.write_config_on_port(
        common::free_port(),
        SMALL,
        SMALL_FRAMES,
        &common::slave_replication(replication_port, ""),
    );
    let mut slave = Broker::spawn(&config);
    slave.wait_for_role("slave-mirroring");
    master.kill9();
    slave.wait_until_listening();
    drain_in_order(&mut slave.client(), count, 100);
}
