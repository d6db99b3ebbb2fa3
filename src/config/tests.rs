//! Config tests: every error names the file, the key and the line.

use super::*;

const MINIMAL: &str = "[broker]\nname = \"solo\"\ndata_dir = \"data\"\n";

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, Path::new("/etc/mmq/broker.toml"))
}

fn error_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn minimal_config_takes_documented_defaults_and_resolves_paths() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.broker.data_dir, Path::new("/etc/mmq/data"));
    assert_eq!(config.broker.max_redeliveries, 6);
    assert_eq!(config.stomp.bind.socket_addr(), "127.0.0.1:61613");
    assert_eq!(config.stomp.max_frame_size, ByteSize(10 << 20));
    assert!(!config.requires_login());
    assert!(!config.replication.wait_for_slave);
    assert_eq!(config.replication.slave_ack, SlaveAck::Received);
    assert_eq!(config.broker.max_disk, ByteSize(32 << 30));
    assert_eq!(config.broker.compact_interval_ms, 30_000);
    assert_eq!(config.broker.selector_scan, 1000);
    assert_eq!(config.stomp.max_selector_depth, 32);
    assert_eq!(config.stomp.max_like_pattern, 256);
    let durable = parse(&format!(
        "{MINIMAL}[replication]\nslave_ack = \"durable\"\n"
    ))
    .unwrap();
    assert_eq!(durable.replication.slave_ack, SlaveAck::Durable);
}

#[test]
fn unknown_key_names_file_key_and_line() {
    let text = format!("{MINIMAL}[stomp]\nbind = \"tcp://127.0.0.1:1\"\nmax_frame_sise = 5\n");
    let message = error_of(&text);
    assert!(message.contains("/etc/mmq/broker.toml"), "{message}");
    assert!(message.contains("max_frame_sise"), "{message}");
    assert!(message.contains("line 6"), "{message}");
}

#[test]
fn bad_values_name_file_key_and_line() {
    let cases = [
        ("[stomp]\nbind = \"udp://x:1\"\n", "udp://x:1", "line 5"),
        (
            "[stomp]\nbind = \"tcp://x:99999\"\n",
            "invalid port",
            "line 5",
        ),
        (
            "[stomp]\nmax_frame_size = \"10 parsecs\"\n",
            "parsecs",
            "line 5",
        ),
        ("worker_threads = 0\n", "broker.worker_threads", "line 4"),
        ("max_disk = \"64MiB\"\n", "broker.max_disk", "line 4"),
        ("[stomp]\nmax_headers = 0\n", "stomp.max_headers", "line 5"),
        ("selector_scan = 0\n", "broker.selector_scan", "line 4"),
        (
            "[stomp]\nmax_selector_depth = 129\n",
            "stomp.max_selector_depth",
            "line 5",
        ),
        (
            "[stomp]\nmax_like_pattern = 0\n",
            "stomp.max_like_pattern",
            "line 5",
        ),
        ("[stomp]\nmax_browse = 0\n", "stomp.max_browse", "line 5"),
        (
            "[stomp]\nheartbeat_grace = 0.5\n",
            "stomp.heartbeat_grace",
            "line 5",
        ),
        (
            "[stomp]\nmax_connections = -3\n",
            "max_connections",
            "line 5",
        ),
        (
            "[replication]\nslave_ack = \"fsynced\"\n",
            "unknown variant `fsynced`, expected `received` or `durable`",
            "line 5",
        ),
        (
            "[replication]\nmaster_connector_uri = \"tcp://h:1\"\nuser = \"x\"\n",
            "replication.user",
            "line 6",
        ),
    ];
    for (tail, must_name, line) in cases {
        let message = error_of(&format!("{MINIMAL}{tail}"));
        assert!(message.contains("broker.toml"), "{tail}: {message}");
        assert!(message.contains(must_name), "{tail}: {message}");
        assert!(message.contains(line), "{tail}: {message}");
    }
}

#[test]
fn missing_required_key_is_named() {
    let message = error_of("[broker]\nname = \"x\"\n");
    assert!(message.contains("data_dir"), "{message}");
}

#[test]
fn byte_sizes_and_endpoints_parse() {
    assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(64 << 10)));
    assert_eq!(ByteSize::parse("2 GiB"), Ok(ByteSize(2 << 30)));
    assert_eq!(ByteSize::parse("100"), Ok(ByteSize(100)));
    assert!(ByteSize::parse("1TB").is_err());
    assert!(ByteSize::parse("99999999999999999999GiB").is_err());
    assert_eq!(
        Endpoint::parse("tcp://[::1]:7").unwrap().socket_addr(),
        "[::1]:7"
    );
    assert!(Endpoint::parse("tcp://:7").is_err());
    assert!(Endpoint::parse("tcp://host").is_err());
}

#[test]
fn users_authenticate_and_passwords_never_print() {
    let text = format!(
        "{MINIMAL}[[users]]\nname = \"admin\"\npassword = \"s3cret\"\n[[users]]\nname = \"app\"\npassword = \"pw\"\n"
    );
    let config = parse(&text).unwrap();
    assert!(config.requires_login());
    assert!(config.authenticate("admin", "s3cret"));
    assert!(config.authenticate("app", "pw"));
    assert!(!config.authenticate("admin", "pw"));
    assert!(!config.authenticate("admin", "s3cre"));
    assert!(!config.authenticate("", ""));
    assert!(!format!("{config:?}").contains("s3cret"));
    let slave = format!(
        "{MINIMAL}[replication]\nmaster_connector_uri = \"tcp://127.0.0.1:1\"\nuser = \"r\"\npassword = \"repl-s3cret\"\n"
    );
    let config = parse(&slave).unwrap();
    assert_eq!(
        config.replication.password.as_ref().unwrap().0,
        "repl-s3cret"
    );
    assert!(!format!("{config:?}").contains("repl-s3cret"));
}

#[test]
fn a_link_over_tls_needs_a_certificate_and_a_ca() {
    let link = "[replication]\nbind = \"tcp://127.0.0.1:0\"\ntls = true\n";
    let tls = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
    let without_cert = error_of(&format!("{MINIMAL}{link}ca = \"ca.pem\"\n"));
    assert!(
        without_cert.contains("replication.tls") && without_cert.contains("[tls]"),
        "{without_cert}"
    );
    let without_ca = error_of(&format!("{MINIMAL}{link}{tls}"));
    assert!(without_ca.contains("replication.ca"), "{without_ca}");
    let config = parse(&format!("{MINIMAL}{link}ca = \"ca.pem\"\n{tls}")).unwrap();
    assert!(config.replication.tls);
    assert!(
        config.replication.ca.unwrap().is_absolute(),
        "resolved against the config's folder"
    );
}

#[test]
fn every_user_of_tls_without_a_tls_section_is_named() {
    let admin = "[admin]\nbind = \"tcp://127.0.0.1:0\"\ntls = true\n[[users]]\nname = \"ops\"\npassword = \"p\"\nadmin = true\n";
    for (section, key) in [
        (
            "[stomp]\ntls_bind = \"tcp://127.0.0.1:0\"\n",
            "stomp.tls_bind",
        ),
        (
            "[stomp]\nwss_bind = \"tcp://127.0.0.1:0\"\n",
            "stomp.wss_bind",
        ),
        (admin, "admin.tls"),
        (
            "[replication]\ntls = true\nca = \"ca.pem\"\n",
            "replication.tls",
        ),
    ] {
        let error = error_of(&format!("{MINIMAL}{section}"));
        assert!(error.contains(key) && error.contains("[tls]"), "{error}");
    }
}

#[test]
fn duplicate_user_names_are_refused() {
    let text = format!(
        "{MINIMAL}[[users]]\nname = \"a\"\npassword = \"1\"\n[[users]]\nname = \"a\"\npassword = \"2\"\n"
    );
    assert!(error_of(&text).contains("unique"));
}

#[test]
fn constant_time_eq_matches_plain_equality() {
    for (a, b) in [
        ("", ""),
        ("a", ""),
        ("ab", "ab"),
        ("ab", "ac"),
        ("abc", "ab"),
    ] {
        assert_eq!(
            constant_time_eq(a.as_bytes(), b.as_bytes()),
            a == b,
            "{a} {b}"
        );
    }
}
