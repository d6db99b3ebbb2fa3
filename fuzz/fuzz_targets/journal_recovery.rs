//! cargo-fuzz target `journal_recovery`: see `mirrormq_fuzz::journal_recovery` (fuzz/src/lib.rs) for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrormq_fuzz::journal_recovery(data));
