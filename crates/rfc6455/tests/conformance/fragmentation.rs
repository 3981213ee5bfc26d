//! Fragmentation (RFC 6455 §5.4): messages in many frames, control frames
//! between fragments, and every ordering violation.

use bytes::Bytes;
use rfc6455::{CloseCode, CloseFrame, Event, Frame, Message, OpCode, ProtocolError, Role};

use crate::support::{
    default_config, frames_sent_to, peer_mask, raw_frame, read_in_chunks, read_whole, text_of_len,
    ROLES,
};

/// `data` as a message of fragments of `size` bytes (at least one frame).
fn fragments(opcode: OpCode, data: &[u8], size: usize) -> Vec<Frame> {
    let pieces: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(size).collect()
    };
    let last = pieces.len() - 1;
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let op = if i == 0 { opcode } else { OpCode::Continuation };
            Frame::new(op, Bytes::copy_from_slice(piece)).with_fin(i == last)
        })
        .collect()
}

fn text_event(s: &str) -> Event {
    Event::Message(Message::Text(s.to_owned().into()))
}

#[test]
fn text_and_binary_in_several_fragments() {
    for role in ROLES {
        let text = text_of_len(1000);
        for size in [1, 2, 3, 10, 333, 999, 1000] {
            let wire = frames_sent_to(role, &fragments(OpCode::Text, text.as_bytes(), size));
            assert_eq!(
                read_whole(default_config(role), &wire).expect_ok(),
                [text_event(&text)],
                "{role:?} text in {size}-byte fragments"
            );
            let data: Vec<u8> = (0..1000u32).map(|i| (i % 253) as u8).collect();
            let wire = frames_sent_to(role, &fragments(OpCode::Binary, &data, size));
            assert_eq!(
                read_whole(default_config(role), &wire).expect_ok(),
                [Event::Message(Message::Binary(data.into()))],
                "{role:?} binary in {size}-byte fragments"
            );
        }
    }
}

#[test]
fn one_byte_fragments_delivered_one_byte_at_a_time() {
    for role in ROLES {
        let text = text_of_len(300);
        let wire = frames_sent_to(role, &fragments(OpCode::Text, text.as_bytes(), 1));
        assert_eq!(
            read_in_chunks(default_config(role), &wire, 1).expect_ok(),
            [text_event(&text)]
        );
    }
}

#[test]
fn empty_fragments_are_allowed_anywhere() {
    for role in ROLES {
        let frames = [
            Frame::new(OpCode::Text, "").with_fin(false),
            Frame::new(OpCode::Continuation, "").with_fin(false),
            Frame::new(OpCode::Continuation, "Hello").with_fin(false),
            Frame::new(OpCode::Continuation, ""),
        ];
        assert_eq!(
            read_whole(default_config(role), &frames_sent_to(role, &frames)).expect_ok(),
            [text_event("Hello")]
        );
        let empty = [
            Frame::new(OpCode::Binary, "").with_fin(false),
            Frame::new(OpCode::Continuation, ""),
        ];
        assert_eq!(
            read_whole(default_config(role), &frames_sent_to(role, &empty)).expect_ok(),
            [Event::Message(Message::Binary(Bytes::new()))]
        );
    }
}

#[test]
fn control_frames_between_fragments_are_delivered_first() {
    for role in ROLES {
        let frames = [
            Frame::new(OpCode::Text, "frag").with_fin(false),
            Frame::ping("1"),
            Frame::new(OpCode::Continuation, "men").with_fin(false),
            Frame::pong("2"),
            Frame::ping("3"),
            Frame::new(OpCode::Continuation, "ted"),
            Frame::text("next"),
        ];
        let wire = frames_sent_to(role, &frames);
        let expected = [
            Event::Ping(Bytes::from_static(b"1")),
            Event::Pong(Bytes::from_static(b"2")),
            Event::Ping(Bytes::from_static(b"3")),
            text_event("fragmented"),
            text_event("next"),
        ];
        for chunk in [wire.len(), 1, 5] {
            assert_eq!(
                read_in_chunks(default_config(role), &wire, chunk).expect_ok(),
                expected,
                "{role:?} chunk {chunk}"
            );
        }
    }
}

#[test]
fn a_close_between_fragments_ends_the_conversation() {
    for role in ROLES {
        let frames = [
            Frame::new(OpCode::Binary, vec![1u8]).with_fin(false),
            Frame::close(Some(&CloseFrame::new(CloseCode::GOING_AWAY, ""))),
        ];
        let got = read_whole(default_config(role), &frames_sent_to(role, &frames));
        assert_eq!(
            got.expect_ok(),
            [Event::Close(Some(CloseFrame::new(
                CloseCode::GOING_AWAY,
                ""
            )))]
        );
    }
}

#[test]
fn a_continuation_without_a_start_is_a_protocol_error() {
    for role in ROLES {
        for fin in [true, false] {
            let frames = [Frame::new(OpCode::Continuation, "orphan").with_fin(fin)];
            let got = read_whole(default_config(role), &frames_sent_to(role, &frames));
            assert_eq!(
                got.expect_error(CloseCode::PROTOCOL_ERROR),
                &ProtocolError::UnexpectedContinuation,
                "{role:?} fin {fin}"
            );
        }
    }
}

#[test]
fn a_continuation_after_a_complete_message_is_a_protocol_error() {
    for role in ROLES {
        let frames = [
            Frame::text("complete"),
            Frame::ping(""),
            Frame::new(OpCode::Continuation, "late"),
        ];
        let got = read_whole(default_config(role), &frames_sent_to(role, &frames));
        assert_eq!(
            got.events,
            [text_event("complete"), Event::Ping(Bytes::new())]
        );
        assert_eq!(
            got.expect_error(CloseCode::PROTOCOL_ERROR),
            &ProtocolError::UnexpectedContinuation
        );
    }
}

#[test]
fn a_new_data_frame_inside_an_open_message_is_a_protocol_error() {
    for role in ROLES {
        for (first, intruder) in [
            (OpCode::Text, OpCode::Text),
            (OpCode::Text, OpCode::Binary),
            (OpCode::Binary, OpCode::Text),
            (OpCode::Binary, OpCode::Binary),
        ] {
            for intruder_fin in [true, false] {
                let frames = [
                    Frame::new(first, "one").with_fin(false),
                    Frame::new(intruder, "two").with_fin(intruder_fin),
                ];
                let got = read_whole(default_config(role), &frames_sent_to(role, &frames));
                assert_eq!(
                    got.expect_error(CloseCode::PROTOCOL_ERROR),
                    &ProtocolError::ExpectedContinuation,
                    "{role:?} {first:?} then {intruder:?}"
                );
                assert!(got.events.is_empty());
            }
        }
    }
}

#[test]
fn an_unfinished_message_yields_nothing_until_its_final_fragment() {
    let frames = [
        Frame::new(OpCode::Text, "a").with_fin(false),
        Frame::new(OpCode::Continuation, "b").with_fin(false),
    ];
    let got = read_whole(
        default_config(Role::Server),
        &frames_sent_to(Role::Server, &frames),
    );
    assert!(got.expect_ok().is_empty());
}

#[test]
fn fragmented_control_frames_are_protocol_errors() {
    for role in ROLES {
        for op in [0x8u8, 0x9, 0xA] {
            for payload in [&b""[..], b"ab"] {
                // FIN clear on a control frame, on its own...
                let wire = raw_frame(op, payload, peer_mask(role));
                let got = read_whole(default_config(role), &wire);
                assert_eq!(
                    got.expect_error(CloseCode::PROTOCOL_ERROR),
                    &ProtocolError::FragmentedControlFrame,
                    "{role:?} opcode {op:#x}"
                );
                // ...and inside a fragmented data message.
                let mut wire =
                    frames_sent_to(role, &[Frame::new(OpCode::Text, "x").with_fin(false)]);
                wire.extend(raw_frame(op, payload, peer_mask(role)));
                let got = read_whole(default_config(role), &wire);
                assert_eq!(
                    got.expect_error(CloseCode::PROTOCOL_ERROR),
                    &ProtocolError::FragmentedControlFrame
                );
            }
            // The first header byte already tells: no payload is awaited.
            let wire = raw_frame(op, &[7u8; 100], peer_mask(role));
            let got = read_whole(default_config(role), &wire[..2]);
            assert_eq!(
                got.expect_error(CloseCode::PROTOCOL_ERROR),
                &ProtocolError::FragmentedControlFrame
            );
        }
    }
}

#[test]
fn a_message_can_follow_a_fragmented_one() {
    for role in ROLES {
        let mut frames = fragments(OpCode::Binary, &[9u8; 10], 3);
        frames.extend(fragments(OpCode::Text, "second".as_bytes(), 2));
        frames.push(Frame::text("third"));
        let got = read_whole(default_config(role), &frames_sent_to(role, &frames));
        assert_eq!(
            got.expect_ok(),
            [
                Event::Message(Message::Binary(vec![9u8; 10].into())),
                text_event("second"),
                text_event("third"),
            ]
        );
    }
}
