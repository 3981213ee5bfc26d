//! UTF-8 for text messages: a validated byte buffer and an incremental validator.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// Bytes known to be valid UTF-8; derefs to `&str` without copying.
///
/// Validity is checked once at construction. Reading the text re-validates with a
/// SIMD validator (GB/s, far below the cost of the I/O that produced it), which
/// keeps this crate free of `unsafe`.
///
/// ```
/// use rfc6455::Utf8Bytes;
/// let t = Utf8Bytes::try_from(bytes::Bytes::from_static("héllo".as_bytes())).unwrap();
/// assert_eq!(t.as_str(), "héllo");
/// assert!(Utf8Bytes::try_from(bytes::Bytes::from_static(b"\xff")).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps a static string.
    #[must_use]
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes the caller has just validated (the assembler validates text
    /// fragment by fragment and must not pay for a second pass).
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        simdutf8::basic::from_utf8(&self.0).expect("validated at construction")
    }

    /// The underlying bytes, sharing the same allocation.
    #[must_use]
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the bytes.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The bytes were not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid utf-8")]
pub struct InvalidUtf8;

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = InvalidUtf8;

    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        simdutf8::basic::from_utf8(&bytes).map_err(|_| InvalidUtf8)?;
        Ok(Self(bytes))
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&'static str> for Utf8Bytes {
    fn from(s: &'static str) -> Self {
        Self::from_static(s)
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(t: Utf8Bytes) -> Self {
        t.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validates UTF-8 that arrives in pieces, failing at the first piece that holds
/// an invalid byte.
///
/// A code point split across pieces is valid. A prefix that can never become
/// valid (an overlong lead, a surrogate, a value past U+10FFFF) fails as soon as
/// the byte that proves it arrives, not when the text ends.
///
/// ```
/// use rfc6455::Utf8Validator;
/// let euro = "€".as_bytes(); // e2 82 ac
/// let mut v = Utf8Validator::new();
/// v.feed(&euro[..1]).unwrap();
/// v.feed(&euro[1..2]).unwrap();
/// v.feed(&euro[2..]).unwrap();
/// v.finish().unwrap();
///
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(b"ok \xed\xa0").is_err()); // a surrogate: fails before the text ends
/// ```
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// The start of a code point cut off at the end of the previous piece.
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a text.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            pending: [0; 4],
            pending_len: 0,
        }
    }

    /// Validates the next piece.
    ///
    /// # Errors
    /// [`InvalidUtf8`] as soon as the bytes seen so far cannot start a valid text.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            // Complete the cut-off code point one byte at a time; at most 3 bytes.
            while self.pending_len > 0 {
                let Some((&b, rest)) = piece.split_first() else {
                    return Ok(());
                };
                self.pending[usize::from(self.pending_len)] = b;
                self.pending_len += 1;
                piece = rest;
                match std::str::from_utf8(&self.pending[..usize::from(self.pending_len)]) {
                    Ok(_) => self.pending_len = 0,
                    Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                    Err(_) => {}
                }
            }
        }
        match simdutf8::compat::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = &piece[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                #[allow(clippy::cast_possible_truncation)] // an incomplete code point is < 4 bytes
                {
                    self.pending_len = tail.len() as u8;
                }
                Ok(())
            }
        }
    }

    /// Ends the text; fails if it stops inside a code point. Resets the validator.
    ///
    /// # Errors
    /// [`InvalidUtf8`] if a code point was left incomplete.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.pending_len > 0;
        self.reset();
        if incomplete {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }

    /// Forgets any partial code point.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_in_pieces(bytes: &[u8], cuts: &[usize]) -> bool {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            if v.feed(&bytes[start..cut]).is_err() {
                return false;
            }
            start = cut;
        }
        v.finish().is_ok()
    }

    #[test]
    fn agrees_with_std_at_every_split() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "a€𝄞b".as_bytes(),
            b"\xf4\x8f\xbf\xbf",
            b"\xf4\x90\x80\x80",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf0\x9f\x98",
            b"",
            b"\x80",
        ];
        for s in samples {
            let expected = std::str::from_utf8(s).is_ok();
            assert_eq!(valid_in_pieces(s, &[]), expected, "{s:?}");
            for a in 0..=s.len() {
                for b in a..=s.len() {
                    assert_eq!(valid_in_pieces(s, &[a, b]), expected, "{s:?} at {a},{b}");
                }
            }
        }
    }

    #[test]
    fn fails_at_the_piece_with_the_first_bad_byte() {
        let mut v = Utf8Validator::new();
        v.feed(b"hello \xf4").unwrap();
        assert!(v.feed(b"\x90").is_err()); // past U+10FFFF, known at the second byte
        let mut v = Utf8Validator::new();
        v.feed(b"\xe0").unwrap();
        assert!(v.feed(b"\x80").is_err()); // overlong
    }
}
