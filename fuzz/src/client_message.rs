//! The chat protocol's JSON parser: every text a client can send over `/ws`, and the REST
//! bodies. Nothing may panic; a message that parses must survive a round trip unchanged;
//! an error must say what was wrong and never echo back more than a bounded `ref`. The same
//! bytes also go through the file chunk header parser (the socket's binary frames).

use chatgroup_protocol::rest::{AddMember, CreateConversation, Credentials, RefreshRequest};
use chatgroup_protocol::{ClientMsg, MAX_ECHOED_REF};

/// Runs one input through the parsers.
pub fn check(data: &[u8]) {
    // REST bodies arrive as bytes; they may be anything.
    let _ = serde_json::from_slice::<Credentials>(data);
    let _ = serde_json::from_slice::<RefreshRequest>(data);
    let _ = serde_json::from_slice::<CreateConversation>(data);
    let _ = serde_json::from_slice::<AddMember>(data);
    // Binary frames on the chat socket are file chunks.
    check_chunk(data);

    // WebSocket text messages are valid UTF-8 by the time the parser sees them.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientMsg::parse(text) {
        Ok(msg) => {
            let again = serde_json::to_string(&msg).expect("a parsed message serializes");
            let back = ClientMsg::parse(&again).expect("a serialized message parses");
            assert_eq!(back, msg, "round trip changed the message");
            if let Some(reference) = msg.reference() {
                assert!(!reference.is_empty() || text.contains("\"\""));
            }
        }
        Err(err) => {
            assert!(!err.message.is_empty(), "an error names what was wrong");
            if let Some(reference) = &err.reference {
                assert!(reference.len() <= MAX_ECHOED_REF, "echoed ref is bounded");
            }
        }
    }
}

/// The binary side of the chat socket: file chunk headers. Whatever the bytes, the parser
/// either refuses them or splits them so that header and data give back the frame.
pub fn check_chunk(data: &[u8]) {
    use chatgroup_protocol::chunk::{encode_header, parse_chunk, HEADER_LEN};
    match parse_chunk(data) {
        Ok((header, rest)) => {
            assert_eq!(
                rest.len() + HEADER_LEN,
                data.len(),
                "only the header is taken"
            );
            assert_eq!(encode_header(header)[..], data[..HEADER_LEN]);
            let end = header.offset.checked_add(rest.len() as u64);
            assert!(end.is_some(), "an accepted chunk ends inside u64");
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
}
