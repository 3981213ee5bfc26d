//! The chat protocol's JSON parser: every text a client can send over `/ws`, and the REST
//! bodies. Nothing may panic; a message that parses must survive a round trip unchanged;
//! an error must say what was wrong and never echo back more than a bounded `ref`.

use chatgroup_protocol::rest::{AddMember, CreateConversation, Credentials, RefreshRequest};
use chatgroup_protocol::{ClientMsg, MAX_ECHOED_REF};

/// Runs one input through the parsers.
pub fn check(data: &[u8]) {
    // REST bodies arrive as bytes; they may be anything.
    let _ = serde_json::from_slice::<Credentials>(data);
    let _ = serde_json::from_slice::<RefreshRequest>(data);
    let _ = serde_json::from_slice::<CreateConversation>(data);
    let _ = serde_json::from_slice::<AddMember>(data);

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
