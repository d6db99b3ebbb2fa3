//! Authentication and access control, at both ports: passwords never reach the log,
//! credentials are compared in constant time and exactly (a password padded with NULs
//! is not the password), and no client can act on another's subscription or
//! transaction.
//!
//! The padded password began as a bug found in src/; it is fixed.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::client::{body, Got};
use common::hostile::{
    contains, hello, parse_master_output, read_master_message, say_and_hang_up, slave_frame, Rng,
    USERS,
};
use common::{Broker, Client, Site, PATIENCE};
use mirrormq::repl::message::{MasterMessage, PROTOCOL_VERSION};
use mirrormq::stomp::Command;

const SECRET: &str = "s3cr3t-Pw-7f3a9c-k0ff";
/// A wrong guess that is almost the secret.
const NEAR_MISS: &str = "s3cr3t-Pw-7f3a9c-k0fX";

fn assert_no_credentials(broker: &Broker, who: &str) {
    let log = broker.log.text();
    for secret in [SECRET, NEAR_MISS] {
        assert!(
            !log.contains(secret),
            "{who} logged the password {secret}:\n{log}"
        );
    }
}

#[test]
fn passwords_never_reach_the_log_even_at_trace_level() {
    let users = format!("[[users]]\nname = \"operator\"\npassword = \"{SECRET}\"");
    let master_site = Site::new();
    let config = master_site.write_config(
        "broker.toml",
        "",
        "",
        &format!(
            "[replication]\nbind = \"tcp://127.0.0.1:0\"\n{}\n{users}",
            common::FAST_LINK
        ),
    );
    let mut master = Broker::spawn_with_log_level(&config, "trace");
    master.wait_until_listening();
    let port = master.port;
    let replication = master.wait_for_port("replication");

    // STOMP: good logins in every version, then a duplicate CONNECT.
    for version in ["1.0", "1.1", "1.2"] {
        let mut client = Client::connect_with(
            port,
            &[
                ("accept-version", version),
                ("login", "operator"),
                ("passcode", SECRET),
            ],
        );
        client.send_receipted("/queue/q", &format!("v{version}"), true);
        if version == "1.2" {
            client.send_frame(
                Command::Connect,
                &[("login", "operator"), ("passcode", SECRET)],
                b"",
            );
            client.expect_error("duplicate CONNECT");
        } else {
            client.disconnect();
        }
    }
    // STOMP: refused and malformed logins that carry the secret or a near miss.
    let refused: Vec<Vec<u8>> = vec![
        format!("CONNECT\naccept-version:1.2\nlogin:operator\npasscode:{NEAR_MISS}\n\n\0").into(),
        format!("STOMP\naccept-version:1.2\nlogin:{SECRET}\npasscode:{NEAR_MISS}\n\n\0").into(),
        format!("CONNECT\nlogin:operator\npasscode:{SECRET}x\n\n\0").into(),
        format!("CONNECT\nlogin:nobody\npasscode:{SECRET}\n\n\0").into(),
        [
            format!("CONNECT\nlogin:operator\npasscode:{SECRET}").as_bytes(),
            b"\xff\n\n\0",
        ]
        .concat(),
        format!("CONNECT\nlogin:operator\npasscode {SECRET}\n\n\0").into(),
        format!(
            "CONNECT\nlogin:operator\npasscode:{SECRET}\nh:{}\n\n\0",
            "v".repeat(20_000)
        )
        .into(),
        format!("CONNECT\nlogin:operator\npasscode:{SECRET}\n\n").into(), // never finished
    ];
    for bytes in &refused {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (answer, _) =
            say_and_hang_up(&mut stream, &mut Rng::for_case(1, 1), bytes).expect("closed");
        assert!(
            contains(&answer, b"ERROR"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }

    // Replication: a good Hello (then hang up), a near miss, and a Hello whose password
    // is not UTF-8.
    let mut good = TcpStream::connect(("127.0.0.1", replication)).unwrap();
    good.write_all(&slave_frame(&hello(
        "operator",
        SECRET,
        PROTOCOL_VERSION,
        "peer",
    )))
    .unwrap();
    // An empty store is told to copy the master's first: the credentials passed.
    assert!(matches!(
        read_master_message(&mut good).unwrap().0,
        MasterMessage::CopyStore
    ));
    drop(good);
    master
        .log
        .wait_for("it copies the master's store", PATIENCE)
        .expect("the peer is let go");
    let mut not_utf8 = slave_frame(&hello("operator", SECRET, PROTOCOL_VERSION, "peer"));
    let at = not_utf8
        .windows(SECRET.len())
        .position(|w| w == SECRET.as_bytes())
        .unwrap();
    not_utf8[at + SECRET.len() - 1] = 0xff;
    for bytes in [
        slave_frame(&hello("operator", NEAR_MISS, PROTOCOL_VERSION, "peer")),
        not_utf8,
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", replication)).unwrap();
        let (answer, _) =
            say_and_hang_up(&mut stream, &mut Rng::for_case(1, 1), &bytes).expect("closed");
        let (messages, _) = parse_master_output(&answer).unwrap();
        assert!(
            matches!(messages[..], [MasterMessage::Refused { retry: false, .. }]),
            "{messages:?}"
        );
    }

    // Real slaves: one with the password mirrors, one with a near miss is refused.
    let slave_config = |site: &Site, password: &str| {
        site.write_config(
            "broker.toml",
            "",
            "",
            &format!(
                "[replication]\nmaster_connector_uri = \"tcp://127.0.0.1:{replication}\"\nuser = \"operator\"\npassword = \"{password}\"\nbind = \"tcp://127.0.0.1:0\"\n{}\n{users}",
                common::FAST_LINK
            ),
        )
    };
    let slave_site = Site::new();
    let slave = Broker::spawn_with_log_level(&slave_config(&slave_site, SECRET), "trace");
    slave.wait_for_role("slave-mirroring");
    let wrong_site = Site::new();
    let mut wrong = Broker::spawn_with_log_level(&slave_config(&wrong_site, NEAR_MISS), "trace");
    assert_eq!(
        wrong.wait().code(),
        Some(mirrormq::repl::role::EXIT_REFUSED)
    );
    Client::connect_with(
        port,
        &[
            ("accept-version", "1.2"),
            ("login", "operator"),
            ("passcode", SECRET),
        ],
    )
    .send_receipted("/queue/q", "mirrored", true);

    let master_log = master.log.text();
    assert!(
        master_log.contains("TRACE") && master_log.contains("CONNECT from"),
        "the master logged at trace level, refusals included:\n{master_log}"
    );
    assert_no_credentials(&master, "the master");
    assert_no_credentials(&slave, "the slave");
    assert_no_credentials(&wrong, "the refused slave");
}

#[test]
fn no_client_can_ack_nack_or_commit_what_another_client_holds() {
    let site = Site::new();
    let broker = site.start("", "", USERS);
    let mut producer = broker.client();
    for text in ["m0", "m1"] {
        producer.send_receipted("/queue/x", text, true);
    }
    // The owner holds both messages, unacknowledged.
    let mut owner = broker.client();
    owner.subscribe("/queue/x", "s", "client-individual", 10);
    let held = owner.receive(2);
    // A bystander on the same queue would get anything that went back to it.
    let mut bystander = broker.client();
    bystander.subscribe("/queue/x", "s", "client-individual", 10);

    // Intruders, each with a subscription of the same id (so of the same internal key),
    // in every version and inside a transaction. The broker issued those messages, so an
    // intruder's ACK or NACK is taken as a stale one (a client acking after a failover
    // what the old master delivered): ignored, with its RECEIPT, and the connection
    // stays. What it must not do is touch the owner's messages (checked at the end).
    let intruder = |version: &str| {
        let mut client = Client::connect_with(
            broker.port,
            &[
                ("accept-version", version),
                ("login", "admin"),
                ("passcode", "admin"),
            ],
        );
        client.subscribe("/queue/other", "s", "client-individual", 10);
        client
    };
    for version in ["1.0", "1.1", "1.2"] {
        let mut client = intruder(version);
        client.ack(&held[0], Some("a"));
        client.nack(&held[1], Some("n"));
        client.send_receipted("/queue/elsewhere", "still-connected", true);
    }
    let mut in_tx = intruder("1.2");
    in_tx.send_frame(Command::Begin, &[("transaction", "t")], b"");
    in_tx.send_frame(
        Command::Ack,
        &[("id", held[0].header("ack").unwrap()), ("transaction", "t")],
        b"",
    );
    in_tx.send_frame(
        Command::Commit,
        &[("transaction", "t"), ("receipt", "c")],
        b"",
    );
    in_tx.await_receipt("c");
    // On a topic, acks are no-ops: a topic subscriber's ack of the owner's message may be
    // accepted (as a no-op) or refused, but it must change nothing.
    let mut on_topic = broker.client();
    on_topic.subscribe("/topic/t", "s", "client-individual", 10);
    for (verb, message, receipt) in [
        (Command::Nack, &held[1], "n"),
        (Command::Ack, &held[0], "a"),
    ] {
        on_topic.send_frame(
            verb,
            &[("id", message.header("ack").unwrap()), ("receipt", receipt)],
            b"",
        );
        match on_topic.read(PATIENCE) {
            Got::Frame(f) if f.command == Command::Receipt => {}
            Got::Frame(f) if f.command == Command::Error => break,
            other => panic!("expected a RECEIPT or an ERROR, got {other:?}"),
        }
    }

    // Transactions are per connection: another client cannot commit or abort one.
    owner.send_frame(Command::Begin, &[("transaction", "tx")], b"");
    owner.send_frame(
        Command::Send,
        &[("destination", "/queue/tx"), ("transaction", "tx")],
        b"in tx",
    );
    owner.send_frame(
        Command::Send,
        &[("destination", "/queue/b"), ("receipt", "b")],
        b"x",
    );
    owner.await_receipt("b");
    for verb in [Command::Commit, Command::Abort] {
        let mut other = broker.client();
        other.send_frame(verb, &[("transaction", "tx"), ("receipt", "r")], b"");
        other.expect_error("no open transaction 'tx'");
    }

    // Nothing the intruders did took effect: the owner still holds both messages (its
    // acks succeed), the owner's transaction commits once, and once the owner has gone
    // the bystander's first message is a new one: m0 and m1 were never redelivered.
    owner.ack(&held[0], Some("a0"));
    owner.ack(&held[1], Some("a1"));
    owner.send_frame(
        Command::Commit,
        &[("transaction", "tx"), ("receipt", "c")],
        b"",
    );
    owner.await_receipt("c");
    owner.disconnect();
    producer.send_receipted("/queue/x", "m2", true);
    assert_eq!(body(&bystander.expect(Command::Message)), "m2");
    let mut reader = broker.client();
    reader.subscribe("/queue/tx", "s", "auto", 10);
    assert_eq!(body(&reader.expect(Command::Message)), "in tx");
    producer.send_receipted("/queue/tx", "after", true);
    assert_eq!(
        body(&reader.expect(Command::Message)),
        "after",
        "the transaction's message came once"
    );
}

/// Zeros in memory that no one has read or written: a fresh private anonymous mapping,
/// whose pages the kernel maps on first access, each at the cost of a page fault.
/// Counting the faults of a call counts the memory it read, which no load on the
/// machine changes (unlike the time it took).
struct Untouched {
    at: *mut u8,
    len: usize,
}

impl Untouched {
    fn new(len: usize) -> Untouched {
        // SAFETY: a new mapping, overlapping no memory of this process.
        let at = unsafe {
            sys::mmap(
                std::ptr::null_mut(),
                len,
                sys::PROT_READ | sys::PROT_WRITE,
                sys::MAP_PRIVATE | sys::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(
            at as usize != usize::MAX,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        // One page a fault, not a huge page's 512. Where the kernel has no huge pages
        // the advice fails, and is not needed.
        // SAFETY: advice on the mapping just made.
        unsafe { sys::madvise(at, len, sys::MADV_NOHUGEPAGE) };
        Untouched { at: at.cast(), len }
    }

    /// Writes an ASCII byte (the bytes stay UTF-8): its page is touched.
    fn write(&mut self, i: usize, byte: u8) {
        assert!(i < self.len && byte.is_ascii());
        // SAFETY: in bounds of the mapping, which is writable.
        unsafe { self.at.add(i).write(byte) };
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is readable, zero-filled (so initialized) and lives as
        // long as `self`.
        unsafe { std::slice::from_raw_parts(self.at, self.len) }
    }

    fn text(&self) -> &str {
        // Not `from_utf8`: validating would read every page before the call we count.
        // SAFETY: zeros and the ASCII bytes of `write` are UTF-8.
        unsafe { std::str::from_utf8_unchecked(self.bytes()) }
    }
}

impl Drop for Untouched {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer borrowed.
        unsafe { sys::munmap(self.at.cast(), self.len) };
    }
}

/// Runs `call` and counts the page faults this thread took meanwhile: at least one for
/// each untouched page the call read.
fn faults_of<T>(call: impl FnOnce() -> T) -> (T, u64) {
    let before = page_faults();
    let out = call();
    (out, page_faults() - before)
}

fn page_faults() -> u64 {
    let mut usage = sys::Rusage([0; 18]);
    // SAFETY: `usage` is a `struct rusage`, which the call fills in.
    let ok = unsafe { sys::getrusage(sys::RUSAGE_THREAD, &mut usage) };
    assert_eq!(ok, 0, "getrusage: {}", std::io::Error::last_os_error());
    (usage.0[sys::MINFLT] + usage.0[sys::MAJFLT]) as u64
}

/// The page faults of reading every byte of fresh buffers made by `make`: what a call
/// that reads all of them costs. The least of three tries, since whatever else the
/// thread does can only add faults.
fn cost_of_reading(make: impl Fn() -> Vec<Untouched>, part: impl Fn(&[u8]) -> &[u8]) -> u64 {
    (0..3)
        .map(|_| {
            let buffers = make();
            let (_, faults) = faults_of(|| {
                for buffer in &buffers {
                    std::hint::black_box(part(buffer.bytes()).iter().fold(0, |a, b| a | b));
                }
            });
            faults
        })
        .min()
        .unwrap()
}

/// The few C library calls the counting needs (Linux: x86-64 and AArch64 values).
mod sys {
    use std::ffi::{c_int, c_long, c_void};

    pub const PROT_READ: c_int = 1;
    pub const PROT_WRITE: c_int = 2;
    pub const MAP_PRIVATE: c_int = 0x02;
    pub const MAP_ANONYMOUS: c_int = 0x20;
    pub const MADV_NOHUGEPAGE: c_int = 15;
    pub const RUSAGE_THREAD: c_int = 1;

    /// `struct rusage`: two `timeval`s, then 14 longs, `ru_minflt` and `ru_majflt` the
    /// fifth and sixth.
    #[repr(C)]
    pub struct Rusage(pub [c_long; 18]);
    pub const MINFLT: usize = 8;
    pub const MAJFLT: usize = 9;

    unsafe extern "C" {
        pub fn mmap(
            addr: *mut c_void,
            len: usize,
            prot: c_int,
            flags: c_int,
            fd: c_int,
            offset: c_long,
        ) -> *mut c_void;
        pub fn munmap(addr: *mut c_void, len: usize) -> c_int;
        pub fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
        pub fn getrusage(who: c_int, usage: *mut Rusage) -> c_int;
    }
}

#[test]
fn credential_comparison_takes_as_long_wherever_a_guess_differs() {
    use mirrormq::config::{constant_time_eq, Config};
    use std::hint::black_box;
    const LEN: usize = 256 * 1024;
    let secret = vec![b'k'; LEN];
    let differ_at = |i: usize| {
        let mut guess = secret.clone();
        guess[i] = b'x';
        guess
    };
    let guesses = [
        secret.clone(),
        differ_at(0),
        differ_at(LEN / 2),
        differ_at(LEN - 1),
    ];
    let password = String::from_utf8(secret.clone()).unwrap();
    let config = Config::parse(
        &format!(
            "[broker]\nname = \"t\"\ndata_dir = \"d\"\n[[users]]\nname = \"admin\"\npassword = \"{password}\"\n"
        ),
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let logins: Vec<(&str, String)> = vec![
        ("admin", password.clone()),
        ("admin", String::from_utf8(differ_at(0)).unwrap()),
        ("admin", String::from_utf8(differ_at(LEN - 1)).unwrap()),
        ("nobody", password.clone()),
    ];
    let verdicts: Vec<bool> = guesses
        .iter()
        .map(|g| constant_time_eq(&secret, g))
        .collect();
    assert_eq!(verdicts, [true, false, false, false]);
    let accepted: Vec<bool> = logins
        .iter()
        .map(|(l, p)| config.authenticate(l, p))
        .collect();
    assert_eq!(accepted, [true, false, false, false]);

    // The work, counted rather than timed: the same guesses, but of zeros in memory no
    // one has touched, so that reading it costs page faults. A comparison must cost as
    // much as reading every byte of what it compares; an early-exit one would read one
    // page of a guess wrong at its first byte, half of one wrong in the middle, and no
    // passcode at all for an unknown login.
    let fresh = |at: Option<usize>| {
        let mut buffer = Untouched::new(LEN);
        if let Some(i) = at {
            buffer.write(i, b'x');
        }
        buffer
    };
    let one_byte = cost_of_reading(|| vec![fresh(None)], |b| &b[..1]);
    let every_byte = cost_of_reading(|| vec![fresh(None)], |b| b);
    assert!(
        one_byte < every_byte,
        "page faults do not count what is read here: {one_byte} for a byte, {every_byte} for {LEN}"
    );
    let differ = [None, Some(0), Some(LEN / 2), Some(LEN - 1)];
    let mut eq_read = Vec::new();
    for (&at, right) in differ.iter().zip(&verdicts) {
        let whole = cost_of_reading(|| vec![fresh(None), fresh(at)], |b| b);
        let (secret, guess) = (fresh(None), fresh(at));
        let (verdict, read) =
            faults_of(|| constant_time_eq(black_box(secret.bytes()), black_box(guess.bytes())));
        assert_eq!(verdict, *right);
        eq_read.push((read, whole));
    }
    let zeros = Config::parse(
        &format!(
            "[broker]\nname = \"t\"\ndata_dir = \"d\"\n[[users]]\nname = \"admin\"\npassword = \"{}\"\n",
            "\\u0000".repeat(LEN)
        ),
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let mut auth_read = Vec::new();
    for ((login, at), right) in [
        ("admin", None),
        ("admin", Some(0)),
        ("admin", Some(LEN - 1)),
        ("nobody", None),
    ]
    .into_iter()
    .zip(&accepted)
    {
        let whole = cost_of_reading(|| vec![fresh(at)], |b| b);
        let passcode = fresh(at);
        let (verdict, read) =
            faults_of(|| zeros.authenticate(black_box(login), black_box(passcode.text())));
        assert_eq!(verdict, *right);
        auth_read.push((read, whole));
    }
    for (what, read) in [("constant_time_eq", eq_read), ("authenticate", auth_read)] {
        eprintln!("hostile: {what}: (faults of the call, of reading all it was given) {read:?}");
        assert!(
            read.iter().all(|(read, whole)| read >= whole),
            "{what} skips part of guesses that are right, wrong at the first, middle and last byte (or of an unknown login's): (faults of the call, of reading all it was given) {read:?}"
        );
    }
}

#[test]
fn a_password_padded_with_nul_bytes_is_not_the_password() {
    let site = Site::new();
    let broker = site.start("", "max_header_length = 100000", USERS);
    let mut padded = b"admin".to_vec();
    padded.extend(vec![0u8; 65_536]);
    let mut client = Client::open(broker.port);
    client.raw(
        &[
            &b"CONNECT\naccept-version:1.2\nlogin:admin\npasscode:"[..],
            &padded,
            b"\n\n\0",
        ]
        .concat(),
    );
    match client.read(PATIENCE) {
        Got::Frame(f) if f.command == Command::Error => {}
        other => panic!("a padded passcode logged in: {other:?}"),
    }
    assert!(!mirrormq::config::constant_time_eq(b"admin", &padded));
}
