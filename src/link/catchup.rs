//! Reading a slave's catch-up from the journal on disk: the master's link streams the
//! durable records a slave lacks, from segment files read off the executor.

use std::path::PathBuf;

use futures::channel::mpsc;
use futures::SinkExt;

use crate::journal::recovery::{self, Mode};
use crate::journal::{Record, Seq};
use crate::runtime;

/// Records per read-ahead: the reader stays at most this far ahead of the link.
const READ_AHEAD: usize = 1024;

/// Streams the journal's durable records with `from <= seq < until`, read off the
/// executor by a blocking task. A read that fails ends the stream with the error, so the
/// link fails rather than treat a partial catch-up as complete.
pub fn read_journal(dir: PathBuf, from: Seq, until: Seq) -> mpsc::Receiver<Result<Record, String>> {
    let (mut sender, receiver) = mpsc::channel(READ_AHEAD);
    runtime::spawn_blocking(move || {
        let mut last = None;
        let result = recovery::read_from(&dir, Mode::ReadOnly, from, |_, _, record| {
            if record.seq >= until {
                return Err(crate::Error::ShuttingDown);
            }
            last = Some(record.seq);
            if record.seq >= from {
                futures::executor::block_on(sender.send(Ok(record)))
                    .map_err(|_| crate::Error::ShuttingDown)?;
            }
            Ok(())
        });
        match result {
            Ok(_) | Err(crate::Error::ShuttingDown) => {}
            // Everything below `until` was delivered: a half-written record past it, in
            // the segment still being written, is not our business.
            Err(_) if last.is_some_and(|seq| seq.next() >= until) => {}
            Err(error) => {
                let why = format!("reading the journal for catch-up failed: {error}");
                log::error!("replication: {why}");
                let _ = futures::executor::block_on(sender.send(Err(why)));
            }
        }
    });
    receiver
}
