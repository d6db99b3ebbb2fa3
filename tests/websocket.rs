//! STOMP over WebSocket (issue 17): the real `@stomp/stompjs` 7, from Node and from a page
//! in Debian's headless Chromium (tests/browser/stomp.mjs), sends receipted messages and
//! consumes them with acks through the pair's two WebSocket ports, riding through a kill -9
//! of the master; the upgrade echoes the STOMP subprotocol browsers require; bad bytes
//! at the port leave the broker serving everyone else.
//!
//! scripts/test-deps.sh (which scripts/test.sh runs) installs Chromium and the npm packages.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, Client, Pair, Site};

/// `[stomp]` extras: WebSocket on `port` (0: any).
fn ws_on(port: u16) -> String {
    format!("ws_bind = \"tcp://127.0.0.1:{port}\"")
}

/// Runs stomp.mjs in `mode` against `urls`; kills `on_half` when it says half its sends
/// are receipted; returns its JSON result.
fn stompjs(mode: &str, urls: &[String], count: usize, on_half: impl FnMut()) -> String {
    stompjs_trusting(None, mode, urls, count, on_half)
}

/// `stompjs`, trusting for `wss://` the certificates in `certs` (gen-certs.sh's): Node
/// the CA, Chromium the broker's certificate itself.
fn stompjs_trusting(
    certs: Option<&Path>,
    mode: &str,
    urls: &[String],
    count: usize,
    mut on_half: impl FnMut(),
) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/@stomp/stompjs").exists()
            && dir.join("node_modules/ws").exists()
            && (mode == "node" || Path::new("/usr/bin/chromium").exists()),
        "Chromium or the npm packages are missing: run scripts/test-deps.sh (scripts/test.sh does)"
    );
    let mut command = Command::new("node");
    if let Some(certs) = certs {
        command.env("STOMP_CA", certs.join("ca.pem"));
        command.env("TRUST_SPKI", common::certs::spki(&certs.join("broker.pem")));
    }
    let mut child = command
        .arg(dir.join("stomp.mjs"))
        .args([mode, &urls.join(","), &count.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut result = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        assert!(!line.starts_with("ERROR"), "stompjs got {line}");
        if line == "half" {
            on_half();
        } else if line.starts_with('{') {
            result = Some(line);
        }
    }
    assert!(child.wait().unwrap().success(), "stomp.mjs {mode} failed");
    result.expect("stomp.mjs printed its result")
}

/// Every message m0..m{count-1} once, on the pair's WebSocket ports through a kill -9 of
/// the master, with the client in `mode`.
fn rides_through_a_failover(mode: &str) {
    let count = 40;
    let slave_ws = free_port();
    let mut pair = Pair::start_each("", [&ws_on(0), &ws_on(slave_ws)], "", "");
    let master_ws = pair.master.wait_for_port("stomp ws");
    let urls = [
        format!("ws://127.0.0.1:{master_ws}/stomp"),
        format!("ws://127.0.0.1:{slave_ws}/ws"),
    ];
    let result = stompjs(mode, &urls, count, || pair.master.kill9());
    let seen: serde_json::Value = serde_json::from_str(&result).unwrap();
    let bodies: Vec<String> = serde_json::from_value(seen["bodies"].clone()).unwrap();
    let expected: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
    let mut sorted = bodies.clone();
    sorted.sort_by_key(|b| b[1..].parse::<usize>().unwrap());
    assert_eq!(sorted, expected, "every message once: {result}");
    assert_eq!(seen["version"], "1.2");
    assert!(
        seen["connects"].as_u64().unwrap() >= 2,
        "it reconnected: {result}"
    );
    assert_eq!(
        seen["url"],
        urls[1].as_str(),
        "it ended on the promoted slave"
    );
}

#[test]
fn stompjs_in_node_rides_through_a_failover() {
    rides_through_a_failover("node");
}

#[test]
fn stompjs_in_chromium_rides_through_a_failover() {
    rides_through_a_failover("browser");
}

/// Sends a raw upgrade request offering `protocols`; returns the response head.
fn upgrade(port: u16, protocols: &str) -> String {
    upgrade_on(
        &mut TcpStream::connect(("127.0.0.1", port)).unwrap(),
        protocols,
    )
}

fn upgrade_on(stream: &mut TcpStream, protocols: &str) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!(
        "GET /any/path HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {protocols}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_lowercase()
}

#[test]
fn the_upgrade_echoes_the_newest_stomp_subprotocol_offered_and_refuses_others() {
    let site = Site::new();
    let broker = site.start("", &ws_on(0), "");
    let port = broker.wait_for_port("stomp ws");
    let accepted = upgrade(port, "v10.stomp, v11.stomp, v12.stomp");
    assert!(accepted.starts_with("http/1.1 101"), "{accepted}");
    assert!(
        accepted.contains("sec-websocket-protocol: v12.stomp"),
        "{accepted}"
    );
    let older = upgrade(port, "v10.stomp");
    assert!(
        older.contains("sec-websocket-protocol: v10.stomp"),
        "{older}"
    );
    let refused = upgrade(port, "mqtt");
    assert!(refused.starts_with("http/1.1 400"), "{refused}");
}

#[test]
fn garbage_at_the_websocket_port_leaves_everyone_else_served() {
    let site = Site::new();
    let broker = site.start("", &ws_on(0), "");
    let port = broker.wait_for_port("stomp ws");
    let mut consumer = broker.client();
    consumer.subscribe("/queue/steady", "s", "auto", 10);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..20 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let garbage: Vec<u8> = (0..512 + round * 97)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        // Half after a valid upgrade (garbage as WebSocket frames), half before one.
        if round % 2 == 0 {
            let head = upgrade_on(&mut stream, "v12.stomp");
            assert!(head.starts_with("http/1.1 101"), "{head}");
        }
        let _ = stream.write_all(&garbage);
    }
    let mut producer = Client::connect(broker.port);
    producer.send_receipted("/queue/steady", "still here", true);
    let delivered = consumer.expect(mirrormq::stomp::Command::Message);
    assert_eq!(common::client::body(&delivered), "still here");
}

/// stompjs over `wss://` on one broker, from `mode` (node or browser).
fn speaks_over_wss(mode: &str) {
    let site = Site::new();
    let certs = common::certs::make(&site.dir.path().join("certs"), 30);
    let tls = common::certs::section(&certs, "");
    let broker = site.start("", "wss_bind = \"tcp://127.0.0.1:0\"", &tls);
    let port = broker.wait_for_port("stomp wss");
    let urls = [format!("wss://127.0.0.1:{port}/")];
    let result = stompjs_trusting(Some(&certs), mode, &urls, 6, || {});
    let seen: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(
        seen["bodies"],
        serde_json::json!(["m0", "m1", "m2", "m3", "m4", "m5"]),
        "{result}"
    );
}

#[test]
fn stompjs_in_node_speaks_over_wss() {
    speaks_over_wss("node");
}

#[test]
fn stompjs_in_chromium_speaks_over_wss() {
    speaks_over_wss("browser");
}

/// The failover client speaks `ws://` and `wss://` too (the benchmark's WebSocket
/// figures go through it): the CLI sends over one and receives over the other.
#[test]
fn the_cli_sends_over_ws_and_receives_over_wss() {
    let site = Site::new();
    let certs = common::certs::make(&site.dir.path().join("certs"), 30);
    let tls = common::certs::section(&certs, "");
    let binds = "ws_bind = \"tcp://127.0.0.1:0\"\nwss_bind = \"tcp://127.0.0.1:0\"";
    let broker = site.start("", binds, &tls);
    let (ws, wss) = (
        broker.wait_for_port("stomp ws"),
        broker.wait_for_port("stomp wss"),
    );
    let cli = |args: &[&str], url: String| {
        let output = Command::new(common::binary())
            .args(args)
            .args(["--url", &url, "--login", "admin", "--passcode", "admin"])
            .arg("--ca")
            .arg(certs.join("ca.pem"))
            .output()
            .unwrap();
        common::stdout_of(output)
    };
    let to = [
        "send",
        "--destination",
        "/queue/web",
        "--count",
        "3",
        "over ws",
    ];
    cli(&to, format!("failover:(ws://127.0.0.1:{ws}/stomp)"));
    let from = ["receive", "--destination", "/queue/web", "--count", "3"];
    let got = cli(&from, format!("failover:(wss://127.0.0.1:{wss})"));
    assert_eq!(got.lines().collect::<Vec<_>>(), ["over ws"; 3]);
}
