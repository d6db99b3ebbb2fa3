//! Wiring: the data-dir lock, signals, the client listener's accept, and the shell
//! (`shell`) that runs the core and carries out its outputs, with the role actions that
//! need the outside world in `actions`.
//!
//! A broker locks its directory, replays the journal into a core, and steps it with
//! `Started`. A master then opens its listeners (the client one only once a slave is in
//! sync, with `wait_for_slave`). A slave dials its master until welcomed, brings its
//! store level (append, or replace with the master's), recovers it afresh into the core
//! and mirrors, with no client listener. Each role change is logged as
//! `role: A -> B (why)` with epoch and seq. On SIGINT or SIGTERM the listeners close
//! first, then the journal finishes its writes and their receipts go out, then the
//! process exits. A broker whose election session ended (ZooKeeper mode) does the same
//! and then starts again in place from its store, holding its directory lock: it
//! rejoins the group as whatever the election makes it.

mod actions;
mod clients;
mod flow;
mod shell;
mod store;
mod succession;

pub use store::recover;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;

use crate::config::Config;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::journal::lock::DataDirLock;
use crate::link::wire::Wire;
use crate::repl::role::Policy;
use crate::runtime;
use shell::{Channels, Shell};

/// Runs a broker until a signal stops it; returns the process exit code.
pub fn run(config: Config) -> Result<i32> {
    runtime::set_worker_threads(config.broker.worker_threads);
    if config.tls.is_some() {
        // A bad certificate stops the start, not a slave's promotion later.
        actions::tls_acceptor(&config)?;
    }
    let wire = Wire::from_config(&config).map_err(Error::Config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (signal_tx, signal_rx) = mpsc::unbounded::<i32>();
    watch_signals(stop.clone(), signal_tx)?;
    crate::journal::StoreMeta::check_dir(config.data_dir(), false)?;
    let retry = Duration::from_millis(config.broker.lock_retry_ms);
    let Some(lock) = DataDirLock::acquire(config.data_dir(), retry, &stop)? else {
        log::info!("stopped while waiting for the data directory lock");
        return Ok(0);
    };
    let config = Arc::new(config);
    if !config.requires_login() {
        log::warn!("no [[users]] configured: any client may connect without a login");
    }
    let mut signals = signal_rx;
    loop {
        let shell = start(config.clone(), wire.clone(), signals)?;
        // Spawned, not run by block_on on this thread: on the executor's worker thread,
        // with the sessions and the links, every hand-off between them and the core is a
        // local queue push rather than a wake-up of another thread (see
        // broker.worker_threads).
        let ended = runtime::block_on(runtime::spawn(shell.run()))?;
        if !ended.rejoin || stop.load(Ordering::SeqCst) {
            drop(lock);
            return Ok(ended.code);
        }
        // The same lock, a new core from what the journal holds: a master that may have
        // been replaced comes back as whatever the election makes it.
        signals = ended.signals;
    }
}

/// Recovers the store into a core and wraps it in a shell.
fn start(config: Arc<Config>, wire: Wire, signals: mpsc::UnboundedReceiver<i32>) -> Result<Shell> {
    let replication = &config.replication;
    let policy = Policy {
        is_slave: replication.master_connector_uri.is_some(),
        has_peers: !replication.peers.is_empty() || config.election.is_some(),
        max_slaves: replication.max_slaves,
        min_replicas: replication.min_replicas,
        min_replicas_timeout_ms: replication.min_replicas_timeout_ms,
        wait_for_slave: replication.wait_for_slave,
        shutdown_on_slave_failure: replication.shutdown_on_slave_failure,
        shutdown_on_master_failure: replication.shutdown_on_master_failure,
    };
    let channels = Channels::new();
    let started = std::time::Instant::now();
    let (journal, store, recovered) = recover(&config, channels.journal_events.0.clone())?;
    log::info!(
        "broker '{}' ({}): data dir {}, store {}{}; recovered epoch {}, {} records in {} segments in {:.1} s, next seq {}, {} messages in {} queues",
        config.broker.name,
        if policy.is_slave { "slave" } else { "master" },
        config.data_dir().display(),
        recovered.meta.store_id,
        if recovered.new_store { " (new)" } else { "" },
        recovered.meta.current_epoch(),
        recovered.records,
        recovered.segments,
        started.elapsed().as_secs_f64(),
        recovered.next_seq,
        store.broker.message_count(),
        store.broker.queue_depths().len()
    );
    if let Some((file, offset)) = &recovered.torn_tail {
        log::warn!(
            "recovered: cut a torn tail in {} at offset {offset}",
            file.display()
        );
    }
    let mut core = Core::new(store, policy, config.replication.slave_ack);
    core.set_dead_letter_expired(config.broker.dead_letter_expired);
    Ok(Shell::new(config, wire, core, journal, channels, signals))
}

/// SIGINT and SIGTERM raise `stop` and wake the driver.
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

/// Gives sessions a moment to write the receipts the shutdown released.
async fn drain_sessions(active: &AtomicUsize) {
    for _ in 0..100 {
        if active.load(Ordering::SeqCst) == 0 {
            return;
        }
        runtime::sleep(Duration::from_millis(10)).await;
    }
}
