//! cargo-fuzz target `http_request`: see `mirrormq_fuzz::http_request` (fuzz/src/lib.rs) for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrormq_fuzz::http_request(data));
