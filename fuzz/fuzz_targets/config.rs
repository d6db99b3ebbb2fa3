//! cargo-fuzz target `config`: see `mirrormq_fuzz::config` (fuzz/src/lib.rs) for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrormq_fuzz::config(data));
