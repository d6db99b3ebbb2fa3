//! The replication group with real processes: a master with two slaves, kill -9 of the
//! master (exactly one slave takes over, the other follows it), an empty broker added
//! under load, and an old master restarted with its own config that rejoins and takes
//! the master's place back by a planned handover.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::client::Got;
use common::{free_port, ride, Broker, Site, FAST_LINK, PATIENCE};
use mirrormq::stomp::Command;

/// One member of a group: its site, its fixed ports, and its broker once started.
struct Member {
    site: Site,
    stomp: u16,
    replication: u16,
    broker: Option<Broker>,
}

impl Member {
    fn new() -> Member {
        Member {
            site: Site::new(),
            stomp: free_port(),
            replication: free_port(),
            broker: None,
        }
    }

    fn address(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.replication)
    }

    fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("started")
    }

    fn broker_mut(&mut self) -> &mut Broker {
        self.broker.as_mut().expect("started")
    }

    /// Writes this member's config: a slave of `master` if given, else a master; every
    /// other member is a peer; `extra` goes in [replication].
    fn write_config(
        &self,
        master: Option<&Member>,
        peers: &[String],
        extra: &str,
    ) -> std::path::PathBuf {
        let own = self.address();
        let peers: Vec<String> = peers
            .iter()
            .filter(|p| **p != own)
            .map(|p| format!("\"{p}\""))
            .collect();
        let slave_of = master.map_or(String::new(), |m| {
            format!("master_connector_uri = \"{}\"\n", m.address())
        });
        let replication = format!(
            "[replication]\nbind = \"{own}\"\npeers = [{}]\n{slave_of}user = \"admin\"\npassword = \"admin\"\n{FAST_LINK}\n{extra}\n[[users]]\nname = \"admin\"\npassword = \"admin\"",
            peers.join(", ")
        );
        self.site
            .write_config_on_port(self.stomp, "", "", &replication)
    }

    /// Starts the broker on a new config (see `write_config`).
    fn start(&mut self, master: Option<&Member>, peers: &[String], extra: &str) {
        let config = self.write_config(master, peers, extra);
        self.broker = Some(Broker::spawn(&config));
    }

    /// Starts the broker again on the config it has, unchanged.
    fn restart(&mut self) {
        let config = self.site.dir.path().join("broker.toml");
        self.broker = Some(Broker::spawn(&config));
    }
}

/// The replication addresses of `members`, their peers lists.
fn addresses(members: &[&Member]) -> Vec<String> {
    members.iter().map(|m| m.address()).collect()
}

/// `n` members: the first a master, the others its slaves, every one listing the others
/// as peers; returns once every slave mirrors in sync.
fn group(n: usize) -> Vec<Member> {
    group_with(n, "")
}

/// `group`, with `extra` in every member's [replication].
fn group_with(n: usize, extra: &str) -> Vec<Member> {
    let mut members: Vec<Member> = (0..n).map(|_| Member::new()).collect();
    let peers: Vec<String> = members.iter().map(Member::address).collect();
    members[0].start(None, &peers, extra);
    if !extra.contains("wait_for_slave = true") {
        members[0].broker_mut().wait_until_listening();
    }
    for i in 1..n {
        let (first, rest) = members.split_at_mut(i);
        rest[0].start(Some(&first[0]), &peers, extra);
    }
    for member in &members[1..] {
        member.broker().wait_for_role("slave-mirroring");
    }
    members
}

/// Waits until exactly one of `candidates` has promoted itself; returns its index.
fn the_one_that_promoted(members: &[Member], candidates: &[usize]) -> usize {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let promoted: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| {
                members[i]
                    .broker()
                    .log
                    .text()
                    .contains("promoted: now master")
            })
            .collect();
        if let [one] = promoted[..] {
            return one;
        }
        assert!(promoted.len() < 2, "two slaves promoted: {promoted:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "no slave promoted:\n{}",
            candidates
                .iter()
                .map(|&i| members[i].broker().log.text())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        // Polls the logs of several processes; each has its own condition variable.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn killing_the_master_of_three_makes_exactly_one_slave_take_over_and_the_other_follow_it() {
    let mut members = group(3);
    let mut producer = members[0].broker().client();
    for i in 0..50 {
        producer.send_receipted("/queue/q", &format!("m{i}"), true);
    }
    members[0].broker_mut().kill9();
    let new = the_one_that_promoted(&members, &[1, 2]);
    let other = 3 - new;
    let follower = members[other].broker();
    follower
        .log
        .wait_for("following it", PATIENCE)
        .unwrap_or_else(|| panic!("the other slave never followed:\n{}", follower.log.text()));
    assert!(
        follower
            .log
            .wait_for_count("-> slave-mirroring ", 2, PATIENCE),
        "the other slave never mirrored the new master:\n{}",
        follower.log.text()
    );
    members[new].broker_mut().wait_until_listening();
    let mut client = members[new].broker().client();
    client.send_receipted("/queue/q", "after-failover", true);
    // The follower holds what the new master receipted: kill the new master too, and
    // it takes over with every message.
    members[new].broker_mut().kill9();
    let last = the_one_that_promoted(&members, &[other]);
    members[last].broker_mut().wait_until_listening();
    let mut expected: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    expected.push("after-failover".into());
    assert_eq!(
        members[last].broker().client().drain("/queue/q", 51),
        expected
    );
}

#[test]
fn an_empty_broker_added_to_a_pair_under_load_comes_in_sync_and_holds_every_receipt() {
    let mut members = group(2);
    let stop = Arc::new(AtomicBool::new(false));
    let port = members[0].broker().port;
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut client = common::Client::connect(port);
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) || sent < 200 {
                client.send_receipted("/queue/load", &format!("l{sent}"), true);
                sent += 1;
            }
            sent
        })
    };
    let mut third = Member::new();
    let peers = addresses(&[&members[0], &members[1], &third]);
    third.start(Some(&members[0]), &peers, "");
    third.broker().wait_for_role("slave-mirroring");
    members[0]
        .broker()
        .log
        .wait_for("another slave in sync", PATIENCE)
        .expect("the master counts on both slaves");
    stop.store(true, Ordering::Relaxed);
    let sent = load.join().unwrap();
    members.push(third);
    // Both slaves hold every receipted message: kill the master and the first slave,
    // and the added one serves them all.
    members[0].broker_mut().kill9();
    members[1].broker_mut().kill9();
    let promoted = the_one_that_promoted(&members, &[2]);
    members[promoted].broker_mut().wait_until_listening();
    let expected: Vec<String> = (0..sent).map(|i| format!("l{i}")).collect();
    assert_eq!(
        members[promoted]
            .broker()
            .client()
            .drain("/queue/load", sent),
        expected
    );
}

#[test]
fn an_old_master_restarted_with_its_own_config_rejoins_and_a_sigterm_hands_the_master_back() {
    let mut members = group(2);
    let mut client = members[0].broker().client();
    for i in 0..20 {
        client.send_receipted("/queue/q", &format!("before{i}"), true);
    }
    members[0].broker_mut().kill9();
    members[1].broker().wait_for_role("master-alone");
    members[1].broker_mut().wait_until_listening();
    let mut client = members[1].broker().client();
    for i in 0..20 {
        client.send_receipted("/queue/q", &format!("during{i}"), true);
    }
    // The old master, with its config unchanged, finds the new master among its peers.
    members[0].restart();
    let old = members[0].broker();
    old.log
        .wait_for("joining it as its slave", PATIENCE)
        .unwrap_or_else(|| panic!("the old master did not rejoin:\n{}", old.log.text()));
    old.wait_for_role("slave-mirroring");
    members[1]
        .broker()
        .log
        .wait_for("-> master-with-slave", PATIENCE)
        .expect("the new master counts on it");
    client.send_receipted("/queue/q", "rejoined", true);
    // Failback: SIGTERM of the new master hands over to the old one at once.
    assert!(members[1].broker_mut().terminate().success());
    members[0].broker().wait_for_role("master-alone");
    members[0].broker_mut().wait_until_listening();
    let mut expected: Vec<String> = (0..20).map(|i| format!("before{i}")).collect();
    expected.extend((0..20).map(|i| format!("during{i}")));
    expected.push("rejoined".into());
    let mut consumer = members[0].broker().client();
    assert_eq!(consumer.drain("/queue/q", 41), expected);
    consumer.disconnect();
    // Nothing more, and so no duplicate: the next message is the one sent next.
    let mut client = members[0].broker().client();
    client.send_receipted("/queue/q", "end", true);
    assert_eq!(client.drain("/queue/q", 1), ["end"]);
}

/// `min_replicas = 2` with one slave: a receipted SEND waits, unapplied, until a second
/// slave is in sync, and then is receipted; with one slave again, a SEND waits
/// `min_replicas_timeout_ms` and gets an ERROR that says why, and is never delivered.
#[test]
fn min_replicas_holds_sends_until_enough_slaves_are_in_sync_and_errors_them_after_the_timeout() {
    let extra = "min_replicas = 2\nmin_replicas_timeout_ms = 1500";
    let mut members = group_with(2, extra);
    let mut client = members[0].broker().client();
    client.send_frame(
        Command::Send,
        &[
            ("destination", "/queue/q"),
            ("persistent", "true"),
            ("receipt", "held"),
        ],
        b"waited",
    );
    members[0]
        .broker()
        .log
        .wait_for("1 slave(s) in sync, 2 needed", PATIENCE)
        .expect("the master says why the SEND waits");
    let mut third = Member::new();
    let peers = addresses(&[&members[0], &members[1], &third]);
    third.start(Some(&members[0]), &peers, extra);
    third.broker().wait_for_role("slave-mirroring");
    let receipt = client.expect(Command::Receipt);
    assert_eq!(receipt.header("receipt-id"), Some("held"));
    members.push(third);

    members[2].broker_mut().kill9();
    members[0]
        .broker()
        .log
        .wait_for("slave lost", PATIENCE)
        .expect("the master notices");
    client.send_frame(
        Command::Send,
        &[
            ("destination", "/queue/q"),
            ("persistent", "true"),
            ("receipt", "late"),
        ],
        b"refused",
    );
    let error = client.expect_error("1 slave(s) in sync, 2 needed");
    assert_eq!(error.header("receipt-id"), Some("late"));
    // Only the first message was applied: a consumer gets it and nothing after it.
    let mut consumer = members[0].broker().client();
    assert_eq!(consumer.drain("/queue/q", 1), ["waited"]);
    assert!(
        matches!(
            consumer.read(std::time::Duration::from_millis(300)),
            Got::Silent
        ),
        "the refused SEND was delivered"
    );
}

/// The MiB a copy's closing line says were sent and held already.
fn copy_figures(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find(|l| l.contains("installing the copy of store"))
        .unwrap_or_else(|| panic!("no finished copy:\n{log}"));
    let number_before = |what: &str| -> u64 {
        let head = line.split(what).next().unwrap();
        head.rsplit(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no figure before {what:?} in {line}"))
    };
    (
        number_before(" MiB sent"),
        number_before(" MiB held already"),
    )
}

/// An empty slave copies the master's segment files; killed with kill -9 halfway, it is
/// restarted and the copy resumes: what it held is checked by CRC and not sent again.
#[test]
fn a_slave_killed_halfway_through_its_copy_resumes_from_what_it_holds() {
    let mut master = Member::new();
    let mut slave = Member::new();
    let peers = addresses(&[&master, &slave]);
    master.start(None, &peers, "");
    master.broker_mut().wait_until_listening();
    // About 48 MiB of bodies.
    let body = "x".repeat(256 << 10);
    let mut client = master.broker().client();
    for i in 0..192 {
        let receipt = format!("r{i}");
        client.send_persistent("/queue/big", &receipt, format!("{i}:{body}").as_bytes());
        assert_eq!(
            client.expect(Command::Receipt).header("receipt-id"),
            Some(receipt.as_str())
        );
    }
    // 16 MiB a second: the copy takes about three seconds, long enough to cut.
    let slow = "sync_max_rate = \"16MiB\"\nsync_streams = 2";
    slave.start(Some(&master), &peers, slow);
    slave
        .broker()
        .log
        .wait_for("replication: copying the master's store: ", PATIENCE)
        .expect("the copy reports its progress");
    slave.broker_mut().kill9();
    slave.restart();
    slave.broker().wait_for_role("slave-mirroring");
    let (sent, held) = copy_figures(&slave.broker().log.text());
    assert!(
        held >= 16,
        "the second copy held {held} MiB already, sent {sent} MiB"
    );
    // The store is the master's: a consumer of the slave, once promoted, gets it all.
    master.broker_mut().kill9();
    slave.broker().wait_for_role("master-alone");
    slave.broker_mut().wait_until_listening();
    let got = slave.broker().client().drain("/queue/big", 192);
    let expected: Vec<String> = (0..192).map(|i| format!("{i}:{body}")).collect();
    assert!(
        got == expected,
        "the copied store lost or reordered messages"
    );
}

/// SIGTERM of the master of three under load: it tells its slaves it is stopping, the
/// first in sync takes over at once, the other follows it, and a producer on the failover
/// URL rides through: every message receipted, none lost, none delivered twice.
#[test]
fn a_sigterm_of_the_master_under_load_hands_over_with_no_loss_and_no_duplicate() {
    let mut members = group(3);
    let ports: Vec<String> = members
        .iter()
        .map(|m| format!("tcp://127.0.0.1:{}", m.stomp))
        .collect();
    let url = format!(
        "failover:({})?randomize=false&initialReconnectDelay=10&maxReconnectDelay=100",
        ports.join(",")
    );
    let total = 3000;
    let (producer, third) = ride::produce_through(&url, "/queue/handover", total);
    third.recv_timeout(PATIENCE).expect("a third was receipted");
    assert!(members[0].broker_mut().terminate().success());
    let new = the_one_that_promoted(&members, &[1, 2]);
    let other = members[3 - new].broker();
    assert!(
        other.log.wait_for_count("-> slave-mirroring ", 2, PATIENCE),
        "the other slave never followed:\n{}",
        other.log.text()
    );
    assert_eq!(producer.join().unwrap(), total);
    let bodies = ride::consume_all(&url, "/queue/handover");
    let unique: std::collections::HashSet<&String> = bodies.iter().collect();
    assert_eq!(unique.len(), total, "every receipted message is there");
    assert_eq!(bodies.len(), total, "and none twice");
}
