//! The frame header (RFC 6455 §5.2): FIN, RSV1-3, opcode, MASK, length, masking key.

use bytes::BufMut;

use crate::error::ProtocolError;
use crate::opcode::OpCode;

/// The largest possible header: 2 fixed bytes, 8 length bytes, 4 key bytes.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A decoded frame header.
///
/// `parse` checks every rule that needs no configuration: reserved opcodes,
/// control-frame size and fragmentation, the 64-bit length's top bit and minimal
/// length encoding. Role, RSV and size limits are checked by the
/// [`Decoder`](crate::Decoder), which knows the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1-3 as a 3-bit value (`0b100` = RSV1).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present exactly when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the front of `buf` without consuming anything.
    ///
    /// Returns `Ok(None)` while the header is incomplete, otherwise the header and
    /// its length in bytes.
    ///
    /// # Errors
    /// Any header-level RFC 6455 violation (see [`ProtocolError`]).
    ///
    /// ```
    /// use rfc6455::{FrameHeader, OpCode};
    /// // RFC 6455 §5.7: a masked "Hello" from a client.
    /// let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    /// let (h, len) = FrameHeader::parse(&wire).unwrap().unwrap();
    /// assert_eq!((h.fin, h.opcode, h.payload_len, len), (true, OpCode::Text, 5, 6));
    /// assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
    /// assert_eq!(FrameHeader::parse(&wire[..1]).unwrap(), None);
    /// ```
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0b111;
        let opcode = OpCode::try_from(b0 & 0x0F)?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            // Both rules are visible in the first two bytes: fail before waiting for more.
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        }
        let ext_len = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + ext_len + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            // The length bytes alone may already break a rule; report it early.
            if buf.len() >= 2 + ext_len {
                Self::read_len(len7, &buf[2..2 + ext_len])?;
            }
            return Ok(None);
        }
        let payload_len = Self::read_len(len7, &buf[2..2 + ext_len])?;
        let mask = masked.then(|| {
            let k = &buf[2 + ext_len..header_len];
            [k[0], k[1], k[2], k[3]]
        });
        Ok(Some((
            Self {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            header_len,
        )))
    }

    #[inline]
    fn read_len(len7: u8, ext: &[u8]) -> Result<u64, ProtocolError> {
        match len7 {
            126 => {
                let len = u16::from_be_bytes([ext[0], ext[1]]);
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                Ok(u64::from(len))
            }
            127 => {
                let len = u64::from_be_bytes(<[u8; 8]>::try_from(ext).expect("8 length bytes"));
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthTopBit);
                }
                if len <= u64::from(u16::MAX) {
                    return Err(ProtocolError::NonMinimalLength);
                }
                Ok(len)
            }
            n => Ok(u64::from(n)),
        }
    }

    /// The number of bytes [`encode`](Self::encode) writes.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        let ext = if self.payload_len < 126 {
            0
        } else if self.payload_len <= u16::MAX as u64 {
            2
        } else {
            8
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header in its minimal encoding.
    ///
    /// ```
    /// use rfc6455::{FrameHeader, OpCode};
    /// let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: None, payload_len: 256 };
    /// let mut out = Vec::new();
    /// h.encode(&mut out);
    /// assert_eq!(out, [0x82, 0x7E, 0x01, 0x00]); // RFC 6455 §5.7: 256 bytes binary
    /// ```
    pub fn encode(&self, dst: &mut impl BufMut) {
        let mut b0 = (self.rsv & 0b111) << 4 | self.opcode.as_u8();
        if self.fin {
            b0 |= 0x80;
        }
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        dst.put_u8(b0);
        if self.payload_len < 126 {
            #[allow(clippy::cast_possible_truncation)] // < 126
            dst.put_u8(mask_bit | self.payload_len as u8);
        } else if let Ok(len) = u16::try_from(self.payload_len) {
            dst.put_u8(mask_bit | 126);
            dst.put_u16(len);
        } else {
            dst.put_u8(mask_bit | 127);
            dst.put_u64(self.payload_len);
        }
        if let Some(key) = self.mask {
            dst.put_slice(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        FrameHeader::parse(bytes)
    }

    #[test]
    fn lengths_roundtrip_in_minimal_form() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 40, (1 << 63) - 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = FrameHeader {
                    fin: true,
                    rsv: 0,
                    opcode: OpCode::Binary,
                    mask,
                    payload_len: len,
                };
                let mut out = Vec::new();
                h.encode(&mut out);
                assert_eq!(out.len(), h.encoded_len());
                assert_eq!(parse(&out).unwrap(), Some((h, out.len())));
                for cut in 0..out.len() {
                    assert_eq!(parse(&out[..cut]).unwrap(), None, "len {len} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn rejects_header_level_violations() {
        assert_eq!(parse(&[0x83, 0x00]), Err(ProtocolError::ReservedOpcode(3)));
        assert_eq!(
            parse(&[0x09, 0x00]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            parse(&[0x89, 0x7E]),
            Err(ProtocolError::ControlFrameTooLong)
        );
        assert_eq!(
            parse(&[0x82, 0x7E, 0x00, 0x7D]),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            parse(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthTopBit)
        );
    }
}
