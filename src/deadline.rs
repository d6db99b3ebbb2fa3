//! Coarse deadlines that never touch the I/O reactor: one thread wakes the expired ones
//! every `TICK`.
//!
//! Why: the runtime's own timers register with its reactor, and every registration
//! writes the reactor's eventfd to wake whichever thread waits in epoll, then re-arms a
//! timerfd. The broker bounds nearly every frame read and write with a timeout
//! (heart-beats, the replication link's silence, acknowledgement limits), so that was
//! several wake-ups and syscalls per message on every hop of a receipt. Here a deadline
//! is an entry in a shared ordered map: a timeout that is met costs a lock, an insert and
//! a remove. A deadline fires up to `TICK` late, which every use allows (heart-beats of
//! 100 ms and more, silence, connect and acknowledgement limits of hundreds of ms and
//! more).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the deadline thread looks for expired deadlines: the most a deadline is late.
const TICK: Duration = Duration::from_millis(5);

/// Waiting deadlines by (when, id), each with the waker of the task waiting on it.
type Pending = BTreeMap<(Instant, u64), Waker>;

struct Wheel {
    pending: Mutex<Pending>,
    next_id: AtomicU64,
}

impl Wheel {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A waker's wake cannot panic while the lock is held (it is called after), so a
        // poisoned map is still consistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn wheel() -> &'static Wheel {
    static WHEEL: OnceLock<Wheel> = OnceLock::new();
    WHEEL.get_or_init(|| {
        std::thread::Builder::new()
            .name("deadlines".into())
            .spawn(fire_expired_forever)
            .expect("starting the deadline thread");
        Wheel {
            pending: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        }
    })
}

fn fire_expired_forever() {
    loop {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let expired = {
            let mut pending = wheel().lock();
            let later = pending.split_off(&(now, u64::MAX));
            std::mem::replace(&mut *pending, later)
        };
        for waker in expired.into_values() {
            waker.wake();
        }
    }
}

/// A future that is ready once `at` has passed (noticed within `TICK`).
pub struct Deadline {
    at: Instant,
    /// The entry in the wheel while this deadline waits there.
    key: Option<(Instant, u64)>,
}

impl Deadline {
    pub fn after(duration: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + duration,
            key: None,
        }
    }

    /// Takes this deadline's entry, if any, out of the wheel.
    fn forget(&mut self) {
        if let Some(key) = self.key.take() {
            wheel().lock().remove(&key);
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            self.forget();
            return Poll::Ready(());
        }
        let wheel = wheel();
        let mut pending = wheel.lock();
        match self.key {
            Some(key) => match pending.get_mut(&key) {
                Some(waker) => {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                }
                // Only the deadline thread takes an entry out, once it has expired.
                None => {
                    drop(pending);
                    self.key = None;
                    return Poll::Ready(());
                }
            },
            None => {
                let key = (self.at, wheel.next_id.fetch_add(1, Ordering::Relaxed));
                pending.insert(key, cx.waker().clone());
                drop(pending);
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.forget();
    }
}

/// Runs `future` for at most `duration`; `None` if the time ran out first.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut deadline = Deadline::after(duration);
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        match Pin::new(&mut deadline).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_future_that_finishes_first_wins_and_leaves_no_deadline_behind() {
        let result = futures::executor::block_on(timeout(Duration::from_secs(5), async { 7 }));
        assert_eq!(result, Some(7));
        let pending = futures::executor::block_on(async {
            timeout(Duration::from_secs(5), futures::future::ready(())).await
        });
        assert_eq!(pending, Some(()));
    }

    #[test]
    fn a_future_that_never_finishes_times_out_about_on_time() {
        let started = Instant::now();
        let result = futures::executor::block_on(timeout(
            Duration::from_millis(50),
            futures::future::pending::<()>(),
        ));
        assert_eq!(result, None);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited < Duration::from_millis(50) + 20 * TICK, "{waited:?}");
    }

    #[test]
    fn a_dropped_deadline_is_taken_out_of_the_wheel() {
        let mut deadline = Deadline::after(Duration::from_secs(60));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut deadline).poll(&mut cx).is_pending());
        let key = deadline.key.expect("registered");
        assert!(wheel().lock().contains_key(&key));
        drop(deadline);
        assert!(!wheel().lock().contains_key(&key));
    }
}
