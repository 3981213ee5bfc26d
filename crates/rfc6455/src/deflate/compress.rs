//! Compression and decompression of message payloads (RFC 7692 §7.2).
//!
//! Output is appended to a caller's `BytesMut`, so a writer can compress
//! straight behind a frame header it has reserved. A message is compressed in
//! one call; it may be inflated piece by piece as its frames arrive.

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::pool;
use crate::close::CloseCode;
use crate::header::{FrameHeader, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use crate::opcode::OpCode;
use crate::writer::WriteError;

/// The empty stored block a sync flush ends with; RFC 7692 §7.2.1 drops it
/// from every compressed message and §7.2.2 puts it back before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The most output space one deflate call gets, so that an inflation limit
/// is checked often and no call zeroes much more than it fills.
const CHUNK: usize = 16 * 1024;

/// The header's RSV1 bit in the 3-bit form frames use.
const RSV1: u8 = super::RSV1;

/// Compresses message payloads for one direction of one connection, or, made
/// with [`shared`](Self::shared), for any number of them.
#[derive(Debug)]
pub struct MessageCompressor {
    level: Compression,
    no_context_takeover: bool,
    /// `None` until the first message of a dedicated compressor (deflate state
    /// is large and a connection that negotiated the extension may never use
    /// it), and always for a shared one.
    state: Option<Compress>,
    shared: bool,
    /// Without context takeover: the last message ended with a completed full
    /// flush, so `state` holds no history and needs no reset.
    clean: bool,
}

impl MessageCompressor {
    /// A compressor at flate2's default level. With `no_context_takeover`
    /// every message starts from empty history, as `*_no_context_takeover`
    /// requires; otherwise each message may refer back to earlier ones.
    ///
    /// Its deflate state is created on the first message and kept until the
    /// compressor is dropped; see [`shared`](Self::shared) for one that keeps
    /// none.
    #[must_use]
    pub fn new(no_context_takeover: bool) -> Self {
        Self::with_level(Compression::default(), no_context_takeover)
    }

    /// A compressor at the given level (0 stores, 9 is smallest and slowest).
    #[must_use]
    pub fn with_level(level: Compression, no_context_takeover: bool) -> Self {
        MessageCompressor {
            level,
            no_context_takeover,
            state: None,
            shared: false,
            clean: false,
        }
    }

    /// A compressor without context takeover that holds no deflate state of
    /// its own: each message borrows the calling thread's compressor for the
    /// length of the call and gives it back. Idle, it is a few bytes, so a
    /// server can give one to every connection (and compress a broadcast once
    /// for every recipient that agreed to no context takeover).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use rfc6455::deflate::MessageCompressor;
    ///
    /// let mut out = BytesMut::new();
    /// MessageCompressor::shared().compress(b"Hello", &mut out);
    /// assert_eq!(&out[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    /// ```
    #[must_use]
    pub fn shared() -> Self {
        Self::shared_with_level(Compression::default())
    }

    /// [`shared`](Self::shared) at the given level.
    #[must_use]
    pub fn shared_with_level(level: Compression) -> Self {
        MessageCompressor {
            level,
            no_context_takeover: true,
            state: None,
            shared: true,
            clean: false,
        }
    }

    /// Whether each message starts from empty history.
    #[must_use]
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Whether this compressor currently owns deflate state (a dedicated one
    /// after its first message); a shared one never does between calls.
    #[must_use]
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }

    /// Appends the compressed form of `payload` to `dst`, without the trailing
    /// `00 00 ff ff`.
    pub fn compress(&mut self, payload: &[u8], dst: &mut BytesMut) {
        // Without context takeover each message ends with a full flush rather than a sync
        // flush: the same empty stored block on the wire, but the compressor also forgets
        // its history (deflate's full flush exists so that decompression can start over
        // there), so the next message needs no reset. A reset rewrites about 300 KiB of
        // miniz_oxide state, three quarters of the cost of compressing a chat message; the
        // full flush clears only the 128 KiB of hash chains.
        if self.shared {
            // A pooled compressor went back only after a completed full flush.
            let mut state = pool::take_compressor(self.level);
            if deflate_into(&mut state, payload, dst, FlushCompress::Full) {
                pool::give_compressor(self.level, state);
            }
            return;
        }
        let flush = if self.no_context_takeover {
            FlushCompress::Full
        } else {
            FlushCompress::Sync
        };
        let state = match &mut self.state {
            Some(state) => {
                if self.no_context_takeover && !self.clean {
                    state.reset();
                }
                state
            }
            // Raw deflate: RFC 7692 carries no zlib header or checksum.
            None => self.state.insert(Compress::new(self.level, false)),
        };
        self.clean = deflate_into(state, payload, dst, flush);
    }

    /// Appends one whole compressed message as a single frame: FIN and RSV1
    /// set, the payload compressed, masked with `mask` when given (a client's
    /// frame). A server compresses a broadcast this way once and sends the
    /// same bytes to every recipient that negotiated the extension without
    /// server context takeover.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use rfc6455::deflate::MessageCompressor;
    /// use rfc6455::OpCode;
    ///
    /// let mut out = BytesMut::new();
    /// MessageCompressor::shared().frame(OpCode::Text, b"Hello", None, &mut out).unwrap();
    /// // RFC 7692 §7.2.3.1, byte for byte.
    /// assert_eq!(&out[..], [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    /// ```
    ///
    /// # Errors
    /// [`WriteError::NotData`] unless `opcode` is text or binary: control
    /// frames are never compressed (RFC 7692 §6.1) and a compressed message is
    /// not continued by this call. Nothing is compressed then.
    pub fn frame(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        mask: Option<[u8; 4]>,
        dst: &mut BytesMut,
    ) -> Result<(), WriteError> {
        if !matches!(opcode, OpCode::Text | OpCode::Binary) {
            return Err(WriteError::NotData);
        }
        // The compressed length, and with it the header's, is known only
        // afterwards: compress behind room for the longest header, then move
        // the payload back. That costs a move of the compressed bytes instead
        // of a buffer per message or one kept for the connection's lifetime.
        let start = dst.len();
        dst.resize(start + MAX_HEADER_LEN, 0);
        self.compress(payload, dst);
        let packed_len = dst.len() - start - MAX_HEADER_LEN;
        let header = FrameHeader {
            fin: true,
            rsv: RSV1,
            opcode,
            mask,
            payload_len: packed_len as u64,
        };
        let body = start + header.encoded_len();
        dst.copy_within(start + MAX_HEADER_LEN.., body);
        dst.truncate(body + packed_len);
        header.encode(&mut &mut dst[start..body]);
        if let Some(key) = mask {
            apply_mask(&mut dst[body..], key);
        }
        Ok(())
    }
}

/// Compresses `payload`, ending with `flush` (sync or full), and appends it to `dst` without
/// the trailing empty stored block. Returns whether the flush completed, which leaves a
/// compressor after a full flush without history.
fn deflate_into(
    state: &mut Compress,
    payload: &[u8],
    dst: &mut BytesMut,
    flush: FlushCompress,
) -> bool {
    let start = dst.len();
    let mut input = payload;
    loop {
        // Sized from the input so a chat-sized message does not zero a
        // whole chunk; a short guess only costs another round.
        let room = (input.len() / 2 + 64).min(CHUNK);
        let old = dst.len();
        dst.resize(old + room, 0);
        let (in_before, out_before) = (state.total_in(), state.total_out());
        // A sync or full flush ends the message on a byte boundary with the
        // empty stored block that is stripped below. In-memory compression
        // reports no error for valid arguments, so none is expected here.
        let result = state.compress(input, &mut dst[old..], flush);
        let consumed = (state.total_in() - in_before) as usize;
        let written = (state.total_out() - out_before) as usize;
        dst.truncate(old + written);
        input = &input[consumed..];
        if result.is_err() {
            return false;
        }
        // Space left over after all input means the flush is complete.
        if input.is_empty() && written < room {
            break;
        }
    }
    if dst[start..].ends_with(&TAIL) {
        dst.truncate(dst.len() - TAIL.len());
    }
    true
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The inflated message would be larger than the limit; inflation stopped
    /// once it was crossed.
    #[error("inflated message exceeds the limit of {max} bytes")]
    TooLarge {
        /// The limit that was crossed.
        max: usize,
    },
    /// The payload is not valid deflate data.
    #[error("invalid compressed data")]
    Corrupt,
}

impl InflateError {
    /// The close code to fail the connection with: 1009 for a message over the
    /// limit, 1007 for data that does not inflate, since it is a payload that
    /// does not match the message type.
    #[must_use]
    pub fn close_code(&self) -> CloseCode {
        match self {
            InflateError::TooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            InflateError::Corrupt => CloseCode::INVALID_PAYLOAD,
        }
    }
}

/// Decompresses message payloads for one direction of one connection.
///
/// A message can be inflated whole with [`decompress`](Self::decompress), or
/// piece by piece as its frames arrive with [`decompress_part`](Self::decompress_part)
/// and [`finish`](Self::finish); the size limit then applies to the whole
/// message, and inflation stops as soon as it is crossed.
#[derive(Debug)]
pub struct MessageDecompressor {
    no_context_takeover: bool,
    /// Borrowed from the thread for each message rather than owned.
    shared: bool,
    /// `None` before the first message, and between messages when shared.
    state: Option<Decompress>,
    /// A message is in progress: [`decompress_part`](Self::decompress_part)
    /// was called since the last [`finish`](Self::finish) or error.
    in_message: bool,
    /// Inflated bytes of the message in progress.
    produced: usize,
    /// The message in progress reached a block with BFINAL set.
    ended: bool,
}

impl MessageDecompressor {
    /// A decompressor. With `no_context_takeover` (the peer promised fresh
    /// history per message) each message is inflated from empty state;
    /// otherwise the last 32 KiB of earlier messages are kept for reference.
    /// Its deflate state is created on the first message and kept.
    #[must_use]
    pub const fn new(no_context_takeover: bool) -> Self {
        MessageDecompressor {
            no_context_takeover,
            shared: false,
            state: None,
            in_message: false,
            produced: 0,
            ended: false,
        }
    }

    /// A decompressor for a peer that promised no context takeover, holding
    /// deflate state only while a message is in progress: it borrows the
    /// thread's at a message's first piece and gives it back after the last.
    #[must_use]
    pub const fn shared() -> Self {
        MessageDecompressor {
            no_context_takeover: true,
            shared: true,
            state: None,
            in_message: false,
            produced: 0,
            ended: false,
        }
    }

    /// Whether each message is inflated from empty history.
    #[must_use]
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Whether a message is in progress (its last piece not yet finished).
    #[must_use]
    pub fn in_message(&self) -> bool {
        self.in_message
    }

    /// Whether this decompressor currently owns deflate state: a dedicated one
    /// after its first message, a shared one only within a message.
    #[must_use]
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }

    /// Appends the inflated form of a message's whole compressed `payload` to
    /// `dst`: [`decompress_part`](Self::decompress_part) then
    /// [`finish`](Self::finish).
    ///
    /// At most `max_len + 1` bytes are ever added: inflation stops as soon as
    /// the message is known to be over `max_len`, so a small payload cannot
    /// make this allocate more than the limit. After an error the bytes added
    /// to `dst` are garbage and the connection must be failed.
    ///
    /// # Errors
    /// [`InflateError::TooLarge`] past `max_len`, [`InflateError::Corrupt`]
    /// for data that does not inflate.
    pub fn decompress(
        &mut self,
        payload: &[u8],
        max_len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), InflateError> {
        self.decompress_part(payload, max_len, dst)?;
        self.finish(max_len, dst)
    }

    /// Appends what the next piece of a message's compressed payload inflates
    /// to; the first call after [`finish`](Self::finish) starts a message.
    /// `max_len` bounds the whole message's inflated size: at most one byte
    /// past it is ever added in all.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use rfc6455::deflate::MessageDecompressor;
    ///
    /// // RFC 7692 §7.2.3.1: "Hello" in two fragments.
    /// let mut d = MessageDecompressor::shared();
    /// let mut out = BytesMut::new();
    /// d.decompress_part(&[0xf2, 0x48, 0xcd], 100, &mut out).unwrap();
    /// d.decompress_part(&[0xc9, 0xc9, 0x07, 0x00], 100, &mut out).unwrap();
    /// d.finish(100, &mut out).unwrap();
    /// assert_eq!(&out[..], b"Hello");
    /// ```
    ///
    /// # Errors
    /// As for [`decompress`](Self::decompress); the message is abandoned.
    pub fn decompress_part(
        &mut self,
        part: &[u8],
        max_len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), InflateError> {
        if !self.in_message {
            self.begin();
        }
        self.inflate(part, max_len, dst)
            .inspect_err(|_| self.abandon())
    }

    /// Ends the message in progress: inflates the `00 00 ff ff` RFC 7692
    /// §7.2.2 appends and, with no context takeover, forgets its history. A
    /// message with no piece at all is the empty message.
    ///
    /// # Errors
    /// As for [`decompress`](Self::decompress).
    pub fn finish(&mut self, max_len: usize, dst: &mut BytesMut) -> Result<(), InflateError> {
        if !self.in_message {
            self.begin();
        }
        self.inflate(&TAIL, max_len, dst)
            .inspect_err(|_| self.abandon())?;
        if self.ended {
            // A block with BFINAL set ends the deflate stream (allowed by RFC
            // 7692 §7.2.3.4): the next message starts a new one, from empty
            // history, as no decoder can continue past a stream's end.
            if let Some(state) = &mut self.state {
                state.reset(false);
            }
        }
        self.in_message = false;
        if self.shared {
            if let Some(state) = self.state.take() {
                pool::give_decompressor(state);
            }
        }
        Ok(())
    }

    fn begin(&mut self) {
        self.in_message = true;
        self.produced = 0;
        self.ended = false;
        match &mut self.state {
            Some(state) if self.no_context_takeover => state.reset(false),
            Some(_) => {}
            None if self.shared => self.state = Some(pool::take_decompressor()),
            None => self.state = Some(Decompress::new(false)),
        }
    }

    /// Forgets a message that failed; its state is not reused mid-stream.
    fn abandon(&mut self) {
        self.in_message = false;
        // A dedicated state is reset at the next message's start (without
        // context takeover; with it the connection is failed anyway); a
        // shared one is dropped rather than given back half-used.
        if self.shared {
            self.state = None;
        }
    }

    fn inflate(
        &mut self,
        mut input: &[u8],
        max_len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), InflateError> {
        let Some(state) = self.state.as_mut() else {
            // `begin` always leaves state in place.
            return Err(InflateError::Corrupt);
        };
        // Whatever follows a final block, the appended tail included, belongs
        // to no stream: RFC 7692 §7.2.3.4's example carries one such byte.
        while !self.ended {
            // One byte past the limit is the proof that it was crossed.
            let room = (max_len - self.produced.min(max_len) + 1)
                .min(input.len().saturating_mul(4) + 256)
                .min(CHUNK);
            let old = dst.len();
            dst.resize(old + room, 0);
            let (in_before, out_before) = (state.total_in(), state.total_out());
            let status = state.decompress(input, &mut dst[old..], FlushDecompress::Sync);
            let consumed = (state.total_in() - in_before) as usize;
            let written = (state.total_out() - out_before) as usize;
            dst.truncate(old + written);
            let status = status.map_err(|_| InflateError::Corrupt)?;
            input = &input[consumed..];
            self.produced += written;
            if self.produced > max_len {
                return Err(InflateError::TooLarge { max: max_len });
            }
            if status == Status::StreamEnd {
                self.ended = true;
            } else if input.is_empty() && written < room {
                break;
            } else if consumed == 0 && written == 0 {
                // No progress with input left: the data is cut or wrong.
                return Err(InflateError::Corrupt);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflate(c: &mut MessageCompressor, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        c.compress(payload, &mut out);
        out.to_vec()
    }

    fn inflate(
        d: &mut MessageDecompressor,
        payload: &[u8],
        max: usize,
    ) -> Result<Vec<u8>, InflateError> {
        let mut out = BytesMut::new();
        d.decompress(payload, max, &mut out).map(|()| out.to_vec())
    }

    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    #[test]
    fn rfc7692_hello_compresses_byte_for_byte() {
        // §7.2.3.1: the payload of the single compressed "Hello" frame.
        let mut c = MessageCompressor::new(true);
        assert_eq!(deflate(&mut c, b"Hello"), HELLO);
        assert_eq!(deflate(&mut c, b"Hello"), HELLO, "fresh state per message");
    }

    #[test]
    fn rfc7692_examples_inflate() {
        let mut d = MessageDecompressor::new(true);
        // §7.2.3.1, whole and as the two fragments' payloads joined.
        assert_eq!(inflate(&mut d, &HELLO, 100).unwrap(), b"Hello");
        let fragments = [&[0xf2, 0x48, 0xcd][..], &[0xc9, 0xc9, 0x07, 0x00][..]].concat();
        assert_eq!(inflate(&mut d, &fragments, 100).unwrap(), b"Hello");
        // §7.2.3.3: a stored (uncompressed) block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate(&mut d, &stored, 100).unwrap(), b"Hello");
        // §7.2.3.4: a block with BFINAL set.
        let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate(&mut d, &last, 100).unwrap(), b"Hello");
        // §7.2.3.5: two blocks in one message, flushed in between.
        let two = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(inflate(&mut d, &two, 100).unwrap(), b"Hello");
        // §7.2.3.6: an empty message is one empty block.
        assert_eq!(inflate(&mut d, &[0x00], 100).unwrap(), b"");
    }

    #[test]
    fn rfc7692_shared_window_second_message() {
        // §7.2.3.2: with context takeover the second "Hello" is a back-reference.
        let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
        let mut d = MessageDecompressor::new(false);
        assert_eq!(inflate(&mut d, &HELLO, 100).unwrap(), b"Hello");
        assert_eq!(inflate(&mut d, &second, 100).unwrap(), b"Hello");
        // Without the history the reference points before the stream start.
        // miniz_oxide reads such a reference as zeros instead of failing, so
        // the check is only that the old message is really forgotten.
        let mut fresh = MessageDecompressor::new(true);
        assert_eq!(inflate(&mut fresh, &HELLO, 100).unwrap(), b"Hello");
        assert_ne!(inflate(&mut fresh, &second, 100), Ok(b"Hello".to_vec()));

        let mut c = MessageCompressor::new(false);
        assert_eq!(deflate(&mut c, b"Hello"), HELLO);
        let again = deflate(&mut c, b"Hello");
        assert!(again.len() < HELLO.len(), "{again:02x?}");
        assert_eq!(inflate(&mut d, &HELLO, 100).unwrap(), b"Hello");
        assert_eq!(inflate(&mut d, &again, 100).unwrap(), b"Hello");
    }

    #[test]
    fn round_trips_both_modes() {
        let text = "{\"type\":\"message\",\"body\":\"hello there\"} ".repeat(2000);
        let samples: [&[u8]; 4] = [b"", b"a", text.as_bytes(), &[0xa5; 70_000]];
        for takeover in [false, true] {
            let mut c = MessageCompressor::new(!takeover);
            let mut d = MessageDecompressor::new(!takeover);
            for _ in 0..2 {
                for sample in samples {
                    let packed = deflate(&mut c, sample);
                    assert!(!packed.ends_with(&TAIL));
                    assert_eq!(inflate(&mut d, &packed, sample.len()).unwrap(), sample);
                }
            }
        }
    }

    #[test]
    fn inflation_stops_at_the_limit() {
        // 16 MiB of zeros packs into about 16 KiB.
        let bomb = deflate(&mut MessageCompressor::new(true), &vec![0; 16 << 20]);
        assert!(bomb.len() < 32 << 10);
        let mut d = MessageDecompressor::new(true);
        let mut out = BytesMut::new();
        assert_eq!(
            d.decompress(&bomb, 1000, &mut out),
            Err(InflateError::TooLarge { max: 1000 })
        );
        assert_eq!(out.len(), 1001);
        assert!(out.capacity() < 64 << 10, "{}", out.capacity());
        assert_eq!(
            inflate(&mut d, &HELLO, 4),
            Err(InflateError::TooLarge { max: 4 })
        );
        assert_eq!(inflate(&mut d, &HELLO, 5).unwrap(), b"Hello");
        assert_eq!(
            InflateError::TooLarge { max: 4 }.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut d = MessageDecompressor::new(true);
        // Block type 3 is reserved in deflate.
        assert_eq!(
            inflate(&mut d, &[0xff, 0xff], 100),
            Err(InflateError::Corrupt)
        );
        assert_eq!(
            InflateError::Corrupt.close_code(),
            CloseCode::INVALID_PAYLOAD
        );
        // The decompressor is usable again for the next message.
        assert_eq!(inflate(&mut d, &HELLO, 100).unwrap(), b"Hello");
    }

    proptest::proptest! {
        /// Without context takeover every message must inflate on its own, so a
        /// compressor that keeps its state across messages (ending each with a
        /// full flush, not a reset) must produce exactly what a brand-new one
        /// does, however much the messages repeat each other.
        #[test]
        fn without_context_takeover_each_message_stands_alone(
            messages in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(b"ab{}\":,0123 xyz".to_vec()), 0..3000),
                1..6,
            ),
        ) {
            let mut shared = MessageCompressor::shared();
            let mut owned = MessageCompressor::new(true);
            for message in &messages {
                for packed in [deflate(&mut shared, message), deflate(&mut owned, message)] {
                    let mut d = MessageDecompressor::new(true);
                    proptest::prop_assert_eq!(&inflate(&mut d, &packed, message.len()).unwrap(), message);
                }
            }
        }

        #[test]
        fn arbitrary_payloads_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut d = MessageDecompressor::new(true);
            let _ = inflate(&mut d, &data, 1 << 16);
        }

        #[test]
        fn arbitrary_messages_round_trip(data in proptest::collection::vec(0u8..4, 0..4096)) {
            let mut c = MessageCompressor::new(false);
            let mut d = MessageDecompressor::new(false);
            for _ in 0..2 {
                let packed = deflate(&mut c, &data);
                proptest::prop_assert_eq!(inflate(&mut d, &packed, data.len()).unwrap(), data.clone());
            }
        }
    }
}
