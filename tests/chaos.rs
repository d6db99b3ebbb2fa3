//! `mirrormq chaos`, short: each of the four faults against a real pair under load, and
//! against a master with two slaves (every slave struck by both slave faults).
//! scripts/chaos.sh runs the full 100 cycles.

mod common;

use std::process::Command;

/// Runs `mirrormq chaos` for `cycles` with `slaves`; checks that nothing receipted was
/// lost and every fault struck `each` times.
fn chaos_loses_nothing(slaves: &str, cycles: &str, each: usize) {
    let output = Command::new(common::binary())
        .args([
            "chaos",
            "--slaves",
            slaves,
            "--cycles",
            cycles,
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
            report.contains(&format!("{fault:<15} n={each:<3} ")),
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

#[test]
fn four_faults_on_a_pair_lose_no_receipted_message() {
    chaos_loses_nothing("1", "4", 1);
}

#[test]
fn eight_faults_on_a_master_with_two_slaves_lose_no_receipted_message() {
    chaos_loses_nothing("2", "8", 2);
}
