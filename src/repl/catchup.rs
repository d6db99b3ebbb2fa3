//! Deciding how a slave catches up, or that it must not: pure, so every case is a test.
//!
//! A slave's history is a prefix of the master's when its last record lies in the same
//! store and the same epoch in the master's history (an old master restarted after a
//! failover has records in an epoch the new master never had, so it is refused). A
//! prefix is topped up from the next seq, if the master still has every record from
//! there; otherwise (or for an empty slave) the slave replaces its journal with all the
//! master still holds, which is a complete store by construction. Anything else diverged:
//! mirroring on top of it would mix two histories, so the operator resyncs by hand.

use super::message::{CatchUp, Position};
use crate::journal::store::EpochStart;

/// What the master knows of its own store when a slave says hello.
#[derive(Debug, Clone)]
pub struct MasterView<'a> {
    pub store_id: &'a str,
    pub epochs: &'a [EpochStart],
    pub next_seq: u64,
    pub first_retained: u64,
}

/// Why a slave was refused, for both sides' logs.
pub fn diverged(why: &str) -> String {
    format!("diverged: {why}; this store cannot mirror the master. Copy the master's data directory over it with scripts/resync.sh MASTER_DATA_DIR SLAVE_DATA_DIR")
}

/// The epoch that record `seq` belongs to in this history.
fn epoch_of(epochs: &[EpochStart], seq: u64) -> Option<u64> {
    epochs
        .iter()
        .rev()
        .find(|e| e.first_seq <= seq)
        .map(|e| e.epoch)
}

pub fn plan(master: &MasterView, slave: &Position) -> Result<CatchUp, String> {
    let Some((epoch, seq, _checksum)) = slave.last else {
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
    if seq >= master.next_seq {
        return Err(diverged(&format!(
            "the slave has seq {seq}, beyond the master's last seq {}",
            master.next_seq - 1
        )));
    }
    if epoch_of(master.epochs, seq) != Some(epoch) {
        return Err(diverged(&format!(
            "the slave's seq {seq} is in epoch {epoch}, but in the master's history it is in epoch {}",
            epoch_of(master.epochs, seq).map_or("none".into(), |e| e.to_string())
        )));
    }
    // The append starts by checking the slave's last record against the master's, so
    // that record must still be on the master's disk.
    if seq < master.first_retained {
        return Ok(CatchUp::Replace {
            from: master.first_retained,
        });
    }
    Ok(CatchUp::Append { from: seq + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(list: &[(u64, u64)]) -> Vec<EpochStart> {
        list.iter()
            .map(|&(epoch, first_seq)| EpochStart { epoch, first_seq })
            .collect()
    }

    fn slave(store: &str, last: Option<(u64, u64)>) -> Position {
        Position {
            store_id: store.into(),
            epochs: epochs(&[(1, 1)]),
            last: last.map(|(e, s)| (e, s, 0)),
        }
    }

    #[test]
    fn catch_up_plans() {
        let history = epochs(&[(1, 1), (2, 451)]);
        let master = MasterView {
            store_id: "A",
            epochs: &history,
            next_seq: 1001,
            first_retained: 1,
        };
        let trimmed = MasterView {
            first_retained: 600,
            ..master.clone()
        };
        let cases: Vec<(&MasterView, Position, Result<CatchUp, &str>)> = vec![
            (&master, slave("B", None), Ok(CatchUp::Replace { from: 1 })),
            (
                &trimmed,
                slave("B", None),
                Ok(CatchUp::Replace { from: 600 }),
            ),
            (
                &master,
                slave("A", Some((2, 900))),
                Ok(CatchUp::Append { from: 901 }),
            ),
            (
                &master,
                slave("A", Some((1, 450))),
                Ok(CatchUp::Append { from: 451 }),
            ),
            (
                &master,
                slave("A", Some((2, 1000))),
                Ok(CatchUp::Append { from: 1001 }),
            ),
            (
                &trimmed,
                slave("A", Some((2, 500))),
                Ok(CatchUp::Replace { from: 600 }),
            ),
            (
                &trimmed,
                slave("A", Some((2, 599))),
                Ok(CatchUp::Replace { from: 600 }),
            ),
            (
                &trimmed,
                slave("A", Some((2, 600))),
                Ok(CatchUp::Append { from: 601 }),
            ),
            // The old master, restarted after the failover: seq 480 was epoch 1 there.
            (&master, slave("A", Some((1, 480))), Err("epoch 1")),
            (&master, slave("A", Some((2, 1001))), Err("beyond")),
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
