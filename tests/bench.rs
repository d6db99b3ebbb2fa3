//! `mirrormq bench` against a real broker: each workload runs and reports one JSON line.

mod common;

use common::Site;

fn bench(port: u16, args: &[&str]) -> String {
    let url = format!("tcp://127.0.0.1:{port}");
    let output = std::process::Command::new(common::binary())
        .args(["bench"])
        .args(args)
        .args(["--url", &url, "--json"])
        .output()
        .unwrap();
    common::stdout_of(output)
}

#[test]
fn every_workload_reports_its_rate_and_latency() {
    let site = Site::new();
    let broker = site.start_default();
    let produced = bench(
        broker.port,
        &[
            "produce",
            "--producers",
            "2",
            "--count",
            "200",
            "--window",
            "8",
            "--destination",
            "/queue/b",
        ],
    );
    assert!(
        produced.starts_with("{\"mode\":\"produce\",\"messages\":400,\"size\":1024,"),
        "{produced}"
    );
    assert!(produced.contains("\"receipt_us\":{\"p50\":"), "{produced}");
    let consumed = bench(
        broker.port,
        &["consume", "--count", "400", "--destination", "/queue/b"],
    );
    assert!(
        consumed.starts_with("{\"mode\":\"consume\",\"messages\":400,"),
        "{consumed}"
    );
    let roundtrip = bench(
        broker.port,
        &["roundtrip", "--count", "100", "--destination", "/queue/rt"],
    );
    assert!(
        roundtrip.starts_with("{\"mode\":\"roundtrip\",\"messages\":100,"),
        "{roundtrip}"
    );
    assert!(roundtrip.contains("\"e2e_us\":{\"p50\":"), "{roundtrip}");
    // Every message produced was consumed: nothing is left on the queue.
    let mut client = broker.client();
    client.subscribe("/queue/b", "s", "auto", 10);
    assert!(matches!(
        client.read(std::time::Duration::from_millis(200)),
        common::client::Got::Silent
    ));
}
