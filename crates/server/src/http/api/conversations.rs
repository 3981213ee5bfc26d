//! Conversations over REST: list, create, inspect, change members, page through messages.

use chatgroup_protocol::rest::{AddMember, ConversationList, CreateConversation, MessagePage};
use chatgroup_protocol::{ConversationId, ErrorCode, Seq};

use super::{authenticate, body, id_segment, json_response, ok, ApiError, ApiRequest, ApiResult};
use crate::context::ServerCtx;
use crate::http::query;
use crate::http::response::Response;

/// The largest history page.
pub(crate) const PAGE_MAX: usize = 200;
/// The default history page.
pub(crate) const PAGE_DEFAULT: usize = 50;

/// `GET /api/conversations` → the caller's conversations, newest activity first.
pub(super) async fn list(req: &ApiRequest, ctx: &ServerCtx) -> ApiResult {
    let user = authenticate(req, ctx)?;
    let conversations = ctx.store.conversations(user.id).await?;
    ok(&ConversationList { conversations })
}

/// `POST /api/conversations` with `{kind:"group", name, members}` (201) or
/// `{kind:"direct", with}` (201 when new, 200 when it existed).
pub(super) async fn create(req: &ApiRequest, ctx: &ServerCtx) -> ApiResult {
    let user = authenticate(req, ctx)?;
    let request: CreateConversation = body(req)?;
    match request {
        CreateConversation::Group { name, members } => {
            let info = crate::chat::actions::create_group(ctx, user.id, &name, &members).await?;
            Ok(json_response(201, &info))
        }
        CreateConversation::Direct { with } => {
            let (info, created) = crate::chat::actions::create_direct(ctx, &user, &with).await?;
            Ok(json_response(if created { 201 } else { 200 }, &info))
        }
    }
}

/// `GET /api/conversations/{id}`.
pub(super) async fn get(req: &ApiRequest, ctx: &ServerCtx, id: &str) -> ApiResult {
    let user = authenticate(req, ctx)?;
    let id = ConversationId(id_segment(id)?);
    ok(&ctx.store.conversation(user.id, id).await?)
}

/// `POST /api/conversations/{id}/members {username}` (owner only).
pub(super) async fn add_member(req: &ApiRequest, ctx: &ServerCtx, id: &str) -> ApiResult {
    let user = authenticate(req, ctx)?;
    let id = ConversationId(id_segment(id)?);
    let request: AddMember = body(req)?;
    let info = crate::chat::actions::add_member(ctx, user.id, id, &request.username).await?;
    ok(&info)
}

/// `DELETE /api/conversations/{id}/members/{username}` (owner, or the member themself).
pub(super) async fn remove_member(
    req: &ApiRequest,
    ctx: &ServerCtx,
    id: &str,
    username: &str,
) -> ApiResult {
    let user = authenticate(req, ctx)?;
    let id = ConversationId(id_segment(id)?);
    let username = query::parse(Some(&format!("u={username}")))
        .ok()
        .and_then(|mut q| q.remove("u"))
        .ok_or_else(|| ApiError::new(ErrorCode::Invalid, "bad username in path"))?;
    crate::chat::actions::remove_member(ctx, user.id, id, &username).await?;
    Ok(Response::status(204))
}

/// `GET /api/conversations/{id}/messages?before=&limit=` → a page, ascending `seq`.
pub(super) async fn messages(req: &ApiRequest, ctx: &ServerCtx, id: &str) -> ApiResult {
    let user = authenticate(req, ctx)?;
    let id = ConversationId(id_segment(id)?);
    let params =
        query::parse(req.query.as_deref()).map_err(|m| ApiError::new(ErrorCode::Invalid, m))?;
    let before = match params.get("before") {
        None => None,
        Some(v) => Some(Seq(v.parse::<u64>().map_err(|_| {
            ApiError::new(ErrorCode::Invalid, "before must be a seq number")
        })?)),
    };
    let limit = match params.get("limit") {
        None => PAGE_DEFAULT,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=PAGE_MAX).contains(n))
            .ok_or_else(|| ApiError::new(ErrorCode::Invalid, "limit must be 1 to 200"))?,
    };
    let (messages, has_more) = ctx.store.history(user.id, id, before, limit).await?;
    ok(&MessagePage { messages, has_more })
}
