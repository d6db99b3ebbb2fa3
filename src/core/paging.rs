//! Bodies read back from the journal, and compaction, as the core sequences them.
//!
//! Read-ahead: after each dispatch the broker names the bodies its consumers will want
//! next (`Broker::wanted_reads`); the core turns them into journal extents for the
//! reader thread (`Output::Read`) and hands what comes back to the broker.
//!
//! Compaction, on the master only, at `Input::Compact`: a segment the ledger calls
//! sparse (kept only by a few live messages) at two looks in a row, with the same live
//! count both times (nobody is consuming from it), has its live messages read back and
//! written forward in `Carry` records (and the durable subscriptions recorded there in
//! `Subscribed` records); the ledger then deletes it. `Carry` is an
//! ordinary record, so a slave mirrors it, catch-up and a full copy carry it, and replay
//! rebuilds the same state from it: each side's ledger frees its own segments.

use std::ops::Range;

use super::{Core, Output};
use crate::broker::{Carried, Fetch, Op};
use crate::journal::{Fetched, Seq};
use crate::repl::role::Role;

/// Compaction in progress, and what the last look saw.
#[derive(Debug, Default)]
pub(super) struct Compaction {
    /// The records of the segment being compacted, while their bodies are read back.
    running: Option<Range<Seq>>,
    /// The sparse segments and their live counts at the last look.
    suspects: Vec<(Seq, u64)>,
}

impl Core {
    /// Asks for the bodies consumers will want next.
    pub(super) fn read_ahead(&mut self) {
        let wanted = self.broker.wanted_reads(self.durable_seq);
        self.request_reads(wanted);
    }

    fn request_reads(&mut self, fetches: Vec<Fetch>) {
        if fetches.is_empty() {
            return;
        }
        let mut reads = Vec::with_capacity(fetches.len());
        let mut gone = Vec::new();
        for fetch in fetches {
            match self.log.extent(fetch.record, fetch.at) {
                Some(extent) => reads.push((fetch, extent)),
                None => gone.push((fetch, Fetched::Gone)),
            }
        }
        if !gone.is_empty() {
            let unreadable = self.broker.loaded_batch(gone);
            report_unreadable(unreadable);
        }
        if !reads.is_empty() {
            self.out.push(Output::Read(reads));
        }
    }

    /// Bodies read back: to the broker, and on with a compaction that waited for them.
    pub(super) fn fetched(&mut self, fetched: Vec<(Fetch, Fetched)>) {
        for why in self.broker.loaded_batch(fetched) {
            log::error!(
                "journal: {why}; the store needs repair (see the README's recovery section)"
            );
        }
        if self.compaction.running.is_some() {
            self.continue_compaction();
        }
    }

    /// Looks for a segment worth compacting and starts on it.
    pub(super) fn compact(&mut self) {
        if !matches!(self.role(), Role::MasterAlone | Role::MasterWithSlave) {
            self.compaction = Compaction::default();
            return;
        }
        if self.compaction.running.is_some() {
            return self.continue_compaction();
        }
        let sparse = self.log.sparse_segments();
        let pinned = sparse
            .iter()
            .find(|seen| self.compaction.suspects.contains(seen))
            .copied();
        self.compaction.suspects = sparse;
        if let Some((segment, live)) = pinned {
            log::info!(
                "journal: compacting segment {segment}: its {live} live messages are written forward so that it can be deleted"
            );
            self.compaction.running = Some(self.log.segment_range(segment));
            self.continue_compaction();
        }
    }

    fn continue_compaction(&mut self) {
        let Some(records) = self.compaction.running.clone() else {
            return;
        };
        match self
            .broker
            .gather_to_carry(records.clone(), self.durable_seq)
        {
            Ok(carried) => {
                self.compaction.running = None;
                // Records never span segments: a quarter of one each leaves room.
                let limit = (self.log.segment_size() / 4) as usize;
                for chunk in chunks(carried, limit) {
                    self.record(Op::Carry(chunk));
                }
                self.carry_durables(&records);
            }
            Err(reads) => self.request_reads(reads),
        }
    }
}

/// Says, for each message held back, why: the store needs an operator.
fn report_unreadable(unreadable: Vec<String>) {
    for why in unreadable {
        log::error!("journal: {why}; the store needs repair (see the README's recovery section)");
    }
}

/// Splits messages into runs of at most `limit` bytes (at least one message each).
fn chunks(carried: Vec<Carried>, limit: usize) -> Vec<Vec<Carried>> {
    let mut chunks: Vec<Vec<Carried>> = Vec::new();
    let mut bytes = 0;
    for message in carried {
        let cost = message.message.cost();
        match chunks.last_mut() {
            Some(chunk) if bytes + cost <= limit => chunk.push(message),
            _ => {
                bytes = 0;
                chunks.push(vec![message]);
            }
        }
        bytes += cost;
    }
    chunks
}
