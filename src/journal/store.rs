//! Store identity: which store a data directory holds and its history of epochs.
//!
//! `DATA_DIR/store.toml` names the store (a random id made when the directory was first
//! used) and lists each epoch with the first seq it wrote. It is small, human-readable and
//! replaced atomically (write, fsync, rename, fsync the directory). Journal segments can
//! be deleted; this file keeps the history that fencing needs.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::{Epoch, Seq};
use super::segment::sync_dir;
use crate::error::{Error, Result};

pub const STORE_FILE: &str = "store.toml";

/// One epoch: a period in which one broker was master, from its first seq on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    pub epoch: Epoch,
    pub first_seq: Seq,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreMeta {
    pub store_id: String,
    pub epochs: Vec<EpochStart>,
    /// The first seq of the period in which this store's broker releases receipts without
    /// a slave's copy; cleared when a slave comes in sync (see
    /// `repl::message::Position::alone_since`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alone_since: Option<Seq>,
}

impl StoreMeta {
    fn path(dir: &Path) -> PathBuf {
        dir.join(STORE_FILE)
    }

    /// Reads the directory's identity, creating a new store (epoch 1) if it has none.
    pub fn load_or_create(dir: &Path) -> Result<(StoreMeta, bool)> {
        let path = Self::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Self::parse(&text, &path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let meta = StoreMeta {
                    store_id: new_store_id(),
                    epochs: vec![EpochStart {
                        epoch: Epoch::FIRST,
                        first_seq: Seq::FIRST,
                    }],
                    alone_since: None,
                };
                meta.save(dir)?;
                Ok((meta, true))
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Reads an existing identity without creating one (for `verify`).
    /// Why `dir` cannot hold a store, if it cannot: a file in its place, or (when
    /// `existing`, as `mirrormq verify` needs) no folder or no store.toml and journal/.
    pub fn check_dir(dir: &Path, existing: bool) -> Result<()> {
        let problem = |why: String| Err(Error::Config(format!("{}: {why}", dir.display())));
        match std::fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => {
                return problem("is a file, not a folder (a store is a folder)".into())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && existing => {
                return problem("no such folder".into())
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return problem(e.to_string()),
            _ => {}
        }
        if existing {
            for (name, what) in [(STORE_FILE, "file"), (super::JOURNAL_DIR, "folder")] {
                if !dir.join(name).exists() {
                    return problem(format!(
                        "not a mirrormq store: it has no {name} {what} (a broker's data_dir holds {STORE_FILE} and {}/)",
                        super::JOURNAL_DIR
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<StoreMeta> {
        Self::load_from(&Self::path(dir))
    }

    /// Reads an identity from `path` (a copy's install marker).
    pub fn load_from(path: &Path) -> Result<StoreMeta> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<StoreMeta> {
        let corrupt = |reason: String| Error::Corrupt {
            file: path.to_path_buf(),
            offset: 0,
            reason,
        };
        let meta: StoreMeta = toml::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        if meta.epochs.is_empty() {
            return Err(corrupt("no epochs listed".into()));
        }
        Ok(meta)
    }

    /// Replaces the file atomically and durably.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.save_as(&Self::path(dir))
    }

    /// Writes the identity to `path` atomically and durably.
    pub fn save_as(&self, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = std::path::PathBuf::from(temporary);
        let text = toml::to_string(self).map_err(|e| Error::Codec(e.to_string()))?;
        std::fs::write(&temporary, text).map_err(|e| Error::io(&temporary, e))?;
        std::fs::File::open(&temporary)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&temporary, e))?;
        std::fs::rename(&temporary, path).map_err(|e| Error::io(path, e))?;
        sync_dir(dir)
    }

    /// The epoch this store is in now.
    pub fn current_epoch(&self) -> Epoch {
        self.epochs.last().map_or(Epoch::FIRST, |e| e.epoch)
    }

    /// Adds epochs found in the journal (`EpochStarted` records) that this file lacks (a
    /// crash between the record and the file, or epochs mirrored from a master); true if
    /// any was added, and the file must be saved.
    pub fn merge_epochs(&mut self, found: &[EpochStart]) -> bool {
        let mut changed = false;
        for start in found {
            if !self.epochs.iter().any(|e| e.epoch == start.epoch) {
                self.epochs.push(*start);
                changed = true;
            }
        }
        if changed {
            self.epochs.sort_by_key(|e| e.epoch);
        }
        changed
    }
}

fn new_store_id() -> String {
    // RandomState is seeded from the OS's randomness: enough for an identity, no crate.
    let random = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    let mut mix = std::collections::hash_map::RandomState::new().build_hasher();
    mix.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    mix.write_u32(std::process::id());
    format!("{:016x}{:016x}", random(), random() ^ mix.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (created, fresh) = StoreMeta::load_or_create(dir.path()).unwrap();
        assert!(fresh);
        assert_eq!(created.store_id.len(), 32);
        let (again, fresh) = StoreMeta::load_or_create(dir.path()).unwrap();
        assert!(!fresh);
        assert_eq!(again, created);
        let other = StoreMeta::load_or_create(tempfile::tempdir().unwrap().path())
            .unwrap()
            .0;
        assert_ne!(other.store_id, created.store_id);
    }
}
