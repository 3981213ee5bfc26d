//! Reserved bits (RFC 6455 §5.2): RSV1-3 must be 0 unless an extension that
//! defines them was negotiated; a set bit fails the connection with 1002.

use bytes::BytesMut;
use rfc6455::{CloseCode, Decoder, Event, Frame, Message, OpCode, ProtocolError, Reader, Role};

use crate::support::{default_config, frames_sent_to, peer_mask, raw_header, read_whole, ROLES};

const RSV1: u8 = 0b100;
const RSV2: u8 = 0b010;
const RSV3: u8 = 0b001;

/// One frame of every kind, to carry the RSV bits under test.
fn carriers() -> Vec<Frame> {
    vec![
        Frame::text("Hello"),
        Frame::binary(vec![0u8, 1, 2]),
        Frame::ping("p"),
        Frame::pong("p"),
        Frame::close(None),
        Frame::text(""),
    ]
}

fn with_rsv(mut frame: Frame, rsv: u8) -> Frame {
    frame.rsv = rsv;
    frame
}

#[test]
fn each_rsv_bit_alone_and_every_combination_is_a_protocol_error() {
    for role in ROLES {
        for rsv in 1..=7u8 {
            for frame in carriers() {
                let opcode = frame.opcode;
                let wire = frames_sent_to(role, &[with_rsv(frame, rsv)]);
                let got = read_whole(default_config(role), &wire);
                assert_eq!(
                    got.expect_error(CloseCode::PROTOCOL_ERROR),
                    &ProtocolError::ReservedBits,
                    "{role:?} rsv {rsv:03b} on {opcode:?}"
                );
                assert!(got.events.is_empty());
            }
        }
    }
}

#[test]
fn a_set_rsv_bit_is_refused_from_the_header_before_the_payload() {
    for role in ROLES {
        for rsv in [RSV1, RSV2, RSV3] {
            let header = raw_header(0x80 | (rsv << 4) | 0x2, 50_000, peer_mask(role));
            let mut decoder = Decoder::new(default_config(role));
            assert_eq!(
                decoder.decode(&mut BytesMut::from(&header[..])),
                Err(ProtocolError::ReservedBits)
            );
        }
    }
}

#[test]
fn rsv_on_a_continuation_frame_is_refused() {
    for role in ROLES {
        let frames = [
            Frame::new(OpCode::Text, "ab").with_fin(false),
            with_rsv(Frame::new(OpCode::Continuation, "cd"), RSV1),
        ];
        let got = read_whole(default_config(role), &frames_sent_to(role, &frames));
        assert_eq!(
            got.expect_error(CloseCode::PROTOCOL_ERROR),
            &ProtocolError::ReservedBits
        );
    }
}

#[test]
fn messages_before_the_offending_frame_are_delivered() {
    let frames = [
        Frame::text("first"),
        with_rsv(Frame::text("second"), RSV2),
        Frame::text("never read"),
    ];
    let got = read_whole(
        default_config(Role::Server),
        &frames_sent_to(Role::Server, &frames),
    );
    assert_eq!(got.events, [Event::Message(Message::Text("first".into()))]);
    got.expect_error(CloseCode::PROTOCOL_ERROR);
}

#[test]
fn negotiated_rsv_bits_are_allowed_and_reported() {
    for role in ROLES {
        for allowed in [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3] {
            let cfg = default_config(role).with_allowed_rsv(allowed);
            let frame = with_rsv(Frame::binary(vec![5u8; 10]), allowed);
            let mut buf = BytesMut::from(&frames_sent_to(role, std::slice::from_ref(&frame))[..]);
            let mut decoder = Decoder::new(cfg);
            assert_eq!(decoder.decode(&mut buf).unwrap(), Some(frame), "{role:?}");

            let text = with_rsv(Frame::text("ext"), allowed);
            let mut reader = Reader::new(cfg);
            let mut buf = BytesMut::from(&frames_sent_to(role, &[text])[..]);
            assert_eq!(
                reader.read(&mut buf).unwrap(),
                Some(Event::Message(Message::Text("ext".into())))
            );
        }
    }
}

#[test]
fn bits_outside_the_negotiated_set_are_still_refused() {
    for role in ROLES {
        let cfg = default_config(role).with_allowed_rsv(RSV1);
        for rsv in [RSV2, RSV3, RSV1 | RSV2, RSV1 | RSV3] {
            let wire = frames_sent_to(role, &[with_rsv(Frame::text("x"), rsv)]);
            let got = read_whole(cfg, &wire);
            assert_eq!(
                got.expect_error(CloseCode::PROTOCOL_ERROR),
                &ProtocolError::ReservedBits,
                "{role:?} rsv {rsv:03b} with only RSV1 allowed"
            );
        }
    }
}
