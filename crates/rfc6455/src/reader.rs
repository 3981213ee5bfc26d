//! The receive side of a connection: frames in, events out.

use bytes::{Bytes, BytesMut};

use crate::close::CloseFrame;
use crate::config::CodecConfig;
use crate::decoder::Decoder;
use crate::error::ProtocolError;
use crate::message::{Message, MessageAssembler};
use crate::opcode::OpCode;

/// What the peer sent, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete text or binary message.
    Message(Message),
    /// A ping; answer it with a pong carrying the same payload (RFC 6455 §5.5.2).
    Ping(Bytes),
    /// A pong (solicited or not; §5.5.3 lets the peer send them unprompted).
    Pong(Bytes),
    /// The peer's close frame, validated; `None` when it carried no status code.
    /// Answer it (see [`CloseHandshake`](crate::CloseHandshake)), then stop reading.
    Close(Option<CloseFrame>),
}

/// Decodes frames and reassembles messages, enforcing every receive-side rule
/// of RFC 6455: role masking, RSV bits, opcodes, control frames, fragment order,
/// size limits (from headers, before payloads are buffered), UTF-8 (fail-fast,
/// even inside a frame that has not fully arrived) and close payloads.
///
/// ```
/// use bytes::BytesMut;
/// use rfc6455::{CodecConfig, Event, Message, Reader};
///
/// let mut reader = Reader::new(CodecConfig::server());
/// // RFC 6455 §5.7: a masked "Hello".
/// let mut buf = BytesMut::from(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58][..]);
/// assert_eq!(reader.read(&mut buf).unwrap(), Some(Event::Message(Message::Text("Hello".into()))));
/// assert_eq!(reader.read(&mut buf).unwrap(), None);
/// ```
#[derive(Debug, Clone)]
pub struct Reader {
    decoder: Decoder,
    assembler: MessageAssembler,
    closed: bool,
}

impl Reader {
    /// A reader for the given role and limits.
    #[must_use]
    pub const fn new(cfg: CodecConfig) -> Self {
        Self {
            decoder: Decoder::new(cfg),
            assembler: MessageAssembler::for_config(&cfg),
            closed: false,
        }
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &CodecConfig {
        self.decoder.config()
    }

    /// Whether the peer's close frame has been read.
    #[must_use]
    pub const fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the reader is between messages and frames, holding no partial state.
    /// A transport may release its receive buffer while this is true and the buffer is empty.
    #[must_use]
    pub const fn is_idle(&self) -> bool {
        !self.decoder.is_mid_frame() && !self.assembler.in_message()
    }

    /// Whether the reader holds compression history from earlier messages
    /// (permessage-deflate, the peer keeping context) that a fresh `Reader::new` with the
    /// same configuration would lack. A transport that drops an idle reader to save memory
    /// and builds a new one for the next bytes must keep it while this is true.
    #[must_use]
    pub fn holds_history(&self) -> bool {
        self.assembler.holds_history()
    }

    /// The compressed and inflated sizes of the message the last `read` returned, when it
    /// was compressed (permessage-deflate); `None` after an uncompressed one.
    #[cfg(feature = "deflate")]
    #[must_use]
    pub const fn last_compressed(&self) -> Option<crate::deflate::CompressedSize> {
        self.assembler.last_compressed()
    }

    /// The minimum number of further bytes needed to make progress.
    #[must_use]
    pub const fn needed(&self) -> usize {
        self.decoder.needed()
    }

    /// Reads the next event from the front of `src`; `Ok(None)` means more bytes
    /// are needed. Consumed bytes are removed from `src`.
    ///
    /// # Errors
    /// Any RFC 6455 violation; send its [`close_code`](ProtocolError::close_code)
    /// and fail the connection.
    #[inline]
    pub fn read(&mut self, src: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        if self.closed {
            // §5.5.1: after a close frame the peer sends nothing more.
            return if src.is_empty() {
                Ok(None)
            } else {
                Err(ProtocolError::FrameAfterClose)
            };
        }
        loop {
            let assembler = &mut self.assembler;
            let Some(frame) = self.decoder.decode_with(src, |h| assembler.on_header(h))? else {
                if let Some((header, prefix)) = self.decoder.partial_payload(src) {
                    self.assembler.on_partial(header, prefix)?;
                }
                return Ok(None);
            };
            match frame.opcode {
                OpCode::Ping => return Ok(Some(Event::Ping(frame.payload))),
                OpCode::Pong => return Ok(Some(Event::Pong(frame.payload))),
                OpCode::Close => {
                    let close = CloseFrame::parse(&frame.payload)?;
                    self.closed = true;
                    return Ok(Some(Event::Close(close)));
                }
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    if let Some(message) = self.assembler.push(frame)? {
                        return Ok(Some(Event::Message(message)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    const KEY: Option<[u8; 4]> = Some([1, 2, 3, 4]);

    #[test]
    fn invalid_utf8_fails_before_the_frame_completes() {
        let mut wire = BytesMut::new();
        let mut payload = b"valid start \xf0\x28\x8c\x28".to_vec();
        payload.extend_from_slice(&[b'x'; 1000]);
        Frame::new(OpCode::Text, payload).encode(KEY, &mut wire);
        let mut reader = Reader::new(CodecConfig::server());
        let mut buf = BytesMut::from(&wire[..30]); // header + the bad bytes, not the rest
        assert_eq!(reader.read(&mut buf), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn control_frames_interleave_with_fragments() {
        let mut wire = BytesMut::new();
        Frame::new(OpCode::Text, "Hel")
            .with_fin(false)
            .encode(KEY, &mut wire);
        Frame::ping("p").encode(KEY, &mut wire);
        Frame::new(OpCode::Continuation, "lo").encode(KEY, &mut wire);
        let mut reader = Reader::new(CodecConfig::server());
        assert_eq!(
            reader.read(&mut wire).unwrap(),
            Some(Event::Ping(Bytes::from("p")))
        );
        assert_eq!(
            reader.read(&mut wire).unwrap(),
            Some(Event::Message(Message::Text("Hello".into())))
        );
        assert!(reader.is_idle());
    }

    #[test]
    fn nothing_may_follow_a_close() {
        let mut wire = BytesMut::new();
        Frame::close(None).encode(KEY, &mut wire);
        Frame::text("late").encode(KEY, &mut wire);
        let mut reader = Reader::new(CodecConfig::server());
        assert_eq!(reader.read(&mut wire).unwrap(), Some(Event::Close(None)));
        assert_eq!(reader.read(&mut wire), Err(ProtocolError::FrameAfterClose));
    }
}
