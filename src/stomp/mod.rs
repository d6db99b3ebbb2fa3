//! STOMP 1.0/1.1/1.2 wire codec: the frame model, an incremental parser and
//! an encoder.
//!
//! Must not: do I/O, hold connection state, or decide protocol semantics
//! (version negotiation, required headers, which frames a peer may send);
//! the broker does that with the frames this module yields.
//!
//! Invariants: pure functions over byte slices; never panics on any input;
//! every hostile-input limit (`ParseLimits`) is enforced by the parser before
//! the caller would have to buffer past it; `parse(encode(frame))` yields the
//! frame back (with `content-length` set to the body length on SEND, MESSAGE
//! and ERROR) whenever its headers are representable in the version.
//!
//! Siblings refer to each other through `super::` so the module compiles both
//! inside the broker crate and in a standalone check crate.

mod encode;
mod frame;
mod parse;
#[cfg(test)]
mod tests;

pub use encode::encode;
pub use frame::{Command, Frame, Version};
pub use parse::{parse, ParseError, ParseLimits, Parsed};
