//! The election's I/O (`src/election/`) against a real ZooKeeper ensemble, with three
//! electors in one process standing in for three brokers: a cold start elects exactly
//! one, the most advanced store, and the others follow it; when the master's session
//! ends, the first live broker of the in-sync set takes over in a new epoch and the
//! other follows it; a broker outside the in-sync set never claims; a master that
//! resigns is replaced at once.

mod common;

use std::time::Duration;

use common::zookeeper::Ensemble;
use common::PATIENCE;
use mirrormq::election::{Elector, Outcome};
use mirrormq::journal::{Epoch, Seq};
use mirrormq::repl::election::Candidate;
use mirrormq::runtime;

/// Sessions time out after 600 ms: the takeover below waits for that.
const SESSION: Duration = Duration::from_millis(600);

fn candidate(name: &str, seq: u64) -> Candidate {
    Candidate {
        name: name.into(),
        replication: format!("tcp://127.0.0.1:1{name}"),
        epoch: Epoch::FIRST,
        seq: Seq(seq),
    }
}

fn join(ensemble: &Ensemble, name: &str, seq: u64) -> Elector {
    runtime::block_on(Elector::join(
        &ensemble.servers(),
        "/mirrormq/test",
        SESSION,
        candidate(name, seq),
    ))
    .unwrap()
}

/// Each elector's outcome, all electing at once, having lost the master of epoch `lost`.
fn elect_all(electors: &[&Elector], lost: Option<Epoch>) -> Vec<Outcome> {
    runtime::block_on(async {
        let elections = electors.iter().map(|e| async move {
            runtime::timeout(PATIENCE, e.elect(lost))
                .await
                .expect("an election ends")
                .unwrap()
        });
        futures::future::join_all(elections).await
    })
}

#[test]
fn one_is_elected_the_others_follow_and_the_first_in_sync_takes_over() {
    let ensemble = Ensemble::start(3);
    let a = join(&ensemble, "a", 10);
    let b = join(&ensemble, "b", 12);
    let c = join(&ensemble, "c", 11);
    // Cold start: b holds the most; it is master in epoch 2, a and c follow it.
    let outcomes = elect_all(&[&a, &b, &c], None);
    let b_follows = Outcome::Follow {
        replication: "tcp://127.0.0.1:1b".into(),
        epoch: Epoch(2),
    };
    assert_eq!(
        outcomes,
        [
            b_follows.clone(),
            Outcome::Elected { epoch: Epoch(2) },
            b_follows
        ]
    );
    // c comes in sync first, then a: the master writes so.
    let isr = ["b", "c", "a"].map(|n| format!("tcp://127.0.0.1:1{n}"));
    runtime::block_on(b.write_isr(&isr)).unwrap();
    // The master's session ends (kill -9): once it expires, c claims epoch 3, a follows.
    drop(b);
    let outcomes = elect_all(&[&a, &c], Some(Epoch(2)));
    let c_follows = Outcome::Follow {
        replication: "tcp://127.0.0.1:1c".into(),
        epoch: Epoch(3),
    };
    assert_eq!(outcomes, [c_follows, Outcome::Elected { epoch: Epoch(3) }]);
    // A broker outside the in-sync set (c's claim reset it to c alone) never claims: with
    // c resigning and c's node gone, a waits rather than take over.
    runtime::block_on(c.resign()).unwrap();
    let waited = runtime::block_on(runtime::timeout(
        Duration::from_millis(1500),
        a.elect(Some(Epoch(3))),
    ));
    assert!(waited.is_none(), "a is not in sync with c: {waited:?}");
    // c, still running and in the set, claims again at once, in epoch 4.
    assert_eq!(
        runtime::block_on(c.elect(None)).unwrap(),
        Outcome::Elected { epoch: Epoch(4) }
    );
}

#[test]
fn a_second_broker_of_the_same_name_is_refused() {
    let ensemble = Ensemble::start(1);
    let _first = join(&ensemble, "a", 0);
    let second = runtime::block_on(Elector::join(
        &ensemble.servers(),
        "/mirrormq/test",
        SESSION,
        candidate("a", 0),
    ));
    let why = second.err().expect("refused");
    assert!(
        why.contains("a broker named a is registered already"),
        "{why}"
    );
}

/// A slave that lost its link to a master that is alive (its session holds the node)
/// waits about twice the session timeout for the node to go, then follows it again.
#[test]
fn a_live_master_whose_link_broke_is_followed_again() {
    let ensemble = Ensemble::start(1);
    let a = join(&ensemble, "a", 0);
    let b = join(&ensemble, "b", 5);
    assert_eq!(
        elect_all(&[&b], None),
        [Outcome::Elected { epoch: Epoch(2) }]
    );
    let isr = ["b", "a"].map(|n| format!("tcp://127.0.0.1:1{n}"));
    runtime::block_on(b.write_isr(&isr)).unwrap();
    let started = std::time::Instant::now();
    let again = elect_all(&[&a], Some(Epoch(2)));
    assert_eq!(
        again,
        [Outcome::Follow {
            replication: "tcp://127.0.0.1:1b".into(),
            epoch: Epoch(2)
        }]
    );
    assert!(
        started.elapsed() >= a.session_timeout() * 2,
        "it waited for a node that would have gone had b died"
    );
}
