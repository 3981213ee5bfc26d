//! Pings and pongs (RFC 6455 §5.5.2, §5.5.3): every payload size a control
//! frame may carry is answered byte for byte, 126 bytes is a protocol error,
//! and unsolicited pongs are surfaced and need no answer.

use bytes::{Bytes, BytesMut};
use rfc6455::{
    CloseCode, Event, Frame, Message, OpCode, ProtocolError, Reader, Role, WriteError, Writer,
};

use crate::support::{
    client_key, default_config, frames_sent_to, peer_mask, raw_frame, raw_header, read_in_chunks,
    read_whole, ROLES,
};

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 37 + 11) as u8).collect()
}

/// The writer an endpoint in `role` answers with.
fn writer_for(role: Role) -> Writer {
    match role {
        Role::Server => Writer::server(),
        Role::Client => {
            let mut n = 100;
            Writer::client(move || {
                n += 1;
                client_key(n)
            })
        }
    }
}

fn peer_of(role: Role) -> Role {
    match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    }
}

#[test]
fn every_ping_payload_from_0_to_125_bytes_is_echoed_exactly() {
    for role in ROLES {
        for len in 0..=125 {
            let data = payload(len);
            let wire = frames_sent_to(role, &[Frame::ping(data.clone())]);
            let got = read_whole(default_config(role), &wire);
            let [Event::Ping(received)] = got.expect_ok() else {
                panic!(
                    "{role:?} len {len}: expected one ping, got {:?}",
                    got.events
                );
            };
            assert_eq!(&received[..], &data[..]);

            // Answer it the way an application would, and let the peer read the pong.
            let mut out = BytesMut::new();
            writer_for(role).pong(received, &mut out).unwrap();
            assert_eq!(out[0], 0x8A, "a final pong");
            let answer = read_whole(default_config(peer_of(role)), &out);
            assert_eq!(
                answer.expect_ok(),
                [Event::Pong(Bytes::from(data))],
                "{role:?} len {len}"
            );
        }
    }
}

#[test]
fn pings_split_across_reads_are_still_answered_exactly() {
    for role in ROLES {
        let pings: Vec<Frame> = [0, 1, 64, 125].map(|n| Frame::ping(payload(n))).to_vec();
        let wire = frames_sent_to(role, &pings);
        for chunk in [1, 3, 7] {
            let got = read_in_chunks(default_config(role), &wire, chunk);
            let expected: Vec<Event> = pings
                .iter()
                .map(|f| Event::Ping(f.payload.clone()))
                .collect();
            assert_eq!(got.expect_ok(), expected, "{role:?} chunk {chunk}");
        }
    }
}

#[test]
fn a_126_byte_ping_is_a_protocol_error() {
    for role in ROLES {
        let wire = raw_frame(0x89, &payload(126), peer_mask(role));
        let err = read_whole(default_config(role), &wire)
            .expect_error(CloseCode::PROTOCOL_ERROR)
            .clone();
        assert_eq!(err, ProtocolError::ControlFrameTooLong);
        // The two fixed header bytes already tell: nothing more is awaited.
        let header = raw_header(0x89, 126, peer_mask(role));
        let mut reader = Reader::new(default_config(role));
        assert_eq!(
            reader.read(&mut BytesMut::from(&header[..2])),
            Err(ProtocolError::ControlFrameTooLong)
        );
    }
}

#[test]
fn oversized_pongs_and_pings_with_64_bit_lengths_are_protocol_errors() {
    for role in ROLES {
        for (first_byte, len) in [(0x8A, 126u64), (0x89, 65536), (0x8A, 1 << 40)] {
            let header = raw_header(first_byte, len, peer_mask(role));
            let got = read_whole(default_config(role), &header);
            assert_eq!(
                got.expect_error(CloseCode::PROTOCOL_ERROR),
                &ProtocolError::ControlFrameTooLong
            );
        }
    }
}

#[test]
fn a_writer_refuses_to_send_a_126_byte_ping_or_pong() {
    for role in ROLES {
        let mut out = BytesMut::new();
        let mut writer = writer_for(role);
        assert_eq!(
            writer.ping(&payload(126), &mut out),
            Err(WriteError::ControlTooLong)
        );
        assert_eq!(
            writer.pong(&payload(126), &mut out),
            Err(WriteError::ControlTooLong)
        );
        assert!(out.is_empty(), "nothing written for a refused frame");
    }
}

#[test]
fn unsolicited_pongs_are_surfaced_and_need_no_answer() {
    for role in ROLES {
        let frames = [
            Frame::pong(""),
            Frame::pong("heartbeat"),
            Frame::text("after the pongs"),
        ];
        let wire = frames_sent_to(role, &frames);
        let got = read_whole(default_config(role), &wire);
        assert_eq!(
            got.expect_ok(),
            [
                Event::Pong(Bytes::new()),
                Event::Pong(Bytes::from_static(b"heartbeat")),
                Event::Message(Message::Text("after the pongs".into())),
            ]
        );
    }
}

#[test]
fn a_ping_inside_a_fragmented_message_is_answered_and_the_message_survives() {
    for role in ROLES {
        let frames = [
            Frame::new(OpCode::Binary, vec![1u8, 2]).with_fin(false),
            Frame::ping("are you there"),
            Frame::new(OpCode::Continuation, vec![3u8]),
        ];
        let wire = frames_sent_to(role, &frames);
        let got = read_whole(default_config(role), &wire);
        let events = got.expect_ok();
        assert_eq!(events[0], Event::Ping(Bytes::from_static(b"are you there")));
        assert_eq!(
            events[1],
            Event::Message(Message::Binary(Bytes::from_static(&[1, 2, 3])))
        );
        let mut out = BytesMut::new();
        let Event::Ping(p) = &events[0] else {
            unreachable!("checked above")
        };
        writer_for(role).pong(p, &mut out).unwrap();
        let answer = read_whole(default_config(peer_of(role)), &out);
        assert_eq!(
            answer.expect_ok(),
            [Event::Pong(Bytes::from_static(b"are you there"))]
        );
    }
}

#[test]
fn many_pings_are_answered_in_order() {
    let pings: Vec<Frame> = (0..50).map(|i| Frame::ping(format!("ping {i}"))).collect();
    let wire = frames_sent_to(Role::Server, &pings);
    let got = read_in_chunks(default_config(Role::Server), &wire, 5);
    let mut writer = Writer::server();
    let mut out = BytesMut::new();
    for event in got.expect_ok() {
        let Event::Ping(p) = event else {
            panic!("expected a ping, got {event:?}")
        };
        writer.pong(p, &mut out).unwrap();
    }
    let answers = read_whole(default_config(Role::Client), &out);
    let expected: Vec<Event> = (0..50)
        .map(|i| Event::Pong(Bytes::from(format!("ping {i}"))))
        .collect();
    assert_eq!(answers.expect_ok(), expected);
}

#[test]
fn ping_payloads_need_not_be_utf8() {
    let data = vec![0xFFu8, 0xFE, 0x80, 0x00];
    let wire = frames_sent_to(Role::Server, &[Frame::ping(data.clone())]);
    assert_eq!(
        read_whole(default_config(Role::Server), &wire).expect_ok(),
        [Event::Ping(Bytes::from(data))]
    );
}
