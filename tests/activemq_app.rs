//! An application written for ActiveMQ's STOMP connector runs unchanged against the pair
//! and through a kill -9 of its master (issue 15, "done when"): tests/apps/activemq_app.py,
//! on stomp.py, knows the two brokers' client ports and nothing of mirrormq. It makes a
//! durable subscription with a selector and leaves; publishes and enqueues with priority,
//! expiry and a delay; then, after the master's kill, comes back to the promoted slave:
//! the subscription kept its messages, a browser and a consumer see the orders by
//! priority without the expired one, the delayed message comes after its delay, and a
//! request over a temporary reply queue is answered.

mod common;

use std::process::Command;

use common::Pair;

/// Runs one phase of the application; returns what it printed.
fn app(args: &[&str]) -> String {
    let python = format!(
        "{}/target/test-deps/venv/bin/python",
        env!("CARGO_MANIFEST_DIR")
    );
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: run scripts/test-deps.sh (scripts/test.sh does)"
    );
    let script = format!("{}/tests/apps/activemq_app.py", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("the application runs");
    common::stdout_of(output)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn an_activemq_application_runs_unchanged_through_a_failover() {
    let mut pair = Pair::start("", "");
    let brokers = format!(
        "127.0.0.1:{},127.0.0.1:{}",
        pair.master.port,
        pair.slave.wait_for_port_later()
    );
    app(&["setup", &brokers]);
    let produced = json(&app(&["produce", &brokers]));
    pair.master.kill9();
    let sent_ms = produced["delayed_sent_ms"].to_string();
    let seen = json(&app(&["consume", &brokers, &sent_ms]));
    assert_eq!(
        seen["durable"],
        serde_json::json!(["price-0-eu", "price-2-eu", "price-4-eu"]),
        "the durable subscription keeps what its selector takes, in order"
    );
    let by_priority = serde_json::json!(["urgent", "normal", "low"]);
    assert_eq!(seen["browsed"], by_priority);
    assert_eq!(seen["orders"], by_priority);
    assert_eq!(seen["delayed"], "later");
    assert!(
        seen["delayed_after_ms"].as_u64().unwrap() >= 1500,
        "the delayed message came before its delay: {seen}"
    );
    assert_eq!(seen["reply"], "noon");
}
