//! Frame opcodes (RFC 6455 §5.2, §11.8).

use crate::error::ProtocolError;

/// The opcode of a frame.
///
/// Reserved opcodes (`0x3`–`0x7`, `0xB`–`0xF`) are not representable: decoding
/// them fails with [`ProtocolError::ReservedOpcode`], because no extension that
/// defines them can have been negotiated by this crate.
///
/// ```
/// use rfc6455::OpCode;
/// assert_eq!(OpCode::try_from(0x1), Ok(OpCode::Text));
/// assert!(OpCode::Ping.is_control());
/// assert!(OpCode::try_from(0x3).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: continues a fragmented message.
    Continuation,
    /// `0x1`: first frame of a text message.
    Text,
    /// `0x2`: first frame of a binary message.
    Binary,
    /// `0x8`: starts or answers the closing handshake.
    Close,
    /// `0x9`: keep-alive probe; must be answered with a pong.
    Ping,
    /// `0xA`: answer to a ping, or an unsolicited heartbeat.
    Pong,
}

impl OpCode {
    /// Whether this is a control opcode (close, ping or pong), which may not be
    /// fragmented and carries at most 125 payload bytes (RFC 6455 §5.5).
    #[must_use]
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }

    /// Whether this opcode carries message data (continuation, text or binary).
    #[must_use]
    pub const fn is_data(self) -> bool {
        !self.is_control()
    }

    /// The 4-bit wire value.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }
}

impl TryFrom<u8> for OpCode {
    type Error = ProtocolError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0x0 => Ok(Self::Continuation),
            0x1 => Ok(Self::Text),
            0x2 => Ok(Self::Binary),
            0x8 => Ok(Self::Close),
            0x9 => Ok(Self::Ping),
            0xA => Ok(Self::Pong),
            other => Err(ProtocolError::ReservedOpcode(other)),
        }
    }
}

impl From<OpCode> for u8 {
    fn from(op: OpCode) -> Self {
        op.as_u8()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nibble_maps_to_an_opcode_or_a_reserved_error() {
        for v in 0u8..16 {
            match OpCode::try_from(v) {
                Ok(op) => assert_eq!(op.as_u8(), v),
                Err(e) => {
                    assert!(matches!(v, 0x3..=0x7 | 0xB..=0xF));
                    assert_eq!(e, ProtocolError::ReservedOpcode(v));
                }
            }
        }
    }
}
