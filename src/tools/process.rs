//! Broker processes that this binary starts itself (`mirrormq demo`, `mirrormq chaos`):
//! the same executable run as `broker --config FILE`, its log appended to a file, and
//! killed when the handle is dropped so that no broker outlives the tool that started it.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mirrormq::error::{Error, Result};

pub struct BrokerProcess {
    child: Child,
    log: PathBuf,
    /// How far `new_lines` has read the log, and an unfinished last line.
    read_to: u64,
    partial: String,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl BrokerProcess {
    /// Starts `broker --config config`, appending its log (at level info) to `log`.
    pub fn start(config: &Path, log: &Path) -> Result<BrokerProcess> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(log, e))?;
        let read_to = file.metadata().map_err(|e| Error::io(log, e))?.len();
        let child =
            Command::new(std::env::current_exe().map_err(|e| Error::io("current executable", e))?)
                .args(["broker", "--config"])
                .arg(config)
                // The tools follow the brokers' role lines, which are logged at info.
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(file)
                .spawn()
                .map_err(|e| Error::io("starting a broker", e))?;
        Ok(BrokerProcess {
            child,
            log: log.to_path_buf(),
            read_to,
            partial: String::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The whole lines this process logged since the last call.
    pub fn new_lines(&mut self) -> Vec<String> {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            if file.seek(SeekFrom::Start(self.read_to)).is_ok() {
                if let Ok(n) = file.read_to_string(&mut text) {
                    self.read_to += n as u64;
                }
            }
        }
        self.partial.push_str(&text);
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        done.lines().map(str::to_string).collect()
    }

    /// Waits until a line containing `text` is logged; fails if the process exits first.
    pub fn wait_for(&mut self, text: &str, patience: Duration) -> Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            if self.new_lines().iter().any(|line| line.contains(text)) {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(Error::Tool(format!(
                    "a broker exited ({status}) before logging '{text}'; see {}",
                    self.log.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(Error::Tool(format!(
                    "no '{text}' within {patience:?}; see {}",
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`) with kill(1).
    pub fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .map_err(|e| Error::io("running kill", e))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Tool(format!(
                "kill -{name} {} failed ({status})",
                self.pid()
            )))
        }
    }
}
