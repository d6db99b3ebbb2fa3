//! Wiring: the data-dir lock, recovery, the core task, the STOMP listener, signals and
//! shutdown.
//!
//! Start-up order matters: lock the directory (waiting if another broker holds it),
//! replay the journal into a fresh broker, start the core, and only then open the
//! client listener. On SIGINT or SIGTERM the listener closes first, then the core
//! finishes in-flight journal writes and releases their receipts, then the process exits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, SinkExt, StreamExt};

use crate::broker::{Broker, Op};
use crate::codec;
use crate::config::Config;
use crate::core::{Core, Exit, MemoryGauge, Request};
use crate::error::{Error, Result};
use crate::journal::lock::DataDirLock;
use crate::journal::{Journal, Recovered};
use crate::runtime::{self, TcpListener, TcpStream};
use crate::session::{self, Shared};
use crate::stomp::{Command, Frame, Version};

/// Depth of the queue from sessions into the core: full means producers wait.
const REQUEST_QUEUE: usize = 4096;

/// Runs a broker until a signal stops it; returns the process exit code.
pub fn run(config: Config) -> Result<i32> {
    let stop = Arc::new(AtomicBool::new(false));
    let (signal_tx, signal_rx) = mpsc::unbounded::<i32>();
    watch_signals(stop.clone(), signal_tx)?;
    let retry = Duration::from_millis(config.broker.lock_retry_ms);
    let Some(lock) = DataDirLock::acquire(config.data_dir(), retry, &stop)? else {
        log::info!("stopped while waiting for the data directory lock");
        return Ok(0);
    };
    runtime::block_on(serve(Arc::new(config), lock, signal_rx))
}

/// SIGINT and SIGTERM raise `stop` and wake the server.
fn watch_signals(stop: Arc<AtomicBool>, wake: mpsc::UnboundedSender<i32>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::net("installing signal handlers", e))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                stop.store(true, Ordering::SeqCst);
                let _ = wake.unbounded_send(signal);
            }
        })
        .map_err(|e| Error::net("starting the signal thread", e))?;
    Ok(())
}

/// Replays the journal into a new broker and opens the journal for appending.
pub fn recover(
    config: &Config,
    events: mpsc::UnboundedSender<crate::journal::Event>,
) -> Result<(Broker, Journal, Recovered)> {
    let mut broker = Broker::new(config.broker.max_redeliveries);
    let report = Box::new(move |event| {
        let _ = events.unbounded_send(event);
    });
    let (journal, recovered) = Journal::open(
        config.data_dir(),
        config.broker.segment_size.0,
        report,
        |entry| {
            let op: Op = codec::decode(&entry.payload).map_err(|e| {
                Error::Codec(format!(
                    "record seq {} passed its checksum but does not decode: {e}",
                    entry.seq
                ))
            })?;
            Ok(broker.apply(entry.seq, &op, false))
        },
    )?;
    Ok((broker, journal, recovered))
}

async fn serve(
    config: Arc<Config>,
    lock: DataDirLock,
    mut signals: mpsc::UnboundedReceiver<i32>,
) -> Result<i32> {
    let (events_tx, events_rx) = mpsc::unbounded();
    let (broker, journal, recovered) = recover(&config, events_tx)?;
    log_startup(&config, &lock, &recovered, &broker);
    let memory = MemoryGauge::new(config.broker.max_memory.bytes());
    let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
    let core = Core::new(
        broker,
        journal,
        recovered.epoch,
        recovered.next_seq,
        memory.clone(),
    );
    let mut core_task = runtime::spawn(core.run(requests_rx, events_rx)).fuse();

    let bind = config.stomp.bind.socket_addr();
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|e| Error::net(format!("binding the STOMP listener to {bind}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::net("reading the listener address", e))?;
    log::info!("stomp: listening on tcp://{local}");
    if !config.requires_login() {
        log::warn!("no [[users]] configured: any client may connect without a login");
    }

    let shared = Arc::new(Shared::new(config.clone(), requests.clone(), memory));
    let active = Arc::new(AtomicUsize::new(0));
    let status = runtime::spawn(status_loop(
        config.broker.status_interval_ms,
        requests.clone(),
    ));
    let mut incoming = listener.incoming().fuse();
    let exit = loop {
        futures::select! {
            stream = incoming.next() => match stream {
                Some(Ok(stream)) => accept(stream, &shared, &active),
                Some(Err(error)) => log::warn!("stomp: accept failed: {error}"),
                None => break None,
            },
            signal = signals.next() => {
                log::info!("signal {}: shutting down (no new connections; finishing journal writes)", signal.unwrap_or(0));
                break None;
            }
            exit = core_task => break Some(exit),
        }
    };
    drop(incoming);
    drop(listener);
    drop(status);
    let exit = match exit {
        Some(exit) => exit,
        None => {
            let _ = requests.clone().send(Request::Shutdown).await;
            core_task.await
        }
    };
    drain_sessions(&active).await;
    drop(lock);
    Ok(match exit {
        Exit::Shutdown => {
            log::info!("stopped");
            0
        }
        Exit::JournalFailed(why) => {
            log::error!(
                "stopping: the journal cannot write ({why}); no further receipts can be honoured"
            );
            1
        }
    })
}

fn log_startup(config: &Config, lock: &DataDirLock, recovered: &Recovered, broker: &Broker) {
    log::info!(
        "mirrormq {} broker '{}' starting: data dir {} (lock {}), store {}{}",
        env!("CARGO_PKG_VERSION"),
        config.broker.name,
        config.data_dir().display(),
        lock.path().display(),
        recovered.store_id,
        if recovered.new_store { " (new)" } else { "" }
    );
    log::info!(
        "recovered: epoch {}, {} records in {} segments, next seq {}, {} messages in {} queues",
        recovered.epoch,
        recovered.records,
        recovered.segments,
        recovered.next_seq,
        broker.message_count(),
        broker.queue_depths().len()
    );
    let replication = &config.replication;
    if replication.bind.is_some() || replication.master_connector_uri.is_some() {
        // Silently running alone would be the worst outcome for a safety setting.
        log::warn!("[replication] is configured, but this version runs standalone only: nothing is mirrored and no slave can attach");
    }
    if let Some((file, offset)) = &recovered.torn_tail {
        log::warn!(
            "recovered: cut a torn tail in {} at offset {offset}",
            file.display()
        );
    }
}

/// Starts a session, or turns the client away when the broker is at max_connections.
fn accept(stream: TcpStream, shared: &Arc<Shared>, active: &Arc<AtomicUsize>) {
    let _ = stream.set_nodelay(true);
    let limit = shared.config.stomp.max_connections;
    if active.fetch_add(1, Ordering::SeqCst) >= limit {
        active.fetch_sub(1, Ordering::SeqCst);
        log::warn!(
            "stomp: refusing a connection: {limit} connections open (stomp.max_connections)"
        );
        runtime::spawn(async move {
            let frame = Frame::new(Command::Error)
                .with_header("message", format!("too many connections (limit {limit})"));
            let mut writer = crate::connection::FrameWriter::new(&stream, Version::V1_0);
            let _ = runtime::timeout(Duration::from_secs(1), writer.send(&frame)).await;
            let _ = stream.shutdown(std::net::Shutdown::Both);
        });
        return;
    }
    let shared = shared.clone();
    let active = active.clone();
    runtime::spawn(async move {
        session::serve(stream, shared).await;
        active.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Gives sessions a moment to write the receipts the shutdown released.
async fn drain_sessions(active: &AtomicUsize) {
    for _ in 0..100 {
        if active.load(Ordering::SeqCst) == 0 {
            return;
        }
        runtime::sleep(Duration::from_millis(10)).await;
    }
}

async fn status_loop(interval_ms: u64, mut requests: mpsc::Sender<Request>) {
    if interval_ms == 0 {
        return;
    }
    loop {
        runtime::sleep(Duration::from_millis(interval_ms)).await;
        let (reply, answer) = oneshot::channel();
        if requests.send(Request::Status(reply)).await.is_err() {
            return;
        }
        match answer.await {
            Ok(line) => log::info!("status: role standalone, {line}"),
            Err(_) => return,
        }
    }
}
