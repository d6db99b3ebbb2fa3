//! Message priority (issue 15, item 6): `priority` 0 to 9 (4 without one), higher first
//! within a queue and first in, first out within one priority, across a kill -9 and
//! restart of a standalone broker and across a kill -9 of the master of a pair.

mod common;

use common::client::body;
use common::{Broker, Client, Pair, Site};
use mirrormq::stomp::Command;

/// Sends persistent messages `(body, priority)`, waiting for each receipt.
fn send_with_priorities(client: &mut Client, messages: &[(&str, Option<&str>)]) {
    for (text, priority) in messages {
        let receipt = format!("r-{text}");
        let mut headers = vec![
            ("destination", "/queue/jobs"),
            ("persistent", "true"),
            ("receipt", receipt.as_str()),
        ];
        if let Some(priority) = priority {
            headers.push(("priority", priority));
        }
        client.send_frame(Command::Send, &headers, text.as_bytes());
        client.expect(Command::Receipt);
    }
}

const SENT: [(&str, Option<&str>); 7] = [
    ("normal-1", None),
    ("urgent-1", Some("9")),
    ("low-1", Some("0")),
    ("normal-2", Some("4")),
    ("urgent-2", Some("9")),
    ("high-1", Some("7")),
    ("low-2", Some("0")),
];

const EXPECTED: [&str; 7] = [
    "urgent-1", "urgent-2", "high-1", "normal-1", "normal-2", "low-1", "low-2",
];

/// Consumes everything on /queue/jobs one at a time, acknowledging each.
fn consume_all(broker: &Broker) -> Vec<String> {
    let mut consumer = broker.client();
    consumer.subscribe("/queue/jobs", "1", "client-individual", 1);
    consumer.take(EXPECTED.len())
}

#[test]
fn higher_priority_first_and_in_order_within_one_across_a_restart() {
    let site = Site::new();
    let mut broker = site.start_default();
    send_with_priorities(&mut broker.client(), &SENT);
    broker.kill9();
    let broker = site.start_default();
    assert_eq!(consume_all(&broker), EXPECTED);
}

#[test]
fn priority_order_survives_a_failover() {
    let mut pair = Pair::start("", "");
    send_with_priorities(&mut pair.master.client(), &SENT);
    pair.master.kill9();
    pair.slave.wait_until_listening();
    assert_eq!(consume_all(&pair.slave), EXPECTED);
}

#[test]
fn a_message_sent_back_keeps_its_place_among_its_priority() {
    let site = Site::new();
    let broker = site.start_default();
    send_with_priorities(&mut broker.client(), &SENT);
    let mut consumer = broker.client();
    consumer.subscribe("/queue/jobs", "1", "client-individual", 2);
    let first = consumer.expect(Command::Message);
    let second = consumer.expect(Command::Message);
    assert_eq!([body(&first), body(&second)], ["urgent-1", "urgent-2"]);
    // The first goes back: it comes again before everything of lower priority.
    consumer.nack(&first, None);
    consumer.ack(&second, None);
    let again = consumer.expect(Command::Message);
    assert_eq!(body(&again), "urgent-1");
    assert_eq!(again.header("redelivered"), Some("true"));
}
