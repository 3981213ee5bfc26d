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
    /// Everything up to `seq` in `conversation` reached this user's device (cumulative;
    /// a lower value than before is ignored). No answer unless it is refused.
    Received {
        /// Which conversation.
        conversation: ConversationId,
        /// The newest `seq` the device has.
        seq: Seq,
    },
    /// The person has seen everything up to `seq` (cumulative; implies `received`). Moves
    /// the read marker the unread count starts from. No answer unless it is refused.
    Read {
        /// Which conversation.
        conversation: ConversationId,
        /// The newest `seq` shown to the person.
        seq: Seq,
    },
    /// The person started or stopped typing in `conversation`. Not stored.
    Typing {
        /// Where.
        conversation: ConversationId,
        /// `start` (repeat it while typing goes on) or `stop`.
        state: TypingState,
    },
    /// Who is in `conversation` and who of them is online (answered with `user_list`);
    /// the connection then also gets `presence` for that conversation's members, however
    /// large it is, until it asks for another conversation's list.
    UserList {
        /// Which conversation.
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
    /// Begin (or resume) uploading a file to `conversation`; answered with `file_ready`.
    FileStart {
        /// Where the file will be posted.
        conversation: ConversationId,
        /// The client's id for this upload, unique per user: starting again with the same
        /// one resumes it, and it becomes the file message's `localId`.
        upload_id: String,
        /// The file's name as shown to people.
        name: String,
        /// Its exact size in bytes.
        size: u64,
        /// Its media type (`application/octet-stream` when unknown).
        #[serde(default = "default_mime")]
        mime: String,
        /// Its SHA-256 as 64 hex digits; checked at `file_end` when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        /// Echoed in the answer (defaults to `uploadId`).
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
    /// Every byte of the upload was sent: check it and post the file message (answered
    /// with `ack`, `localId` = the upload id).
    FileEnd {
        /// The server's id for the upload, from `file_ready`.
        file_id: u64,
        /// Echoed in an `error`.
        #[serde(
            default,
            rename = "ref",
            deserialize_with = "crate::wire_util::reference",
            skip_serializing_if = "Option::is_none"
        )]
        reference: Ref,
    },
}

/// Whether someone is typing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypingState {
    /// Typing (again): shown until `stop` or 5 s without a repeat.
    Start,
    /// Stopped typing (or sent the message).
    Stop,
}

fn default_mime() -> String {
    "application/octet-stream".to_owned()
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
    "received",
    "read",
    "typing",
    "user_list",
    "file_start",
    "file_end",
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
    #[serde(rename = "uploadId")]
    upload_id: Option<serde_json::Value>,
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
            ClientMsg::Auth { .. }
            | ClientMsg::Received { .. }
            | ClientMsg::Read { .. }
            | ClientMsg::Typing { .. } => None,
            ClientMsg::FileStart {
                reference,
                upload_id,
                ..
            } => reference.clone().or_else(|| Some(upload_id.clone())),
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
            | ClientMsg::Rename { reference, .. }
            | ClientMsg::UserList { reference, .. }
            | ClientMsg::FileEnd { reference, .. } => reference.clone(),
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
    let reference = [envelope.reference, envelope.local_id, envelope.upload_id]
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
