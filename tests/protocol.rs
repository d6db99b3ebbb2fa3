//! STOMP behaviour as a client sees it: versions, acks, redelivery, the DLQ, topics,
//! transactions, receipts and escaping, over a real socket.

mod common;

use std::time::Duration;

use common::client::{body, Got};
use common::{Client, Site};
use mirrormq::stomp::{Command, Version};

#[test]
fn subscribe_receipt_comes_before_the_first_message() {
    let site = Site::new();
    let broker = site.start_default();
    let mut client = broker.client();
    client.send_receipted("/queue/a", "one", true);
    client.send_frame(
        Command::Subscribe,
        &[("destination", "/queue/a"), ("id", "s"), ("receipt", "sub")],
        b"",
    );
    let receipt = client.expect(Command::Receipt);
    assert_eq!(receipt.header("receipt-id"), Some("sub"));
    let message = client.expect(Command::Message);
    assert_eq!(body(&message), "one");
    assert_eq!(message.header("destination"), Some("/queue/a"));
    assert_eq!(message.header("subscription"), Some("s"));
    assert!(message.header("message-id").is_some());
    assert_eq!(message.header("persistent"), Some("true"));
}

#[test]
fn queues_round_robin_between_consumers_and_topics_fan_out() {
    let site = Site::new();
    let broker = site.start_default();
    let mut a = broker.client();
    let mut b = broker.client();
    a.subscribe("/queue/rr", "q", "client-individual", 10);
    b.subscribe("/queue/rr", "q", "client-individual", 10);
    a.subscribe("/topic/news", "t", "auto", 10);
    b.subscribe("/topic/news", "t", "auto", 10);
    let mut producer = broker.client();
    for i in 0..4 {
        producer.send_receipted("/queue/rr", &format!("q{i}"), true);
    }
    producer.send_receipted("/topic/news", "headline", false);
    let mut a_got: Vec<String> = Vec::new();
    let mut b_got: Vec<String> = Vec::new();
    for (client, got) in [(&mut a, &mut a_got), (&mut b, &mut b_got)] {
        for message in client.receive(3) {
            got.push(body(&message));
        }
    }
    a_got.sort();
    b_got.sort();
    assert_eq!(a_got, ["headline", "q0", "q2"]);
    assert_eq!(b_got, ["headline", "q1", "q3"]);
}

#[test]
fn user_headers_and_escapes_round_trip() {
    let site = Site::new();
    let broker = site.start_default();
    let mut client = broker.client();
    client.subscribe("/queue/h", "s", "auto", 10);
    client.raw(b"SEND\ndestination:/queue/h\ncolon:a\\cb\nlinefeed:x\\ny\nbackslash:\\\\\ncarriagereturn:\\r\nmessage-id:forged\ncontent-length:3\n\na\0b\0");
    let message = client.expect(Command::Message);
    assert_eq!(message.header("colon"), Some("a:b"));
    assert_eq!(message.header("linefeed"), Some("x\ny"));
    assert_eq!(message.header("backslash"), Some("\\"));
    assert_eq!(message.header("carriagereturn"), Some("\r"));
    assert_ne!(
        message.header("message-id"),
        Some("forged"),
        "the broker owns message-id"
    );
    assert_eq!(&message.body[..], b"a\0b");
}

#[test]
fn unacked_messages_are_redelivered_marked_when_a_connection_closes() {
    let site = Site::new();
    let broker = site.start_default();
    let mut producer = broker.client();
    for i in 0..3 {
        producer.send_receipted("/queue/r", &format!("m{i}"), true);
    }
    let mut first = broker.client();
    first.subscribe("/queue/r", "s", "client", 10);
    let got = first.receive(3);
    first.ack(&got[0], Some("a0"));
    drop(first);
    let mut second = broker.client();
    second.subscribe("/queue/r", "s", "client", 10);
    let again = second.receive(2);
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["m1", "m2"]);
    assert!(again
        .iter()
        .all(|m| m.header("redelivered") == Some("true")));
}

#[test]
fn client_mode_ack_is_cumulative() {
    let site = Site::new();
    let broker = site.start_default();
    let mut client = broker.client();
    for i in 0..3 {
        client.send_receipted("/queue/cum", &format!("m{i}"), true);
    }
    client.subscribe("/queue/cum", "s", "client", 10);
    let got = client.receive(3);
    client.ack(&got[1], Some("a1"));
    drop(client);
    let mut other = broker.client();
    other.subscribe("/queue/cum", "s", "client-individual", 10);
    assert_eq!(body(&other.expect(Command::Message)), "m2");
}

#[test]
fn nacked_poison_message_moves_to_the_dead_letter_queue() {
    let site = Site::new();
    let broker = site.start("max_redeliveries = 1", "", "");
    let mut client = broker.client();
    client.send_receipted("/queue/orders", "poison", true);
    client.subscribe("/queue/orders", "s", "client-individual", 1);
    let first = client.expect(Command::Message);
    assert_eq!(first.header("redelivered"), None);
    client.nack(&first, None);
    let second = client.expect(Command::Message);
    assert_eq!(second.header("redelivered"), Some("true"));
    client.nack(&second, Some("n2"));
    client.subscribe("/queue/DLQ.orders", "dlq", "client-individual", 1);
    let dead = client.expect(Command::Message);
    assert_eq!(body(&dead), "poison");
    assert_eq!(dead.header("original-destination"), Some("/queue/orders"));
    assert_eq!(dead.header("destination"), Some("/queue/DLQ.orders"));
}

#[test]
fn aborted_transactions_leave_no_trace_and_acks_in_them_can_be_redone() {
    let site = Site::new();
    let broker = site.start_default();
    let mut client = broker.client();
    client.send_receipted("/queue/t", "m0", true);
    client.subscribe("/queue/t", "s", "client-individual", 10);
    let message = client.expect(Command::Message);
    client.send_frame(Command::Begin, &[("transaction", "tx")], b"");
    client.send_frame(
        Command::Send,
        &[("destination", "/queue/t"), ("transaction", "tx")],
        b"never",
    );
    client.send_frame(
        Command::Ack,
        &[
            ("id", message.header("ack").unwrap()),
            ("transaction", "tx"),
        ],
        b"",
    );
    client.send_frame(
        Command::Abort,
        &[("transaction", "tx"), ("receipt", "ab")],
        b"",
    );
    client.expect(Command::Receipt);
    client.ack(&message, Some("real"));
    assert!(
        matches!(client.read(Duration::from_millis(200)), Got::Silent),
        "the aborted SEND never arrives"
    );
}

#[test]
fn a_transaction_is_rejected_whole_for_a_bad_nack_or_too_many_bytes() {
    let site = Site::new();
    let broker = site.start("", "max_frame_size = \"8KiB\"", "");
    let mut client = broker.client();
    client.send_frame(Command::Begin, &[("transaction", "t")], b"");
    client.send_frame(
        Command::Send,
        &[("destination", "/queue/t"), ("transaction", "t")],
        b"kept?",
    );
    client.send_frame(
        Command::Nack,
        &[("id", "1.mmq-999-0"), ("transaction", "t")],
        b"",
    );
    client.send_frame(Command::Commit, &[("transaction", "t")], b"");
    client.expect_error("transaction rejected");
    let mut big = broker.client();
    big.send_frame(Command::Begin, &[("transaction", "t")], b"");
    for _ in 0..3 {
        big.send_frame(
            Command::Send,
            &[("destination", "/queue/t"), ("transaction", "t")],
            &[b'x'; 3000],
        );
    }
    big.expect_error("bytes of messages");
    let mut check = broker.client();
    check.send_receipted("/queue/t", "only", true);
    check.subscribe("/queue/t", "s", "auto", 10);
    assert_eq!(
        body(&check.expect(Command::Message)),
        "only",
        "nothing of either transaction took effect"
    );
}

#[test]
fn stomp_1_0_and_1_1_clients_ack_by_message_id() {
    let site = Site::new();
    let broker = site.start_default();
    for (accept, version) in [(None, Version::V1_0), (Some("1.1"), Version::V1_1)] {
        let mut headers = vec![("login", "x")];
        if let Some(accept) = accept {
            headers.push(("accept-version", accept));
        }
        let mut client = Client::connect_with(broker.port, &headers);
        assert_eq!(client.version, version);
        client.send_receipted("/queue/old", "hello", true);
        client.subscribe("/queue/old", "s", "client", 10);
        let message = client.expect(Command::Message);
        assert_eq!(message.header("ack"), None, "ack header is 1.2 only");
        client.ack(&message, Some("done"));
    }
}

#[test]
fn protocol_errors_get_an_error_frame_then_close_while_others_are_served() {
    let site = Site::new();
    let broker = site.start(
        "",
        "max_frame_size = \"4KiB\"\nmax_headers = 8\nmax_header_length = 128",
        "",
    );
    let mut bystander = broker.client();
    bystander.subscribe("/queue/ok", "s", "auto", 10);
    let oversized = format!(
        "SEND\ndestination:/queue/x\ncontent-length:5000\n\n{}\0",
        "y".repeat(5000)
    );
    let many_headers = format!(
        "SEND\ndestination:/queue/x\n{}\nbody\0",
        (0..9).map(|i| format!("h{i}:v\n")).collect::<String>()
    );
    let long_header = format!(
        "SEND\ndestination:/queue/x\nh:{}\n\nbody\0",
        "v".repeat(200)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (oversized.into_bytes(), "larger than"),
        (many_headers.into_bytes(), "headers"),
        (long_header.into_bytes(), "header"),
        (b"SED\n\n\0".to_vec(), "unknown command"),
        (
            b"SEND\ndestination:/queue/x\ncontent-length:-1\n\n\0".to_vec(),
            "may not be negative",
        ),
        (
            b"SEND\ndestination:/queue/x\ncontent-length:2\n\nabc\0".to_vec(),
            "NUL",
        ),
        (
            b"SEND\ndestination:/queue/x\nbad:\\t\n\nx\0".to_vec(),
            "escape",
        ),
        (b"SEND\n\nno destination\0".to_vec(), "destination"),
        (
            b"SEND\ndestination:/elsewhere/x\n\nx\0".to_vec(),
            "unsupported destination",
        ),
        (b"SUBSCRIBE\ndestination:/queue/x\n\n\0".to_vec(), "id"),
        (
            b"SUBSCRIBE\ndestination:/queue/x\nid:1\nack:sometimes\n\n\0".to_vec(),
            "ack mode",
        ),
        (b"ACK\nid:1.mmq-999-0\n\n\0".to_vec(), "never issued"),
        // Headers that would change delivery and are not honoured: refused, not ignored.
        (
            b"SEND\ndestination:/queue/x\npriority:10\n\nx\0".to_vec(),
            "invalid priority '10'",
        ),
        (
            b"SEND\ndestination:/queue/x\nexpires:tomorrow\n\nx\0".to_vec(),
            "invalid expires 'tomorrow'",
        ),
        (
            b"SEND\ndestination:/queue/orders.*\n\nx\0".to_vec(),
            "wildcard",
        ),
        (
            b"SUBSCRIBE\ndestination:/topic/x\nid:1\nbrowser:true\n\n\0".to_vec(),
            "browses one queue",
        ),
        (
            b"SUBSCRIBE\ndestination:/topic/x\nid:1\nactivemq.subscriptionName:s\n\n\0".to_vec(),
            "needs a 'client-id'",
        ),
        (
            b"SUBSCRIBE\ndestination:/queue/x\nid:1\nselector:a ==\n\n\0".to_vec(),
            "invalid selector",
        ),
        (b"ACK\nmessage-id:mmq-1-0\n\n\0".to_vec(), "'id'"),
        (
            b"COMMIT\ntransaction:nope\n\n\0".to_vec(),
            "no open transaction",
        ),
        (b"UNSUBSCRIBE\nid:ghost\n\n\0".to_vec(), "no subscription"),
        (
            b"CONNECT\naccept-version:1.2\n\n\0".to_vec(),
            "duplicate CONNECT",
        ),
        (
            b"MESSAGE\ndestination:/queue/x\n\n\0".to_vec(),
            "may not send",
        ),
    ];
    for (i, (bytes, expected)) in cases.iter().enumerate() {
        let mut bad = broker.client();
        bad.raw(bytes);
        bad.expect_error(expected);
        let mut producer = broker.client();
        producer.send_receipted("/queue/ok", &format!("still-served-{i}"), true);
        assert_eq!(
            body(&bystander.expect(Command::Message)),
            format!("still-served-{i}")
        );
    }
}

#[test]
fn handshake_errors_close_the_connection() {
    let site = Site::new();
    let broker = site.start("", "", "[[users]]\nname = \"admin\"\npassword = \"admin\"");
    let cases: &[(&[u8], &str)] = &[
        (b"SEND\ndestination:/queue/x\n\nx\0", "expected CONNECT"),
        (
            b"CONNECT\naccept-version:9.0,10.1\nlogin:admin\npasscode:admin\n\n\0",
            "version",
        ),
        (
            b"CONNECT\naccept-version:1.2\nheart-beat:T,0\nlogin:admin\npasscode:admin\n\n\0",
            "heart-beat",
        ),
        (
            b"CONNECT\naccept-version:1.2\nlogin:admin\npasscode:hunter2\n\n\0",
            "access refused",
        ),
        (b"CONNECT\naccept-version:1.2\n\n\0", "access refused"),
    ];
    for (bytes, expected) in cases {
        let mut client = Client::open(broker.port);
        client.raw(bytes);
        client.expect_error(expected);
    }
    let log = broker.log.text();
    assert!(!log.contains("hunter2"), "passcodes never reach the log");
    Client::connect(broker.port).disconnect();
}

#[test]
fn heart_beats_flow_both_ways_and_a_silent_client_is_closed() {
    let site = Site::new();
    let broker = site.start_default();
    // We ask the broker to beat every 200 ms and promise nothing ourselves.
    let mut listener = Client::connect_with(
        broker.port,
        &[("accept-version", "1.2"), ("heart-beat", "0,200")],
    );
    listener
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    use std::io::Read;
    assert_eq!(listener.stream.read(&mut byte).unwrap(), 1);
    assert_eq!(byte[0], b'\n', "an idle broker sends EOL heart-beats");
    // We promise a beat every 200 ms, then fall silent: closed after the grace period.
    let mut silent = Client::connect_with(
        broker.port,
        &[("accept-version", "1.2"), ("heart-beat", "200,0")],
    );
    silent.expect_closed();
}

#[test]
fn a_client_that_never_sends_connect_is_timed_out() {
    let site = Site::new();
    let broker = site.start("", "connect_timeout_ms = 300", "");
    let mut idle = Client::open(broker.port);
    idle.raw(b"CONN"); // trickles part of a frame, then nothing
    idle.expect_error("no CONNECT");
}
