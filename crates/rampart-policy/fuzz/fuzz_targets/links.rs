//! `cargo +nightly fuzz run links`: see `rampart_policy_fuzz::links`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rampart_policy_fuzz::links(data));
