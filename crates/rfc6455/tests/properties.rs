//! Property tests of the codec: frames survive encode → decode in both roles,
//! the way a byte stream is cut into reads never changes what is decoded, and
//! the message assembler accepts every fragmentation of valid text and fails
//! every fragmentation of invalid text exactly at the fragment holding the
//! first invalid byte.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rfc6455::{
    CodecConfig, Decoder, Event, Frame, Message, MessageAssembler, OpCode, ProtocolError, Reader,
    Role,
};

/// Which end decodes; the other end encodes (and masks if it is the client).
fn arb_receiver() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Server), Just(Role::Client)]
}

fn arb_opcode() -> impl Strategy<Value = OpCode> {
    prop_oneof![
        Just(OpCode::Continuation),
        Just(OpCode::Text),
        Just(OpCode::Binary),
        Just(OpCode::Close),
        Just(OpCode::Ping),
        Just(OpCode::Pong),
    ]
}

/// Pseudo-random bytes from a seed: cheap for the 64 KiB payloads that cross
/// into the 64-bit length encoding, where a byte-by-byte strategy is slow.
fn bytes_from_seed(len: usize, seed: u64) -> Bytes {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Any frame a peer may legally send at the framing level: control frames are
/// final and carry at most 125 bytes; RSV bits are arbitrary (the decoders
/// under test allow them, as if an extension had been negotiated).
fn arb_frame() -> impl Strategy<Value = Frame> {
    let len = prop_oneof![
        6 => 0usize..=125,
        3 => 126usize..=700,
        1 => 65_530usize..=65_600,
    ];
    (arb_opcode(), any::<bool>(), 0u8..8, len, any::<u64>()).prop_map(
        |(opcode, fin, rsv, len, seed)| {
            let (fin, len) = if opcode.is_control() {
                (true, len % 126)
            } else {
                (fin, len)
            };
            Frame {
                fin,
                rsv,
                opcode,
                payload: bytes_from_seed(len, seed),
            }
        },
    )
}

fn config_for(receiver: Role) -> CodecConfig {
    match receiver {
        Role::Server => CodecConfig::server(),
        Role::Client => CodecConfig::client(),
    }
    .with_allowed_rsv(0b111)
}

/// Encodes `frames` as the peer of `receiver` sends them.
fn encode_for(receiver: Role, frames: &[Frame], key_seed: u32) -> Vec<u8> {
    let mut out = BytesMut::new();
    for (i, frame) in frames.iter().enumerate() {
        let mask = (receiver == Role::Server).then(|| {
            key_seed
                .wrapping_add(i as u32)
                .wrapping_mul(0x9E37_79B9)
                .to_be_bytes()
        });
        frame.encode(mask, &mut out);
    }
    out.to_vec()
}

/// Decodes `wire` delivered in pieces ending at `cuts`, checking on the way
/// that `needed()` never asks for more than the stream still holds.
fn decode_in_pieces(
    receiver: Role,
    wire: &[u8],
    cuts: &[usize],
) -> Result<Vec<Frame>, TestCaseError> {
    let mut decoder = Decoder::new(config_for(receiver));
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&wire.len())) {
        buf.extend_from_slice(&wire[start..end]);
        start = end;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => {
                    let remaining = wire.len() - end;
                    prop_assert!(decoder.needed() >= 1);
                    if remaining > 0 || !buf.is_empty() {
                        prop_assert!(
                            decoder.needed() <= remaining,
                            "needed {} but only {remaining} bytes follow",
                            decoder.needed()
                        );
                    }
                    break;
                }
                Err(e) => return Err(TestCaseError::fail(format!("decode error {e:?}"))),
            }
        }
    }
    prop_assert!(buf.is_empty());
    Ok(frames)
}

/// Sorted cut positions inside `0..=len` from arbitrary numbers.
fn cuts_within(raw: &[usize], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.iter().map(|c| c % (len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// `bytes` cut at `cuts` into consecutive pieces (empty pieces included).
fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&bytes.len())) {
        out.push(&bytes[start..end]);
        start = end;
    }
    out
}

/// `pieces` as the frames of one message with the given first opcode.
fn fragments(opcode: OpCode, pieces: &[&[u8]]) -> Vec<Frame> {
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let op = if i == 0 { opcode } else { OpCode::Continuation };
            Frame::new(op, Bytes::copy_from_slice(piece)).with_fin(i == last)
        })
        .collect()
}

/// The index of the byte whose arrival proves `bytes` cannot be the start of
/// valid UTF-8; `None` if it is valid or only cut off inside its last code point.
fn first_bad_byte(bytes: &[u8]) -> Option<usize> {
    let err = std::str::from_utf8(bytes).err()?;
    err.error_len()?;
    let start = err.valid_up_to();
    (start + 1..=bytes.len())
        .find(|&end| {
            std::str::from_utf8(&bytes[start..end]).is_err_and(|e| e.error_len().is_some())
        })
        .map(|end| end - 1)
}

/// Short byte sequences that are not valid UTF-8 on their own: overlongs,
/// surrogates, values past U+10FFFF, 5/6-byte forms, stray continuations,
/// cut-off sequences, and random bytes.
fn arb_invalid_core() -> impl Strategy<Value = Vec<u8>> {
    let classic: Vec<&'static [u8]> = vec![
        b"\x80",
        b"\xbf\x80",
        b"\xc0\xaf",
        b"\xc1\xbf",
        b"\xe0\x80\xaf",
        b"\xe0\x9f\xbf",
        b"\xf0\x8f\xbf\xbf",
        b"\xed\xa0\x80",
        b"\xed\xbf\xbf",
        b"\xf4\x90\x80\x80",
        b"\xf5\x80\x80\x80",
        b"\xf8\x88\x80\x80\x80",
        b"\xfc\x84\x80\x80\x80\x80",
        b"\xfe",
        b"\xff",
        b"\xc2",
        b"\xe2\x82",
        b"\xf0\x9f\x98",
        b"\xc2 ",
        b"\xe2\x82(",
    ];
    prop_oneof![
        3 => proptest::sample::select(classic).prop_map(<[u8]>::to_vec),
        1 => proptest::collection::vec(any::<u8>(), 1..6),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_frame_roundtrips_in_both_roles(
        receiver in arb_receiver(),
        frame in arb_frame(),
        key_seed in any::<u32>(),
    ) {
        let wire = encode_for(receiver, std::slice::from_ref(&frame), key_seed);
        prop_assert_eq!(wire.len(), frame.encoded_len(receiver == Role::Server));
        let mut decoder = Decoder::new(config_for(receiver));
        // One byte short is never a frame.
        let mut short = BytesMut::from(&wire[..wire.len() - 1]);
        prop_assert_eq!(decoder.decode(&mut short), Ok(None));
        let mut decoder = Decoder::new(config_for(receiver));
        let mut buf = BytesMut::from(&wire[..]);
        prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(frame)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn any_split_of_a_stream_decodes_to_the_same_frames(
        receiver in arb_receiver(),
        frames in proptest::collection::vec(arb_frame(), 1..6),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..24),
        key_seed in any::<u32>(),
    ) {
        let wire = encode_for(receiver, &frames, key_seed);
        let whole = decode_in_pieces(receiver, &wire, &[])?;
        prop_assert_eq!(&whole, &frames);
        let cuts = cuts_within(&raw_cuts, wire.len());
        let split = decode_in_pieces(receiver, &wire, &cuts)?;
        prop_assert_eq!(split, frames);
    }

    #[test]
    fn the_assembler_accepts_any_fragmentation_of_valid_text(
        text in any::<String>(),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let cuts = cuts_within(&raw_cuts, text.len());
        let frames = fragments(OpCode::Text, &pieces(text.as_bytes(), &cuts));
        let mut assembler = MessageAssembler::new(1 << 20);
        let last = frames.len() - 1;
        for (i, frame) in frames.into_iter().enumerate() {
            let got = assembler.push(frame);
            if i < last {
                prop_assert_eq!(got, Ok(None), "fragment {}", i);
            } else {
                prop_assert_eq!(got, Ok(Some(Message::Text(text.clone().into()))));
            }
        }
    }

    #[test]
    fn the_assembler_accepts_any_fragmentation_of_binary(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let cuts = cuts_within(&raw_cuts, data.len());
        let frames = fragments(OpCode::Binary, &pieces(&data, &cuts));
        let mut assembler = MessageAssembler::new(1 << 20);
        let mut result = None;
        for frame in frames {
            result = assembler.push(frame).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        }
        prop_assert_eq!(result, Some(Message::Binary(data.into())));
    }

    #[test]
    fn any_fragmentation_of_invalid_text_fails_at_the_first_invalid_byte(
        prefix in any::<String>(),
        core in arb_invalid_core(),
        suffix in any::<String>(),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut bytes = prefix.into_bytes();
        bytes.extend_from_slice(&core);
        bytes.extend_from_slice(suffix.as_bytes());
        prop_assume!(std::str::from_utf8(&bytes).is_err());
        let cuts = cuts_within(&raw_cuts, bytes.len());
        let parts = pieces(&bytes, &cuts);
        // The fragment holding the first provably invalid byte, or the final
        // fragment when the text is only cut off inside its last code point.
        let expected = match first_bad_byte(&bytes) {
            Some(at) => cuts.iter().take_while(|&&end| end <= at).count(),
            None => parts.len() - 1,
        };
        let mut assembler = MessageAssembler::new(1 << 20);
        let mut failed_at = None;
        for (i, frame) in fragments(OpCode::Text, &parts).into_iter().enumerate() {
            match assembler.push(frame) {
                Ok(_) => {}
                Err(e) => {
                    prop_assert_eq!(e, ProtocolError::InvalidUtf8);
                    failed_at = Some(i);
                    break;
                }
            }
        }
        prop_assert_eq!(failed_at, Some(expected));
    }

    #[test]
    fn invalid_text_fails_in_the_read_that_delivers_the_first_invalid_byte(
        receiver in arb_receiver(),
        prefix in any::<String>(),
        core in arb_invalid_core(),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        // One text frame with a long valid tail, delivered in arbitrary reads.
        let mut payload = prefix.into_bytes();
        payload.extend_from_slice(&core);
        let bad = first_bad_byte(&payload);
        prop_assume!(bad.is_some());
        let bad = bad.unwrap_or_default();
        payload.extend(std::iter::repeat_n(b'z', 3000));
        let wire = encode_for(receiver, &[Frame::new(OpCode::Text, payload.clone())], 7);
        let proof_end = wire.len() - payload.len() + bad + 1;

        let cuts = cuts_within(&raw_cuts, wire.len());
        let mut reader = Reader::new(config_for(receiver));
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut outcome = None;
        // The only frame is the bad text, so every read either waits or fails.
        for end in cuts.iter().copied().chain(std::iter::once(wire.len())) {
            buf.extend_from_slice(&wire[fed..end]);
            fed = end;
            match reader.read(&mut buf) {
                Ok(None) => {}
                Ok(Some(event)) => {
                    outcome = Some(Err(event));
                    break;
                }
                Err(e) => {
                    outcome = Some(Ok((e, fed)));
                    break;
                }
            }
        }
        let Some(Ok((err, fed_at_error))) = outcome else {
            return Err(TestCaseError::fail(format!("no error: {outcome:?}")));
        };
        prop_assert_eq!(err, ProtocolError::InvalidUtf8);
        // The read that failed is the first one whose end reaches the proof.
        let failing_read_end = cuts
            .iter()
            .copied()
            .chain(std::iter::once(wire.len()))
            .find(|&end| end >= proof_end);
        prop_assert_eq!(Some(fed_at_error), failing_read_end);
    }

    #[test]
    fn a_reader_yields_the_same_events_however_the_stream_is_cut(
        receiver in arb_receiver(),
        texts in proptest::collection::vec(any::<String>(), 1..4),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..16),
        frag_cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        // Fragmented text messages with a ping after every first fragment.
        let mut frames = Vec::new();
        for (n, text) in texts.iter().enumerate() {
            let cuts = cuts_within(&frag_cuts, text.len());
            let mut message = fragments(OpCode::Text, &pieces(text.as_bytes(), &cuts));
            message.insert(1.min(message.len() - 1), Frame::ping(format!("{n}")));
            frames.extend(message);
        }
        let wire = encode_for(receiver, &frames, 99);
        let read_all = |cuts: &[usize]| -> Result<Vec<Event>, ProtocolError> {
            let mut reader = Reader::new(config_for(receiver));
            let mut buf = BytesMut::new();
            let mut events = Vec::new();
            for piece in pieces(&wire, cuts) {
                buf.extend_from_slice(piece);
                while let Some(event) = reader.read(&mut buf)? {
                    events.push(event);
                }
            }
            Ok(events)
        };
        let whole = read_all(&[]);
        let split = read_all(&cuts_within(&raw_cuts, wire.len()));
        prop_assert!(whole.is_ok(), "{:?}", whole);
        let messages = whole
            .as_ref()
            .map(|events| {
                events
                    .iter()
                    .filter(|e| matches!(e, Event::Message(_)))
                    .count()
            })
            .unwrap_or_default();
        prop_assert_eq!(messages, texts.len());
        prop_assert_eq!(whole, split);
    }
}
