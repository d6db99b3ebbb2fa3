//! The admin listener with real brokers: who gets in, what hostile requests get, what the
//! API shows, and that an operator's purge, move and delete are mirrored to the slave
//! and survive a kill -9 of the master; `/metrics` read by Prometheus's own parser.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command as Process;

use common::admin::{admin_section, call, depth, eventually, json, queue, CLIENT_USER};
use common::client::body;
use common::{Client, Site};

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[test]
fn only_admins_get_in_and_hostile_requests_get_a_4xx_while_clients_are_served() {
    let site = Site::new();
    let limits = "max_connections = 3\nrequest_timeout_ms = 1000\nmax_head = \"1KiB\"\nmax_headers = 8\nmax_body = \"1KiB\"\nmax_browse_bytes = \"1KiB\"";
    let users = "[[users]]\nname = \"app\"\npassword = \"app\"\n[[users]]\nname = \"admin\"\npassword = \"admin\"";
    let broker = site.start("", "", &format!("{}{users}", admin_section(limits)));
    let port = broker.wait_for_port("admin");

    let anonymous = call(port, "GET", "/api/status", None);
    assert_eq!(anonymous.status, 401);
    let challenge = common::raw_exchange(port, b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(challenge.contains("WWW-Authenticate: Basic"), "{challenge}");
    assert_eq!(
        call(port, "GET", "/api/status", Some("app:app")).status,
        401
    );
    assert_eq!(
        call(port, "GET", "/api/status", Some("ops:wrong")).status,
        401
    );
    assert_eq!(
        call(port, "GET", "/metrics", None).status,
        401,
        "metrics_public is off"
    );
    let status = json(port, "GET", "/api/status");
    assert_eq!(status["role"], "master-alone");
    assert_eq!(status["name"], "test");
    assert_eq!(call(port, "GET", "/", Some("ops:ops")).status, 200);

    let cases: [(&str, Vec<u8>); 7] = [
        (
            "431",
            format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(2000)).into_bytes(),
        ),
        (
            "431",
            format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(9)).into_bytes(),
        ),
        (
            "413",
            b"POST /api/queues/a/purge HTTP/1.1\r\nContent-Length: 5000\r\n\r\n".to_vec(),
        ),
        ("400", b"\x00\x01\x02 garbage\r\n\r\n".to_vec()),
        (
            "501",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        ),
        ("404", b"GET /../../etc/passwd HTTP/1.1\r\n\r\n".to_vec()),
        // Sends half a request and stops: answered when request_timeout_ms runs out.
        ("408", b"GET /api/status HTTP/1.1\r\nHost:".to_vec()),
    ];
    for (status, request) in &cases {
        let answer = common::raw_exchange(port, request);
        assert!(status_line(&answer).contains(status), "{status}: {answer}");
    }

    // max_connections: three silent connections hold every place; a fourth is turned away.
    let silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let refused = common::admin::wait_for_status(port, 503);
    assert!(
        refused,
        "a fourth connection is refused while three are open"
    );
    drop(silent);
    let status = eventually(port, "/api/status", |s| s["role"] == "master-alone");
    assert_eq!(status["is_master"], true);

    // Clients were served all along, and the broker did not panic.
    let mut client = Client::connect(broker.port);
    client.send_receipted("/queue/still", "served", true);
    assert_eq!(client.drain("/queue/still", 1), ["served"]);
    assert!(
        !broker.log.text().contains("panicked"),
        "{}",
        broker.log.text()
    );

    // A browse reads and returns bodies up to max_browse_bytes, then lists the rest.
    let big = "b".repeat(600);
    for _ in 0..3 {
        client.send_receipted("/queue/big", &big, true);
    }
    let browsed = json(port, "GET", "/api/queues/big/messages");
    let messages = browsed["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{browsed}");
    assert_eq!(messages[0]["body"], big.as_str());
    assert!(
        messages[1]["body"].is_null() && messages[2]["body"].is_null(),
        "{browsed}"
    );
    assert_eq!(messages[2]["body_omitted"], "past admin.max_browse_bytes");

    // An operator lists the connections and closes this one.
    let listed = json(port, "GET", "/api/connections");
    let connections = listed["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 1, "{listed}");
    assert_eq!(connections[0]["login"], "admin");
    assert_eq!(connections[0]["version"], "1.2");
    let id = connections[0]["id"].as_u64().unwrap();
    let closed = json(port, "DELETE", &format!("/api/connections/{id}"));
    assert_eq!(closed["affected"], 1);
    client.expect_closed();
    let gone = call(
        port,
        "DELETE",
        &format!("/api/connections/{id}"),
        Some("ops:ops"),
    );
    assert_eq!(gone.status, 404);
}

#[test]
fn purge_move_and_delete_are_mirrored_and_survive_a_kill_of_the_master() {
    let admin = admin_section("");
    let pair = common::Pair::start(&admin, &admin);
    let (mut master, slave) = (pair.master, pair.slave);
    let (master_admin, slave_admin) = (master.wait_for_port("admin"), slave.wait_for_port("admin"));

    let mut client = Client::connect(master.port);
    let bodies: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    client.send_pipelined("/queue/a", &bodies);
    client.send_many("/queue/b", 5);

    let browsed = json(master_admin, "GET", "/api/queues/a/messages?limit=3");
    let shown: Vec<&str> = browsed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["a0", "a1", "a2"], "browsing consumes nothing");
    let queues = json(master_admin, "GET", "/api/queues");
    assert_eq!(depth(&queues, "a"), Some(10));
    assert_eq!(queue(&queues, "a").unwrap()["enqueued"], 10);

    let moved = json(master_admin, "POST", "/api/queues/a/move?to=c");
    assert_eq!(moved["affected"], 10);
    assert_eq!(
        json(master_admin, "POST", "/api/queues/b/purge")["affected"],
        5
    );
    client.send_many("/queue/a", 2);
    assert_eq!(json(master_admin, "DELETE", "/api/queues/a")["affected"], 2);
    let missing = call(master_admin, "DELETE", "/api/queues/a", Some("ops:ops"));
    assert_eq!(missing.status, 404);

    // The slave mirrors each op: it got them as records.
    let mirrored = eventually(slave_admin, "/api/queues", |q| {
        depth(q, "c") == Some(10) && depth(q, "b") == Some(0) && depth(q, "a").is_none()
    });
    assert_eq!(queue(&mirrored, "c").unwrap()["enqueued"], 10);
    let refused = call(slave_admin, "POST", "/api/queues/c/purge", Some("ops:ops"));
    assert_eq!(refused.status, 409, "a slave takes no operations");
    let slave_status = json(slave_admin, "GET", "/api/status");
    assert_eq!(slave_status["role"], "slave-mirroring");
    let master_status = json(master_admin, "GET", "/api/status");
    assert_eq!(master_status["replicas"][0]["state"], "in-sync");
    assert_eq!(
        master_status["replicas"][0]["name"], "test",
        "the slave's broker.name"
    );
    assert_eq!(slave_status["master"], master_status["replication_address"]);

    master.kill9();
    slave.wait_for_role("master-alone");
    let promoted = eventually(slave_admin, "/api/status", |s| s["is_master"] == true);
    assert_eq!(promoted["last_role_change"]["to"], "master-alone");
    let queues = json(slave_admin, "GET", "/api/queues");
    assert_eq!(
        (
            depth(&queues, "c"),
            depth(&queues, "b"),
            depth(&queues, "a")
        ),
        (Some(10), Some(0), None)
    );
    let mut consumer = Client::connect(slave.wait_for_port_later());
    consumer.subscribe("/queue/c", "s", "client-individual", 100);
    let messages = consumer.receive(10);
    let got: Vec<String> = messages.iter().map(body).collect();
    assert_eq!(got, bodies, "moved in order, nothing lost");
    assert!(messages
        .iter()
        .all(|m| m.header("original-destination") == Some("/queue/a")));
    for message in &messages {
        consumer.ack(message, None);
    }
}

#[test]
fn metrics_parse_with_prometheus_own_parser() {
    let site = Site::new();
    let broker = site.start(
        "",
        "",
        &format!("{}{CLIENT_USER}", admin_section("metrics_public = true")),
    );
    let port = broker.wait_for_port("admin");
    let mut client = Client::connect(broker.port);
    client.send_many("/queue/metered", 7);
    let answer = call(port, "GET", "/metrics", None);
    assert_eq!(
        answer.status, 200,
        "metrics_public lets Prometheus in without a login"
    );
    let parser = format!(
        "{}/target/test-deps/venv/bin/python",
        env!("CARGO_MANIFEST_DIR")
    );
    assert!(
        std::path::Path::new(&parser).exists(),
        "{parser} is missing: run scripts/test-deps.sh (scripts/test.sh does)"
    );
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = {}\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value\n\
        print(json.dumps(out))\n";
    let mut child = Process::new(&parser)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&answer.body).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the parser refused it:\n{}",
        String::from_utf8_lossy(&answer.body)
    );
    let samples: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let sample = |key: &str| {
        samples[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key} in {samples}"))
    };
    assert_eq!(sample("mirrormq_queue_depth{\"queue\": \"metered\"}"), 7.0);
    assert_eq!(
        sample("mirrormq_queue_enqueued_total{\"queue\": \"metered\"}"),
        7.0
    );
    assert_eq!(sample("mirrormq_is_master{}"), 1.0);
    assert!(sample("mirrormq_receipts_total{}") >= 7.0);
    assert!(sample("mirrormq_fsync_seconds_count{}") >= 1.0);
    // One SEND in flight per connection is timed at a time: at least the first.
    assert!(sample("mirrormq_receipt_latency_seconds_count{}") >= 1.0);
    assert_eq!(
        sample("mirrormq_receipt_latency_seconds_bucket{\"le\": \"+Inf\"}"),
        sample("mirrormq_receipt_latency_seconds_count{}")
    );
}

#[test]
fn a_lost_slave_is_shown_with_why() {
    let admin = admin_section("");
    let pair = common::Pair::start(&admin, &admin);
    let (master, mut slave) = (pair.master, pair.slave);
    let port = master.wait_for_port("admin");
    let attached = eventually(port, "/api/status", |s| {
        s["replicas"][0]["state"] == "in-sync"
    });
    assert_eq!(attached["lost_replicas"], serde_json::json!([]));
    slave.kill9();
    let status = eventually(port, "/api/status", |s| {
        s["lost_replicas"][0]["name"] == "test"
    });
    assert_eq!(status["replicas"], serde_json::json!([]), "{status}");
    let why = status["lost_replicas"][0]["why"].as_str().unwrap();
    assert!(why.contains("closed") || why.contains("silent"), "{why}");
    // Once the probe finds no master at the slave's address, the master serves alone.
    eventually(port, "/api/status", |s| s["role"] == "master-alone");
}

#[test]
fn an_op_still_waiting_for_replicas_when_its_request_times_out_is_dropped() {
    let site = Site::new();
    let master = site.start(
        "",
        "",
        &format!(
            "{}\n{}",
            common::master_replication("min_replicas = 1"),
            admin_section("request_timeout_ms = 300")
        ),
    );
    let port = master.wait_for_port("admin");
    let mut client = Client::connect(master.port);
    // Non-persistent: min_replicas holds only persistent work, and the purge.
    client.send_receipted("/queue/kept", "one", false);
    client.send_receipted("/queue/kept", "two", false);
    let timed_out = call(port, "POST", "/api/queues/kept/purge", Some("ops:ops"));
    assert_eq!(
        timed_out.status,
        504,
        "{}",
        String::from_utf8_lossy(&timed_out.body)
    );
    // A slave comes in sync: the dropped purge does not run after all.
    let replication = master.wait_for_port("replication");
    let slave_site = Site::new();
    let slave = common::Broker::spawn(&slave_site.write_config(
        "broker.toml",
        "",
        "",
        &common::slave_replication(replication, ""),
    ));
    slave.wait_for_role("slave-mirroring");
    eventually(port, "/api/status", |s| s["in_sync"] == 1);
    let queues = json(port, "GET", "/api/queues");
    assert_eq!(depth(&queues, "kept"), Some(2), "{queues}");
}
