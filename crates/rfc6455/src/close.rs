//! Close codes, close payloads and the closing handshake (RFC 6455 §5.5.1, §7).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::header::MAX_CONTROL_PAYLOAD;
use crate::utf8::Utf8Bytes;

/// A close status code (RFC 6455 §7.4).
///
/// Any `u16` can be held; [`is_valid_on_wire`](Self::is_valid_on_wire) says
/// whether it may be sent or received in a close frame.
///
/// ```
/// use rfc6455::CloseCode;
/// assert!(CloseCode::NORMAL.is_valid_on_wire());
/// assert!(CloseCode(4000).is_valid_on_wire());
/// assert!(!CloseCode::NO_STATUS.is_valid_on_wire());
/// assert!(!CloseCode(1016).is_valid_on_wire());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: the endpoint cannot accept this kind of data.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: reserved; reported locally when a close frame had no code. Never sent.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: reserved; reported locally when the connection dropped without a close. Never sent.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a message's data was inconsistent with its type (e.g. invalid UTF-8).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: the message violates the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: the message is too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (overload).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response.
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: reserved; reported locally when the TLS handshake failed. Never sent.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Whether the code may appear in a close frame: 1000–1003, 1007–1014 and
    /// 3000–4999. 1004–1006, 1015, the rest of 0–2999 and 5000+ may not.
    #[must_use]
    pub const fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The longest reason that fits a close frame beside its 2-byte code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// The payload of a close frame that carries a status code.
///
/// ```
/// use rfc6455::{CloseCode, CloseFrame};
/// let f = CloseFrame::new(CloseCode::GOING_AWAY, "server shutting down");
/// let parsed = CloseFrame::parse(&f.to_payload()).unwrap().unwrap();
/// assert_eq!(parsed, f);
/// assert_eq!(CloseFrame::parse(&bytes::Bytes::new()).unwrap(), None); // no status code
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The UTF-8 reason, at most [`MAX_CLOSE_REASON`] bytes.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A close payload; a reason longer than [`MAX_CLOSE_REASON`] bytes is cut at
    /// the last character boundary that fits.
    #[must_use]
    pub fn new(code: CloseCode, reason: &str) -> Self {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            code,
            reason: Utf8Bytes::from(reason[..end].to_owned()),
        }
    }

    /// Parses and validates a received close payload without copying the reason.
    ///
    /// `Ok(None)` is an empty payload (the peer gave no code; report 1005 locally).
    ///
    /// # Errors
    /// A 1-byte payload, a code not valid on the wire, or a reason that is not UTF-8.
    pub fn parse(payload: &Bytes) -> Result<Option<Self>, ProtocolError> {
        match payload.len() {
            0 => return Ok(None),
            1 => return Err(ProtocolError::CloseTooShort),
            _ => {}
        }
        let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
        if !code.is_valid_on_wire() {
            return Err(ProtocolError::InvalidCloseCode(code.0));
        }
        let reason = Utf8Bytes::try_from(payload.slice(2..))
            .map_err(|_| ProtocolError::InvalidCloseReason)?;
        Ok(Some(Self { code, reason }))
    }

    /// Encodes the payload: the code in network order, then the reason.
    #[must_use]
    pub fn to_payload(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(2 + self.reason.len());
        out.put_u16(self.code.0);
        out.put_slice(self.reason.as_bytes());
        out.freeze()
    }
}

/// Where an endpoint is in the closing handshake (RFC 6455 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseState {
    /// Neither side has sent a close frame.
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// The peer sent a close frame; we have not answered yet.
    CloseReceived,
    /// Both close frames have been exchanged: close the TCP connection.
    Closed,
}

/// The closing handshake: send a close frame at most once, answer the peer's
/// close exactly once, and send nothing after a close.
///
/// ```
/// use rfc6455::{CloseCode, CloseFrame, CloseHandshake, CloseState};
/// let mut hs = CloseHandshake::new();
/// // The peer closes first: we echo its code once, then the handshake is over.
/// let reply = hs.on_receive(Some(&CloseFrame::new(CloseCode::NORMAL, "bye")));
/// let reply = reply.expect("first close from the peer needs an answer");
/// assert_eq!(reply.map(|r| r.code), Some(CloseCode::NORMAL));
/// assert_eq!(hs.state(), CloseState::CloseReceived);
/// assert!(hs.on_send()); // the answer goes out
/// assert_eq!(hs.state(), CloseState::Closed);
/// assert!(!hs.can_send());
/// ```
#[derive(Debug, Clone)]
pub struct CloseHandshake {
    state: CloseState,
}

impl CloseHandshake {
    /// A handshake for an open connection.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            state: CloseState::Open,
        }
    }

    /// The current state.
    #[must_use]
    pub const fn state(&self) -> CloseState {
        self.state
    }

    /// Whether data, ping or pong frames may still be sent.
    #[must_use]
    pub const fn can_send(&self) -> bool {
        matches!(self.state, CloseState::Open | CloseState::CloseReceived)
    }

    /// Whether the connection is done and the transport should be closed.
    #[must_use]
    pub const fn is_closed(&self) -> bool {
        matches!(self.state, CloseState::Closed)
    }

    /// Records that we are about to send a close frame. Returns `false` (send
    /// nothing) if one was already sent.
    pub fn on_send(&mut self) -> bool {
        match self.state {
            CloseState::Open => {
                self.state = CloseState::CloseSent;
                true
            }
            CloseState::CloseReceived => {
                self.state = CloseState::Closed;
                true
            }
            CloseState::CloseSent | CloseState::Closed => false,
        }
    }

    /// Records the peer's close frame and returns the close frame to answer with,
    /// if we have not sent one yet (RFC 6455 §5.5.1: echo the status code). The
    /// caller sends it (after finishing any message in progress, which §5.5.1
    /// allows) and calls [`on_send`](Self::on_send).
    ///
    /// A peer close with no code is answered with an empty close payload.
    #[must_use = "the returned close frame must be sent"]
    pub fn on_receive(&mut self, peer: Option<&CloseFrame>) -> Option<Option<CloseFrame>> {
        match self.state {
            CloseState::Open => {
                self.state = CloseState::CloseReceived;
                Some(peer.map(|p| CloseFrame::new(p.code, "")))
            }
            CloseState::CloseSent => {
                self.state = CloseState::Closed;
                None
            }
            CloseState::CloseReceived | CloseState::Closed => None,
        }
    }
}

impl Default for CloseHandshake {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_matches_rfc_ranges() {
        for code in 0..=u16::MAX {
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode(code).is_valid_on_wire(), expected, "{code}");
        }
    }

    #[test]
    fn parse_rejects_bad_payloads() {
        assert_eq!(
            CloseFrame::parse(&Bytes::from_static(&[0x03])),
            Err(ProtocolError::CloseTooShort)
        );
        assert_eq!(
            CloseFrame::parse(&Bytes::from_static(&[0x03, 0xED])),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            CloseFrame::parse(&Bytes::from_static(&[0x03, 0xE8, 0xFF])),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let f = CloseFrame::new(CloseCode::NORMAL, &reason);
        assert!(f.reason.len() <= MAX_CLOSE_REASON);
        assert_eq!(f.reason.len() % 2, 0);
        assert!(f.to_payload().len() <= MAX_CONTROL_PAYLOAD);
    }

    #[test]
    fn we_close_first_then_peer_answers() {
        let mut hs = CloseHandshake::new();
        assert!(hs.on_send());
        assert!(!hs.can_send());
        assert!(!hs.on_send(), "close is sent once");
        assert_eq!(hs.on_receive(None), None, "no reply to the answer");
        assert!(hs.is_closed());
    }
}
