//! The receipt latency of one session's SENDs, for the metrics: the reader notes when a
//! SEND asking for a receipt was read, the writer observes the time to its RECEIPT.
//!
//! The core releases a session's SEND receipts in the order the SENDs came, so the one
//! written next is at the front; other receipts (SUBSCRIBE, a transaction's) are not
//! noted and pass by.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use crate::meter::METERS;

/// At most this many SENDs are timed at once; past it (a client far ahead of its
/// receipts) further ones go untimed rather than the list growing.
const MAX_TIMED: usize = 4096;

#[derive(Default)]
pub struct ReceiptClock {
    waiting: Mutex<VecDeque<(String, Instant)>>,
}

impl ReceiptClock {
    /// A SEND asking for `receipt` was read now.
    pub fn sent(&self, receipt: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            if waiting.len() < MAX_TIMED {
                waiting.push_back((receipt.to_string(), Instant::now()));
            }
        }
    }

    /// The RECEIPT `receipt` is being written: count it, and time it if it was noted.
    pub fn receipted(&self, receipt: Option<&str>) {
        METERS.receipts.add(1);
        let Some(receipt) = receipt else { return };
        if let Ok(mut waiting) = self.waiting.lock() {
            if waiting.front().is_some_and(|(id, _)| id == receipt) {
                if let Some((_, read)) = waiting.pop_front() {
                    METERS.receipt_latency.observe(read.elapsed());
                }
            }
        }
    }
}
