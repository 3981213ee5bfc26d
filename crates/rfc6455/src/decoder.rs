//! Zero-copy frame decoding from a caller-owned `BytesMut`.

use bytes::{Buf, BytesMut};

use crate::config::{CodecConfig, Role};
use crate::error::ProtocolError;
use crate::frame::Frame;
use crate::header::FrameHeader;
use crate::mask::{apply_mask, apply_mask_offset};
use crate::opcode::OpCode;

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

/// A frame decoded in place by [`Decoder::decode_in_place`]: its payload is a
/// view into the caller's buffer, already unmasked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// FIN: the final fragment of its message.
    pub fin: bool,
    /// RSV1-3 as a 3-bit value.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The unmasked payload, borrowed from the buffer.
    pub payload: &'a [u8],
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
    #[inline]
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
    #[inline]
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

    /// Decodes one complete frame at the front of `buf` without taking ownership
    /// of anything: the payload is unmasked in place and borrowed, and the caller
    /// removes the frame's bytes (the returned length) when it is done with it.
    ///
    /// This is the fastest path when payloads are consumed where they lie (an
    /// echo, a parser that copies out what it keeps): no reference counting per
    /// frame. It needs the whole frame in `buf`, so the buffer must be able to
    /// hold `max_frame_len` plus a header; `Ok(None)` means more bytes are needed
    /// ([`needed`](Self::needed) says how many) and leaves `buf` untouched. Do not
    /// interleave it with [`decode`](Self::decode) while that is mid-frame.
    ///
    /// # Errors
    /// As [`decode`](Self::decode).
    ///
    /// ```
    /// use rfc6455::{CodecConfig, Decoder, OpCode};
    /// let mut dec = Decoder::new(CodecConfig::server());
    /// // Two masked frames back to back: RFC 6455 §5.7 "Hello", then the same again.
    /// let hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    /// let mut buf = [hello, hello].concat();
    /// let mut at = 0;
    /// while let Some((frame, len)) = dec.decode_in_place(&mut buf[at..]).unwrap() {
    ///     assert_eq!((frame.opcode, frame.payload), (OpCode::Text, &b"Hello"[..]));
    ///     at += len;
    /// }
    /// assert_eq!(at, buf.len());
    /// ```
    #[inline]
    pub fn decode_in_place<'a>(
        &mut self,
        buf: &'a mut [u8],
    ) -> Result<Option<(FrameRef<'a>, usize)>, ProtocolError> {
        debug_assert!(
            self.pending.is_none(),
            "decode_in_place while decode is mid-frame"
        );
        let Some((header, header_len)) = FrameHeader::parse(buf)? else {
            self.needed = min_header_len(buf).saturating_sub(buf.len()).max(1);
            return Ok(None);
        };
        self.check(&header)?;
        let total = usize::try_from(header.payload_len)
            .ok()
            .and_then(|len| len.checked_add(header_len))
            .ok_or_else(|| self.too_large(header.payload_len))?;
        if buf.len() < total {
            self.needed = total - buf.len();
            return Ok(None);
        }
        let payload = &mut buf[header_len..total];
        if let Some(key) = header.mask {
            apply_mask(payload, key);
        }
        self.needed = 2;
        Ok(Some((
            FrameRef {
                fin: header.fin,
                rsv: header.rsv,
                opcode: header.opcode,
                payload,
            },
            total,
        )))
    }

    /// The header of the frame whose payload is arriving, and the unmasked bytes
    /// of its payload already at the front of `src`.
    ///
    /// `src` must be the buffer last passed to [`decode`](Self::decode).
    #[must_use]
    #[inline]
    pub fn partial_payload<'a>(&self, src: &'a [u8]) -> Option<(&FrameHeader, &'a [u8])> {
        let p = self.pending.as_ref()?;
        let available = if p.header.mask.is_some() {
            p.unmasked
        } else {
            src.len()
        };
        Some((&p.header, &src[..available.min(src.len()).min(p.len)]))
    }

    #[inline]
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
    fn in_place_decoding_agrees_with_owned_decoding() {
        let frames = [
            Frame::text("a"),
            Frame::binary(vec![9u8; 300]),
            Frame::ping("p"),
            Frame::new(OpCode::Text, "frag").with_fin(false),
            Frame::new(OpCode::Continuation, vec![b'x'; 70_000]),
        ];
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(Some([5, 6, 7, 8]), &mut wire);
        }
        let mut in_place = wire.to_vec();
        let mut dec = Decoder::new(CodecConfig::server());
        let mut at = 0;
        let mut seen = Vec::new();
        // Feed a growing prefix, as a socket would: None until the frame is whole.
        let mut avail = 1;
        while at < in_place.len() {
            match dec.decode_in_place(&mut in_place[at..avail]).unwrap() {
                Some((f, len)) => {
                    seen.push(Frame {
                        fin: f.fin,
                        rsv: f.rsv,
                        opcode: f.opcode,
                        payload: Bytes::copy_from_slice(f.payload),
                    });
                    at += len;
                }
                None => avail = (avail + dec.needed()).min(in_place.len()),
            }
        }
        assert_eq!(seen, frames);

        let mut dec = Decoder::new(CodecConfig::client());
        assert_eq!(
            dec.decode_in_place(&mut wire.to_vec()),
            Err(ProtocolError::MaskedFrame)
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
