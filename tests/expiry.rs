//! Message expiry (issue 15, item 5): `expires` in ms since the Unix epoch (0: never). An
//! expired message is never delivered; it is dropped, or moved to `DLQ.<name>` with
//! `broker.dead_letter_expired = true`, by a journaled removal that a kill -9 and
//! restart, or a failover, keeps.

mod common;

use common::client::body;
use common::{Client, Pair, Site};
use mirrormq::stomp::Command;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A persistent SEND to /queue/orders expiring at `expires` (none: never), receipted.
fn send(client: &mut Client, text: &str, expires: Option<u64>) {
    let expires = expires.map(|at| at.to_string());
    let receipt = format!("r-{text}");
    let mut headers = vec![
        ("destination", "/queue/orders"),
        ("persistent", "true"),
        ("receipt", receipt.as_str()),
    ];
    if let Some(expires) = &expires {
        headers.push(("expires", expires));
    }
    client.send_frame(Command::Send, &headers, text.as_bytes());
    client.expect(Command::Receipt);
}

/// The first `n` bodies on `destination`, acknowledged.
fn take(client: &mut Client, destination: &str, n: usize) -> Vec<String> {
    client.subscribe(destination, "1", "client-individual", 10);
    client.take(n)
}

#[test]
fn expired_messages_move_to_the_dead_letter_queue_and_stay_there_after_a_restart() {
    let site = Site::new();
    let mut broker = site.start("dead_letter_expired = true", "", "");
    let mut producer = broker.client();
    send(&mut producer, "too-late", Some(now_ms() - 1000));
    send(&mut producer, "fresh", None);
    send(&mut producer, "soon", Some(now_ms() + 300));
    send(&mut producer, "never", Some(0));
    // No consumer on the queue: the broker finds them as their time comes.
    assert_eq!(
        take(&mut broker.client(), "/queue/DLQ.orders", 2),
        ["too-late", "soon"]
    );
    broker.kill9();
    let broker = site.start("dead_letter_expired = true", "", "");
    let mut consumer = broker.client();
    assert_eq!(take(&mut consumer, "/queue/orders", 2), ["fresh", "never"]);
    let mut sentinel = broker.client();
    send(&mut sentinel, "sentinel", None);
    assert_eq!(
        body(&consumer.expect(Command::Message)),
        "sentinel",
        "nothing expired came back"
    );
}

#[test]
fn an_expired_message_is_dropped_and_a_failover_keeps_it_gone() {
    let mut pair = Pair::start("", "");
    let mut producer = pair.master.client();
    send(&mut producer, "too-late", Some(now_ms() - 1000));
    send(&mut producer, "fresh", None);
    let mut consumer = pair.master.client();
    consumer.subscribe("/queue/orders", "1", "client-individual", 10);
    let fresh = consumer.expect(Command::Message);
    assert_eq!(body(&fresh), "fresh", "the expired one is never delivered");
    // Its receipt comes once the slave holds the ack, and the expired one's removal
    // recorded before it.
    consumer.ack(&fresh, Some("acked"));
    pair.master.kill9();
    pair.slave.wait_until_listening();
    let mut consumer = pair.slave.client();
    consumer.subscribe("/queue/orders", "1", "client-individual", 10);
    send(&mut pair.slave.client(), "sentinel", None);
    assert_eq!(
        body(&consumer.expect(Command::Message)),
        "sentinel",
        "neither the expired nor the consumed message came back"
    );
}
