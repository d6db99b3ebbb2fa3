//! SUBSCRIBE's `selector` against a real broker, from a plain STOMP client: a queue
//! consumer gets what it selects and the rest stays for others; a topic subscriber gets
//! what it selects; a bad selector is refused with an ERROR that says where, while other
//! clients are served; and the headers a selector reads survive a kill -9 of the master
//! of a pair.

mod common;

use common::client::body;
use common::{Client, Pair, Site};
use mirrormq::stomp::Command;

/// Sends persistent messages with a `color` and a `weight` header, waiting for each
/// receipt.
fn send_colored(client: &mut Client, destination: &str, messages: &[(&str, &str, &str)]) {
    for (text, color, weight) in messages {
        let receipt = format!("r-{text}");
        client.send_frame(
            Command::Send,
            &[
                ("destination", destination),
                ("persistent", "true"),
                ("color", color),
                ("weight", weight),
                ("receipt", &receipt),
            ],
            text.as_bytes(),
        );
        client.expect(Command::Receipt);
    }
}

fn subscribe_selecting(client: &mut Client, destination: &str, id: &str, selector: &str) {
    let receipt = format!("sub-{id}");
    client.send_frame(
        Command::Subscribe,
        &[
            ("destination", destination),
            ("id", id),
            ("ack", "client-individual"),
            ("selector", selector),
            ("receipt", &receipt),
        ],
        b"",
    );
    client.expect(Command::Receipt);
}

const MIX: [(&str, &str, &str); 6] = [
    ("red-light", "red", "5"),
    ("blue-heavy", "blue", "3000"),
    ("blue-light", "blue", "5"),
    ("green-heavy", "green", "2600"),
    ("blue-heavier", "blue", "9000"),
    ("red-heavy", "red", "2501"),
];

#[test]
fn a_queue_consumer_gets_what_it_selects_and_the_rest_stays_for_others() {
    let site = Site::new();
    let broker = site.start_default();
    let mut producer = broker.client();
    send_colored(&mut producer, "/queue/orders", &MIX);
    let mut heavy_blue = broker.client();
    subscribe_selecting(
        &mut heavy_blue,
        "/queue/orders",
        "1",
        "color = 'blue' AND weight > 2500",
    );
    assert_eq!(heavy_blue.take(2), ["blue-heavy", "blue-heavier"]);
    let mut other = broker.client();
    subscribe_selecting(
        &mut other,
        "/queue/orders",
        "1",
        "color IN ('red', 'green') OR weight BETWEEN 0 AND 10",
    );
    assert_eq!(
        other.take(4),
        ["red-light", "blue-light", "green-heavy", "red-heavy"],
        "what the first consumer refused, in order"
    );
    // A message sent now goes to whichever consumer selects it.
    send_colored(
        &mut producer,
        "/queue/orders",
        &[("late-blue", "blue", "2600")],
    );
    assert_eq!(heavy_blue.take(1), ["late-blue"]);
}

#[test]
fn a_topic_subscriber_gets_what_it_selects() {
    let site = Site::new();
    let broker = site.start_default();
    let mut blue = broker.client();
    subscribe_selecting(&mut blue, "/topic/paint", "1", "color LIKE 'bl%'");
    let mut everything = broker.client();
    everything.subscribe("/topic/paint", "1", "auto", 100);
    let mut producer = broker.client();
    send_colored(&mut producer, "/topic/paint", &MIX);
    assert_eq!(blue.take(3), ["blue-heavy", "blue-light", "blue-heavier"]);
    let all: Vec<String> = (0..MIX.len())
        .map(|_| body(&everything.expect(Command::Message)))
        .collect();
    assert_eq!(all.len(), MIX.len());
}

#[test]
fn a_bad_selector_is_refused_saying_where_and_others_are_served() {
    let site = Site::new();
    let broker = site.start_default();
    let mut bystander = broker.client();
    bystander.subscribe("/queue/calm", "1", "client-individual", 10);
    for (selector, column, why) in [
        ("color = = 'x'", 9, "expected an operand"),
        ("color = 'blue", 9, "never closed"),
        ("weight > 5 AND", 15, "expected an operand, found the end"),
        ("color LIKE 7", 12, "a string pattern"),
    ] {
        let mut client = broker.client();
        client.send_frame(
            Command::Subscribe,
            &[
                ("destination", "/queue/orders"),
                ("id", "1"),
                ("selector", selector),
                ("receipt", "never"),
            ],
            b"",
        );
        let error = client.expect_error(&format!("at column {column}: "));
        let message = error.header("message").unwrap_or("");
        assert!(message.contains(why), "{selector}: {message}");
    }
    let mut producer = broker.client();
    producer.send_receipted("/queue/calm", "still-here", true);
    assert_eq!(bystander.take(1), ["still-here"]);
}

#[test]
fn selected_headers_survive_a_kill_of_the_master() {
    let mut pair = Pair::start("", "");
    let mut producer = pair.master.client();
    send_colored(&mut producer, "/queue/orders", &MIX);
    pair.master.kill9();
    pair.slave.wait_until_listening();
    let mut consumer = pair.slave.client();
    subscribe_selecting(&mut consumer, "/queue/orders", "1", "weight > 2500");
    assert_eq!(
        consumer.take(4),
        ["blue-heavy", "green-heavy", "blue-heavier", "red-heavy"]
    );
}
