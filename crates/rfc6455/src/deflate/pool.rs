//! Deflate state kept per thread instead of per connection.
//!
//! Without context takeover a compressor or decompressor carries nothing from
//! one message to the next, so it need not belong to a connection at all: it is
//! borrowed from the calling thread for one message and given back. An idle
//! connection then holds no deflate state, only a flag.
//!
//! Each thread keeps at most [`KEEP`] of each kind. The common case needs one:
//! a compression is a single call, and so is the inflation of a message that
//! arrives within one read. Connections in the middle of a fragmented message
//! hold theirs until its last frame; when more of them than that are active on a
//! thread at once, the extra state is created and dropped again, so the pool can
//! never grow past [`KEEP`] however a peer behaves.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress};

/// The most compressors (per level) and decompressors a thread keeps idle.
const KEEP: usize = 2;

thread_local! {
    // Const-initialised: the first use allocates nothing until a state is
    // given back.
    static COMPRESSORS: RefCell<Vec<(u32, Compress)>> = const { RefCell::new(Vec::new()) };
    static DECOMPRESSORS: RefCell<Vec<Decompress>> = const { RefCell::new(Vec::new()) };
}

/// A raw-deflate compressor at `level` with empty history: the thread's idle
/// one if it has one, else a new one. The pool holds only compressors whose
/// last message ended with a completed full flush (see `MessageCompressor::compress`),
/// which leaves no history, so they are handed out without a reset.
pub(super) fn take_compressor(level: Compression) -> Compress {
    // `try_with` fails only while the thread is being torn down; a new state
    // is correct then too.
    let pooled = COMPRESSORS
        .try_with(|pool| {
            let mut pool = pool.borrow_mut();
            let at = pool.iter().position(|(l, _)| *l == level.level())?;
            Some(pool.swap_remove(at).1)
        })
        .ok()
        .flatten();
    // Raw deflate: RFC 7692 carries no zlib header or checksum.
    pooled.unwrap_or_else(|| Compress::new(level, false))
}

/// Gives a compressor taken with [`take_compressor`] back to this thread; it
/// must hold no history (its last message ended with a full flush).
pub(super) fn give_compressor(level: Compression, c: Compress) {
    let _ = COMPRESSORS.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.iter().filter(|(l, _)| *l == level.level()).count() < KEEP {
            pool.push((level.level(), c));
        }
    });
}

/// A raw-deflate decompressor with empty history, from this thread's pool if it
/// has one.
pub(super) fn take_decompressor() -> Decompress {
    let pooled = DECOMPRESSORS
        .try_with(|pool| pool.borrow_mut().pop())
        .ok()
        .flatten();
    match pooled {
        Some(mut d) => {
            d.reset(false);
            d
        }
        None => Decompress::new(false),
    }
}

/// Gives a decompressor back to this thread's pool (whichever thread took it).
pub(super) fn give_decompressor(d: Decompress) {
    let _ = DECOMPRESSORS.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEEP {
            pool.push(d);
        }
    });
}

/// How many compressors and decompressors this thread holds idle (for tests).
#[cfg(test)]
pub(super) fn idle() -> (usize, usize) {
    (
        COMPRESSORS.with(|p| p.borrow().len()),
        DECOMPRESSORS.with(|p| p.borrow().len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_keeps_at_most_a_few_per_thread() {
        let level = Compression::fast();
        let taken: Vec<_> = (0..5).map(|_| take_compressor(level)).collect();
        for c in taken {
            give_compressor(level, c);
        }
        let taken: Vec<_> = (0..5).map(|_| take_decompressor()).collect();
        for d in taken {
            give_decompressor(d);
        }
        // Each test runs on a thread of its own, so the pools start empty.
        assert_eq!(idle(), (KEEP, KEEP));
        // Taking and giving back in turn reuses one state.
        let before = idle();
        give_decompressor(take_decompressor());
        assert_eq!(idle(), before);
    }
}
