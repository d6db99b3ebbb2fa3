//! ActiveMQ's wildcards on SUBSCRIBE (issue 15, item 3): `.` separates name elements,
//! `*` matches one and `>` the rest; a topic pattern gets every matching topic, a queue
//! pattern consumes from every matching queue (one made later too), acknowledgements
//! and redeliveries find each message's own queue, and a SEND to a pattern is an ERROR
//! while other clients are served.

mod common;

use common::client::body;
use common::{Client, Site};
use mirrormq::stomp::Command;

fn send(client: &mut Client, destination: &str, text: &str) {
    let receipt = format!("r-{text}");
    client.send_frame(
        Command::Send,
        &[
            ("destination", destination),
            ("persistent", "true"),
            ("receipt", &receipt),
        ],
        text.as_bytes(),
    );
    client.expect(Command::Receipt);
}

#[test]
fn topic_patterns_get_every_matching_topic() {
    let site = Site::new();
    let broker = site.start_default();
    let mut stocks = broker.client();
    stocks.subscribe("/topic/PRICE.STOCK.*", "1", "auto", 100);
    let mut everything = broker.client();
    everything.subscribe("/topic/PRICE.>", "1", "auto", 100);
    let mut producer = broker.client();
    for (topic, text) in [
        ("/topic/PRICE.STOCK.NYSE", "nyse"),
        ("/topic/PRICE.BOND.US.10Y", "bond"),
        ("/topic/PRICE.STOCK.LSE", "lse"),
        ("/topic/NEWS.STOCK.LSE", "news"),
    ] {
        send(&mut producer, topic, text);
    }
    let take = |client: &mut Client, n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|_| {
                let message = client.expect(Command::Message);
                let destination = message.header("destination").unwrap().to_string();
                (destination, body(&message))
            })
            .collect()
    };
    assert_eq!(
        take(&mut stocks, 2),
        [
            ("/topic/PRICE.STOCK.NYSE".to_string(), "nyse".to_string()),
            ("/topic/PRICE.STOCK.LSE".to_string(), "lse".to_string())
        ]
    );
    let all: Vec<String> = take(&mut everything, 3)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(all, ["nyse", "bond", "lse"]);
}

#[test]
fn a_queue_pattern_consumes_every_matching_queue_and_gives_back_what_it_held() {
    let site = Site::new();
    let broker = site.start_default();
    let mut producer = broker.client();
    send(&mut producer, "/queue/orders.eu", "eu-1");
    send(&mut producer, "/queue/orders.us", "us-1");
    send(&mut producer, "/queue/invoices.eu", "invoice");
    let mut consumer = broker.client();
    consumer.subscribe("/queue/orders.*", "all", "client-individual", 10);
    let first = consumer.receive(2);
    let mut got: Vec<String> = first.iter().map(body).collect();
    got.sort();
    assert_eq!(got, ["eu-1", "us-1"]);
    // A queue made after the subscription is consumed too.
    send(&mut producer, "/queue/orders.asia", "asia-1");
    let asia = consumer.expect(Command::Message);
    assert_eq!(body(&asia), "asia-1");
    assert_eq!(asia.header("destination"), Some("/queue/orders.asia"));
    consumer.ack(&asia, Some("acked"));
    // Leaving without acking the first two: they go back to their own queues.
    consumer.disconnect();
    let mut us = broker.client();
    us.subscribe("/queue/orders.us", "1", "client-individual", 10);
    let again = us.expect(Command::Message);
    assert_eq!(body(&again), "us-1");
    assert_eq!(again.header("redelivered"), Some("true"));
}

#[test]
fn a_send_to_a_pattern_is_refused_and_others_are_served() {
    let site = Site::new();
    let broker = site.start_default();
    let mut bystander = broker.client();
    bystander.subscribe("/queue/calm", "1", "auto", 10);
    let mut bad = broker.client();
    bad.send_frame(
        Command::Send,
        &[("destination", "/topic/PRICE.>")],
        b"to whom?",
    );
    bad.expect_error("wildcard");
    send(&mut broker.client(), "/queue/calm", "still-served");
    assert_eq!(body(&bystander.expect(Command::Message)), "still-served");
}
