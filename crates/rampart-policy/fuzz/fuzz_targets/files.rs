//! `cargo +nightly fuzz run files`: see `rampart_policy_fuzz::files`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rampart_policy_fuzz::files(data));
