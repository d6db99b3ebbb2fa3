//! Replication: a master streams every record to one slave, which journals and applies
//! it with the same code recovery uses, and acknowledges it; the master's receipts wait
//! for that acknowledgement.
//!
//! - `message`: the wire protocol (versioned, length-prefixed frames).
//! - `catchup`: how a slave's store is brought level, or refused as diverged (pure).
//! - `role`: the role state machine (pure).
//! - `master`: the master's end of the link: authenticate, catch up, stream, time out.
//! - `slave`: the slave's end: dial, hello, receive, acknowledge.
//! - `probe`: "is a master listening there?", asked before promoting or carrying on alone.
//!
//! The core (`core::replication`) decides where catch-up ends and live streaming begins;
//! the server drives the role machine.

pub mod catchup;
pub mod master;
pub mod message;
pub mod probe;
pub mod role;
pub mod slave;
