//! Opcodes (RFC 6455 §5.2): the reserved non-control opcodes 0x3-0x7 and the
//! reserved control opcodes 0xB-0xF fail the connection with 1002, wherever
//! they appear and whatever they carry.

use bytes::BytesMut;
use rfc6455::{CloseCode, Event, Frame, Message, OpCode, ProtocolError, Reader, Role};

use crate::support::{
    default_config, frames_sent_to, peer_mask, raw_frame, read_in_chunks, read_whole, ROLES,
};

const RESERVED_DATA: [u8; 5] = [0x3, 0x4, 0x5, 0x6, 0x7];
const RESERVED_CONTROL: [u8; 5] = [0xB, 0xC, 0xD, 0xE, 0xF];

fn reserved() -> impl Iterator<Item = u8> {
    RESERVED_DATA.into_iter().chain(RESERVED_CONTROL)
}

#[test]
fn every_reserved_opcode_is_a_protocol_error_in_both_roles() {
    for role in ROLES {
        for op in reserved() {
            for (fin, payload) in [(0x80, &b""[..]), (0x80, b"reserved"), (0x00, b"frag")] {
                let wire = raw_frame(fin | op, payload, peer_mask(role));
                let got = read_whole(default_config(role), &wire);
                assert_eq!(
                    got.expect_error(CloseCode::PROTOCOL_ERROR),
                    &ProtocolError::ReservedOpcode(op),
                    "{role:?} opcode {op:#x} fin {fin:#x}"
                );
            }
        }
    }
}

#[test]
fn a_reserved_opcode_is_refused_from_the_first_header_bytes() {
    for role in ROLES {
        for op in reserved() {
            let wire = raw_frame(0x80 | op, &[0u8; 300], peer_mask(role));
            let mut reader = Reader::new(default_config(role));
            assert_eq!(
                reader.read(&mut BytesMut::from(&wire[..2])),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }
}

#[test]
fn a_reserved_opcode_after_a_valid_message_fails_after_delivering_it() {
    for role in ROLES {
        for op in reserved() {
            let mut wire = frames_sent_to(role, &[Frame::text("valid")]);
            wire.extend(raw_frame(0x80 | op, b"x", peer_mask(role)));
            wire.extend(frames_sent_to(role, &[Frame::ping("")]));
            let got = read_in_chunks(default_config(role), &wire, 3);
            assert_eq!(
                got.events,
                [Event::Message(Message::Text("valid".into()))],
                "{role:?} {op:#x}"
            );
            assert_eq!(
                got.expect_error(CloseCode::PROTOCOL_ERROR),
                &ProtocolError::ReservedOpcode(op)
            );
        }
    }
}

#[test]
fn a_reserved_opcode_inside_a_fragmented_message_is_refused() {
    for op in reserved() {
        let mut wire = frames_sent_to(
            Role::Server,
            &[Frame::new(OpCode::Text, "part").with_fin(false)],
        );
        wire.extend(raw_frame(0x80 | op, b"", peer_mask(Role::Server)));
        let got = read_whole(default_config(Role::Server), &wire);
        assert_eq!(
            got.expect_error(CloseCode::PROTOCOL_ERROR),
            &ProtocolError::ReservedOpcode(op)
        );
    }
}

#[test]
fn the_defined_opcodes_are_accepted() {
    for role in ROLES {
        let frames = [
            Frame::new(OpCode::Text, "a").with_fin(false),
            Frame::new(OpCode::Continuation, "b"),
            Frame::binary(vec![1u8]),
            Frame::ping(""),
            Frame::pong(""),
            Frame::close(None),
        ];
        let got = read_whole(default_config(role), &frames_sent_to(role, &frames));
        assert_eq!(got.expect_ok().len(), 5, "{role:?}: {:?}", got.events);
    }
}
