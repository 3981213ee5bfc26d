//! Messages the server sends over the WebSocket.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::Ref;
use crate::error::ErrorCode;
use crate::ids::{ConversationId, MessageId, Seq};
use crate::model::{ConversationInfo, MessageView, Millis, UserInfo};

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
