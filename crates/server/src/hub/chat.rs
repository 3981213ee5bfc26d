//! The chat side of the hub: which user each connection is, which conversations it receives,
//! and turning the store's committed events into frames for the right connections.
//!
//! Everything here runs on the hub task, in the order the store committed it: the store
//! hands its events to the hub through one channel, so a connection that attaches, a member
//! added, and a message posted are applied in exactly the order they happened, and every
//! member sees a conversation's messages in `seq` order.
//!
//! **Sync without gap or duplicate.** While a connection replays what it missed, the hub
//! *holds* it: it takes it out of the live routes and buffers what would have been delivered.
//! The hold answers with what was already delivered live (per conversation, the range
//! `(since, last]`), so the replay skips exactly that; when the replay is done the buffered
//! frames newer than what the replay sent are flushed and live delivery resumes. A buffer
//! that grows past its bound is dropped and the replay asked to run again from where it
//! ended (the dropped messages are committed, so the store has them).
//!
//! **With other nodes** (`--bus redis`, see `cluster`): their commits arrive over the bus,
//! interleaved with ours, so every conversation event first goes through the hub's
//! sequencer (`hub::sequencer`), which hands this module each conversation's events in
//! `seq` order with no gap and no duplicate; everything above then holds as with one node,
//! and a sync's end also waits for live delivery to reach what its replay read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chatgroup_protocol::{
    ConversationId, ConversationInfo, ConversationKind, ErrorCode, MessageKind, Ref, Seq,
    ServerMsg, TypingState, UserId,
};
use chatgroup_store::Committed;
use tokio::sync::oneshot;

use super::presence::Presence;
use super::receipts::{Audience, Receipts};
use super::routes::Routes;
use super::typing::Typing;
use super::Hub;
use crate::metrics::{self, Metrics};

use crate::ids::ClientId;
use crate::wire;

mod cluster;

/// Most frames buffered for one held connection before the replay is asked to run again.
const HELD_MAX_FRAMES: usize = 8192;

/// A chat request to the hub (see [`super::Command::Chat`]).
#[derive(Debug)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // travels boxed (`Command::Chat`)
pub enum ChatCommand {
    /// A chat socket opened: it must authenticate by `auth_by` or be closed with 1008.
    Open {
        /// The connection.
        client: ClientId,
        /// Its authentication deadline.
        auth_by: Instant,
    },
    /// The connection presented a valid token; the session is attaching it in the store.
    /// `reply` gets the user's conversations when the store's `Attached` event arrives.
    Authenticated {
        /// The connection.
        client: ClientId,
        /// Who it authenticated as.
        user: UserId,
        /// When its token expires.
        expires: Instant,
        /// How long it has to renew an expired token before it is closed with 4001.
        renew: std::time::Duration,
        /// Answered with the conversations it now receives, or at once with
        /// [`TooManyConnections`] when the user has `max_per_user` connections already.
        reply: AttachReply,
        /// The most connections one user may have.
        max_per_user: usize,
    },
    /// The connection renewed its token.
    Renewed {
        /// The connection.
        client: ClientId,
        /// When the new token expires.
        expires: Instant,
    },
    /// A sync starts: hold live delivery; answered with what was delivered live already
    /// (`None` if the connection is not attached).
    Hold {
        /// The connection.
        client: ClientId,
        /// The answer.
        reply: oneshot::Sender<Option<Vec<Live>>>,
    },
    /// The sync's replay is done up to `upto`; flush, send `synced`, resume live delivery.
    SyncDone {
        /// The connection.
        client: ClientId,
        /// Per conversation, the newest `seq` the replay sent.
        upto: BTreeMap<ConversationId, Seq>,
        /// The sync request's `ref`, echoed in `synced`.
        reference: Ref,
        /// Whether the replay must run again.
        reply: oneshot::Sender<SyncEnd>,
    },
    /// The session has sent `ready`: start live delivery.
    Release {
        /// The connection.
        client: ClientId,
    },
    /// The store committed something.
    Committed(Committed),
    /// The bus brought something (`--bus redis`): another node's event, its own state, or
    /// a gap filled from the store.
    Bus(crate::bus::Inbound),
    /// Settings from the server's configuration; sent once, before any connection.
    Configure(Settings),
    /// The connection's user started or stopped typing.
    Typing {
        /// The connection.
        client: ClientId,
        /// Where.
        conversation: ConversationId,
        /// Start or stop.
        state: TypingState,
    },
    /// Which of `users` are online; the connection then watches `conversation`'s presence.
    UserList {
        /// The connection (a member of `conversation`, checked by the store).
        client: ClientId,
        /// The conversation whose list it is.
        conversation: ConversationId,
        /// Its members.
        users: Vec<UserId>,
        /// Per user, in order: online or not.
        reply: oneshot::Sender<Vec<bool>>,
    },
}

/// A user already has as many connections as one user may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyConnections;

/// The chat settings the hub needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where last-seen times are recorded.
    pub store: Option<chatgroup_store::Store>,
    /// How long a user stays online after their last connection closed.
    pub presence_debounce: std::time::Duration,
    /// Presence changes are pushed to conversations with at most this many connected
    /// members; larger ones get them only on connections watching them.
    pub presence_fanout: usize,
    /// The bus to the other nodes, if any: their events are sequenced with ours.
    pub bus: Option<crate::bus::Bus>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            store: None,
            presence_debounce: std::time::Duration::from_secs(3),
            presence_fanout: 100,
            bus: None,
        }
    }
}

/// The answer to [`ChatCommand::Authenticated`].
pub type AttachReply = oneshot::Sender<Result<Vec<ConversationId>, TooManyConnections>>;

/// What a sync skips: messages of `conversation` with `since < seq <= last` were delivered
/// live to this connection already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// The conversation.
    pub conversation: ConversationId,
    /// The newest `seq` committed before live delivery began.
    pub since: Seq,
    /// The newest `seq` delivered live.
    pub last: Seq,
}

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncEnd {
    /// Live delivery resumed with no gap; `synced` was sent.
    Done,
    /// Too much arrived during the replay: replay again from where it stopped.
    Again,
}

/// A deadline the hub enforces for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Not authenticated yet: close 1008 when it passes.
    Auth,
    /// The access token expires: tell the client, then allow an auth timeout to renew.
    TokenExpiry,
    /// The token expired and was not renewed: close 4001.
    Renew,
}

/// What the hub must do for a deadline that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// Send this frame (the `token_expired` error).
    Send(Bytes),
}

#[derive(Debug)]
struct ChatClient {
    user: UserId,
    /// Conversations this connection receives, each with the last `seq` committed before it
    /// started receiving it live (`None`: the hub had seen no message of it since startup,
    /// so everything it has delivered since was delivered to this connection too).
    joined: Vec<(ConversationId, Option<Seq>)>,
    /// Present while a sync replays: what live delivery would have sent meanwhile.
    held: Option<Box<Held>>,
    /// The session has sent `ready`: receipts may go to it, even during a sync's hold
    /// (before `ready` nothing may, since `ready` must be the first message).
    ready: bool,
}

#[derive(Debug, Default)]
struct Held {
    frames: Vec<(ConversationId, Seq, Bytes)>,
    overflowed: bool,
}

/// The hub's chat state.
#[derive(Debug, Default)]
pub(crate) struct Chat {
    /// Live routes of chat conversations (held connections are not in them).
    routes: Routes,
    clients: HashMap<ClientId, ChatClient>,
    users: HashMap<UserId, Vec<ClientId>>,
    /// Connections waiting for their `Attached` event, with their user and the reply to
    /// their session.
    pending: HashMap<ClientId, (UserId, AttachReply)>,
    /// The first and the newest `seq` the hub has delivered per conversation (only
    /// conversations with traffic since startup).
    seen: HashMap<ConversationId, (Seq, Seq)>,
    /// Connections in a sync replay.
    holding: BTreeSet<ClientId>,
    deadlines: BTreeSet<(Instant, ClientId)>,
    deadline_of: HashMap<ClientId, (Instant, Deadline)>,
    /// How long a connection has to renew an expired token (the server's auth timeout).
    renew_window: std::time::Duration,
    receipts: Receipts,
    typing: Typing,
    presence: Presence,
    settings: Settings,
    /// With other nodes (`--bus redis`): ordering, fills, their presence.
    cluster: Option<Box<cluster::Cluster>>,
}

impl Chat {
    /// Expects the `Attached` event for `client`; `reply` gets its conversations then. If
    /// `user` has `max` connections (attached or attaching) already, `reply` is refused now.
    pub(crate) fn expect_attach(
        &mut self,
        client: ClientId,
        user: UserId,
        max: usize,
        reply: AttachReply,
    ) -> bool {
        let open = self.users.get(&user).map_or(0, Vec::len)
            + self.pending.values().filter(|(u, _)| *u == user).count();
        if open >= max {
            let _ = reply.send(Err(TooManyConnections));
            return false;
        }
        self.pending.insert(client, (user, reply));
        true
    }

    /// Sets (or replaces) the connection's deadline.
    pub(crate) fn set_deadline(&mut self, client: ClientId, at: Instant, kind: Deadline) {
        if let Some((old, _)) = self.deadline_of.insert(client, (at, kind)) {
            self.deadlines.remove(&(old, client));
        }
        self.deadlines.insert((at, client));
    }

    /// The earliest deadline, for the hub's timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Deadlines that passed by `now`, with what to do for each.
    pub(crate) fn expired(
        &mut self,
        now: Instant,
        renew_window: std::time::Duration,
    ) -> Vec<(ClientId, Expired)> {
        let mut out = Vec::new();
        while let Some(&(at, client)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some((_, kind)) = self.deadline_of.remove(&client) else {
                continue;
            };
            match kind {
                Deadline::Auth => {
                    out.push((client, Expired::Close(1008, "authentication timed out")))
                }
                Deadline::Renew => out.push((client, Expired::Close(4001, "token expired"))),
                Deadline::TokenExpiry => {
                    let msg = ServerMsg::error(
                        ErrorCode::TokenExpired,
                        "access token expired; send a fresh one with auth",
                        None,
                    );
                    out.push((client, Expired::Send(wire::json(&msg))));
                    self.set_deadline(client, now + renew_window, Deadline::Renew);
                }
            }
        }
        out
    }

    /// Forgets a connection everywhere.
    pub(crate) fn remove(&mut self, client: ClientId) {
        self.pending.remove(&client);
        if let Some((at, _)) = self.deadline_of.remove(&client) {
            self.deadlines.remove(&(at, client));
        }
        self.holding.remove(&client);
        self.routes.remove_client(client);
        self.presence.unwatch(client);
        self.cluster_forget(client);
        if let Some(c) = self.clients.remove(&client) {
            if let Some(list) = self.users.get_mut(&c.user) {
                list.retain(|x| *x != client);
                if list.is_empty() {
                    self.users.remove(&c.user);
                    let at = Instant::now() + self.settings.presence_debounce;
                    let conversations = c.joined.iter().map(|(id, _)| *id).collect();
                    self.presence.departed(c.user, at, conversations);
                }
            }
        }
    }

    /// Starts a hold for a sync; returns what was already delivered live. `None` if the
    /// connection is not attached.
    pub(crate) fn hold(&mut self, client: ClientId) -> Option<Vec<Live>> {
        let c = self.clients.get_mut(&client)?;
        if c.held.is_none() {
            c.held = Some(Box::default());
            self.holding.insert(client);
            for (conversation, _) in &c.joined {
                self.routes.leave(client, *conversation);
            }
        }
        let live = c
            .joined
            .iter()
            .map(|&(conversation, since)| {
                let (since, last) =
                    live_range(&self.seen, conversation, since).unwrap_or((Seq::ZERO, Seq::ZERO));
                Live {
                    conversation,
                    since,
                    last,
                }
            })
            .collect();
        Some(live)
    }

    /// Ends the hold that began at attach, once the session has sent `ready`: what arrived
    /// meanwhile goes out, then live delivery starts. If the buffer overflowed, live
    /// delivery starts from now and the dropped messages count as not delivered (a sync
    /// replays them).
    pub(crate) fn release(&mut self, client: ClientId, send: &mut dyn FnMut(ClientId, Bytes)) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        let first = !c.ready;
        c.ready = true;
        let Some(held) = c.held.take() else {
            return;
        };
        self.holding.remove(&client);
        if held.overflowed {
            for (conversation, since) in &mut c.joined {
                if let Some(&(_, last)) = self.seen.get(conversation) {
                    *since = Some(last);
                }
            }
        } else {
            for (_, _, frame) in held.frames {
                send(client, frame);
            }
        }
        for &(conversation, _) in &c.joined {
            self.routes.join(client, conversation);
        }
        if first {
            self.presence_snapshot(client, send);
        }
    }

    /// Tells a connection that just had `ready` who is online among the people it would
    /// hear presence changes of (members of its conversations under the fan-out limit), so
    /// it starts from the truth rather than from "nobody".
    fn presence_snapshot(&self, client: ClientId, send: &mut dyn FnMut(ClientId, Bytes)) {
        let Some(c) = self.clients.get(&client) else {
            return;
        };
        let mut online = BTreeSet::new();
        for &(conversation, _) in &c.joined {
            if self.routes.member_count(conversation) > self.settings.presence_fanout {
                continue;
            }
            for other in self.routes.members(conversation) {
                if let Some(o) = self.clients.get(&other) {
                    if o.user != c.user {
                        online.insert(o.user);
                    }
                }
            }
        }
        let small: Vec<ConversationId> = c
            .joined
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| self.routes.member_count(*id) <= self.settings.presence_fanout)
            .collect();
        online.extend(
            self.online_elsewhere_in(&small)
                .into_iter()
                .filter(|u| *u != c.user),
        );
        for user in online {
            let frame = wire::json(&ServerMsg::Presence {
                user,
                online: true,
                last_seen: None,
            });
            send(client, frame);
        }
    }

    /// Ends a hold after a replay that sent up to `upto` per conversation. On
    /// [`SyncEnd::Done`] the held frames newer than the replay and then `synced` go to `send`.
    pub(crate) fn sync_done(
        &mut self,
        client: ClientId,
        upto: &BTreeMap<ConversationId, Seq>,
        reference: Ref,
        send: &mut dyn FnMut(ClientId, Bytes),
    ) -> SyncEnd {
        let Some(c) = self.clients.get_mut(&client) else {
            return SyncEnd::Done;
        };
        let Some(held) = c.held.take() else {
            return SyncEnd::Done;
        };
        if held.overflowed {
            c.held = Some(Box::default());
            return SyncEnd::Again;
        }
        self.holding.remove(&client);
        let mut cursors = BTreeMap::new();
        for &(conversation, since) in &c.joined {
            let live = live_range(&self.seen, conversation, since).map_or(Seq::ZERO, |r| r.1);
            let replayed = upto.get(&conversation).copied().unwrap_or(Seq::ZERO);
            cursors.insert(conversation, live.max(replayed));
        }
        for (conversation, seq, frame) in held.frames {
            let cursor = cursors.entry(conversation).or_insert(Seq::ZERO);
            if seq > upto.get(&conversation).copied().unwrap_or(Seq::ZERO) {
                send(client, frame);
                *cursor = (*cursor).max(seq);
            }
        }
        for &(conversation, _) in &c.joined {
            self.routes.join(client, conversation);
        }
        send(
            client,
            wire::json(&ServerMsg::Synced { cursors, reference }),
        );
        SyncEnd::Done
    }

    /// Applies one committed event; frames for connections go to `send`.
    pub(crate) fn committed(&mut self, event: Committed, send: &mut dyn FnMut(ClientId, Bytes)) {
        match event {
            Committed::Message { message, origin } => {
                let conversation = message.conversation;
                let seq = message.seq;
                self.seen
                    .entry(conversation)
                    .and_modify(|(_, last)| *last = seq)
                    .or_insert((seq, seq));
                self.receipts.message(conversation, seq, message.sender);
                // A message the user wrote ends their typing; a system message they caused
                // (adding someone, renaming) does not.
                if let (Some(user), false) = (message.sender, message.kind == MessageKind::System) {
                    if self.typing.stop(conversation, user) {
                        self.typing_frame(conversation, user, TypingState::Stop, send);
                    }
                }
                let sender = origin.as_ref().map(|o| ClientId(o.tag));
                if let Some(client) = sender {
                    if let Some(local_id) = &message.local_id {
                        let ack = ServerMsg::Ack {
                            conversation,
                            local_id: local_id.clone(),
                            id: message.id,
                            seq,
                            ts: message.ts,
                            duplicate: false,
                        };
                        send(client, wire::json(&ack));
                    }
                }
                let frame = wire::json(&ServerMsg::NewMessage(message));
                for member in self.routes.members(conversation) {
                    if Some(member) != sender {
                        send(member, frame.clone());
                    }
                }
                self.buffer_for_held(conversation, seq, &frame, sender);
            }
            Committed::Duplicate { message, origin } => {
                if let Some(local_id) = message.local_id.clone() {
                    let ack = ServerMsg::Ack {
                        conversation: message.conversation,
                        local_id,
                        id: message.id,
                        seq: message.seq,
                        ts: message.ts,
                        duplicate: true,
                    };
                    send(ClientId(origin.tag), wire::json(&ack));
                }
            }
            Committed::Rejected {
                origin,
                conversation,
                local_id,
                error,
            } => {
                let msg = ServerMsg::error(
                    error.code(),
                    format!("send {local_id:?} to conversation {conversation}: {error}"),
                    origin.reference.or(Some(local_id)),
                );
                send(ClientId(origin.tag), wire::json(&msg));
            }
            Committed::MembersAdded {
                conversation,
                users,
            } => {
                for user in &users {
                    for client in self.users.get(user).cloned().unwrap_or_default() {
                        self.join(client, conversation.id);
                    }
                }
                self.announce(&conversation, send);
            }
            Committed::MemberRemoved { conversation, user } => {
                let frame = wire::json(&ServerMsg::ConversationRemoved { conversation });
                self.typing.forget(conversation, user);
                for client in self.users.get(&user).cloned().unwrap_or_default() {
                    self.leave(client, conversation);
                    if self.presence.watched_by(client) == Some(conversation) {
                        self.presence.unwatch(client);
                    }
                    send(client, frame.clone());
                }
            }
            Committed::Receipt {
                conversation,
                markers,
                previous,
            } => self.receipts.moved(conversation, previous, markers),
            Committed::MarksRefused {
                tag,
                conversation,
                error,
            } => {
                let msg = ServerMsg::error(
                    error.code(),
                    format!("markers for conversation {conversation}: {error}"),
                    None,
                );
                send(ClientId(tag), wire::json(&msg));
            }
            Committed::ConversationChanged { conversation } => self.announce(&conversation, send),
            Committed::Attached {
                tag,
                user,
                conversations,
            } => {
                let client = ClientId(tag);
                let Some((_, reply)) = self.pending.remove(&client) else {
                    // The connection closed before its attach was committed.
                    return;
                };
                // Held until the session has sent `ready`, so nothing arrives before it.
                self.clients.entry(client).or_insert(ChatClient {
                    user,
                    joined: Vec::new(),
                    held: Some(Box::default()),
                    ready: false,
                });
                self.holding.insert(client);
                let users = self.users.entry(user).or_default();
                if users.is_empty() {
                    self.presence.arrived(user, &conversations);
                }
                if !users.contains(&client) {
                    users.push(client);
                }
                for conversation in &conversations {
                    self.join(client, *conversation);
                }
                if matches!(self.deadline_of.get(&client), Some((_, Deadline::Auth))) {
                    if let Some((at, _)) = self.deadline_of.remove(&client) {
                        self.deadlines.remove(&(at, client));
                    }
                }
                let _ = reply.send(Ok(conversations));
            }
        }
    }

    /// Sends a conversation's new state to every connection of its members, each seeing a
    /// direct chat named after the other person.
    fn announce(&self, info: &ConversationInfo, send: &mut dyn FnMut(ClientId, Bytes)) {
        let mut group_frame = None;
        for member in &info.members {
            let Some(clients) = self.users.get(&member.id) else {
                continue;
            };
            let frame = if info.kind == ConversationKind::Direct {
                wire::json(&ServerMsg::Conversation {
                    conversation: chatgroup_store::for_viewer(info, member.id),
                    reference: None,
                })
            } else {
                group_frame
                    .get_or_insert_with(|| {
                        wire::json(&ServerMsg::Conversation {
                            conversation: info.clone(),
                            reference: None,
                        })
                    })
                    .clone()
            };
            for client in clients {
                send(*client, frame.clone());
            }
        }
    }

    /// Starts live delivery of `conversation` to `client`. Events reach the hub in commit
    /// order, so the newest `seq` the hub has seen is exactly the last one committed before
    /// this point: everything after it is delivered live. (No traffic since startup means
    /// everything was committed before: nothing delivered live yet.)
    fn join(&mut self, client: ClientId, conversation: ConversationId) {
        let since = self.seen.get(&conversation).map(|&(_, last)| last);
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        if c.joined.iter().any(|(id, _)| *id == conversation) {
            return;
        }
        c.joined.push((conversation, since));
        if c.held.is_none() {
            self.routes.join(client, conversation);
        }
    }

    fn leave(&mut self, client: ClientId, conversation: ConversationId) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        c.joined.retain(|(id, _)| *id != conversation);
        if let Some(held) = &mut c.held {
            held.frames.retain(|(id, _, _)| *id != conversation);
        }
        self.routes.leave(client, conversation);
    }

    fn buffer_for_held(
        &mut self,
        conversation: ConversationId,
        seq: Seq,
        frame: &Bytes,
        sender: Option<ClientId>,
    ) {
        for client in &self.holding {
            if Some(*client) == sender {
                continue;
            }
            let Some(c) = self.clients.get_mut(client) else {
                continue;
            };
            if !c.joined.iter().any(|(id, _)| *id == conversation) {
                continue;
            }
            if let Some(held) = &mut c.held {
                if held.overflowed {
                    continue;
                }
                if held.frames.len() >= HELD_MAX_FRAMES {
                    held.frames = Vec::new();
                    held.overflowed = true;
                } else {
                    held.frames.push((conversation, seq, frame.clone()));
                }
            }
        }
    }

    /// Whether the hub's tick has work: deadlines, pending receipts or presence changes,
    /// typing that may lapse.
    pub(crate) fn needs_tick(&self) -> bool {
        self.next_deadline().is_some()
            || self.receipts.has_pending()
            || !self.typing.is_empty()
            || self.presence.busy()
            || self.cluster.is_some()
    }

    /// The periodic work: coalesced receipts and presence changes go out, typing lapses.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        metrics: &Metrics,
        send: &mut dyn FnMut(ClientId, Bytes),
    ) {
        for m in self.receipts.take() {
            let frame = wire::json(&ServerMsg::Receipt {
                conversation: m.conversation,
                user: m.now.user,
                delivered: m.now.delivered,
                read: m.now.read,
            });
            let mut sent = 0u64;
            match self.receipts.audience(&m) {
                Audience::Senders(senders) => {
                    for user in std::iter::once(m.now.user).chain(senders) {
                        for client in self.users.get(&user).into_iter().flatten() {
                            if self.receives(*client, m.conversation)
                                && self.clients.get(client).is_some_and(|c| c.ready)
                            {
                                send(*client, frame.clone());
                                sent += 1;
                            }
                        }
                    }
                }
                Audience::Everyone => {
                    for client in self.everyone_in(m.conversation) {
                        send(client, frame.clone());
                        sent += 1;
                    }
                }
            }
            metrics::add(&metrics.receipt_frames, sent);
        }
        for (conversation, user) in self.typing.expired(now) {
            let sent = self.typing_frame(conversation, user, TypingState::Stop, send);
            metrics::add(&metrics.typing_frames, sent);
        }
        let gone = self.presence.settle(now, crate::auth::now_ms());
        if let Some(store) = &self.settings.store {
            let at = crate::auth::now_ms();
            for user in gone {
                store.set_last_seen(user, at);
            }
        }
        let mut changes = self.presence.take();
        self.merge_presence(&mut changes);
        for change in changes {
            let frame = wire::json(&ServerMsg::Presence {
                user: change.user,
                online: change.online,
                last_seen: change.last_seen,
            });
            let mut recipients = std::collections::HashSet::new();
            for conversation in &change.conversations {
                if self.routes.member_count(*conversation) <= self.settings.presence_fanout {
                    recipients.extend(self.routes.members(*conversation));
                }
                recipients.extend(self.presence.watchers(*conversation));
            }
            let mut sent = 0u64;
            for client in recipients {
                if self
                    .clients
                    .get(&client)
                    .is_some_and(|c| c.user != change.user)
                {
                    send(client, frame.clone());
                    sent += 1;
                }
            }
            metrics::add(&metrics.presence_frames, sent);
        }
    }

    /// Applies a typing report from `client`; frames go to the conversation's other members.
    pub(crate) fn on_typing(
        &mut self,
        client: ClientId,
        conversation: ConversationId,
        state: TypingState,
        metrics: &Metrics,
        send: &mut dyn FnMut(ClientId, Bytes),
    ) {
        let Some(user) = self.user_of(client) else {
            return;
        };
        if !self.receives(client, conversation) {
            let msg = ServerMsg::error(
                ErrorCode::NotMember,
                format!("typing: not a member of conversation {conversation}"),
                None,
            );
            send(client, wire::json(&msg));
            return;
        }
        let broadcast = match state {
            TypingState::Start => self.typing.start(conversation, user, Instant::now()),
            TypingState::Stop => self.typing.stop(conversation, user),
        };
        if broadcast {
            let sent = self.typing_frame(conversation, user, state, send);
            metrics::add(&metrics.typing_frames, sent);
            self.publish_typing(conversation, user, state);
        }
    }

    /// Which of `users` are online; `client` watches `conversation` from now on.
    pub(crate) fn user_list(
        &mut self,
        client: ClientId,
        conversation: ConversationId,
        users: &[UserId],
    ) -> Vec<bool> {
        if self.receives(client, conversation) {
            self.presence.watch(client, conversation);
        }
        users
            .iter()
            .map(|u| {
                self.users.contains_key(u)
                    || self.presence.is_leaving(*u)
                    || self.online_elsewhere(*u)
            })
            .collect()
    }

    /// Sends `user`'s typing state to every other member's live connections; returns how
    /// many frames.
    fn typing_frame(
        &self,
        conversation: ConversationId,
        user: UserId,
        state: TypingState,
        send: &mut dyn FnMut(ClientId, Bytes),
    ) -> u64 {
        let frame = wire::json(&ServerMsg::Typing {
            conversation,
            user,
            state,
        });
        let mut sent = 0;
        for client in self.routes.members(conversation) {
            if self.clients.get(&client).is_some_and(|c| c.user != user) {
                send(client, frame.clone());
                sent += 1;
            }
        }
        sent
    }

    /// Whether `client` receives `conversation` (live or held).
    fn receives(&self, client: ClientId, conversation: ConversationId) -> bool {
        self.clients
            .get(&client)
            .is_some_and(|c| c.joined.iter().any(|(id, _)| *id == conversation))
    }

    /// Every connection receiving `conversation`, those held for a sync included (not
    /// those that have not had `ready` yet).
    fn everyone_in(&self, conversation: ConversationId) -> Vec<ClientId> {
        let mut all: Vec<ClientId> = self.routes.members(conversation).collect();
        for client in &self.holding {
            if self.receives(*client, conversation)
                && self.clients.get(client).is_some_and(|c| c.ready)
            {
                all.push(*client);
            }
        }
        all
    }

    /// The user a connection is attached as.
    pub(crate) fn user_of(&self, client: ClientId) -> Option<UserId> {
        self.clients.get(&client).map(|c| c.user)
    }
}

/// The `seq` range `(since, last]` of `conversation` that live delivery has sent to a
/// connection that joined it at `since`; `None` when it has sent nothing.
fn live_range(
    seen: &HashMap<ConversationId, (Seq, Seq)>,
    conversation: ConversationId,
    since: Option<Seq>,
) -> Option<(Seq, Seq)> {
    let &(first, last) = seen.get(&conversation)?;
    let since = since.unwrap_or(Seq(first.0.saturating_sub(1)));
    (last > since).then_some((since, last))
}

impl Hub {
    /// Handles a chat command; frames go out through the one delivery policy.
    pub(super) fn on_chat(&mut self, cmd: ChatCommand) {
        let mut out = std::mem::take(&mut self.chat_out);
        let mut send = |client: ClientId, frame: Bytes| out.push((client, frame));
        match cmd {
            ChatCommand::Open { client, auth_by } => {
                if self.outboxes.contains_key(&client) {
                    self.chat.set_deadline(client, auth_by, Deadline::Auth);
                }
            }
            ChatCommand::Authenticated {
                client,
                user,
                expires,
                renew,
                reply,
                max_per_user,
            } => {
                if self.outboxes.contains_key(&client) {
                    self.chat.renew_window = renew;
                    if self.chat.expect_attach(client, user, max_per_user, reply) {
                        self.chat
                            .set_deadline(client, expires, Deadline::TokenExpiry);
                    }
                }
            }
            ChatCommand::Renewed { client, expires } => {
                if self.chat.user_of(client).is_some() {
                    self.chat
                        .set_deadline(client, expires, Deadline::TokenExpiry);
                }
            }
            ChatCommand::Hold { client, reply } => {
                let _ = reply.send(self.chat.hold(client));
            }
            ChatCommand::SyncDone {
                client,
                upto,
                reference,
                reply,
            } => {
                if self.chat.cluster.is_some() {
                    self.chat
                        .cluster_sync_done(client, upto, reference, reply, &mut send);
                } else {
                    let end = self.chat.sync_done(client, &upto, reference, &mut send);
                    let _ = reply.send(end);
                }
            }
            ChatCommand::Release { client } => self.chat.release(client, &mut send),
            ChatCommand::Committed(event) => {
                metrics::inc(&self.metrics.chat_events);
                if self.chat.cluster.is_some() {
                    self.chat.local_committed(event, &mut send);
                } else {
                    self.chat.committed(event, &mut send);
                }
            }
            ChatCommand::Bus(crate::bus::Inbound(kind)) => {
                if matches!(kind, crate::bus::InboundKind::Up { recovered: true }) {
                    self.resync_all();
                }
                self.chat.on_bus(kind, &mut send);
            }
            ChatCommand::Configure(settings) => {
                self.chat.cluster = settings
                    .bus
                    .clone()
                    .map(|bus| Box::new(cluster::Cluster::new(bus)));
                self.chat.settings = settings;
            }
            ChatCommand::Typing {
                client,
                conversation,
                state,
            } => {
                let metrics = Arc::clone(&self.metrics);
                self.chat
                    .on_typing(client, conversation, state, &metrics, &mut send);
            }
            ChatCommand::UserList {
                client,
                conversation,
                users,
                reply,
            } => {
                let _ = reply.send(self.chat.user_list(client, conversation, &users));
            }
        }
        self.deliver_all(&mut out);
        self.chat_out = out;
    }

    /// The chat tick: deadlines, then coalesced receipts, typing and presence.
    pub(super) fn chat_tick(&mut self) {
        self.chat_deadlines();
        let mut out = std::mem::take(&mut self.chat_out);
        let mut send = |client: ClientId, frame: Bytes| out.push((client, frame));
        let metrics = Arc::clone(&self.metrics);
        let now = Instant::now();
        self.chat.tick(now, &metrics, &mut send);
        self.chat.cluster_tick(now, &self.weak, &mut send);
        self.deliver_all(&mut out);
        self.chat_out = out;
    }

    /// The bus is back after being lost: whatever other nodes did meanwhile (messages, but
    /// also members added and removed, receipts) may be missing here, so every chat
    /// connection is closed with 1013 and resyncs from the store when it reconnects.
    fn resync_all(&mut self) {
        let clients = self.chat.connections();
        tracing::info!(
            connections = clients.len(),
            "bus recovered: closing chat connections so they resync"
        );
        let code = rfc6455::CloseCode::TRY_AGAIN_LATER;
        let frame = wire::close(code, "bus reconnected: resync");
        for client in clients {
            if let Some(outbox) = self.outboxes.get(&client) {
                outbox.close(frame.clone(), false);
            }
        }
    }

    /// Closes or warns the connections whose deadline passed.
    fn chat_deadlines(&mut self) {
        let now = Instant::now();
        let renew = self.chat.renew_window;
        for (client, what) in self.chat.expired(now, renew) {
            let Some(outbox) = self.outboxes.get(&client) else {
                continue;
            };
            match what {
                Expired::Close(code, reason) => {
                    let code = rfc6455::CloseCode(code);
                    self.metrics.count_client_close(code);
                    outbox.close(wire::close(code, reason), false);
                }
                Expired::Send(frame) => {
                    let mut out = vec![(client, frame)];
                    self.deliver_all(&mut out);
                }
            }
        }
    }

    /// Delivers each frame to its connection (unknown ones are skipped: they closed).
    fn deliver_all(&mut self, out: &mut Vec<(ClientId, Bytes)>) {
        if out.is_empty() {
            return;
        }
        let pace = self.pace();
        let grace = self.cfg.slow_consumer_grace;
        let mut evict = Vec::new();
        let mut delivered = 0u64;
        for (client, frame) in out.drain(..) {
            let Some(outbox) = self.outboxes.get(&client) else {
                continue;
            };
            let compressed = outbox
                .shared_deflate()
                .and_then(|threshold| self.deflated.get(&frame, threshold, &self.metrics));
            let delivery = outbox.deliver(frame, compressed, pace, grace, &self.metrics);
            delivered += u64::from(delivery.delivered());
            super::settle(&mut self.suspects, &mut evict, client, delivery);
        }
        self.deflated.clear();
        metrics::add(&self.metrics.chat_deliveries, delivered);
        for client in evict {
            self.evict(client);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Attaches `client` as `user` in `conversations` and starts its live delivery.
    fn attach(chat: &mut Chat, client: u64, user: u64, conversations: &[ConversationId]) {
        let (tx, _rx) = oneshot::channel();
        assert!(chat.expect_attach(ClientId(client), UserId(user), usize::MAX, tx));
        let mut sink = |_: ClientId, _: Bytes| {};
        chat.committed(
            Committed::Attached {
                tag: client,
                user: UserId(user),
                conversations: conversations.to_vec(),
            },
            &mut sink,
        );
        chat.release(ClientId(client), &mut sink);
    }

    /// Frames sent by one tick at `now`, by type.
    fn tick(chat: &mut Chat, now: Instant) -> Vec<(ClientId, String)> {
        let metrics = Metrics::default();
        let mut out = Vec::new();
        chat.tick(now, &metrics, &mut |c, frame: Bytes| {
            // Server frames are unmasked text with a short header; the JSON follows it.
            let text = String::from_utf8_lossy(&frame).into_owned();
            let json = text[text.find('{').unwrap_or(0)..].to_owned();
            out.push((c, json));
        });
        out
    }

    /// The case: a user in 100 conversations of 1,000 connected members. A reload
    /// costs nothing; going offline costs nothing for conversations over the fan-out limit
    /// except on connections watching them, one frame per connection however many
    /// conversations it shares.
    #[test]
    fn a_presence_flap_in_100_large_groups_costs_no_broadcast_storm() {
        let mut chat = Chat::default();
        chat.settings.presence_debounce = Duration::from_millis(500);
        let groups: Vec<ConversationId> = (1..=100).map(ConversationId).collect();
        for member in 1..=999 {
            attach(&mut chat, member, member, &groups);
        }
        // Two members watch group 7 (they asked for its user_list).
        let users: Vec<UserId> = vec![UserId(1_000)];
        chat.user_list(ClientId(1), ConversationId(7), &users);
        chat.user_list(ClientId(2), ConversationId(7), &users);
        let t0 = Instant::now();
        let _ = tick(&mut chat, t0);

        // U arrives: only the watchers hear of it.
        attach(&mut chat, 5_000, 1_000, &groups);
        let frames = tick(&mut chat, t0);
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(frames.iter().all(|(_, f)| f.contains("\"presence\"")));

        // A reload: close and reconnect within the debounce.
        chat.remove(ClientId(5_000));
        attach(&mut chat, 5_001, 1_000, &groups);
        let later = t0 + Duration::from_secs(2);
        assert!(tick(&mut chat, later).is_empty());

        // Gone for good: offline after the debounce, again only to the two watchers.
        chat.remove(ClientId(5_001));
        let now = Instant::now();
        assert!(tick(&mut chat, now).is_empty(), "debounced");
        let frames = tick(&mut chat, now + Duration::from_secs(1));
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(frames.iter().all(|(_, f)| f.contains("\"online\":false")));
    }

    #[test]
    fn small_conversations_get_presence_pushed_once_per_connection() {
        let mut chat = Chat::default();
        chat.settings.presence_debounce = Duration::from_millis(100);
        let shared = [ConversationId(1), ConversationId(2), ConversationId(3)];
        attach(&mut chat, 1, 1, &shared);
        attach(&mut chat, 2, 2, &shared);
        attach(&mut chat, 3, 3, &[ConversationId(9)]);
        let t0 = Instant::now();
        let frames = tick(&mut chat, t0);
        // 1 and 2 learn of each other once each, though they share three conversations;
        // 3 shares nothing with them and hears nothing, nor do they of 3.
        let mut to: Vec<u64> = frames.iter().map(|(c, _)| c.0).collect();
        to.sort_unstable();
        assert_eq!(to, vec![1, 2], "{frames:?}");
    }
}
