//! Errors, each mapped to the close code or HTTP status the RFC asks for.
//!
//! The `Display` text of every error is short, lowercase and suitable as a close
//! reason; it is not part of the API and may change.

use crate::close::CloseCode;

/// A violation of RFC 6455 framing, messaging or closing rules by the peer.
///
/// Send [`close_code`](Self::close_code) with the error's text as reason, then
/// stop reading (RFC 6455 §7.1.7 "Fail the WebSocket Connection").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An RSV bit is set although no extension that defines it was negotiated
    /// (§5.2), or where the negotiated one does not allow it (RFC 7692 §6.1:
    /// RSV1 on a continuation or control frame).
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// The opcode is one of the reserved values (§5.2).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A server received an unmasked frame (§5.1).
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A client received a masked frame (§5.1).
    #[error("server frame is masked")]
    MaskedFrame,
    /// A control frame carries more than 125 bytes (§5.5).
    #[error("control frame payload over 125 bytes")]
    ControlFrameTooLong,
    /// A control frame has FIN clear (§5.5).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A 64-bit payload length has its most significant bit set (§5.2).
    #[error("payload length has its top bit set")]
    LengthTopBit,
    /// A payload length is not encoded in the minimal number of bytes (§5.2).
    #[error("payload length not minimally encoded")]
    NonMinimalLength,
    /// A continuation frame arrived while no fragmented message was open (§5.4).
    #[error("continuation frame without an open message")]
    UnexpectedContinuation,
    /// A text or binary frame arrived while a fragmented message was open (§5.4).
    #[error("new data frame inside an open message")]
    ExpectedContinuation,
    /// A frame payload is larger than the configured limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The length the header announced.
        len: u64,
        /// The configured limit.
        max: u64,
    },
    /// A message is larger than the configured limit.
    #[error("message exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The configured limit.
        max: usize,
    },
    /// A text message is not valid UTF-8 (§8.1).
    #[error("invalid utf-8 in text message")]
    InvalidUtf8,
    /// A close frame has a 1-byte payload (§5.5.1).
    #[error("close payload of 1 byte")]
    CloseTooShort,
    /// A close frame carries a code that may not appear on the wire (§7.4).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close frame reason is not valid UTF-8 (§5.5.1).
    #[error("invalid utf-8 in close reason")]
    InvalidCloseReason,
    /// A frame arrived after the peer's close frame (§5.5.1).
    #[error("frame after close")]
    FrameAfterClose,
    /// A message marked compressed (permessage-deflate, RFC 7692) does not
    /// inflate. Its payload does not match its type, hence 1007 like bad UTF-8.
    #[error("invalid compressed data")]
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code to send before dropping the connection (RFC 6455 §7.4.1).
    ///
    /// ```
    /// use rfc6455::{CloseCode, ProtocolError};
    /// assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
    /// assert_eq!(ProtocolError::MessageTooLarge { max: 10 }.close_code(), CloseCode::MESSAGE_TOO_BIG);
    /// ```
    #[must_use]
    pub const fn close_code(&self) -> CloseCode {
        // Exhaustive on purpose: a new variant must choose its code here.
        match self {
            Self::ReservedBits
            | Self::ReservedOpcode(_)
            | Self::UnmaskedFrame
            | Self::MaskedFrame
            | Self::ControlFrameTooLong
            | Self::FragmentedControlFrame
            | Self::LengthTopBit
            | Self::NonMinimalLength
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::CloseTooShort
            | Self::InvalidCloseCode(_)
            | Self::FrameAfterClose => CloseCode::PROTOCOL_ERROR,
            Self::InvalidUtf8 | Self::InvalidCloseReason | Self::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
        }
    }
}

/// Why a server refuses an opening handshake (RFC 6455 §4.2.1–4.2.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request head is larger than the configured limit.
    #[error("request head exceeds {max} bytes")]
    HeadTooLarge {
        /// The configured limit.
        max: usize,
    },
    /// The request has more header fields than the configured limit.
    #[error("too many header fields")]
    TooManyHeaders,
    /// The bytes are not an HTTP/1.x request head.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The method is not `GET`.
    #[error("websocket upgrade requires GET")]
    MethodNotGet,
    /// The request is HTTP/1.0.
    #[error("websocket upgrade requires HTTP/1.1")]
    HttpVersion,
    /// No `Host` header field.
    #[error("missing host header")]
    MissingHost,
    /// No `Upgrade` header field naming `websocket`.
    #[error("missing or invalid upgrade header")]
    NotWebSocketUpgrade,
    /// No `Connection` header field with the `upgrade` token.
    #[error("connection header lacks the upgrade token")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` is absent or not 13.
    #[error("unsupported websocket version")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is absent or not base64 of 16 bytes.
    #[error("invalid sec-websocket-key")]
    InvalidKey,
    /// A header field that must appear at most once (`Host`, `Origin`,
    /// `Sec-WebSocket-Key`, `Sec-WebSocket-Version`, `Content-Length`, or one the
    /// application reads through [`RequestHead::single_header`]) appears more than once.
    ///
    /// Refused rather than resolved: taking the first or the last copy lets a client
    /// choose which one a check sees (two `Origin` lines used to pass the origin
    /// policy with the first and smuggle the second past anything reading the last).
    ///
    /// [`RequestHead::single_header`]: crate::RequestHead::single_header
    #[error("repeated {0} header")]
    RepeatedHeader(&'static str),
    /// The `Origin` is not one the server accepts (a server policy, §4.2.2 and §10.2).
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// Any other refusal decided by the application's policy (unknown path 404,
    /// missing credentials 401, overload 503, ...), with a short reason for the body.
    #[error("{reason}")]
    Refused {
        /// The HTTP status to answer with (4xx or 5xx).
        status: u16,
        /// A short, lowercase explanation sent as the response body.
        reason: &'static str,
    },
}

impl HandshakeError {
    /// The HTTP status code of the refusal.
    ///
    /// ```
    /// use rfc6455::HandshakeError;
    /// assert_eq!(HandshakeError::UnsupportedVersion.http_status(), 426);
    /// assert_eq!(HandshakeError::TooManyHeaders.http_status(), 431);
    /// ```
    #[must_use]
    pub const fn http_status(&self) -> u16 {
        match self {
            Self::HeadTooLarge { .. } | Self::TooManyHeaders => 431,
            Self::Malformed(_)
            | Self::HttpVersion
            | Self::MissingHost
            | Self::NotWebSocketUpgrade
            | Self::MissingConnectionUpgrade
            | Self::InvalidKey
            | Self::RepeatedHeader(_) => 400,
            Self::MethodNotGet => 405,
            Self::UnsupportedVersion => 426,
            Self::OriginNotAllowed => 403,
            Self::Refused { status, .. } => *status,
        }
    }
}

/// Why a client rejects a server's handshake response (RFC 6455 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// The response head is larger than the configured limit.
    #[error("response head exceeds {max} bytes")]
    HeadTooLarge {
        /// The configured limit.
        max: usize,
    },
    /// The bytes are not an HTTP/1.1 response head.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// The status is not 101.
    #[error("server answered {0} instead of 101")]
    Status(u16),
    /// No `Upgrade: websocket` in the response.
    #[error("response lacks upgrade: websocket")]
    MissingUpgrade,
    /// No `Connection: upgrade` in the response.
    #[error("response lacks connection: upgrade")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` is absent or does not match the key.
    #[error("sec-websocket-accept does not match the key")]
    AcceptMismatch,
    /// The server chose a subprotocol the client did not offer.
    #[error("server chose a subprotocol that was not offered")]
    UnexpectedProtocol,
    /// The server chose an extension the client did not offer.
    #[error("server chose an extension that was not offered")]
    UnexpectedExtension,
    /// The request to send would not be a well-formed head (see
    /// [`ClientHandshake::write_request`](crate::ClientHandshake::write_request)).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The server's permessage-deflate answer breaks RFC 7692 against the offer (feature
    /// `deflate`).
    #[cfg(feature = "deflate")]
    #[error("bad permessage-deflate response: {0}")]
    Deflate(#[from] crate::deflate::DeflateResponseError),
}
