//! Limits: frames and messages over the configured sizes fail with 1009,
//! decided from the header before any of the payload is buffered; large
//! messages within the limits arrive intact whatever their fragment size.

use bytes::{Bytes, BytesMut};
use rfc6455::{
    CloseCode, CodecConfig, Decoder, Event, Frame, Message, OpCode, ProtocolError, Reader,
};

use crate::support::{
    default_config, frames_sent_to, message_of_len, peer_mask, raw_header, read_in_chunks,
    read_whole, roomy, ROLES,
};

/// `message` as fragments of `size` bytes.
fn fragmented(message: &Message, size: usize) -> Vec<Frame> {
    let pieces: Vec<&[u8]> = message.as_bytes().chunks(size).collect();
    let last = pieces.len() - 1;
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let op = if i == 0 {
                message.opcode()
            } else {
                OpCode::Continuation
            };
            Frame::new(op, Bytes::copy_from_slice(piece)).with_fin(i == last)
        })
        .collect()
}

#[test]
fn a_frame_over_the_limit_is_refused_from_its_header_alone() {
    for role in ROLES {
        let cfg = default_config(role).with_max_frame_len(1024);
        for len in [1025u64, 65536, 1 << 40, (1 << 63) - 1] {
            // Only the header: the payload never arrives, yet the verdict is in.
            let header = raw_header(0x82, len, peer_mask(role));
            let mut reader = Reader::new(cfg);
            let err = reader.read(&mut BytesMut::from(&header[..]));
            assert_eq!(
                err,
                Err(ProtocolError::FrameTooLarge { len, max: 1024 }),
                "{role:?} {len}"
            );
            assert_eq!(err.unwrap_err().close_code(), CloseCode::MESSAGE_TOO_BIG);
        }
        // At the limit, the header is accepted and the payload awaited.
        let header = raw_header(0x82, 1024, peer_mask(role));
        let mut reader = Reader::new(cfg);
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(reader.read(&mut buf), Ok(None));
        assert_eq!(reader.needed(), 1024);
    }
}

#[test]
fn the_frame_limit_applies_to_the_decoder_too() {
    for role in ROLES {
        let cfg = default_config(role).with_max_frame_len(10);
        let header = raw_header(0x81, 11, peer_mask(role));
        let mut decoder = Decoder::new(cfg);
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&header[..])),
            Err(ProtocolError::FrameTooLarge { len: 11, max: 10 })
        );
    }
}

#[test]
fn a_message_over_the_limit_is_refused_at_the_header_that_crosses_it() {
    for role in ROLES {
        let cfg = default_config(role)
            .with_max_frame_len(1 << 20)
            .with_max_message_len(1000);
        let mut wire = frames_sent_to(
            role,
            &[Frame::new(OpCode::Binary, vec![0u8; 600]).with_fin(false)],
        );
        // 600 + 400 fits exactly: the header passes and the payload is awaited.
        let mut fits = wire.clone();
        fits.extend(raw_header(0x80, 400, peer_mask(role)));
        let got = read_whole(cfg, &fits);
        assert!(got.expect_ok().is_empty());

        // 600 + 401 does not: refused from the continuation's header alone.
        wire.extend(raw_header(0x80, 401, peer_mask(role)));
        let got = read_whole(cfg, &wire);
        assert_eq!(
            got.expect_error(CloseCode::MESSAGE_TOO_BIG),
            &ProtocolError::MessageTooLarge { max: 1000 }
        );
    }
}

#[test]
fn a_single_frame_message_over_the_message_limit_is_refused_from_its_header() {
    for role in ROLES {
        let cfg = default_config(role)
            .with_max_frame_len(1 << 20)
            .with_max_message_len(100);
        let header = raw_header(0x81, 101, peer_mask(role));
        let got = read_whole(cfg, &header);
        assert_eq!(
            got.expect_error(CloseCode::MESSAGE_TOO_BIG),
            &ProtocolError::MessageTooLarge { max: 100 }
        );
    }
}

#[test]
fn control_frames_do_not_count_toward_the_message_limit() {
    for role in ROLES {
        let cfg = default_config(role).with_max_message_len(10);
        let frames = [
            Frame::new(OpCode::Text, "01234").with_fin(false),
            Frame::ping(vec![b'p'; 125]),
            Frame::new(OpCode::Continuation, "56789"),
        ];
        let got = read_whole(cfg, &frames_sent_to(role, &frames));
        assert_eq!(got.expect_ok().len(), 2, "{role:?}: {:?}", got.error);
    }
}

#[test]
fn messages_exactly_at_the_limit_are_accepted() {
    for role in ROLES {
        let cfg = default_config(role)
            .with_max_frame_len(4096)
            .with_max_message_len(4096);
        for text in [true, false] {
            let message = message_of_len(text, 4096);
            let wire = frames_sent_to(role, &fragmented(&message, 1000));
            assert_eq!(
                read_whole(cfg, &wire).expect_ok(),
                [Event::Message(message.clone())]
            );
            let one_more = message_of_len(text, 4097);
            let wire = frames_sent_to(role, &fragmented(&one_more, 1000));
            read_whole(cfg, &wire).expect_error(CloseCode::MESSAGE_TOO_BIG);
        }
    }
}

#[test]
fn large_messages_in_fragments_of_1_2_64_4096_and_65536_bytes() {
    for role in ROLES {
        for size in [1usize, 2, 64, 4096, 65536] {
            // Tiny fragments make many frames; keep those messages smaller.
            let len = if size < 64 { 64 << 10 } else { 1 << 20 };
            for text in [true, false] {
                let message = message_of_len(text, len);
                let wire = frames_sent_to(role, &fragmented(&message, size));
                let expected = [Event::Message(message)];
                assert!(
                    read_whole(roomy(role), &wire).expect_ok() == expected,
                    "{role:?} {size}-byte fragments, text={text}"
                );
                assert!(
                    read_in_chunks(roomy(role), &wire, 4096).expect_ok() == expected,
                    "{role:?} {size}-byte fragments in 4 KiB reads, text={text}"
                );
            }
        }
    }
}

#[test]
fn default_limits_are_the_documented_ones() {
    let server = CodecConfig::server();
    assert_eq!(
        (server.max_frame_len, server.max_message_len),
        (1 << 20, 4 << 20)
    );
    let client = CodecConfig::client();
    assert_eq!(
        (client.max_frame_len, client.max_message_len),
        (16 << 20, 64 << 20)
    );
    // A server refuses a 1 MiB + 1 frame from its header under the defaults.
    let header = raw_header(0x82, (1 << 20) + 1, peer_mask(rfc6455::Role::Server));
    read_whole(server, &header).expect_error(CloseCode::MESSAGE_TOO_BIG);
}
