//! The chat messages on the generator's side: building `send` and `sync` with the protocol
//! crate's types, and reading the server's hot messages (`ack`, `new_message`) without a
//! full parse.
//!
//! A member of a busy group receives hundreds of thousands of `new_message` frames a second,
//! and the generator has one core: so the type is read from the fixed prefix serde writes
//! (an internally tagged enum puts `"type"` first), and `seq` and `localId` are found by
//! searching for their keys. A key cannot match inside a string value, where JSON escapes
//! every `"`. Everything else (`ready`, `synced`, `sync_batch`, `error`) is parsed with
//! [`ServerMsg`](chatgroup_protocol::ServerMsg); tests below check both readings agree.

use std::collections::BTreeMap;

use bytes::Bytes;
use chatgroup_protocol::{ClientMsg, ConversationId, Seq, TypingState};
use rfc6455::{Frame, OpCode};

/// The type of a server message, from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `ack`: a send was committed.
    Ack,
    /// `new_message`: a committed message, live.
    NewMessage,
    /// `sync_batch`: part of a replay.
    SyncBatch,
    /// `synced`: the replay is complete.
    Synced,
    /// `ready`: authenticated.
    Ready,
    /// `error`: a request was refused.
    Error,
    /// `receipt`: someone's delivery or read markers moved.
    Receipt,
    /// `typing`: someone started or stopped typing.
    Typing,
    /// `presence`: someone came online or went offline.
    Presence,
    /// `user_list`: the answer to a `user_list` request.
    UserList,
    /// Anything else (conversation updates, answers the generator does not ask for).
    Other,
}

/// The type of a server message.
pub(crate) fn kind(payload: &[u8]) -> Kind {
    let Some(rest) = payload.strip_prefix(br#"{"type":""#) else {
        return Kind::Other;
    };
    let end = rest.iter().position(|&b| b == b'"').unwrap_or(0);
    match &rest[..end] {
        b"ack" => Kind::Ack,
        b"new_message" => Kind::NewMessage,
        b"sync_batch" => Kind::SyncBatch,
        b"synced" => Kind::Synced,
        b"ready" => Kind::Ready,
        b"error" => Kind::Error,
        b"receipt" => Kind::Receipt,
        b"typing" => Kind::Typing,
        b"presence" => Kind::Presence,
        b"user_list" => Kind::UserList,
        _ => Kind::Other,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

fn digits(text: &[u8]) -> Option<u64> {
    let end = text
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    if end == 0 || end > 19 {
        return None;
    }
    text[..end].iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The first `"seq":N` of a message (`ack` and `new_message` have one, at the top level).
pub(crate) fn seq(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = br#""seq":"#;
    let at = find(payload, KEY)?;
    digits(&payload[at + KEY.len()..])
}

/// The first `"conversation":N` of a message.
pub(crate) fn conversation(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = br#""conversation":"#;
    let at = find(payload, KEY)?;
    digits(&payload[at + KEY.len()..])
}

/// The generator's numeric `localId` (it sends decimal numbers only). Searched from the end:
/// in a `new_message` it follows the body.
pub(crate) fn local_id(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = br#""localId":""#;
    let at = rfind(payload, KEY)?;
    let rest = &payload[at + KEY.len()..];
    let n = digits(rest)?;
    let len = rest.iter().position(|&b| b == b'"')?;
    (len == n.to_string().len()).then_some(n)
}

/// A body of `size` bytes that names its message: `m<n>` then `x`s.
pub(crate) fn body(n: u64, size: usize) -> String {
    let mut body = format!("m{n} ");
    body.truncate(size);
    while body.len() < size {
        body.push('x');
    }
    body
}

/// The text frame of a `send` with `localId` = `n`.
pub(crate) fn send_frame(conversation: ConversationId, n: u64, size: usize) -> Frame {
    let msg = ClientMsg::Send {
        conversation,
        local_id: n.to_string(),
        body: body(n, size),
        reference: None,
    };
    text_frame(&msg)
}

/// The text frame of a `received` (everything up to `seq` reached this device).
pub(crate) fn received_frame(conversation: ConversationId, seq: u64) -> Frame {
    text_frame(&ClientMsg::Received {
        conversation,
        seq: Seq(seq),
    })
}

/// The text frame of a `read` (the person has seen everything up to `seq`).
pub(crate) fn read_frame(conversation: ConversationId, seq: u64) -> Frame {
    text_frame(&ClientMsg::Read {
        conversation,
        seq: Seq(seq),
    })
}

/// The text frame of a `typing` `start`.
pub(crate) fn typing_start_frame(conversation: ConversationId) -> Frame {
    text_frame(&ClientMsg::Typing {
        conversation,
        state: TypingState::Start,
    })
}

/// The text frame of a `user_list` request (the connection then watches `conversation`).
pub(crate) fn user_list_frame(conversation: ConversationId) -> Frame {
    text_frame(&ClientMsg::UserList {
        conversation,
        reference: None,
    })
}

/// The text frame of a `sync` from `cursors`.
pub(crate) fn sync_frame(cursors: BTreeMap<ConversationId, Seq>) -> Frame {
    text_frame(&ClientMsg::Sync {
        cursors,
        reference: None,
    })
}

/// The text frame of a `file_start` for upload `n`: its `uploadId` (and so the ack's
/// `localId`) is `n` in decimal, which [`local_id`] reads back.
pub(crate) fn file_start_frame(
    conversation: ConversationId,
    n: u64,
    size: u64,
    sha256: &str,
) -> Frame {
    text_frame(&ClientMsg::FileStart {
        conversation,
        upload_id: n.to_string(),
        name: format!("loadgen-{n}.bin"),
        size,
        mime: "application/octet-stream".to_owned(),
        sha256: Some(sha256.to_owned()),
        reference: None,
    })
}

/// The text frame of a `file_end`.
pub(crate) fn file_end_frame(file_id: u64) -> Frame {
    text_frame(&ClientMsg::FileEnd {
        file_id,
        reference: None,
    })
}

fn text_frame(msg: &ClientMsg) -> Frame {
    let json = serde_json::to_vec(msg).expect("client messages always serialise");
    Frame::new(OpCode::Text, Bytes::from(json))
}

/// The first `max` bytes of a message, for an error report.
pub(crate) fn excerpt(payload: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&payload[..payload.len().min(max)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatgroup_protocol::{MessageId, MessageKind, MessageView, ServerMsg, UserId};

    fn message(seq: u64, local: &str, body: &str) -> MessageView {
        MessageView {
            conversation: ConversationId(12),
            id: MessageId(900 + seq),
            seq: Seq(seq),
            ts: 1_700_000_000_000,
            sender: Some(UserId(3)),
            sender_name: Some("lg_s".to_owned()),
            kind: MessageKind::Text,
            body: body.to_owned(),
            local_id: Some(local.to_owned()),
            event: None,
            file: None,
        }
    }

    #[test]
    fn reads_what_the_protocol_writes() {
        let tricky = r#"a "seq":99 "localId":"5" body"#;
        let new = ServerMsg::NewMessage(message(41, "17", tricky)).to_json();
        let new = new.as_bytes();
        assert_eq!(kind(new), Kind::NewMessage);
        assert_eq!(seq(new), Some(41));
        assert_eq!(conversation(new), Some(12));
        assert_eq!(local_id(new), Some(17));

        let ack = ServerMsg::Ack {
            conversation: ConversationId(12),
            local_id: "123456".to_owned(),
            id: MessageId(5),
            seq: Seq(77),
            ts: 1,
            duplicate: false,
        }
        .to_json();
        assert_eq!(kind(ack.as_bytes()), Kind::Ack);
        assert_eq!(seq(ack.as_bytes()), Some(77));
        assert_eq!(local_id(ack.as_bytes()), Some(123_456));

        let synced = ServerMsg::Synced {
            cursors: BTreeMap::new(),
            reference: None,
        }
        .to_json();
        assert_eq!(kind(synced.as_bytes()), Kind::Synced);
        let err = ServerMsg::error(chatgroup_protocol::ErrorCode::RateLimited, "slow", None);
        assert_eq!(kind(err.to_json().as_bytes()), Kind::Error);
        assert_eq!(kind(br#"{"type":"conversation","x":1}"#), Kind::Other);
        let receipt = ServerMsg::Receipt {
            conversation: ConversationId(12),
            user: UserId(3),
            delivered: Seq(9),
            read: Seq(8),
        }
        .to_json();
        assert_eq!(kind(receipt.as_bytes()), Kind::Receipt);
        let typing = ServerMsg::Typing {
            conversation: ConversationId(12),
            user: UserId(3),
            state: TypingState::Start,
        }
        .to_json();
        assert_eq!(kind(typing.as_bytes()), Kind::Typing);
        let presence = ServerMsg::Presence {
            user: UserId(3),
            online: false,
            last_seen: Some(5),
        }
        .to_json();
        assert_eq!(kind(presence.as_bytes()), Kind::Presence);
        assert_eq!(kind(b"pong"), Kind::Other);
    }

    #[test]
    fn local_ids_must_be_ours() {
        let other = ServerMsg::NewMessage(message(1, "abc", "hi")).to_json();
        assert_eq!(local_id(other.as_bytes()), None);
        let other = ServerMsg::NewMessage(message(1, "12x", "hi")).to_json();
        assert_eq!(local_id(other.as_bytes()), None);
        assert_eq!(digits(b"99999999999999999999"), None, "overflow");
    }

    #[test]
    fn sends_parse_as_the_server_would() {
        let frame = send_frame(ConversationId(4), 42, 100);
        let text = std::str::from_utf8(&frame.payload).unwrap();
        match ClientMsg::parse(text).unwrap() {
            ClientMsg::Send {
                conversation,
                local_id,
                body,
                ..
            } => {
                assert_eq!(conversation, ConversationId(4));
                assert_eq!(local_id, "42");
                assert_eq!(body.len(), 100);
                assert!(body.starts_with("m42 x"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(body(123_456, 3), "m12");
        for (frame, want) in [
            (received_frame(ConversationId(4), 7), "received"),
            (read_frame(ConversationId(4), 7), "read"),
            (typing_start_frame(ConversationId(4)), "typing"),
            (user_list_frame(ConversationId(4)), "user_list"),
        ] {
            let text = std::str::from_utf8(&frame.payload).unwrap();
            let parsed = ClientMsg::parse(text).unwrap();
            let ok = match parsed {
                ClientMsg::Received { conversation, seq }
                | ClientMsg::Read { conversation, seq } => {
                    conversation == ConversationId(4) && seq == Seq(7)
                }
                ClientMsg::Typing { state, .. } => state == TypingState::Start,
                ClientMsg::UserList { conversation, .. } => conversation == ConversationId(4),
                _ => false,
            };
            assert!(ok && text.contains(want), "{text}");
        }
        let sync = sync_frame(BTreeMap::from([(ConversationId(4), Seq(9))]));
        let text = std::str::from_utf8(&sync.payload).unwrap();
        assert!(matches!(ClientMsg::parse(text), Ok(ClientMsg::Sync { .. })));
    }
}
