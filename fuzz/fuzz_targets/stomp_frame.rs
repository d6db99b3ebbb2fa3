//! cargo-fuzz target `stomp_frame`: see `mirrormq_fuzz::stomp_frame` (fuzz/src/lib.rs) for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrormq_fuzz::stomp_frame(data));
