//! The store at start-up: replaying the journal into a broker, reading a slave's
//! position for its Hello, and making a slave's store the master's before it mirrors.

use futures::channel::mpsc;

use crate::broker::{Broker, Op};
use crate::codec;
use crate::config::{Config, SlaveAck};
use crate::error::{Error, Result};
use crate::journal::recovery::{self, Mode};
use crate::journal::{segment, Journal, Recovered, StoreMeta, JOURNAL_DIR};
use crate::repl::message::{CatchUp, Position};
use crate::repl::slave;

/// Replays the journal into a new broker and opens the journal for appending. The
/// journal writer reports to `events`, and, with `slave_ack = "durable"`, each durable seq
/// to `hook` first (a slave's acknowledgements, see `repl::slave`).
pub fn recover(
    config: &Config,
    events: mpsc::UnboundedSender<crate::journal::Event>,
    hook: slave::AckHook,
) -> Result<(Broker, Journal, Recovered)> {
    let mut broker = Broker::new(config.broker.max_redeliveries, config.broker.dedup_window);
    let ack_when_durable = config.replication.slave_ack == SlaveAck::Durable;
    let report = Box::new(move |event: crate::journal::Event| {
        if let crate::journal::Event::Durable(seq) = event {
            if ack_when_durable {
                hook.ack(seq);
            }
        }
        let _ = events.unbounded_send(event);
    });
    let mut epochs_found = Vec::new();
    let (mut journal, recovered) = Journal::open(
        config.data_dir(),
        config.broker.segment_size.0,
        report,
        |entry| {
            let op: Op = codec::decode(&entry.payload).map_err(|e| {
                Error::Codec(format!(
                    "record seq {} passed its checksum but does not decode: {e}",
                    entry.seq
                ))
            })?;
            if let Op::EpochStarted { epoch } = op {
                epochs_found.push(crate::journal::store::EpochStart {
                    epoch,
                    first_seq: entry.seq,
                });
            }
            Ok(broker.apply(entry.seq, &op, false))
        },
    )?;
    // The journal is the authority on epochs: store.toml may lag it after a crash.
    journal.merge_epochs(config.data_dir(), &epochs_found)?;
    // Before the restart, any of these may have been delivered and not yet acked.
    broker.mark_all_maybe_delivered();
    Ok((broker, journal, recovered))
}

/// Where this store stands, for a slave's Hello. Reads only.
pub(super) fn read_position(config: &Config) -> Result<Position> {
    let dir = config.data_dir().join(JOURNAL_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let (meta, _) = StoreMeta::load_or_create(config.data_dir())?;
    let summary = recovery::read(&dir, Mode::ReadOnly, |_, _| Ok(()))?;
    Ok(Position {
        store_id: meta.store_id,
        epochs: meta.epochs,
        last: summary.last,
        alone_since: meta.alone_since,
    })
}

/// Makes the store the master's: its identity and epochs, and for a replace an empty
/// journal that starts where the master's records do.
pub(super) fn prepare_store(config: &Config, link: &slave::Link) -> Result<()> {
    // Replace the journal before relabelling the store: a crash in between leaves an
    // empty journal under the old id (caught up afresh), never old records under the
    // master's id.
    if let CatchUp::Replace { from } = link.catch_up {
        let dir = config.data_dir().join(JOURNAL_DIR);
        for (_, path) in segment::list(&dir)? {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        segment::create(&dir, from, config.broker.segment_size.0)?;
        log::info!(
            "replication: replaced the local journal; mirroring the master's from seq {from}"
        );
    }
    // Whatever this store served alone is now either the master's history too or gone.
    let meta = StoreMeta {
        store_id: link.store_id.clone(),
        epochs: link.epochs.clone(),
        alone_since: None,
    };
    meta.save(config.data_dir())
}
