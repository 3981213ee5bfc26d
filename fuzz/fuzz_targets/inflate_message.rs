//! cargo-fuzz target; the checks live in `rfc6455_fuzz::inflate_message` so that
//! `crates/rfc6455/tests/fuzz_seeds.rs` can replay the seed corpus on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rfc6455_fuzz::inflate_message::check(data));
