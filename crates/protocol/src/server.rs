//! Messages the server sends over the WebSocket.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::{Ref, TypingState};
use crate::error::ErrorCode;
use crate::ids::{ConversationId, MessageId, Seq, UserId};
use crate::model::{ConversationInfo, MemberPresence, MessageView, Millis, UserInfo};

/// A message from server to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum ServerMsg {
    /// Authentication succeeded: who the client is, which database it talks to, and the
    /// user's conversations. Sent once per successful `auth` (again after a token refresh).
    Ready {
        /// The authenticated user.
        user: UserInfo,
        /// Identifies the database; a client whose cached cursors came from another epoch
        /// must drop them (the server was reset).
        epoch: String,
        /// The user's conversations, newest activity first.
        conversations: Vec<ConversationInfo>,
        /// The access token's expiry.
        expires_at: Millis,
    },
    /// A `send` was committed (or had been: `duplicate`), with its place in the conversation.
    Ack {
        /// Where it was posted.
        conversation: ConversationId,
        /// The client's id for it.
        local_id: String,
        /// The stored message's id.
        id: MessageId,
        /// Its position.
        seq: Seq,
        /// When it was committed.
        ts: Millis,
        /// True when this `localId` had been committed before: the original ack, resent.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// A committed message in one of the user's conversations, live.
    NewMessage(MessageView),
    /// Part of a replay: consecutive messages of one conversation, in `seq` order.
    SyncBatch {
        /// Which conversation.
        conversation: ConversationId,
        /// The messages, ascending `seq`.
        messages: Vec<MessageView>,
    },
    /// The replay is complete: everything after the cursors has been sent, and live
    /// messages follow with no gap.
    Synced {
        /// Conversation → the newest `seq` now delivered to this connection.
        #[serde(deserialize_with = "crate::wire_util::cursors")]
        cursors: BTreeMap<ConversationId, Seq>,
        /// The `sync` request's `ref`.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// An answer to `history`: messages before `before`, ascending `seq`.
    History {
        /// Which conversation.
        conversation: ConversationId,
        /// The page, ascending `seq`.
        messages: Vec<MessageView>,
        /// Whether older messages exist.
        has_more: bool,
        /// The request's `ref`.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// The user's conversations (answer to `conversations`).
    Conversations {
        /// Newest activity first.
        conversations: Vec<ConversationInfo>,
        /// The request's `ref`.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// A conversation the user is in was created or changed (members, name), or the user
    /// was added to one. Also the answer to the conversation requests.
    Conversation {
        /// Its current state.
        conversation: ConversationInfo,
        /// The request's `ref`, when this answers one.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// The user is no longer in a conversation (left or removed); nothing more arrives
    /// from it.
    ConversationRemoved {
        /// Which conversation.
        conversation: ConversationId,
    },
    /// A request that has no other answer (`remove_member`, `leave`) was done.
    #[serde(rename = "ok")]
    Done {
        /// The request's `ref`.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// Someone's delivery and read markers in a conversation moved (coalesced: a burst of
    /// `received` becomes one `receipt` with the newest values). Members' own markers come
    /// too, so every device of a user sees its unread count follow its read marker.
    Receipt {
        /// Where.
        conversation: ConversationId,
        /// Whose markers.
        user: UserId,
        /// Everything up to this `seq` reached one of their devices.
        delivered: Seq,
        /// They have seen everything up to this `seq`.
        read: Seq,
    },
    /// Another member started or stopped typing.
    Typing {
        /// Where.
        conversation: ConversationId,
        /// Who.
        user: UserId,
        /// `start` or `stop`.
        state: TypingState,
    },
    /// A user who shares a conversation with this one came online or went offline.
    Presence {
        /// Who.
        user: UserId,
        /// Whether any of their connections is open.
        online: bool,
        /// When they were last online (absent if never, or while online).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seen: Option<Millis>,
    },
    /// The answer to `user_list`: every member and who is online.
    UserList {
        /// Which conversation.
        conversation: ConversationId,
        /// Its members.
        members: Vec<MemberPresence>,
        /// The request's `ref`.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// The answer to `file_start`: send the bytes from `offset` on, in binary frames of at
    /// most `chunkSize` data bytes, each prefixed with the file id and the offset.
    FileReady {
        /// The client's id for the upload.
        upload_id: String,
        /// The server's id for it: the first 8 bytes of every binary frame, and `file_end`'s.
        file_id: u64,
        /// How many bytes the server already has: continue from here.
        offset: u64,
        /// The most data bytes per binary frame.
        chunk_size: u32,
        /// The request's `ref`.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// A request was refused; the socket stays open.
    Error {
        /// What went wrong, machine-readable.
        code: ErrorCode,
        /// What went wrong, in words.
        message: String,
        /// The request's `ref` (a `send`'s `localId`).
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
        /// For `rate_limited`: when to try again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl ServerMsg {
    /// An `error` answering the request with `reference`.
    #[must_use]
    pub fn error(code: ErrorCode, message: impl Into<String>, reference: Ref) -> ServerMsg {
        ServerMsg::Error {
            code,
            message: message.into(),
            reference,
            retry_after_ms: None,
        }
    }

    /// The JSON text of this message.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys, no custom
        // serializers that error.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"encoding failed"}"#.to_owned()
        })
    }
}
