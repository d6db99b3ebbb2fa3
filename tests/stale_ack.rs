//! A stale ACK after a failover (issue 15, item 9): a consumer that received messages
//! from the old master acks them on its new connection to the promoted slave. In every
//! STOMP version that ACK is ignored with its RECEIPT and the connection stays; the
//! message not acked before the kill comes again marked `redelivered:true`; an id the
//! broker never issued is still an ERROR.

mod common;

use common::client::body;
use common::{Client, Pair};
use mirrormq::stomp::Command;

fn connect(port: u16, version: &str) -> Client {
    Client::connect_with(
        port,
        &[
            ("accept-version", version),
            ("login", "admin"),
            ("passcode", "admin"),
        ],
    )
}

#[test]
fn a_stale_ack_after_a_failover_is_ignored_and_the_message_comes_again() {
    for version in ["1.0", "1.1", "1.2"] {
        let mut pair = Pair::start("", "");
        let mut producer = pair.master.client();
        for text in ["m0", "m1"] {
            producer.send_receipted("/queue/work", text, true);
        }
        let mut consumer = connect(pair.master.port, version);
        consumer.subscribe("/queue/work", "worker", "client-individual", 10);
        let held = consumer.receive(2);
        // m0 is acknowledged on the old master (and mirrored); m1 is not.
        consumer.ack(&held[0], Some("a0"));
        pair.master.kill9();
        pair.slave.wait_until_listening();

        let mut again = connect(pair.slave.port, version);
        // Before it subscribes again: the ACK of m0 (consumed), and the ACK and NACK of
        // m1 (back in its queue) are all stale, and ignored.
        again.ack(&held[0], Some("stale-0"));
        again.ack(&held[1], Some("stale-1"));
        again.nack(&held[1], Some("stale-nack"));
        again.subscribe("/queue/work", "worker", "client-individual", 10);
        let redelivered = again.expect(Command::Message);
        assert_eq!(body(&redelivered), "m1", "STOMP {version}");
        assert_eq!(redelivered.header("redelivered"), Some("true"));
        again.ack(&redelivered, Some("done"));
        again.send_receipted("/queue/other", "still-connected", true);

        // An id no record of this store ever added is a protocol error.
        let unissued = match version {
            "1.2" => vec![("id", "1.mmq-99999999-0")],
            _ => vec![("message-id", "mmq-99999999-0"), ("subscription", "worker")],
        };
        again.send_frame(Command::Ack, &unissued, b"");
        again.expect_error("never issued");
    }
}
