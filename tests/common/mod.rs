//! Test harness: runs the real `mirrormq` binary on 127.0.0.1 with an ephemeral port and
//! a temporary data directory, reads its log, and kills it when dropped.

#![allow(dead_code)]

pub mod admin;
pub mod certs;
pub mod client;
pub mod hostile;
pub mod proxy;
pub mod ride;
pub mod zookeeper;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use client::Client;

/// How long a test waits for something the broker should do promptly.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Lines a process has logged, shared with the thread that reads them.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Log {
    fn follow(&self, stream: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<()> {
        let log = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let (lines, changed) = &*log.0;
                lines.lock().unwrap().push(line);
                changed.notify_all();
            }
        })
    }

    /// Waits until a line contains `needle`; returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.0;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(line) = guard.iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Waits until `needle` has appeared in `count` lines.
    pub fn wait_for_count(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.0;
        let mut guard = lines.lock().unwrap();
        loop {
            if guard.iter().filter(|l| l.contains(needle)).count() >= count {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
    }

    pub fn text(&self) -> String {
        self.0 .0.lock().unwrap().join("\n")
    }
}

/// A running broker process.
pub struct Broker {
    child: Option<Child>,
    /// The threads reading its stderr and stdout; they end at EOF, after the process.
    followers: Vec<std::thread::JoinHandle<()>>,
    pub port: u16,
    pub log: Log,
    pub config: PathBuf,
}

/// A folder holding a config and a data directory; brokers can be started on it again.
pub struct Site {
    pub dir: tempfile::TempDir,
}

/// Replication settings fast enough for tests.
pub const FAST_LINK: &str = "heartbeat_ms = 100\nheartbeat_misses = 10\nack_timeout_ms = 1000";

/// Config text for a master whose slave may attach on an ephemeral port.
pub fn master_replication(extra: &str) -> String {
    format!("[replication]\nbind = \"tcp://127.0.0.1:0\"\n{FAST_LINK}\n{extra}\n[[users]]\nname = \"admin\"\npassword = \"admin\"")
}

/// Config text for a slave of the master whose replication port is `port`.
pub fn slave_replication(port: u16, extra: &str) -> String {
    format!(
        "[replication]\nmaster_connector_uri = \"tcp://127.0.0.1:{port}\"\nuser = \"admin\"\npassword = \"admin\"\nbind = \"tcp://127.0.0.1:0\"\n{FAST_LINK}\n{extra}\n[[users]]\nname = \"admin\"\npassword = \"admin\""
    )
}

/// A master and its slave, each on its own site.
pub struct Pair {
    pub master_site: Site,
    pub slave_site: Site,
    pub master: Broker,
    pub slave: Broker,
}

impl Pair {
    /// Starts a master, then a slave of it, and waits until the slave mirrors.
    pub fn start(master_extra: &str, slave_extra: &str) -> Pair {
        Pair::start_with("", "", master_extra, slave_extra)
    }

    /// `start`, with `[broker]` and `[stomp]` extras for both brokers.
    pub fn start_with(broker: &str, stomp: &str, master_extra: &str, slave_extra: &str) -> Pair {
        Pair::start_each(broker, [stomp, stomp], master_extra, slave_extra)
    }

    /// `start_with`, the master's and the slave's own `[stomp]` extras.
    pub fn start_each(
        broker: &str,
        [master_stomp, stomp]: [&str; 2],
        master_extra: &str,
        slave_extra: &str,
    ) -> Pair {
        let master_site = Site::new();
        let mut master = Broker::spawn(&master_site.write_config(
            "broker.toml",
            broker,
            master_stomp,
            &master_replication(master_extra),
        ));
        let replication_port = master.wait_for_port("replication");
        if !master_extra.contains("wait_for_slave = true") {
            master.wait_until_listening();
        }
        let slave_site = Site::new();
        // Clients must know the slave's client port before it opens (failover URLs).
        let config = slave_site.write_config_on_port(
            free_port(),
            broker,
            stomp,
            &slave_replication(replication_port, slave_extra),
        );
        let slave = Broker::spawn(&config);
        slave.wait_for_role("slave-mirroring");
        Pair {
            master_site,
            slave_site,
            master,
            slave,
        }
    }
}

impl Site {
    pub fn new() -> Site {
        Site {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes a config: `[broker]` extras go in `broker`, the rest (sections) in `rest`.
    pub fn write_config(&self, name: &str, broker: &str, stomp: &str, rest: &str) -> PathBuf {
        let text = format!(
            "[broker]\nname = \"test\"\ndata_dir = \"data\"\nstatus_interval_ms = 0\nlock_retry_ms = 50\n{broker}\n\
             [stomp]\nbind = \"tcp://127.0.0.1:0\"\n{stomp}\n{rest}\n"
        );
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `broker.toml` with its client port fixed (a slave's, which clients must
    /// know before it opens) and sections `rest`.
    pub fn write_config_on_port(
        &self,
        stomp_port: u16,
        broker: &str,
        stomp: &str,
        rest: &str,
    ) -> PathBuf {
        let config = self.write_config("broker.toml", broker, stomp, rest);
        let text = std::fs::read_to_string(&config).unwrap().replacen(
            "bind = \"tcp://127.0.0.1:0\"",
            &format!("bind = \"tcp://127.0.0.1:{stomp_port}\""),
            1,
        );
        std::fs::write(&config, text).unwrap();
        config
    }

    /// Starts a broker with these config extras and waits for its listener.
    pub fn start(&self, broker: &str, stomp: &str, rest: &str) -> Broker {
        let config = self.write_config("broker.toml", broker, stomp, rest);
        Broker::start(&config)
    }

    /// Starts a broker on the default config of this site.
    pub fn start_default(&self) -> Broker {
        self.start("", "", "")
    }
}

/// How many entries of `dir` have a name `matches` accepts.
pub fn entries_named(dir: &Path, matches: impl Fn(&str) -> bool) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| matches(&e.as_ref().unwrap().file_name().to_string_lossy()))
        .count()
}

/// A port free at the time of asking, from below the ephemeral range where the system
/// allows (ports 32768 and up on Linux). A port from `bind(0)` is an ephemeral one, and
/// the tests open many connections: any of them may take it as its source port before the
/// broker it was meant for binds it, perhaps seconds later (a slave binds its client port
/// when it is promoted). Each test binary starts at its own place in the range and counts
/// on from there, so its tests never get the same port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    // Where this binary starts in the range below the ephemeral ports, and its length.
    static BELOW_EPHEMERAL: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let below_ephemeral = BELOW_EPHEMERAL.get_or_init(|| {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
        let ephemeral_from: u32 = range.split_whitespace().next()?.parse().ok()?;
        let span = ephemeral_from
            .checked_sub(LOWEST)
            .filter(|span| *span >= 1_000)?;
        Some((std::process::id().wrapping_mul(7919) % span, span))
    });
    if let Some((start, span)) = *below_ephemeral {
        for _ in 0..span {
            let port = LOWEST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
            if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Sends raw bytes to a port on 127.0.0.1 and reads what comes back until it closes (or
/// `PATIENCE` passes).
pub fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The standard output of a finished command that must have succeeded (else the test
/// fails showing what it printed on both streams).
pub fn stdout_of(output: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{}:\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_mirrormq")
}

/// Spawns `mirrormq ARGS` with its stderr followed by a `Log`.
pub fn spawn(args: &[&str]) -> (Child, Log, Vec<std::thread::JoinHandle<()>>) {
    spawn_logging(args, "info")
}

/// `spawn`, with `RUST_LOG` set to `level`.
pub fn spawn_logging(args: &[&str], level: &str) -> (Child, Log, Vec<std::thread::JoinHandle<()>>) {
    let mut command = Command::new(binary());
    command.args(args);
    spawn_command(command, level)
}

/// Spawns `command` (which runs mirrormq, perhaps through a wrapper) with `RUST_LOG` set
/// to `level` and its output followed by a `Log`.
pub fn spawn_command(
    mut command: Command,
    level: &str,
) -> (Child, Log, Vec<std::thread::JoinHandle<()>>) {
    let mut child = command
        .env("RUST_LOG", level)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mirrormq");
    let log = Log::default();
    let followers = vec![
        log.follow(child.stderr.take().unwrap()),
        log.follow(child.stdout.take().unwrap()),
    ];
    (child, log, followers)
}

impl Broker {
    /// Starts `mirrormq broker --config PATH` and waits until it listens.
    pub fn start(config: &Path) -> Broker {
        let mut broker = Broker::spawn(config);
        broker.wait_until_listening();
        broker
    }

    /// Starts the process without waiting for it to listen.
    pub fn spawn(config: &Path) -> Broker {
        Broker::spawn_with_log_level(config, "info")
    }

    /// The port a listener of this broker was logged on (`stomp` or `replication`).
    pub fn wait_for_port(&self, what: &str) -> u16 {
        let line = self
            .log
            .wait_for(&format!("{what}: listening on tcp://"), PATIENCE)
            .unwrap_or_else(|| panic!("no {what} listener:\n{}", self.log.text()));
        line.rsplit(':').next().unwrap().trim().parse().unwrap()
    }

    /// The STOMP port a slave will open when promoted: its config's bind is port 0, so
    /// the tests give slaves a fixed free port instead (see `Pair`).
    pub fn wait_for_port_later(&self) -> u16 {
        let text = std::fs::read_to_string(&self.config).unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix("bind = \"tcp://127.0.0.1:")
                    .and_then(|p| p.strip_suffix('"'))
                    .and_then(|p| p.parse().ok())
            })
            .expect("a stomp bind line")
    }

    /// Waits for a `role: A -> B` line ending in role `to`.
    pub fn wait_for_role(&self, to: &str) -> String {
        self.log
            .wait_for(&format!("-> {to} "), PATIENCE)
            .unwrap_or_else(|| panic!("never became {to}:\n{}", self.log.text()))
    }

    pub fn wait_until_listening(&mut self) {
        let line = self
            .log
            .wait_for("stomp: listening on tcp://", PATIENCE)
            .unwrap_or_else(|| panic!("broker did not start listening:\n{}", self.log.text()));
        self.port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// kill -9: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker already stopped");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Everything the process logged is in `log` once its pipes are drained.
                for follower in self.followers.drain(..) {
                    let _ = follower.join();
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("broker did not exit:\n{}", self.log.text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Broker {
    /// Like `spawn`, with `RUST_LOG` set to `level` instead of `info` (e.g. `trace`).
    pub fn spawn_with_log_level(config: &Path, level: &str) -> Broker {
        let (child, log, followers) =
            spawn_logging(&["broker", "--config", config.to_str().unwrap()], level);
        Broker {
            child: Some(child),
            followers,
            port: 0,
            log,
            config: config.to_path_buf(),
        }
    }

    /// A broker on `config` started by `command` (a wrapper that ends by exec'ing
    /// `mirrormq broker --config CONFIG`); waits until it listens.
    pub fn start_through(command: Command, config: &Path) -> Broker {
        let (child, log, followers) = spawn_command(command, "info");
        let mut broker = Broker {
            child: Some(child),
            followers,
            port: 0,
            log,
            config: config.to_path_buf(),
        };
        broker.wait_until_listening();
        broker
    }
}
