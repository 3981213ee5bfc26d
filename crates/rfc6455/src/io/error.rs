//! The one error type of the async adapter.

use std::io;

use crate::close::CloseCode;
use crate::error::{ClientHandshakeError, HandshakeError, ProtocolError};
use crate::writer::WriteError;

/// Why an operation on a [`WebSocket`](super::WebSocket) or one of its halves failed.
///
/// Each variant wraps the error of the layer that failed: the transport, the
/// peer's framing, the opening handshake (either side), or a send the closing
/// handshake forbids.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebSocketError {
    /// The transport failed, or closed without a close frame (`UnexpectedEof`,
    /// which RFC 6455 §7.1.5 reports as 1006).
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer broke RFC 6455. The close frame with
    /// [`ProtocolError::close_code`] was sent before this was returned.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// [`accept`](super::accept) refused the request; the HTTP response for it
    /// ([`HandshakeError::http_status`]) was sent.
    #[error("handshake refused: {0}")]
    Handshake(#[from] HandshakeError),
    /// [`connect`](super::connect) rejected the server's response.
    #[error("server response rejected: {0}")]
    ClientHandshake(#[from] ClientHandshakeError),
    /// The frame may not be sent, e.g. because a close frame already was.
    #[error("send refused: {0}")]
    Write(#[from] WriteError),
    /// [`close`](super::WebSocket::close) was given a code that may not appear
    /// on the wire (1005, 1006, 1015, ... see [`CloseCode::is_valid_on_wire`]).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(CloseCode),
}

/// The result of the async adapter's operations.
pub type Result<T, E = WebSocketError> = std::result::Result<T, E>;

/// The error for a transport that ended before the exchange did.
pub(crate) fn eof(what: &str) -> WebSocketError {
    WebSocketError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, what))
}
