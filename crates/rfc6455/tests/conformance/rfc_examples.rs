//! The example frames of RFC 6455 §5.7, byte for byte, in both directions:
//! decoded by the role that receives them and produced by the role that sends them.

use bytes::{Bytes, BytesMut};
use rfc6455::{CodecConfig, Decoder, Event, Frame, Message, OpCode, Reader, Writer};

use crate::support::{read_whole, server_reads};

const RFC_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const HELLO_UNMASKED: [u8; 7] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
const HELLO_MASKED: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

fn hello() -> Event {
    Event::Message(Message::Text("Hello".into()))
}

#[test]
fn single_frame_unmasked_text_is_read_by_a_client_and_written_by_a_server() {
    let got = read_whole(CodecConfig::client(), &HELLO_UNMASKED);
    assert_eq!(got.expect_ok(), [hello()]);

    let mut out = BytesMut::new();
    Writer::server().text("Hello", &mut out).unwrap();
    assert_eq!(&out[..], HELLO_UNMASKED);
    assert_eq!(&Frame::text("Hello").to_bytes()[..], HELLO_UNMASKED);
}

#[test]
fn single_frame_masked_text_is_read_by_a_server_and_written_by_a_client() {
    assert_eq!(server_reads(&HELLO_MASKED).expect_ok(), [hello()]);

    let mut out = BytesMut::new();
    Writer::client(|| RFC_KEY).text("Hello", &mut out).unwrap();
    assert_eq!(&out[..], HELLO_MASKED);
}

#[test]
fn masked_hello_is_refused_by_a_client_and_unmasked_hello_by_a_server() {
    read_whole(CodecConfig::client(), &HELLO_MASKED)
        .expect_error(rfc6455::CloseCode::PROTOCOL_ERROR);
    server_reads(&HELLO_UNMASKED).expect_error(rfc6455::CloseCode::PROTOCOL_ERROR);
}

#[test]
fn fragmented_unmasked_text_hel_lo() {
    let wire = [
        0x01, 0x03, 0x48, 0x65, 0x6c, // "Hel", FIN clear
        0x80, 0x02, 0x6c, 0x6f, // "lo", continuation with FIN
    ];
    let got = read_whole(CodecConfig::client(), &wire);
    assert_eq!(got.expect_ok(), [hello()]);

    let mut decoder = Decoder::new(CodecConfig::client());
    let mut buf = BytesMut::from(&wire[..]);
    let first = decoder.decode(&mut buf).unwrap().unwrap();
    let second = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        (first.fin, first.opcode, &first.payload[..]),
        (false, OpCode::Text, &b"Hel"[..])
    );
    assert_eq!(
        (second.fin, second.opcode, &second.payload[..]),
        (true, OpCode::Continuation, &b"lo"[..])
    );

    let mut out = BytesMut::new();
    let mut writer = Writer::server();
    writer
        .fragment(OpCode::Text, false, b"Hel", &mut out)
        .unwrap();
    writer
        .fragment(OpCode::Continuation, true, b"lo", &mut out)
        .unwrap();
    assert_eq!(&out[..], wire);
}

#[test]
fn unmasked_ping_hello_and_its_pong() {
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let got = read_whole(CodecConfig::client(), &ping);
    assert_eq!(got.expect_ok(), [Event::Ping(Bytes::from_static(b"Hello"))]);
    let mut out = BytesMut::new();
    Writer::server().ping(b"Hello", &mut out).unwrap();
    assert_eq!(&out[..], ping);

    // The unmasked pong a server answers a "Hello" ping with.
    let pong = [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    out.clear();
    Writer::server().pong(b"Hello", &mut out).unwrap();
    assert_eq!(&out[..], pong);
    let got = read_whole(CodecConfig::client(), &pong);
    assert_eq!(got.expect_ok(), [Event::Pong(Bytes::from_static(b"Hello"))]);
}

#[test]
fn masked_pong_hello_as_a_client_answers_a_ping() {
    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        server_reads(&pong).expect_ok(),
        [Event::Pong(Bytes::from_static(b"Hello"))]
    );
    let mut out = BytesMut::new();
    Writer::client(|| RFC_KEY).pong(b"Hello", &mut out).unwrap();
    assert_eq!(&out[..], pong);
}

#[test]
fn binary_256_bytes_has_a_16_bit_length() {
    let payload: Vec<u8> = (0..=255u8).collect();
    let wire = Frame::binary(payload.clone()).to_bytes();
    assert_eq!(&wire[..4], [0x82, 0x7E, 0x01, 0x00]);
    assert_eq!(&wire[4..], &payload[..]);
    let got = read_whole(CodecConfig::client(), &wire);
    assert_eq!(
        got.expect_ok(),
        [Event::Message(Message::Binary(payload.into()))]
    );
}

#[test]
fn binary_64_kib_has_a_64_bit_length() {
    let payload = vec![0xA5u8; 65536];
    let wire = Frame::binary(payload.clone()).to_bytes();
    assert_eq!(
        &wire[..10],
        [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
    );
    assert_eq!(wire.len(), 10 + 65536);
    let mut reader = Reader::new(CodecConfig::client());
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(
        reader.read(&mut buf).unwrap(),
        Some(Event::Message(Message::Binary(payload.into())))
    );
    assert!(buf.is_empty());
}
