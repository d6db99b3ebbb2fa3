//! The ZooKeeper seam (`src/zk.rs`) against real ZooKeeper servers: what the master
//! election will stand on. Ephemeral nodes go with their session and watches say so; the
//! claim of an epoch and the master node is atomic and conditional; a three-server
//! ensemble loses a server and the session does not notice.

mod common;

use std::time::Duration;

use common::zookeeper::Ensemble;
use common::PATIENCE;
use mirrormq::runtime;
use mirrormq::zk::{Claim, Coordinator, Session};

const TIMEOUT: Duration = Duration::from_millis(2000);

fn connect(ensemble: &Ensemble) -> Coordinator {
    runtime::block_on(Coordinator::connect(&ensemble.servers(), TIMEOUT)).unwrap()
}

#[test]
fn ephemeral_nodes_go_with_their_session_and_watches_say_so() {
    let ensemble = Ensemble::start(1);
    runtime::block_on(async {
        let first = Coordinator::connect(&ensemble.servers(), TIMEOUT)
            .await
            .unwrap();
        assert_eq!(first.session(), Session::Connected);
        first.ensure("/mirrormq/g").await.unwrap();
        first.ensure("/mirrormq/g").await.unwrap();
        assert!(first
            .create_ephemeral("/mirrormq/g/master", b"a")
            .await
            .unwrap());
        let second = Coordinator::connect(&ensemble.servers(), TIMEOUT)
            .await
            .unwrap();
        assert!(
            !second
                .create_ephemeral("/mirrormq/g/master", b"b")
                .await
                .unwrap(),
            "only one holds it"
        );
        let (node, change) = second.read_and_watch("/mirrormq/g/master").await.unwrap();
        assert_eq!(node.unwrap().data, b"a");
        drop(first);
        runtime::timeout(PATIENCE, change.changed())
            .await
            .expect("the watch fires when the holder's session ends");
        assert_eq!(second.read("/mirrormq/g/master").await.unwrap(), None);
        assert!(second
            .create_ephemeral("/mirrormq/g/master", b"b")
            .await
            .unwrap());
    });
}

/// A claim as the election makes it: epoch `epoch` at `epoch_version`, the in-sync set
/// reset to `name` at `isr_version`, and the master node naming `name`.
fn claim(
    coordinator: &Coordinator,
    name: &str,
    epoch: &str,
    epoch_version: Option<i32>,
    isr_version: Option<i32>,
) -> bool {
    let master = format!("name={name}\n");
    let isr = format!("{name}\n");
    runtime::block_on(coordinator.claim(&Claim {
        epoch_path: "/g/epoch",
        epoch_version,
        epoch: epoch.as_bytes(),
        isr_path: "/g/isr",
        isr_version,
        isr: isr.as_bytes(),
        master_path: "/g/master",
        master: master.as_bytes(),
    }))
    .unwrap()
}

#[test]
fn a_claim_takes_the_epoch_the_in_sync_set_and_the_master_node_together_or_not_at_all() {
    let ensemble = Ensemble::start(1);
    let (a, b) = (connect(&ensemble), connect(&ensemble));
    let read = |path: &str| runtime::block_on(a.read(path)).unwrap();
    runtime::block_on(a.ensure("/g")).unwrap();
    assert!(claim(&a, "a", "1", None, None));
    // The nodes exist: a claim that expects to create them fails, and writes nothing.
    assert!(!claim(&b, "b", "1", None, None));
    let epoch = read("/g/epoch").unwrap();
    assert_eq!((epoch.data.as_slice(), epoch.version), (&b"1"[..], 0));
    assert_eq!(read("/g/isr").unwrap().data, b"a\n");
    let master = read("/g/master").unwrap();
    assert_eq!(master.data, b"name=a\n");
    // While the master node exists, a claim at the right versions fails whole.
    assert!(!claim(&b, "b", "2", Some(0), Some(0)));
    assert_eq!(read("/g/epoch").unwrap().data, b"1");
    assert_eq!(read("/g/isr").unwrap().data, b"a\n");
    // The master steps down (a planned handover): the next claim takes epoch 2.
    assert!(runtime::block_on(a.delete("/g/master", master.version)).unwrap());
    assert!(claim(&b, "b", "2", Some(0), Some(0)));
    assert_eq!(read("/g/isr").unwrap().data, b"b\n");
    // A claim at stale versions fails, and the master node stays b's.
    assert!(!claim(&a, "a", "2", Some(0), Some(0)));
    assert_eq!(read("/g/master").unwrap().data, b"name=b\n");
    assert_eq!(
        runtime::block_on(a.set("/g/isr", b"b\na\n", 0)).unwrap(),
        None,
        "stale"
    );
    assert_eq!(
        runtime::block_on(a.set("/g/isr", b"b\na\n", 1)).unwrap(),
        Some(2)
    );
}

#[test]
fn a_three_server_ensemble_loses_a_server_and_the_session_does_not_notice() {
    let mut ensemble = Ensemble::start(3);
    let holder = connect(&ensemble);
    let watcher = connect(&ensemble);
    runtime::block_on(async {
        holder.ensure("/g").await.unwrap();
        assert!(holder.create_ephemeral("/g/master", b"h").await.unwrap());
    });
    for server in 0..3 {
        ensemble.stop(server);
        // A client of the stopped server loses its connection (ConnectionLoss) until it
        // reconnects to another: within the session timeout, so the session lives on.
        let node = retried(|| watcher.read("/g/master"));
        assert_eq!(node.expect("still held: the session lives").data, b"h");
        retried(|| holder.ensure("/g/after"));
        ensemble.restart(server);
    }
    assert_eq!(holder.session(), Session::Connected);
}

/// `call` until it succeeds (a client reconnecting fails requests meanwhile), or panics
/// with the last error after PATIENCE.
fn retried<T, F: std::future::Future<Output = Result<T, String>>>(call: impl Fn() -> F) -> T {
    let started = std::time::Instant::now();
    loop {
        match runtime::block_on(call()) {
            Ok(value) => return value,
            Err(why) if started.elapsed() < PATIENCE => {
                assert!(!why.contains("expired"), "{why}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(why) => panic!("{why}"),
        }
    }
}

/// The signal a master's fencing will stand on: the session says Disconnected as soon as
/// its server is gone, and Expired once the ensemble, back after more than the session
/// timeout, has ended it (its ephemeral nodes gone).
#[test]
fn a_session_is_disconnected_at_once_and_expired_after_its_timeout() {
    let mut ensemble = Ensemble::start(1);
    let holder = runtime::block_on(Coordinator::connect(
        &ensemble.servers(),
        Duration::from_millis(600),
    ))
    .unwrap();
    let mut states = holder.states();
    runtime::block_on(async {
        holder.ensure("/g").await.unwrap();
        assert!(holder.create_ephemeral("/g/master", b"h").await.unwrap());
    });
    let lost_at = std::time::Instant::now();
    ensemble.stop(0);
    let state = runtime::block_on(runtime::timeout(PATIENCE, states.next()));
    assert_eq!(state, Some(Session::Disconnected));
    assert!(
        lost_at.elapsed() < holder.session_timeout(),
        "told within the timeout"
    );
    std::thread::sleep(holder.session_timeout() * 2);
    ensemble.restart(0);
    let expired = runtime::block_on(runtime::timeout(PATIENCE, async {
        loop {
            if states.next().await == Session::Expired {
                return;
            }
        }
    }));
    assert!(
        expired.is_some(),
        "the session ended: {:?}",
        holder.session()
    );
    // The client may call it expired before the server has ended it (the server restarted
    // its clock on the session): the node goes once the server's timeout passes too, so
    // no one else can take it while the holder still thinks it holds it.
    let other = connect(&ensemble);
    let started = std::time::Instant::now();
    while retried(|| other.read("/g/master")).is_some() {
        assert!(
            started.elapsed() < PATIENCE,
            "the ephemeral node outlived its session"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
