//! `cargo +nightly fuzz run scan`: see `rampart_policy_fuzz::scan`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rampart_policy_fuzz::scan(data));
