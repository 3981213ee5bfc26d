//! `POST /api/messages`: posting as a user over HTTP, for bots and backends. It does exactly
//! what a socket `send` does (same checks, same limits, same idempotency by `localId`, same
//! live delivery to every member's connections) and answers with the `ack` a socket gets,
//! once the message is committed.

use chatgroup_protocol::rest::SendMessage;
use chatgroup_protocol::{MessageKind, ServerMsg};
use chatgroup_store::{AppendRequest, Origin};

use super::{authenticate, body, json_response, ApiError, ApiRequest, ApiResult};
use crate::chat::actions;
use crate::context::ServerCtx;

/// The origin tag of HTTP posts: no connection has it (connection ids start at 1), so the
/// hub's ack for it goes nowhere and every connection of the sender gets the message.
const HTTP_ORIGIN: u64 = 0;

/// `POST /api/messages {conversation, localId, body}` → 201 with the `ack` (200 with
/// `duplicate: true` when that `localId` was posted before).
pub(super) async fn send(req: &ApiRequest, ctx: &ServerCtx) -> ApiResult {
    let user = authenticate(req, ctx)?;
    let request: SendMessage = body(req)?;
    actions::check_message(ctx, &request.local_id, &request.body)?;
    let rate = ctx.cfg.user_message_rate;
    if let Err(wait) = ctx.user_sends.take(user.id, rate, rate.saturating_mul(2)) {
        let mut err = ApiError::rate_limited(wait);
        err.message = format!("more than {rate} messages per second from one user");
        return Err(err);
    }
    let (message, duplicate) = ctx
        .store
        .append_committed(AppendRequest {
            sender: user.id,
            conversation: request.conversation,
            local_id: request.local_id.clone(),
            body: request.body,
            kind: MessageKind::Text,
            origin: Origin {
                tag: HTTP_ORIGIN,
                reference: None,
            },
        })
        .await?;
    let ack = ServerMsg::Ack {
        conversation: message.conversation,
        local_id: request.local_id,
        id: message.id,
        seq: message.seq,
        ts: message.ts,
        duplicate,
    };
    Ok(json_response(if duplicate { 200 } else { 201 }, &ack))
}
