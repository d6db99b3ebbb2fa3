//! The master/slave pair with real processes: kill -9, SIGSTOP, each of the three options
//! both ways, credentials, catch-up, divergence, and the resync script.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command as Process;
use std::time::Duration;

use common::client::Got;
use common::{master_replication, slave_replication, Broker, Pair, Site, PATIENCE};
use mirrormq::broker::{Destination, NewMessage, Op};
use mirrormq::codec;
use mirrormq::journal::{Epoch, EpochStart, Record, Seq};
use mirrormq::repl::message::{CatchUp, MasterMessage, SlaveMessage};

const QUIET: Duration = Duration::from_millis(300);

#[test]
fn receipted_messages_acks_and_commits_survive_a_master_kill_and_open_transactions_do_not() {
    let mut pair = Pair::start("", "");
    assert!(
        pair.slave.log.wait_for("stomp: listening", QUIET).is_none(),
        "a mirroring slave keeps its client port closed"
    );
    let mut client = pair.master.client();
    client.send_many("/queue/orders", 200);
    client.subscribe("/queue/orders", "s", "client-individual", 50);
    for message in client.receive(50) {
        client.ack(&message, None);
    }
    client.commit_three_and_leave_one_open("/queue/tx");
    pair.master.kill9();

    pair.slave.wait_for_role("master-alone");
    pair.slave.wait_until_listening();
    let mut survivor = pair.slave.client();
    let expected: Vec<String> = (50..200).map(|i| format!("m{i}")).collect();
    assert_eq!(
        survivor.drain("/queue/orders", 150),
        expected,
        "acked messages stay acked, the rest survive in order"
    );
    let mut tx = pair.slave.client();
    assert_eq!(tx.drain("/queue/tx", 3), ["c0", "c1", "c2"]);
    assert!(
        matches!(tx.read(QUIET), Got::Silent),
        "the open transaction's message does not exist"
    );
    assert!(pair
        .slave
        .log
        .text()
        .contains("promoted: now master in epoch 2"));
}

#[test]
fn shutdown_on_master_failure_stops_the_slave_instead_of_promoting() {
    let mut pair = Pair::start("", "shutdown_on_master_failure = true");
    pair.master
        .client()
        .send_receipted("/queue/q", "kept", true);
    pair.master.kill9();
    let status = pair.slave.wait();
    assert_eq!(
        status.code(),
        Some(mirrormq::repl::role::EXIT_MASTER_FAILED)
    );
    assert!(!pair.slave.log.text().contains("stomp: listening"));
}

#[test]
fn shutdown_on_slave_failure_stops_the_master() {
    let mut pair = Pair::start("shutdown_on_slave_failure = true", "");
    pair.master
        .client()
        .send_receipted("/queue/q", "mirrored", true);
    pair.slave.kill9();
    let status = pair.master.wait();
    assert_eq!(status.code(), Some(mirrormq::repl::role::EXIT_SLAVE_FAILED));
    assert!(pair.master.log.text().contains("shutdown_on_slave_failure"));
}

#[test]
fn by_default_a_master_that_loses_its_slave_carries_on_and_says_so() {
    let mut pair = Pair::start("", "");
    let mut client = pair.master.client();
    client.send_receipted("/queue/q", "before", true);
    pair.slave.kill9();
    pair.master.wait_for_role("master-alone");
    pair.master
        .log
        .wait_for("ONE copy", PATIENCE)
        .expect("the degradation is loud");
    client.send_receipted("/queue/q", "after", true);
}

#[test]
fn a_stopped_slave_cannot_hang_the_master_and_rejoins_without_promoting() {
    let pair = Pair::start("", "");
    let mut client = pair.master.client();
    client.send_receipted("/queue/q", "before", true);
    pair.slave.signal("STOP");
    // The receipt waits for the slave only until the ack timeout or heart-beat silence.
    client.send_receipted("/queue/q", "during", true);
    pair.master
        .log
        .wait_for("slave lost", PATIENCE)
        .expect("the master gave up on the stopped slave");
    pair.slave.signal("CONT");
    // Told it was dropped, or finding on waking that its master still answers a probe
    // (its own heart-beat clock may fire first), the slave dials again instead of
    // promoting next to a live master.
    let rejoined = pair
        .slave
        .log
        .wait_for_count("-> slave-mirroring", 2, PATIENCE);
    let log = pair.slave.log.text();
    assert!(rejoined && !log.contains("promoted:"), "{log}");
    assert!(
        log.contains("the master dropped us") || log.contains("the master still answers"),
        "{log}"
    );
    client.send_receipted("/queue/q", "after", true);
}

#[test]
fn wait_for_slave_keeps_the_client_port_closed_until_a_slave_is_in_sync() {
    let master_site = Site::new();
    let mut master = Broker::spawn(&master_site.write_config(
        "broker.toml",
        "",
        "",
        &master_replication("wait_for_slave = true"),
    ));
    let port = master.wait_for_port("replication");
    assert!(
        master.log.wait_for("stomp: listening", QUIET).is_none(),
        "no clients before a slave"
    );
    let slave_site = Site::new();
    let slave = Broker::spawn(&slave_site.write_config(
        "broker.toml",
        "",
        "",
        &slave_replication(port, ""),
    ));
    slave.wait_for_role("slave-mirroring");
    master.wait_until_listening();
    let log = master.log.text();
    assert!(log.find("slave in sync").unwrap() < log.find("stomp: listening").unwrap());
    master.client().send_receipted("/queue/q", "now", true);
}

/// A master stopped with SIGTERM while a client is still connected takes a moment to
/// let its sessions go. It says it is stopping, and its in-sync slave takes over at once
/// without probing it (a stopping master could still answer). The race this once lost is
/// timing-dependent, so it runs several times.
#[test]
fn a_master_stopped_with_sigterm_hands_over_to_its_in_sync_slave_every_time() {
    for round in 0..5 {
        let mut pair = Pair::start("wait_for_slave = true", "");
        pair.master.wait_until_listening();
        pair.master.client().send_many("/queue/q", 2);
        let _connected = pair.master.client();
        assert!(pair.master.terminate().success(), "round {round}");
        pair.slave.wait_for_role("master-alone");
        pair.slave.wait_until_listening();
        assert_eq!(
            pair.slave.client().drain("/queue/q", 2),
            ["m0", "m1"],
            "round {round}:\n{}",
            pair.slave.log.text()
        );
    }
}

#[test]
fn a_slave_with_bad_credentials_is_refused_on_both_sides() {
    let master_site = Site::new();
    let master = master_site.start("", "", &master_replication(""));
    let port = master.wait_for_port("replication");
    let slave_site = Site::new();
    let text = slave_replication(port, "")
        .replace("password = \"admin\"\nbind", "password = \"nope\"\nbind");
    let mut slave = Broker::spawn(&slave_site.write_config("broker.toml", "", "", &text));
    assert_eq!(
        slave.wait().code(),
        Some(mirrormq::repl::role::EXIT_REFUSED)
    );
    assert!(
        slave.log.text().contains("authentication failed"),
        "{}",
        slave.log.text()
    );
    master
        .log
        .wait_for("authentication failed", PATIENCE)
        .expect("the master logs the refusal");
    assert!(
        !master.log.text().contains("nope") && !slave.log.text().contains("nope"),
        "passwords are never logged"
    );
}

#[test]
fn a_slave_past_max_slaves_is_refused_and_keeps_trying() {
    let pair = Pair::start("max_slaves = 1", "");
    let port = pair.master.wait_for_port("replication");
    let other = Site::new();
    let second =
        Broker::spawn(&other.write_config("broker.toml", "", "", &slave_replication(port, "")));
    second
        .log
        .wait_for("replication.max_slaves", PATIENCE)
        .expect("told why");
    pair.master
        .log
        .wait_for("slaves are attached already", PATIENCE)
        .expect("the master says so too");
    second
        .log
        .wait_for("retrying in", PATIENCE)
        .expect("it waits for its turn");
    assert!(
        !second.log.text().contains("slave-mirroring"),
        "one slave at a time with max_slaves = 1"
    );
}

#[test]
fn a_slave_that_never_attached_keeps_retrying_and_never_promotes() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let site = Site::new();
    let slave =
        Broker::spawn(&site.write_config("broker.toml", "", "", &slave_replication(port, "")));
    slave
        .log
        .wait_for("unreachable", PATIENCE)
        .expect("says it retries");
    assert_dials_again_without_promoting(&slave);
}

/// The slave dials its master at least twice more, and never promotes or opens its
/// client port meanwhile.
fn assert_dials_again_without_promoting(slave: &Broker) {
    let before = slave.log.text().matches("retrying in").count();
    assert!(
        slave
            .log
            .wait_for_count("retrying in", before + 2, PATIENCE),
        "{}",
        slave.log.text()
    );
    let log = slave.log.text();
    assert!(
        !log.contains("promoted:") && !log.contains("stomp: listening"),
        "{log}"
    );
}

#[test]
fn the_old_master_rejoins_as_the_new_slave_and_catches_up() {
    let mut pair = Pair::start("", "");
    pair.master.client().send_many("/queue/q", 20);
    pair.master.kill9();
    pair.slave.wait_for_role("master-alone");
    pair.slave.wait_until_listening();
    pair.slave
        .client()
        .send_receipted("/queue/q", "after-failover", true);
    let new_port = pair.slave.wait_for_port("replication");
    let old = Broker::spawn(&pair.master_site.write_config(
        "broker.toml",
        "",
        "",
        &slave_replication(new_port, ""),
    ));
    old.wait_for_role("slave-mirroring");
    assert!(
        old.log.text().contains("appending the master's records"),
        "caught up by appending, not replaced:\n{}",
        old.log.text()
    );
    // What the rejoined slave holds is what the new master holds; a stop writes it out.
    pair.slave
        .client()
        .send_receipted("/queue/q", "mirrored-again", true);
    let mut old = old;
    assert!(old.terminate().success());
    let text = verify(&pair.master_site);
    assert!(text.contains("queue q 22"), "{text}");
}

/// `mirrormq verify` on a site's data directory: its summary, one fact a line.
fn verify(site: &Site) -> String {
    let output = Process::new(common::binary())
        .args(["verify", "--data-dir", site.data_dir().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn with_slave_ack_durable_every_receipted_message_is_on_the_slaves_disk_before_its_receipt() {
    let mut pair = Pair::start("", "slave_ack = \"durable\"");
    let mut client = pair.master.client();
    // One at a time, so that each record reaches the slave on its own, as the last one
    // does under any load.
    for i in 0..30 {
        client.send_receipted("/queue/q", &format!("m{i}"), true);
    }
    // No chance for the slave to write anything after the last receipt.
    pair.slave.kill9();
    let text = verify(&pair.slave_site);
    assert!(text.contains("queue q 30"), "{text}");
}

/// A store that went on alone (extra records) and a store that did not, both in epoch 1.
fn diverged_sites() -> (Site, Site) {
    let mut pair = Pair::start("", "");
    pair.master.client().send_many("/queue/q", 5);
    pair.slave.kill9();
    pair.master.wait_for_role("master-alone");
    pair.master
        .client()
        .send_receipted("/queue/q", "only-on-the-master", true);
    pair.master.kill9();
    (pair.master_site, pair.slave_site)
}

#[test]
fn a_diverged_slave_is_refused_and_the_resync_script_repairs_it() {
    let (went_alone, stayed) = diverged_sites();
    // The stale copy comes back as master; the store with extra records may not mirror it.
    let master = stayed.start("", "", &master_replication(""));
    let port = master.wait_for_port("replication");
    let config = went_alone.write_config("broker.toml", "", "", &slave_replication(port, ""));
    let mut refused = Broker::spawn(&config);
    assert_eq!(
        refused.wait().code(),
        Some(mirrormq::repl::role::EXIT_REFUSED)
    );
    let log = refused.log.text();
    assert!(
        log.contains("diverged") && log.contains("scripts/resync.sh"),
        "{log}"
    );

    let resync = |from: &Site, to: &Site| {
        Process::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/resync.sh"))
            .args([from.data_dir(), to.data_dir()])
            .env("MIRRORMQ", common::binary())
            .output()
            .unwrap()
    };
    let locked = resync(&stayed, &went_alone);
    assert!(
        !locked.status.success(),
        "refused while the master holds its lock"
    );
    assert!(String::from_utf8_lossy(&locked.stderr).contains("lock"));
    drop(master);
    let done = resync(&stayed, &went_alone);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let backups = common::entries_named(went_alone.dir.path(), |name| {
        name.starts_with("data.backup-")
    });
    assert_eq!(backups, 1, "the replaced directory is kept");
    let master = stayed.start("", "", &master_replication(""));
    let port = master.wait_for_port("replication");
    let resynced = Broker::spawn(&went_alone.write_config(
        "broker.toml",
        "",
        "",
        &slave_replication(port, ""),
    ));
    resynced.wait_for_role("slave-mirroring");
}

#[test]
fn the_replication_port_sends_nothing_from_the_store_to_a_wrong_version_or_wrong_password() {
    use mirrormq::repl::message::{MasterMessage, SlaveMessage, Standing};
    let master_site = Site::new();
    let master = master_site.start("", "", &master_replication(""));
    master
        .client()
        .send_receipted("/queue/secret", "payload", true);
    let port = master.wait_for_port("replication");
    let hello = |protocol: u32, password: &str| SlaveMessage::Hello {
        protocol,
        user: "admin".into(),
        password: password.into(),
        standing: Standing {
            store_id: "x".into(),
            epochs: vec![],
            last: None,
            alone_since: None,
        },
        advertised: None,
        name: "impostor".into(),
    };
    for (message, expected) in [
        (hello(99, "admin"), "protocol version mismatch"),
        (
            hello(mirrormq::repl::message::PROTOCOL_VERSION, "guess"),
            "authentication failed",
        ),
    ] {
        let answer: Option<MasterMessage> = mirrormq::runtime::block_on(async {
            let stream = mirrormq::runtime::connect(&format!("127.0.0.1:{port}"))
                .await
                .unwrap();
            let mut writer = &stream;
            mirrormq::codec::write_frame(&mut writer, &message)
                .await
                .unwrap();
            let mut reader = &stream;
            let answer = mirrormq::codec::read_frame(&mut reader, 1 << 20)
                .await
                .unwrap();
            // After the refusal the master closes the link: nothing else follows.
            assert!(
                mirrormq::codec::read_frame::<_, MasterMessage>(&mut reader, 1 << 20)
                    .await
                    .unwrap()
                    .is_none()
            );
            answer
        });
        match answer {
            Some(MasterMessage::Refused {
                reason,
                retry: false,
            }) => assert!(reason.contains(expected), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

fn send_master_message(link: &mut TcpStream, message: &MasterMessage) {
    link.write_all(&codec::frame(message).unwrap()).unwrap();
}

/// The slave's next message (a u32 little-endian length, then the message), or `None`
/// once it has closed the link.
fn read_slave_message(link: &mut TcpStream) -> Option<SlaveMessage> {
    link.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut length = [0u8; 4];
    link.read_exact(&mut length).ok()?;
    let mut payload = vec![0u8; u32::from_le_bytes(length) as usize];
    link.read_exact(&mut payload).ok()?;
    Some(codec::decode(&payload).expect("the slave speaks the protocol"))
}

/// The fake master's Welcome for a slave that holds every record up to `last`: epoch 1,
/// records follow from the next seq, and the slave is in sync once it acknowledges `last`.
fn fake_welcome(last: Seq) -> MasterMessage {
    MasterMessage::Welcome {
        store_id: "a-fake-master".into(),
        epochs: vec![EpochStart {
            epoch: Epoch(1),
            first_seq: Seq(1),
        }],
        catch_up: CatchUp::Append { from: last.next() },
        in_sync_at: last,
    }
}

/// Plays a master that accepts the slave's Hello on `master`, welcomes it into epoch 1
/// (it is in sync once it acknowledges seq 0), and sends it record 1; returns the link.
fn welcome_with_one_record(master: &TcpListener) -> TcpStream {
    let (mut link, _) = master.accept().unwrap();
    assert!(matches!(
        read_slave_message(&mut link),
        Some(SlaveMessage::Hello { .. })
    ));
    send_master_message(&mut link, &fake_welcome(Seq(0)));
    send_master_message(&mut link, &MasterMessage::Records(vec![good_record(1)]));
    link
}

/// A record a slave can apply: a persistent message for /queue/q.
fn good_record(seq: u64) -> Record {
    let op = Op::Send(NewMessage {
        destination: Destination::Queue("q".into()),
        headers: Vec::new(),
        body: format!("m{seq}").into(),
        persistent: true,
    });
    Record {
        epoch: Epoch(1),
        seq: Seq(seq),
        payload: codec::encode(&op).unwrap().into(),
    }
}

/// An acknowledgement past a record the slave could not apply would let the master
/// release receipts for records the slave does not hold; with either `slave_ack`, the
/// slave acknowledges up to the record before it, never further, and stops.
#[test]
fn a_slave_never_acknowledges_past_a_record_it_could_not_apply() {
    for slave_ack in ["received", "durable"] {
        let (master, _site, mut slave) =
            slave_of_test_master(&format!("slave_ack = \"{slave_ack}\""));
        let mut link = welcome_with_one_record(&master);
        let acked_up_to = |link: &mut TcpStream, until: Option<u64>| {
            let mut highest = 0;
            while let Some(message) = read_slave_message(link) {
                if let SlaveMessage::Ack { seq } = message {
                    highest = highest.max(seq.0);
                    if Some(highest) == until {
                        break;
                    }
                }
            }
            highest
        };
        assert_eq!(acked_up_to(&mut link, Some(1)), 1, "{slave_ack}");
        let unreadable = Record {
            epoch: Epoch(1),
            seq: Seq(2),
            payload: bytes::Bytes::from_static(b"not an op"),
        };
        send_master_message(&mut link, &MasterMessage::Records(vec![unreadable]));
        send_master_message(&mut link, &MasterMessage::Records(vec![good_record(3)]));
        // Everything the slave says until it hangs up.
        assert_eq!(
            acked_up_to(&mut link, None),
            0,
            "{slave_ack}: acked past seq 1"
        );
        assert_eq!(
            slave.wait().code(),
            Some(mirrormq::repl::role::EXIT_REFUSED),
            "{slave_ack}"
        );
        assert!(
            slave.log.text().contains("seq 2 does not decode"),
            "{slave_ack}"
        );
    }
}

/// Plays a master that welcomes a slave, sends it one record, tells it that it is in
/// sync and waits until it mirrors; returns the link.
fn mirroring_slave_of(master: &TcpListener, slave: &Broker) -> TcpStream {
    let mut link = welcome_with_one_record(master);
    while let Some(message) = read_slave_message(&mut link) {
        if matches!(message, SlaveMessage::Ack { seq } if seq == Seq(1)) {
            break;
        }
    }
    send_master_message(&mut link, &MasterMessage::InSync);
    slave.wait_for_role("slave-mirroring");
    link
}

/// A master stopping cleanly says so; its in-sync slave, the first in the succession,
/// takes over at once, without a probe the stopping master could still answer, serves
/// what it mirrored and writes. The master here is the test, and it still listens.
#[test]
fn an_in_sync_slave_whose_master_said_it_was_stopping_promotes_at_once_without_probing_it() {
    let (master, _site, mut slave) = slave_of_test_master("");
    let mut link = mirroring_slave_of(&master, &slave);
    send_master_message(&mut link, &MasterMessage::Stopping);
    drop(link);
    slave.wait_for_role("master-alone");
    master.set_nonblocking(true).unwrap();
    assert!(
        master.accept().is_err(),
        "the slave dialled or probed a master that said it was stopping"
    );
    slave.wait_until_listening();
    assert_eq!(slave.client().drain("/queue/q", 1), ["m1"]);
    assert!(slave.log.text().contains("promoted: now master in epoch 2"));
    // Its journal writes: a receipt needs the record on disk.
    slave.client().send_receipted("/queue/q", "after", true);
}

/// A slave dialling a master that is this test (a bare listener): the listener, the
/// slave's site (its store lives there) and the slave; `extra` goes in [replication].
fn slave_of_test_master(extra: &str) -> (TcpListener, Site, Broker) {
    let master = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = master.local_addr().unwrap().port();
    let site = Site::new();
    let config =
        site.write_config_on_port(common::free_port(), "", "", &slave_replication(port, extra));
    let slave = Broker::spawn(&config);
    (master, site, slave)
}

/// A master that answers the probe after the link was lost may carry on alone and
/// receipt what the slave never gets: the slave dials it again as one that is not in
/// sync, and never promotes, even once that master is gone.
#[test]
fn a_slave_whose_master_answered_the_probe_never_promotes_without_catching_up() {
    let (master, _site, slave) = slave_of_test_master("");
    drop(mirroring_slave_of(&master, &slave));
    let (mut probe, _) = master.accept().unwrap();
    assert!(matches!(
        read_slave_message(&mut probe),
        Some(SlaveMessage::Probe)
    ));
    send_master_message(
        &mut probe,
        &MasterMessage::Alive {
            epoch: Epoch::FIRST,
        },
    );
    drop(probe);
    slave.wait_for_role("slave-connecting");
    drop(master);
    assert_dials_again_without_promoting(&slave);
}

/// A slave acknowledges on receipt (`slave_ack = "received"`), before its disk has the
/// records. Dropped and dialling again, it must say in its Hello that it holds all it
/// acknowledged: a Hello read from a disk still behind made the master plan a catch-up
/// from an older seq, and the slave refused the master's records as out of order.
#[test]
fn a_slave_dialling_again_reports_every_record_it_acknowledged() {
    let (master, _site, _slave) = slave_of_test_master("");
    let mut link = welcome_with_one_record(&master);
    for round in 0..5u64 {
        let from = 2 + round * 200;
        let records = (from..from + 200).map(good_record).collect();
        send_master_message(&mut link, &MasterMessage::Records(records));
        let last = Seq(from + 199);
        while let Some(message) = read_slave_message(&mut link) {
            if matches!(message, SlaveMessage::Ack { seq } if seq == last) {
                break;
            }
        }
        let dropped = MasterMessage::Dropped {
            reason: "testing the slave's Hello".into(),
        };
        send_master_message(&mut link, &dropped);
        drop(link);
        let (mut again, _) = master.accept().unwrap();
        match read_slave_message(&mut again) {
            Some(SlaveMessage::Hello { standing, .. }) => assert_eq!(
                standing.last.map(|position| position.seq),
                Some(last),
                "round {round}"
            ),
            other => panic!("round {round}: expected a Hello, got {other:?}"),
        }
        send_master_message(&mut again, &fake_welcome(last));
        link = again;
    }
}
