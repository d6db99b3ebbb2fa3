//! TLS on the client ports (issue 17): `stomp.tls_bind` with `[tls]`, certificates made
//! by scripts/gen-certs.sh (openssl). A client on Python's ssl module (OpenSSL,
//! tests/apps/tls_client.py) sends and receives; plain TCP against the TLS port is closed
//! and logged; a certificate from another CA, or an expired one, is refused with a clear
//! line on both ends; with `client_ca` a client without a certificate is refused and one
//! with it served; random bytes at the port leave everyone else served. stompjs over
//! `wss://` is in tests/websocket.rs.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use common::{Broker, Site};

/// A broker with a TLS port using the certificates in `certs`; `extra` goes in `[tls]`.
fn tls_broker(site: &Site, certs: &Path, extra: &str) -> (Broker, u16) {
    let tls = common::certs::section(certs, extra);
    let broker = site.start("", "tls_bind = \"tcp://127.0.0.1:0\"", &tls);
    let port = broker.wait_for_port("stomp tls");
    (broker, port)
}

/// Runs the Python TLS client; returns what it printed.
fn client(port: u16, ca: &Path, identity: Option<&Path>) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = format!("{root}/target/test-deps/venv/bin/python");
    assert!(
        Path::new(&python).exists(),
        "{python} is missing: run scripts/test-deps.sh (scripts/test.sh does)"
    );
    let mut command = Command::new(python);
    command
        .arg(format!("{root}/tests/apps/tls_client.py"))
        .args(["127.0.0.1", &port.to_string()])
        .arg(ca);
    if let Some(dir) = identity {
        command
            .arg(dir.join("client.pem"))
            .arg(dir.join("client.key"));
    }
    let output = command.output().expect("python runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_tls_client_sends_and_receives() {
    let site = Site::new();
    let dir = common::certs::make(&site.dir.path().join("certs"), 30);
    let (_broker, port) = tls_broker(&site, &dir, "");
    let seen = client(port, &dir.join("ca.pem"), None);
    assert_eq!(seen.trim(), "got over tls");
}

#[test]
fn plain_tcp_at_the_tls_port_is_closed_and_logged() {
    let site = Site::new();
    let dir = common::certs::make(&site.dir.path().join("certs"), 30);
    let (broker, port) = tls_broker(&site, &dir, "");
    let answer = common::raw_exchange(port, b"CONNECT\naccept-version:1.2\n\n\0");
    assert!(
        !answer.contains("CONNECTED"),
        "a plaintext client was served"
    );
    assert!(broker
        .log
        .wait_for("stomp tls: connection from 127.0.0.1", common::PATIENCE)
        .is_some_and(|line| line.contains("TLS handshake failed")));
}

#[test]
fn a_certificate_from_another_ca_or_an_expired_one_is_refused_on_both_ends() {
    let site = Site::new();
    let dir = common::certs::make(&site.dir.path().join("certs"), 30);
    let stranger = common::certs::make(&site.dir.path().join("other"), 30);
    let (broker, port) = tls_broker(&site, &dir, "");
    let seen = client(port, &stranger.join("ca.pem"), None);
    assert!(
        seen.starts_with("failed:") && seen.contains("certificate verify failed"),
        "{seen}"
    );
    assert!(broker
        .log
        .wait_for("TLS handshake failed", common::PATIENCE)
        .is_some());

    let expired_site = Site::new();
    let expired = common::certs::make(&expired_site.dir.path().join("certs"), -1);
    let (broker, port) = tls_broker(&expired_site, &expired, "");
    let seen = client(port, &expired.join("ca.pem"), None);
    assert!(seen.contains("certificate has expired"), "{seen}");
    assert!(broker
        .log
        .wait_for("TLS handshake failed", common::PATIENCE)
        .is_some());
}

#[test]
fn with_client_ca_only_a_client_with_a_certificate_is_served() {
    let site = Site::new();
    let dir = common::certs::make(&site.dir.path().join("certs"), 30);
    let client_ca = format!("client_ca = \"{}\"", dir.join("ca.pem").display());
    let (broker, port) = tls_broker(&site, &dir, &client_ca);
    let refused = client(port, &dir.join("ca.pem"), None);
    assert!(refused.starts_with("failed:"), "{refused}");
    assert!(broker
        .log
        .wait_for("TLS handshake failed", common::PATIENCE)
        .is_some());
    let served = client(port, &dir.join("ca.pem"), Some(&dir));
    assert_eq!(served.trim(), "got over tls");
}

#[test]
fn random_bytes_at_the_tls_port_leave_everyone_else_served() {
    let site = Site::new();
    let dir = common::certs::make(&site.dir.path().join("certs"), 30);
    let (broker, port) = tls_broker(&site, &dir, "");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20usize {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // Half start like a TLS record (handshake, TLS 1.2), then go wrong.
        let mut garbage: Vec<u8> = if round % 2 == 0 {
            vec![0x16, 0x03, 0x03, 0x01, 0x00]
        } else {
            Vec::new()
        };
        garbage.extend((0..300 + round * 61).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        }));
        let _ = stream.write_all(&garbage);
    }
    assert_eq!(
        client(port, &dir.join("ca.pem"), None).trim(),
        "got over tls"
    );
    broker
        .client()
        .send_receipted("/queue/plain", "still", true);
    assert_eq!(broker.client().drain("/queue/plain", 1), ["still"]);
}

/// The CLI (the failover client) over `ssl://` with `--ca`: a message sent is received;
/// without a CA it says how to give one.
#[test]
fn the_cli_speaks_ssl_urls_with_a_ca() {
    let site = Site::new();
    let dir = common::certs::make(&site.dir.path().join("certs"), 30);
    let (_broker, port) = tls_broker(&site, &dir, "");
    let url = format!("failover:(ssl://127.0.0.1:{port})?randomize=false");
    let ca = dir.join("ca.pem");
    let cli = |args: &[&str], ca: Option<&Path>| {
        let mut command = Command::new(common::binary());
        command
            .env_remove("MIRRORMQ_CA")
            .args(args)
            .args(["--url", &url]);
        command.args(["--login", "admin", "--passcode", "admin"]);
        if let Some(ca) = ca {
            command.arg("--ca").arg(ca);
        }
        command.output().unwrap()
    };
    common::stdout_of(cli(
        &["send", "--destination", "/queue/cli", "secret"],
        Some(&ca),
    ));
    let got = cli(
        &["receive", "--destination", "/queue/cli", "--count", "1"],
        Some(&ca),
    );
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "secret");
    let without = cli(&["send", "--destination", "/queue/cli", "x"], None);
    assert!(!without.status.success());
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("--ca FILE or MIRRORMQ_CA"),
        "{}",
        String::from_utf8_lossy(&without.stderr)
    );
}

/// The admin listener over HTTPS (`admin.tls`): `mirrormq status` and `mirrormq admin`
/// speak `https://` with `--ca`; plain HTTP at the port gets no answer and is logged;
/// a CA that did not sign the certificate is refused, the login never sent.
#[test]
fn the_admin_api_speaks_https() {
    let site = Site::new();
    let dir = common::certs::make(&site.dir.path().join("certs"), 30);
    let stranger = common::certs::make(&site.dir.path().join("stranger"), 30);
    let rest = format!(
        "{}{}{}",
        common::admin::admin_section("tls = true"),
        common::admin::CLIENT_USER,
        common::certs::section(&dir, "")
    );
    let broker = site.start("", "", &rest);
    let port = broker.wait_for_port("admin");
    assert!(broker.log.text().contains("admin: HTTPS"));
    broker
        .client()
        .send_receipted("/queue/audited", "kept", true);
    // `mirrormq COMMAND --admin URL ... [OPERATION...]`.
    let cli = |args: &[&str], ca: &Path| {
        Command::new(common::binary())
            .arg(args[0])
            .args(["--admin", &format!("https://127.0.0.1:{port}")])
            .args(["--login", "ops", "--passcode", "ops"])
            .arg("--ca")
            .arg(ca)
            .args(&args[1..])
            .env_remove("MIRRORMQ_CA")
            .output()
            .unwrap()
    };
    let text = common::stdout_of(cli(&["status", "--json"], &dir.join("ca.pem")));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["status"]["role"], "master-alone");
    let shown = common::stdout_of(cli(&["admin", "browse", "audited"], &dir.join("ca.pem")));
    assert!(shown.contains("kept"), "{shown}");

    let refused = cli(&["status"], &stranger.join("ca.pem"));
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("invalid peer certificate"), "{said}");

    // Plain HTTP at the HTTPS port: no HTTP answer, and a line in the log.
    let answer = common::raw_exchange(port, b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!answer.starts_with("HTTP/"), "{answer:?}");
    assert!(broker
        .log
        .wait_for("admin: connection from", common::PATIENCE)
        .is_some_and(|line| line.contains("TLS handshake failed")));
}
