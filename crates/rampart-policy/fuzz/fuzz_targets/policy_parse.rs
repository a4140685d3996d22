//! `cargo +nightly fuzz run policy_parse`: see `rampart_policy_fuzz::policy_parse`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rampart_policy_fuzz::policy_parse(data));
