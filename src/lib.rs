//! mirrormq: a STOMP message broker whose master/slave pair never loses a message a
//! client was told is safe.
//!
//! # Layout
//! The broker is a deterministic state machine over journal records. The core is pure:
//! `Core::step(input)` in, outputs out; the server's shell carries the outputs out.
//!
//! ```text
//!  client frame ─► session ─► shell ─► Core::step: broker.apply(op) ─► Record(epoch, seq)
//!                                        ├─► Output::Journal ─► journal writer (group commit, fsync)
//!                                        ├─► Output::Ship ─► replication link ─► slave
//!                                        └─► Output::ToSession (deliveries)
//!  journal durable + slave's ack ─► shell ─► Core::step ─► RECEIPT
//! ```
//!
//! Bottom to top (each layer uses only those below it; `tests/layers.rs` checks):
//! - the foundation: [`error`]; [`config`]; the two seams that name third-party crates no
//!   other file may name, [`runtime`] (the async runtime) and [`codec`] (the binary
//!   encoding); [`deadline`]: the coarse timeouts `runtime::timeout` uses; the seams of
//!   the outside systems, [`http`], [`zk`], [`ws`] (WebSocket) and [`tls`]; [`transport`]
//!   (a connection's two directions, plain or over TLS or WebSocket); [`meter`].
//! - the models, no I/O: [`stomp`] (the wire format); [`broker`] (queues, topics,
//!   consumers, `apply(op)`; no clock); [`journal`] (the [`journal::Record`] every layer
//!   shares, segment files, recovery, the group-commit writer thread, the data-dir lock);
//!   [`repl`] (the replication protocol, catch-up plans, the role machine and the
//!   replication group's state machine).
//! - [`core`]: the pure state machine that owns the broker and sequences every record.
//! - the sockets: [`link`] (the replication link's master and slave ends, probes);
//!   [`session`] (one client connection); [`connection`] (a buffered socket that reads and
//!   writes STOMP frames); [`client`] (the failover client, on `stomp`, `connection` and
//!   `runtime` only).
//! - [`server`]: wiring: listeners, the shell that runs the core, role actions, shutdown;
//!   [`verify`]: reads a whole store read-only (`mirrormq verify`).
//!
//! The binary's tools (`send`, `receive`, `bench`, `chaos`, `demo`, in `src/tools/`) are
//! built on the client and are not part of this library. docs/architecture.md walks
//! through the same picture in more detail.

pub mod admin;
pub mod broker;
pub mod client;
pub mod codec;
pub mod config;
pub mod connection;
pub mod core;
pub mod deadline;
pub mod election;
pub mod error;
pub mod http;
pub mod journal;
pub mod link;
pub mod meter;
pub mod repl;
pub mod runtime;
pub mod selector;
pub mod server;
pub mod session;
pub mod stomp;
pub mod tls;
pub mod transport;
pub mod verify;
pub mod ws;
pub mod zk;

pub use error::{Error, Result};
