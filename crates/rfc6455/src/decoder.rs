//! Zero-copy frame decoding from a caller-owned `BytesMut`.

use bytes::{Buf, BytesMut};

use crate::config::{CodecConfig, Role};
use crate::error::ProtocolError;
use crate::frame::Frame;
use crate::header::FrameHeader;
use crate::mask::apply_mask_offset;

/// Decodes frames from the front of a receive buffer.
///
/// The decoder owns only its parse state; the caller owns the buffer and appends
/// whatever the transport delivers. Each decoded payload is split off the buffer
/// (`BytesMut::split_to`) and frozen, so it shares the buffer's allocation: no
/// copy and, once the buffer has been promoted to shared storage, no allocation
/// per frame.
///
/// Role, RSV and size rules are checked from the header, before any of the
/// payload is buffered. While a masked payload is still arriving, the bytes
/// already present are unmasked in place, so callers can inspect them early (see
/// [`partial_payload`](Self::partial_payload)).
///
/// ```
/// use bytes::BytesMut;
/// use rfc6455::{CodecConfig, Decoder, OpCode};
///
/// let mut dec = Decoder::new(CodecConfig::server());
/// let mut buf = BytesMut::from(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f][..]);
/// assert!(dec.decode(&mut buf).unwrap().is_none()); // "Hello" has not fully arrived
/// assert_eq!(dec.needed(), 3);
/// buf.extend_from_slice(&[0x4d, 0x51, 0x58]);
/// let frame = dec.decode(&mut buf).unwrap().unwrap();
/// assert_eq!((frame.opcode, &frame.payload[..]), (OpCode::Text, &b"Hello"[..]));
/// assert!(buf.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    cfg: CodecConfig,
    pending: Option<Pending>,
    needed: usize,
}

/// A frame whose header has been consumed but whose payload is incomplete.
#[derive(Debug, Clone, Copy)]
struct Pending {
    header: FrameHeader,
    len: usize,
    /// How many payload bytes at the front of the buffer are already unmasked.
    unmasked: usize,
}

impl Decoder {
    /// A decoder for the given role and limits.
    #[must_use]
    pub const fn new(cfg: CodecConfig) -> Self {
        Self {
            cfg,
            pending: None,
            needed: 2,
        }
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &CodecConfig {
        &self.cfg
    }

    /// The minimum number of further bytes needed before the next call can make
    /// progress (valid after `decode` returned `Ok(None)`).
    #[must_use]
    pub const fn needed(&self) -> usize {
        self.needed
    }

    /// Whether a frame header has been consumed and its payload is still arriving.
    #[must_use]
    pub const fn is_mid_frame(&self) -> bool {
        self.pending.is_some()
    }

    /// Decodes at most one frame from the front of `src`.
    ///
    /// Returns `Ok(None)` when more bytes are needed; consumed bytes are removed
    /// from `src`.
    ///
    /// # Errors
    /// Any RFC 6455 framing violation or limit breach; see
    /// [`ProtocolError::close_code`] for the code to send. After an error the
    /// connection must be failed; the decoder's state is unspecified.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        self.decode_with(src, |_| Ok(()))
    }

    /// Like [`decode`](Self::decode), calling `on_header` once per frame as soon as
    /// its header is parsed and checked, before its payload is buffered.
    ///
    /// Message-level rules that depend on the header (continuation order, message
    /// size) belong in `on_header`; the [`Reader`](crate::Reader) uses it.
    ///
    /// # Errors
    /// As [`decode`](Self::decode), plus any error `on_header` returns.
    pub fn decode_with(
        &mut self,
        src: &mut BytesMut,
        on_header: impl FnOnce(&FrameHeader) -> Result<(), ProtocolError>,
    ) -> Result<Option<Frame>, ProtocolError> {
        let mut pending = match self.pending.take() {
            Some(p) => p,
            None => {
                let Some((header, header_len)) = FrameHeader::parse(src)? else {
                    self.needed = min_header_len(src).saturating_sub(src.len()).max(1);
                    return Ok(None);
                };
                self.check(&header)?;
                on_header(&header)?;
                src.advance(header_len);
                // `check` bounded the length by `max_frame_len`, which a caller on a
                // 32-bit target cannot set above usize::MAX meaningfully.
                let len = usize::try_from(header.payload_len)
                    .map_err(|_| self.too_large(header.payload_len))?;
                Pending {
                    header,
                    len,
                    unmasked: 0,
                }
            }
        };
        if src.len() < pending.len {
            if let Some(key) = pending.header.mask {
                apply_mask_offset(&mut src[pending.unmasked..], key, pending.unmasked);
                pending.unmasked = src.len();
            }
            self.needed = pending.len - src.len();
            self.pending = Some(pending);
            return Ok(None);
        }
        let mut payload = src.split_to(pending.len);
        if let Some(key) = pending.header.mask {
            apply_mask_offset(&mut payload[pending.unmasked..], key, pending.unmasked);
        }
        self.needed = 2;
        Ok(Some(Frame {
            fin: pending.header.fin,
            rsv: pending.header.rsv,
            opcode: pending.header.opcode,
            payload: payload.freeze(),
        }))
    }

    /// The header of the frame whose payload is arriving, and the unmasked bytes
    /// of its payload already at the front of `src`.
    ///
    /// `src` must be the buffer last passed to [`decode`](Self::decode).
    #[must_use]
    pub fn partial_payload<'a>(&self, src: &'a [u8]) -> Option<(&FrameHeader, &'a [u8])> {
        let p = self.pending.as_ref()?;
        let available = if p.header.mask.is_some() {
            p.unmasked
        } else {
            src.len()
        };
        Some((&p.header, &src[..available.min(src.len()).min(p.len)]))
    }

    fn check(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        if h.rsv & !self.cfg.allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        match (self.cfg.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if h.payload_len > self.cfg.max_frame_len {
            return Err(self.too_large(h.payload_len));
        }
        Ok(())
    }

    const fn too_large(&self, len: u64) -> ProtocolError {
        ProtocolError::FrameTooLarge {
            len,
            max: self.cfg.max_frame_len,
        }
    }
}

/// How long the header at the front of `src` is, as far as its first two bytes tell.
fn min_header_len(src: &[u8]) -> usize {
    match src {
        [_, b1, ..] => {
            let ext = match b1 & 0x7F {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
        }
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opcode::OpCode;
    use bytes::Bytes;

    fn masked(frame: &Frame) -> BytesMut {
        let mut out = BytesMut::new();
        frame.encode(Some([0xA1, 0xB2, 0xC3, 0xD4]), &mut out);
        out
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let frame = Frame::binary(Bytes::from(
            (0..=255u8).cycle().take(70_000).collect::<Vec<_>>(),
        ));
        let wire = masked(&frame);
        let mut dec = Decoder::new(CodecConfig::server());
        let mut buf = BytesMut::new();
        let mut got = None;
        for &b in &wire[..] {
            buf.extend_from_slice(&[b]);
            if let Some(f) = dec.decode(&mut buf).unwrap() {
                got = Some(f);
            }
        }
        assert_eq!(got, Some(frame));
        assert!(buf.is_empty());
    }

    #[test]
    fn enforces_role_rsv_and_limits_from_the_header() {
        let mut dec = Decoder::new(CodecConfig::server());
        let mut unmasked = BytesMut::new();
        Frame::text("hi").encode(None, &mut unmasked);
        assert_eq!(dec.decode(&mut unmasked), Err(ProtocolError::UnmaskedFrame));

        let mut dec = Decoder::new(CodecConfig::client());
        assert_eq!(
            dec.decode(&mut masked(&Frame::text("hi"))),
            Err(ProtocolError::MaskedFrame)
        );

        let mut dec = Decoder::new(CodecConfig::server());
        let mut rsv = masked(&Frame::text("hi"));
        rsv[0] |= 0x40;
        assert_eq!(dec.decode(&mut rsv), Err(ProtocolError::ReservedBits));

        // Only the header of a too-large frame is needed to refuse it.
        let mut dec = Decoder::new(CodecConfig::server().with_max_frame_len(1000));
        let mut big = BytesMut::from(&[0x82, 0xFE, 0x03, 0xE9, 1, 2, 3, 4][..]);
        assert_eq!(
            dec.decode(&mut big),
            Err(ProtocolError::FrameTooLarge {
                len: 1001,
                max: 1000
            })
        );
    }

    #[test]
    fn partial_payload_is_unmasked_as_it_arrives() {
        let wire = masked(&Frame::text("hello world"));
        let mut dec = Decoder::new(CodecConfig::server());
        let mut buf = BytesMut::from(&wire[..6 + 5]);
        assert!(dec.decode(&mut buf).unwrap().is_none());
        let (h, prefix) = dec.partial_payload(&buf).unwrap();
        assert_eq!((h.opcode, prefix), (OpCode::Text, &b"hello"[..]));
        buf.extend_from_slice(&wire[11..]);
        let f = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&f.payload[..], b"hello world");
    }
}
