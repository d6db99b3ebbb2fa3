//! cargo-fuzz target `repl_message`: see `mirrormq_fuzz::repl_message` (fuzz/src/lib.rs) for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrormq_fuzz::repl_message(data));
