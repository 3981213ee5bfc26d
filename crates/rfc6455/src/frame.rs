//! A decoded or to-be-encoded frame whose payload is a shared `Bytes`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::close::CloseFrame;
use crate::header::FrameHeader;
use crate::mask::apply_mask;
use crate::opcode::OpCode;
use crate::utf8::Utf8Bytes;

/// One WebSocket frame with its payload unmasked.
///
/// Decoded frames share the receive buffer's allocation; cloning a frame only
/// bumps a reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN: the final fragment of its message.
    pub fin: bool,
    /// RSV1-3 as a 3-bit value.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The unmasked payload.
    pub payload: Bytes,
}

impl Frame {
    /// A final frame with no RSV bits.
    #[must_use]
    pub fn new(opcode: OpCode, payload: impl Into<Bytes>) -> Self {
        Self {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.into(),
        }
    }

    /// A single-frame text message.
    #[must_use]
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::new(OpCode::Text, text.into().into_bytes())
    }

    /// A single-frame binary message.
    #[must_use]
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::new(OpCode::Binary, data)
    }

    /// A ping. The caller keeps the payload within 125 bytes.
    #[must_use]
    pub fn ping(data: impl Into<Bytes>) -> Self {
        Self::new(OpCode::Ping, data)
    }

    /// A pong. The caller keeps the payload within 125 bytes.
    #[must_use]
    pub fn pong(data: impl Into<Bytes>) -> Self {
        Self::new(OpCode::Pong, data)
    }

    /// A close frame; `None` sends an empty payload (no status code).
    #[must_use]
    pub fn close(frame: Option<&CloseFrame>) -> Self {
        let payload = frame.map_or_else(Bytes::new, CloseFrame::to_payload);
        Self::new(OpCode::Close, payload)
    }

    /// Sets FIN; `false` makes this a non-final fragment.
    #[must_use]
    pub fn with_fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }

    /// The header this frame encodes with.
    #[must_use]
    pub fn header(&self, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: self.fin,
            rsv: self.rsv,
            opcode: self.opcode,
            mask,
            payload_len: self.payload.len() as u64,
        }
    }

    /// The frame's size on the wire.
    #[must_use]
    pub fn encoded_len(&self, masked: bool) -> usize {
        self.header(masked.then_some([0; 4])).encoded_len() + self.payload.len()
    }

    /// Appends the frame to `dst`, masking it with `mask` when given (client role).
    ///
    /// ```
    /// use rfc6455::Frame;
    /// let mut out = bytes::BytesMut::new();
    /// Frame::text("Hello").encode(Some([0x37, 0xfa, 0x21, 0x3d]), &mut out);
    /// assert_eq!(&out[..], [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    /// ```
    pub fn encode(&self, mask: Option<[u8; 4]>, dst: &mut BytesMut) {
        encode_frame(self, mask, dst);
    }

    /// Encodes the frame (unmasked, as a server sends it) into a fresh `Bytes`,
    /// ready to be shared by any number of recipients.
    ///
    /// ```
    /// let wire = rfc6455::Frame::text("Hello").to_bytes();
    /// assert_eq!(&wire[..], [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
    /// ```
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len(false));
        encode_frame(self, None, &mut out);
        out.freeze()
    }
}

/// Appends `frame` to `dst`, masking it with `mask` when given.
///
/// A server passes `None`; a client passes a fresh random key per frame
/// (RFC 6455 §5.3).
pub fn encode_frame(frame: &Frame, mask: Option<[u8; 4]>, dst: &mut BytesMut) {
    let header = frame.header(mask);
    dst.reserve(header.encoded_len() + frame.payload.len());
    header.encode(dst);
    let start = dst.len();
    dst.put_slice(&frame.payload);
    if let Some(key) = mask {
        apply_mask(&mut dst[start..], key);
    }
}
