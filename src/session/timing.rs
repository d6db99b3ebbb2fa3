//! The receipt latency of one session's SENDs, for the metrics: the reader notes when a
//! SEND asking for a receipt was read, the writer observes the time to its RECEIPT.
//!
//! One SEND at a time is timed: the reader notes one only while none is pending, and the
//! writer looks only while one is. So a producer with a window of 64 costs one note, and
//! a flag read per message, instead of a lock and an allocation per message (which cost
//! the master 5% of its rate at 8 producers with windows of 64). The histogram is a
//! sample, spread over time; `mirrormq_receipts_total` counts every RECEIPT.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::meter::METERS;

#[derive(Default)]
pub struct ReceiptClock {
    /// A SEND is being timed.
    pending: AtomicBool,
    noted: Mutex<Option<(String, Instant)>>,
}

impl ReceiptClock {
    /// A SEND asking for `receipt` was read now: timed unless another one is.
    pub fn sent(&self, receipt: &str) {
        if self.pending.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut noted) = self.noted.lock() {
            *noted = Some((receipt.to_string(), Instant::now()));
            self.pending.store(true, Ordering::Release);
        }
    }

    /// The RECEIPT `receipt` is being written: count it, and time it if it is the one.
    pub fn receipted(&self, receipt: Option<&str>) {
        METERS.receipts.add(1);
        if !self.pending.load(Ordering::Acquire) {
            return;
        }
        let Some(receipt) = receipt else { return };
        if let Ok(mut noted) = self.noted.lock() {
            if noted.as_ref().is_some_and(|(id, _)| id == receipt) {
                if let Some((_, read)) = noted.take() {
                    METERS.receipt_latency.observe(read.elapsed());
                }
                self.pending.store(false, Ordering::Release);
            }
        }
    }
}
