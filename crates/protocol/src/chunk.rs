//! The binary frames of a file upload: an 8-byte big-endian file id, an 8-byte big-endian
//! offset, then the data. A pure parser, so the fuzz target can call it directly.
//!
//! ```
//! use chatgroup_protocol::chunk::{encode_header, parse_chunk, ChunkHeader, HEADER_LEN};
//!
//! let mut frame = encode_header(ChunkHeader { file_id: 7, offset: 65_536 }).to_vec();
//! frame.extend_from_slice(b"data");
//! let (header, data) = parse_chunk(&frame)?;
//! assert_eq!((header.file_id, header.offset, data), (7, 65_536, &b"data"[..]));
//! assert_eq!(frame.len(), HEADER_LEN + 4);
//! # Ok::<(), chatgroup_protocol::chunk::ChunkError>(())
//! ```

use std::fmt;

/// Bytes before the data: the file id and the offset.
pub const HEADER_LEN: usize = 16;

/// Where a chunk's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The upload's `fileId` from `file_ready`.
    pub file_id: u64,
    /// The position of the data's first byte in the file.
    pub offset: u64,
}

/// Why a binary frame is not a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    /// Fewer than [`HEADER_LEN`] bytes.
    TooShort(usize),
    /// The offset plus the data length does not fit in 64 bits.
    PastEnd,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::TooShort(n) => write!(
                f,
                "a file chunk starts with a {HEADER_LEN}-byte header; got {n} bytes"
            ),
            ChunkError::PastEnd => f.write_str("chunk offset plus length overflows"),
        }
    }
}

impl std::error::Error for ChunkError {}

/// Splits a binary frame into its header and data (which may be empty).
///
/// # Errors
/// [`ChunkError`] when the frame is shorter than the header or its end would not fit in a
/// `u64` (no file can be that long, so no valid chunk is refused).
pub fn parse_chunk(frame: &[u8]) -> Result<(ChunkHeader, &[u8]), ChunkError> {
    let Some((header, data)) = frame.split_first_chunk::<HEADER_LEN>() else {
        return Err(ChunkError::TooShort(frame.len()));
    };
    let (id, offset) = header.split_at(8);
    let header = ChunkHeader {
        file_id: u64::from_be_bytes(id.try_into().unwrap_or_default()),
        offset: u64::from_be_bytes(offset.try_into().unwrap_or_default()),
    };
    let len = u64::try_from(data.len()).map_err(|_| ChunkError::PastEnd)?;
    header.offset.checked_add(len).ok_or(ChunkError::PastEnd)?;
    Ok((header, data))
}

/// The 16 header bytes of a chunk (the data follows them in the same frame).
#[must_use]
pub fn encode_header(header: ChunkHeader) -> [u8; HEADER_LEN] {
    let mut out = [0; HEADER_LEN];
    out[..8].copy_from_slice(&header.file_id.to_be_bytes());
    out[8..].copy_from_slice(&header.offset.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_frames_and_overflowing_offsets_are_refused() {
        assert_eq!(parse_chunk(&[0; 15]), Err(ChunkError::TooShort(15)));
        let mut frame = encode_header(ChunkHeader {
            file_id: 1,
            offset: u64::MAX,
        })
        .to_vec();
        assert!(
            parse_chunk(&frame).is_ok(),
            "an empty chunk at the end fits"
        );
        frame.push(0);
        assert_eq!(parse_chunk(&frame), Err(ChunkError::PastEnd));
    }

    #[test]
    fn header_is_big_endian() {
        let h = encode_header(ChunkHeader {
            file_id: 0x0102_0304_0506_0708,
            offset: 0x10,
        });
        assert_eq!(h[..8], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(h[8..], [0, 0, 0, 0, 0, 0, 0, 0x10]);
    }
}
