//! The web console in a real browser: Debian's Chromium, headless, driven by
//! puppeteer-core (tests/browser/console.mjs). On a master's console an operator finds
//! the role and a queue's depth and purges the queue; on the slave's console, left open,
//! the role turns into master when the master is killed.
//!
//! scripts/test-deps.sh (which scripts/test.sh runs) installs Chromium and the npm package.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::admin::{admin_section, depth, eventually};
use common::{Client, Pair};

fn driver() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/puppeteer-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "Chromium or puppeteer-core is missing: run scripts/test-deps.sh (scripts/test.sh does)"
    );
    dir.join("console.mjs")
}

fn console(args: &[&str]) -> Command {
    let mut command = Command::new("node");
    command.arg(driver()).args(args);
    command
}

#[test]
fn an_operator_purges_a_queue_and_watches_the_slave_take_over() {
    let admin = admin_section("");
    let pair = Pair::start(&admin, &admin);
    let (mut master, slave) = (pair.master, pair.slave);
    let (master_admin, slave_admin) = (master.wait_for_port("admin"), slave.wait_for_port("admin"));
    let mut client = Client::connect(master.port);
    client.send_many("/queue/orders", 7);
    client.send_many("/queue/kept", 3);

    let master_url = format!("http://127.0.0.1:{master_admin}/");
    let shot = std::env::var("CONSOLE_SCREENSHOT").unwrap_or_default();
    let mut purge = console(&["purge", &master_url, "ops", "ops", "orders", "7", &shot]);
    let seen = common::stdout_of(purge.output().unwrap());
    assert!(seen.contains("\"role\":\"master-with-slave\""), "{seen}");
    assert!(seen.contains("1 slave(s) in sync"), "{seen}");
    // The purge was a record: the slave mirrors it.
    eventually(slave_admin, "/api/queues", |q| {
        depth(q, "orders") == Some(0) && depth(q, "kept") == Some(3)
    });

    let slave_url = format!("http://127.0.0.1:{slave_admin}/");
    let mut watch = console(&["master", &slave_url, "ops", "ops", "kept", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let shown = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(shown, "slave shown", "the slave's console did not load");
    master.kill9();
    let outcome = watch.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let mut errors = String::new();
    if let Some(mut stderr) = watch.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut errors);
    }
    assert!(outcome.success(), "{rest:?} {errors}");
    let seen = rest.join("\n");
    assert!(seen.contains("\"was\":\"slave-mirroring\""), "{seen}");
    assert!(seen.contains("\"role\":\"master-alone\""), "{seen}");
}

/// The console over HTTPS (`admin.tls`) in Chromium, which trusts only the broker's
/// certificate (its public key pinned, as trusting the CA would): the operator purges a
/// queue, and the role and the depths come over the same HTTPS origin.
#[test]
fn the_console_works_over_https() {
    let site = common::Site::new();
    let certs = common::certs::make(&site.dir.path().join("certs"), 30);
    let rest = format!(
        "{}{}{}",
        admin_section("tls = true"),
        common::admin::CLIENT_USER,
        common::certs::section(&certs, "")
    );
    let broker = site.start("", "", &rest);
    let port = broker.wait_for_port("admin");
    Client::connect(broker.port).send_many("/queue/orders", 3);
    let spki = common::certs::spki(&certs.join("broker.pem"));
    let url = format!("https://127.0.0.1:{port}/");
    let purge = console(&["purge", &url, "ops", "ops", "orders", "3"])
        .env("TRUST_SPKI", &spki)
        .output()
        .unwrap();
    let seen = common::stdout_of(purge);
    assert!(seen.contains("\"depth_after_purge\":\"0\""), "{seen}");
    // Without the pin the browser refuses the page, so the pin is what let it in.
    let untrusted = console(&["purge", &url, "ops", "ops", "orders", "0"])
        .output()
        .unwrap();
    assert!(!untrusted.status.success());
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("ERR_CERT"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
}
