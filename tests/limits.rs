//! Every limit exists, is configurable, and holds: connections, memory, slow consumers,
//! many concurrent clients; a bad config stops the start naming file, key and line.

mod common;

use std::time::Duration;

use common::client::{body, Got};
use common::{Client, Site};
use mirrormq::stomp::Command;

#[test]
fn connections_past_the_limit_are_refused_and_the_rest_served() {
    let site = Site::new();
    let broker = site.start("", "max_connections = 3", "");
    let held: Vec<Client> = (0..3).map(|_| broker.client()).collect();
    let mut refused = Client::open(broker.port);
    refused.expect_error("too many connections");
    drop(held);
    // Slots free up as the held connections close.
    let mut freed = None;
    for _ in 0..200 {
        let mut client = Client::open(broker.port);
        client.send_frame(Command::Connect, &[("accept-version", "1.2")], b"");
        if let Got::Frame(frame) = client.read(common::PATIENCE) {
            if frame.command == Command::Connected {
                freed = Some(client);
                break;
            }
        }
    }
    freed
        .expect("a connection is accepted once others close")
        .disconnect();
}

/// Non-persistent messages live in memory only: past `max_memory` their producers wait.
/// (Persistent ones are paged out to the journal instead: tests/backlog.rs.)
#[test]
fn producers_of_memory_only_messages_are_slowed_at_the_memory_limit_and_resume_when_consumers_drain(
) {
    let site = Site::new();
    let broker = site.start("max_memory = \"1MiB\"", "", "");
    let port = broker.port;
    let total = 2000;
    let producer = std::thread::spawn(move || {
        let mut client = Client::connect(port);
        let body = "p".repeat(1024);
        for i in 0..total {
            let receipt = i.to_string();
            client.send_frame(
                Command::Send,
                &[
                    ("destination", "/queue/mem"),
                    ("persistent", "false"),
                    ("receipt", &receipt),
                ],
                body.as_bytes(),
            );
        }
        client
    });
    let mut client = producer.join().unwrap();
    let mut receipts = 0;
    while let Got::Frame(frame) = client.read(Duration::from_secs(1)) {
        assert_eq!(frame.command, Command::Receipt);
        receipts += 1;
    }
    // 1 MiB holds about 900 such messages (1 KiB body plus bookkeeping).
    assert!(
        receipts <= 1000,
        "the producer is held back at the limit ({receipts} receipts)"
    );
    assert!(
        receipts > 500,
        "up to the limit, sends go through ({receipts} receipts)"
    );

    let mut consumer = broker.client();
    consumer.subscribe("/queue/mem", "s", "auto", 100);
    assert_eq!(consumer.receive(total).len(), total);
    while receipts < total {
        client.expect(Command::Receipt);
        receipts += 1;
    }
}

#[test]
fn a_subscriber_that_stops_reading_is_cut_off_and_others_carry_on() {
    let site = Site::new();
    let broker = site.start("", "max_pending_frames = 64", "");
    let mut stalled = broker.client();
    stalled.subscribe("/topic/flood", "s", "auto", 1000);
    let mut reader = broker.client();
    reader.subscribe("/topic/flood", "s", "auto", 1000);
    let mut producer = broker.client();
    let body = "s".repeat(64 * 1024);
    for i in 0..300 {
        producer.send_frame(
            Command::Send,
            &[("destination", "/topic/flood"), ("receipt", "r")],
            body.as_bytes(),
        );
        producer.expect(Command::Receipt);
        assert_eq!(
            reader.expect(Command::Message).body.len(),
            body.len(),
            "message {i}"
        );
    }
    broker
        .log
        .wait_for("slow consumer", common::PATIENCE)
        .expect("the broker names the slow consumer");
    assert!(
        !broker.log.text().contains("session 2:"),
        "the reading subscriber is not cut off"
    );
    // The stalled client finds its connection closed once it reads what was written.
    loop {
        match stalled.read(common::PATIENCE) {
            Got::Frame(_) => continue,
            Got::Closed => break,
            Got::Silent => panic!("the slow consumer's connection stays open"),
        }
    }
}

#[test]
fn two_hundred_concurrent_clients_are_served() {
    let site = Site::new();
    let broker = site.start_default();
    let port = broker.port;
    let producers: Vec<_> = (0..200)
        .map(|p| {
            std::thread::spawn(move || {
                let mut client = Client::connect(port);
                for i in 0..5 {
                    client.send_receipted("/queue/crowd", &format!("{p}-{i}"), true);
                }
                client
            })
        })
        .collect();
    let clients: Vec<Client> = producers.into_iter().map(|t| t.join().unwrap()).collect();
    let mut consumer = broker.client();
    consumer.subscribe("/queue/crowd", "s", "auto", 1000);
    let mut bodies: Vec<String> = consumer.receive(1000).iter().map(body).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 1000);
    drop(clients);
}

fn start_error(config: &str) -> String {
    let site = Site::new();
    let path = site.dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let output = std::process::Command::new(common::binary())
        .args(["broker", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    stderr
}

#[test]
fn a_bad_config_stops_the_start_naming_file_key_and_line() {
    let head = "[broker]\nname = \"x\"\ndata_dir = \"d\"\n";
    let unknown = start_error(&format!("{head}[stomp]\nbindd = \"tcp://127.0.0.1:1\"\n"));
    assert!(
        unknown.contains("bindd") && unknown.contains("line 5"),
        "{unknown}"
    );
    let bad_value = start_error(&format!("{head}[stomp]\nmax_connections = 0\n"));
    assert!(
        bad_value.contains("stomp.max_connections") && bad_value.contains("line 5"),
        "{bad_value}"
    );
    let missing = std::process::Command::new(common::binary())
        .args(["broker", "--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/x.toml"));
}
