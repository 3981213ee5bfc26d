//! Closing (RFC 6455 §5.5.1, §7): every class of close code, malformed close
//! payloads, nothing after a close, and the closing handshake as both sides
//! see it: answer the peer's close once, send nothing after a close.

use bytes::{BufMut, BytesMut};
use rfc6455::{
    CloseCode, CloseFrame, CloseHandshake, CloseState, Event, Frame, OpCode, ProtocolError, Reader,
    Role, WriteError, Writer, MAX_CLOSE_REASON,
};

use crate::support::{
    client_frames, client_key, default_config, frames_sent_to, peer_mask, raw_frame, read_whole,
    server_reads, ROLES,
};

/// A close frame carrying `code` and `reason` as raw bytes, valid or not.
fn close_with(code: u16, reason: &[u8]) -> Frame {
    let mut payload = BytesMut::new();
    payload.put_u16(code);
    payload.put_slice(reason);
    Frame::new(OpCode::Close, payload.freeze())
}

fn is_valid_class(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[test]
fn every_valid_code_is_accepted_and_echoed() {
    let valid: Vec<u16> = (0..=u16::MAX).filter(|&c| is_valid_class(c)).collect();
    assert_eq!(valid.len(), 4 + 8 + 2000);
    for code in valid {
        // A client closes with `code`; the server reads it and answers once.
        let wire = client_frames(&[close_with(code, b"bye")]);
        let got = server_reads(&wire);
        let [Event::Close(Some(peer))] = got.expect_ok() else {
            panic!("code {code}: {:?}", got.events);
        };
        assert_eq!((peer.code, peer.reason.as_str()), (CloseCode(code), "bye"));

        let mut writer = Writer::server();
        let mut out = BytesMut::new();
        assert!(writer.on_peer_close(Some(peer), &mut out));
        let [hi, lo] = code.to_be_bytes();
        assert_eq!(&out[..], [0x88, 0x02, hi, lo], "code {code} echoed");
        assert!(writer.is_closed());

        // The client reads the echo.
        let echo = read_whole(default_config(Role::Client), &out);
        assert_eq!(
            echo.expect_ok(),
            [Event::Close(Some(CloseFrame::new(CloseCode(code), "")))]
        );
    }
}

#[test]
fn every_invalid_code_is_a_protocol_error() {
    let invalid = (0..=u16::MAX).filter(|&c| !is_valid_class(c));
    let mut checked = 0;
    for code in invalid {
        let wire = client_frames(&[close_with(code, b"")]);
        let got = server_reads(&wire);
        assert_eq!(
            got.expect_error(CloseCode::PROTOCOL_ERROR),
            &ProtocolError::InvalidCloseCode(code)
        );
        checked += 1;
    }
    assert_eq!(checked, 65536 - 2012);
}

#[test]
fn the_reserved_local_only_codes_are_refused_on_the_wire() {
    for role in ROLES {
        for code in [1004u16, 1005, 1006, 1015, 0, 999, 1016, 2999, 5000, 65535] {
            let wire = frames_sent_to(role, &[close_with(code, b"reason")]);
            let got = read_whole(default_config(role), &wire);
            assert_eq!(
                got.expect_error(CloseCode::PROTOCOL_ERROR),
                &ProtocolError::InvalidCloseCode(code),
                "{role:?}"
            );
        }
    }
}

#[test]
fn an_empty_close_is_answered_with_an_empty_close() {
    for role in ROLES {
        let wire = frames_sent_to(role, &[Frame::close(None)]);
        let got = read_whole(default_config(role), &wire);
        assert_eq!(got.expect_ok(), [Event::Close(None)]);
        let mut writer = Writer::server();
        let mut out = BytesMut::new();
        assert!(writer.on_peer_close(None, &mut out));
        assert_eq!(&out[..], [0x88, 0x00]);
    }
}

#[test]
fn a_one_byte_close_payload_is_a_protocol_error() {
    for role in ROLES {
        for byte in [0x03u8, 0xE8, 0x00] {
            let wire = raw_frame(0x88, &[byte], peer_mask(role));
            let got = read_whole(default_config(role), &wire);
            assert_eq!(
                got.expect_error(CloseCode::PROTOCOL_ERROR),
                &ProtocolError::CloseTooShort
            );
        }
    }
}

#[test]
fn a_reason_that_is_not_utf8_is_rejected_with_1007() {
    let bad_reasons: [&[u8]; 6] = [
        b"\xff",
        b"bye \xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"cut \xe2\x82",
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    ];
    for role in ROLES {
        for reason in bad_reasons {
            let wire = frames_sent_to(role, &[close_with(1000, reason)]);
            let got = read_whole(default_config(role), &wire);
            assert_eq!(
                got.expect_error(CloseCode::INVALID_PAYLOAD),
                &ProtocolError::InvalidCloseReason,
                "{role:?} {reason:x?}"
            );
        }
    }
}

#[test]
fn a_123_byte_reason_fits_and_124_does_not() {
    assert_eq!(MAX_CLOSE_REASON, 123);
    for role in ROLES {
        let reason = "r".repeat(123);
        let wire = frames_sent_to(role, &[close_with(1000, reason.as_bytes())]);
        let got = read_whole(default_config(role), &wire);
        assert_eq!(
            got.expect_ok(),
            [Event::Close(Some(CloseFrame::new(
                CloseCode::NORMAL,
                &reason
            )))]
        );

        // 2 + 124 = 126 bytes: too long for a control frame.
        let wire = raw_frame(0x88, &[b'r'; 126], peer_mask(role));
        let got = read_whole(default_config(role), &wire);
        assert_eq!(
            got.expect_error(CloseCode::PROTOCOL_ERROR),
            &ProtocolError::ControlFrameTooLong
        );
    }
}

#[test]
fn multi_byte_reasons_are_kept_whole() {
    let reason = "au revoir, ça va 👋";
    let wire = client_frames(&[close_with(4001, reason.as_bytes())]);
    assert_eq!(
        server_reads(&wire).expect_ok(),
        [Event::Close(Some(CloseFrame::new(CloseCode(4001), reason)))]
    );
    // A reason longer than a close frame allows is cut at a character boundary.
    let long = "é".repeat(100);
    let frame = CloseFrame::new(CloseCode::NORMAL, &long);
    assert_eq!(frame.reason.len(), 122);
    let wire = client_frames(&[Frame::close(Some(&frame))]);
    assert_eq!(server_reads(&wire).expect_ok(), [Event::Close(Some(frame))]);
}

#[test]
fn any_frame_after_a_close_is_a_protocol_error() {
    let late = [
        Frame::text("late"),
        Frame::binary(vec![1u8]),
        Frame::ping(""),
        Frame::pong(""),
        Frame::close(None),
    ];
    for role in ROLES {
        for frame in &late {
            let wire = frames_sent_to(role, &[Frame::close(None), frame.clone()]);
            let got = read_whole(default_config(role), &wire);
            assert_eq!(got.events, [Event::Close(None)]);
            assert_eq!(
                got.expect_error(CloseCode::PROTOCOL_ERROR),
                &ProtocolError::FrameAfterClose,
                "{role:?} {:?} after close",
                frame.opcode
            );
        }
        // Even a single stray byte: the peer promised to send nothing more.
        let mut reader = Reader::new(default_config(role));
        let mut buf = BytesMut::from(&frames_sent_to(role, &[Frame::close(None)])[..]);
        assert_eq!(reader.read(&mut buf).unwrap(), Some(Event::Close(None)));
        assert!(reader.is_closed());
        assert_eq!(reader.read(&mut buf), Ok(None));
        buf.put_u8(0x81);
        assert_eq!(reader.read(&mut buf), Err(ProtocolError::FrameAfterClose));
    }
}

#[test]
fn a_fragmented_close_is_a_protocol_error() {
    let payload = [0x03, 0xE8];
    let wire = raw_frame(0x08, &payload, Some(client_key(0)));
    assert_eq!(
        server_reads(&wire).expect_error(CloseCode::PROTOCOL_ERROR),
        &ProtocolError::FragmentedControlFrame
    );
}

#[test]
fn peer_closes_first_we_answer_once_then_send_nothing() {
    for role in ROLES {
        let mut writer = match role {
            Role::Server => Writer::server(),
            Role::Client => Writer::client(|| client_key(1)),
        };
        let mut out = BytesMut::new();
        writer.text("still open", &mut out).unwrap();
        assert_eq!(writer.close_state(), CloseState::Open);

        let peer = CloseFrame::new(CloseCode::GOING_AWAY, "shutting down");
        out.clear();
        assert!(writer.on_peer_close(Some(&peer), &mut out), "answered");
        let answer = read_whole(
            default_config(match role {
                Role::Server => Role::Client,
                Role::Client => Role::Server,
            }),
            &out,
        );
        assert_eq!(
            answer.expect_ok(),
            [Event::Close(Some(CloseFrame::new(
                CloseCode::GOING_AWAY,
                ""
            )))]
        );
        assert!(writer.is_closed());

        out.clear();
        assert!(
            !writer.on_peer_close(Some(&peer), &mut out),
            "answered twice"
        );
        assert_eq!(writer.text("x", &mut out), Err(WriteError::Closed));
        assert_eq!(writer.binary(b"x", &mut out), Err(WriteError::Closed));
        assert_eq!(writer.ping(b"", &mut out), Err(WriteError::Closed));
        assert_eq!(writer.pong(b"", &mut out), Err(WriteError::Closed));
        assert_eq!(writer.close(None, &mut out), Err(WriteError::Closed));
        assert_eq!(
            writer.frame(&Frame::close(None), &mut out),
            Err(WriteError::Closed)
        );
        assert!(out.is_empty(), "nothing may be sent after the close");
    }
}

#[test]
fn we_close_first_stop_sending_and_do_not_answer_the_reply() {
    let mut writer = Writer::server();
    let mut out = BytesMut::new();
    writer
        .close(Some(&CloseFrame::new(CloseCode::NORMAL, "done")), &mut out)
        .unwrap();
    assert_eq!(&out[..4], [0x88, 0x06, 0x03, 0xE8]);
    assert_eq!(&out[4..], b"done");
    assert_eq!(writer.close_state(), CloseState::CloseSent);
    out.clear();
    assert_eq!(writer.text("late", &mut out), Err(WriteError::Closed));
    assert_eq!(writer.ping(b"", &mut out), Err(WriteError::Closed));
    assert_eq!(writer.close(None, &mut out), Err(WriteError::Closed));

    // The peer's reply completes the handshake without another frame from us.
    let reply = CloseFrame::new(CloseCode::NORMAL, "");
    assert!(!writer.on_peer_close(Some(&reply), &mut out));
    assert!(out.is_empty());
    assert!(writer.is_closed());
}

#[test]
fn the_handshake_state_machine_walks_both_paths() {
    let mut ours_first = CloseHandshake::new();
    assert!(ours_first.can_send());
    assert!(ours_first.on_send());
    assert_eq!(ours_first.state(), CloseState::CloseSent);
    assert!(!ours_first.can_send());
    assert!(!ours_first.on_send(), "a second close is never sent");
    assert_eq!(
        ours_first.on_receive(None),
        None,
        "the reply is not answered"
    );
    assert_eq!(ours_first.state(), CloseState::Closed);

    let mut theirs_first = CloseHandshake::new();
    let peer = CloseFrame::new(CloseCode(4321), "app-specific");
    let answer = theirs_first
        .on_receive(Some(&peer))
        .expect("an answer is due");
    assert_eq!(answer.map(|a| a.code), Some(CloseCode(4321)), "code echoed");
    assert_eq!(theirs_first.state(), CloseState::CloseReceived);
    // §5.5.1: a message in progress may still be finished before answering.
    assert!(theirs_first.can_send());
    assert_eq!(theirs_first.on_receive(Some(&peer)), None, "answered once");
    assert!(theirs_first.on_send());
    assert!(theirs_first.is_closed());
    assert!(!theirs_first.can_send());
    assert!(!theirs_first.on_send());
}

#[test]
fn a_close_frame_written_through_frame_counts_as_the_close() {
    let mut writer = Writer::server();
    let mut out = BytesMut::new();
    let close = Frame::close(Some(&CloseFrame::new(CloseCode::POLICY_VIOLATION, "no")));
    writer.frame(&close, &mut out).unwrap();
    assert_eq!(writer.close_state(), CloseState::CloseSent);
    assert_eq!(
        writer.frame(&Frame::text("x"), &mut out),
        Err(WriteError::Closed)
    );
    let got = read_whole(default_config(Role::Client), &out);
    assert_eq!(
        got.expect_ok(),
        [Event::Close(Some(CloseFrame::new(
            CloseCode::POLICY_VIOLATION,
            "no"
        )))]
    );
}
