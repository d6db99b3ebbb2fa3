//! mirrormq: a STOMP message broker whose master/slave pair never loses a message a
//! client was told is safe.
//!
//! # Layout
//! The broker is a deterministic state machine over journal records:
//!
//! ```text
//!  client frame ─► session ─► core task: broker.apply(op) ─► record (epoch, seq)
//!                                                   ├─► journal writer (group commit, fsync)
//!                                                   └─► dispatch to consumers
//!                  RECEIPT once the record is durable
//! ```
//!
//! - [`stomp`]: the wire format, no I/O.
//! - [`broker`]: queues, topics, consumers, `apply(op)`; no I/O, no clock.
//! - [`journal`]: segment files, recovery, the group-commit writer thread, the data-dir lock.
//! - [`connection`]: a buffered socket that reads and writes STOMP frames.
//! - [`session`]: one client connection: CONNECT, auth, heart-beats, frames to core requests.
//! - [`core`]: the one task that owns the broker and sequences every record.
//! - [`server`]: wiring: listeners, the core, shutdown.
//! - [`verify`]: reads a whole store read-only (`mirrormq verify`).
//! - [`client`]: the failover client (`failover:(tcp://a,tcp://b)` URLs); the binary's
//!   tools (`send`, `receive`, `bench`, `chaos`, `demo`, in `src/tools/`) are built on it
//!   and are not part of this library.
//! - [`config`], [`error`], and the two seams that name third-party crates no other file
//!   may name: [`runtime`] (the async runtime) and [`codec`] (the binary encoding);
//!   [`deadline`]: the coarse timeouts `runtime::timeout` uses.
//!
//! docs/architecture.md walks through the same picture in more detail.

pub mod broker;
pub mod client;
pub mod codec;
pub mod config;
pub mod connection;
pub mod core;
pub mod deadline;
pub mod error;
pub mod journal;
pub mod link;
pub mod repl;
pub mod runtime;
pub mod server;
pub mod session;
pub mod stomp;
pub mod verify;

pub use error::{Error, Result};
