//! Process-wide counters and latency histograms, for the admin listener's `/metrics`.
//!
//! Plain atomics in one static (`METERS`), so the journal writer, the sessions and the
//! connections count without a handle passed down to them and without a lock; relaxed
//! ordering, because a scrape only needs each number to be one that was true recently.
//! Nothing here knows the exposition format (`admin/metrics.rs` does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in µs: 50 µs to 5 s.
pub const BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

/// A latency histogram with fixed buckets (`BUCKETS_US`, and +Inf).
pub struct Histogram {
    /// Observations at most each bound (not cumulative), then those above the last.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS_US.len() + 1],
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let at = BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// (sum in seconds, count, each bucket's bound in seconds and its own count, +Inf
    /// last); the exposition adds the counts up.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(index, bucket)| {
                let bound = BUCKETS_US
                    .get(index)
                    .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
                (bound, bucket.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, count, buckets)
    }
}

/// A monotonic counter.
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Everything this process counts.
pub struct Meters {
    /// STOMP frames and bytes read from and written to client connections.
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    /// RECEIPT frames written to clients.
    pub receipts: Counter,
    /// Client connections accepted (CONNECT answered with CONNECTED).
    pub connections: Counter,
    /// One `fdatasync` of the journal.
    pub fsync: Histogram,
    /// From reading a SEND that asks for a receipt to writing its RECEIPT: a sample, one
    /// SEND at a time per connection (`session/timing.rs`).
    pub receipt_latency: Histogram,
}

pub static METERS: Meters = Meters {
    frames_in: Counter::new(),
    frames_out: Counter::new(),
    bytes_in: Counter::new(),
    bytes_out: Counter::new(),
    receipts: Counter::new(),
    connections: Counter::new(),
    fsync: Histogram::new(),
    receipt_latency: Histogram::new(),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_per_bound() {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_micros(40));
        histogram.observe(Duration::from_micros(300));
        histogram.observe(Duration::from_secs(9));
        let (sum, count, buckets) = histogram.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 9.00034).abs() < 1e-9, "{sum}");
        assert_eq!(buckets[0], (50e-6, 1));
        assert_eq!(buckets[3], (500e-6, 1));
        assert_eq!(buckets[4].1, 0);
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
    }
}
