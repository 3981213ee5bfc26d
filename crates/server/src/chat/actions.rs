//! Conversation changes shared by the REST API and the chat socket: resolve usernames,
//! check the inputs, then let the store commit (it checks membership and ownership inside
//! its transaction, and its committed events reach the hub, which updates live membership).

use chatgroup_protocol::{ConversationId, ConversationInfo, ErrorCode, UserId, UserInfo};
use chatgroup_store::StoreError;

use crate::context::ServerCtx;

/// The most members one request may add at once.
pub(crate) const MAX_INITIAL_MEMBERS: usize = 256;
/// The longest group name, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 64;

/// Why an action was refused: a protocol error code and words for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActionError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl ActionError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ActionError {
    fn from(err: StoreError) -> Self {
        if matches!(err, StoreError::Db(_)) {
            tracing::error!(error = %err, "store failed");
            return ActionError::new(ErrorCode::Internal, "internal error");
        }
        ActionError::new(err.code(), err.to_string())
    }
}

impl From<ActionError> for crate::http::api::ApiError {
    fn from(err: ActionError) -> Self {
        crate::http::api::ApiError::new(err.code, err.message)
    }
}

/// The longest `localId`, in bytes.
pub(crate) const MAX_LOCAL_ID: usize = 64;

/// Checks a message before it is queued, the same for a socket `send` and `POST
/// /api/messages`.
pub(crate) fn check_message(
    ctx: &ServerCtx,
    local_id: &str,
    body: &str,
) -> Result<(), ActionError> {
    if local_id.is_empty() || local_id.len() > MAX_LOCAL_ID {
        return Err(ActionError::new(
            ErrorCode::Invalid,
            format!("localId must have 1 to {MAX_LOCAL_ID} bytes"),
        ));
    }
    let max = ctx.cfg.max_body_chars;
    if body.chars().count() > max {
        return Err(ActionError::new(
            ErrorCode::BodyTooLong,
            format!("body has more than {max} characters"),
        ));
    }
    if body.trim().is_empty() {
        return Err(ActionError::new(ErrorCode::Invalid, "body is empty"));
    }
    Ok(())
}

/// Checks a group name and returns it trimmed.
pub(crate) fn group_name(name: &str) -> Result<&str, ActionError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(ActionError::new(
            ErrorCode::Invalid,
            "a group name has 1 to 64 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ActionError::new(
            ErrorCode::Invalid,
            "a group name cannot contain control characters",
        ));
    }
    Ok(name)
}

/// The user with this name, or `not_found` naming it.
pub(crate) async fn resolve(ctx: &ServerCtx, username: &str) -> Result<UserInfo, ActionError> {
    match ctx.store.user_by_name(username).await? {
        Some(found) => Ok(found.user),
        None => Err(ActionError::new(
            ErrorCode::NotFound,
            format!("no user named {:?}", truncate(username)),
        )),
    }
}

/// Creates a group owned by `owner` with the named members.
pub(crate) async fn create_group(
    ctx: &ServerCtx,
    owner: UserId,
    name: &str,
    members: &[String],
) -> Result<ConversationInfo, ActionError> {
    let name = group_name(name)?;
    if members.len() > MAX_INITIAL_MEMBERS {
        return Err(ActionError::new(
            ErrorCode::Invalid,
            format!("at most {MAX_INITIAL_MEMBERS} members at creation"),
        ));
    }
    let mut ids = Vec::with_capacity(members.len());
    for username in members {
        let user = resolve(ctx, username).await?;
        if user.id != owner && !ids.contains(&user.id) {
            ids.push(user.id);
        }
    }
    Ok(ctx.store.create_group(owner, name, &ids).await?)
}

/// Opens the direct chat between `me` and the named user; `true` if it was created now.
pub(crate) async fn create_direct(
    ctx: &ServerCtx,
    me: &UserInfo,
    with: &str,
) -> Result<(ConversationInfo, bool), ActionError> {
    let other = resolve(ctx, with).await?;
    if other.id == me.id {
        return Err(ActionError::new(
            ErrorCode::Invalid,
            "a direct chat needs another user",
        ));
    }
    let (mut info, created) = ctx.store.create_direct(me.id, other.id).await?;
    info.name = other.username;
    Ok((info, created))
}

/// Adds the named user to a group (the owner's action).
pub(crate) async fn add_member(
    ctx: &ServerCtx,
    by: UserId,
    conversation: ConversationId,
    username: &str,
) -> Result<ConversationInfo, ActionError> {
    let user = resolve(ctx, username).await?;
    Ok(ctx.store.add_member(by, conversation, user.id).await?)
}

/// Removes the named user from a group (the owner's action, or leaving when it is `by`).
pub(crate) async fn remove_member(
    ctx: &ServerCtx,
    by: UserId,
    conversation: ConversationId,
    username: &str,
) -> Result<(), ActionError> {
    let user = resolve(ctx, username).await?;
    Ok(ctx.store.remove_member(by, conversation, user.id).await?)
}

/// At most 40 characters of something a client sent, for an error message.
pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}
