//! The async runtime seam: the only file that names `async_std`.
//!
//! async-std is unmaintained upstream, so everything above this file uses `futures`
//! traits and channels plus the few functions and types re-exported here. Swapping the
//! runtime means editing this one file. Nothing here knows about brokers or STOMP.

use std::future::Future;
use std::time::Duration;

pub use async_std::net::{TcpListener, TcpStream};
pub use async_std::task::JoinHandle;

/// Sets how many executor threads the runtime starts, unless ASYNC_STD_THREAD_COUNT is
/// set. Call before the first task is spawned: the executor reads it once, at start.
pub fn set_worker_threads(threads: usize) {
    if std::env::var_os("ASYNC_STD_THREAD_COUNT").is_none() {
        std::env::set_var("ASYNC_STD_THREAD_COUNT", threads.max(1).to_string());
    }
}

/// Runs a future to completion on the current thread, driving the runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    async_std::task::block_on(future)
}

/// Spawns a task on the runtime's executor threads.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    async_std::task::spawn(future)
}

/// Runs blocking work (file I/O, thread joins) off the executor threads.
pub fn spawn_blocking<F, T>(work: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    async_std::task::spawn_blocking(work)
}

/// Runs `future` on a thread of its own at the lowest CPU priority (nice 19), and waits
/// for it; `None` if it panicked. For bulk work, such as copying a store to a new slave,
/// that would otherwise take the CPUs from the work clients wait on: the kernel runs it
/// whenever nothing else wants the CPU, and preempts it the moment something does. The
/// future may block on file I/O: its thread runs nothing else.
pub async fn in_background<F>(name: &str, future: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (done, result) = futures::channel::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_this_threads_priority();
            let _ = done.send(block_on(future));
        });
    match spawned {
        Ok(_) => result.await.ok(),
        Err(error) => {
            log::error!("cannot start a {name} thread: {error}");
            None
        }
    }
}

/// Sets the calling thread's nice value to 19. On Linux a nice value belongs to a thread,
/// and `setpriority(PRIO_PROCESS, 0)` names the caller. Failing only costs priority, so a
/// failure is ignored.
fn lower_this_threads_priority() {
    let _ = rustix::process::setpriority_process(None, 19);
}

/// Waits for `duration` without blocking an executor thread.
pub async fn sleep(duration: Duration) {
    async_std::task::sleep(duration).await
}

/// Runs `future` for at most `duration` (noticed within a few ms); `None` if the time ran
/// out first. Not the runtime's own timeout: see `deadline` for why.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    crate::deadline::timeout(duration, future).await
}

/// Opens a TCP connection with Nagle's algorithm off: every STOMP frame we write is a
/// whole message someone is waiting for, so batching belongs to us, not to the kernel.
pub async fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread, from /proc (field 19 of its stat line).
    fn this_threads_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name, in parentheses, may hold spaces: count fields after it.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn background_work_runs_at_the_lowest_priority_and_hands_back_its_result() {
        let here = this_threads_nice();
        let (there, answer) =
            block_on(in_background("test", async { (this_threads_nice(), 42) })).unwrap();
        assert_eq!(answer, 42);
        assert_eq!(there, 19, "ran at nice {there}");
        assert_eq!(
            this_threads_nice(),
            here,
            "the caller's own priority changed"
        );
    }

    #[test]
    fn background_work_that_panics_gives_none() {
        let result: Option<()> = block_on(in_background("test", async { panic!("on purpose") }));
        assert!(result.is_none());
    }
}
