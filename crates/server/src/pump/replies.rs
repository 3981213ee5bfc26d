//! The read pump's replies to one batch of input (echoes, pongs), encoded back to back so
//! the whole batch leaves in one vectored write.
//!
//! Small payloads are copied next to their header into one reused buffer: copying a few
//! dozen bytes is cheaper than a shared `Bytes` and a queue entry per frame. Large payloads
//! are not copied: the header goes in the buffer and the payload `Bytes` (a slice of the
//! read buffer) becomes its own slice of the write. Frame boundaries are kept, so whatever
//! the socket does not take at once can be queued frame by frame.

use std::io::IoSlice;

use bytes::{Bytes, BytesMut};
use rfc6455::Frame;

/// Payloads up to this many bytes are copied next to their header.
const COPY_MAX: usize = 1024;

/// Frames per batch; the read pump sends a full batch before decoding more. Two slices per
/// frame at most, plus one, stay under [`crate::outbox::MAX_IOV`], so one slice array always
/// spells the whole batch.
const MAX_FRAMES: usize = 31;

/// First size of the encoding buffer: a full batch of small frames (31 frames of 32 bytes
/// take 1,054 bytes).
const FIRST_OUT: usize = 2048;

/// One encoded frame: the bytes of `out` up to `end` (from the previous frame's end), then
/// `payload` (empty when it was copied).
#[derive(Debug)]
struct Piece {
    end: usize,
    payload: Bytes,
}

/// A batch of encoded server frames. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    out: BytesMut,
    frames: Vec<Piece>,
}

impl Replies {
    /// Appends a frame, encoded unmasked.
    pub(crate) fn push_frame(&mut self, frame: &Frame) {
        if self.frames.capacity() == 0 {
            // Sized once per burst for a typical batch, so filling it does not reallocate.
            self.frames.reserve(MAX_FRAMES);
            self.out.reserve(FIRST_OUT);
        }
        frame.header(None).encode(&mut self.out);
        let payload = if frame.payload.len() <= COPY_MAX {
            self.out.extend_from_slice(&frame.payload);
            Bytes::new()
        } else {
            frame.payload.clone()
        };
        self.frames.push(Piece {
            end: self.out.len(),
            payload,
        });
    }

    /// Appends an already encoded small frame (copied).
    pub(crate) fn push_encoded(&mut self, frame: &[u8]) {
        if self.frames.capacity() == 0 {
            self.frames.reserve(MAX_FRAMES);
        }
        self.out.extend_from_slice(frame);
        self.frames.push(Piece {
            end: self.out.len(),
            payload: Bytes::new(),
        });
    }

    /// Whether the batch should be sent before more frames are added.
    pub(crate) fn is_full(&self) -> bool {
        self.frames.len() >= MAX_FRAMES
    }

    /// Whether the batch holds no frame.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames in the batch.
    pub(crate) fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Fills `iov` with the batch in order, merging neighbouring bytes of the buffer into one
    /// slice. Returns the number of slices used; if `iov` is too short, a prefix is given.
    pub(crate) fn io_slices<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut run_start = 0;
        for piece in &self.frames {
            if piece.payload.is_empty() {
                continue;
            }
            if n + 2 > iov.len() {
                return n;
            }
            iov[n] = IoSlice::new(&self.out[run_start..piece.end]);
            iov[n + 1] = IoSlice::new(&piece.payload);
            n += 2;
            run_start = piece.end;
        }
        if run_start < self.out.len() && n < iov.len() {
            iov[n] = IoSlice::new(&self.out[run_start..]);
            n += 1;
        }
        n
    }

    /// What is left after the first `written` bytes of the batch went out: calls `f` with the
    /// unwritten rest of every frame not written in full, in order. Only on the slow path
    /// (the socket did not take everything): the buffer's unwritten bytes are copied once,
    /// into one allocation the queued frames share (so the buffer is kept for the next
    /// batch); large payloads are shared, not copied.
    pub(crate) fn unwritten(&self, written: usize, mut f: impl FnMut(Bytes)) {
        // The buffer's unwritten bytes, from buffer offset `tail.0` on; copied at the first
        // frame that needs them.
        let mut tail: Option<(usize, Bytes)> = None;
        let mut pos = 0;
        let mut start = 0;
        for piece in &self.frames {
            let head = piece.end - start;
            let len = head + piece.payload.len();
            if pos + len > written {
                let skip = written.saturating_sub(pos);
                let (from, copied) = tail.get_or_insert_with(|| {
                    let from = start + skip.min(head);
                    (from, Bytes::copy_from_slice(&self.out[from..]))
                });
                let rest = if piece.payload.is_empty() {
                    copied.slice(start + skip - *from..piece.end - *from)
                } else if skip >= head {
                    piece.payload.slice(skip - head..)
                } else {
                    // The header is not (fully) out: join it to the payload, so the queue
                    // holds one entry per frame.
                    let mut joined = BytesMut::with_capacity(len - skip);
                    joined.extend_from_slice(&self.out[start + skip..piece.end]);
                    joined.extend_from_slice(&piece.payload);
                    joined.freeze()
                };
                f(rest);
            }
            pos += len;
            start = piece.end;
        }
    }

    /// Forgets the batch, keeping the buffers for the next one.
    pub(crate) fn clear(&mut self) {
        self.out.clear();
        self.frames.clear();
    }

    /// Gives the buffers back (the connection is going idle).
    pub(crate) fn release(&mut self) {
        if self.out.capacity() > 0 || self.frames.capacity() > 0 {
            *self = Self::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(r: &Replies) -> Vec<u8> {
        let mut iov = [IoSlice::new(&[]); 64];
        let n = r.io_slices(&mut iov);
        iov[..n].iter().flat_map(|s| s.to_vec()).collect()
    }

    fn sample() -> (Replies, Vec<Vec<u8>>) {
        let frames = [
            Frame::text("hello"),
            Frame::binary(vec![7u8; 5000]),
            Frame::pong(Bytes::from_static(b"p")),
            Frame::binary(vec![9u8; 2000]),
        ];
        let mut r = Replies::default();
        for f in &frames {
            r.push_frame(f);
        }
        r.push_encoded(&Frame::text("pong").to_bytes());
        let mut wire: Vec<Vec<u8>> = frames.iter().map(|f| f.to_bytes().to_vec()).collect();
        wire.push(Frame::text("pong").to_bytes().to_vec());
        (r, wire)
    }

    #[test]
    fn slices_spell_the_frames_in_order_without_copying_large_payloads() {
        let (r, wire) = sample();
        assert_eq!(joined(&r), wire.concat());
        assert_eq!(r.frames(), 5);
        let mut iov = [IoSlice::new(&[]); 64];
        assert_eq!(
            r.io_slices(&mut iov),
            5,
            "runs merged, two large payloads apart"
        );
        assert_eq!(r.io_slices(&mut iov[..3]), 2, "a short array gets a prefix");
    }

    #[test]
    fn unwritten_rest_is_split_at_frame_boundaries() {
        let all = sample().1.concat();
        for written in [0, 3, 7, 9, 5009, 5011, 5012, 7017, all.len() - 1] {
            let (r, wire) = sample();
            let mut rest = Vec::new();
            r.unwritten(written, |b| rest.push(b));
            let complete = wire.iter().scan(0, |end, f| {
                *end += f.len();
                Some(*end)
            });
            let complete = complete.filter(|end| *end <= written).count();
            assert_eq!(complete + rest.len(), wire.len(), "written={written}");
            let tail: Vec<u8> = rest.iter().flat_map(|b| b.to_vec()).collect();
            assert_eq!(tail, all[written..], "written={written}");
        }
    }
}
