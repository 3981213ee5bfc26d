//! Compression and decompression of one message payload (RFC 7692 §7.2).
//!
//! Both sides work on whole payloads: the frame layer (RSV1, fragments) is not
//! involved yet. Output is appended to a caller's `BytesMut`, so a writer can
//! compress straight behind a frame header it has reserved.

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::close::CloseCode;

/// The empty stored block a sync flush ends with; RFC 7692 §7.2.1 drops it
/// from every compressed message and §7.2.2 puts it back before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The most output space one deflate call gets, so that an inflation limit
/// is checked often and no call zeroes much more than it fills.
const CHUNK: usize = 16 * 1024;

/// Compresses message payloads for one direction of one connection.
#[derive(Debug)]
pub struct MessageCompressor {
    inner: Compress,
    no_context_takeover: bool,
}

impl MessageCompressor {
    /// A compressor at flate2's default level. With `no_context_takeover`
    /// every message starts from empty history, as `*_no_context_takeover`
    /// requires; otherwise each message may refer back to earlier ones.
    pub fn new(no_context_takeover: bool) -> Self {
        Self::with_level(Compression::default(), no_context_takeover)
    }

    /// A compressor at the given level (0 stores, 9 is smallest and slowest).
    pub fn with_level(level: Compression, no_context_takeover: bool) -> Self {
        MessageCompressor {
            // Raw deflate: RFC 7692 carries no zlib header or checksum.
            inner: Compress::new(level, false),
            no_context_takeover,
        }
    }

    /// Appends the compressed form of `payload` to `dst`, without the trailing
    /// `00 00 ff ff`.
    pub fn compress(&mut self, payload: &[u8], dst: &mut BytesMut) {
        if self.no_context_takeover {
            self.inner.reset();
        }
        let start = dst.len();
        let mut input = payload;
        loop {
            // Sized from the input so a chat-sized message does not zero a
            // whole chunk; a short guess only costs another round.
            let room = (input.len() / 2 + 64).min(CHUNK);
            let old = dst.len();
            dst.resize(old + room, 0);
            let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
            // A sync flush ends the message on a byte boundary with the empty
            // stored block that is stripped below. In-memory compression
            // reports no error for valid arguments, so none is expected here.
            let result = self
                .inner
                .compress(input, &mut dst[old..], FlushCompress::Sync);
            let consumed = (self.inner.total_in() - in_before) as usize;
            let written = (self.inner.total_out() - out_before) as usize;
            dst.truncate(old + written);
            input = &input[consumed..];
            // Space left over after all input means the flush is complete.
            if result.is_err() || (input.is_empty() && written < room) {
                break;
            }
        }
        if dst[start..].ends_with(&TAIL) {
            dst.truncate(dst.len() - TAIL.len());
        }
    }
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
    pub fn close_code(&self) -> CloseCode {
        match self {
            InflateError::TooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            InflateError::Corrupt => CloseCode::INVALID_PAYLOAD,
        }
    }
}

/// Decompresses message payloads for one direction of one connection.
#[derive(Debug)]
pub struct MessageDecompressor {
    inner: Decompress,
    no_context_takeover: bool,
}

impl MessageDecompressor {
    /// A decompressor. With `no_context_takeover` (the peer promised fresh
    /// history per message) each message is inflated from empty state;
    /// otherwise the last 32 KiB of earlier messages are kept for reference.
    pub fn new(no_context_takeover: bool) -> Self {
        MessageDecompressor {
            inner: Decompress::new(false),
            no_context_takeover,
        }
    }

    /// Appends the inflated form of a message's compressed `payload` to `dst`.
    ///
    /// At most `max_len + 1` bytes are ever added: inflation stops as soon as
    /// the message is known to be over `max_len`, so a small payload cannot
    /// make this allocate more than the limit. After an error the bytes added
    /// to `dst` are garbage and the connection must be failed.
    pub fn decompress(
        &mut self,
        payload: &[u8],
        max_len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), InflateError> {
        if self.no_context_takeover {
            self.inner.reset(false);
        }
        let start = dst.len();
        for part in [payload, &TAIL[..]] {
            let mut input = part;
            loop {
                let produced = dst.len() - start;
                // One byte past the limit is the proof that it was crossed.
                let room = (max_len - produced.min(max_len) + 1)
                    .min(input.len().saturating_mul(4) + 256)
                    .min(CHUNK);
                let old = dst.len();
                dst.resize(old + room, 0);
                let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
                let status = self
                    .inner
                    .decompress(input, &mut dst[old..], FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                let consumed = (self.inner.total_in() - in_before) as usize;
                let written = (self.inner.total_out() - out_before) as usize;
                dst.truncate(old + written);
                input = &input[consumed..];
                if dst.len() - start > max_len {
                    return Err(InflateError::TooLarge { max: max_len });
                }
                if status == Status::StreamEnd {
                    // A block with BFINAL set ends the deflate stream (allowed
                    // by RFC 7692 §7.2.3.4); whatever follows, the appended
                    // tail included, belongs to no stream, and the next message
                    // starts a new one.
                    self.inner.reset(false);
                    return Ok(());
                }
                if input.is_empty() && written < room {
                    break;
                }
                if consumed == 0 && written == 0 {
                    // No progress with input left: the data is cut or wrong.
                    return Err(InflateError::Corrupt);
                }
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
