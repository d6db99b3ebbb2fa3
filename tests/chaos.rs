//! `mirrormq chaos`, short: each of the four faults once against a real pair under load.
//! scripts/chaos.sh runs the full 100 cycles.

mod common;

use std::process::Command;

#[test]
fn four_faults_lose_no_receipted_message() {
    let output = Command::new(common::binary())
        .args([
            "chaos",
            "--cycles",
            "4",
            "--interval-ms",
            "300",
            "--pause-ms",
            "2000",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mirrormq chaos");
    let report = String::from_utf8_lossy(&output.stdout);
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "chaos failed ({}):\n{report}\n{progress}",
        output.status
    );
    assert!(report.contains(", lost 0,"), "{report}");
    for fault in [
        "kill -9 master",
        "kill -9 slave",
        "SIGSTOP master",
        "SIGSTOP slave",
    ] {
        assert!(
            report.contains(&format!("{fault:<15} n=1 ")),
            "{fault}:\n{report}"
        );
    }
    let receipted: usize = report
        .split("receipted ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(receipted > 0, "the load made progress:\n{report}");
}
