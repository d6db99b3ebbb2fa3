//! Temporary destinations as ActiveMQ's STOMP connector has them (issue 15, item 4):
//! `/temp-queue/NAME` and `/temp-topic/NAME` belong to the connection that first uses
//! them; a `reply-to` naming one reaches other clients as `/remote-temp-queue/...`, to
//! which they can reply; no other connection may consume from it; it is deleted with its
//! connection, and with every connection of a master that died.

mod common;

use common::client::body;
use common::{Client, Pair, Site};
use mirrormq::stomp::Command;

/// The requester: a temporary reply queue, and a request naming it.
fn ask(requester: &mut Client, temp: &str, question: &str) {
    ask_acking(requester, temp, question, "auto");
}

fn ask_acking(requester: &mut Client, temp: &str, question: &str, ack: &str) {
    requester.subscribe(temp, "replies", ack, 10);
    requester.send_frame(
        Command::Send,
        &[
            ("destination", "/queue/requests"),
            ("reply-to", temp),
            ("receipt", "asked"),
        ],
        question.as_bytes(),
    );
    requester.expect(Command::Receipt);
}

/// The service: takes a request, answers at its `reply-to`; returns where that was.
fn answer(service: &mut Client, answer: &str) -> String {
    let request = service.expect(Command::Message);
    let reply_to = request.header("reply-to").expect("reply-to").to_string();
    service.send_frame(
        Command::Send,
        &[("destination", &reply_to), ("receipt", "answered")],
        answer.as_bytes(),
    );
    service.expect(Command::Receipt);
    reply_to
}

#[test]
fn request_and_reply_through_a_temporary_queue_and_topic() {
    let site = Site::new();
    let broker = site.start_default();
    let mut service = broker.client();
    service.subscribe("/queue/requests", "1", "auto", 10);
    for temp in ["/temp-queue/replies", "/temp-topic/replies"] {
        let mut requester = broker.client();
        ask(&mut requester, temp, "what time is it?");
        let reply_to = answer(&mut service, "teatime");
        let kind = &temp[1..temp.rfind('/').unwrap()];
        assert!(
            reply_to.starts_with(&format!("/remote-{kind}/")),
            "{reply_to}"
        );
        let reply = requester.expect(Command::Message);
        assert_eq!(body(&reply), "teatime");
        assert_eq!(reply.header("destination"), Some(reply_to.as_str()));
    }
}

#[test]
fn only_its_connection_consumes_and_it_goes_with_the_connection() {
    let site = Site::new();
    let broker = site.start_default();
    let mut service = broker.client();
    service.subscribe("/queue/requests", "1", "auto", 10);
    let mut requester = broker.client();
    ask(&mut requester, "/temp-queue/replies", "hello?");
    let reply_to = answer(&mut service, "hello");
    assert_eq!(body(&requester.expect(Command::Message)), "hello");

    let mut thief = broker.client();
    thief.send_frame(
        Command::Subscribe,
        &[("destination", &reply_to), ("id", "1")],
        b"",
    );
    thief.expect_error("another connection's temporary destination");

    // Another connection's /temp-queue/replies is its own queue.
    let mut second = broker.client();
    ask(&mut second, "/temp-queue/replies", "and you?");
    let second_reply_to = answer(&mut service, "me too");
    assert_ne!(second_reply_to, reply_to);
    assert_eq!(body(&second.expect(Command::Message)), "me too");

    requester.disconnect();
    service.send_frame(
        Command::Send,
        &[("destination", &reply_to), ("receipt", "late")],
        b"too late",
    );
    service.expect_error("whose connection has closed");
}

#[test]
fn a_promoted_slave_holds_no_temporary_queue_of_the_dead_master() {
    let mut pair = Pair::start("", "");
    // Connections 1 and 2 on the master.
    let mut service = pair.master.client();
    service.subscribe("/queue/requests", "1", "client-individual", 10);
    let mut requester = pair.master.client();
    ask_acking(
        &mut requester,
        "/temp-queue/replies",
        "before the kill",
        "client-individual",
    );
    let request = service.expect(Command::Message);
    let reply_to = request.header("reply-to").unwrap().to_string();
    // A reply the requester receives and never acknowledges: mirrored, it would be
    // ready on the slave.
    service.send_frame(
        Command::Send,
        &[("destination", &reply_to), ("receipt", "r")],
        b"unacked",
    );
    service.expect(Command::Receipt);
    assert_eq!(body(&requester.expect(Command::Message)), "unacked");
    pair.master.kill9();
    pair.slave.wait_until_listening();

    // Connection 1 on the promoted slave: the old reply queue is gone.
    let mut late = pair.slave.client();
    late.send_frame(
        Command::Send,
        &[("destination", &reply_to), ("receipt", "late")],
        b"after the kill",
    );
    late.expect_error("whose connection has closed");
    // Connection 2, whose /temp-queue/replies has the old one's name: it starts empty.
    let mut again = pair.slave.client();
    again.subscribe("/temp-queue/replies", "replies", "auto", 10);
    again.send_frame(
        Command::Send,
        &[("destination", "/temp-queue/replies"), ("receipt", "fresh")],
        b"fresh",
    );
    let mut got: Vec<String> = again.await_receipt("fresh").iter().map(body).collect();
    if got.is_empty() {
        got.push(body(&again.expect(Command::Message)));
    }
    assert_eq!(
        got,
        ["fresh"],
        "nothing of the dead master's temporary queue"
    );
}
