//! Three brokers with `[election]` against a real ZooKeeper: one config kind for all,
//! exactly one elected at a cold start and the others its slaves; kill -9 of the master:
//! the first in-sync slave takes over, the other follows it, nothing receipted is lost;
//! the old master, restarted with its config, rejoins as a slave; SIGTERM of the master
//! hands over at once; and the partitions: a broker whose session ended rejoins in place.

mod common;

use std::path::PathBuf;

use common::zookeeper::Ensemble;
use common::{free_port, Broker, Client, FAST_LINK};

/// What a broker whose election session ended logs before it starts again in place.
const REJOINING: &str = "starting again from the store to rejoin the group";

/// One broker of the group: its config (fixed client port) and its process.
struct Member {
    _dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    broker: Option<Broker>,
}

impl Member {
    fn new(name: &str, zookeeper: &str) -> Member {
        Member::with(name, zookeeper, free_port(), "")
    }

    /// A member with `session_timeout_ms` of its own.
    fn with_session(name: &str, zookeeper: &str, session_timeout_ms: u64) -> Member {
        let member = Member::new(name, zookeeper);
        let text = std::fs::read_to_string(&member.config).unwrap().replace(
            "session_timeout_ms = 1000",
            &format!("session_timeout_ms = {session_timeout_ms}"),
        );
        std::fs::write(&member.config, text).unwrap();
        member
    }

    /// A member whose replication listener is on `replication` with `extra` lines in
    /// `[replication]` (an `advertised_uri` through a proxy).
    fn with(name: &str, zookeeper: &str, replication: u16, extra: &str) -> Member {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let text = format!(
            "[broker]\nname = \"{name}\"\ndata_dir = \"data\"\nstatus_interval_ms = 0\nlock_retry_ms = 50\n\
             [stomp]\nbind = \"tcp://127.0.0.1:{port}\"\n\
             [replication]\nbind = \"tcp://127.0.0.1:{replication}\"\nuser = \"admin\"\npassword = \"admin\"\n{FAST_LINK}\n{extra}\n\
             [election]\nzookeeper = \"{zookeeper}\"\npath = \"/mirrormq/test\"\nsession_timeout_ms = 1000\n\
             [[users]]\nname = \"admin\"\npassword = \"admin\"\n"
        );
        let config = dir.path().join("broker.toml");
        std::fs::write(&config, text).unwrap();
        Member {
            _dir: dir,
            config,
            port,
            broker: None,
        }
    }

    fn start(&mut self) -> &Broker {
        self.broker.insert(Broker::spawn(&self.config))
    }

    fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("started")
    }
}

/// Which member's log says it became master (`-> master-`), waiting for one.
fn the_master(members: &[Member], among: &[usize]) -> usize {
    let started = std::time::Instant::now();
    loop {
        for &i in among {
            let log = &members[i].broker().log;
            if log.text().contains("-> master-") {
                // Its client port opens right after.
                if log.wait_for("stomp: listening", common::PATIENCE).is_none() {
                    panic!(
                        "the elected master never opened its client port:\n{}",
                        log.text()
                    );
                }
                return i;
            }
        }
        assert!(started.elapsed() < common::PATIENCE, "no master elected");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn one_is_elected_a_slave_takes_over_the_old_master_rejoins_and_a_stop_hands_over() {
    let ensemble = Ensemble::start(1);
    let mut members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|name| Member::new(name, &ensemble.servers()))
        .collect();
    for member in &mut members {
        member.start();
    }
    // Cold start, empty stores: the first name, a, is elected; b and c mirror it.
    let master = the_master(&members, &[0, 1, 2]);
    assert_eq!(master, 0);
    members[1].broker().wait_for_role("slave-mirroring");
    members[2].broker().wait_for_role("slave-mirroring");
    let mut client = Client::connect(members[0].port);
    let bodies: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    client.send_pipelined("/queue/zk", &bodies);

    // kill -9 of the master: the first in-sync slave takes over, the other follows.
    let killed_at = std::time::Instant::now();
    members[0].broker.as_mut().unwrap().kill9();
    let new = the_master(&members, &[1, 2]);
    let took = killed_at.elapsed();
    let other = 3 - new;
    members[other]
        .broker()
        .log
        .wait_for_count("-> slave-mirroring", 2, common::PATIENCE);
    let mut consumer = Client::connect(members[new].port);
    assert_eq!(
        consumer.drain("/queue/zk", 20),
        bodies,
        "nothing receipted lost"
    );
    eprintln!("takeover after kill -9: {} ms", took.as_millis());

    // The old master, restarted with its own config, rejoins as a slave.
    members[0].start().wait_for_role("slave-mirroring");

    // SIGTERM of the master: the first in-sync slave claims at once.
    members[new].broker.as_mut().unwrap().terminate();
    let next = the_master(&members, &[other, 0]);
    let mut client = Client::connect(members[next].port);
    client.send_receipted("/queue/after", "handed-over", true);
    assert_eq!(client.drain("/queue/after", 1), ["handed-over"]);
}

/// The master cut from ZooKeeper (its slaves still reach it and ZooKeeper): it fences
/// its receipts as soon as its session is unreachable and stops serving once the session
/// ended; the first in-sync slave is elected and holds every receipted message; healed,
/// the old master, still the same process, rejoins as the new master's slave.
#[test]
fn a_master_cut_from_zookeeper_fences_and_rejoins_as_a_slave_in_place() {
    let ensemble = Ensemble::start(1);
    let (proxy, mut members) = members_through_proxy(&ensemble, 0);
    group_of_three(&mut members);
    let mut client = Client::connect(members[0].port);
    let bodies = numbered("m", 10);
    client.send_pipelined("/queue/zk", &bodies);

    proxy.cut();
    let log = &members[0].broker().log;
    let fenced = log.wait_for(
        "no receipt goes out until the session is back",
        common::PATIENCE,
    );
    assert!(fenced.is_some(), "{}", log.text());
    assert!(
        log.wait_for(REJOINING, common::PATIENCE).is_some(),
        "{}",
        log.text()
    );
    let new = the_master(&members, &[1, 2]);
    let mut consumer = Client::connect(members[new].port);
    assert_eq!(
        consumer.drain("/queue/zk", 10),
        bodies,
        "nothing receipted lost"
    );
    proxy.heal();
    members[0].broker().wait_for_role("slave-mirroring");
}

/// a, b and c on a one-server `ensemble`, member `cut` reaching it through a proxy the
/// test can cut.
fn members_through_proxy(ensemble: &Ensemble, cut: usize) -> (common::proxy::Proxy, Vec<Member>) {
    let servers = ensemble.servers();
    let zk_port: u16 = servers.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = common::proxy::Proxy::start(zk_port);
    let through = format!("127.0.0.1:{}", proxy.port);
    let members = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| Member::new(name, if i == cut { &through } else { &servers }))
        .collect();
    (proxy, members)
}

/// Starts a, then b and c, on their ensemble, and waits until a is master and b and c
/// mirror it. a is elected before b and c start: started together, whichever reaches
/// ZooKeeper first wins, and a slow start of a's process made b the master.
fn group_of_three(members: &mut [Member]) {
    members[0].start();
    assert_eq!(the_master(members, &[0]), 0);
    for member in &mut members[1..] {
        member.start();
    }
    assert_eq!(the_master(members, &[0, 1, 2]), 0);
    members[1].broker().wait_for_role("slave-mirroring");
    members[2].broker().wait_for_role("slave-mirroring");
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

/// The master cut from its slaves, all of them still reaching ZooKeeper: the master
/// takes them out of the in-sync set and serves on alone; the slaves, out of the set,
/// never claim; healed, they rejoin; and the master holds everything receipted.
#[test]
fn a_master_cut_from_its_slaves_serves_on_and_no_slave_claims() {
    let ensemble = Ensemble::start(1);
    let replication = free_port();
    let proxy = common::proxy::Proxy::start(replication);
    let advertised = format!("advertised_uri = \"tcp://127.0.0.1:{}\"", proxy.port);
    let mut members = vec![
        Member::with("a", &ensemble.servers(), replication, &advertised),
        Member::new("b", &ensemble.servers()),
        Member::new("c", &ensemble.servers()),
    ];
    group_of_three(&mut members);
    let mut client = Client::connect(members[0].port);
    let before = numbered("before", 10);
    client.send_pipelined("/queue/zk", &before);

    proxy.cut();
    members[0]
        .broker()
        .log
        .wait_for(
            "removed from the in-sync set in ZooKeeper",
            common::PATIENCE,
        )
        .expect("the lost slaves leave the in-sync set");
    let during = numbered("during", 5);
    client.send_pipelined("/queue/zk", &during);
    // Each slave waits out the master's node, finds it alive and dials it again.
    for slave in &members[1..] {
        slave
            .broker()
            .log
            .wait_for("waiting for its session to expire", common::PATIENCE)
            .expect("the slave waits for the master's node");
        slave
            .broker()
            .log
            .wait_for("-> slave-connecting", common::PATIENCE)
            .expect("then dials the master again");
    }
    for slave in &members[1..] {
        let log = slave.broker().log.text();
        assert!(
            !log.contains("-> master-"),
            "a slave out of the set claimed:\n{log}"
        );
    }
    proxy.heal();
    for slave in &members[1..] {
        assert!(slave
            .broker()
            .log
            .wait_for_count("-> slave-mirroring", 2, common::PATIENCE));
    }
    let mut consumer = Client::connect(members[0].port);
    let all: Vec<String> = before.into_iter().chain(during).collect();
    assert_eq!(consumer.drain("/queue/zk", 15), all);
}

/// SIGSTOP of the master past its session timeout: a slave is elected meanwhile; woken,
/// the old master finds its session ended, stops serving without a receipt more, and
/// rejoins in place as the new master's slave.
#[test]
fn a_master_stopped_past_its_session_rejoins_as_a_slave_when_woken() {
    let ensemble = Ensemble::start(1);
    let mut members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|name| Member::new(name, &ensemble.servers()))
        .collect();
    group_of_three(&mut members);
    let mut client = Client::connect(members[0].port);
    let bodies = numbered("m", 10);
    client.send_pipelined("/queue/zk", &bodies);
    members[0].broker().signal("STOP");
    let new = the_master(&members, &[1, 2]);
    members[0].broker().signal("CONT");
    let log = &members[0].broker().log;
    assert!(
        log.wait_for(REJOINING, common::PATIENCE).is_some(),
        "{}",
        log.text()
    );
    members[0].broker().wait_for_role("slave-mirroring");
    let mut consumer = Client::connect(members[new].port);
    assert_eq!(consumer.drain("/queue/zk", 10), bodies);
}

/// A three-server ensemble: stopping any one server changes nothing: the master serves
/// on and no one else is elected.
#[test]
fn a_three_server_ensemble_loses_any_one_server_and_nothing_changes() {
    let mut ensemble = Ensemble::start(3);
    // Reconnecting to another server, while the one stopped before rejoins its quorum,
    // takes the client up to about a second here: sessions of 3 s ride through it.
    let mut members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|name| Member::with_session(name, &ensemble.servers(), 3000))
        .collect();
    group_of_three(&mut members);
    let mut client = Client::connect(members[0].port);
    let mut sent = Vec::new();
    for server in 0..3 {
        ensemble.stop(server);
        let batch = numbered(&format!("s{server}-"), 5);
        client.send_pipelined("/queue/zk", &batch);
        sent.extend(batch);
        ensemble.restart(server);
    }
    for member in &members {
        let log = member.broker().log.text();
        assert!(!log.contains("stopping this master"), "{log}");
    }
    for slave in &members[1..] {
        assert!(!slave.broker().log.text().contains("-> master-"));
    }
    let mut consumer = Client::connect(members[0].port);
    assert_eq!(consumer.drain("/queue/zk", 15), sent);
}

/// A slave cut from ZooKeeper (it still reaches its master): its session ends and it
/// stops mirroring; the master takes it out of the in-sync set and serves on with the
/// other; healed, the slave rejoins in place.
#[test]
fn a_slave_cut_from_zookeeper_rejoins_and_the_master_serves_on() {
    let ensemble = Ensemble::start(1);
    let (proxy, mut members) = members_through_proxy(&ensemble, 1);
    group_of_three(&mut members);
    let mut client = Client::connect(members[0].port);
    let before = numbered("before", 5);
    client.send_pipelined("/queue/zk", &before);
    proxy.cut();
    let log = &members[1].broker().log;
    assert!(
        log.wait_for(REJOINING, common::PATIENCE).is_some(),
        "{}",
        log.text()
    );
    let after = numbered("after", 5);
    client.send_pipelined("/queue/zk", &after);
    assert!(!members[2].broker().log.text().contains("-> master-"));
    proxy.heal();
    assert!(log.wait_for_count("-> slave-mirroring", 2, common::PATIENCE));
    let mut consumer = Client::connect(members[0].port);
    let all: Vec<String> = before.into_iter().chain(after).collect();
    assert_eq!(consumer.drain("/queue/zk", 10), all);
}
