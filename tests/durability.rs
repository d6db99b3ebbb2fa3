//! Durability: what a RECEIPT promised survives kill -9; what it did not, does not.

mod common;

use std::time::Duration;

use common::{Broker, Site, PATIENCE};
use mirrormq::stomp::Command;

#[test]
fn receipted_messages_survive_kill_9_in_order() {
    let site = Site::new();
    let mut broker = site.start_default();
    let mut producer = broker.client();
    producer.send_many("/queue/safe", 2000);
    broker.kill9();

    let broker = site.start_default();
    assert!(
        broker.log.text().contains("2000 messages in 1 queues"),
        "{}",
        broker.log.text()
    );
    let mut consumer = broker.client();
    let bodies = consumer.drain("/queue/safe", 2000);
    let expected: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected);
    assert!(
        matches!(
            consumer.read(Duration::from_millis(200)),
            common::client::Got::Silent
        ),
        "no extra message"
    );
}

#[test]
fn acknowledged_messages_stay_consumed_after_kill_9() {
    let site = Site::new();
    let mut broker = site.start_default();
    let mut client = broker.client();
    client.send_many("/queue/work", 10);
    client.subscribe("/queue/work", "s", "client-individual", 5);
    let first_five = client.receive(5);
    for message in &first_five {
        client.ack(message, None);
    }
    client.send_frame(
        Command::Send,
        &[("destination", "/queue/other"), ("receipt", "barrier")],
        b"x",
    );
    client.await_receipt("barrier");
    broker.kill9();

    let broker = site.start_default();
    let mut client = broker.client();
    let left = client.drain("/queue/work", 5);
    assert_eq!(left, ["m5", "m6", "m7", "m8", "m9"]);
}

#[test]
fn committed_transactions_survive_kill_9_and_open_ones_vanish() {
    let site = Site::new();
    let mut broker = site.start_default();
    let mut client = broker.client();
    client.commit_three_and_leave_one_open("/queue/tx");
    broker.kill9();

    let broker = site.start_default();
    let mut client = broker.client();
    assert_eq!(client.drain("/queue/tx", 3), ["c0", "c1", "c2"]);
    assert!(matches!(
        client.read(Duration::from_millis(200)),
        common::client::Got::Silent
    ));
}

#[test]
fn non_persistent_messages_do_not_survive_a_restart() {
    let site = Site::new();
    let mut broker = site.start_default();
    let mut client = broker.client();
    client.send_receipted("/queue/mixed", "transient", false);
    client.send_receipted("/queue/mixed", "durable", true);
    broker.kill9();
    let broker = site.start_default();
    let mut client = broker.client();
    assert_eq!(client.drain("/queue/mixed", 1), ["durable"]);
}

#[test]
fn sigterm_finishes_writes_and_exits_zero() {
    let site = Site::new();
    let mut broker = site.start_default();
    let mut client = broker.client();
    client.send_many("/queue/term", 100);
    let status = broker.terminate();
    assert_eq!(status.code(), Some(0), "{}", broker.log.text());
    assert!(broker.log.text().contains("shutting down"));
    let broker = site.start_default();
    assert!(
        broker.log.text().contains("100 messages in 1 queues"),
        "{}",
        broker.log.text()
    );
}

#[test]
fn a_second_broker_on_the_same_directory_waits_for_the_lock_then_serves() {
    let site = Site::new();
    let mut first = site.start_default();
    first.client().send_receipted("/queue/shared", "kept", true);
    let config = site.write_config("second.toml", "", "", "");
    let mut second = Broker::spawn(&config);
    second
        .log
        .wait_for("is locked by another broker", PATIENCE)
        .expect("second broker says it waits");
    assert!(
        second
            .log
            .wait_for("listening", Duration::from_millis(300))
            .is_none(),
        "no listener while waiting"
    );
    first.kill9();
    second.wait_until_listening();
    let mut client = second.client();
    assert_eq!(client.drain("/queue/shared", 1), ["kept"]);
}

#[test]
fn segments_are_deleted_once_their_messages_are_acknowledged() {
    let site = Site::new();
    let broker = site.start("segment_size = \"64KiB\"", "max_frame_size = \"16KiB\"", "");
    let mut client = broker.client();
    let body = "x".repeat(1024);
    for i in 0..300 {
        client.send_persistent("/queue/big", &format!("r{i}"), body.as_bytes());
    }
    for _ in 0..300 {
        client.expect(Command::Receipt);
    }
    let segments = || {
        std::fs::read_dir(site.data_dir().join("journal"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count()
    };
    assert!(
        segments() >= 4,
        "300 KiB of messages fill several 64 KiB segments"
    );
    client.subscribe("/queue/big", "s", "client-individual", 1000);
    let messages = client.receive(300);
    for message in &messages {
        client.ack(message, None);
    }
    // The receipt of the last ACK means its record, and the deletions before it, are done.
    client.send_frame(Command::Disconnect, &[("receipt", "bye")], b"");
    client.expect(Command::Receipt);
    assert!(
        segments() <= 2,
        "only the current segment (and at most one being finished) remain, found {}",
        segments()
    );
}

#[test]
fn a_corrupt_record_stops_the_start_naming_file_and_offset() {
    let site = Site::new();
    let mut broker = site.start_default();
    let mut client = broker.client();
    client.send_many("/queue/c", 3);
    assert_eq!(broker.terminate().code(), Some(0));
    let segment = std::fs::read_dir(site.data_dir().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[16 + 30] ^= 0xff; // inside the first record's payload, with records after it
    std::fs::write(&segment, bytes).unwrap();

    let config = site.write_config("broker.toml", "", "", "");
    let mut broken = Broker::spawn(&config);
    let status = broken.wait();
    assert_eq!(status.code(), Some(2));
    let log = broken.log.text();
    assert!(
        log.contains(&segment.display().to_string()) && log.contains("offset 16"),
        "{log}"
    );
}
