//! Broker tests of what decides whether and when a message is delivered: selectors,
//! expiry, wildcards and delayed delivery.

use super::*;

/// A message with `color` set.
fn colored(queue: &str, body: &str, color: &str) -> NewMessage {
    let mut message = msg(queue, body, true);
    message.headers.push(("color".into(), color.into()));
    message
}

/// On a queue, a consumer gets only what its selector selects; what nobody with room
/// selects stays, in order, for a consumer that does, and the messages behind it flow.
#[test]
fn a_queue_consumer_gets_what_its_selector_selects_and_the_rest_stays() {
    let mut h = Harness::new();
    for (body, color) in [("r1", "red"), ("b1", "blue"), ("r2", "red"), ("b2", "blue")] {
        h.apply(Op::Send(colored("q", body, color)));
    }
    let blue = Some("color = 'blue'");
    subscribe_to(
        &mut h,
        key(S1, 1),
        Destination::Queue("q".into()),
        AckMode::Auto,
        10,
        blue,
    );
    assert_eq!(Harness::bodies(&h.broker.dispatch(NOW)), ["b1", "b2"]);
    assert_eq!(
        h.broker.message_count(),
        4,
        "the red ones stay, the blue in flight"
    );
    let red = Some("color = 'red'");
    subscribe_to(
        &mut h,
        key(S2, 1),
        Destination::Queue("q".into()),
        AckMode::Auto,
        10,
        red,
    );
    assert_eq!(Harness::bodies(&h.broker.dispatch(NOW)), ["r1", "r2"]);
}

/// Passing over unselected messages stops after `selector_scan` of them.
#[test]
fn passing_over_unselected_messages_is_bounded() {
    let mut h = Harness::new();
    h.broker.set_selector_scan(3);
    for i in 0..5 {
        h.apply(Op::Send(colored("q", &format!("r{i}"), "red")));
    }
    h.apply(Op::Send(colored("q", "b", "blue")));
    let blue = Some("color = 'blue'");
    subscribe_to(
        &mut h,
        key(S1, 1),
        Destination::Queue("q".into()),
        AckMode::Auto,
        10,
        blue,
    );
    assert!(
        h.broker.dispatch(NOW).is_empty(),
        "the blue one is past the scan"
    );
    h.broker.set_selector_scan(5);
    subscribe_to(
        &mut h,
        key(S2, 1),
        Destination::Queue("q".into()),
        AckMode::Auto,
        1,
        blue,
    );
    assert_eq!(Harness::bodies(&h.broker.dispatch(NOW)), ["b"]);
}

/// A topic subscriber gets only what its selector selects.
#[test]
fn a_topic_subscriber_gets_what_its_selector_selects() {
    let mut h = Harness::new();
    let topic = Destination::Topic("news".into());
    let blue = Some("color = 'blue'");
    subscribe_to(&mut h, key(S1, 1), topic.clone(), AckMode::Auto, 10, blue);
    subscribe_to(&mut h, key(S2, 1), topic.clone(), AckMode::Auto, 10, None);
    for (body, color) in [("r", "red"), ("b", "blue")] {
        let mut message = colored("x", body, color);
        message.destination = topic.clone();
        h.apply(Op::Send(message));
    }
    let deliveries = h.broker.dispatch(NOW);
    let to = |k: ConsumerKey| Harness::bodies_to(&deliveries, k);
    assert_eq!(to(key(S1, 1)), ["b"]);
    assert_eq!(to(key(S2, 1)), ["r", "b"]);
}

/// A message with `expires` set.
fn expiring(queue: &str, body: &str, expires: u64) -> NewMessage {
    let mut message = msg(queue, body, true);
    message
        .headers
        .push(("expires".into(), expires.to_string()));
    message
}

/// An expired message is never delivered: dispatch passes over it and reports it, and
/// one whose time comes while it waits is found wherever it is in its queue; none in
/// flight or in a dead-letter queue is.
#[test]
fn expired_messages_are_passed_over_and_reported_for_removal() {
    let mut h = Harness::new();
    h.apply(Op::Send(expiring("q", "stale", NOW - 1)));
    h.apply(Op::Send(msg("q", "fresh", true)));
    h.apply(Op::Send(expiring("q", "later", NOW + 500)));
    h.apply(Op::Send(expiring("DLQ.q", "dead", NOW - 1)));
    subscribe(&mut h, key(S1, 1), "q", AckMode::ClientIndividual, 1);
    assert_eq!(Harness::bodies(&h.broker.dispatch(NOW)), ["fresh"]);
    let expired = h.broker.take_expired(NOW);
    assert_eq!(expired.len(), 1, "the one dispatch met (and swept once)");
    assert_eq!(expired[0].queue, "q");
    h.apply(Op::Ack(expired));
    // "later" waits behind the full prefetch window; its time comes.
    assert!(h.broker.take_expired(NOW + 499).is_empty());
    let expired = h.broker.take_expired(NOW + 500);
    assert_eq!(expired.len(), 1);
    h.apply(Op::Ack(expired));
    assert_eq!(
        h.broker.message_count(),
        2,
        "fresh in flight, dead in the DLQ"
    );
    subscribe(&mut h, key(S2, 1), "DLQ.q", AckMode::Auto, 10);
    assert_eq!(Harness::bodies(&h.broker.dispatch(NOW)), ["dead"]);
    assert!(!h.broker.has_expiring());
}

/// A topic pattern gets what is published to every topic it matches, once, beside the
/// exact subscribers.
#[test]
fn a_topic_pattern_gets_every_matching_topic() {
    let mut h = Harness::new();
    let topic = |name: &str| Destination::Topic(name.into());
    subscribe_to(
        &mut h,
        key(S1, 1),
        topic("PRICE.STOCK.*"),
        AckMode::Auto,
        10,
        None,
    );
    subscribe_to(
        &mut h,
        key(S2, 1),
        topic("PRICE.STOCK.NYSE"),
        AckMode::Auto,
        10,
        None,
    );
    for (name, body) in [
        ("PRICE.STOCK.NYSE", "nyse"),
        ("PRICE.BOND.X", "bond"),
        ("PRICE.STOCK.LSE", "lse"),
    ] {
        let mut message = msg("x", body, false);
        message.destination = topic(name);
        h.apply(Op::Send(message));
    }
    let deliveries = h.broker.dispatch(NOW);
    let to = |k: ConsumerKey| Harness::bodies_to(&deliveries, k);
    assert_eq!(to(key(S1, 1)), ["nyse", "lse"]);
    assert_eq!(to(key(S2, 1)), ["nyse"]);
    h.broker.unsubscribe(key(S1, 1));
    let mut later = msg("x", "later", false);
    later.destination = topic("PRICE.STOCK.LSE");
    h.apply(Op::Send(later));
    assert!(h.broker.dispatch(NOW).is_empty());
}

/// A queue pattern consumes from every matching queue, one made later too; its acks and
/// what goes back when it leaves find each message's own queue.
#[test]
fn a_queue_pattern_consumes_every_matching_queue() {
    let mut h = Harness::new();
    h.send("orders.eu", "eu-1");
    h.send("orders.us", "us-1");
    h.send("invoices.eu", "invoice");
    let pattern = Destination::Queue("orders.*".into());
    subscribe_to(
        &mut h,
        key(S1, 1),
        pattern,
        AckMode::ClientIndividual,
        10,
        None,
    );
    let mut got = Harness::bodies(&h.broker.dispatch(NOW));
    got.sort();
    assert_eq!(got, ["eu-1", "us-1"]);
    let asia = h.send("orders.asia", "asia-1");
    assert_eq!(Harness::bodies(&h.broker.dispatch(NOW)), ["asia-1"]);
    let removals = h.broker.ack(S1, Some(1), asia).unwrap();
    assert_eq!(removals, [Removal::new("orders.asia", asia)]);
    h.apply(Op::Ack(removals));
    // Leaving: eu-1 and us-1 go back to their own queues for an exact consumer.
    h.broker.unsubscribe(key(S1, 1));
    subscribe(&mut h, key(S2, 1), "orders.us", AckMode::Auto, 10);
    assert_eq!(Harness::bodies(&h.broker.dispatch(NOW)), ["us-1"]);
    assert_eq!(
        h.broker.message_count(),
        3,
        "eu-1, us-1 in flight, the invoice"
    );
}

/// A message the broker stamped with a delivery time waits, stored but not dispatched,
/// until its time is released; the ones behind it flow meanwhile.
#[test]
fn a_delayed_message_waits_for_its_time() {
    let mut h = Harness::new();
    let mut delayed = msg("q", "later", true);
    delayed
        .headers
        .push((DELIVER_AT_HEADER.into(), (NOW + 1000).to_string()));
    h.apply(Op::Send(delayed));
    h.send("q", "now");
    subscribe(&mut h, key(S1, 1), "q", AckMode::Auto, 10);
    h.broker.release_due(NOW);
    assert_eq!(Harness::bodies(&h.broker.dispatch(NOW)), ["now"]);
    assert_eq!(h.broker.message_count(), 2);
    assert!(h.broker.has_scheduled());
    h.broker.release_due(NOW + 999);
    assert!(h.broker.dispatch(NOW + 999).is_empty());
    h.broker.release_due(NOW + 1000);
    assert_eq!(Harness::bodies(&h.broker.dispatch(NOW + 1000)), ["later"]);
    assert!(!h.broker.has_scheduled());
}
