//! How far a copy is, shared by its streams: the progress line and the rate cap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the copy logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Counts shared by the streams, and the progress line.
pub(super) struct Progress {
    pub(super) total: u64,
    /// `replication.sync_max_rate`, bytes a second.
    pub(super) max_rate: Option<u64>,
    pub(super) sent: AtomicU64,
    pub(super) held: AtomicU64,
    /// Preallocated space: zeros on both sides, nothing sent.
    pub(super) zeros: AtomicU64,
    pub(super) done: AtomicU64,
    pub(super) started: Instant,
    pub(super) logged: Mutex<Instant>,
}

impl Progress {
    pub(super) fn new(total: u64, max_rate: Option<u64>) -> Progress {
        Progress {
            total,
            max_rate,
            sent: AtomicU64::new(0),
            held: AtomicU64::new(0),
            zeros: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started: Instant::now(),
            logged: Mutex::new(Instant::now()),
        }
    }

    pub(super) fn add(&self, counter: &AtomicU64, bytes: u64) {
        counter.fetch_add(bytes, Ordering::Relaxed);
        self.done.fetch_add(bytes, Ordering::Relaxed);
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.elapsed() >= PROGRESS_EVERY {
            *logged = Instant::now();
            log::info!("replication: copying the master's store: {}", self.line());
        }
    }

    /// How long a stream waits before its next fetch to keep the copy under its rate.
    pub(super) fn pause(&self) -> Duration {
        let Some(rate) = self.max_rate.filter(|r| *r > 0) else {
            return Duration::ZERO;
        };
        let sent = self.sent.load(Ordering::Relaxed);
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        due.saturating_sub(self.started.elapsed())
    }

    /// "X of Y MiB (Z MiB held already), R MB/s, ETA S s".
    pub(super) fn line(&self) -> String {
        let done = self.done.load(Ordering::Relaxed);
        let sent = self.sent.load(Ordering::Relaxed);
        let held = self.held.load(Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / seconds;
        let eta = (self.total.saturating_sub(done)) as f64 / rate.max(1.0);
        format!(
            "{} of {} MiB ({} MiB sent, {} MiB held already), {:.0} MB/s, ETA {:.0} s",
            done >> 20,
            self.total >> 20,
            sent >> 20,
            held >> 20,
            rate / 1e6,
            eta
        )
    }
}
