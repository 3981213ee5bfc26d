//! UTF-8 in text messages (RFC 6455 §5.6, §8.1): valid and invalid sequences,
//! fail-fast at the fragment holding the first invalid byte, code points split
//! anywhere, and the strict case: invalid bytes inside a frame whose payload has
//! not fully arrived are rejected with 1007 as soon as they are in the buffer.

use bytes::{Bytes, BytesMut};
use rfc6455::{CloseCode, Event, Frame, Message, OpCode, ProtocolError, Reader, Role};

use crate::support::{
    default_config, first_bad_byte, frames_sent_to, read_in_chunks, read_whole, ROLES,
};

/// Valid UTF-8, including every encoding-length boundary and the code points
/// next to the surrogate range and at the top of Unicode.
const VALID: &[(&str, &[u8])] = &[
    ("empty", b""),
    ("ascii with NUL and DEL", b"Hello \x00 \x7f"),
    ("greek kosme", "κόσμε".as_bytes()),
    ("first 2-byte U+0080", b"\xc2\x80"),
    ("last 2-byte U+07FF", b"\xdf\xbf"),
    ("first 3-byte U+0800", b"\xe0\xa0\x80"),
    ("before the surrogates U+D7FF", b"\xed\x9f\xbf"),
    ("after the surrogates U+E000", b"\xee\x80\x80"),
    ("replacement character U+FFFD", b"\xef\xbf\xbd"),
    ("noncharacter U+FFFE", b"\xef\xbf\xbe"),
    ("last 3-byte U+FFFF", b"\xef\xbf\xbf"),
    ("first 4-byte U+10000", b"\xf0\x90\x80\x80"),
    ("G clef U+1D11E", b"\xf0\x9d\x84\x9e"),
    ("last code point U+10FFFF", b"\xf4\x8f\xbf\xbf"),
    ("mixed widths", "a€𝄞ü中😀z".as_bytes()),
];

/// Invalid UTF-8: every class the well-known test vectors cover.
const INVALID: &[(&str, &[u8])] = &[
    ("lone continuation 0x80", b"\x80"),
    ("lone continuation 0xbf", b"\xbf"),
    ("continuations after ascii", b"ab\x80\xbf\x80"),
    ("2-byte lead then space", b"\xc2 x"),
    ("3-byte lead then space", b"\xe1 x"),
    ("4-byte lead then ascii", b"\xf1ab"),
    ("3-byte lead, one continuation, ascii", b"\xe2\x82x"),
    ("2-byte cut off at the end", b"ok\xc2"),
    ("3-byte cut off at the end", b"ok\xe2\x82"),
    ("4-byte cut off at the end", b"ok\xf0\x9f\x98"),
    ("5-byte form", b"\xf8\x88\x80\x80\x80"),
    ("6-byte form", b"\xfc\x84\x80\x80\x80\x80"),
    ("byte 0xfe", b"a\xfe"),
    ("byte 0xff", b"a\xff"),
    ("0xfe 0xfe 0xff 0xff", b"\xfe\xfe\xff\xff"),
    ("overlong slash, 2 bytes", b"\xc0\xaf"),
    ("overlong slash, 3 bytes", b"\xe0\x80\xaf"),
    ("overlong slash, 4 bytes", b"\xf0\x80\x80\xaf"),
    ("overlong NUL, 2 bytes", b"\xc0\x80"),
    ("overlong NUL, 3 bytes", b"\xe0\x80\x80"),
    ("largest overlong, 2 bytes", b"\xc1\xbf"),
    ("largest overlong, 3 bytes", b"\xe0\x9f\xbf"),
    ("largest overlong, 4 bytes", b"\xf0\x8f\xbf\xbf"),
    ("high surrogate U+D800", b"\xed\xa0\x80"),
    ("high surrogate U+DB7F", b"\xed\xad\xbf"),
    ("high surrogate U+DBFF", b"\xed\xaf\xbf"),
    ("low surrogate U+DC00", b"\xed\xb0\x80"),
    ("low surrogate U+DFFF", b"\xed\xbf\xbf"),
    ("surrogate pair", b"\xed\xa0\x80\xed\xb0\x80"),
    ("past U+10FFFF", b"\xf4\x90\x80\x80"),
    ("lead 0xf5", b"\xf5\x80\x80\x80"),
    ("largest 4-byte form 0xf7", b"\xf7\xbf\xbf\xbf"),
    (
        "kosme, a surrogate, then text",
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    ),
];

fn text_frames<B: AsRef<[u8]>>(fragments: &[B]) -> Vec<Frame> {
    let last = fragments.len() - 1;
    fragments
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let op = if i == 0 {
                OpCode::Text
            } else {
                OpCode::Continuation
            };
            Frame::new(op, Bytes::copy_from_slice(piece.as_ref())).with_fin(i == last)
        })
        .collect()
}

/// Feeds `frames` to a fresh reader one whole frame at a time; returns the
/// index of the frame after which the reader failed, with its error.
fn failing_frame(role: Role, frames: &[Frame]) -> Option<(usize, ProtocolError)> {
    let mut reader = Reader::new(default_config(role));
    let mut buf = BytesMut::new();
    for (i, frame) in frames.iter().enumerate() {
        buf.extend_from_slice(&frames_sent_to(role, std::slice::from_ref(frame)));
        loop {
            match reader.read(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Some((i, e)),
            }
        }
    }
    None
}

/// The fragment, among fragments ending at `ends`, that holds byte `at`.
fn fragment_holding(ends: &[usize], at: usize) -> usize {
    ends.iter()
        .position(|&end| at < end)
        .expect("byte inside the text")
}

#[test]
fn test_vectors_agree_with_std_about_validity() {
    for (name, bytes) in VALID {
        assert!(std::str::from_utf8(bytes).is_ok(), "{name}");
    }
    for (name, bytes) in INVALID {
        assert!(std::str::from_utf8(bytes).is_err(), "{name}");
    }
}

#[test]
fn valid_texts_are_accepted_in_one_frame() {
    for role in ROLES {
        for (name, bytes) in VALID {
            let text = std::str::from_utf8(bytes).unwrap();
            let wire = frames_sent_to(role, &text_frames(&[bytes]));
            assert_eq!(
                read_whole(default_config(role), &wire).expect_ok(),
                [Event::Message(Message::Text(text.to_owned().into()))],
                "{role:?} {name}"
            );
        }
    }
}

#[test]
fn invalid_texts_are_rejected_with_1007() {
    for role in ROLES {
        for (name, bytes) in INVALID {
            let wire = frames_sent_to(role, &text_frames(&[bytes]));
            let got = read_whole(default_config(role), &wire);
            assert_eq!(
                got.expect_error(CloseCode::INVALID_PAYLOAD),
                &ProtocolError::InvalidUtf8,
                "{role:?} {name}"
            );
        }
    }
}

#[test]
fn invalid_bytes_in_binary_messages_are_fine() {
    for (name, bytes) in INVALID {
        let frame = Frame::binary(Bytes::from_static(bytes));
        let wire = frames_sent_to(Role::Server, &[frame]);
        assert_eq!(
            read_whole(default_config(Role::Server), &wire).expect_ok(),
            [Event::Message(Message::Binary(Bytes::from_static(bytes)))],
            "{name}"
        );
    }
}

#[test]
fn valid_texts_split_into_two_fragments_at_every_byte_are_accepted() {
    let all: Vec<u8> = VALID.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let text = std::str::from_utf8(&all).unwrap();
    let expected = [Event::Message(Message::Text(text.to_owned().into()))];
    for role in ROLES {
        for cut in 0..=all.len() {
            let frames = text_frames(&[&all[..cut], &all[cut..]]);
            let wire = frames_sent_to(role, &frames);
            assert_eq!(
                read_whole(default_config(role), &wire).expect_ok(),
                expected,
                "{role:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn valid_texts_in_one_byte_fragments_are_accepted() {
    for role in ROLES {
        for (name, bytes) in VALID.iter().filter(|(_, b)| !b.is_empty()) {
            let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
            let wire = frames_sent_to(role, &text_frames(&pieces));
            let text = std::str::from_utf8(bytes).unwrap();
            assert_eq!(
                read_whole(default_config(role), &wire).expect_ok(),
                [Event::Message(Message::Text(text.to_owned().into()))],
                "{role:?} {name}"
            );
        }
    }
}

#[test]
fn valid_texts_arriving_one_byte_per_read_are_accepted() {
    // One frame, delivered byte by byte: the early check sees every prefix.
    let all: Vec<u8> = VALID.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let text = std::str::from_utf8(&all).unwrap();
    for role in ROLES {
        let wire = frames_sent_to(role, &text_frames(&[&all]));
        assert_eq!(
            read_in_chunks(default_config(role), &wire, 1).expect_ok(),
            [Event::Message(Message::Text(text.to_owned().into()))],
            "{role:?}"
        );
    }
}

#[test]
fn two_fragment_invalid_texts_fail_at_the_fragment_holding_the_first_invalid_byte() {
    for role in ROLES {
        for (name, bytes) in INVALID {
            let bad = first_bad_byte(bytes);
            for cut in 0..=bytes.len() {
                let frames = text_frames(&[&bytes[..cut], &bytes[cut..]]);
                let expected = match bad {
                    Some(at) => fragment_holding(&[cut, bytes.len()], at),
                    // Only cut off at the end: known when the final fragment arrives.
                    None => 1,
                };
                let (failed_at, err) = failing_frame(role, &frames)
                    .unwrap_or_else(|| panic!("{role:?} {name} cut {cut}: accepted"));
                assert_eq!(err, ProtocolError::InvalidUtf8);
                assert_eq!(failed_at, expected, "{role:?} {name} cut at {cut}");
            }
        }
    }
}

#[test]
fn one_byte_fragments_fail_at_the_first_invalid_byte() {
    for role in ROLES {
        for (name, bytes) in INVALID {
            let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
            let expected = first_bad_byte(bytes).unwrap_or(bytes.len() - 1);
            let (failed_at, err) = failing_frame(role, &text_frames(&pieces))
                .unwrap_or_else(|| panic!("{role:?} {name}: accepted"));
            assert_eq!(err, ProtocolError::InvalidUtf8);
            assert_eq!(failed_at, expected, "{role:?} {name}");
        }
    }
}

#[test]
fn a_code_point_split_across_fragments_is_valid() {
    for role in ROLES {
        for (char_bytes, cuts) in [
            (&b"\xc3\xa9"[..], &[1][..]),
            (b"\xe2\x82\xac", &[1, 2]),
            (b"\xf0\x9d\x84\x9e", &[1, 2, 3]),
            (b"\xf0\x9d\x84\x9e", &[2]),
        ] {
            let mut pieces = Vec::new();
            let mut start = 0;
            for &cut in cuts.iter().chain([&char_bytes.len()]) {
                pieces.push(&char_bytes[start..cut]);
                start = cut;
            }
            let wire = frames_sent_to(role, &text_frames(&pieces));
            let got = read_whole(default_config(role), &wire);
            assert_eq!(got.expect_ok().len(), 1, "{role:?} {char_bytes:x?}");
        }
    }
}

#[test]
fn a_message_ending_inside_a_code_point_is_rejected_at_its_final_fragment() {
    for role in ROLES {
        let frames = text_frames(&[&b"fine "[..], b"\xe2\x82", b""]);
        let (failed_at, err) = failing_frame(role, &frames).expect("rejected");
        assert_eq!((failed_at, err), (2, ProtocolError::InvalidUtf8));
    }
}

/// The strictness target: the payload of one large text frame arrives byte by
/// byte; the reader must fail exactly when the first invalid byte arrives,
/// long before the frame is complete.
#[test]
fn invalid_bytes_fail_as_soon_as_they_arrive_inside_an_incomplete_frame() {
    const TAIL: usize = 10_000;
    for role in ROLES {
        for (name, bytes) in INVALID {
            let Some(bad) = first_bad_byte(bytes) else {
                continue; // cut-off sequences are only invalid once the text ends
            };
            let mut payload = bytes.to_vec();
            payload.extend(std::iter::repeat_n(b'x', TAIL));
            let wire = frames_sent_to(role, &text_frames(&[&payload]));
            let header_len = wire.len() - payload.len();

            let got = read_in_chunks(default_config(role), &wire, 1);
            assert_eq!(
                got.expect_error(CloseCode::INVALID_PAYLOAD),
                &ProtocolError::InvalidUtf8,
                "{role:?} {name}"
            );
            assert_eq!(
                got.fed,
                header_len + bad + 1,
                "{role:?} {name}: must fail when payload byte {bad} arrives"
            );

            // The same with one read holding the header and the bad bytes at once.
            let mut reader = Reader::new(default_config(role));
            let mut buf = BytesMut::from(&wire[..header_len + bad + 1]);
            assert_eq!(
                reader.read(&mut buf),
                Err(ProtocolError::InvalidUtf8),
                "{name}"
            );
        }
    }
}

#[test]
fn invalid_bytes_fail_early_inside_an_incomplete_continuation_frame() {
    for role in ROLES {
        for (name, bytes) in INVALID {
            let Some(bad) = first_bad_byte(bytes) else {
                continue;
            };
            let mut second = bytes.to_vec();
            second.extend(std::iter::repeat_n(b'y', 5000));
            let first = frames_sent_to(role, &text_frames(&[&b"start "[..], b""])[..1]);
            let cont = frames_sent_to(role, &[Frame::new(OpCode::Continuation, second.clone())]);
            let header_len = cont.len() - second.len();
            let mut wire = first.clone();
            wire.extend_from_slice(&cont[..header_len + bad + 1]);
            let got = read_whole(default_config(role), &wire);
            assert_eq!(
                got.expect_error(CloseCode::INVALID_PAYLOAD),
                &ProtocolError::InvalidUtf8,
                "{role:?} {name}"
            );
            // One byte short of the proof, the reader must still be waiting.
            let mut short = first;
            short.extend_from_slice(&cont[..header_len + bad]);
            assert!(
                read_whole(default_config(role), &short)
                    .expect_ok()
                    .is_empty(),
                "{role:?} {name}: rejected before the invalid byte arrived"
            );
        }
    }
}

#[test]
fn invalid_utf8_across_a_fragment_boundary_fails_in_the_second_fragment() {
    // The first fragment ends with a lead byte that the second one contradicts.
    for role in ROLES {
        let frames = text_frames(&[&b"abc\xe2"[..], b"\x28\xa1", b"ok"]);
        let (failed_at, err) = failing_frame(role, &frames).expect("rejected");
        assert_eq!((failed_at, err), (1, ProtocolError::InvalidUtf8));
    }
}
