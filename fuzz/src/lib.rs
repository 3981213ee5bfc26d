//! The checks behind the cargo-fuzz targets of the `rfc6455` codec.
//!
//! Each module holds one target's `check(&[u8])`: it decodes the fuzz input into
//! a scenario, drives the codec the way a connection would, and panics when the
//! codec breaks a rule (a panic inside the codec is a finding too). The modules
//! use only `rfc6455`, `bytes` and `httparse`, so the stable test
//! `crates/rfc6455/tests/fuzz_seeds.rs` includes the same files and replays
//! `fuzz/seeds/<target>/` through them without a nightly toolchain.

pub mod assemble_message;
pub mod client_message;
pub mod close_payload;
pub mod decode_stream;
pub mod inflate_message;
pub mod request_head;
pub mod response_head;
