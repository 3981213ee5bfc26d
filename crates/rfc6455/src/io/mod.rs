//! An async WebSocket over any tokio `AsyncRead + AsyncWrite + Unpin`
//! transport (feature `tokio`).
//!
//! The sans-IO codec does the protocol; this module only moves bytes:
//! - [`accept`] reads a request head within limits, lets a policy callback
//!   look at the path, query, `Origin` and subprotocols, and answers `101` or
//!   the refusal's status;
//! - [`connect`] sends a request with a random key and checks the `101`;
//! - [`WebSocket`] receives messages ([`recv`](WebSocket::recv)) while
//!   answering pings and the peer's close frame itself, and fails the
//!   connection with the RFC's close code (the error's text as reason) when
//!   the peer breaks the protocol; [`send`](WebSocket::send),
//!   [`ping`](WebSocket::ping) and [`close`](WebSocket::close) write and flush
//!   whole frames.
//!
//! # Randomness
//!
//! The client role needs a fresh random handshake key and a masking key per
//! frame (RFC 6455 §4.1, §5.3). This module takes both from the operating
//! system through the `getrandom` crate, which the `tokio` feature brings in;
//! the core (`Writer::client`, `ClientHandshake::new`) stays RNG-free and takes
//! them from its caller.
//!
//! # Splitting
//!
//! [`WebSocket::split`] gives a [`RecvHalf`] and a [`SendHalf`] that can live
//! in two tasks. The receive half must still answer pings and the peer's close
//! frame, so both halves share the send side, the transport's write half with
//! the codec's [`Writer`](crate::Writer) and its buffer, behind one
//! `Arc<tokio::sync::Mutex<_>>`:
//! - a send locks it, encodes the whole frame, writes and flushes it, and
//!   unlocks: frames never interleave, and the closing handshake's state (no
//!   data after our close frame, the peer's close echoed once) is kept in one
//!   place;
//! - the receive half locks it only to write a pong or a close frame. While a
//!   send is blocked on a peer that does not read, that answer waits too, and
//!   so does the receive half (a reply is never dropped or reordered).
//!
//! A channel drained by the send half would not work here: an idle send half
//! would never write the pong.
//!
//! # Cancellation
//!
//! Frames are encoded whole into a buffer and written from it; if a future is
//! dropped mid-write, the rest of the frame goes out before anything else, so
//! the stream is never torn. [`WebSocket::recv`] is cancel safe; replies owed
//! to the peer are kept across a cancelled call and sent by the next.
//!
//! # Example
//!
//! An echo server over TCP (the crate's `examples/echo_server.rs` is the full version):
//!
//! ```no_run
//! use rfc6455::io::{accept, AcceptConfig};
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let mut ws = accept(tcp, AcceptConfig::default(), |_| Ok(None)).await?;
//!         while let Some(message) = ws.recv().await? {
//!             ws.send(message).await?;
//!         }
//!         Ok::<_, rfc6455::io::WebSocketError>(())
//!     });
//! }
//! # }
//! ```

mod client;
mod entropy;
mod error;
mod server;
mod socket;

pub use client::{connect, ConnectConfig};
pub use error::{Result, WebSocketError};
pub use server::{accept, AcceptConfig};
pub use socket::{RecvHalf, SendHalf, WebSocket};
