//! Messages and their reassembly from fragments (RFC 6455 §5.4, §5.6).

use bytes::{Bytes, BytesMut};

use crate::config::CodecConfig;
#[cfg(feature = "deflate")]
use crate::config::Role;
#[cfg(feature = "deflate")]
use crate::deflate::{DeflateParams, Inflater};
use crate::error::ProtocolError;
use crate::frame::Frame;
use crate::header::FrameHeader;
use crate::opcode::OpCode;
use crate::utf8::{Utf8Bytes, Utf8Validator};

/// A complete data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, validated as UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// The payload bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// The opcode this message is sent with.
    #[must_use]
    pub const fn opcode(&self) -> OpCode {
        match self {
            Self::Text(_) => OpCode::Text,
            Self::Binary(_) => OpCode::Binary,
        }
    }

    /// The message as a single final frame.
    #[must_use]
    pub fn into_frame(self) -> Frame {
        match self {
            Self::Text(t) => Frame::new(OpCode::Text, t.into_bytes()),
            Self::Binary(b) => Frame::new(OpCode::Binary, b),
        }
    }
}

/// Reassembles data frames into messages, validating UTF-8 fragment by fragment.
///
/// Feed it data frames in order with [`push`](Self::push); control frames may be
/// interleaved by the caller and are not passed here. An unfragmented message
/// is returned without copying; a fragmented one is copied once into a
/// contiguous buffer bounded by `max_message_len`.
///
/// ```
/// use rfc6455::{Frame, Message, MessageAssembler, OpCode};
/// let mut asm = MessageAssembler::new(1024);
/// assert_eq!(asm.push(Frame::new(OpCode::Text, "Hel").with_fin(false)).unwrap(), None);
/// let msg = asm.push(Frame::new(OpCode::Continuation, "lo")).unwrap();
/// assert_eq!(msg, Some(Message::Text("Hello".into())));
/// ```
#[derive(Debug, Clone)]
pub struct MessageAssembler {
    max_message_len: usize,
    open: Option<Partial>,
    /// The header of the current data frame has passed [`on_header`](Self::on_header).
    header_seen: bool,
    /// The current data frame belongs to a text message.
    frame_is_text: bool,
    /// Payload bytes of the current frame already fed to the validator.
    validated: usize,
    utf8: Utf8Validator,
    /// The current frame belongs to a message sent with RSV1 (permessage-deflate):
    /// its bytes are deflate data, so UTF-8 is checked only after inflation.
    /// Always false without a negotiated deflate.
    compressed: bool,
    /// Present when permessage-deflate was negotiated; RSV1 is refused otherwise.
    #[cfg(feature = "deflate")]
    inflater: Option<Inflater>,
    /// The inflated bytes of the compressed message in progress; `None`
    /// between messages, so an idle assembler holds no buffer.
    #[cfg(feature = "deflate")]
    inflated: Option<BytesMut>,
    /// Sizes of the last message, when it was compressed.
    #[cfg(feature = "deflate")]
    last_compressed: Option<crate::deflate::CompressedSize>,
}

/// A fragmented message still missing its final frame.
#[derive(Debug, Clone)]
struct Partial {
    text: bool,
    /// The first fragment, kept without copying until a second one arrives.
    first: Bytes,
    rest: Option<BytesMut>,
    len: usize,
    compressed: bool,
}

impl MessageAssembler {
    /// An assembler that refuses messages longer than `max_message_len` bytes.
    #[must_use]
    pub const fn new(max_message_len: usize) -> Self {
        Self::build(
            max_message_len,
            #[cfg(feature = "deflate")]
            None,
        )
    }

    /// The assembler a [`Reader`](crate::Reader) with `cfg` uses: its message
    /// limit and, when negotiated, permessage-deflate for its role.
    pub(crate) const fn for_config(cfg: &CodecConfig) -> Self {
        Self::build(
            cfg.max_message_len,
            #[cfg(feature = "deflate")]
            match cfg.deflate {
                Some(params) => Some(Inflater::new(&params, cfg.role)),
                None => None,
            },
        )
    }

    // One constructor for both, because a const fn cannot overwrite a field
    // whose type has a destructor, as the inflater's has.
    const fn build(
        max_message_len: usize,
        #[cfg(feature = "deflate")] inflater: Option<Inflater>,
    ) -> Self {
        Self {
            max_message_len,
            open: None,
            header_seen: false,
            frame_is_text: false,
            validated: 0,
            utf8: Utf8Validator::new(),
            compressed: false,
            #[cfg(feature = "deflate")]
            inflater,
            #[cfg(feature = "deflate")]
            inflated: None,
            #[cfg(feature = "deflate")]
            last_compressed: None,
        }
    }

    /// Accepts messages compressed with permessage-deflate (RFC 7692), as
    /// negotiated in the handshake, for the endpoint in `role`.
    ///
    /// RSV1 is then allowed on the first frame of a data message, and such a
    /// message is inflated frame by frame as it arrives (with a
    /// [`Reader`](crate::Reader), even as a frame's bytes arrive), its text
    /// checked as UTF-8 on the way; `max_message_len` bounds the inflated size
    /// and inflation stops as soon as it is crossed. Compressed bytes are not
    /// kept once inflated; their total per message is bounded by the limit
    /// too, plus the little that deflate's framing can add to incompressible
    /// data.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use rfc6455::deflate::{DeflateParams, MessageCompressor};
    /// use rfc6455::{Frame, Message, MessageAssembler, OpCode, Role};
    ///
    /// let mut packed = BytesMut::new();
    /// MessageCompressor::new(true).compress(b"Hello", &mut packed);
    /// let mut frame = Frame::new(OpCode::Text, packed.freeze());
    /// frame.rsv = 0b100;
    /// let mut asm = MessageAssembler::new(1024).with_deflate(DeflateParams::default(), Role::Client);
    /// assert_eq!(asm.push(frame).unwrap(), Some(Message::Text("Hello".into())));
    /// ```
    #[cfg(feature = "deflate")]
    #[must_use]
    pub fn with_deflate(mut self, params: DeflateParams, role: Role) -> Self {
        self.inflater = Some(Inflater::new(&params, role));
        self
    }

    #[inline]
    const fn deflate_on(&self) -> bool {
        #[cfg(feature = "deflate")]
        {
            self.inflater.is_some()
        }
        #[cfg(not(feature = "deflate"))]
        {
            false
        }
    }

    /// Whether a fragmented message is in progress.
    #[must_use]
    pub const fn in_message(&self) -> bool {
        self.open.is_some()
    }

    /// Whether this assembler holds compression history from earlier messages
    /// (permessage-deflate with the peer's context takeover), which a fresh
    /// assembler would lack: it must then be kept between messages.
    #[must_use]
    pub fn holds_history(&self) -> bool {
        #[cfg(feature = "deflate")]
        {
            self.inflater.as_ref().is_some_and(Inflater::holds_history)
        }
        #[cfg(not(feature = "deflate"))]
        {
            false
        }
    }

    /// The compressed and inflated sizes of the last message returned, when
    /// it was compressed (permessage-deflate); `None` after an uncompressed
    /// one.
    #[cfg(feature = "deflate")]
    #[must_use]
    pub const fn last_compressed(&self) -> Option<crate::deflate::CompressedSize> {
        self.last_compressed
    }

    /// Checks a data frame's header before its payload is buffered: fragment
    /// order and the message size limit. Control frame headers are ignored.
    ///
    /// # Errors
    /// [`ProtocolError::UnexpectedContinuation`], [`ProtocolError::ExpectedContinuation`],
    /// [`ProtocolError::MessageTooLarge`], or, with deflate on,
    /// [`ProtocolError::ReservedBits`] for RSV1 outside a message's first frame.
    #[inline]
    pub fn on_header(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        let rsv1 = self.deflate_on() && h.rsv & 0b100 != 0;
        // RFC 7692 §6.1: only the first frame of a data message says whether
        // it is compressed; RSV1 on a continuation or control frame is an error.
        if rsv1 && !matches!(h.opcode, OpCode::Text | OpCode::Binary) {
            return Err(ProtocolError::ReservedBits);
        }
        if h.opcode.is_control() {
            return Ok(());
        }
        let too_large = ProtocolError::MessageTooLarge {
            max: self.max_message_len,
        };
        let so_far = match (&self.open, h.opcode) {
            (None, OpCode::Continuation) => return Err(ProtocolError::UnexpectedContinuation),
            (Some(_), OpCode::Text | OpCode::Binary) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            (Some(p), _) => {
                self.frame_is_text = p.text;
                self.compressed = p.compressed;
                p.len
            }
            (None, op) => {
                self.frame_is_text = op == OpCode::Text;
                self.compressed = rsv1;
                0
            }
        };
        let limit = if self.compressed {
            compressed_limit(self.max_message_len)
        } else {
            self.max_message_len
        };
        let total = u64::try_from(so_far)
            .ok()
            .and_then(|s| s.checked_add(h.payload_len))
            .ok_or_else(|| too_large.clone())?;
        if total > limit as u64 {
            return Err(too_large);
        }
        self.header_seen = true;
        self.validated = 0;
        Ok(())
    }

    /// Validates the start of the current frame's payload while the rest is still
    /// arriving, so invalid UTF-8 fails as soon as it is in the buffer.
    ///
    /// `prefix` is the unmasked payload received so far (it may repeat bytes seen
    /// by an earlier call; only the new ones are checked).
    ///
    /// # Errors
    /// [`ProtocolError::InvalidUtf8`].
    #[inline]
    pub fn on_partial(&mut self, h: &FrameHeader, prefix: &[u8]) -> Result<(), ProtocolError> {
        if h.opcode.is_control() || !self.header_seen {
            return Ok(());
        }
        #[cfg(feature = "deflate")]
        if self.compressed {
            // Inflate what has arrived, so a bomb is stopped at the limit and
            // bad UTF-8 is found while the rest of the frame is in flight.
            if prefix.len() > self.validated {
                let fresh = &prefix[self.validated..];
                self.validated = prefix.len();
                self.inflate_more(fresh)?;
            }
            return Ok(());
        }
        if !self.frame_is_text || self.compressed {
            return Ok(());
        }
        if prefix.len() > self.validated {
            self.utf8
                .feed(&prefix[self.validated..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            self.validated = prefix.len();
        }
        Ok(())
    }

    /// Adds a data frame; returns the message when the frame completes one.
    ///
    /// # Errors
    /// Fragment order, size limit or UTF-8 violations. Passing a control frame
    /// is a caller bug and reported as [`ProtocolError::ExpectedContinuation`].
    #[inline]
    pub fn push(&mut self, frame: Frame) -> Result<Option<Message>, ProtocolError> {
        if frame.opcode.is_control() {
            return Err(ProtocolError::ExpectedContinuation);
        }
        if !self.header_seen {
            self.on_header(&frame.header(None))?;
        }
        self.header_seen = false;
        #[cfg(feature = "deflate")]
        {
            if self.compressed {
                return self.push_compressed(&frame);
            }
            if frame.fin {
                self.last_compressed = None;
            }
        }
        if self.frame_is_text {
            let fresh = frame.payload.get(self.validated..).unwrap_or_default();
            self.utf8
                .feed(fresh)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            if frame.fin {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        self.validated = 0;
        let text = self.frame_is_text;
        let payload = match self.open.take() {
            None if frame.fin => frame.payload,
            None => {
                self.open = Some(Partial {
                    text,
                    len: frame.payload.len(),
                    first: frame.payload,
                    rest: None,
                    compressed: self.compressed,
                });
                return Ok(None);
            }
            Some(mut p) => {
                p.len += frame.payload.len();
                let buf = p.rest.get_or_insert_with(|| {
                    let mut b = BytesMut::with_capacity(p.len);
                    b.extend_from_slice(&p.first);
                    b
                });
                buf.extend_from_slice(&frame.payload);
                if !frame.fin {
                    self.open = Some(p);
                    return Ok(None);
                }
                p.rest.map_or(p.first, BytesMut::freeze)
            }
        };
        Ok(Some(if text {
            // Validated fragment by fragment above, ending with `finish`.
            Message::Text(Utf8Bytes::from_validated(payload))
        } else {
            Message::Binary(payload)
        }))
    }

    /// Adds a frame of a compressed message: inflates the bytes of it that
    /// [`on_partial`](Self::on_partial) did not, and on the last frame ends
    /// the message.
    #[cfg(feature = "deflate")]
    fn push_compressed(&mut self, frame: &Frame) -> Result<Option<Message>, ProtocolError> {
        let fresh = frame.payload.get(self.validated..).unwrap_or_default();
        self.validated = 0;
        self.inflate_more(fresh)?;
        let text = self.frame_is_text;
        if !frame.fin {
            // Only the count is kept: the bytes are inflated already.
            let p = self.open.get_or_insert(Partial {
                text,
                first: Bytes::new(),
                rest: None,
                len: 0,
                compressed: true,
            });
            p.len += frame.payload.len();
            return Ok(None);
        }
        let wire_len = self.open.take().map_or(0, |p| p.len) + frame.payload.len();
        let inflater = self.inflater.as_mut().ok_or(ProtocolError::ReservedBits)?;
        let out = self.inflated.get_or_insert_with(BytesMut::new);
        let before = out.len();
        inflater.finish(self.max_message_len, out)?;
        let data = self.inflated.take().unwrap_or_default();
        self.last_compressed = Some(crate::deflate::CompressedSize {
            compressed: wire_len,
            inflated: data.len(),
        });
        if text {
            self.utf8
                .feed(&data[before..])
                .and_then(|()| self.utf8.finish())
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            // Validated piece by piece as it was inflated, ending with `finish`.
            return Ok(Some(Message::Text(Utf8Bytes::from_validated(
                data.freeze(),
            ))));
        }
        Ok(Some(Message::Binary(data.freeze())))
    }

    /// Inflates the next compressed bytes of the current message, checking the
    /// inflated size against the limit and, for text, the new bytes' UTF-8.
    #[cfg(feature = "deflate")]
    fn inflate_more(&mut self, compressed: &[u8]) -> Result<(), ProtocolError> {
        if compressed.is_empty() {
            return Ok(());
        }
        // `compressed` is only ever set while an inflater is present.
        let inflater = self.inflater.as_mut().ok_or(ProtocolError::ReservedBits)?;
        let out = self.inflated.get_or_insert_with(BytesMut::new);
        let before = out.len();
        inflater.inflate(compressed, self.max_message_len, out)?;
        if self.frame_is_text {
            self.utf8
                .feed(&out[before..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }
}

/// How many compressed bytes a message may take on the wire when its inflated
/// form may take `max`: deflate stores incompressible data with 5 bytes of
/// framing per block of at most 64 KiB, so an honest peer stays far below
/// this, while a peer that buffers more than it could ever inflate to within
/// the limit is refused from the header, as for uncompressed messages.
const fn compressed_limit(max: usize) -> usize {
    max.saturating_add(max / 1024).saturating_add(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(op: OpCode, data: &'static [u8], fin: bool) -> Frame {
        Frame::new(op, Bytes::from_static(data)).with_fin(fin)
    }

    #[test]
    fn order_rules() {
        let mut asm = MessageAssembler::new(100);
        assert_eq!(
            asm.push(frag(OpCode::Continuation, b"x", true)),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let mut asm = MessageAssembler::new(100);
        asm.push(frag(OpCode::Binary, b"a", false)).unwrap();
        assert_eq!(
            asm.push(frag(OpCode::Text, b"b", true)),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn size_limit_counts_all_fragments() {
        let mut asm = MessageAssembler::new(4);
        asm.push(frag(OpCode::Binary, b"abc", false)).unwrap();
        assert_eq!(
            asm.push(frag(OpCode::Continuation, b"de", true)),
            Err(ProtocolError::MessageTooLarge { max: 4 })
        );
    }

    #[test]
    fn utf8_fails_in_the_fragment_that_holds_the_bad_byte() {
        let mut asm = MessageAssembler::new(100);
        asm.push(frag(OpCode::Text, b"ok", false)).unwrap();
        assert_eq!(
            asm.push(frag(OpCode::Continuation, b"\xed\xa0", false)),
            Err(ProtocolError::InvalidUtf8)
        );
        // A code point split across fragments is fine.
        let mut asm = MessageAssembler::new(100);
        asm.push(frag(OpCode::Text, b"\xe2\x82", false)).unwrap();
        let m = asm.push(frag(OpCode::Continuation, b"\xac", true)).unwrap();
        assert_eq!(m, Some(Message::Text("€".into())));
    }

    #[test]
    fn unfragmented_messages_are_not_copied() {
        let payload = Bytes::from(vec![7u8; 64]);
        let mut asm = MessageAssembler::new(100);
        let Some(Message::Binary(b)) = asm.push(Frame::binary(payload.clone())).unwrap() else {
            panic!("expected a binary message");
        };
        assert_eq!(b.as_ptr(), payload.as_ptr());
    }
}
