//! The command line as an operator meets it: a refused login fails at once and says so
//! once, a wrong port says what it is trying, `status` and `admin` use the admin API,
//! and `verify` and `broker` say what is wrong with a folder that is not a store.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Output, Stdio};

use common::admin::{admin_section, CLIENT_USER};
use common::{binary, free_port, Client, Site, PATIENCE};

fn run(args: &[&str]) -> Output {
    Process::new(binary()).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_refused_login_fails_at_once_and_is_said_once() {
    let site = Site::new();
    let broker = site.start("", "", "[[users]]\nname = \"app\"\npassword = \"right\"");
    let url = format!("tcp://127.0.0.1:{}", broker.port);
    let output = run(&[
        "send",
        "--url",
        &url,
        "--login",
        "app",
        "--passcode",
        "wrong",
        "--destination",
        "/queue/x",
        "body",
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.matches("access refused").count(), 1, "{stderr}");
    assert!(!stderr.contains("protocol:"), "{stderr}");
    let output = run(&[
        "receive",
        "--url",
        &url,
        "--login",
        "app",
        "--passcode",
        "wrong",
        "--destination",
        "/queue/x",
        "--count",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("access refused"));
}

#[test]
fn a_wrong_port_says_what_it_is_trying() {
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut child = Process::new(binary())
        .args(["send", "--url", &url, "--destination", "/queue/x", "body"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = std::time::Instant::now();
    let mut said = Vec::new();
    while said.len() < 2 && started.elapsed() < PATIENCE {
        match lines.next() {
            Some(Ok(line)) if line.contains("retrying") => said.push(line),
            Some(_) => {}
            None => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(said[1].contains(&format!("127.0.0.1:{port}")), "{said:?}");
}

#[test]
fn status_and_admin_use_the_admin_api() {
    let site = Site::new();
    let broker = site.start("", "", &format!("{}{CLIENT_USER}", admin_section("")));
    let api = format!("http://127.0.0.1:{}", broker.wait_for_port("admin"));
    let mut client = Client::connect(broker.port);
    client.send_many("/queue/cli", 4);
    let admin = |args: &[&str]| {
        let mut all = vec!["--admin", &api, "--login", "ops", "--passcode", "ops"];
        all.extend_from_slice(args);
        all.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let status = |extra: &[&str]| {
        let mut args = vec!["status".to_string()];
        args.extend(admin(extra));
        let output = Process::new(binary()).args(&args).output().unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    let table = status(&[]);
    assert!(table.contains("(master-alone)"), "{table}");
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("cli "))
        .unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("4"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&status(&["--json"])).unwrap();
    assert_eq!(json["status"]["role"], "master-alone");
    assert_eq!(json["queues"][0]["depth"], 4);

    let call = |args: &[&str]| {
        let mut all = vec!["admin".to_string()];
        all.extend(admin(args));
        Process::new(binary()).args(&all).output().unwrap()
    };
    let browsed = call(&["browse", "cli", "--limit", "2"]);
    let shown = text(&browsed.stdout);
    assert_eq!(shown.lines().count(), 2, "{shown}");
    assert!(shown.lines().next().unwrap().ends_with("\tm0"), "{shown}");
    let purged = call(&["purge", "cli"]);
    assert_eq!(text(&purged.stdout).trim(), "purged 4 message(s) from cli");
    let missing = call(&["delete", "nothing"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("404: no queue named nothing"));
    assert!(status(&[])
        .lines()
        .any(|l| l.trim_start().starts_with("cli ") && l.split_whitespace().nth(1) == Some("0")));

    let anonymous = run(&["status", "--admin", &api]);
    assert_eq!(anonymous.status.code(), Some(2));
    assert!(text(&anonymous.stderr).contains("an admin login is needed"));
}

#[test]
fn verify_and_broker_say_what_is_wrong_with_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = run(&["verify", "--data-dir", empty.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("not a mirrormq store: it has no store.toml file"));
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let output = run(&["verify", "--data-dir", file.to_str().unwrap()]);
    assert!(text(&output.stderr).contains("is a file, not a folder"));

    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        "[broker]\nname = \"b\"\ndata_dir = \"file\"\n[stomp]\nbind = \"tcp://127.0.0.1:0\"\n",
    )
    .unwrap();
    let output = run(&["broker", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("is a file, not a folder"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn logs_speak_plainly_and_warn_of_one_copy_only_where_it_was_not_chosen() {
    let site = Site::new();
    let standalone = site.start_default();
    let mut client = Client::connect(standalone.port);
    client.send_many("/queue/solo", 1);
    let log = standalone.log.text();
    assert!(
        log.contains("standalone (no [replication] bind or peers)"),
        "{log}"
    );
    assert!(!log.contains("ONE copy"), "{log}");

    let pair = common::Pair::start("", "");
    let (mut master, slave) = (pair.master, pair.slave);
    master.kill9();
    slave.wait_for_role("master-alone");
    slave
        .log
        .wait_for(
            "promoted with no slave in sync: messages have ONE copy",
            PATIENCE,
        )
        .expect("the promoted slave warns that it serves alone");
    for log in [master.log.text(), slave.log.text()] {
        for debug in ["Append {", "Replace {", "Seq(", "Epoch(", "Master {"] {
            assert!(!log.contains(debug), "{debug} in:\n{log}");
        }
    }
}
