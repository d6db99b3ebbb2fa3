//! Queue browsing as ActiveMQ's STOMP connector has it (issue 15, item 8): SUBSCRIBE with
//! `browser:true` shows a snapshot of the queue's ready messages, in order, without
//! consuming them, and ends with a MESSAGE carrying `browser:end`. Paged-out bodies are
//! read back; `stomp.max_browse` bounds a browse; only a queue can be browsed.

mod common;

use common::client::body;
use common::{Client, Site};
use mirrormq::stomp::{Command, Frame};

/// Browses `queue` with these extra headers; returns the bodies shown and the end frame.
fn browse(client: &mut Client, queue: &str, extra: &[(&str, &str)]) -> (Vec<String>, Frame) {
    let mut headers = vec![
        ("destination", queue),
        ("id", "b"),
        ("browser", "true"),
        ("receipt", "browsing"),
    ];
    headers.extend_from_slice(extra);
    client.send_frame(Command::Subscribe, &headers, b"");
    client.expect(Command::Receipt);
    let mut bodies = Vec::new();
    loop {
        let message = client.expect(Command::Message);
        if message.header("browser") == Some("end") {
            return (bodies, message);
        }
        assert_eq!(message.header("subscription"), Some("b"));
        bodies.push(body(&message));
    }
}

fn numbered(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("m{i}")).collect()
}

#[test]
fn a_browse_shows_the_queue_in_order_without_consuming_it() {
    let site = Site::new();
    let mut broker = site.start_default();
    let mut producer = broker.client();
    producer.send_pipelined("/queue/orders", &numbered(5));
    let (shown, end) = browse(&mut broker.client(), "/queue/orders", &[]);
    assert_eq!(shown, numbered(5));
    assert_eq!(end.header("destination"), Some("/queue/orders"));
    assert_eq!(end.header("subscription"), Some("b"));
    // Nothing was consumed: after kill -9 and a restart a consumer gets all of them.
    broker.kill9();
    let broker = site.start_default();
    assert_eq!(broker.client().drain("/queue/orders", 5), numbered(5));
}

#[test]
fn a_browse_shows_what_its_selector_takes() {
    let site = Site::new();
    let broker = site.start_default();
    let mut producer = broker.client();
    for (body, color) in [("r1", "red"), ("b1", "blue"), ("r2", "red")] {
        producer.send_frame(
            Command::Send,
            &[
                ("destination", "/queue/paint"),
                ("color", color),
                ("receipt", "sent"),
            ],
            body.as_bytes(),
        );
        producer.expect(Command::Receipt);
    }
    let (shown, _) = browse(
        &mut broker.client(),
        "/queue/paint",
        &[("selector", "color = 'red'")],
    );
    assert_eq!(shown, ["r1", "r2"]);
}

/// A backlog past the memory limit is browsed whole, the paged-out bodies read back from
/// the journal, up to `stomp.max_browse` messages.
#[test]
fn a_paged_backlog_is_browsed_whole_up_to_the_limit() {
    let site = Site::new();
    let broker = site.start(
        "max_memory = \"4MiB\"\nsegment_size = \"256KiB\"",
        "max_frame_size = \"64KiB\"\nmax_browse = 1500",
        "",
    );
    let bodies: Vec<String> = (0..2000)
        .map(|i| format!("{i:05}{}", "x".repeat(4096)))
        .collect();
    let mut producer = broker.client();
    for run in bodies.chunks(200) {
        producer.send_pipelined("/queue/deep", run);
    }
    let mut browser = broker.client();
    let (shown, _) = browse(&mut browser, "/queue/deep", &[]);
    assert_eq!(shown.len(), 1500, "stomp.max_browse bounds the browse");
    assert!(shown.iter().zip(&bodies).all(|(got, sent)| got == sent));
    // Browsing left every message in the queue.
    assert!(broker.client().drain("/queue/deep", 2000) == bodies);
}

#[test]
fn browsing_a_topic_or_a_pattern_is_refused_while_others_are_served() {
    let site = Site::new();
    let broker = site.start_default();
    let mut consumer = broker.client();
    consumer.subscribe("/queue/work", "w", "auto", 10);
    for destination in ["/topic/news", "/queue/work.>"] {
        let mut client = broker.client();
        client.send_frame(
            Command::Subscribe,
            &[
                ("destination", destination),
                ("id", "b"),
                ("browser", "true"),
            ],
            b"",
        );
        client.expect_error("browses one queue");
    }
    broker
        .client()
        .send_receipted("/queue/work", "served", true);
    assert_eq!(body(&consumer.expect(Command::Message)), "served");
}

/// A browse larger than the connection's outbound queue goes at the pace its client
/// reads: while the client reads nothing, what is sent to its other subscription still
/// fits in its queue (the core queues deliveries without waiting: a browse that filled
/// the queue would get the connection cut as a slow consumer), and then everything comes.
#[test]
fn a_browse_larger_than_the_outbound_queue_waits_for_its_client() {
    let site = Site::new();
    let broker = site.start("", "max_pending_frames = 64", "");
    // 19 MiB: more than the socket buffers hold while the client reads nothing.
    let big: Vec<String> = (0..600)
        .map(|i| format!("{i:04}{}", "x".repeat(32 << 10)))
        .collect();
    let mut producer = broker.client();
    for run in big.chunks(20) {
        producer.send_pipelined("/queue/big", run);
    }
    let mut client = broker.client();
    client.subscribe("/queue/live", "live", "auto", 10);
    client.send_frame(
        Command::Subscribe,
        &[
            ("destination", "/queue/big"),
            ("id", "b"),
            ("browser", "true"),
            ("receipt", "b"),
        ],
        b"",
    );
    for i in 0..20 {
        producer.send_receipted("/queue/live", &format!("live{i}"), true);
    }
    let (mut shown, mut live, mut ended) = (Vec::new(), 0, false);
    while !ended || live < 20 {
        let frame = client.read(common::PATIENCE);
        let common::client::Got::Frame(message) = frame else {
            panic!("the browsing client got {frame:?}:\n{}", broker.log.text());
        };
        match (message.command, message.header("subscription")) {
            (Command::Receipt, _) => {}
            (_, Some("live")) => live += 1,
            _ if message.header("browser") == Some("end") => ended = true,
            _ => shown.push(body(&message)),
        }
    }
    assert!(shown == big, "the browse came whole and in order");
}
