//! The TOML config file: parsing, documented defaults, validation.
//!
//! Owns turning a file into a [`Config`] or an error an operator can act on: every
//! message names the file, the key and the line. Unknown keys are errors
//! (`deny_unknown_fields`), because a misspelt safety option that is silently ignored
//! is worse than a failed start. Paths are relative to the config file's folder.
//! This module reads the file and nothing else; it opens no sockets.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

mod admin;
mod election;
mod replication;
mod tls;
mod values;
pub use admin::AdminConfig;
pub use election::ElectionConfig;
pub use replication::{ReplicationConfig, SlaveAck};
pub use tls::TlsConfig;
pub use values::{ByteSize, Endpoint, Secret};

/// Upper bound of `stomp.max_pending_frames`: far above any useful queue, far below
/// what the queue's channel accepts.
const MAX_PENDING_FRAMES: usize = 1 << 30;

/// A whole broker configuration, validated, with paths resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub broker: BrokerConfig,
    #[serde(default)]
    pub stomp: StompConfig,
    #[serde(default)]
    pub replication: ReplicationConfig,
    #[serde(default)]
    pub users: Vec<User>,
    /// Off when absent.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The master elected through ZooKeeper; absent: a static master and slaves.
    #[serde(default)]
    pub election: Option<ElectionConfig>,
    /// The certificate of the TLS listeners.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `[broker]`: identity, storage and delivery policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Shown in logs and the CONNECTED `server` header.
    pub name: String,
    /// The store: journal segments, store identity and the lock file.
    pub data_dir: PathBuf,
    /// Deliveries after the first before a message moves to `/queue/DLQ.<name>`.
    #[serde(default = "defaults::max_redeliveries")]
    pub max_redeliveries: u32,
    /// Message bytes held in memory. Past half of it new persistent messages keep only a
    /// small slot in memory and their bodies are read back from the journal; past all of
    /// it producers are slowed.
    #[serde(default = "defaults::max_memory")]
    pub max_memory: ByteSize,
    /// The store limit: journal bytes on disk past which producers of persistent
    /// messages wait until acknowledgements free space.
    #[serde(default = "defaults::max_disk")]
    pub max_disk: ByteSize,
    /// How often the journal looks for segments kept only by a few old messages, to
    /// write those forward and delete the segment; 0 = never.
    #[serde(default = "defaults::compact_interval_ms")]
    pub compact_interval_ms: u64,
    /// Size of one journal segment file (preallocated).
    #[serde(default = "defaults::segment_size")]
    pub segment_size: ByteSize,
    /// How often a broker waiting for a locked data directory tries again.
    #[serde(default = "defaults::lock_retry_ms")]
    pub lock_retry_ms: u64,
    /// Recent `dedup-id`s remembered per destination, to drop a failover client's
    /// resent duplicates; 0 turns de-duplication off.
    #[serde(default = "defaults::dedup_window")]
    pub dedup_window: usize,
    /// How often the broker logs a status line (role, seq, lag); 0 = never.
    #[serde(default = "defaults::status_interval_ms")]
    pub status_interval_ms: u64,
    /// Threads that run the broker's tasks (sessions, the core, replication links); the
    /// journal writes on its own thread besides. One keeps every hand-off between tasks
    /// on one thread, which gives the lowest latency on small machines; more can help
    /// many connections on many cores.
    #[serde(default = "defaults::worker_threads")]
    pub worker_threads: usize,
    /// A queue consumer with a selector gets the first ready messages it selects; the
    /// ones nobody with room selects stay, and dispatch looks past at most this many of
    /// them (as ActiveMQ looks only at the messages it has paged in). A consumer whose
    /// messages lie further back waits until the ones before are consumed.
    #[serde(default = "defaults::selector_scan")]
    pub selector_scan: usize,
    /// An expired message moves to `DLQ.<queue>` instead of being dropped.
    #[serde(default)]
    pub dead_letter_expired: bool,
}

/// `[stomp]`: the client listener and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StompConfig {
    #[serde(default = "defaults::stomp_bind")]
    pub bind: Endpoint,
    /// STOMP over WebSocket (browsers' clients), if set; it opens and closes with `bind`.
    #[serde(default)]
    pub ws_bind: Option<Endpoint>,
    /// STOMP over TLS, and STOMP over WebSocket over TLS, if set (they need `[tls]`).
    #[serde(default)]
    pub tls_bind: Option<Endpoint>,
    #[serde(default)]
    pub wss_bind: Option<Endpoint>,
    #[serde(default = "defaults::max_frame_size")]
    pub max_frame_size: ByteSize,
    #[serde(default = "defaults::max_headers")]
    pub max_headers: usize,
    #[serde(default = "defaults::max_header_length")]
    pub max_header_length: usize,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// A connection must have sent a whole CONNECT frame within this time.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Heart-beat intervals below this are raised to it (both directions).
    #[serde(default = "defaults::min_heartbeat_ms")]
    pub min_heartbeat_ms: u64,
    /// A peer silent for `interval × heartbeat_grace` is dead.
    #[serde(default = "defaults::heartbeat_grace")]
    pub heartbeat_grace: f64,
    /// Prefetch window for a SUBSCRIBE without `activemq.prefetchSize`.
    #[serde(default = "defaults::default_prefetch")]
    pub default_prefetch: u32,
    /// Frames queued for a client that is not reading before it is disconnected.
    #[serde(default = "defaults::max_pending_frames")]
    pub max_pending_frames: usize,
    /// SEND, ACK and NACK frames one transaction may hold before COMMIT.
    #[serde(default = "defaults::max_transaction_frames")]
    pub max_transaction_frames: usize,
    /// Parentheses, NOTs and signs a SUBSCRIBE's `selector` may nest (its length is
    /// bounded by `max_header_length`).
    #[serde(default = "defaults::max_selector_depth")]
    pub max_selector_depth: usize,
    /// Characters of a LIKE pattern in a selector: matching one costs up to its length
    /// times the header's.
    #[serde(default = "defaults::max_like_pattern")]
    pub max_like_pattern: usize,
    /// Most messages a browsing SUBSCRIBE (`browser:true`) is shown.
    #[serde(default = "defaults::max_browse")]
    pub max_browse: usize,
}

/// `[[users]]`: one login/passcode pair.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub password: String,
    /// May use the admin console and API (`[admin]`).
    #[serde(default)]
    pub admin: bool,
}

impl fmt::Debug for User {
    // Passwords never reach a log line, not even through {:?}.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .field("admin", &self.admin)
            .finish()
    }
}

mod defaults;

impl Config {
    /// Reads, parses and validates `path`; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            Error::Config(format!("{}: {}", path.display(), e.to_string().trim_end()))
        })?;
        config
            .validate()
            .map_err(|(key, why)| config_error(path, text, key, &why))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if config.broker.data_dir.is_relative() {
            config.broker.data_dir = base.join(&config.broker.data_dir);
        }
        if let Some(tls) = &mut config.tls {
            tls.resolve(base);
        }
        config.replication.resolve(base);
        Ok(config)
    }

    /// Cross-field and range checks serde cannot express; errors name the dotted key.
    fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        tls::validate(self)?;
        let b = &self.broker;
        let s = &self.stomp;
        check(
            !b.name.trim().is_empty(),
            "broker.name",
            "must not be empty",
        )?;
        check(
            !b.data_dir.as_os_str().is_empty(),
            "broker.data_dir",
            "must not be empty",
        )?;
        check(
            b.max_memory.0 >= 1 << 20,
            "broker.max_memory",
            "must be at least 1MiB",
        )?;
        check(
            b.segment_size.0 >= 64 << 10,
            "broker.segment_size",
            "must be at least 64KiB",
        )?;
        // A record must fit in one replication frame (repl::message::MAX_FRAME).
        check(
            b.segment_size.0 <= 256 << 20,
            "broker.segment_size",
            "must be at most 256MiB",
        )?;
        // The segment being written, the one made ahead, and room for the rest.
        check(
            b.max_disk.0 >= b.segment_size.0.saturating_mul(4),
            "broker.max_disk",
            "must be at least four times broker.segment_size",
        )?;
        check(
            (1..=256).contains(&b.worker_threads),
            "broker.worker_threads",
            "must be between 1 and 256",
        )?;
        check(
            b.selector_scan >= 1,
            "broker.selector_scan",
            "must be at least 1",
        )?;
        // Parsing recurses a dozen calls per level, on a task's stack.
        check(
            (1..=128).contains(&s.max_selector_depth),
            "stomp.max_selector_depth",
            "must be between 1 and 128",
        )?;
        check(
            (1..=4096).contains(&s.max_like_pattern),
            "stomp.max_like_pattern",
            "must be between 1 and 4096",
        )?;
        check(
            b.lock_retry_ms >= 10,
            "broker.lock_retry_ms",
            "must be at least 10",
        )?;
        check(
            s.max_frame_size.0 >= 1024,
            "stomp.max_frame_size",
            "must be at least 1KiB",
        )?;
        check(
            // Saturating: a max_frame_size near 2^64 must fail here, not wrap and pass.
            b.segment_size.0 > s.max_frame_size.0.saturating_add(1024),
            "broker.segment_size",
            "must be larger than stomp.max_frame_size, so any message fits in one segment",
        )?;
        check(
            s.max_headers >= 1,
            "stomp.max_headers",
            "must be at least 1",
        )?;
        check(
            s.max_header_length >= 64,
            "stomp.max_header_length",
            "must be at least 64",
        )?;
        check(
            s.max_connections >= 1,
            "stomp.max_connections",
            "must be at least 1",
        )?;
        check(
            s.connect_timeout_ms >= 100,
            "stomp.connect_timeout_ms",
            "must be at least 100",
        )?;
        check(
            s.min_heartbeat_ms >= 10,
            "stomp.min_heartbeat_ms",
            "must be at least 10",
        )?;
        check(
            s.heartbeat_grace >= 1.0 && s.heartbeat_grace <= 10.0,
            "stomp.heartbeat_grace",
            "must be between 1.0 and 10.0",
        )?;
        check(
            s.default_prefetch >= 1,
            "stomp.default_prefetch",
            "must be at least 1",
        )?;
        check(
            s.max_pending_frames >= 16,
            "stomp.max_pending_frames",
            "must be at least 16",
        )?;
        // Each session's outbound queue is a futures mpsc channel of this many frames,
        // which panics from usize::MAX / 4 up.
        check(
            s.max_pending_frames <= MAX_PENDING_FRAMES,
            "stomp.max_pending_frames",
            &format!("must be at most {MAX_PENDING_FRAMES}"),
        )?;
        check(s.max_browse >= 1, "stomp.max_browse", "must be at least 1")?;
        check(
            s.max_transaction_frames >= 1,
            "stomp.max_transaction_frames",
            "must be at least 1",
        )?;
        self.replication.validate()?;
        let mut names = std::collections::HashSet::new();
        for user in &self.users {
            check(!user.name.is_empty(), "users.name", "must not be empty")?;
            check(
                names.insert(&user.name),
                "users.name",
                "names must be unique",
            )?;
        }
        if let Some(election) = &self.election {
            election.validate(&self.replication)?;
        }
        match &self.admin {
            Some(admin) => admin.validate(&self.users),
            None => Ok(()),
        }
    }

    /// Whether CONNECT must carry a known login and passcode.
    pub fn requires_login(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks a login/passcode in time that does not depend on where they differ.
    pub fn authenticate(&self, login: &str, passcode: &str) -> bool {
        self.authenticate_among(login, passcode, |_| true)
    }

    /// Checks an admin's login the same way, among the users with `admin = true`.
    pub fn authenticate_admin(&self, login: &str, passcode: &str) -> bool {
        self.authenticate_among(login, passcode, |user| user.admin)
    }

    fn authenticate_among(
        &self,
        login: &str,
        passcode: &str,
        counts: impl Fn(&User) -> bool,
    ) -> bool {
        let mut accepted = false;
        for user in &self.users {
            // Compare every entry fully so timing reveals neither the name nor the prefix.
            let ok = constant_time_eq(user.name.as_bytes(), login.as_bytes())
                & constant_time_eq(user.password.as_bytes(), passcode.as_bytes());
            accepted |= ok & counts(user);
        }
        accepted
    }

    /// The journal, lock and identity files live here.
    pub fn data_dir(&self) -> &Path {
        &self.broker.data_dir
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.stomp.connect_timeout_ms)
    }
}

fn check(
    ok: bool,
    key: &'static str,
    why: &str,
) -> std::result::Result<(), (&'static str, String)> {
    if ok {
        Ok(())
    } else {
        Err((key, why.to_string()))
    }
}

fn config_error(path: &Path, text: &str, dotted_key: &str, why: &str) -> Error {
    let line = match line_of(text, dotted_key) {
        Some(n) => format!("line {n}"),
        None => "default value".to_string(),
    };
    Error::Config(format!(
        "{}: {line}: key `{dotted_key}` {why}",
        path.display()
    ))
}

/// The 1-based line where `section.key` is set, for errors on values serde accepted.
fn line_of(text: &str, dotted_key: &str) -> Option<usize> {
    let (section, key) = dotted_key.rsplit_once('.')?;
    let mut current = String::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            current = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
        } else if current == section {
            if let Some((name, _)) = line.split_once('=') {
                if name.trim() == key {
                    return Some(index + 1);
                }
            }
        }
    }
    None
}

/// Byte-wise equality whose running time depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // The whole length difference counts: folding it into fewer bits let a guess padded
    // with 65,536 NULs pass.
    let mut diff = a.len() ^ b.len();
    let longest = a.len().max(b.len());
    for i in 0..longest {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests;
