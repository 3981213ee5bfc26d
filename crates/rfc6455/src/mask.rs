//! Payload masking (RFC 6455 §5.3).
//!
//! Masking XORs every payload byte with one of the four key bytes, cycling. It is
//! its own inverse, so the same function masks and unmasks. The fast path works on
//! 64-bit words without `unsafe`; LLVM turns the fixed-size inner loop into SIMD.

/// XORs `buf` in place with `key`, starting at key phase 0.
///
/// ```
/// // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
/// let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// rfc6455::apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(&payload, b"Hello");
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_offset(buf, key, 0);
}

/// XORs `buf` in place with `key`, as if `buf` started `offset` bytes into the payload.
///
/// This lets a payload that arrives in pieces be unmasked piece by piece.
///
/// ```
/// let key = [1, 2, 3, 4];
/// let mut whole = *b"abcdefghij";
/// rfc6455::apply_mask(&mut whole, key);
/// let mut pieces = *b"abcdefghij";
/// let (a, b) = pieces.split_at_mut(3);
/// rfc6455::apply_mask_offset(a, key, 0);
/// rfc6455::apply_mask_offset(b, key, 3);
/// assert_eq!(whole, pieces);
/// ```
#[inline]
pub fn apply_mask_offset(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let phase = offset & 3;
    let key = [
        key[phase],
        key[(phase + 1) & 3],
        key[(phase + 2) & 3],
        key[(phase + 3) & 3],
    ];
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    // 64-byte blocks: eight independent word XORs per iteration, which the
    // optimiser vectorises. Every block starts at a multiple of 4, so the key
    // phase stays 0 relative to `key`.
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        for lane in block.chunks_exact_mut(8) {
            let v = u64::from_ne_bytes(<[u8; 8]>::try_from(&*lane).expect("8-byte lane"));
            lane.copy_from_slice(&(v ^ word).to_ne_bytes());
        }
    }
    let rest = blocks.into_remainder();
    let mut lanes = rest.chunks_exact_mut(8);
    for lane in &mut lanes {
        let v = u64::from_ne_bytes(<[u8; 8]>::try_from(&*lane).expect("8-byte lane"));
        lane.copy_from_slice(&(v ^ word).to_ne_bytes());
    }
    for (i, byte) in lanes.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// The byte-at-a-time reference implementation, kept for tests and benchmarks.
///
/// ```
/// let mut a = *b"some payload";
/// let mut b = a;
/// rfc6455::mask::apply_mask_bytewise(&mut a, [9, 8, 7, 6]);
/// rfc6455::apply_mask(&mut b, [9, 8, 7, 6]);
/// assert_eq!(a, b);
/// ```
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_path_matches_bytewise_for_all_lengths_and_offsets() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..8 {
            for len in 0..(data.len() - start) {
                let mut fast = data[start..start + len].to_vec();
                let mut slow = fast.clone();
                apply_mask(&mut fast, key);
                apply_mask_bytewise(&mut slow, key);
                assert_eq!(fast, slow, "start {start} len {len}");
            }
        }
    }

    #[test]
    fn offset_continues_the_key_phase() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let data: Vec<u8> = (0..200u8).collect();
        for split in 0..data.len() {
            let mut whole = data.clone();
            apply_mask(&mut whole, key);
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask_offset(a, key, 0);
            apply_mask_offset(b, key, split);
            assert_eq!(whole, parts, "split {split}");
        }
    }
}
