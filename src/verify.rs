//! `mirrormq verify --data-dir DIR`: reads a whole store, read-only, and reports it.
//!
//! Every segment is checked record by record (CRC, order, decodability) and replayed into
//! a broker, as a start-up would, without taking the lock or repairing anything: an
//! operator can check a store, or a copy of one, before a broker uses it.

use std::path::Path;

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::journal::recovery::{self, Mode};
use crate::journal::{StoreMeta, JOURNAL_DIR};

/// Prints the store's summary to stdout; exit code 0 if it is whole.
pub fn run(data_dir: &Path) -> Result<i32> {
    StoreMeta::check_dir(data_dir, true)?;
    let meta = StoreMeta::load(data_dir)?;
    let mut broker = Broker::new(u32::MAX, 0);
    // A store may hold many times any memory: count its messages, keep their bodies out.
    broker.set_paging(Some(0));
    let summary = recovery::read(
        &data_dir.join(JOURNAL_DIR),
        Mode::ReadOnly,
        |_, placement, record| {
            let replayed = broker.replay(&record, false).map_err(Error::Codec)?;
            if replayed.applied.durable {
                broker.placed(record.seq, placement);
            }
            Ok(())
        },
    )?;
    println!("store {}", meta.store_id);
    let epochs: Vec<String> = meta
        .epochs
        .iter()
        .map(|e| format!("{}@{}", e.epoch, e.first_seq))
        .collect();
    println!("epochs {}", epochs.join(" "));
    println!("segments {}", summary.segments.len());
    println!("records {}", summary.entries);
    match summary.last {
        Some(last) => println!(
            "last epoch {} seq {} crc {:08x}",
            last.epoch, last.seq, last.checksum
        ),
        None => println!("last none"),
    }
    println!("messages {}", broker.message_count());
    for (queue, depth) in broker.queue_depths() {
        println!("queue {queue} {depth}");
    }
    if let Some((file, offset)) = summary.torn_tail_at {
        println!("torn-tail {} {offset}", file.display());
    }
    println!("ok");
    Ok(0)
}
