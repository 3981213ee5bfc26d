//! Helpers shared by the conformance groups, named after what a peer does or
//! what a test expects rather than after codec internals.

use bytes::{Bytes, BytesMut};
use rfc6455::{
    CloseCode, CodecConfig, Event, Frame, Message, ProtocolError, Reader, Role, Utf8Bytes,
};

/// Both roles, for tests that must hold on either end of a connection.
pub(crate) const ROLES: [Role; 2] = [Role::Server, Role::Client];

/// The masking key of the `n`-th frame a test client sends; it changes per
/// frame as RFC 6455 §5.3 asks, so phase bugs show up.
pub(crate) fn client_key(n: usize) -> [u8; 4] {
    let n = n as u32;
    (0x9E37_79B9_u32.wrapping_mul(n + 1) ^ 0x5A5A_A5A5).to_be_bytes()
}

/// The bytes a client puts on the wire for `frames`: each one masked.
pub(crate) fn client_frames(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for (n, frame) in frames.iter().enumerate() {
        frame.encode(Some(client_key(n)), &mut out);
    }
    out.to_vec()
}

/// The bytes a server puts on the wire for `frames`: unmasked.
pub(crate) fn server_frames(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(None, &mut out);
    }
    out.to_vec()
}

/// The bytes the peer of an endpoint in `receiver` role sends for `frames`.
pub(crate) fn frames_sent_to(receiver: Role, frames: &[Frame]) -> Vec<u8> {
    match receiver {
        Role::Server => client_frames(frames),
        Role::Client => server_frames(frames),
    }
}

/// A frame built byte by byte, for what [`Frame`] cannot express (reserved
/// opcodes, fragmented or oversized control frames): `first_byte` holds FIN,
/// RSV and the opcode; the length is encoded minimally.
pub(crate) fn raw_frame(first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = raw_header(first_byte, payload.len() as u64, mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        for (i, b) in out[start..].iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    out
}

/// Only the header of a frame announcing `len` payload bytes.
pub(crate) fn raw_header(first_byte: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![first_byte];
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out
}

/// The masking key a peer of `receiver` uses: a client masks, a server does not.
pub(crate) fn peer_mask(receiver: Role) -> Option<[u8; 4]> {
    match receiver {
        Role::Server => Some(client_key(7)),
        Role::Client => None,
    }
}

/// A codec configuration for `role` with room for multi-megabyte messages.
pub(crate) fn roomy(role: Role) -> CodecConfig {
    let cfg = match role {
        Role::Server => CodecConfig::server(),
        Role::Client => CodecConfig::client(),
    };
    cfg.with_max_frame_len(16 << 20)
        .with_max_message_len(16 << 20)
}

/// The default configuration for `role`.
pub(crate) fn default_config(role: Role) -> CodecConfig {
    match role {
        Role::Server => CodecConfig::server(),
        Role::Client => CodecConfig::client(),
    }
}

/// Text of exactly `len` bytes mixing 1-, 2-, 3- and 4-byte characters, so
/// that chunk and fragment boundaries fall inside code points.
pub(crate) fn text_of_len(len: usize) -> String {
    const PIECES: [&str; 5] = ["a", "é", "€", "𝄞", "Z"];
    let mut s = String::with_capacity(len);
    let mut i = 0;
    loop {
        let piece = PIECES[i % PIECES.len()];
        if s.len() + piece.len() > len {
            break;
        }
        s.push_str(piece);
        i += 1;
    }
    while s.len() < len {
        s.push('.');
    }
    s
}

/// Binary data of `len` bytes that is not valid UTF-8 and has no period of 4,
/// so masking mistakes cannot cancel out.
pub(crate) fn binary_of_len(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 % 251) as u8 ^ 0x80).collect()
}

/// A text or binary message of exactly `len` bytes.
pub(crate) fn message_of_len(text: bool, len: usize) -> Message {
    if text {
        Message::Text(Utf8Bytes::from(text_of_len(len)))
    } else {
        Message::Binary(Bytes::from(binary_of_len(len)))
    }
}

/// What a reader made of some bytes: the events it produced and the error
/// that stopped it, if any.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) events: Vec<Event>,
    pub(crate) error: Option<ProtocolError>,
    /// Bytes fed before the error was raised (all of them when there was none).
    pub(crate) fed: usize,
}

impl Received {
    /// The events, asserting the bytes were accepted.
    #[track_caller]
    pub(crate) fn expect_ok(&self) -> &[Event] {
        if let Some(e) = &self.error {
            panic!("expected no error, got {e:?} after {:?}", self.events);
        }
        &self.events
    }

    /// The error, asserting it closes the connection with `code`.
    #[track_caller]
    pub(crate) fn expect_error(&self, code: CloseCode) -> &ProtocolError {
        let Some(e) = &self.error else {
            panic!("expected close {code}, got events {:?}", self.events);
        };
        assert_eq!(e.close_code(), code, "{e:?}");
        e
    }
}

/// Feeds `wire` to a fresh reader with `cfg` in chunks of `chunk` bytes, reading
/// every event after each chunk, the way a transport delivers reads.
pub(crate) fn read_in_chunks(cfg: CodecConfig, wire: &[u8], chunk: usize) -> Received {
    let mut reader = Reader::new(cfg);
    read_with(&mut reader, wire, chunk)
}

/// Feeds `wire` in one piece to a fresh reader with `cfg`.
pub(crate) fn read_whole(cfg: CodecConfig, wire: &[u8]) -> Received {
    read_in_chunks(cfg, wire, wire.len().max(1))
}

/// What a server makes of the bytes a client sent.
pub(crate) fn server_reads(wire: &[u8]) -> Received {
    read_whole(CodecConfig::server(), wire)
}

/// Feeds `wire` to `reader` in chunks of `chunk` bytes.
pub(crate) fn read_with(reader: &mut Reader, wire: &[u8], chunk: usize) -> Received {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut fed = 0;
    for piece in wire.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match reader.read(&mut buf) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(e) => {
                    return Received {
                        events,
                        error: Some(e),
                        fed,
                    }
                }
            }
        }
    }
    Received {
        events,
        error: None,
        fed,
    }
}

/// Asserts that `result` failed with an error that closes with `code`.
#[track_caller]
pub(crate) fn expect_error<T: std::fmt::Debug>(
    result: Result<T, ProtocolError>,
    code: CloseCode,
) -> ProtocolError {
    match result {
        Ok(v) => panic!("expected close {code}, got {v:?}"),
        Err(e) => {
            assert_eq!(e.close_code(), code, "{e:?}");
            e
        }
    }
}

/// The index of the byte whose arrival proves `bytes` cannot be (the start
/// of) valid UTF-8, or `None` if every prefix could still become valid (the
/// text is valid, or only cut off in the middle of its last code point).
pub(crate) fn first_bad_byte(bytes: &[u8]) -> Option<usize> {
    let err = std::str::from_utf8(bytes).err()?;
    err.error_len()?;
    let start = err.valid_up_to();
    (start + 1..=bytes.len())
        .find(|&end| {
            std::str::from_utf8(&bytes[start..end]).is_err_and(|e| e.error_len().is_some())
        })
        .map(|end| end - 1)
}
