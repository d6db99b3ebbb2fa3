//! The next segment, preallocated ahead of time on a thread of its own.
//!
//! Writing a whole segment of zeros and syncing it takes tens of milliseconds (32 MiB:
//! about 20 ms on the benchmark machine), and a roll made every receipt wait for it, on
//! the master and on the slave alike. With a spare ready, a roll writes the header,
//! renames the file and syncs the directory. The writer says how to claim the space
//! (`segment::Fill`): zeros at an eager pace, a reservation at a relaxed one; a
//! reservation being made when the pace turns eager (a promotion) is replaced by zeros.
//! The writer starts the spare once the segment it writes is half full, so a broker that
//! writes little never makes one. The spare is `next-segment.tmp` in the journal
//! directory; recovery lists only `*.seg` files, so a spare left by a crash is ignored
//! and overwritten by the next one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::record::Seq;
use super::segment::{self, Fill};
use crate::error::Result;

const SPARE_NAME: &str = "next-segment.tmp";

pub struct Spare {
    dir: PathBuf,
    size: u64,
    making: Option<(Fill, JoinHandle<Result<File>>)>,
}

impl Spare {
    /// No spare yet: `prepare` starts one of `size` bytes in `dir`.
    pub fn new(dir: &Path, size: u64) -> Spare {
        Spare {
            dir: dir.to_path_buf(),
            size,
            making: None,
        }
    }

    /// Starts making the spare with `fill`, unless it is made or being made; one being
    /// reserved is made again with zeros if `fill` asks for them.
    pub fn prepare(&mut self, fill: Fill) {
        match &self.making {
            Some((Fill::Reserved, _)) if fill == Fill::Zeros => {
                // A reservation is quick: wait for it, then write over it.
                self.finish();
            }
            Some(_) => return,
            None => {}
        }
        let (path, size) = (self.path(), self.size);
        let spawned = std::thread::Builder::new()
            .name("journal-spare".into())
            .spawn(move || segment::preallocated(&path, size, fill));
        match spawned {
            Ok(handle) => self.making = Some((fill, handle)),
            // Without a spare the next roll makes its segment itself, as before.
            Err(error) => log::warn!("journal: cannot start the spare segment thread: {error}"),
        }
    }

    /// The segment starting at `first_seq`, made from the spare (waiting for it if it is
    /// not finished yet), or made here with `fill` if there is none or it could not be
    /// made (then that error, if it repeats, is the one reported).
    pub fn take(&mut self, first_seq: Seq, fill: Fill) -> Result<File> {
        match self.finish() {
            Some(file) => segment::install(file, &self.path(), &self.dir, first_seq),
            None => segment::create(&self.dir, first_seq, self.size, fill),
        }
    }

    /// The spare being made, once it is finished; `None` if there is none or it failed.
    fn finish(&mut self) -> Option<File> {
        match self.making.take().map(|(_, making)| making.join()) {
            Some(Ok(Ok(file))) => Some(file),
            Some(Ok(Err(error))) => {
                log::warn!("journal: the spare segment could not be made ({error})");
                None
            }
            Some(Err(_)) => {
                log::warn!("journal: the thread making the spare segment panicked");
                None
            }
            None => None,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(SPARE_NAME)
    }
}

impl Drop for Spare {
    /// Lets a spare being made finish, so no thread writes into a directory that may be
    /// about to be replaced or copied.
    fn drop(&mut self) {
        if let Some((_, making)) = self.making.take() {
            let _ = making.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::recovery::{self, Mode};

    #[test]
    fn segments_taken_from_spares_are_real_segments_and_the_spare_is_not_one() {
        for fill in [Fill::Zeros, Fill::Reserved] {
            let dir = tempfile::tempdir().unwrap();
            let mut spare = Spare::new(dir.path(), 64 * 1024);
            // Taken without a spare (made there and then), after one, while one is made,
            // and after a reservation was asked to be zeros instead.
            for first_seq in [Seq(1), Seq(10), Seq(20), Seq(30)] {
                if first_seq > Seq(1) {
                    spare.prepare(fill);
                }
                if first_seq == Seq(30) {
                    spare.prepare(Fill::Zeros);
                }
                let file = spare.take(first_seq, fill).unwrap();
                assert_eq!(file.metadata().unwrap().len(), 64 * 1024, "{fill:?}");
            }
            spare.prepare(fill);
            drop(spare);
            assert!(dir.path().join(SPARE_NAME).exists());
            let listed: Vec<Seq> = segment::list(dir.path())
                .unwrap()
                .into_iter()
                .map(|(first, _)| first)
                .collect();
            let made = vec![Seq(1), Seq(10), Seq(20), Seq(30)];
            assert_eq!(listed, made, "{fill:?}");
            // Each has its header and nothing else: recovery reads empty segments.
            let summary = recovery::read(dir.path(), Mode::ReadOnly, |_, _, _| Ok(())).unwrap();
            assert_eq!(summary.segments, made, "{fill:?}");
            assert_eq!(summary.entries, 0, "{fill:?}");
        }
    }
}
