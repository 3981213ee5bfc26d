//! The wire format, pinned: field names, tags and the error recovery clients rely on.

use std::collections::BTreeMap;

use chatgroup_protocol::{
    ClientMsg, ConversationId, ErrorCode, MemberPresence, MessageId, MessageKind, MessageView, Seq,
    ServerMsg, SystemEvent, TypingState, UserId,
};
use serde_json::{json, Value};

fn roundtrip_server(msg: &ServerMsg) -> Value {
    let text = msg.to_json();
    let back: ServerMsg = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, msg);
    serde_json::from_str(&text).unwrap()
}

#[test]
fn send_parses_with_camel_case_and_ref() {
    let msg = ClientMsg::parse(
        r#"{"type":"send","conversation":3,"localId":"l-1","body":"hello","ref":"r9"}"#,
    )
    .unwrap();
    assert_eq!(
        msg,
        ClientMsg::Send {
            conversation: ConversationId(3),
            local_id: "l-1".into(),
            body: "hello".into(),
            reference: Some("r9".into()),
        }
    );
    assert_eq!(msg.reference().as_deref(), Some("r9"));
}

#[test]
fn a_send_without_ref_is_answered_by_its_local_id() {
    let msg =
        ClientMsg::parse(r#"{"type":"send","conversation":3,"localId":"l-1","body":"x"}"#).unwrap();
    assert_eq!(msg.reference().as_deref(), Some("l-1"));
}

#[test]
fn sync_cursors_are_keyed_by_conversation_strings() {
    let msg = ClientMsg::parse(r#"{"type":"sync","cursors":{"1":10,"22":0}}"#).unwrap();
    let mut cursors = BTreeMap::new();
    cursors.insert(ConversationId(1), Seq(10));
    cursors.insert(ConversationId(22), Seq(0));
    assert_eq!(
        msg,
        ClientMsg::Sync {
            cursors,
            reference: None
        }
    );
    assert!(ClientMsg::parse(r#"{"type":"sync"}"#).is_ok());
    let bad = ClientMsg::parse(r#"{"type":"sync","cursors":{"x":1}}"#).unwrap_err();
    assert_eq!(bad.code, ErrorCode::Invalid);
    assert!(bad.message.contains("\"x\""), "{}", bad.message);
}

#[test]
fn unknown_fields_are_ignored_for_forward_compatibility() {
    assert!(ClientMsg::parse(r#"{"type":"conversations","future":true}"#).is_ok());
}

#[test]
fn errors_name_what_was_wrong_and_keep_the_ref() {
    let e = ClientMsg::parse("{not json").unwrap_err();
    assert_eq!(e.code, ErrorCode::Malformed);
    assert!(e.message.contains("JSON"), "{}", e.message);

    let e = ClientMsg::parse("[1,2]").unwrap_err();
    assert_eq!(e.code, ErrorCode::Malformed);
    assert_eq!(e.reference, None, "an array is not read as a struct");
    assert!(e.message.contains("object"), "{}", e.message);

    let e = ClientMsg::parse(r#"{"type":"shout","ref":"a"}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownType);
    assert_eq!(e.reference.as_deref(), Some("a"));

    let e = ClientMsg::parse(r#"{"ref":"a"}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownType);

    let e = ClientMsg::parse(r#"{"type":"send","conversation":"x","localId":"q","body":"b"}"#)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Invalid);
    assert_eq!(e.reference.as_deref(), Some("q"));
    assert!(e.message.contains("send"), "{}", e.message);

    let e = ClientMsg::parse(r#"{"type":"send","conversation":1,"body":"b","ref":7}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::Invalid);
    assert!(e.message.contains("localId"), "{}", e.message);
    assert_eq!(e.reference.as_deref(), Some("7"));

    let long = "r".repeat(1000);
    let e = ClientMsg::parse(&format!(r#"{{"type":"nope","ref":"{long}"}}"#)).unwrap_err();
    assert_eq!(e.reference, None, "an oversized ref is not echoed");
}

#[test]
fn server_messages_have_the_documented_shape() {
    let ack = ServerMsg::Ack {
        conversation: ConversationId(1),
        local_id: "l".into(),
        id: MessageId(9),
        seq: Seq(4),
        ts: 1_700_000_000_000,
        duplicate: false,
    };
    assert_eq!(
        roundtrip_server(&ack),
        json!({"type":"ack","conversation":1,"localId":"l","id":9,"seq":4,"ts":1_700_000_000_000_i64})
    );

    let msg = ServerMsg::NewMessage(MessageView {
        conversation: ConversationId(1),
        id: MessageId(10),
        seq: Seq(5),
        ts: 5,
        sender: Some(UserId(2)),
        sender_name: Some("bob".into()),
        kind: MessageKind::Text,
        body: "hi".into(),
        local_id: Some("x".into()),
        event: None,
        file: None,
    });
    assert_eq!(
        roundtrip_server(&msg),
        json!({"type":"new_message","conversation":1,"id":10,"seq":5,"ts":5,"sender":2,
               "senderName":"bob","kind":"text","body":"hi","localId":"x"})
    );

    let system = ServerMsg::NewMessage(MessageView {
        conversation: ConversationId(1),
        id: MessageId(11),
        seq: Seq(6),
        ts: 6,
        sender: Some(UserId(2)),
        sender_name: None,
        kind: MessageKind::System,
        body: "bob added carol".into(),
        local_id: None,
        event: Some(SystemEvent::Joined {
            user: UserId(3),
            by: UserId(2),
        }),
        file: None,
    });
    let v = roundtrip_server(&system);
    assert_eq!(v["event"], json!({"action":"joined","user":3,"by":2}));

    let err = ServerMsg::error(ErrorCode::NotMember, "not a member of 4", Some("r".into()));
    assert_eq!(
        roundtrip_server(&err),
        json!({"type":"error","code":"not_member","message":"not a member of 4","ref":"r"})
    );

    let mut cursors = BTreeMap::new();
    cursors.insert(ConversationId(4), Seq(12));
    let synced = ServerMsg::Synced {
        cursors,
        reference: None,
    };
    assert_eq!(
        roundtrip_server(&synced),
        json!({"type":"synced","cursors":{"4":12}})
    );
}

#[test]
fn every_error_code_has_its_wire_name_and_a_status() {
    for code in [
        ErrorCode::Malformed,
        ErrorCode::UnknownType,
        ErrorCode::Invalid,
        ErrorCode::BodyTooLong,
        ErrorCode::NotAuthenticated,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::InvalidCredentials,
        ErrorCode::UsernameTaken,
        ErrorCode::InvalidUsername,
        ErrorCode::InvalidPassword,
        ErrorCode::NotMember,
        ErrorCode::NotOwner,
        ErrorCode::NotFound,
        ErrorCode::RateLimited,
        ErrorCode::FileTooLarge,
        ErrorCode::QuotaExceeded,
        ErrorCode::FileMismatch,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ] {
        let json = serde_json::to_value(code).unwrap();
        assert_eq!(json, Value::String(code.as_str().to_owned()));
        assert!((400..600).contains(&code.http_status()));
    }
}

#[test]
fn receipts_typing_and_presence_have_the_documented_shape() {
    assert_eq!(
        ClientMsg::parse(r#"{"type":"received","conversation":3,"seq":43}"#).unwrap(),
        ClientMsg::Received {
            conversation: ConversationId(3),
            seq: Seq(43)
        }
    );
    assert_eq!(
        ClientMsg::parse(r#"{"type":"read","conversation":3,"seq":41}"#).unwrap(),
        ClientMsg::Read {
            conversation: ConversationId(3),
            seq: Seq(41)
        }
    );
    assert_eq!(
        ClientMsg::parse(r#"{"type":"typing","conversation":3,"state":"stop"}"#).unwrap(),
        ClientMsg::Typing {
            conversation: ConversationId(3),
            state: TypingState::Stop
        }
    );
    let bad =
        ClientMsg::parse(r#"{"type":"typing","conversation":3,"state":"maybe"}"#).unwrap_err();
    assert_eq!(bad.code, ErrorCode::Invalid);
    assert!(bad.message.contains("maybe"), "{}", bad.message);
    let list = ClientMsg::parse(r#"{"type":"user_list","conversation":3,"ref":7}"#).unwrap();
    assert_eq!(list.reference().as_deref(), Some("7"));

    assert_eq!(
        roundtrip_server(&ServerMsg::Receipt {
            conversation: ConversationId(3),
            user: UserId(2),
            delivered: Seq(43),
            read: Seq(41),
        }),
        json!({"type":"receipt","conversation":3,"user":2,"delivered":43,"read":41})
    );
    assert_eq!(
        roundtrip_server(&ServerMsg::Typing {
            conversation: ConversationId(3),
            user: UserId(1),
            state: TypingState::Start,
        }),
        json!({"type":"typing","conversation":3,"user":1,"state":"start"})
    );
    assert_eq!(
        roundtrip_server(&ServerMsg::Presence {
            user: UserId(2),
            online: false,
            last_seen: Some(1_796_197_400_123),
        }),
        json!({"type":"presence","user":2,"online":false,"lastSeen":1_796_197_400_123_i64})
    );
    assert_eq!(
        roundtrip_server(&ServerMsg::Presence {
            user: UserId(2),
            online: true,
            last_seen: None,
        }),
        json!({"type":"presence","user":2,"online":true})
    );
    assert_eq!(
        roundtrip_server(&ServerMsg::UserList {
            conversation: ConversationId(3),
            members: vec![MemberPresence {
                id: UserId(1),
                username: "alice".into(),
                online: true,
                last_seen: None,
            }],
            reference: Some("u".into()),
        }),
        json!({"type":"user_list","conversation":3,"ref":"u",
               "members":[{"id":1,"username":"alice","online":true}]})
    );
}

#[test]
fn http_send_body_is_camel_case() {
    let body: chatgroup_protocol::rest::SendMessage =
        serde_json::from_str(r#"{"conversation":3,"localId":"bot-1","body":"hi"}"#).unwrap();
    assert_eq!(body.local_id, "bot-1");
    assert_eq!(body.conversation, ConversationId(3));
}
