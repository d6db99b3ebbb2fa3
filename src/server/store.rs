//! The store at start-up: replaying the journal into a broker, reading a slave's
//! position for its Hello, and making a slave's store the master's before it mirrors.

use std::path::Path;

use futures::channel::mpsc;

use crate::broker::Broker;
use crate::config::Config;
use crate::core::Store;
use crate::error::{Error, Result};
use crate::journal::recovery::{self, Mode};
use crate::journal::{segment, Journal, Recovered, Seq, StoreMeta, JOURNAL_DIR};
use crate::link::copy::{INSTALL, SYNC_DIR};
use crate::link::slave::Welcome;
use crate::repl::message::{CatchUp, Standing};

/// Replays the journal into a new broker and opens the journal for appending; the
/// journal writer reports to `events`.
pub fn recover(
    config: &Config,
    events: mpsc::UnboundedSender<crate::journal::Event>,
) -> Result<(Journal, Store, Recovered)> {
    install_copy(config.data_dir())?;
    let mut broker = Broker::new(config.broker.max_redeliveries, config.broker.dedup_window);
    broker.set_paging(Some(page_above(config)));
    broker.set_selector_scan(config.broker.selector_scan);
    broker.set_selector_limits(crate::session::selector_limits(&config.stomp));
    let report = Box::new(move |event| {
        let _ = events.unbounded_send(event);
    });
    let mut epochs_found = Vec::new();
    let (journal, log, mut recovered) = Journal::open(
        config.data_dir(),
        config.broker.segment_size.0,
        report,
        |record, placement| {
            let replayed = broker
                .replay(record, false)
                .map_err(|why| Error::Codec(format!("{why} (the record passed its checksum)")))?;
            if replayed.applied.durable {
                broker.placed(record.seq, placement);
            }
            epochs_found.extend(replayed.epoch_started);
            Ok(replayed.applied)
        },
    )?;
    // The journal is the authority on epochs: store.toml may lag it after a crash.
    if recovered.meta.merge_epochs(&epochs_found) {
        recovered.meta.save(config.data_dir())?;
    }
    // Before the restart, any of these may have been delivered and not yet acked.
    broker.mark_all_maybe_delivered();
    let store = Store {
        broker,
        log,
        store_id: recovered.meta.store_id.clone(),
        epochs: recovered.meta.epochs.clone(),
        next_seq: recovered.next_seq,
    };
    Ok((journal, store, recovered))
}

/// Past this many bytes held, new persistent messages keep only their slot in memory:
/// half the memory limit, so that non-persistent messages, producers' messages on their
/// way in and the consumers' read-ahead have the other half.
pub fn page_above(config: &Config) -> usize {
    config.broker.max_memory.bytes() / 2
}

/// Where this store stands, for a slave's Hello. Reads only.
pub(super) fn read_standing(config: &Config) -> Result<Standing> {
    let dir = config.data_dir().join(JOURNAL_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let (meta, _) = StoreMeta::load_or_create(config.data_dir())?;
    // The last record is in one of the last two segments (a segment is made only for a
    // record), unless those are empty after a crash: then read them all.
    let segments = segment::list(&dir)?;
    let from = segments
        .len()
        .checked_sub(2)
        .map_or(Seq::ZERO, |at| segments[at].0);
    let mut last = recovery::read_from(&dir, Mode::ReadOnly, from, |_, _, _| Ok(()))?.last;
    if last.is_none() && from > Seq::ZERO {
        last = recovery::read(&dir, Mode::ReadOnly, |_, _, _| Ok(()))?.last;
    }
    Ok(Standing {
        store_id: meta.store_id,
        epochs: meta.epochs,
        last,
        alone_since: meta.alone_since,
    })
}

/// Makes the store the master's: its identity and epochs, and for a replace an empty
/// journal that starts where the master's records do.
pub(super) fn prepare_store(config: &Config, welcome: &Welcome) -> Result<()> {
    // Replace the journal before relabelling the store: a crash in between leaves an
    // empty journal under the old id (caught up afresh), never old records under the
    // master's id.
    if let CatchUp::Replace { from } = welcome.catch_up {
        let dir = config.data_dir().join(JOURNAL_DIR);
        for (_, path) in segment::list(&dir)? {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        segment::create(
            &dir,
            from,
            config.broker.segment_size.0,
            segment::Fill::Zeros,
        )?;
        log::info!(
            "replication: replaced the local journal; mirroring the master's from seq {from}"
        );
    }
    // Whatever this store served alone is now either the master's history too or gone.
    let meta = StoreMeta {
        store_id: welcome.store_id.clone(),
        epochs: welcome.epochs.clone(),
        alone_since: None,
    };
    meta.save(config.data_dir())
}

/// Makes a finished copy of the master's store (`sync/` with its install marker, see
/// `link::copy`) this store: the journal is swapped for it and store.toml takes the
/// master's identity. Each step can be repeated, so a crash halfway is finished at the
/// next start: `sync/INSTALL` → rename `journal` to `journal.old` and `sync` to
/// `journal`; `journal/INSTALL` → save store.toml from it, remove it; then remove
/// `journal.old`.
pub fn install_copy(data_dir: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e| Error::io(path, e)
    };
    let sync = data_dir.join(SYNC_DIR);
    let journal = data_dir.join(JOURNAL_DIR);
    let old = data_dir.join(format!("{JOURNAL_DIR}.old"));
    if sync.join(INSTALL).exists() {
        if journal.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(io(&old))?;
            }
            std::fs::rename(&journal, &old).map_err(io(&journal))?;
        }
        std::fs::rename(&sync, &journal).map_err(io(&sync))?;
        sync_dir(data_dir)?;
    }
    let marker = journal.join(INSTALL);
    if marker.exists() {
        let meta = StoreMeta::load_from(&marker)?;
        meta.save(data_dir)?;
        std::fs::remove_file(&marker).map_err(io(&marker))?;
        log::info!(
            "replication: this store is now a copy of store {}",
            meta.store_id
        );
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
