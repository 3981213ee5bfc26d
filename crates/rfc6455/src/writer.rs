//! The send side of a connection: messages and control frames out, close state kept.

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::close::{CloseFrame, CloseHandshake, CloseState};
use crate::config::Role;
#[cfg(feature = "deflate")]
use crate::deflate::{DeflateParams, MessageCompressor};
use crate::frame::Frame;
use crate::header::{FrameHeader, MAX_CONTROL_PAYLOAD};
use crate::mask::apply_mask;
use crate::opcode::OpCode;

/// Why a frame was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A close frame was already sent; nothing else may follow (RFC 6455 §5.5.1).
    #[error("close frame already sent")]
    Closed,
    /// A control frame payload over 125 bytes (§5.5).
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// A control opcode passed where only data opcodes belong: control frames are
    /// never fragmented (§5.5) and go through [`Writer::frame`], `ping`, `pong` or `close`.
    #[error("control opcode in a data fragment")]
    NotData,
    /// A close code that may not appear on the wire (1005, 1006, 1015, ...; §7.4).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A close frame whose reason is not UTF-8 (§5.5.1).
    #[error("close reason is not utf-8")]
    InvalidCloseReason,
    /// A compressed message was asked for, but permessage-deflate was not
    /// negotiated (see `Writer::with_deflate`, feature `deflate`).
    #[error("permessage-deflate not negotiated")]
    NotNegotiated,
}

/// Encodes outgoing frames for one role and enforces the send-side rules: mask
/// every client frame with a fresh key, keep control payloads within 125 bytes,
/// send one close frame and nothing after it.
///
/// The codec has no random number generator of its own: a client writer is
/// given a function that returns fresh, unpredictable masking keys (§5.3 asks
/// for a strong source of entropy).
///
/// ```
/// use bytes::BytesMut;
/// use rfc6455::{CloseCode, CloseFrame, Writer};
///
/// let mut w = Writer::server();
/// let mut out = BytesMut::new();
/// w.text("hi", &mut out).unwrap();
/// assert_eq!(&out[..], [0x81, 0x02, b'h', b'i']);
/// w.close(Some(&CloseFrame::new(CloseCode::NORMAL, "")), &mut out).unwrap();
/// assert!(w.text("late", &mut out).is_err());
/// ```
pub struct Writer {
    role: Role,
    close: CloseHandshake,
    mask_key: Option<Box<dyn FnMut() -> [u8; 4] + Send>>,
    /// permessage-deflate's compressor once negotiated: a
    /// [shared](MessageCompressor::shared) one without context takeover (no
    /// deflate state between messages), else a dedicated one whose state is
    /// created on the first compressed message.
    #[cfg(feature = "deflate")]
    deflate: Option<MessageCompressor>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("role", &self.role)
            .field("close", &self.close)
            .field("deflate", &self.deflate_on())
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer for the server role (frames are not masked).
    #[must_use]
    pub fn server() -> Self {
        Self {
            role: Role::Server,
            close: CloseHandshake::new(),
            mask_key: None,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }

    /// A writer for the client role; `mask_key` returns a fresh random key per frame.
    #[must_use]
    pub fn client(mask_key: impl FnMut() -> [u8; 4] + Send + 'static) -> Self {
        Self {
            role: Role::Client,
            close: CloseHandshake::new(),
            mask_key: Some(Box::new(mask_key)),
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }

    /// The role.
    #[must_use]
    pub const fn role(&self) -> Role {
        self.role
    }

    /// Enables [`compressed`](Self::compressed) messages with the
    /// permessage-deflate parameters the handshake agreed on (RFC 7692).
    /// Every other method keeps sending uncompressed frames.
    #[cfg(feature = "deflate")]
    #[must_use]
    pub fn with_deflate(self, params: DeflateParams) -> Self {
        let compressor = if params.compress_no_context_takeover(self.role) {
            MessageCompressor::shared()
        } else {
            MessageCompressor::new(false)
        };
        self.with_compressor(compressor)
    }

    /// Enables [`compressed`](Self::compressed) messages through the given
    /// compressor, for a level other than the default. Its context takeover
    /// must be what the handshake agreed for this side's messages.
    ///
    /// ```
    /// use rfc6455::deflate::{Compression, MessageCompressor};
    /// use rfc6455::Writer;
    ///
    /// let w = Writer::server().with_compressor(MessageCompressor::shared_with_level(Compression::fast()));
    /// assert!(w.deflate_on());
    /// ```
    #[cfg(feature = "deflate")]
    #[must_use]
    pub fn with_compressor(mut self, compressor: MessageCompressor) -> Self {
        self.deflate = Some(compressor);
        self
    }

    /// Whether permessage-deflate is enabled on this writer.
    #[must_use]
    pub const fn deflate_on(&self) -> bool {
        #[cfg(feature = "deflate")]
        {
            self.deflate.is_some()
        }
        #[cfg(not(feature = "deflate"))]
        {
            false
        }
    }

    /// Writes a whole data message compressed, as one frame with RSV1 set.
    /// `opcode` is [`OpCode::Text`] or [`OpCode::Binary`]; control frames are
    /// never compressed (RFC 7692 §6.1).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use rfc6455::deflate::DeflateParams;
    /// use rfc6455::{OpCode, Writer};
    ///
    /// let mut w = Writer::server().with_deflate(DeflateParams::default());
    /// let mut out = BytesMut::new();
    /// w.compressed(OpCode::Text, b"Hello", &mut out).unwrap();
    /// // RFC 7692 §7.2.3.1: FIN + RSV1 + text, then the deflated "Hello".
    /// assert_eq!(&out[..], [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    /// ```
    ///
    /// # Errors
    /// [`WriteError::NotData`] for any other opcode, [`WriteError::NotNegotiated`]
    /// without [`with_deflate`](Self::with_deflate), [`WriteError::Closed`] after
    /// a close frame was sent. Nothing is compressed when an error is returned,
    /// so a compressor that keeps context stays in step with the peer's.
    #[cfg(feature = "deflate")]
    pub fn compressed(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), WriteError> {
        if !matches!(opcode, OpCode::Text | OpCode::Binary) {
            return Err(WriteError::NotData);
        }
        if !self.close.can_send() {
            return Err(WriteError::Closed);
        }
        let Some(compressor) = self.deflate.as_mut() else {
            return Err(WriteError::NotNegotiated);
        };
        let mask = self.mask_key.as_mut().map(|next| next());
        compressor.frame(opcode, payload, mask, dst)
    }

    /// The closing-handshake state.
    #[must_use]
    pub const fn close_state(&self) -> CloseState {
        self.close.state()
    }

    /// Whether the closing handshake is complete.
    #[must_use]
    pub const fn is_closed(&self) -> bool {
        self.close.is_closed()
    }

    /// Writes a single-frame text message.
    ///
    /// # Errors
    /// [`WriteError::Closed`] after a close frame was sent.
    pub fn text(&mut self, text: &str, dst: &mut BytesMut) -> Result<(), WriteError> {
        self.fragment(OpCode::Text, true, text.as_bytes(), dst)
    }

    /// Writes a single-frame binary message.
    ///
    /// # Errors
    /// [`WriteError::Closed`] after a close frame was sent.
    pub fn binary(&mut self, data: &[u8], dst: &mut BytesMut) -> Result<(), WriteError> {
        self.fragment(OpCode::Binary, true, data, dst)
    }

    /// Writes one fragment: `opcode` is `Text`/`Binary` for the first fragment and
    /// `Continuation` after it; `fin` marks the last. The caller keeps the order.
    ///
    /// # Errors
    /// [`WriteError::NotData`] for a control opcode; [`WriteError::Closed`] after a
    /// close frame was sent.
    pub fn fragment(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), WriteError> {
        if opcode.is_control() {
            return Err(WriteError::NotData);
        }
        self.data_or_control(opcode, fin, payload, dst)
    }

    fn data_or_control(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), WriteError> {
        if !self.close.can_send() {
            return Err(WriteError::Closed);
        }
        self.put(fin, 0, opcode, payload, dst);
        Ok(())
    }

    /// Writes a ping.
    ///
    /// # Errors
    /// [`WriteError::ControlTooLong`] or [`WriteError::Closed`].
    pub fn ping(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), WriteError> {
        self.control(OpCode::Ping, payload, dst)
    }

    /// Writes a pong (the answer to a ping carries the ping's payload).
    ///
    /// # Errors
    /// [`WriteError::ControlTooLong`] or [`WriteError::Closed`].
    pub fn pong(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), WriteError> {
        self.control(OpCode::Pong, payload, dst)
    }

    /// Writes any frame, routing close frames through the closing handshake.
    ///
    /// # Errors
    /// [`WriteError::ControlTooLong`] or [`WriteError::Closed`].
    pub fn frame(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), WriteError> {
        if frame.opcode == OpCode::Close {
            if frame.payload.len() > MAX_CONTROL_PAYLOAD {
                return Err(WriteError::ControlTooLong);
            }
            match frame.payload[..] {
                [] => {}
                // §5.5.1: a body, if present, starts with a 2-byte code.
                [_] => return Err(WriteError::InvalidCloseCode(0)),
                [a, b, ..] => {
                    let code = u16::from_be_bytes([a, b]);
                    if !crate::CloseCode(code).is_valid_on_wire() {
                        return Err(WriteError::InvalidCloseCode(code));
                    }
                    if std::str::from_utf8(&frame.payload[2..]).is_err() {
                        return Err(WriteError::InvalidCloseReason);
                    }
                }
            }
            if !self.close.on_send() {
                return Err(WriteError::Closed);
            }
            self.put(true, 0, OpCode::Close, &frame.payload, dst);
            return Ok(());
        }
        if frame.opcode.is_control() {
            return self.control(frame.opcode, &frame.payload, dst);
        }
        self.fragment(frame.opcode, frame.fin, &frame.payload, dst)
    }

    /// Starts (or completes) the closing handshake by sending a close frame.
    ///
    /// # Errors
    /// [`WriteError::InvalidCloseCode`] for a code not valid on the wire;
    /// [`WriteError::Closed`] if a close frame was already sent.
    pub fn close(
        &mut self,
        frame: Option<&CloseFrame>,
        dst: &mut BytesMut,
    ) -> Result<(), WriteError> {
        if let Some(f) = frame.filter(|f| !f.code.is_valid_on_wire()) {
            return Err(WriteError::InvalidCloseCode(f.code.0));
        }
        if !self.close.on_send() {
            return Err(WriteError::Closed);
        }
        let payload = frame.map(CloseFrame::to_payload).unwrap_or_default();
        self.put(true, 0, OpCode::Close, &payload, dst);
        Ok(())
    }

    /// Records the peer's close frame and writes the answer if one is due (the
    /// peer closed first). Returns whether an answer was written.
    pub fn on_peer_close(&mut self, peer: Option<&CloseFrame>, dst: &mut BytesMut) -> bool {
        match self.close.on_receive(peer) {
            Some(reply) => self.close(reply.as_ref(), dst).is_ok(),
            None => false,
        }
    }

    fn control(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), WriteError> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(WriteError::ControlTooLong);
        }
        self.data_or_control(opcode, true, payload, dst)
    }

    fn put(&mut self, fin: bool, rsv: u8, opcode: OpCode, payload: &[u8], dst: &mut BytesMut) {
        let mask = self.mask_key.as_mut().map(|next| next());
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        dst.reserve(header.encoded_len() + payload.len());
        header.encode(dst);
        let start = dst.len();
        dst.put_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut dst[start..], key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::CloseCode;
    use crate::{CodecConfig, Event, Reader};

    #[test]
    fn client_frames_are_masked_and_read_back_by_a_server() {
        let mut keys = [[1, 2, 3, 4], [9, 9, 9, 9]].into_iter().cycle();
        let mut w = Writer::client(move || keys.next().expect("cycle"));
        let mut out = BytesMut::new();
        w.text("héllo", &mut out).unwrap();
        w.ping(b"p", &mut out).unwrap();
        assert_ne!(out[1] & 0x80, 0);
        let mut r = Reader::new(CodecConfig::server());
        assert!(matches!(r.read(&mut out).unwrap(), Some(Event::Message(_))));
        assert_eq!(r.read(&mut out).unwrap(), Some(Event::Ping("p".into())));
    }

    #[test]
    fn peer_close_is_answered_once_then_nothing_is_sent() {
        let mut w = Writer::server();
        let mut out = BytesMut::new();
        let peer = CloseFrame::new(CloseCode::GOING_AWAY, "bye");
        assert!(w.on_peer_close(Some(&peer), &mut out));
        assert_eq!(&out[..], [0x88, 0x02, 0x03, 0xE9]);
        assert!(!w.on_peer_close(Some(&peer), &mut out));
        assert_eq!(w.text("x", &mut out), Err(WriteError::Closed));
        assert_eq!(w.pong(b"", &mut out), Err(WriteError::Closed));
        assert!(w.is_closed());
    }

    #[test]
    fn control_payloads_are_bounded() {
        let mut w = Writer::server();
        let mut out = BytesMut::new();
        assert_eq!(w.ping(&[0; 126], &mut out), Err(WriteError::ControlTooLong));
        w.ping(&[0; 125], &mut out).unwrap();
        let before = out.len();
        assert_eq!(
            w.fragment(OpCode::Ping, false, b"x", &mut out),
            Err(WriteError::NotData)
        );
        assert_eq!(
            w.fragment(OpCode::Close, true, b"", &mut out),
            Err(WriteError::NotData)
        );
        assert_eq!(
            w.close(Some(&CloseFrame::new(CloseCode::NO_STATUS, "")), &mut out),
            Err(WriteError::InvalidCloseCode(1005))
        );
        assert_eq!(
            w.frame(&Frame::new(OpCode::Close, vec![0x03]), &mut out),
            Err(WriteError::InvalidCloseCode(0))
        );
        assert_eq!(
            w.frame(&Frame::new(OpCode::Close, vec![0x03, 0xE8, 0xFF]), &mut out),
            Err(WriteError::InvalidCloseReason)
        );
        assert_eq!(out.len(), before, "nothing written for a refused frame");
        assert!(w.close_state() == CloseState::Open);
    }
}
