//! The master's view of its slave: the live record stream, the slave's acknowledgements,
//! and how far receipts may be released.
//!
//! A receipt for a record below `gate_from` (written before the slave attached) needs
//! only the local journal; from `gate_from` on it also needs the slave's ack. The slave
//! is in sync once it has acknowledged `in_sync_at`, everything the master held when it
//! attached. Only an in-sync slave is one the pair relies on (and may promote).

use futures::channel::mpsc;

use crate::repl::message::WireRecord;

/// What the core hands a master's link, in order.
#[derive(Debug)]
pub enum Shipment {
    Record(WireRecord),
    /// The slave has acknowledged its in-sync point: tell it the master relies on it.
    InSync,
}

pub struct Mirror {
    pub link: u64,
    live: mpsc::UnboundedSender<Shipment>,
    pub acked: u64,
    pub gate_from: u64,
    pub in_sync_at: u64,
    pub in_sync: bool,
    /// Where the slave's replication listener will be if it promotes itself.
    pub advertised: Option<String>,
}

impl Mirror {
    pub fn new(
        link: u64,
        live: mpsc::UnboundedSender<Shipment>,
        next_seq: u64,
        in_sync_at: u64,
        advertised: Option<String>,
    ) -> Mirror {
        Mirror {
            link,
            live,
            acked: 0,
            gate_from: next_seq,
            in_sync_at,
            in_sync: false,
            advertised,
        }
    }

    /// Queues a record for the slave; false if the link has gone.
    pub fn ship(&self, record: WireRecord) -> bool {
        self.live.unbounded_send(Shipment::Record(record)).is_ok()
    }

    /// The highest seq whose receipt may go out, given the local journal's durable seq.
    pub fn release_point(&self, durable: u64) -> u64 {
        durable.min(self.acked.max(self.gate_from - 1))
    }

    /// Records an acknowledgement; true if this one brought the slave in sync, in which
    /// case the slave is told so.
    pub fn ack(&mut self, seq: u64) -> bool {
        self.acked = self.acked.max(seq);
        let became = !self.in_sync && self.acked >= self.in_sync_at;
        if became {
            self.in_sync = true;
            let _ = self.live.unbounded_send(Shipment::InSync);
        }
        became
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_before_the_attach_need_the_journal_only_and_after_it_the_slave_too() {
        let (live, _rx) = mpsc::unbounded();
        let mut mirror = Mirror::new(7, live, 101, 100, None);
        assert_eq!(
            mirror.release_point(100),
            100,
            "records 1..=100 predate the slave"
        );
        assert_eq!(mirror.release_point(120), 100, "101.. wait for the slave");
        assert!(!mirror.ack(99) && !mirror.in_sync);
        assert!(mirror.ack(110), "in sync at 100");
        assert_eq!(mirror.release_point(120), 110);
        assert_eq!(mirror.release_point(105), 105, "and for the local journal");
        assert!(!mirror.ack(111), "in sync only once");
    }
}
