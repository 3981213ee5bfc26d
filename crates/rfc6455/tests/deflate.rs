//! permessage-deflate (RFC 7692) through the message layer: RSV1 rules, round
//! trips through `Writer::compressed` and `Reader`, and hostile input.
#![cfg(feature = "deflate")]

use bytes::{Bytes, BytesMut};
use rfc6455::deflate::{DeflateParams, MessageCompressor};
use rfc6455::{
    CloseCode, CodecConfig, Event, Frame, Message, OpCode, ProtocolError, Reader, Role, WriteError,
    Writer,
};

const RSV1: u8 = 0b100;

fn reader(role: Role, params: DeflateParams) -> Reader {
    let cfg = match role {
        Role::Server => CodecConfig::server(),
        Role::Client => CodecConfig::client(),
    };
    Reader::new(cfg.with_deflate(params))
}

/// The writer of the peer of an endpoint in `receiver` role.
fn peer_writer(receiver: Role, params: DeflateParams) -> Writer {
    let w = match receiver {
        Role::Server => {
            let mut n = 0u8;
            Writer::client(move || {
                n = n.wrapping_add(1);
                [n, 0x5a, n ^ 0xa5, 0x3c]
            })
        }
        Role::Client => Writer::server(),
    };
    w.with_deflate(params)
}

fn mask_for(receiver: Role) -> Option<[u8; 4]> {
    (receiver == Role::Server).then_some([0x11, 0x22, 0x33, 0x44])
}

fn compress(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    MessageCompressor::new(true).compress(payload, &mut out);
    out.freeze()
}

fn frame(opcode: OpCode, rsv: u8, fin: bool, payload: impl Into<Bytes>) -> Frame {
    let mut f = Frame::new(opcode, payload).with_fin(fin);
    f.rsv = rsv;
    f
}

fn wire(receiver: Role, frames: &[Frame]) -> BytesMut {
    let mut out = BytesMut::new();
    for f in frames {
        f.encode(mask_for(receiver), &mut out);
    }
    out
}

/// Every event until the buffer is drained or an error, feeding `chunk` bytes
/// at a time so that partially arrived frames are exercised too.
fn read_all(reader: &mut Reader, bytes: &[u8], chunk: usize) -> Result<Vec<Event>, ProtocolError> {
    let mut events = Vec::new();
    let mut buf = BytesMut::new();
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(event) = reader.read(&mut buf)? {
            events.push(event);
        }
    }
    Ok(events)
}

fn text(s: &str) -> Event {
    Event::Message(Message::Text(s.to_owned().into()))
}

#[test]
fn compressed_messages_round_trip_in_both_roles_and_both_takeover_modes() {
    let chat = "{\"type\":\"message\",\"body\":\"hello there, how are you?\"}".repeat(40);
    let bin: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
    for role in [Role::Server, Role::Client] {
        for takeover in [true, false] {
            let params = DeflateParams {
                server_no_context_takeover: !takeover,
                client_no_context_takeover: !takeover,
                ..DeflateParams::default()
            };
            let mut w = peer_writer(role, params);
            let mut out = BytesMut::new();
            for _ in 0..3 {
                w.compressed(OpCode::Text, chat.as_bytes(), &mut out)
                    .unwrap();
                w.compressed(OpCode::Binary, &bin, &mut out).unwrap();
                w.compressed(OpCode::Text, b"", &mut out).unwrap();
                // Uncompressed messages and control frames mix freely.
                w.text("plain", &mut out).unwrap();
                w.ping(b"p", &mut out).unwrap();
            }
            assert!(
                out.len() < 3 * (chat.len() + bin.len()) / 4,
                "it compresses"
            );
            for chunk in [out.len(), 1, 7] {
                let mut r = reader(role, params);
                let events = read_all(&mut r, &out, chunk).unwrap();
                let mut expected = Vec::new();
                for _ in 0..3 {
                    expected.push(text(&chat));
                    expected.push(Event::Message(Message::Binary(bin.clone().into())));
                    expected.push(text(""));
                    expected.push(text("plain"));
                    expected.push(Event::Ping(Bytes::from_static(b"p")));
                }
                assert_eq!(
                    events, expected,
                    "{role:?} takeover {takeover} chunk {chunk}"
                );
                assert!(r.is_idle());
            }
        }
    }
}

#[test]
fn a_fragmented_compressed_message_has_rsv1_on_its_first_frame_only() {
    let body = "Grüße aus dem Chat, ".repeat(50);
    let packed = compress(body.as_bytes());
    let third = packed.len() / 3;
    for role in [Role::Server, Role::Client] {
        let frames = [
            frame(OpCode::Text, RSV1, false, packed.slice(..third)),
            Frame::pong("interleaved"),
            frame(
                OpCode::Continuation,
                0,
                false,
                packed.slice(third..2 * third),
            ),
            frame(OpCode::Continuation, 0, true, packed.slice(2 * third..)),
        ];
        let bytes = wire(role, &frames);
        for chunk in [bytes.len(), 1, 5] {
            let mut r = reader(role, DeflateParams::default());
            let events = read_all(&mut r, &bytes, chunk).unwrap();
            assert_eq!(
                events,
                [Event::Pong(Bytes::from_static(b"interleaved")), text(&body)],
                "{role:?} chunk {chunk}"
            );
        }
    }
}

#[test]
fn rsv1_anywhere_but_a_first_data_frame_is_a_protocol_error() {
    let packed = compress(b"Hello");
    let cases: [(&str, Vec<Frame>); 5] = [
        (
            "continuation",
            vec![
                frame(OpCode::Text, RSV1, false, packed.slice(..2)),
                frame(OpCode::Continuation, RSV1, true, packed.slice(2..)),
            ],
        ),
        (
            "continuation of a plain message",
            vec![
                frame(OpCode::Binary, 0, false, &b"ab"[..]),
                frame(OpCode::Continuation, RSV1, true, &b"cd"[..]),
            ],
        ),
        ("ping", vec![frame(OpCode::Ping, RSV1, true, &b"p"[..])]),
        ("pong", vec![frame(OpCode::Pong, RSV1, true, &b""[..])]),
        ("close", vec![frame(OpCode::Close, RSV1, true, &b""[..])]),
    ];
    for role in [Role::Server, Role::Client] {
        for (name, frames) in &cases {
            let mut r = reader(role, DeflateParams::default());
            let err = read_all(&mut r, &wire(role, frames), usize::MAX).unwrap_err();
            assert_eq!(err, ProtocolError::ReservedBits, "{role:?} {name}");
            assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
        }
    }
}

#[test]
fn rsv1_without_negotiation_stays_a_protocol_error() {
    let bytes = wire(
        Role::Server,
        &[frame(OpCode::Text, RSV1, true, compress(b"Hello"))],
    );
    let mut r = Reader::new(CodecConfig::server());
    assert_eq!(
        read_all(&mut r, &bytes, usize::MAX),
        Err(ProtocolError::ReservedBits)
    );
    // RSV2 and RSV3 stay refused with deflate on: it defines RSV1 only.
    for rsv in [0b010, 0b001] {
        let bytes = wire(Role::Server, &[frame(OpCode::Text, rsv, true, &b"x"[..])]);
        let mut r = reader(Role::Server, DeflateParams::default());
        assert_eq!(
            read_all(&mut r, &bytes, usize::MAX),
            Err(ProtocolError::ReservedBits)
        );
    }
}

#[test]
fn the_message_limit_applies_to_the_inflated_size() {
    // 8 MiB of zeros deflate to about 8 KiB: a small bomb.
    let bomb = compress(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 16 << 10);
    let cfg = CodecConfig::server()
        .with_max_message_len(64 << 10)
        .with_deflate(DeflateParams::default());
    for frames in [
        vec![frame(OpCode::Binary, RSV1, true, bomb.clone())],
        vec![
            frame(OpCode::Text, RSV1, false, bomb.slice(..100)),
            frame(OpCode::Continuation, 0, true, bomb.slice(100..)),
        ],
    ] {
        let mut r = Reader::new(cfg);
        let err = read_all(&mut r, &wire(Role::Server, &frames), usize::MAX).unwrap_err();
        assert_eq!(err, ProtocolError::MessageTooLarge { max: 64 << 10 });
        assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
    }
    // Exactly at the limit is fine.
    let exact = compress(&vec![b'a'; 64 << 10]);
    let mut r = Reader::new(cfg);
    let events = read_all(
        &mut r,
        &wire(Role::Server, &[frame(OpCode::Text, RSV1, true, exact)]),
        usize::MAX,
    )
    .unwrap();
    assert!(matches!(&events[..], [Event::Message(Message::Text(t))] if t.len() == 64 << 10));
}

#[test]
fn compressed_bytes_beyond_any_honest_encoding_are_refused_from_the_header() {
    let cfg = CodecConfig::server()
        .with_max_message_len(1000)
        .with_deflate(DeflateParams::default());
    // Only the header: 10,000 compressed bytes could never inflate to 1000.
    let mut bytes = wire(
        Role::Server,
        &[frame(OpCode::Binary, RSV1, true, vec![0u8; 10_000])],
    );
    bytes.truncate(8);
    let mut r = Reader::new(cfg);
    assert_eq!(
        r.read(&mut bytes),
        Err(ProtocolError::MessageTooLarge { max: 1000 })
    );
}

#[test]
fn data_that_does_not_inflate_is_invalid_payload() {
    // Block type 3 is reserved in deflate.
    let bytes = wire(
        Role::Server,
        &[frame(OpCode::Binary, RSV1, true, &[0xffu8, 0xff][..])],
    );
    let mut r = reader(Role::Server, DeflateParams::default());
    let err = read_all(&mut r, &bytes, usize::MAX).unwrap_err();
    assert_eq!(err, ProtocolError::InvalidCompressedData);
    assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
}

#[test]
fn text_is_utf8_checked_after_inflation() {
    let bytes = wire(
        Role::Client,
        &[frame(
            OpCode::Text,
            RSV1,
            true,
            compress(b"ok \xed\xa0\x80 no"),
        )],
    );
    let mut r = reader(Role::Client, DeflateParams::default());
    let err = read_all(&mut r, &bytes, 1).unwrap_err();
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
    // The same bytes compressed as binary are fine: only text is checked.
    let bytes = wire(
        Role::Client,
        &[frame(
            OpCode::Binary,
            RSV1,
            true,
            compress(b"ok \xed\xa0\x80 no"),
        )],
    );
    let mut r = reader(Role::Client, DeflateParams::default());
    assert!(read_all(&mut r, &bytes, 1).is_ok());
}

#[test]
fn uncompressed_messages_keep_the_zero_copy_path_and_fail_fast_utf8() {
    let mut r = reader(Role::Client, DeflateParams::default());
    let mut buf = wire(Role::Client, &[Frame::binary(vec![7u8; 300])]);
    let payload_at = buf.as_ptr() as usize + 4;
    let Some(Event::Message(Message::Binary(b))) = r.read(&mut buf).unwrap() else {
        panic!("expected a binary message");
    };
    assert_eq!(b.as_ptr() as usize, payload_at, "not copied");
    // Bad UTF-8 in an uncompressed frame still fails before the frame is whole.
    let mut bad = wire(Role::Client, &[Frame::new(OpCode::Text, vec![0xff; 300])]);
    bad.truncate(10);
    assert_eq!(r.read(&mut bad), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn the_writer_compresses_data_only_and_only_when_negotiated() {
    let mut out = BytesMut::new();
    let mut plain = Writer::server();
    assert_eq!(
        plain.compressed(OpCode::Text, b"x", &mut out),
        Err(WriteError::NotNegotiated)
    );
    let mut w = Writer::server().with_deflate(DeflateParams::default());
    for op in [
        OpCode::Ping,
        OpCode::Pong,
        OpCode::Close,
        OpCode::Continuation,
    ] {
        assert_eq!(
            w.compressed(op, b"x", &mut out),
            Err(WriteError::NotData),
            "{op:?}"
        );
    }
    assert!(out.is_empty());
    // Control frames from a deflate writer carry no RSV bit.
    w.ping(b"p", &mut out).unwrap();
    w.close(None, &mut out).unwrap();
    assert_eq!(&out[..], [0x89, 0x01, b'p', 0x88, 0x00]);
    assert_eq!(
        w.compressed(OpCode::Text, b"late", &mut out),
        Err(WriteError::Closed)
    );
}

#[test]
fn compressed_frames_use_every_header_length() {
    // Incompressible payloads of 100 B, ~1 KiB and ~100 KiB give the 7-bit,
    // 16-bit and 64-bit length forms, masked and not.
    let mut seed = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect();
    for role in [Role::Server, Role::Client] {
        for len in [100, 1000, 100_000] {
            let mut w = peer_writer(role, DeflateParams::default());
            let mut out = BytesMut::from(&b"before"[..]);
            w.compressed(OpCode::Binary, &noise[..len], &mut out)
                .unwrap();
            assert_eq!(&out[..6], b"before");
            let mut r = reader(role, DeflateParams::default());
            let events = read_all(&mut r, &out[6..], usize::MAX).unwrap();
            assert_eq!(
                events,
                [Event::Message(Message::Binary(
                    noise[..len].to_vec().into()
                ))],
                "{role:?} {len}"
            );
        }
    }
}

#[test]
fn a_cloned_reader_refuses_to_inflate_without_the_history() {
    let mut w = peer_writer(Role::Client, DeflateParams::default());
    let mut first = BytesMut::new();
    w.compressed(OpCode::Text, b"Hello", &mut first).unwrap();
    let mut second = BytesMut::new();
    w.compressed(OpCode::Text, b"Hello", &mut second).unwrap();
    let mut r = reader(Role::Client, DeflateParams::default());
    assert_eq!(
        read_all(&mut r, &first, usize::MAX).unwrap(),
        [text("Hello")]
    );
    let mut copy = r.clone();
    assert_eq!(
        read_all(&mut copy, &second, usize::MAX),
        Err(ProtocolError::InvalidCompressedData)
    );
    assert_eq!(
        read_all(&mut r, &second, usize::MAX).unwrap(),
        [text("Hello")]
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any text, compressed with or without context takeover, cut into any
    /// fragments and delivered in any read size, reads back exactly: the
    /// frame-by-frame inflation does not depend on where frames or reads end.
    #[test]
    fn compressed_text_survives_any_fragmentation_and_read_size(
        texts in proptest::collection::vec("\\PC{0,300}", 1..4),
        cuts in proptest::collection::vec(0usize..2000, 0..6),
        chunk in 1usize..200,
        takeover in proptest::bool::ANY,
        role in proptest::sample::select(vec![Role::Server, Role::Client]),
    ) {
        let params = DeflateParams {
            server_no_context_takeover: !takeover,
            client_no_context_takeover: !takeover,
            ..DeflateParams::default()
        };
        let mut compressor = MessageCompressor::new(!takeover);
        let mut frames = Vec::new();
        for text in &texts {
            let mut packed = BytesMut::new();
            compressor.compress(text.as_bytes(), &mut packed);
            let packed = packed.freeze();
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (packed.len() + 1)).collect();
            points.push(0);
            points.push(packed.len());
            points.sort_unstable();
            points.dedup();
            let pieces: Vec<_> = points.windows(2).map(|w| packed.slice(w[0]..w[1])).collect();
            let last = pieces.len() - 1;
            for (i, piece) in pieces.into_iter().enumerate() {
                let op = if i == 0 { OpCode::Text } else { OpCode::Continuation };
                frames.push(frame(op, if i == 0 { RSV1 } else { 0 }, i == last, piece));
            }
        }
        let mut r = reader(role, params);
        let events = read_all(&mut r, &wire(role, &frames), chunk).unwrap();
        let expected: Vec<Event> = texts.iter().map(|t| text(t)).collect();
        proptest::prop_assert_eq!(events, expected);
        proptest::prop_assert!(r.is_idle());
    }

    /// Arbitrary bytes sent as a compressed message never panic, never yield
    /// more than the limit, and fail only with a deflate, size or UTF-8 code.
    #[test]
    fn arbitrary_compressed_payloads_fail_cleanly(
        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        text_message in proptest::bool::ANY,
        chunk in 1usize..64,
    ) {
        let op = if text_message { OpCode::Text } else { OpCode::Binary };
        let bytes = wire(Role::Server, &[frame(op, RSV1, true, payload)]);
        let cfg = CodecConfig::server().with_max_message_len(4096).with_deflate(DeflateParams::default());
        match read_all(&mut Reader::new(cfg), &bytes, chunk) {
            Ok(events) => {
                for e in events {
                    if let Event::Message(m) = e {
                        proptest::prop_assert!(m.as_bytes().len() <= 4096);
                    }
                }
            }
            Err(e) => proptest::prop_assert!(matches!(
                e,
                ProtocolError::InvalidCompressedData
                    | ProtocolError::InvalidUtf8
                    | ProtocolError::MessageTooLarge { .. }
            ), "{e:?}"),
        }
    }
}

#[test]
fn a_reader_reports_compressed_sizes_and_whether_it_keeps_history() {
    let chat = "{\"type\":\"message\",\"body\":\"hello\"}".repeat(10);
    for takeover in [false, true] {
        let params = DeflateParams {
            server_no_context_takeover: !takeover,
            client_no_context_takeover: !takeover,
            ..DeflateParams::default()
        };
        let mut w = peer_writer(Role::Server, params);
        let mut out = BytesMut::new();
        w.compressed(OpCode::Text, chat.as_bytes(), &mut out)
            .unwrap();
        let wire_len = out.len() - 6; // a masked client frame's 2 + 4 header bytes
        w.text("plain", &mut out).unwrap();
        let mut r = reader(Role::Server, params);
        assert!(!r.holds_history(), "nothing before the first message");
        assert!(matches!(r.read(&mut out).unwrap(), Some(Event::Message(_))));
        let size = r.last_compressed().expect("a compressed message");
        assert_eq!((size.compressed, size.inflated), (wire_len, chat.len()));
        // A server that drops idle readers must keep this one when the client keeps context.
        assert!(r.is_idle());
        assert_eq!(r.holds_history(), takeover);
        assert!(matches!(r.read(&mut out).unwrap(), Some(Event::Message(_))));
        assert_eq!(r.last_compressed(), None, "an uncompressed message");
    }
}
