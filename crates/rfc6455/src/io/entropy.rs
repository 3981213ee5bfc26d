//! Randomness from the operating system for the client role: the handshake
//! nonce (RFC 6455 §4.1) and the per-frame masking keys (§5.3).
//!
//! The sans-IO core takes both from its caller; this is the only place the
//! crate touches a random number generator.

use std::io;

/// Masking keys fetched from the OS per system call. A batch keeps the cost of
/// small frames low while every key still comes straight from the OS generator.
const KEYS_PER_BATCH: usize = 64;

/// 16 fresh random bytes for `Sec-WebSocket-Key`.
pub(crate) fn nonce() -> io::Result<[u8; 16]> {
    let mut nonce = [0; 16];
    getrandom::fill(&mut nonce).map_err(io::Error::other)?;
    Ok(nonce)
}

/// A source of masking keys for [`Writer::client`](crate::Writer::client).
///
/// The first batch is fetched here so that a broken generator fails the
/// connection attempt instead of a later send.
///
/// # Panics
/// The returned function panics if the OS generator fails on a later refill,
/// which no supported platform does once it has succeeded.
pub(crate) fn mask_keys() -> io::Result<impl FnMut() -> [u8; 4] + Send + 'static> {
    let mut pool = [0u8; 4 * KEYS_PER_BATCH];
    getrandom::fill(&mut pool).map_err(io::Error::other)?;
    let mut used = 0;
    Ok(move || {
        if used == pool.len() {
            // A predictable mask would let a script in the page steer the bytes on the
            // wire (§10.3); refusing to continue is the only safe answer.
            #[allow(clippy::expect_used)]
            getrandom::fill(&mut pool).expect("the OS random number generator failed");
            used = 0;
        }
        let key = [pool[used], pool[used + 1], pool[used + 2], pool[used + 3]];
        used += 4;
        key
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_across_batches() {
        let mut next = mask_keys().unwrap();
        let keys: Vec<[u8; 4]> = (0..3 * KEYS_PER_BATCH).map(|_| next()).collect();
        let mut distinct = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        // 192 draws from 2^32 values: a repeat is a one-in-a-million event, a stuck
        // pool (or a batch that was never refilled) repeats at once.
        assert!(distinct.len() >= keys.len() - 1, "{keys:?}");
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }
}
