//! The replication link over TLS (issue 17): `replication.tls` with `replication.ca`,
//! certificates from scripts/gen-certs.sh. A tap between the slave and the master keeps
//! every byte of the link. Over TLS neither the slave's password nor a message body
//! crosses in clear (on the copy streams of the slave's first sync, nor on the live
//! link), and the slave takes over after a kill -9 of the master with every
//! receipted message; without TLS the same tap sees both (so the check can fail). A
//! slave that trusts another CA is refused before it says a word, so its password never
//! leaves it; a broker that cannot trust a peer's certificate will not start beside it.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};

use common::hostile::{assert_never_panicked, contains, mutate, say_and_hang_up, seed, Rng};
use common::proxy::Proxy;
use common::{free_port, Broker, Site, FAST_LINK};

const PASSWORD: &str = "replication-secret-7f3a";
const MARKER: &str = "precious-payload-e1d2";

/// `[replication]` lines for a link over TLS trusting `ca`, or none for plain TCP.
fn link_tls(ca: Option<&Path>) -> String {
    ca.map_or(String::new(), |ca| {
        format!("tls = true\nca = \"{}\"", ca.display())
    })
}

/// The users both brokers know: the slave's credentials, which its master checks, and
/// the tests' clients' login.
fn users() -> String {
    format!("[[users]]\nname = \"replicator\"\npassword = \"{PASSWORD}\"\n[[users]]\nname = \"admin\"\npassword = \"admin\"")
}

/// A master's config on `site`: `[tls]` from `certs`, the link over TLS if `ca` is set,
/// and `extra` replication lines.
fn master_config(site: &Site, certs: &Path, ca: Option<&Path>, extra: &str) -> PathBuf {
    let rest = format!(
        "[replication]\nbind = \"tcp://127.0.0.1:0\"\n{FAST_LINK}\n{}\n{extra}\n{}\n{}",
        link_tls(ca),
        users(),
        common::certs::section(certs, "")
    );
    site.write_config("broker.toml", "", "", &rest)
}

/// A slave of the master whose replication listener is at `port`.
fn slave_config(site: &Site, port: u16, certs: &Path, ca: Option<&Path>) -> PathBuf {
    let rest = format!(
        "[replication]\nmaster_connector_uri = \"tcp://127.0.0.1:{port}\"\nuser = \"replicator\"\npassword = \"{PASSWORD}\"\nbind = \"tcp://127.0.0.1:0\"\n{FAST_LINK}\n{}\n{}\n{}",
        link_tls(ca),
        users(),
        common::certs::section(certs, "")
    );
    site.write_config_on_port(free_port(), "", "", &rest)
}

/// A master, a tap in front of its replication listener, and a slave dialling the tap.
struct Tapped {
    master: Broker,
    slave: Broker,
    tap: Proxy,
    _sites: [Site; 2],
}

/// Starts the three; the slave's link is over TLS when `tls`. The master takes the
/// receipted `preload` first, so the empty slave copies its store over copy streams
/// before it mirrors. Waits until it mirrors.
fn tapped_pair(certs: &Path, tls: bool, preload: &[String]) -> Tapped {
    let ca = certs.join("ca.pem");
    let ca = tls.then_some(ca.as_path());
    let master_site = Site::new();
    let mut master = Broker::spawn(&master_config(&master_site, certs, ca, ""));
    let tap = Proxy::tapped(master.wait_for_port("replication"));
    master.wait_until_listening();
    let mut producer = master.client();
    for body in preload {
        producer.send_receipted("/queue/secrets", body, true);
    }
    let slave_site = Site::new();
    let slave = Broker::spawn(&slave_config(&slave_site, tap.port, certs, ca));
    slave.wait_for_role("slave-mirroring");
    Tapped {
        master,
        slave,
        tap,
        _sites: [master_site, slave_site],
    }
}

fn certs_in(site: &Site, name: &str) -> PathBuf {
    common::certs::make(&site.dir.path().join(name), 30)
}

#[test]
fn over_tls_the_link_carries_nothing_in_clear_and_the_slave_takes_over() {
    let site = Site::new();
    let certs = certs_in(&site, "certs");
    let sent: Vec<String> = (0..50).map(|i| format!("{MARKER}-{i}")).collect();
    let mut pair = tapped_pair(&certs, true, &sent[..25]);
    assert!(pair.master.log.text().contains("the link is TLS both ways"));
    assert!(pair.slave.log.text().contains("copied the master's store"));
    let mut producer = pair.master.client();
    for body in &sent[25..] {
        producer.send_receipted("/queue/secrets", body, true);
    }

    pair.master.kill9();
    pair.slave.wait_for_role("master-alone");
    pair.slave.wait_until_listening();
    assert_eq!(pair.slave.client().drain("/queue/secrets", 50), sent);

    let (to_master, to_slave) = (pair.tap.sent(), pair.tap.received());
    // Both directions start with a TLS handshake record, and the bodies did cross.
    assert_eq!(to_master.first(), Some(&0x16), "the slave opened with TLS");
    assert_eq!(
        to_slave.first(),
        Some(&0x16),
        "the master answered with TLS"
    );
    assert!(to_slave.len() > sent.iter().map(String::len).sum::<usize>());
    assert!(
        !contains(&to_master, PASSWORD.as_bytes()),
        "password in clear"
    );
    assert!(!contains(&to_slave, MARKER.as_bytes()), "a body in clear");
}

/// The control: the same tap on a plain link sees the password and the bodies.
#[test]
fn without_tls_the_same_tap_sees_the_password_and_the_bodies() {
    let site = Site::new();
    let certs = certs_in(&site, "certs");
    let pair = tapped_pair(&certs, false, &[]);
    pair.master
        .client()
        .send_receipted("/queue/secrets", MARKER, true);
    assert!(contains(&pair.tap.sent(), PASSWORD.as_bytes()));
    assert!(contains(&pair.tap.received(), MARKER.as_bytes()));
    drop(pair.slave);
}

#[test]
fn a_slave_trusting_another_ca_is_refused_before_it_sends_its_password() {
    let site = Site::new();
    let certs = certs_in(&site, "certs");
    let stranger = certs_in(&site, "stranger");
    let master_site = Site::new();
    let mut master = Broker::spawn(&master_config(
        &master_site,
        &certs,
        Some(&certs.join("ca.pem")),
        "",
    ));
    let tap = Proxy::tapped(master.wait_for_port("replication"));
    master.wait_until_listening();
    let slave_site = Site::new();
    // The slave's own certificate is fine; it trusts the wrong CA for its master's.
    let config = slave_config(
        &slave_site,
        tap.port,
        &certs,
        Some(&stranger.join("ca.pem")),
    );
    let mut slave = Broker::spawn(&config);
    let status = slave.wait();
    assert_eq!(status.code(), Some(mirrormq::repl::role::EXIT_REFUSED));
    let said = slave.log.text();
    assert!(
        said.contains("TLS handshake failed") && said.contains("invalid peer certificate"),
        "{said}"
    );
    assert!(master
        .log
        .wait_for("TLS handshake failed", common::PATIENCE)
        .is_some());
    let to_master = tap.sent();
    assert_eq!(to_master.first(), Some(&0x16), "a TLS ClientHello went out");
    assert!(!contains(&to_master, PASSWORD.as_bytes()));
    // The master serves its clients throughout.
    master.client().send_receipted("/queue/q", "served", true);
}

/// One broker runs with the certificate in `running.0` (link over TLS trusting
/// `running.1`, if set); a second, with `second` alike, names it as its peer and must
/// refuse to start beside it, taking it for a possible live master. Returns what the
/// second logged.
fn refused_beside(running: (&Path, Option<&Path>), second: (&Path, Option<&Path>)) -> String {
    let running_site = Site::new();
    let first = Broker::start(&master_config(&running_site, running.0, running.1, ""));
    let port = first.wait_for_port("replication");
    let peer_site = Site::new();
    let peers = format!("peers = [\"tcp://127.0.0.1:{port}\"]");
    let mut beside = Broker::spawn(&master_config(&peer_site, second.0, second.1, &peers));
    let status = beside.wait();
    let said = beside.log.text();
    assert_eq!(
        status.code(),
        Some(mirrormq::repl::role::EXIT_REFUSED),
        "{said}"
    );
    assert!(said.contains("may be a live master"), "{said}");
    assert!(!said.contains("stomp: listening"), "{said}");
    assert_never_panicked(&first, "the running broker");
    said
}

/// A probe dials as the link does: a peer whose certificate cannot be trusted may be a
/// live master, so a broker with that peer refuses to start rather than make two.
#[test]
fn a_peer_whose_certificate_cannot_be_trusted_counts_as_a_live_master() {
    let site = Site::new();
    let certs = certs_in(&site, "certs");
    let stranger = certs_in(&site, "stranger");
    let said = refused_beside(
        (&stranger, Some(&stranger.join("ca.pem"))),
        (&certs, Some(&certs.join("ca.pem"))),
    );
    assert!(said.contains("invalid peer certificate"), "{said}");
}

/// Random bytes, and the slave's own TLS handshake mutated, at the master's TLS
/// replication port: each is refused and logged, and the link and the clients carry on.
#[test]
fn random_and_mutated_bytes_at_the_tls_replication_port_leave_the_link_serving() {
    let site = Site::new();
    let certs = certs_in(&site, "certs");
    let pair = tapped_pair(&certs, true, &[]);
    let port = pair.master.wait_for_port("replication");
    // The slave's ClientHello: the first TLS record it sent.
    let opened = pair.tap.sent();
    let record = 5 + usize::from(u16::from_be_bytes([opened[3], opened[4]]));
    let hello = opened[..record.min(opened.len())].to_vec();
    let seed = seed();
    for case in 0..40 {
        let mut rng = Rng::for_case(seed, case);
        let bytes = if case % 2 == 0 {
            mutate(&mut rng, hello.clone(), 8)
        } else {
            let n = rng.range(1, 2048);
            rng.bytes(n)
        };
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        say_and_hang_up(&mut stream, &mut rng, &bytes)
            .unwrap_or_else(|why| panic!("case {case}: the master kept the connection: {why}"));
    }
    assert!(pair
        .master
        .log
        .wait_for("TLS handshake failed", common::PATIENCE)
        .is_some());
    assert_never_panicked(&pair.master, "the master");
    // The slave still mirrors: a receipt needs it, and it holds what was receipted.
    pair.master
        .client()
        .send_receipted("/queue/after", "still mirrored", true);
    let text = pair.master.log.text();
    assert_eq!(
        text.matches("-> master-alone").count(),
        1,
        "only at the start, never because the slave was lost:\n{text}"
    );
    let mut master = pair.master;
    master.kill9();
    let mut slave = pair.slave;
    slave.wait_for_role("master-alone");
    slave.wait_until_listening();
    assert_eq!(slave.client().drain("/queue/after", 1), ["still mirrored"]);
}

/// TLS on one broker and not on its peer (a rolling change of `replication.tls`): each
/// takes the other for a possible live master, so neither starts beside the other,
/// whichever side has TLS; two masters never come of it.
#[test]
fn a_peer_on_the_other_side_of_replication_tls_counts_as_a_live_master() {
    let site = Site::new();
    let certs = certs_in(&site, "certs");
    let ca = certs.join("ca.pem");
    refused_beside((&certs, None), (&certs, Some(&ca)));
    refused_beside((&certs, Some(&ca)), (&certs, None));
}
