//! permessage-deflate (RFC 7692), in the spirit of the conformance suite's
//! sections 12 (compressed messages of every size and kind, whole and
//! fragmented) and 13 (the same under each negotiated parameter set), plus the
//! RFC's own examples byte for byte and what a peer's bad compressed data
//! closes the connection with.
//!
//! Every case runs a full exchange through the codec as two endpoints would: a
//! client compresses (whole frames from `Writer::compressed`, or a compressed
//! message cut into fragments), a server `Reader` inflates, and the server
//! echoes the message back compressed to a client `Reader`.

use bytes::{Bytes, BytesMut};
use rfc6455::deflate::{DeflateParams, DeflatePolicy, MessageCompressor};
use rfc6455::{CloseCode, CodecConfig, Event, Frame, Message, OpCode, Role, Writer};

use crate::support::{
    binary_of_len, client_key, frames_sent_to, read_in_chunks, read_whole, roomy, text_of_len,
    Received, ROLES,
};

const RSV1: u8 = 0b100;

/// The sizes section 12 sends, from 16 bytes to 128 KiB.
const SIZES: [usize; 10] = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131_072];

/// Messages per size: enough for context takeover to refer back across
/// messages, few enough to keep the suite quick in debug builds.
const REPEATS: usize = 3;

/// Chat-like JSON text of exactly `len` bytes.
fn json_of_len(len: usize) -> String {
    let mut s = String::with_capacity(len + 200);
    let mut i = 0u32;
    while s.len() < len {
        s.push_str(&format!(
            r#"{{"type":"message","id":{i},"from":"user-{}","body":"message number {} for the group","ok":true}},"#,
            i % 17,
            i * 7
        ));
        i += 1;
    }
    s.truncate(len);
    s
}

/// Binary data that compresses somewhat, like an image: runs and gradients.
fn bitmap_of_len(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if (i / 64) % 3 == 0 {
                0
            } else {
                (i % 251) as u8
            }
        })
        .collect()
}

/// The message kinds section 12 sends: JSON, human text with multi-byte
/// characters, a bitmap and data that does not compress at all.
fn kinds(len: usize) -> [Message; 4] {
    [
        Message::Text(json_of_len(len).into()),
        Message::Text(text_of_len(len).into()),
        Message::Binary(bitmap_of_len(len).into()),
        Message::Binary(binary_of_len(len).into()),
    ]
}

fn config(role: Role, params: DeflateParams) -> CodecConfig {
    roomy(role).with_deflate(params)
}

/// A compressed message cut into fragments of at most `size` compressed
/// bytes, RSV1 on the first only (RFC 7692 §6.1).
fn fragments(message: &Message, packed: &Bytes, size: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let end = (at + size).min(packed.len());
        let opcode = if at == 0 {
            message.opcode()
        } else {
            OpCode::Continuation
        };
        let mut frame = Frame::new(opcode, packed.slice(at..end)).with_fin(end == packed.len());
        frame.rsv = if at == 0 { RSV1 } else { 0 };
        frames.push(frame);
        if end == packed.len() {
            return frames;
        }
        at = end;
    }
}

/// The wire bytes the peer of `receiver` sends for `messages`: each message
/// compressed whole by a `Writer` (`fragment` `None`) or compressed and cut
/// into fragments of `fragment` bytes.
fn compressed_wire(
    receiver: Role,
    params: DeflateParams,
    messages: &[Message],
    fragment: Option<usize>,
) -> Vec<u8> {
    let sender = match receiver {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let Some(size) = fragment else {
        let mut n = 0;
        let writer = match sender {
            Role::Client => Writer::client(move || {
                n += 1;
                client_key(n)
            }),
            Role::Server => Writer::server(),
        };
        let mut writer = writer.with_deflate(params);
        let mut out = BytesMut::new();
        for m in messages {
            writer
                .compressed(m.opcode(), m.as_bytes(), &mut out)
                .unwrap();
        }
        return out.to_vec();
    };
    let mut compressor = MessageCompressor::new(params.compress_no_context_takeover(sender));
    let mut frames = Vec::new();
    for m in messages {
        let mut packed = BytesMut::new();
        compressor.compress(m.as_bytes(), &mut packed);
        frames.extend(fragments(m, &packed.freeze(), size));
    }
    frames_sent_to(receiver, &frames)
}

/// Sends `messages` compressed from a client to a server and echoes them
/// back, asserting both ends read exactly what was sent.
fn echo_round_trip(
    params: DeflateParams,
    messages: &[Message],
    fragment: Option<usize>,
    what: &str,
) {
    let expected: Vec<Event> = messages.iter().cloned().map(Event::Message).collect();
    let to_server = compressed_wire(Role::Server, params, messages, fragment);
    let got = read_in_chunks(config(Role::Server, params), &to_server, 4096);
    assert_eq!(got.expect_ok(), expected, "server reads {what}");
    let to_client = compressed_wire(Role::Client, params, messages, fragment);
    let got = read_in_chunks(config(Role::Client, params), &to_client, 4096);
    assert_eq!(got.expect_ok(), expected, "client reads {what}");
}

/// Section 12: every kind and size, whole and fragmented (256 bytes, as the
/// suite's auto-fragmentation does), with and without context takeover.
#[test]
fn section_12_compressed_messages_of_every_size_and_kind_round_trip() {
    for takeover in [true, false] {
        let params = DeflateParams {
            server_no_context_takeover: !takeover,
            client_no_context_takeover: !takeover,
            ..DeflateParams::default()
        };
        for len in SIZES {
            for (k, message) in kinds(len).into_iter().enumerate() {
                let messages = vec![message; REPEATS];
                for fragment in [None, Some(256)] {
                    let what =
                        format!("kind {k}, {len} B, fragments {fragment:?}, takeover {takeover}");
                    echo_round_trip(params, &messages, fragment, &what);
                }
            }
        }
    }
}

/// Section 13: the offers the suite's client makes (plain, no context
/// takeover, window bits 8 and 15, combinations, several in order of
/// preference). Whatever the default policy agrees to must then carry
/// messages both ways; an offer it declines is declined as RFC 7692 allows,
/// leaving the connection uncompressed.
#[test]
fn section_13_each_negotiated_parameter_set_carries_messages() {
    let offers: [(&str, bool); 7] = [
        ("permessage-deflate", true),
        ("permessage-deflate; server_no_context_takeover", true),
        // The pure-Rust deflate always compresses with a 15-bit window, so a
        // request for a smaller server window cannot be honoured.
        (
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=8",
            false,
        ),
        (
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=15",
            true,
        ),
        (
            "permessage-deflate; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8",
            false,
        ),
        ("permessage-deflate; client_max_window_bits=9", true),
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_no_context_takeover, permessage-deflate",
            true,
        ),
    ];
    let messages: Vec<Message> = [16, 1024, 32768]
        .into_iter()
        .flat_map(|len| kinds(len).into_iter().take(2))
        .collect();
    for (offer, accepted) in offers {
        let agreed = DeflatePolicy::default().negotiate([offer]).unwrap();
        assert_eq!(agreed.is_some(), accepted, "{offer}");
        let Some(params) = agreed else { continue };
        // Every value the server answers is one the client offered or may be told.
        assert!(params.header_value().starts_with("permessage-deflate"));
        for fragment in [None, Some(256)] {
            echo_round_trip(params, &messages, fragment, offer);
        }
    }
}

/// RFC 7692 §7.2.3: each example frame, as a server sends it, read back by a
/// client byte for byte, and our writer producing the first one exactly.
#[test]
fn the_rfc_7692_examples_byte_for_byte() {
    let hello = Event::Message(Message::Text("Hello".into()));
    let no_takeover = DeflateParams {
        server_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let examples: [(&str, &[u8], usize); 6] = [
        // §7.2.3.1: one compressed block, unfragmented and in two fragments.
        (
            "7.2.3.1",
            &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            1,
        ),
        (
            "7.2.3.1 fragmented",
            &[
                0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
            ],
            1,
        ),
        // §7.2.3.2: the second message refers back into the first.
        (
            "7.2.3.2",
            &[
                0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11,
                0x00, 0x00,
            ],
            2,
        ),
        // §7.2.3.3: a stored block.
        (
            "7.2.3.3",
            &[
                0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            1,
        ),
        // §7.2.3.4: a block with BFINAL set, then one more byte.
        (
            "7.2.3.4",
            &[0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
            1,
        ),
        // §7.2.3.5: two blocks in one message.
        (
            "7.2.3.5",
            &[
                0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07,
                0x00,
            ],
            1,
        ),
    ];
    for (name, wire, count) in examples {
        let params = if name == "7.2.3.2" {
            DeflateParams::default()
        } else {
            no_takeover
        };
        for chunk in [wire.len(), 1] {
            let got = read_in_chunks(config(Role::Client, params), wire, chunk);
            assert_eq!(
                got.expect_ok(),
                vec![hello.clone(); count],
                "§{name} chunk {chunk}"
            );
        }
    }
    // Our writer's "Hello" is §7.2.3.1's frame, in both takeover modes, and
    // with context takeover a repeat is shorter (it refers back).
    for params in [no_takeover, DeflateParams::default()] {
        let mut w = Writer::server().with_deflate(params);
        let mut out = BytesMut::new();
        w.compressed(OpCode::Text, b"Hello", &mut out).unwrap();
        assert_eq!(&out[..], examples[0].1);
        out.clear();
        w.compressed(OpCode::Text, b"Hello", &mut out).unwrap();
        if params.server_no_context_takeover {
            assert_eq!(&out[..], examples[0].1);
        } else {
            assert!(out.len() < examples[0].1.len(), "{out:02x?}");
        }
    }
}

/// An empty compressed message is the single byte `00` (an empty stored
/// block's start, RFC 7692 §7.2.3.6's empty fragment); our writer sends it too.
#[test]
fn empty_compressed_messages_and_empty_fragments() {
    let mut w = Writer::server().with_deflate(DeflateParams::default());
    let mut out = BytesMut::new();
    w.compressed(OpCode::Text, b"", &mut out).unwrap();
    assert_eq!(&out[..], [0xc1, 0x01, 0x00]);
    // A compressed message may carry empty fragments anywhere.
    let packed = Bytes::from_static(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    let mut first = Frame::new(OpCode::Text, Bytes::new()).with_fin(false);
    first.rsv = RSV1;
    let frames = [
        first,
        Frame::new(OpCode::Continuation, packed).with_fin(false),
        Frame::new(OpCode::Continuation, Bytes::new()),
    ];
    for role in ROLES {
        let got = read_whole(
            config(role, DeflateParams::default()),
            &frames_sent_to(role, &frames),
        );
        assert_eq!(
            got.expect_ok(),
            [Event::Message(Message::Text("Hello".into()))]
        );
    }
}

/// What a peer's bad compressed data closes the connection with.
#[test]
fn bad_compressed_data_closes_with_the_right_code() {
    let compressed = |opcode, payload: &'static [u8]| {
        let mut f = Frame::new(opcode, Bytes::from_static(payload));
        f.rsv = RSV1;
        f
    };
    let cases: [(&str, Vec<Frame>, CloseCode); 5] = [
        // Block type 3 is reserved in deflate.
        (
            "reserved block type",
            vec![compressed(OpCode::Binary, &[0xff, 0xff])],
            CloseCode::INVALID_PAYLOAD,
        ),
        // A stored block whose length check fails.
        (
            "stored length mismatch",
            vec![compressed(
                OpCode::Binary,
                &[0x00, 0x05, 0x00, 0x00, 0x00, b'H'],
            )],
            CloseCode::INVALID_PAYLOAD,
        ),
        // Inflates to bytes that are not UTF-8: "\xff" stored.
        (
            "text that is not utf-8",
            vec![compressed(
                OpCode::Text,
                &[0x00, 0x01, 0x00, 0xfe, 0xff, 0xff, 0x00],
            )],
            CloseCode::INVALID_PAYLOAD,
        ),
        // RSV1 on a continuation frame (RFC 7692 §6.1).
        (
            "rsv1 on a continuation",
            vec![
                Frame::new(OpCode::Text, "a").with_fin(false),
                compressed(OpCode::Continuation, &[0x00]),
            ],
            CloseCode::PROTOCOL_ERROR,
        ),
        // RSV1 on a control frame.
        (
            "rsv1 on a ping",
            vec![compressed(OpCode::Ping, b"")],
            CloseCode::PROTOCOL_ERROR,
        ),
    ];
    for role in ROLES {
        for (name, frames, code) in &cases {
            let wire = frames_sent_to(role, frames);
            for chunk in [wire.len(), 1] {
                let got: Received =
                    read_in_chunks(config(role, DeflateParams::default()), &wire, chunk);
                got.expect_error(*code);
                assert!(got.events.is_empty(), "{role:?} {name}");
            }
        }
    }
}

/// A compressed message over the limit fails with 1009 as soon as its
/// inflated size crosses it: within the first frame of a fragmented bomb,
/// and within the first bytes of an unfragmented one.
#[test]
fn a_compression_bomb_is_stopped_at_the_limit_before_it_has_arrived() {
    let mut packed = BytesMut::new();
    MessageCompressor::new(true).compress(&vec![b'a'; 16 << 20], &mut packed);
    let packed = packed.freeze();
    let limit = 64 << 10;
    for role in ROLES {
        let cfg = config(role, DeflateParams::default()).with_max_message_len(limit);
        // Fragments of 1 KiB: each inflates to about 1 MiB.
        let frames = fragments(&Message::Text("".into()), &packed, 1024);
        let wire = frames_sent_to(role, &frames);
        let got = read_whole(cfg, &wire);
        got.expect_error(CloseCode::MESSAGE_TOO_BIG);
        // One frame, read 512 bytes at a time: stopped within the first read.
        let frames = fragments(&Message::Binary(Bytes::new()), &packed, packed.len());
        let wire = frames_sent_to(role, &frames);
        let got = read_in_chunks(cfg, &wire, 512);
        got.expect_error(CloseCode::MESSAGE_TOO_BIG);
        assert!(got.fed <= 512, "{role:?}: {} bytes read first", got.fed);
    }
}

/// Invalid UTF-8 in compressed text fails as soon as the inflated bytes show
/// it, before the message (or even its frame) is complete.
#[test]
fn invalid_utf8_in_compressed_text_fails_fast() {
    let mut text = b"ok \xed\xa0\x80 ".to_vec();
    text.extend_from_slice(json_of_len(20_000).as_bytes());
    let mut packed = BytesMut::new();
    MessageCompressor::new(true).compress(&text, &mut packed);
    let packed = packed.freeze();
    for role in ROLES {
        let cfg = config(role, DeflateParams::default());
        let frames = fragments(&Message::Text("".into()), &packed, 64);
        let wire = frames_sent_to(role, &frames);
        let got = read_whole(cfg, &wire[..wire.len() / 2]);
        got.expect_error(CloseCode::INVALID_PAYLOAD);
        let frames = fragments(&Message::Text("".into()), &packed, packed.len());
        let wire = frames_sent_to(role, &frames);
        let got = read_in_chunks(cfg, &wire, 64);
        got.expect_error(CloseCode::INVALID_PAYLOAD);
        assert!(
            got.fed < wire.len() / 2,
            "{role:?}: {} of {} bytes",
            got.fed,
            wire.len()
        );
    }
}
