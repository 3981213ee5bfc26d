//! permessage-deflate, RFC 7692 (feature `deflate`).
//!
//! What is here works on its own, without the frame layer:
//!
//! - negotiation in both roles: [`parse_extensions`] reads a
//!   `Sec-WebSocket-Extensions` value, [`DeflatePolicy::negotiate`] picks a
//!   server's answer, [`DeflateOffer::check_response`] checks it on the client;
//! - [`MessageCompressor`] and [`MessageDecompressor`] turn a message payload
//!   into its compressed form and back (the latter piece by piece if need be),
//!   with a hard limit on the inflated size.
//!
//! Once agreed, the frame layer carries it: a [`Reader`](crate::Reader) built
//! from [`CodecConfig::with_deflate`](crate::CodecConfig::with_deflate)
//! accepts RSV1 on a data message's first frame and inflates the message as
//! its bytes arrive, and [`Writer::compressed`](crate::Writer::compressed)
//! sends one.
//!
//! # Memory
//!
//! Deflate state is large next to the rest of a connection (measured with
//! flate2's pure-Rust backend by `tests/deflate_memory.rs`): a compressor
//! holds about 312 KiB, a decompressor about 42 KiB. Where the agreement lets
//! a direction start every message from empty history (no context takeover),
//! its state is not the connection's at all:
//! [`MessageCompressor::shared`] and [`MessageDecompressor::shared`] borrow the
//! calling thread's for one message and give it back, so an idle connection
//! that negotiated the extension holds 0 bytes of deflate state. With context
//! takeover each direction's state is created by its first compressed message
//! and kept for the connection's life.
//!
//! ```
//! use bytes::BytesMut;
//! use rfc6455::deflate::{DeflatePolicy, MessageCompressor, MessageDecompressor};
//! use rfc6455::Role;
//!
//! let agreed = DeflatePolicy::default()
//!     .negotiate(["permessage-deflate; client_max_window_bits"])
//!     .unwrap()
//!     .expect("the default policy accepts a plain offer");
//! let mut compressor = MessageCompressor::new(agreed.compress_no_context_takeover(Role::Server));
//! let mut decompressor =
//!     MessageDecompressor::new(agreed.decompress_no_context_takeover(Role::Client));
//!
//! let mut wire = BytesMut::new();
//! compressor.compress(b"Hello", &mut wire);
//! assert_eq!(&wire[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
//! let mut text = BytesMut::new();
//! decompressor.decompress(&wire, 1 << 20, &mut text).unwrap();
//! assert_eq!(&text[..], b"Hello");
//! ```

mod compress;
mod inflater;
mod negotiate;
mod pool;

pub(crate) use inflater::Inflater;

/// The header's RSV1 bit in the 3-bit form [`CodecConfig`](crate::CodecConfig)
/// and [`Frame`](crate::Frame) use; RFC 7692 §6 names it "Per-Message Compressed".
pub(crate) const RSV1: u8 = 0b100;

pub use compress::{InflateError, MessageCompressor, MessageDecompressor};

/// How large a compressed message was on the wire and once inflated; see
/// [`Reader::last_compressed`](crate::Reader::last_compressed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressedSize {
    /// Payload bytes received, over all the message's frames.
    pub compressed: usize,
    /// Bytes the message inflated to.
    pub inflated: usize,
}
/// flate2's compression level, re-exported for [`MessageCompressor::with_level`].
pub use flate2::Compression;
pub use negotiate::{
    parse_extensions, ClientMaxWindowBits, DeflateOffer, DeflateParamError, DeflateParams,
    DeflatePolicy, DeflateResponseError, Extension, ExtensionSyntaxError, PERMESSAGE_DEFLATE,
};
