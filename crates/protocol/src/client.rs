//! Messages a client sends over the WebSocket, and their parser.
//!
//! Every message is a JSON object with a `type`. Requests that get an answer of their own
//! carry an optional `ref`, echoed in the answer and in any `error`, so a client can match
//! them; a `send` is matched by its `localId` instead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::ids::{ConversationId, Seq};

/// A client's handle on one of its requests, echoed back in the answer.
pub type Ref = Option<String>;

/// A message from client to server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum ClientMsg {
    /// Authenticate this socket with an access token (first message, or later with a fresh
    /// token when the old one expires).
    Auth {
        /// The access token from login or refresh.
        token: String,
    },
    /// Post a message. Answered with `ack` (or `error` with `ref` = `localId`).
    Send {
        /// Where to post.
        conversation: ConversationId,
        /// The client's unique id for this message; retrying with the same one never
        /// posts twice.
        local_id: String,
        /// The text.
        body: String,
        /// Echoed in an `error`; defaults to `localId`.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// Replay what was missed: every message after each cursor, then `synced`.
    Sync {
        /// Conversation → the last `seq` the client has. A conversation the user is in but
        /// that is not listed replays its latest messages only.
        #[serde(default, deserialize_with = "crate::wire_util::cursors")]
        cursors: BTreeMap<ConversationId, Seq>,
        /// Echoed in `synced`.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// Page backwards through a conversation: up to `limit` messages before `before`.
    History {
        /// Which conversation.
        conversation: ConversationId,
        /// Exclusive upper bound; absent means "from the newest".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Seq>,
        /// How many (the server caps it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// Echoed in the answer.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// List the user's conversations (answered with `conversations`).
    Conversations {
        /// Echoed in the answer.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// Create a group with the given members (by username), the sender as owner.
    CreateGroup {
        /// The group's name.
        name: String,
        /// Usernames to add besides the creator.
        #[serde(default)]
        members: Vec<String>,
        /// Echoed in the answer.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// Open (or find) the direct chat with one user.
    CreateDirect {
        /// The other user's username.
        with: String,
        /// Echoed in the answer.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// Add a user to a group (owner only).
    AddMember {
        /// The group.
        conversation: ConversationId,
        /// Who to add.
        username: String,
        /// Echoed in the answer.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// Remove a user from a group (owner only; anyone may remove themselves).
    RemoveMember {
        /// The group.
        conversation: ConversationId,
        /// Who to remove.
        username: String,
        /// Echoed in the answer.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// Leave a group.
    Leave {
        /// The group.
        conversation: ConversationId,
        /// Echoed in the answer.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// Rename a group (any member).
    Rename {
        /// The group.
        conversation: ConversationId,
        /// The new name.
        name: String,
        /// Echoed in the answer.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
}

/// A message that could not be parsed: what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// `malformed`, `unknown_type` or `invalid`.
    pub code: ErrorCode,
    /// What was wrong, in words (serde's description, which names the field).
    pub message: String,
    /// The request's `ref` (or a `send`'s `localId`) if it could be read, so the error can
    /// be matched to the request.
    pub reference: Ref,
}

/// The types [`ClientMsg`] knows, to tell "unknown type" from "bad fields".
const KNOWN_TYPES: &[&str] = &[
    "auth",
    "send",
    "sync",
    "history",
    "conversations",
    "create_group",
    "create_direct",
    "add_member",
    "remove_member",
    "leave",
    "rename",
];

/// The parts of a request that help answer even a request that does not parse.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    #[serde(rename = "ref")]
    reference: Option<serde_json::Value>,
    #[serde(rename = "localId")]
    local_id: Option<serde_json::Value>,
}

impl ClientMsg {
    /// Parses one text message.
    ///
    /// # Errors
    /// A [`ParseError`] naming what was wrong, with the request's `ref`/`localId` when the
    /// text was at least a JSON object.
    pub fn parse(text: &str) -> Result<ClientMsg, ParseError> {
        match serde_json::from_str::<ClientMsg>(text) {
            Ok(msg) => Ok(msg),
            Err(err) => Err(explain(text, &err)),
        }
    }

    /// The `ref` an answer or error to this request carries (a `send`'s defaults to its
    /// `localId`).
    #[must_use]
    pub fn reference(&self) -> Ref {
        match self {
            ClientMsg::Auth { .. } => None,
            ClientMsg::Send {
                reference,
                local_id,
                ..
            } => reference.clone().or_else(|| Some(local_id.clone())),
            ClientMsg::Sync { reference, .. }
            | ClientMsg::History { reference, .. }
            | ClientMsg::Conversations { reference }
            | ClientMsg::CreateGroup { reference, .. }
            | ClientMsg::CreateDirect { reference, .. }
            | ClientMsg::AddMember { reference, .. }
            | ClientMsg::RemoveMember { reference, .. }
            | ClientMsg::Leave { reference, .. }
            | ClientMsg::Rename { reference, .. } => reference.clone(),
        }
    }
}

/// Turns serde's error into a client-facing one, recovering `ref`/`localId` if possible.
fn explain(text: &str, err: &serde_json::Error) -> ParseError {
    // serde reads a struct from an array too; only an object is a message.
    let object = text.trim_start().starts_with('{');
    let envelope = if object {
        serde_json::from_str::<Envelope>(text).ok()
    } else {
        None
    };
    let Some(envelope) = envelope else {
        return ParseError {
            code: ErrorCode::Malformed,
            message: if err.is_syntax() || err.is_eof() {
                format!("not valid JSON: {err}")
            } else {
                "a message must be a JSON object with a \"type\"".to_owned()
            },
            reference: None,
        };
    };
    let reference = [envelope.reference, envelope.local_id]
        .into_iter()
        .flatten()
        .find_map(|v| match v {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        // Never echo back an unbounded string the client made up.
        .filter(|s| s.len() <= MAX_ECHOED_REF);
    let (code, message) = match envelope.kind {
        None => (ErrorCode::UnknownType, "missing \"type\" field".to_owned()),
        Some(serde_json::Value::String(t)) if !KNOWN_TYPES.contains(&t.as_str()) => {
            let shown: String = t.chars().take(40).collect();
            (ErrorCode::UnknownType, format!("unknown type {shown:?}"))
        }
        Some(serde_json::Value::String(t)) => (ErrorCode::Invalid, format!("invalid {t}: {err}")),
        Some(_) => (
            ErrorCode::UnknownType,
            "\"type\" must be a string".to_owned(),
        ),
    };
    ParseError {
        code,
        message,
        reference,
    }
}

/// The longest `ref` echoed back from a request that did not parse.
pub const MAX_ECHOED_REF: usize = 128;
