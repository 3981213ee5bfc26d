//! Error codes: the machine-readable half of every `error` message and REST error body.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a request was refused. Stable strings on the wire (`snake_case`); clients branch on
/// these, so a code is never renamed, only added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The text was not valid JSON, or not a JSON object.
    Malformed,
    /// The `type` is missing or not one this server knows.
    UnknownType,
    /// A field is missing, has the wrong type, or a value is out of range.
    Invalid,
    /// A message body exceeds the server's `--max-body-chars`.
    BodyTooLong,
    /// The request needs an authenticated session (send `auth` first).
    NotAuthenticated,
    /// The token is not one this server issued (bad signature, malformed).
    TokenInvalid,
    /// The access token has expired; send a fresh one with `auth` or refresh it.
    TokenExpired,
    /// Unknown username or wrong password (deliberately not told apart).
    InvalidCredentials,
    /// Registration with a username someone already has.
    UsernameTaken,
    /// A username that breaks the documented rules.
    InvalidUsername,
    /// A password that breaks the documented rules.
    InvalidPassword,
    /// The user is not a member of the conversation.
    NotMember,
    /// Only the group's owner may do this.
    NotOwner,
    /// No such conversation, user or message.
    NotFound,
    /// Too many requests; slow down (`retryAfterMs` says for how long where known).
    RateLimited,
    /// A file is larger than the server accepts.
    FileTooLarge,
    /// A per-user quota (uploads in flight, bytes per day) is used up.
    QuotaExceeded,
    /// An upload's bytes do not match what `file_start` announced (size or SHA-256).
    FileMismatch,
    /// The server cannot serve this now (shutting down, overloaded); retry later.
    Unavailable,
    /// Something failed inside the server; the request may be retried.
    Internal,
}

impl ErrorCode {
    /// The wire name, e.g. `"not_member"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Invalid => "invalid",
            ErrorCode::BodyTooLong => "body_too_long",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::InvalidUsername => "invalid_username",
            ErrorCode::InvalidPassword => "invalid_password",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::FileMismatch => "file_mismatch",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status a REST endpoint answers with for this code.
    #[must_use]
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Malformed
            | ErrorCode::UnknownType
            | ErrorCode::Invalid
            | ErrorCode::BodyTooLong
            | ErrorCode::InvalidUsername
            | ErrorCode::InvalidPassword
            | ErrorCode::FileMismatch => 400,
            ErrorCode::NotAuthenticated
            | ErrorCode::TokenInvalid
            | ErrorCode::TokenExpired
            | ErrorCode::InvalidCredentials => 401,
            ErrorCode::NotMember | ErrorCode::NotOwner => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::UsernameTaken => 409,
            ErrorCode::FileTooLarge => 413,
            ErrorCode::RateLimited | ErrorCode::QuotaExceeded => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
