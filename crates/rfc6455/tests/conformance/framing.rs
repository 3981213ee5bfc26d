//! Framing (RFC 6455 §5.2): payload lengths at every encoding boundary, text
//! and binary, both roles, delivered whole and in read-sized chunks; length
//! encoding rules and masking by role.

use bytes::BytesMut;
use rfc6455::{CloseCode, Decoder, Event, Frame, Message, OpCode, ProtocolError, Role};

use crate::support::{
    client_frames, default_config, expect_error, frames_sent_to, message_of_len, peer_mask,
    raw_header, read_in_chunks, read_whole, roomy, server_frames, ROLES,
};

/// Lengths on both sides of the 7-bit, 16-bit and 64-bit encodings.
const LENGTHS: [usize; 7] = [0, 125, 126, 127, 128, 65535, 65536];
/// Transport read sizes: pathological, odd, and a typical socket read.
const CHUNKS: [usize; 3] = [1, 7, 4096];
/// "Several MiB", deliberately not a power of two.
const SEVERAL_MIB: usize = (3 << 20) + 333;

/// The 7-bit length field and header size a minimal encoding uses for `len`.
fn expected_length_field(len: usize) -> (u8, usize) {
    match len {
        0..=125 => (len as u8, 2),
        126..=65535 => (126, 4),
        _ => (127, 10),
    }
}

fn roundtrip(role: Role, text: bool, len: usize, chunks: &[usize]) {
    let message = message_of_len(text, len);
    let wire = frames_sent_to(role, &[message.clone().into_frame()]);
    let (field, header_len) = expected_length_field(len);
    let masked = role == Role::Server;
    assert_eq!(wire[1] & 0x7F, field, "length field for {len}");
    assert_eq!(wire[1] & 0x80 != 0, masked, "mask bit for {role:?}");
    assert_eq!(wire.len(), header_len + usize::from(masked) * 4 + len);

    let expected = [Event::Message(message)];
    let whole = read_whole(roomy(role), &wire);
    assert_eq!(whole.expect_ok(), expected, "{role:?} len {len} whole");
    for &chunk in chunks {
        let got = read_in_chunks(roomy(role), &wire, chunk);
        assert!(
            got.expect_ok() == expected,
            "{role:?} text={text} len {len} chunk {chunk}: events differ"
        );
    }
}

#[test]
fn text_payload_lengths_at_encoding_boundaries() {
    for role in ROLES {
        for len in LENGTHS {
            roundtrip(role, true, len, &CHUNKS);
        }
    }
}

#[test]
fn binary_payload_lengths_at_encoding_boundaries() {
    for role in ROLES {
        for len in LENGTHS {
            roundtrip(role, false, len, &CHUNKS);
        }
    }
}

#[test]
fn several_mib_text_in_both_roles() {
    for role in ROLES {
        roundtrip(role, true, SEVERAL_MIB, &CHUNKS);
    }
}

#[test]
fn several_mib_binary_in_both_roles() {
    for role in ROLES {
        roundtrip(role, false, SEVERAL_MIB, &CHUNKS);
    }
}

#[test]
fn frames_of_every_length_back_to_back_in_one_stream() {
    for role in ROLES {
        let messages: Vec<Message> = LENGTHS
            .iter()
            .enumerate()
            .map(|(i, &len)| message_of_len(i % 2 == 0, len))
            .collect();
        let frames: Vec<Frame> = messages.iter().cloned().map(Message::into_frame).collect();
        let wire = frames_sent_to(role, &frames);
        let expected: Vec<Event> = messages.into_iter().map(Event::Message).collect();
        for chunk in [wire.len(), 1, 7, 4096] {
            let got = read_in_chunks(roomy(role), &wire, chunk);
            assert!(got.expect_ok() == expected, "{role:?} chunk {chunk}");
        }
    }
}

#[test]
fn decoded_payload_shares_the_receive_buffer() {
    let wire = client_frames(&[Frame::binary(vec![1u8; 300])]);
    let mut buf = BytesMut::from(&wire[..]);
    let payload_start = buf.as_ptr() as usize + 4 + 4;
    let mut decoder = Decoder::new(default_config(Role::Server));
    let frame = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        frame.payload.as_ptr() as usize,
        payload_start,
        "payload was copied"
    );
    assert_eq!(&frame.payload[..], [1u8; 300]);
}

#[test]
fn needed_reports_the_missing_bytes() {
    let wire = client_frames(&[Frame::binary(vec![9u8; 1000])]);
    let mut decoder = Decoder::new(default_config(Role::Server));
    let mut buf = BytesMut::from(&wire[..1]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.needed(), 1, "the second header byte");
    buf.extend_from_slice(&wire[1..2]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.needed(), 6, "16-bit length and masking key");
    buf.extend_from_slice(&wire[2..8 + 10]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.needed(), 990);
    buf.extend_from_slice(&wire[18..]);
    let frame = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame.payload.len(), 1000);
    assert!(buf.is_empty());
}

#[test]
fn a_server_refuses_unmasked_frames_and_a_client_masked_ones() {
    let frames = [
        Frame::text("hi"),
        Frame::binary(vec![0u8; 200]),
        Frame::ping("p"),
    ];
    for frame in &frames {
        let unmasked = server_frames(std::slice::from_ref(frame));
        let err = read_whole(default_config(Role::Server), &unmasked)
            .expect_error(CloseCode::PROTOCOL_ERROR)
            .clone();
        assert_eq!(err, ProtocolError::UnmaskedFrame);
        let masked = client_frames(std::slice::from_ref(frame));
        let err = read_whole(default_config(Role::Client), &masked)
            .expect_error(CloseCode::PROTOCOL_ERROR)
            .clone();
        assert_eq!(err, ProtocolError::MaskedFrame);
    }
}

#[test]
fn role_violations_are_caught_from_the_header_alone() {
    // Only the two fixed header bytes of a frame announcing 100 KiB.
    let unmasked = raw_header(0x82, 100_000, None);
    let mut decoder = Decoder::new(default_config(Role::Server));
    expect_error(
        decoder.decode(&mut BytesMut::from(&unmasked[..])),
        CloseCode::PROTOCOL_ERROR,
    );
}

#[test]
fn non_minimal_lengths_are_refused() {
    for role in ROLES {
        let mask = peer_mask(role);
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let cases: [Vec<u8>; 3] = [
            // 5 bytes in the 16-bit form.
            vec![0x82, mask_bit | 126, 0x00, 0x05],
            // 125 bytes in the 16-bit form: the boundary case.
            vec![0x82, mask_bit | 126, 0x00, 125],
            // 65535 bytes in the 64-bit form.
            vec![0x82, mask_bit | 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF],
        ];
        for wire in cases {
            let mut decoder = Decoder::new(roomy(role));
            let err = expect_error(
                decoder.decode(&mut BytesMut::from(&wire[..])),
                CloseCode::PROTOCOL_ERROR,
            );
            assert_eq!(err, ProtocolError::NonMinimalLength, "{role:?} {wire:x?}");
        }
    }
}

#[test]
fn a_64_bit_length_with_the_top_bit_set_is_refused() {
    for role in ROLES {
        let mask_bit = if peer_mask(role).is_some() { 0x80 } else { 0 };
        for top in [0x80u8, 0xFF] {
            let wire = [0x82, mask_bit | 127, top, 0, 0, 0, 0, 0, 0, 1];
            let mut decoder = Decoder::new(roomy(role));
            let err = expect_error(
                decoder.decode(&mut BytesMut::from(&wire[..])),
                CloseCode::PROTOCOL_ERROR,
            );
            assert_eq!(err, ProtocolError::LengthTopBit);
        }
    }
}

#[test]
fn a_frame_split_before_its_payload_resumes_with_the_right_mask_phase() {
    // Split the payload at every offset so each key phase is the resume point.
    let frame = Frame::new(OpCode::Binary, (0..40u8).collect::<Vec<_>>());
    let wire = client_frames(std::slice::from_ref(&frame));
    for cut in 0..=wire.len() {
        let mut decoder = Decoder::new(default_config(Role::Server));
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut got = decoder.decode(&mut buf).unwrap();
        if got.is_none() {
            buf.extend_from_slice(&wire[cut..]);
            got = decoder.decode(&mut buf).unwrap();
        }
        assert_eq!(got.as_ref(), Some(&frame), "cut at {cut}");
    }
}
