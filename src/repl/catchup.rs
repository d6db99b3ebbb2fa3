//! Deciding how a slave catches up, or that it must not: pure, so every case is a test.
//!
//! A slave's history is a prefix of the master's when its last record lies in the same
//! store and the same epoch in the master's history. A prefix is topped up from the next
//! seq, if the master still has every record from there; otherwise (or for an empty
//! slave) the slave replaces its journal with all the master still holds, which is a
//! complete store by construction.
//!
//! A slave whose history forks from the master's (an old master restarted after its
//! slave took over) holds a tail the new master never had. While a slave was in sync,
//! no record got a receipt without its acknowledgement, so that tail was never receipted
//! and is replaced automatically, unless the slave served alone at or past the fork (a
//! partition left two masters): then its tail may hold receipted messages, and the
//! operator decides (scripts/resync.sh). So does a slave of another store.

use super::message::{CatchUp, Standing};
use crate::journal::{Epoch, EpochStart, Seq};

/// What the master knows of its own store when a slave says hello.
#[derive(Debug, Clone)]
pub struct MasterView<'a> {
    pub store_id: &'a str,
    pub epochs: &'a [EpochStart],
    pub next_seq: Seq,
    pub first_retained: Seq,
}

/// Why a slave was refused, for both sides' logs.
pub fn diverged(why: &str) -> String {
    format!("diverged: {why}; this store cannot mirror the master. Copy the master's data directory over it with scripts/resync.sh MASTER_DATA_DIR SLAVE_DATA_DIR")
}

/// The epoch that record `seq` belongs to in this history.
fn epoch_of(epochs: &[EpochStart], seq: Seq) -> Option<Epoch> {
    epochs
        .iter()
        .rev()
        .find(|e| e.first_seq <= seq)
        .map(|e| e.epoch)
}

pub fn plan(master: &MasterView, slave: &Standing) -> Result<CatchUp, String> {
    let Some(last) = slave.last else {
        // An empty journal of this very store (a copy of an empty store, or a slave
        // whose copy ended before any record) appends from the first record, if the
        // master still has it; any other empty store copies the master's.
        if slave.store_id == master.store_id && master.first_retained <= Seq::FIRST {
            return Ok(CatchUp::Append { from: Seq::FIRST });
        }
        return Ok(CatchUp::Replace {
            from: master.first_retained,
        });
    };
    if slave.store_id != master.store_id {
        return Err(diverged(&format!(
            "the slave holds store {} with records, the master is store {}",
            slave.store_id, master.store_id
        )));
    }
    let (epoch, seq) = (last.epoch, last.seq);
    if seq >= master.next_seq || epoch_of(master.epochs, seq) != Some(epoch) {
        return replace_unreceipted_tail(master, slave, epoch, seq);
    }
    // The append starts by checking the slave's last record against the master's, so
    // that record must still be on the master's disk.
    if seq < master.first_retained {
        return Ok(CatchUp::Replace {
            from: master.first_retained,
        });
    }
    Ok(CatchUp::Append { from: seq.next() })
}

/// The slave holds records the master's history does not (typically an old master,
/// restarted after its slave took over, with the records it wrote but never got
/// acknowledged). While a slave was in sync no receipt went out without its copy, so if
/// this store's last period of serving alone was closed by a slave coming in sync
/// (`alone_since` is `None`), its tail was never receipted. If the period is still open,
/// any record from `alone_since` on may have been, past the fork too (acknowledgements
/// lost in flight put `alone_since` below it), and only the operator may discard them.
fn replace_unreceipted_tail(
    master: &MasterView,
    slave: &Standing,
    epoch: Epoch,
    seq: Seq,
) -> Result<CatchUp, String> {
    let why = if seq >= master.next_seq {
        format!(
            "the slave has seq {seq}, beyond the master's last seq {}",
            master.next_seq.prev()
        )
    } else {
        format!(
            "the slave's seq {seq} is in epoch {epoch}, but in the master's history it is in epoch {}",
            epoch_of(master.epochs, seq).map_or("none".into(), |e| e.to_string())
        )
    };
    // A last record in an epoch the slave's own history does not list: its history is
    // incomplete, so the fork cannot be placed.
    if epoch_of(&slave.epochs, seq) != Some(epoch) {
        return Err(diverged(&why));
    }
    let fork = fork_point(master, &slave.epochs, seq);
    match slave.alone_since {
        Some(alone) => Err(diverged(&format!(
            "{why}; it served without an in-sync slave from seq {alone} on, so its records from the fork at seq {fork} on may have been receipted"
        ))),
        None => Ok(CatchUp::Replace {
            from: master.first_retained,
        }),
    }
}

/// The first seq at which the two histories assign different epochs (or the master has
/// no record). Epochs change only at their first seqs, so only those need comparing.
fn fork_point(master: &MasterView, slave_epochs: &[EpochStart], last: Seq) -> Seq {
    let mut boundaries: Vec<Seq> = master
        .epochs
        .iter()
        .chain(slave_epochs)
        .map(|e| e.first_seq)
        .chain([master.next_seq])
        .filter(|&s| s <= last)
        .collect();
    boundaries.sort_unstable();
    boundaries
        .into_iter()
        .find(|&s| s >= master.next_seq || epoch_of(master.epochs, s) != epoch_of(slave_epochs, s))
        .unwrap_or(master.next_seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(list: &[(u64, u64)]) -> Vec<EpochStart> {
        list.iter()
            .map(|&(epoch, first_seq)| EpochStart {
                epoch: Epoch(epoch),
                first_seq: Seq(first_seq),
            })
            .collect()
    }

    /// A slave whose history is the master's up to the epoch of its last record.
    fn slave(store: &str, last: Option<(u64, u64)>) -> Standing {
        let last_epoch = last.map_or(1, |(e, _)| e);
        Standing {
            store_id: store.into(),
            epochs: epochs(&[(1, 1), (2, 451)])
                .into_iter()
                .filter(|e| e.epoch <= Epoch(last_epoch))
                .collect(),
            last: last.map(|(e, s)| crate::journal::Position {
                epoch: Epoch(e),
                seq: Seq(s),
                checksum: 0,
            }),
            alone_since: None,
        }
    }

    fn served_alone(mut position: Standing, since: u64) -> Standing {
        position.alone_since = Some(Seq(since));
        position
    }

    #[test]
    fn catch_up_plans() {
        let history = epochs(&[(1, 1), (2, 451)]);
        let master = MasterView {
            store_id: "A",
            epochs: &history,
            next_seq: Seq(1001),
            first_retained: Seq(1),
        };
        let trimmed = MasterView {
            first_retained: Seq(600),
            ..master.clone()
        };
        let cases: Vec<(&MasterView, Standing, Result<CatchUp, &str>)> = vec![
            (
                &master,
                slave("B", None),
                Ok(CatchUp::Replace { from: Seq(1) }),
            ),
            (
                &trimmed,
                slave("B", None),
                Ok(CatchUp::Replace { from: Seq(600) }),
            ),
            (
                &master,
                slave("A", Some((2, 900))),
                Ok(CatchUp::Append { from: Seq(901) }),
            ),
            (
                &master,
                slave("A", Some((1, 450))),
                Ok(CatchUp::Append { from: Seq(451) }),
            ),
            (
                &master,
                slave("A", Some((2, 1000))),
                Ok(CatchUp::Append { from: Seq(1001) }),
            ),
            (
                &trimmed,
                slave("A", Some((2, 500))),
                Ok(CatchUp::Replace { from: Seq(600) }),
            ),
            (
                &trimmed,
                slave("A", Some((2, 599))),
                Ok(CatchUp::Replace { from: Seq(600) }),
            ),
            (
                &trimmed,
                slave("A", Some((2, 600))),
                Ok(CatchUp::Append { from: Seq(601) }),
            ),
            // The old master, restarted after the failover: seq 480 was epoch 1 there.
            // Its slave was in sync when it died, so its tail past the fork at 451 was
            // never receipted and it takes the master's records instead.
            (
                &master,
                slave("A", Some((1, 480))),
                Ok(CatchUp::Replace { from: Seq(1) }),
            ),
            // It carried on alone (a partition: its slave had promoted at 451). Whether
            // from 460, or from 440 because the last acknowledgements were lost in
            // flight, its tail may be receipted, so the operator decides.
            (
                &master,
                served_alone(slave("A", Some((1, 480))), 460),
                Err("epoch 1"),
            ),
            (
                &master,
                served_alone(slave("A", Some((1, 480))), 440),
                Err("fork at seq 451"),
            ),
            (
                &master,
                slave("A", Some((2, 1001))),
                Ok(CatchUp::Replace { from: Seq(1) }),
            ),
            (
                &master,
                served_alone(slave("A", Some((2, 1001))), 1001),
                Err("beyond"),
            ),
            // A last record in an epoch its own history does not list.
            (
                &master,
                Standing {
                    epochs: epochs(&[(1, 1)]),
                    ..slave("A", Some((3, 1000)))
                },
                Err("epoch 3"),
            ),
            (&master, slave("B", Some((1, 5))), Err("store B")),
        ];
        for (view, position, expected) in cases {
            let got = plan(view, &position);
            match (&got, expected) {
                (Ok(plan), Ok(want)) => assert_eq!(plan, &want, "{position:?}"),
                (Err(why), Err(fragment)) => {
                    assert!(
                        why.starts_with("diverged")
                            && why.contains(fragment)
                            && why.contains("scripts/resync.sh"),
                        "{why}"
                    )
                }
                _ => panic!("{position:?}: got {got:?}"),
            }
        }
    }
}
