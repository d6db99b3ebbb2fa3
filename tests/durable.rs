//! Durable topic subscriptions as ActiveMQ's STOMP connector has them (issue 15, item 1):
//! CONNECT with `client-id`, SUBSCRIBE to a topic with `activemq.subscriptionName`; what
//! is published while the subscriber is away is kept and delivered, in order, when it
//! subscribes again, across kill -9 of a standalone broker and of a pair's master;
//! UNSUBSCRIBE with the name deletes it. RabbitMQ's form (`durable:true` and the `id`)
//! works too.

mod common;

use common::client::body;
use common::{Client, Pair, Site};
use mirrormq::stomp::Command;

const TOPIC: &str = "/topic/prices";

/// Connects as client `client_id`.
fn connect_as(port: u16, client_id: &str) -> Client {
    Client::connect_with(
        port,
        &[
            ("accept-version", "1.2"),
            ("login", "admin"),
            ("passcode", "admin"),
            ("client-id", client_id),
        ],
    )
}

/// SUBSCRIBEs durably as `name` with these extra headers, and waits for the receipt.
fn subscribe_durably(client: &mut Client, name: &str, extra: &[(&str, &str)]) {
    let mut headers = vec![
        ("destination", TOPIC),
        ("id", "d"),
        ("ack", "client-individual"),
        ("activemq.subscriptionName", name),
        ("receipt", "subscribed"),
    ];
    headers.extend_from_slice(extra);
    client.send_frame(Command::Subscribe, &headers, b"");
    client.expect(Command::Receipt);
}

/// Publishes each body to the topic, persistent and receipted.
fn publish(port: u16, bodies: &[&str]) {
    let mut publisher = Client::connect(port);
    for body in bodies {
        publisher.send_receipted(TOPIC, body, true);
    }
}

/// Makes subscription `name` of client "app" and leaves, so it is kept while away.
fn subscribe_and_leave(port: u16, name: &str, extra: &[(&str, &str)]) {
    let mut subscriber = connect_as(port, "app");
    subscribe_durably(&mut subscriber, name, extra);
    subscriber.disconnect();
}

/// Comes back as client "app" to subscription `name` and takes `count` messages.
fn come_back(port: u16, name: &str, count: usize) -> (Client, Vec<String>) {
    let mut subscriber = connect_as(port, "app");
    subscribe_durably(&mut subscriber, name, &[]);
    let bodies = subscriber.take(count);
    (subscriber, bodies)
}

#[test]
fn what_is_published_while_away_is_kept_and_delivered_in_order() {
    let site = Site::new();
    let broker = site.start_default();
    subscribe_and_leave(broker.port, "s", &[]);
    publish(broker.port, &["one", "two", "three"]);
    let (mut subscriber, bodies) = come_back(broker.port, "s", 3);
    assert_eq!(bodies, ["one", "two", "three"]);
    // While it is connected, new messages come straight on; each says its topic.
    publish(broker.port, &["four"]);
    let live = subscriber.expect(Command::Message);
    assert_eq!(body(&live), "four");
    assert_eq!(live.header("destination"), Some(TOPIC));
}

#[test]
fn the_subscription_and_its_backlog_survive_kill_9_and_restart() {
    let site = Site::new();
    let mut broker = site.start_default();
    subscribe_and_leave(broker.port, "s", &[]);
    publish(broker.port, &["one", "two"]);
    broker.kill9();
    let broker = site.start_default();
    publish(broker.port, &["three"]);
    let (_, bodies) = come_back(broker.port, "s", 3);
    assert_eq!(bodies, ["one", "two", "three"]);
}

#[test]
fn the_subscription_and_its_backlog_survive_a_failover() {
    let mut pair = Pair::start("", "");
    subscribe_and_leave(pair.master.port, "s", &[]);
    publish(pair.master.port, &["one", "two"]);
    pair.master.kill9();
    pair.slave.wait_until_listening();
    publish(pair.slave.port, &["three"]);
    let (_, bodies) = come_back(pair.slave.port, "s", 3);
    assert_eq!(bodies, ["one", "two", "three"]);
}

#[test]
fn a_selector_decides_what_is_kept() {
    let site = Site::new();
    let broker = site.start_default();
    subscribe_and_leave(broker.port, "blue", &[("selector", "color = 'blue'")]);
    let mut publisher = Client::connect(broker.port);
    for color in ["red", "blue", "red", "blue"] {
        publisher.send_frame(
            Command::Send,
            &[
                ("destination", TOPIC),
                ("color", color),
                ("persistent", "true"),
                ("receipt", "sent"),
            ],
            color.as_bytes(),
        );
        publisher.expect(Command::Receipt);
    }
    let mut subscriber = connect_as(broker.port, "app");
    subscribe_durably(&mut subscriber, "blue", &[("selector", "color = 'blue'")]);
    assert_eq!(subscriber.take(2), ["blue", "blue"]);
    assert!(matches!(
        subscriber.read(std::time::Duration::from_millis(300)),
        common::client::Got::Silent
    ));
}

#[test]
fn unsubscribe_with_the_name_deletes_the_subscription_and_its_backlog() {
    let site = Site::new();
    let broker = site.start_default();
    subscribe_and_leave(broker.port, "s", &[]);
    publish(broker.port, &["dropped"]);
    let mut owner = connect_as(broker.port, "app");
    owner.send_frame(
        Command::Unsubscribe,
        &[
            ("id", "d"),
            ("activemq.subscriptionName", "s"),
            ("receipt", "deleted"),
        ],
        b"",
    );
    owner.expect(Command::Receipt);
    // Subscribing again makes a new subscription: it keeps only what comes after.
    subscribe_durably(&mut owner, "s", &[]);
    publish(broker.port, &["new"]);
    assert_eq!(owner.take(1), ["new"]);
}

#[test]
fn rabbitmq_form_durable_true_with_the_id_works_too() {
    let site = Site::new();
    let broker = site.start_default();
    let subscribe = |client: &mut Client| {
        client.send_frame(
            Command::Subscribe,
            &[
                ("destination", TOPIC),
                ("id", "rabbit-sub"),
                ("durable", "true"),
                ("ack", "client-individual"),
                ("receipt", "subscribed"),
            ],
            b"",
        );
        client.expect(Command::Receipt);
    };
    let mut subscriber = Client::connect(broker.port);
    subscribe(&mut subscriber);
    subscriber.disconnect();
    publish(broker.port, &["kept"]);
    let mut subscriber = Client::connect(broker.port);
    subscribe(&mut subscriber);
    assert_eq!(subscriber.take(1), ["kept"]);
    subscriber.disconnect();
    // Without a client id, another client's subscription of the same id and another
    // topic is refused rather than taken as a change (which would delete the backlog).
    let mut other = Client::connect(broker.port);
    other.send_frame(
        Command::Subscribe,
        &[
            ("destination", "/topic/elsewhere"),
            ("id", "rabbit-sub"),
            ("durable", "true"),
        ],
        b"",
    );
    other.expect_error("exists for topic");
}

#[test]
fn bad_durable_subscribes_are_refused_while_the_subscriber_is_served() {
    let site = Site::new();
    let broker = site.start_default();
    let mut subscriber = connect_as(broker.port, "app");
    subscribe_durably(&mut subscriber, "s", &[]);
    // The same subscription from a second connection: in use.
    let mut second = connect_as(broker.port, "app");
    second.send_frame(
        Command::Subscribe,
        &[
            ("destination", TOPIC),
            ("id", "d"),
            ("activemq.subscriptionName", "s"),
        ],
        b"",
    );
    second.expect_error("in use");
    // ActiveMQ's form without a client-id.
    let mut anonymous = Client::connect(broker.port);
    anonymous.send_frame(
        Command::Subscribe,
        &[
            ("destination", TOPIC),
            ("id", "d"),
            ("activemq.subscriptionName", "s"),
        ],
        b"",
    );
    anonymous.expect_error("client-id");
    publish(broker.port, &["still served"]);
    assert_eq!(subscriber.take(1), ["still served"]);
}

/// The record of a topic send names the subscriptions that keep it; one that would not
/// fit a quarter of a journal segment gets an ERROR and nothing is stored.
#[test]
fn a_send_whose_copies_would_overflow_a_record_is_refused() {
    let site = Site::new();
    let broker = site.start("segment_size = \"64KiB\"", "max_frame_size = \"32KiB\"", "");
    for i in 0..20 {
        subscribe_and_leave(broker.port, &format!("{i:02}{}", "n".repeat(1000)), &[]);
    }
    let mut publisher = Client::connect(broker.port);
    publisher.send_frame(
        Command::Send,
        &[
            ("destination", TOPIC),
            ("persistent", "true"),
            ("receipt", "r"),
        ],
        b"too widely kept",
    );
    publisher.expect_error("durable subscription copies");
    let mut plain = Client::connect(broker.port);
    plain.send_receipted("/queue/other", "served", true);
    assert_eq!(plain.drain("/queue/other", 1), ["served"]);
}
