//! cargo-fuzz target `selector`: see `mirrormq_fuzz::selector` (fuzz/src/lib.rs) for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrormq_fuzz::selector(data));
