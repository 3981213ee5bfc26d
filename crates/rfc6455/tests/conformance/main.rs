//! RFC 6455 conformance of the `rfc6455` codec, grouped the way the industry
//! conformance suite groups its cases. Each module is one group; `support`
//! holds the helpers they share. The codec is sans-IO, so every case drives
//! it exactly as a transport would: bytes in (whole, or in read-sized chunks),
//! events and frames out.

mod support;

mod close;
#[cfg(feature = "deflate")]
mod compression;
mod fragmentation;
mod framing;
mod handshake;
mod limits;
mod opcodes;
mod ping_pong;
mod reserved_bits;
mod rfc_examples;
mod utf8;
