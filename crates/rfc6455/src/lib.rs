//! A zero-copy, sans-IO codec for the WebSocket protocol, RFC 6455, for both
//! the client and the server role.
//!
//! The crate does no I/O. You own the socket and the buffers; the codec turns
//! bytes into handshakes, frames, messages and close codes and back, checks every
//! rule of the RFC on the way, and tells you which HTTP status or close code to
//! answer a violation with.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`handshake`] | request/response heads, [`validate_upgrade`], [`write_accept`], [`ClientHandshake`] |
//! | [`FrameHeader`], [`Frame`], [`Decoder`] | frames, zero-copy decoding, [`encode_frame`] |
//! | [`mask`] | in-place masking, word at a time |
//! | [`MessageAssembler`], [`Utf8Validator`] | reassembly of fragments, incremental UTF-8 |
//! | [`Reader`], [`Writer`] | the two halves of a connection: events in, frames out |
//! | [`CloseCode`], [`CloseFrame`], [`CloseHandshake`] | close codes and the closing handshake |
//! | [`ProtocolError`], [`HandshakeError`] | errors, each with its close code or HTTP status |
//! | `io` (feature `tokio`) | `accept`, `connect`, an async `WebSocket` with split halves |
//! | `deflate` (feature `deflate`) | permessage-deflate (RFC 7692): negotiation, message compression; [`CodecConfig`] and [`Writer`] carry it once agreed |
//!
//! # A server in a few lines
//!
//! ```
//! use bytes::BytesMut;
//! use rfc6455::{parse_request, validate_upgrade, write_accept, CodecConfig, Event, HeadLimits,
//!               Message, Reader, Writer};
//!
//! // 1. The handshake: parse the head, check it, answer 101.
//! let request = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
//!                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!                 Sec-WebSocket-Version: 13\r\n\r\n";
//! let (head, head_len) = parse_request(request, &HeadLimits::DEFAULT).unwrap().unwrap();
//! let upgrade = validate_upgrade(&head).unwrap();
//! let mut out = BytesMut::new();
//! write_accept(&upgrade, None, &[], &mut out);
//! assert_eq!(head_len, request.len());
//!
//! // 2. Frames: the client's masked "Hello" (RFC 6455 §5.7) in, an echo out.
//! let mut reader = Reader::new(CodecConfig::server());
//! let mut writer = Writer::server();
//! let mut inbox = BytesMut::from(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58][..]);
//! out.clear();
//! while let Some(event) = reader.read(&mut inbox).unwrap() {
//!     match event {
//!         Event::Message(Message::Text(text)) => writer.text(&text, &mut out).unwrap(),
//!         Event::Message(Message::Binary(data)) => writer.binary(&data, &mut out).unwrap(),
//!         Event::Ping(payload) => writer.pong(&payload, &mut out).unwrap(),
//!         Event::Pong(_) => {}
//!         Event::Close(frame) => { writer.on_peer_close(frame.as_ref(), &mut out); }
//!     }
//! }
//! assert_eq!(&out[..], [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
//! ```
//!
//! # Async I/O (feature `tokio`)
//!
//! The `tokio` feature adds the `io` module: `io::accept` and `io::connect` run
//! the opening handshake over any `AsyncRead + AsyncWrite + Unpin` transport and
//! return an `io::WebSocket` whose `recv` answers pings and close frames by
//! itself and which splits into a receive and a send half for two tasks. It
//! brings tokio and, for the client's keys and masks, the OS random number
//! generator (`getrandom`); without the feature the crate has neither.
//!
//! ```toml
//! rfc6455 = { version = "0.1", features = ["tokio"] }
//! ```
//!
//! # Errors and close codes
//!
//! Every [`ProtocolError`] knows its close code ([`ProtocolError::close_code`]):
//! 1002 for framing violations, 1007 for invalid UTF-8, 1009 for size limits.
//! Every [`HandshakeError`] knows its HTTP status ([`HandshakeError::http_status`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod close;
mod config;
mod decoder;
#[cfg(feature = "deflate")]
pub mod deflate;
mod error;
mod frame;
pub mod handshake;
mod header;
#[cfg(feature = "tokio")]
pub mod io;
pub mod mask;
mod message;
mod opcode;
mod reader;
mod utf8;
mod writer;

pub use close::{CloseCode, CloseFrame, CloseHandshake, CloseState, MAX_CLOSE_REASON};
pub use config::{CodecConfig, Role};
pub use decoder::{Decoder, FrameRef};
pub use error::{ClientHandshakeError, HandshakeError, ProtocolError};
pub use frame::{encode_frame, Frame};
pub use handshake::{
    accept_key, parse_request, validate_upgrade, write_accept, write_reject, ClientHandshake,
    HeadLimits, Header, RequestHead, ServerResponse, UpgradeRequest,
};
pub use header::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
pub use mask::{apply_mask, apply_mask_offset};
pub use message::{Message, MessageAssembler};
pub use opcode::OpCode;
pub use reader::{Event, Reader};
pub use utf8::{InvalidUtf8, Utf8Bytes, Utf8Validator};
pub use writer::{WriteError, Writer};
