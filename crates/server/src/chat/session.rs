//! One connection's chat session: authentication state, limits, and what each client
//! message does. The read pump hands it every text message (except the `ping` heartbeat)
//! and keeps doing transport only; the session answers through the connection's outbox and
//! talks to the store and the hub.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatgroup_protocol::{
    ClientMsg, ConversationId, ErrorCode, MemberPresence, MessageKind, MessageView, Ref, Seq,
    ServerMsg, UserInfo,
};
use chatgroup_store::{AppendRequest, Origin};
use rfc6455::CloseCode;
use tokio::sync::oneshot;

use super::actions::{self, ActionError};
use super::bucket::TokenBucket;
use crate::auth::{self, TokenError};
use crate::config::Config;
use crate::context::ServerCtx;
use crate::hub::chat::{ChatCommand, Live, SyncEnd, TooManyConnections};
use crate::hub::Command;
use crate::ids::ClientId;
use crate::outbox::{Delivery, Outbox, Pace};
use crate::wire;

/// The longest `ref`, in bytes.
pub(crate) const MAX_REF: usize = 128;
/// Messages per replay frame.
const REPLAY_BATCH: usize = 256;
/// The largest `history` page.
const HISTORY_MAX: u32 = 200;

/// What the read pump does after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Keep reading.
    Continue,
    /// Close the connection with this code and reason.
    Close(CloseCode, &'static str),
}

/// Per-connection chat state. Boxed inside the read pump: an idle connection keeps this
/// small struct and nothing else.
pub(crate) struct Session {
    user: Option<UserInfo>,
    /// Per-connection limits, one bucket per kind of request.
    sends: TokenBucket,
    receipts: TokenBucket,
    typing: TokenBucket,
    requests: TokenBucket,
    /// Refusals the client may still ignore before it is closed with 1008.
    strikes: Strikes,
    /// A token from the upgrade's `?token=`, used before the first message is read.
    initial_token: Option<String>,
    /// File uploads open on this connection; `None` until the first `file_start`.
    uploads: Option<Box<super::files::Uploads>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Session")
            .field("user", &self.user.as_ref().map(|u| u.id))
            .finish_non_exhaustive()
    }
}

/// What a session needs from its connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Io<'a> {
    pub(crate) ctx: &'a Arc<ServerCtx>,
    pub(crate) client: ClientId,
    pub(crate) outbox: &'a Arc<Outbox>,
}

impl Io<'_> {
    /// Sends a message to this connection, waiting while it is behind (a client that sends
    /// requests but does not read their answers is slowed down, not buffered for).
    pub(crate) async fn send(&self, msg: &ServerMsg) -> bool {
        self.send_frame(wire::json(msg)).await
    }

    async fn send_frame(&self, frame: bytes::Bytes) -> bool {
        // Wait first while the client is behind: a client that sends requests but does not
        // read the answers is slowed down, not buffered for (the read pump stops reading).
        while self.outbox.backlog_since().is_some() {
            if self.outbox.is_killed() || self.outbox.is_closing() {
                return false;
            }
            self.outbox.room().await;
        }
        let grace = self.ctx.cfg.slow_consumer_grace;
        let metrics = &self.ctx.metrics;
        // An answer to this connection alone: compressed here, on its own thread.
        let compressed = self
            .outbox
            .shared_deflate()
            .and_then(|threshold| wire::deflate_shared(&frame, threshold, metrics));
        match self
            .outbox
            .deliver(frame, compressed, Pace::Idle, grace, metrics)
        {
            Delivery::Done | Delivery::Watch => true,
            Delivery::Closed => false,
            Delivery::Evict => {
                // One answer larger than the whole outbox: the client cannot be served.
                self.outbox.close(
                    wire::close(CloseCode::POLICY_VIOLATION, "slow consumer: queue full"),
                    true,
                );
                false
            }
        }
    }

    pub(crate) async fn error(
        &self,
        code: ErrorCode,
        message: impl Into<String>,
        reference: Ref,
    ) -> bool {
        self.send(&ServerMsg::error(code, message, reference)).await
    }

    async fn hub(&self, cmd: Command) -> bool {
        self.ctx.hub.send_command(cmd).await.is_ok()
    }
}

impl Session {
    /// A session for a new connection, with the `?token=` of its upgrade request, if any.
    pub(crate) fn new(initial_token: Option<String>, cfg: &Config) -> Self {
        Self {
            user: None,
            sends: TokenBucket::new(cfg.message_burst),
            receipts: TokenBucket::new(cfg.receipt_rate.saturating_mul(4)),
            typing: TokenBucket::new(cfg.typing_rate.saturating_mul(2)),
            requests: TokenBucket::new(cfg.request_rate.saturating_mul(2)),
            strikes: Strikes::new(cfg.rate_limit_strikes),
            initial_token,
            uploads: None,
        }
    }

    /// Runs before the first read: authenticates with the upgrade's token, if any.
    pub(crate) async fn start(&mut self, io: Io<'_>) -> Outcome {
        match self.initial_token.take() {
            Some(token) => self.auth(&token, io).await,
            None => Outcome::Continue,
        }
    }

    /// Handles one binary message: a chunk of an upload open on this connection (anything
    /// else closes the connection with 1003).
    pub(crate) async fn on_binary(&mut self, frame: bytes::Bytes, io: Io<'_>) -> Outcome {
        super::files::chunk(
            &mut self.uploads,
            &mut self.strikes,
            self.user.as_ref(),
            frame,
            io,
        )
        .await
    }

    /// Handles one text message.
    pub(crate) async fn on_text(&mut self, text: &str, io: Io<'_>) -> Outcome {
        let msg = match ClientMsg::parse(text) {
            Ok(msg) => msg,
            Err(err) => {
                io.error(err.code, err.message, err.reference).await;
                return Outcome::Continue;
            }
        };
        if let ClientMsg::Auth { token } = &msg {
            return self.auth(token, io).await;
        }
        let reference = msg.reference().filter(|r| r.len() <= MAX_REF);
        let Some(user) = self.user.clone() else {
            io.error(
                ErrorCode::NotAuthenticated,
                "authenticate first: {\"type\":\"auth\",\"token\":…}",
                reference,
            )
            .await;
            return Outcome::Continue;
        };
        // A send that would be refused anyway does not use up the sender's allowance.
        if let ClientMsg::Send { local_id, body, .. } = &msg {
            if let Err(err) = actions::check_message(io.ctx, local_id, body) {
                io.error(err.code, err.message, reference).await;
                return Outcome::Continue;
            }
        }
        if let Err((what, rate, wait)) = self.limit(&msg, &user, io) {
            let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            io.send(&ServerMsg::Error {
                code: ErrorCode::RateLimited,
                message: format!("more than {rate} {what} per second; retry in {ms} ms"),
                reference,
                retry_after_ms: Some(ms),
            })
            .await;
            return self.strikes.strike();
        }
        let result = self.dispatch(&user, msg, io).await;
        if let Err(err) = result {
            io.error(err.code, err.message, reference).await;
        }
        Outcome::Continue
    }

    /// Takes a token for `msg` from the buckets it counts against; when one is empty, what
    /// is limited, the rate, and how long until a token is back.
    fn limit(
        &mut self,
        msg: &ClientMsg,
        user: &UserInfo,
        io: Io<'_>,
    ) -> Result<(), (&'static str, u32, Duration)> {
        let cfg = &io.ctx.cfg;
        let refused = |what, rate| move |wait| (what, rate, wait);
        match msg {
            ClientMsg::Send { .. } => {
                self.sends
                    .take(cfg.message_rate, cfg.message_burst)
                    .map_err(refused("messages", cfg.message_rate))?;
                let rate = cfg.user_message_rate;
                io.ctx
                    .user_sends
                    .take(user.id, rate, rate.saturating_mul(2))
                    .map_err(refused("messages from one user", rate))
            }
            ClientMsg::Received { .. } | ClientMsg::Read { .. } => {
                let rate = cfg.receipt_rate;
                self.receipts
                    .take(rate, rate.saturating_mul(4))
                    .map_err(refused("receipts", rate))
            }
            ClientMsg::Typing { .. } => {
                let rate = cfg.typing_rate;
                self.typing
                    .take(rate, rate.saturating_mul(2))
                    .map_err(refused("typing reports", rate))
            }
            ClientMsg::Auth { .. } => Ok(()),
            _ => {
                let rate = cfg.request_rate;
                self.requests
                    .take(rate, rate.saturating_mul(2))
                    .map_err(refused("requests", rate))
            }
        }
    }

    /// Carries out an authenticated request.
    async fn dispatch(
        &mut self,
        user: &UserInfo,
        msg: ClientMsg,
        io: Io<'_>,
    ) -> Result<(), ActionError> {
        match msg {
            ClientMsg::Send {
                conversation,
                local_id,
                body,
                reference,
            } => {
                self.send(user, conversation, local_id, body, reference, io)
                    .await
            }
            ClientMsg::Sync { cursors, reference } => sync(user, cursors, reference, io).await,
            ClientMsg::History {
                conversation,
                before,
                limit,
                reference,
            } => history(user, conversation, before, limit, reference, io).await,
            ClientMsg::Conversations { reference } => {
                let conversations = io.ctx.store.conversations(user.id).await?;
                io.send(&ServerMsg::Conversations {
                    conversations,
                    reference,
                })
                .await;
                Ok(())
            }
            ClientMsg::CreateGroup {
                name,
                members,
                reference,
            } => {
                let info = actions::create_group(io.ctx, user.id, &name, &members).await?;
                io.send(&ServerMsg::Conversation {
                    conversation: info,
                    reference,
                })
                .await;
                Ok(())
            }
            ClientMsg::CreateDirect { with, reference } => {
                let (info, _) = actions::create_direct(io.ctx, user, &with).await?;
                io.send(&ServerMsg::Conversation {
                    conversation: info,
                    reference,
                })
                .await;
                Ok(())
            }
            ClientMsg::AddMember {
                conversation,
                username,
                reference,
            } => {
                let info = actions::add_member(io.ctx, user.id, conversation, &username).await?;
                io.send(&ServerMsg::Conversation {
                    conversation: info,
                    reference,
                })
                .await;
                Ok(())
            }
            ClientMsg::RemoveMember {
                conversation,
                username,
                reference,
            } => {
                actions::remove_member(io.ctx, user.id, conversation, &username).await?;
                io.send(&ServerMsg::Done { reference }).await;
                Ok(())
            }
            ClientMsg::Leave {
                conversation,
                reference,
            } => {
                io.ctx
                    .store
                    .remove_member(user.id, conversation, user.id)
                    .await?;
                io.send(&ServerMsg::Done { reference }).await;
                Ok(())
            }
            ClientMsg::Rename {
                conversation,
                name,
                reference,
            } => {
                let name = actions::group_name(&name)?;
                let info = io.ctx.store.rename(user.id, conversation, name).await?;
                io.send(&ServerMsg::Conversation {
                    conversation: info,
                    reference,
                })
                .await;
                Ok(())
            }
            ClientMsg::Received { conversation, seq } => {
                io.ctx
                    .store
                    .mark(user.id, conversation, seq, Seq::ZERO, io.client.0);
                Ok(())
            }
            ClientMsg::Read { conversation, seq } => {
                io.ctx
                    .store
                    .mark(user.id, conversation, seq, seq, io.client.0);
                Ok(())
            }
            ClientMsg::Typing {
                conversation,
                state,
            } => {
                io.hub(Command::Chat(Box::new(ChatCommand::Typing {
                    client: io.client,
                    conversation,
                    state,
                })))
                .await;
                Ok(())
            }
            ClientMsg::UserList {
                conversation,
                reference,
            } => user_list(user, conversation, reference, io).await,
            ClientMsg::FileStart {
                conversation,
                upload_id,
                name,
                size,
                mime,
                sha256,
                reference,
            } => {
                let req = super::files::FileStart {
                    conversation,
                    upload_id,
                    name,
                    size,
                    mime,
                    sha256,
                    reference,
                };
                super::files::start(&mut self.uploads, user, req, io).await
            }
            ClientMsg::FileEnd { file_id, reference } => {
                super::files::end(&mut self.uploads, user, file_id, reference, io).await
            }
            // Handled above.
            ClientMsg::Auth { .. } => Ok(()),
            _ => Err(ActionError::new(
                ErrorCode::UnknownType,
                "this server does not handle that type",
            )),
        }
    }

    async fn auth(&mut self, token: &str, io: Io<'_>) -> Outcome {
        let verified = match io.ctx.auth.jwt.verify(token) {
            Ok(v) => v,
            Err(err) => {
                if self.user.is_some() {
                    // A failed renewal keeps the session until its old token's grace ends.
                    io.error(
                        token_code(err),
                        format!("{err}; the current session continues until it expires"),
                        None,
                    )
                    .await;
                    return Outcome::Continue;
                }
                return Outcome::Close(
                    CloseCode(4001),
                    match err {
                        TokenError::Expired => "token expired",
                        TokenError::Invalid => "invalid token",
                    },
                );
            }
        };
        let expires = deadline_of(verified.expires_at);
        if let Some(user) = &self.user {
            if user.id != verified.user.id {
                io.error(
                    ErrorCode::Invalid,
                    "a connection stays with the user it authenticated as",
                    None,
                )
                .await;
                return Outcome::Continue;
            }
            io.hub(Command::Chat(Box::new(ChatCommand::Renewed {
                client: io.client,
                expires,
            })))
            .await;
            return self.ready(io, verified.expires_at).await;
        }
        let (tx, rx) = oneshot::channel();
        if !io
            .hub(Command::Chat(Box::new(ChatCommand::Authenticated {
                client: io.client,
                user: verified.user.id,
                expires,
                renew: io.ctx.cfg.auth_timeout,
                reply: tx,
                max_per_user: io.ctx.cfg.max_connections_per_user,
            })))
            .await
        {
            return Outcome::Close(CloseCode::GOING_AWAY, "server shutting down");
        }
        // Queued even if the hub refuses the connection: the `Attached` event of a
        // connection the hub does not expect is ignored.
        if io
            .ctx
            .store
            .attach(verified.user.id, io.client.0)
            .await
            .is_err()
        {
            return Outcome::Close(CloseCode::TRY_AGAIN_LATER, "store unavailable");
        }
        match rx.await {
            Ok(Ok(_)) => {}
            Ok(Err(TooManyConnections)) => {
                return Outcome::Close(
                    CloseCode::POLICY_VIOLATION,
                    "too many connections for this user",
                )
            }
            Err(_) => return Outcome::Close(CloseCode::TRY_AGAIN_LATER, "store unavailable"),
        }
        self.user = Some(verified.user);
        self.ready(io, verified.expires_at).await
    }

    async fn ready(&mut self, io: Io<'_>, expires_at: i64) -> Outcome {
        let Some(user) = self.user.clone() else {
            return Outcome::Continue;
        };
        // The name may have changed since the token was issued; the store has it now.
        let user = match io.ctx.store.user(user.id).await {
            Ok(Some(current)) => current,
            Ok(None) => return Outcome::Close(CloseCode(4001), "no such user"),
            Err(_) => user,
        };
        let conversations = match io.ctx.store.conversations(user.id).await {
            Ok(list) => list,
            Err(_) => return Outcome::Close(CloseCode::TRY_AGAIN_LATER, "store unavailable"),
        };
        io.send(&ServerMsg::Ready {
            user,
            epoch: io.ctx.store.epoch().to_owned(),
            conversations,
            expires_at,
        })
        .await;
        // Live delivery starts only now, so `ready` is the first thing the client reads.
        io.hub(Command::Chat(Box::new(ChatCommand::Release {
            client: io.client,
        })))
        .await;
        Outcome::Continue
    }

    async fn send(
        &mut self,
        user: &UserInfo,
        conversation: ConversationId,
        local_id: String,
        body: String,
        reference: Ref,
        io: Io<'_>,
    ) -> Result<(), ActionError> {
        let reference = reference.or_else(|| Some(local_id.clone()));
        // Queued, not committed: the ack (or the refusal) comes from the hub after commit.
        io.ctx
            .store
            .append(AppendRequest {
                sender: user.id,
                conversation,
                local_id,
                body,
                kind: MessageKind::Text,
                origin: Origin {
                    tag: io.client.0,
                    reference,
                },
            })
            .await?;
        Ok(())
    }
}

/// The rate-limit refusals a client may ignore: `allowance` in a burst, one more forgiven
/// per second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strikes {
    bucket: TokenBucket,
    allowance: u32,
}

impl Strikes {
    /// A full allowance.
    pub(crate) fn new(allowance: u32) -> Self {
        Self {
            bucket: TokenBucket::new(allowance),
            allowance,
        }
    }

    /// Counts one refusal the client ignored; once it has ignored too many, the connection
    /// is closed with 1008.
    pub(crate) fn strike(&mut self) -> Outcome {
        if self.bucket.take(1, self.allowance).is_err() {
            Outcome::Close(CloseCode::POLICY_VIOLATION, "rate limits ignored")
        } else {
            Outcome::Continue
        }
    }
}

fn token_code(err: TokenError) -> ErrorCode {
    match err {
        TokenError::Expired => ErrorCode::TokenExpired,
        TokenError::Invalid => ErrorCode::TokenInvalid,
    }
}

/// The monotonic instant at which a token expiring at `expires_at` (wall clock) expires.
fn deadline_of(expires_at: i64) -> Instant {
    let left = expires_at.saturating_sub(auth::now_ms()).max(0);
    Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(0))
}

/// `user_list`: the members, who of them is online, and from now on their presence changes.
async fn user_list(
    user: &UserInfo,
    conversation: ConversationId,
    reference: Ref,
    io: Io<'_>,
) -> Result<(), ActionError> {
    let members = io.ctx.store.member_presence(user.id, conversation).await?;
    let (tx, rx) = oneshot::channel();
    io.hub(Command::Chat(Box::new(ChatCommand::UserList {
        client: io.client,
        conversation,
        users: members.iter().map(|(m, _)| m.id).collect(),
        reply: tx,
    })))
    .await;
    let online = rx
        .await
        .map_err(|_| ActionError::new(ErrorCode::Unavailable, "server shutting down"))?;
    let members = members
        .into_iter()
        .zip(online)
        .map(|((m, last_seen), online)| MemberPresence {
            id: m.id,
            username: m.username,
            online,
            last_seen: if online { None } else { last_seen },
        })
        .collect();
    io.send(&ServerMsg::UserList {
        conversation,
        members,
        reference,
    })
    .await;
    Ok(())
}

/// `history`: a page before `before`, ascending.
async fn history(
    user: &UserInfo,
    conversation: ConversationId,
    before: Option<Seq>,
    limit: Option<u32>,
    reference: Ref,
    io: Io<'_>,
) -> Result<(), ActionError> {
    let limit = limit.unwrap_or(50).clamp(1, HISTORY_MAX) as usize;
    let (messages, has_more) = io
        .ctx
        .store
        .history(user.id, conversation, before, limit)
        .await?;
    io.send(&ServerMsg::History {
        conversation,
        messages,
        has_more,
        reference,
    })
    .await;
    Ok(())
}

/// `sync`: replays what the client missed, then hands over to live delivery (see
/// `hub::chat` for why there is no gap and no duplicate).
async fn sync(
    user: &UserInfo,
    cursors: BTreeMap<ConversationId, Seq>,
    reference: Ref,
    io: Io<'_>,
) -> Result<(), ActionError> {
    let (tx, rx) = oneshot::channel();
    io.hub(Command::Chat(Box::new(ChatCommand::Hold {
        client: io.client,
        reply: tx,
    })))
    .await;
    let Ok(Some(live)) = rx.await else {
        return Err(ActionError::new(ErrorCode::Unavailable, "not attached"));
    };
    for conversation in cursors.keys() {
        if !live.iter().any(|l| l.conversation == *conversation) {
            io.error(
                ErrorCode::NotMember,
                format!("not a member of conversation {conversation}"),
                reference.clone(),
            )
            .await;
        }
    }
    let mut upto: BTreeMap<ConversationId, Seq> = BTreeMap::new();
    loop {
        for l in &live {
            let start = match upto.get(&l.conversation) {
                Some(done) => Some(*done),
                None => cursors.get(&l.conversation).copied(),
            };
            // Where the replay got to: the client has everything up to it.
            if let Some(reached) = replay(user, l, start, io).await? {
                upto.insert(l.conversation, reached);
            }
        }
        let (tx, rx) = oneshot::channel();
        io.hub(Command::Chat(Box::new(ChatCommand::SyncDone {
            client: io.client,
            upto: upto.clone(),
            reference: reference.clone(),
            reply: tx,
        })))
        .await;
        match rx.await {
            Ok(SyncEnd::Again) => continue,
            Ok(SyncEnd::Done) | Err(_) => return Ok(()),
        }
    }
}

/// Replays one conversation from `after` (None: only the latest few), skipping what was
/// delivered live; returns the position the client has now reached (`None`: nothing to
/// replay and no cursor given).
async fn replay(
    user: &UserInfo,
    live: &Live,
    after: Option<Seq>,
    io: Io<'_>,
) -> Result<Option<Seq>, ActionError> {
    let store = &io.ctx.store;
    let mut after = match after {
        Some(after) => after,
        None => {
            // No cursor: the latest few only; older ones come from history.
            let latest = io.ctx.cfg.sync_latest;
            let (page, _) = store
                .history(user.id, live.conversation, None, latest.max(1))
                .await?;
            let Some(first) = page.first() else {
                return Ok(None);
            };
            Seq(first.seq.0.saturating_sub(1))
        }
    };
    let mut newest = (after > Seq::ZERO).then_some(after);
    loop {
        let batch = store
            .messages_after(user.id, live.conversation, after, REPLAY_BATCH)
            .await?;
        let Some(last) = batch.last() else {
            if newest == Some(after) && after > Seq::ZERO {
                // Nothing after the client's own cursor: it may claim more than exists (a
                // cursor from before a reset). Report what exists, so live messages up to
                // its claim are not skipped.
                let stored = store.last_seq(live.conversation).await?;
                return Ok(Some(after.min(stored)).filter(|s| *s > Seq::ZERO));
            }
            return Ok(newest);
        };
        after = last.seq;
        newest = Some(last.seq);
        let full = batch.len() == REPLAY_BATCH;
        let messages: Vec<MessageView> = batch
            .into_iter()
            .filter(|m| !(m.seq > live.since && m.seq <= live.last))
            .collect();
        if !messages.is_empty()
            && !io
                .send(&ServerMsg::SyncBatch {
                    conversation: live.conversation,
                    messages,
                })
                .await
        {
            return Err(ActionError::new(
                ErrorCode::Unavailable,
                "connection closed",
            ));
        }
        if !full {
            return Ok(newest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every authenticated connection keeps one of these for its whole life.
    #[test]
    fn an_idle_session_stays_small() {
        let size = std::mem::size_of::<Session>();
        assert!(size <= 112, "Session is {size} bytes");
    }
}
