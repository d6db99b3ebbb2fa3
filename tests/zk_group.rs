//! Three brokers with `[election]` against a real ZooKeeper: one config kind for all,
//! exactly one elected at a cold start and the others its slaves; kill -9 of the master:
//! the first in-sync slave takes over, the other follows it, nothing receipted is lost;
//! the old master, restarted with its config, rejoins as a slave; SIGTERM of the master
//! hands over at once.

mod common;

use std::path::PathBuf;

use common::zookeeper::Ensemble;
use common::{free_port, Broker, Client, FAST_LINK};

/// One broker of the group: its config (fixed client port) and its process.
struct Member {
    _dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    broker: Option<Broker>,
}

impl Member {
    fn new(name: &str, zookeeper: &str) -> Member {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let text = format!(
            "[broker]\nname = \"{name}\"\ndata_dir = \"data\"\nstatus_interval_ms = 0\nlock_retry_ms = 50\n\
             [stomp]\nbind = \"tcp://127.0.0.1:{port}\"\n\
             [replication]\nbind = \"tcp://127.0.0.1:{}\"\nuser = \"admin\"\npassword = \"admin\"\n{FAST_LINK}\n\
             [election]\nzookeeper = \"{zookeeper}\"\npath = \"/mirrormq/test\"\nsession_timeout_ms = 1000\n\
             [[users]]\nname = \"admin\"\npassword = \"admin\"\n",
            free_port()
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
                log.wait_for("stomp: listening", common::PATIENCE)
                    .expect("the elected master opens its client port");
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
/// its receipts as soon as its session is unreachable and stops before the session can
/// expire; then the first in-sync slave is elected, and holds every receipted message.
#[test]
fn a_master_cut_from_zookeeper_stops_before_a_slave_is_elected() {
    let ensemble = Ensemble::start(1);
    let zk_port: u16 = ensemble
        .servers()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = common::proxy::Proxy::start(zk_port);
    let mut members = vec![
        Member::new("a", &format!("127.0.0.1:{}", proxy.port)),
        Member::new("b", &ensemble.servers()),
        Member::new("c", &ensemble.servers()),
    ];
    for member in &mut members {
        member.start();
    }
    assert_eq!(the_master(&members, &[0, 1, 2]), 0);
    members[1].broker().wait_for_role("slave-mirroring");
    members[2].broker().wait_for_role("slave-mirroring");
    let mut client = Client::connect(members[0].port);
    let bodies: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    client.send_pipelined("/queue/zk", &bodies);

    proxy.cut();
    let fenced = members[0].broker().log.wait_for(
        "no receipt goes out until the session is back",
        common::PATIENCE,
    );
    assert!(fenced.is_some(), "{}", members[0].broker().log.text());
    let status = members[0].broker.as_mut().unwrap().wait();
    assert_eq!(status.code(), Some(5), "the fenced master stops");
    let new = the_master(&members, &[1, 2]);
    let mut consumer = Client::connect(members[new].port);
    assert_eq!(
        consumer.drain("/queue/zk", 10),
        bodies,
        "nothing receipted lost"
    );
}
