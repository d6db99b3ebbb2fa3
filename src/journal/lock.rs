//! The data-directory lock: one broker per store.
//!
//! An exclusive OS lock (`flock`) on `DATA_DIR/lock`, held for the life of the process
//! and released by the kernel when it dies, even by kill -9. A second broker on the same
//! directory waits and retries, saying so in its log: ActiveMQ's shared-storage
//! master/slave for free. flock(1) on the same file tells whether a broker holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Held while the broker owns the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

/// The lock file's name inside a data directory.
pub const LOCK_FILE: &str = "lock";

impl DataDirLock {
    /// Takes the lock, waiting `retry` between attempts while another process holds it.
    /// Returns `Ok(None)` if `stop` was raised while waiting.
    pub fn acquire(dir: &Path, retry: Duration, stop: &AtomicBool) -> Result<Option<DataDirLock>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let started = Instant::now();
        let mut last_said = None::<Instant>;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                        let holder = std::fs::read_to_string(&path).unwrap_or_default();
                        log::warn!(
                            "data directory {} is locked by another broker (pid {}); waiting for it, retrying every {} ms (waited {} s)",
                            dir.display(),
                            holder.trim(),
                            retry.as_millis(),
                            started.elapsed().as_secs()
                        );
                        last_said = Some(Instant::now());
                    }
                    if stop.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                    std::thread::sleep(retry);
                }
                Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
        }
        if last_said.is_some() {
            log::info!(
                "data directory {} lock acquired after {} ms",
                dir.display(),
                started.elapsed().as_millis()
            );
        }
        // The pid is for operators reading the file; the lock itself is the flock.
        file.set_len(0).map_err(|e| Error::io(&path, e))?;
        writeln!(file, "{}", std::process::id()).map_err(|e| Error::io(&path, e))?;
        Ok(Some(DataDirLock { _file: file, path }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
