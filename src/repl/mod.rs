//! Replication, the pure part: what master and slave say to each other, how a slave is
//! caught up, and the replication group's state machine. No I/O here; the async ends of
//! the link are in `link`, and the core carries out what the group decides.
//!
//! - `message`: the wire protocol (versioned, length-prefixed frames).
//! - `catchup`: how a slave's store is brought level, or refused as diverged.
//! - `role`: the role state machine.
//! - `group`: the role together with the attached replica and the receipt gate: the one
//!   state machine the core owns.
//! - `election`: who should be master, from what ZooKeeper shows (`[election]`).

pub mod catchup;
pub mod election;
pub mod group;
pub mod message;
pub mod role;
