//! The ZooKeeper seam (`src/zk.rs`) against real ZooKeeper servers: what the master
//! election will stand on. Ephemeral nodes go with their session and watches say so; the
//! claim of an epoch and the master node is atomic and conditional; a three-server
//! ensemble loses a server and the session does not notice.

mod common;

use std::time::Duration;

use common::zookeeper::Ensemble;
use common::PATIENCE;
use mirrormq::runtime;
use mirrormq::zk::{Coordinator, Session};

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

#[test]
fn a_claim_takes_the_epoch_and_the_master_node_together_or_neither() {
    let ensemble = Ensemble::start(1);
    let (a, b) = (connect(&ensemble), connect(&ensemble));
    runtime::block_on(async {
        a.ensure("/g").await.unwrap();
        assert!(a
            .claim("/g/epoch", None, b"1", "/g/master", b"a")
            .await
            .unwrap());
        // The epoch exists: a claim that expects to create it fails, and makes nothing.
        assert!(!b
            .claim("/g/epoch", None, b"1", "/g/master", b"b")
            .await
            .unwrap());
        let epoch = a.read("/g/epoch").await.unwrap().unwrap();
        assert_eq!((epoch.data.as_slice(), epoch.version), (&b"1"[..], 0));
        let master = a.read("/g/master").await.unwrap().unwrap();
        assert_eq!(master.data, b"a");
        // While the master node exists, a claim at the right epoch version fails whole.
        assert!(!b
            .claim("/g/epoch", Some(0), b"2", "/g/master", b"b")
            .await
            .unwrap());
        assert_eq!(a.read("/g/epoch").await.unwrap().unwrap().data, b"1");
        // The master steps down (a planned handover): the next claim takes epoch 2.
        assert!(a.delete("/g/master", master.version).await.unwrap());
        assert!(b
            .claim("/g/epoch", Some(0), b"2", "/g/master", b"b")
            .await
            .unwrap());
        // A claim at a stale epoch version fails, and the master node stays b's.
        assert!(!a
            .claim("/g/epoch", Some(0), b"2", "/g/master", b"a")
            .await
            .unwrap());
        assert_eq!(a.read("/g/master").await.unwrap().unwrap().data, b"b");
        assert_eq!(
            a.set("/g/epoch", b"3", 0).await.unwrap(),
            None,
            "stale version"
        );
        assert_eq!(a.set("/g/epoch", b"3", 1).await.unwrap(), Some(2));
    });
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
