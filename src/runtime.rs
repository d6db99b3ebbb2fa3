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
