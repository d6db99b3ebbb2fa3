//! cargo-fuzz target `websocket`: see `mirrormq_fuzz::websocket` (fuzz/src/websocket.rs) for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrormq_fuzz::websocket(data));
