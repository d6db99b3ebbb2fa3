//! The failover client against a real pair: a producer keeps sending through kill -9 of
//! the master and loses no receipted message; nothing is delivered twice; a consumer
//! resumes on the slave. Plus the CLI, the way a user runs it.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command as Process, Stdio};

use futures::StreamExt;
use mirrormq::client::{AckMode, Client, ClientError};
use mirrormq::runtime;

use common::{ride, Pair, PATIENCE};

fn url(pair: &Pair) -> String {
    let slave_port = pair.slave.wait_for_port_later();
    format!(
        "failover:(tcp://127.0.0.1:{},tcp://127.0.0.1:{slave_port})?randomize=false&initialReconnectDelay=10&maxReconnectDelay=100",
        pair.master.port
    )
}

#[test]
fn a_producer_rides_through_a_master_kill_and_nothing_is_lost_or_duplicated() {
    let mut pair = Pair::start("", "");
    let url = url(&pair);
    let total = 3000;
    let (producer, third) = ride::produce_through(&url, "/queue/ride", total);
    third.recv_timeout(PATIENCE).expect("a third was receipted");
    pair.master.kill9();
    assert_eq!(producer.join().unwrap(), total);
    let bodies = ride::consume_all(&url, "/queue/ride");
    let unique: HashSet<&String> = bodies.iter().collect();
    if unique.len() != total {
        eprintln!(
            "SLAVE LOG:\n{}\nMASTER LOG:\n{}",
            pair.slave.log.text(),
            pair.master.log.text()
        );
    }
    assert_eq!(unique.len(), total, "every receipted message is there");
    assert_eq!(
        bodies.len(),
        total,
        "and none twice: resent duplicates were dropped"
    );
}

#[test]
fn a_consumer_resumes_on_the_slave_and_unacked_messages_come_again() {
    let mut pair = Pair::start("", "");
    let url = url(&pair);
    runtime::block_on(async {
        let client = Client::connect(&url, Some("admin"), Some("admin"))
            .await
            .unwrap();
        for i in 0..10 {
            client
                .send("/queue/resume", format!("m{i}"), &[("persistent", "true")])
                .await
                .unwrap();
        }
        let mut subscription = client
            .subscribe_with("/queue/resume", AckMode::ClientIndividual, Some(1))
            .await
            .unwrap();
        let first = runtime::timeout(PATIENCE, subscription.next())
            .await
            .unwrap()
            .unwrap();
        client.ack(&first).await.unwrap();
        let unacked = runtime::timeout(PATIENCE, subscription.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&unacked.body[..], b"m1");
        // An ack round trip through a barrier: the first ack is on both brokers.
        client.send("/queue/barrier", "x", &[]).await.unwrap();
        pair.master.kill9();
        let again = runtime::timeout(PATIENCE, subscription.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            &again.body[..],
            b"m1",
            "redelivered by the slave on the same subscription"
        );
        assert!(again.redelivered, "marked as possibly delivered before");
        // The pre-failover delivery's ack is stale and dropped, not an error.
        client.ack(&unacked).await.unwrap();
        client.ack(&again).await.unwrap();
        let mut rest = Vec::new();
        for _ in 2..10 {
            let message = runtime::timeout(PATIENCE, subscription.next())
                .await
                .unwrap()
                .unwrap();
            client.ack(&message).await.unwrap();
            rest.push(String::from_utf8_lossy(&message.body).into_owned());
        }
        assert_eq!(rest, (2..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
    });
}

#[test]
fn a_transaction_commits_and_an_unreachable_url_gives_up_after_its_attempts() {
    let pair = Pair::start("", "");
    let url = url(&pair);
    runtime::block_on(async {
        let client = Client::connect(&url, Some("admin"), Some("admin"))
            .await
            .unwrap();
        let tx = client.begin().await.unwrap();
        tx.send("/queue/t", "a", &[("persistent", "true")])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let error = Client::connect(
            "failover:(tcp://127.0.0.1:1)?maxReconnectAttempts=0&startupMaxReconnectAttempts=1",
            None,
            None,
        )
        .await
        .err()
        .expect("nothing listens on port 1");
        assert!(matches!(error, ClientError::GaveUp { .. }), "{error}");
    });
}

#[test]
fn the_cli_sends_and_receives_through_a_failover_url() {
    let mut pair = Pair::start("", "");
    let url = url(&pair);
    let mut send = Process::new(common::binary())
        .args([
            "send",
            "--url",
            &url,
            "--destination",
            "/queue/cli",
            "--persistent",
            "--window",
            "8",
        ])
        .env("MIRRORMQ_LOGIN", "admin")
        .env("MIRRORMQ_PASSCODE", "admin")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: String = (0..500).map(|i| format!("line {i}\n")).collect();
    send.stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let sent = send.wait_with_output().unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(String::from_utf8_lossy(&sent.stderr).contains("sent 500 messages"));
    pair.master.kill9();
    let received = Process::new(common::binary())
        .args([
            "receive",
            "--url",
            &url,
            "--destination",
            "/queue/cli",
            "--count",
            "500",
            "--login",
            "admin",
            "--passcode",
            "admin",
        ])
        .output()
        .unwrap();
    assert!(
        received.status.success(),
        "{}",
        String::from_utf8_lossy(&received.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&received.stdout), lines);
    let bad = Process::new(common::binary())
        .args([
            "send",
            "--url",
            "failover:(tcp://a:1)?randomise=false",
            "--destination",
            "/queue/x",
            "b",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown option 'randomise'"));
}
