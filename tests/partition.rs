//! Master and slave cut apart while both live, or one paused: what each combination of
//! `shutdown_on_slave_failure` and `shutdown_on_master_failure` guarantees (the README's
//! "Partitions" table), and how an old master rejoins. The replication link and the
//! master's probe of its slave both cross a `Proxy` the test can cut.

mod common;

use std::time::Duration;

use common::client::Got;
use common::proxy::Proxy;
use common::{free_port, master_replication, slave_replication, Broker, Site, FAST_LINK, PATIENCE};

const QUEUE: &str = "/queue/partition";

/// A master and its slave; the slave reaches the master through `link` and the master
/// probes the slave's replication listener through `probe`.
struct Cuttable {
    master_site: Site,
    _slave_site: Site,
    master: Broker,
    slave: Broker,
    slave_stomp: u16,
    slave_replication: u16,
    link: Proxy,
    probe: Proxy,
}

impl Cuttable {
    fn start(master_extra: &str, slave_extra: &str) -> Cuttable {
        let master_site = Site::new();
        let mut master = Broker::spawn(&master_site.write_config(
            "broker.toml",
            "",
            "",
            &master_replication(master_extra),
        ));
        let link = Proxy::start(master.wait_for_port("replication"));
        master.wait_until_listening();
        let (slave_stomp, slave_replication) = (free_port(), free_port());
        let probe = Proxy::start(slave_replication);
        let slave_site = Site::new();
        let rest = format!(
            "[replication]\nmaster_connector_uri = \"tcp://127.0.0.1:{}\"\nuser = \"admin\"\npassword = \"admin\"\n\
             bind = \"tcp://127.0.0.1:{slave_replication}\"\nadvertised_uri = \"tcp://127.0.0.1:{}\"\n\
             {FAST_LINK}\n{slave_extra}\n[[users]]\nname = \"admin\"\npassword = \"admin\"",
            link.port, probe.port
        );
        let config = slave_site.write_config_on_port(slave_stomp, "", "", &rest);
        let slave = Broker::spawn(&config);
        slave.wait_for_role("slave-mirroring");
        Cuttable {
            master_site,
            _slave_site: slave_site,
            master,
            slave,
            slave_stomp,
            slave_replication,
            link,
            probe,
        }
    }

    fn partition(&self) {
        self.link.cut();
        self.probe.cut();
    }

    fn send_receipted(&self, count: usize) -> Vec<String> {
        let mut client = self.master.client();
        let bodies: Vec<String> = (0..count).map(|i| format!("before-{i}")).collect();
        for body in &bodies {
            client.send_receipted(QUEUE, body, true);
        }
        bodies
    }
}

/// Every message left on `queue` at `port`, in order.
fn drain_all(port: u16) -> Vec<String> {
    let mut client = common::Client::connect(port);
    client.subscribe(QUEUE, "all", "client-individual", 1000);
    let mut bodies = Vec::new();
    while let Got::Frame(frame) = client.read(Duration::from_millis(500)) {
        client.ack(&frame, None);
        bodies.push(common::client::body(&frame));
    }
    bodies
}

/// Waits until a slave has promoted itself and opened its client port.
fn promoted(slave: &Broker) {
    slave.wait_for_role("master-alone");
    slave
        .log
        .wait_for("stomp: listening", PATIENCE)
        .expect("the promoted slave opens its client port");
}

/// Waits until a master has given up on its slave and releases receipts alone.
fn carries_on_alone(master: &Broker) {
    master
        .log
        .wait_for("continuing without a copy", PATIENCE)
        .unwrap_or_else(|| panic!("the master never carried on alone:\n{}", master.log.text()));
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn by_default_a_partition_makes_two_masters_and_the_old_one_is_refused_when_it_rejoins() {
    let mut pair = Cuttable::start("", "");
    let before = pair.send_receipted(5);
    pair.partition();
    promoted(&pair.slave);
    carries_on_alone(&pair.master);
    // Two masters: the old one receipts alone what the new one never sees.
    pair.master
        .client()
        .send_receipted(QUEUE, "written-alone", true);
    assert!(port_open(pair.slave_stomp));

    // The operator stops the old master and restarts it as the new master's slave: its
    // tail may hold receipted messages, so it is refused rather than overwritten.
    assert!(pair.master.terminate().success());
    let config = pair.master_site.write_config(
        "slave.toml",
        "",
        "",
        &slave_replication(pair.slave_replication, ""),
    );
    let mut rejoining = Broker::spawn(&config);
    assert_eq!(rejoining.wait().code(), Some(5), "{}", rejoining.log.text());
    assert!(
        rejoining.log.text().contains("may have been receipted"),
        "{}",
        rejoining.log.text()
    );
    // Nothing was discarded: run alone, the old master still holds what it receipted.
    let alone = pair.master_site.start("", "", "");
    let mut kept = drain_all(alone.port);
    kept.sort();
    let mut expected = before.clone();
    expected.push("written-alone".into());
    expected.sort();
    assert_eq!(kept, expected);
    // And the new master has everything receipted before the partition.
    assert_eq!(drain_all(pair.slave_stomp), before);
}

#[test]
fn shutdown_on_slave_failure_makes_a_partition_leave_one_master() {
    let mut pair = Cuttable::start("shutdown_on_slave_failure = true", "");
    let before = pair.send_receipted(5);
    pair.partition();
    assert_eq!(pair.master.wait().code(), Some(3));
    promoted(&pair.slave);
    assert_eq!(drain_all(pair.slave_stomp), before);
}

#[test]
fn shutdown_on_master_failure_makes_a_partition_leave_one_master() {
    let mut pair = Cuttable::start("", "shutdown_on_master_failure = true");
    let before = pair.send_receipted(5);
    pair.partition();
    assert_eq!(pair.slave.wait().code(), Some(4));
    carries_on_alone(&pair.master);
    assert!(!port_open(pair.slave_stomp));
    assert_eq!(drain_all(pair.master.port), before);
}

#[test]
fn with_both_shutdown_options_a_partition_stops_both_and_loses_nothing() {
    let mut pair = Cuttable::start(
        "shutdown_on_slave_failure = true",
        "shutdown_on_master_failure = true",
    );
    let before = pair.send_receipted(5);
    pair.partition();
    assert_eq!(
        pair.master.wait().code(),
        Some(3),
        "{}",
        pair.master.log.text()
    );
    assert_eq!(
        pair.slave.wait().code(),
        Some(4),
        "{}",
        pair.slave.log.text()
    );
    // No master at all until an operator starts one.
    assert!(!port_open(pair.master.port));
    assert!(!port_open(pair.slave_stomp));
    // The operator starts the old master alone: everything receipted is there.
    let alone = pair.master_site.start("", "", "");
    assert_eq!(drain_all(alone.port), before);
}

#[test]
fn a_paused_master_wakes_to_find_its_slave_took_over_and_stops() {
    let mut pair = Cuttable::start("", "");
    let before = pair.send_receipted(5);
    pair.master.signal("STOP");
    promoted(&pair.slave);
    pair.master.signal("CONT");
    assert_eq!(
        pair.master.wait().code(),
        Some(6),
        "{}",
        pair.master.log.text()
    );
    assert!(pair.master.log.text().contains("has taken over"));
    assert_eq!(drain_all(pair.slave_stomp), before);
}

#[test]
fn a_paused_slave_wakes_and_mirrors_again_without_promoting() {
    let pair = Cuttable::start("", "");
    pair.slave.signal("STOP");
    carries_on_alone(&pair.master);
    let before = pair.send_receipted(5);
    pair.slave.signal("CONT");
    // Back as a slave (it may have read the master's Dropped, or probed the master).
    assert!(pair
        .slave
        .log
        .wait_for_count("-> slave-mirroring", 2, PATIENCE));
    assert!(!pair.slave.log.text().contains("-> master-alone"));
    assert!(!port_open(pair.slave_stomp));
    pair.master.wait_for_role("master-with-slave");
    assert_eq!(drain_all(pair.master.port), before);
}

#[test]
fn an_old_master_whose_last_record_never_reached_its_slave_rejoins_by_itself() {
    let mut pair = Cuttable::start("", "");
    let before = pair.send_receipted(5);
    // A consumer on the master sees the next message once the master has applied (and
    // journaled) it; the slave never will.
    let mut watcher = pair.master.client();
    watcher.subscribe("/queue/tail", "w", "auto", 10);
    pair.partition();
    let mut producer = pair.master.client();
    producer.send_frame(
        mirrormq::stomp::Command::Send,
        &[
            ("destination", "/queue/tail"),
            ("persistent", "true"),
            ("receipt", "never"),
        ],
        b"unreceipted",
    );
    watcher.expect(mirrormq::stomp::Command::Message);
    // The journal writes within moments; losing the slave takes a second of silence.
    pair.master
        .log
        .wait_for("slave lost", PATIENCE)
        .expect("the master notices the partition");
    pair.master.kill9();
    promoted(&pair.slave);

    let config = pair.master_site.write_config(
        "slave.toml",
        "",
        "",
        &slave_replication(pair.slave_replication, ""),
    );
    let rejoined = Broker::spawn(&config);
    rejoined.wait_for_role("slave-mirroring");
    assert!(
        rejoined.log.text().contains("copying the master's store"),
        "{}",
        rejoined.log.text()
    );
    assert_eq!(drain_all(pair.slave_stomp), before);
}
