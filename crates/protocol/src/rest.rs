//! Bodies of the REST API under `/api/`.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::ids::ConversationId;
use crate::model::{ConversationInfo, MessageView, Millis, UserInfo};

/// `POST /api/register` and `POST /api/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The username.
    pub username: String,
    /// The password, in clear over the (TLS-terminated) connection; never stored or logged.
    pub password: String,
}

/// The answer to register, login and refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Who is logged in.
    pub user: UserInfo,
    /// A short-lived JWT for `Authorization: Bearer` and WebSocket `auth`.
    pub access_token: String,
    /// When the access token expires.
    pub expires_at: Millis,
    /// A long-lived, single-use token for `POST /api/token/refresh`.
    pub refresh_token: String,
}

/// `POST /api/token/refresh` and `POST /api/logout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    /// The refresh token to use (refresh) or revoke (logout).
    pub refresh_token: String,
}

/// `POST /api/conversations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CreateConversation {
    /// A group owned by the caller.
    Group {
        /// Its name.
        name: String,
        /// Usernames to add besides the caller.
        #[serde(default)]
        members: Vec<String>,
    },
    /// The direct chat with one user (returned as is if it exists).
    Direct {
        /// The other user's username.
        with: String,
    },
}

/// `POST /api/conversations/{id}/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMember {
    /// Who to add.
    pub username: String,
}

/// `GET /api/conversations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationList {
    /// Newest activity first.
    pub conversations: Vec<ConversationInfo>,
}

/// `GET /api/users?prefix=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// Matching users, by username.
    pub users: Vec<UserInfo>,
}

/// `GET /api/conversations/{id}/messages?before=&limit=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    /// Ascending `seq`.
    pub messages: Vec<MessageView>,
    /// Whether older messages exist.
    pub has_more: bool,
}

/// `POST /api/messages`: post a message as the bearer, exactly as a socket `send` does;
/// answered with the `ack` a socket would get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    /// Where to post.
    pub conversation: ConversationId,
    /// The caller's unique id for the message: a retry with the same one never posts twice.
    pub local_id: String,
    /// The text.
    pub body: String,
}

/// Every REST error: the status line says the class, this says exactly what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Machine-readable.
    pub error: ErrorCode,
    /// In words.
    pub message: String,
    /// For `rate_limited`: when to try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}
