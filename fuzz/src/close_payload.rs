//! `close_payload`: arbitrary bytes as the payload of a received close frame.
//!
//! `CloseFrame::parse` must agree with a reference reading of RFC 6455 §5.5.1 and
//! §7.4, valid payloads must survive `to_payload` byte for byte, and a `Reader`
//! fed the same payload inside a close frame must report the same outcome.

use bytes::{Bytes, BytesMut};
use rfc6455::{CloseCode, CloseFrame, CodecConfig, Event, Frame, ProtocolError, Reader};

/// What RFC 6455 says about a close payload, written independently of the codec.
fn expected(payload: &[u8]) -> Result<Option<(u16, &str)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let on_wire = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !on_wire {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some((code, reason)))
        }
    }
}

/// Runs every check on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    let parsed = CloseFrame::parse(&payload);
    let want = expected(data);
    match (&parsed, &want) {
        (Ok(None), Ok(None)) => {}
        (Ok(Some(frame)), Ok(Some((code, reason)))) => {
            assert_eq!(frame.code, CloseCode(*code));
            assert!(frame.code.is_valid_on_wire());
            assert_eq!(frame.reason.as_str(), *reason);
            assert_eq!(&frame.to_payload()[..], data, "a valid payload roundtrips");
        }
        (Err(got), Err(want)) => {
            assert_eq!(got, want);
            assert!(matches!(
                got.close_code(),
                CloseCode::PROTOCOL_ERROR | CloseCode::INVALID_PAYLOAD
            ));
        }
        _ => panic!("CloseFrame::parse({data:?}) = {parsed:?}, expected {want:?}"),
    }

    // Building a close frame from any text keeps it within a control frame.
    if let [hi, lo, reason @ ..] = data {
        let text = String::from_utf8_lossy(reason);
        let built = CloseFrame::new(CloseCode(u16::from_be_bytes([*hi, *lo])), &text);
        let wire = built.to_payload();
        assert!(
            wire.len() <= rfc6455::MAX_CONTROL_PAYLOAD,
            "{} bytes",
            wire.len()
        );
        assert!(text.as_bytes().starts_with(built.reason.as_bytes()));
        if built.code.is_valid_on_wire() {
            assert_eq!(CloseFrame::parse(&wire), Ok(Some(built)));
        }
    }

    // The same payload inside a close frame, read by a client.
    if data.len() <= rfc6455::MAX_CONTROL_PAYLOAD {
        let mut wire = BytesMut::new();
        Frame::new(rfc6455::OpCode::Close, payload.clone()).encode(None, &mut wire);
        let mut reader = Reader::new(CodecConfig::client());
        let got = reader.read(&mut wire);
        match (got, parsed) {
            (Ok(Some(Event::Close(frame))), Ok(want)) => {
                assert_eq!(frame, want);
                assert!(reader.is_closed());
            }
            (Err(got), Err(want)) => assert_eq!(got, want),
            (got, want) => panic!("Reader: {got:?}, CloseFrame::parse: {want:?}"),
        }
    }
}
