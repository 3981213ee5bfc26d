//! The things messages talk about: users, messages, conversations. Shared by WebSocket
//! messages and REST bodies, so a message looks the same however a client got it.

use serde::{Deserialize, Serialize};

use crate::ids::{ConversationId, MessageId, Seq, UserId};

/// Milliseconds since the Unix epoch, by the server's clock.
pub type Millis = i64;

/// A user as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user's id.
    pub id: UserId,
    /// The user's unique name.
    pub username: String,
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Text a person wrote.
    #[default]
    Text,
    /// Something that happened to the conversation (created, joined, left, renamed); `event`
    /// says what, `body` says it in words.
    System,
    /// A shared file; `body` holds its description.
    File,
}

/// What a system message records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum SystemEvent {
    /// The conversation was created by `by`.
    Created {
        /// Who created it.
        by: UserId,
        /// Its name at creation (groups).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// `user` was added by `by`.
    Joined {
        /// The new member.
        user: UserId,
        /// Who added them.
        by: UserId,
    },
    /// `user` left on their own.
    Left {
        /// The departing member.
        user: UserId,
    },
    /// `user` was removed by `by` (the owner).
    Removed {
        /// The removed member.
        user: UserId,
        /// Who removed them.
        by: UserId,
    },
    /// The group was renamed to `name` by `by`.
    Renamed {
        /// The new name.
        name: String,
        /// Who renamed it.
        by: UserId,
    },
}

/// One stored message, as delivered live (`new_message`), replayed (`sync_batch`) or paged
/// (`history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    /// The conversation it belongs to.
    pub conversation: ConversationId,
    /// Unique across the database.
    pub id: MessageId,
    /// Its position in the conversation.
    pub seq: Seq,
    /// When the server committed it.
    pub ts: Millis,
    /// Who wrote it; absent for system messages that no one in particular caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<UserId>,
    /// The sender's username at the time of reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    /// What it is.
    #[serde(default)]
    pub kind: MessageKind,
    /// The text (for system messages, a description in words).
    pub body: String,
    /// The sender's id for the message, so the sender's other devices can match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
    /// For system messages, what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<SystemEvent>,
    /// For file messages, the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
}

/// A file shared in a conversation; its bytes are at `GET /api/files/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    /// The file's id.
    pub id: u64,
    /// Its name as the uploader gave it.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub mime: String,
    /// Its SHA-256, 64 lowercase hex digits.
    pub sha256: String,
}

/// One member's delivery and read markers (see `receipt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Markers {
    /// Whose.
    pub user: UserId,
    /// Everything up to this `seq` reached one of their devices.
    pub delivered: Seq,
    /// They have seen everything up to this `seq`.
    pub read: Seq,
}

/// A member and whether they are online (`user_list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberPresence {
    /// The user's id.
    pub id: UserId,
    /// The user's name.
    pub username: String,
    /// Whether any of their connections is open.
    pub online: bool,
    /// When they were last online (absent if never, or while online).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Millis>,
}

/// A group (named, with an owner) or a direct chat (exactly two people).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// A named group with an owner.
    Group,
    /// A chat between exactly two users.
    Direct,
}

/// A conversation as its members see it in their list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationInfo {
    /// Its id.
    pub id: ConversationId,
    /// Group or direct.
    pub kind: ConversationKind,
    /// The group's name; for a direct chat, the other person's username.
    pub name: String,
    /// The group's owner (absent for direct chats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserId>,
    /// Everyone in it.
    pub members: Vec<UserInfo>,
    /// The newest message's position (0 when empty).
    pub last_seq: Seq,
    /// The newest message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<MessageView>,
    /// How many messages after the reader's read marker.
    #[serde(default)]
    pub unread: u64,
    /// Every member's delivery and read markers, so a client shows its ticks right after
    /// (re)connecting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub markers: Vec<Markers>,
}
