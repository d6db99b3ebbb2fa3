//! Delayed delivery (issue 15, item 7): ActiveMQ's `AMQ_SCHEDULED_DELAY` (ms). The
//! message becomes deliverable after the delay, not before, even if the broker was
//! killed and restarted, or its master killed, in between; messages without one flow
//! meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::client::body;
use common::{Broker, Client, Pair, Site};
use mirrormq::stomp::Command;

const DELAY: Duration = Duration::from_millis(1500);

/// Sends a persistent "later" with the delay and a "now" without, receipted; returns
/// when "later" was sent.
fn send_delayed(client: &mut Client) -> Instant {
    let delay = DELAY.as_millis().to_string();
    let sent = Instant::now();
    client.send_frame(
        Command::Send,
        &[
            ("destination", "/queue/jobs"),
            ("persistent", "true"),
            ("AMQ_SCHEDULED_DELAY", &delay),
            ("receipt", "later"),
        ],
        b"later",
    );
    client.expect(Command::Receipt);
    client.send_receipted("/queue/jobs", "now", true);
    sent
}

/// "now" at once, then "later" no sooner than the delay after it was sent.
fn receive_in_time(broker: &Broker, sent: Instant) {
    let mut consumer = broker.client();
    consumer.subscribe("/queue/jobs", "1", "client-individual", 10);
    assert_eq!(consumer.take(1), ["now"]);
    let later = consumer.expect(Command::Message);
    assert_eq!(body(&later), "later");
    assert!(
        sent.elapsed() >= DELAY,
        "delivered {:?} after it was sent, before its delay",
        sent.elapsed()
    );
}

#[test]
fn a_delayed_message_comes_after_its_delay_and_others_flow_meanwhile() {
    let site = Site::new();
    let broker = site.start_default();
    let sent = send_delayed(&mut broker.client());
    receive_in_time(&broker, sent);
}

#[test]
fn the_delay_runs_on_across_a_kill_and_restart() {
    let site = Site::new();
    let mut broker = site.start_default();
    let sent = send_delayed(&mut broker.client());
    broker.kill9();
    let broker = site.start_default();
    receive_in_time(&broker, sent);
}

#[test]
fn the_delay_runs_on_across_a_failover() {
    let mut pair = Pair::start("", "");
    let sent = send_delayed(&mut pair.master.client());
    pair.master.kill9();
    pair.slave.wait_until_listening();
    receive_in_time(&pair.slave, sent);
}

#[test]
fn a_bad_delay_or_a_delayed_topic_message_is_refused() {
    let site = Site::new();
    let broker = site.start_default();
    for (destination, delay, why) in [
        ("/queue/jobs", "soon", "invalid AMQ_SCHEDULED_DELAY"),
        ("/topic/news", "1000", "delayed delivery is for queues"),
    ] {
        let mut client = broker.client();
        client.send_frame(
            Command::Send,
            &[("destination", destination), ("AMQ_SCHEDULED_DELAY", delay)],
            b"x",
        );
        client.expect_error(why);
    }
}
