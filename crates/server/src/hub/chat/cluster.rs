//! The chat hub with other nodes (`--bus redis`): every conversation event, this node's and
//! the others', goes through the [`Sequencer`] before [`Chat::committed`] sees it, so the rest
//! of the hub works as with one node; gaps are filled from the store; typing and presence
//! are shared; a sync ends only once live delivery has caught up with what it replayed.
//!
//! **Sync with several nodes.** On one node every message committed before a sync's store
//! read reaches the hub before the sync ends. With several, another node's message may be
//! read by the replay and reach this hub only later, or reach it first and open a
//! conversation's lane *after* what the replay read. So at the end of a replay, per
//! conversation, with `upto` the newest seq it sent:
//!
//! - the lane must have delivered `upto` already, or the connection would get those messages
//!   twice: it stays held (its frames buffered) until the lane gets there, which it does
//!   within the gap bound, by the bus or from the store;
//! - live delivery to this connection must have started at or before `upto`, or the messages
//!   between would be in neither: the replay runs again from `upto`;
//! - a conversation with no lane yet gets one starting at `upto`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use chatgroup_protocol::{ConversationId, Ref, Seq, TypingState, UserId};
use chatgroup_store::Committed;
use tokio::sync::{mpsc, oneshot};

use super::{Chat, SyncEnd};
use crate::bus::envelope::{Envelope, Event, Split};
use crate::bus::{Bus, InboundKind, GAP_BOUND, NODE_TIMEOUT};
use crate::hub::peers::{Flip, Peers};
use crate::hub::presence::Change;
use crate::hub::sequencer::{Position, Sequencer};
use crate::hub::Command;
use crate::ids::ClientId;

/// Messages read per fill.
const FILL_LIMIT: usize = 256;

/// A sync waiting for live delivery to catch up with its replay.
#[derive(Debug)]
struct PendingSync {
    upto: BTreeMap<ConversationId, Seq>,
    reference: Ref,
    reply: oneshot::Sender<SyncEnd>,
}

/// The hub's state for several nodes.
#[derive(Debug)]
pub(crate) struct Cluster {
    bus: Bus,
    sequencer: Sequencer<Committed>,
    /// The last message this node committed, which a `MemberRemoved` right after follows.
    last_local: Option<(ConversationId, Seq)>,
    peers: Peers,
    /// Presence changes the other nodes caused, for the next tick.
    flips: Vec<Change>,
    waiting: HashMap<ClientId, PendingSync>,
}

impl Cluster {
    pub(crate) fn new(bus: Bus) -> Self {
        Self {
            bus,
            sequencer: Sequencer::new(GAP_BOUND),
            last_local: None,
            peers: Peers::default(),
            flips: Vec::new(),
            waiting: HashMap::new(),
        }
    }
}

/// What to do at the end of a replay.
enum Check {
    Ready,
    Wait,
    Again,
}

/// Where a committed event belongs in its conversation; `removed_after` is the message a
/// `MemberRemoved` follows.
fn position(event: &Committed, removed_after: Option<Seq>) -> (ConversationId, Position) {
    match event {
        Committed::Message { message, .. } => {
            (message.conversation, Position::Message(message.seq))
        }
        Committed::MembersAdded { conversation, .. } => {
            (conversation.id, Position::Opens(conversation.last_seq))
        }
        Committed::MemberRemoved { conversation, .. } => (
            *conversation,
            removed_after.map_or(Position::Now, Position::After),
        ),
        Committed::ConversationChanged { conversation } => {
            (conversation.id, Position::After(conversation.last_seq))
        }
        Committed::Receipt {
            conversation,
            markers,
            ..
        } => (
            *conversation,
            Position::After(markers.delivered.max(markers.read)),
        ),
        Committed::Duplicate { message, .. } => (message.conversation, Position::Now),
        Committed::Rejected { conversation, .. } | Committed::MarksRefused { conversation, .. } => {
            (*conversation, Position::Now)
        }
        Committed::Attached { .. } => (ConversationId(0), Position::Now),
    }
}

impl Chat {
    /// This node's committed event, through the sequencer.
    pub(crate) fn local_committed(
        &mut self,
        event: Committed,
        send: &mut dyn FnMut(ClientId, Bytes),
    ) {
        let Some(cl) = self.cluster.as_mut() else {
            return self.committed(event, send);
        };
        let removed_after = match (&event, cl.last_local) {
            (Committed::MemberRemoved { conversation, .. }, Some((c, s))) if c == *conversation => {
                Some(s)
            }
            _ => None,
        };
        if let Committed::Message { message, .. } = &event {
            cl.last_local = Some((message.conversation, message.seq));
        }
        self.sequence(event, removed_after, send);
    }

    fn sequence(
        &mut self,
        event: Committed,
        removed_after: Option<Seq>,
        send: &mut dyn FnMut(ClientId, Bytes),
    ) {
        let Some(cl) = self.cluster.as_mut() else {
            return self.committed(event, send);
        };
        let (conversation, at) = position(&event, removed_after);
        let mut out = Vec::new();
        let duplicate = cl
            .sequencer
            .offer(conversation, at, event, Instant::now(), &mut out);
        for (_, event) in out {
            self.committed(event, send);
        }
        if let Some(Committed::Message {
            message,
            origin: Some(origin),
        }) = duplicate
        {
            // Our own message, delivered already (a fill read it first): its sender still
            // needs the ack, and nobody the message again.
            self.committed(Committed::Duplicate { message, origin }, send);
        }
        self.recheck_syncs(send);
    }

    /// What the bus brought.
    pub(crate) fn on_bus(&mut self, kind: InboundKind, send: &mut dyn FnMut(ClientId, Bytes)) {
        let now = Instant::now();
        match kind {
            InboundKind::Remote(envelope) => self.remote(*envelope, now, send),
            InboundKind::Up { .. } => {
                // The others answer our `Hello` with their snapshots; this is ours.
                let snapshot = self.snapshot();
                if let Some(cl) = &self.cluster {
                    cl.bus.publish(Event::Snapshot { users: snapshot });
                }
            }
            InboundKind::Down => {}
            InboundKind::Filled {
                conversation,
                result,
            } => {
                let Some(cl) = self.cluster.as_mut() else {
                    return;
                };
                let mut out = Vec::new();
                match result {
                    Ok((messages, complete)) => {
                        let messages = messages
                            .into_iter()
                            .map(|message| {
                                let seq = message.seq;
                                (
                                    seq,
                                    Committed::Message {
                                        message,
                                        origin: None,
                                    },
                                )
                            })
                            .collect();
                        cl.sequencer
                            .filled(conversation, messages, complete, now, &mut out);
                    }
                    Err(()) => cl.sequencer.fill_failed(conversation, now),
                }
                for (_, event) in out {
                    self.committed(event, send);
                }
                self.recheck_syncs(send);
            }
        }
    }

    fn remote(&mut self, envelope: Envelope, now: Instant, send: &mut dyn FnMut(ClientId, Bytes)) {
        let node = envelope.node;
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        cl.peers.heard(node, now);
        match envelope.event.into_committed() {
            Split::Committed((event, after)) => self.sequence(event, after, send),
            Split::Other(Event::Typing {
                conversation,
                user,
                state,
            }) => {
                let broadcast = match state {
                    TypingState::Start => self.typing.start(conversation, user, now),
                    TypingState::Stop => self.typing.stop(conversation, user),
                };
                if broadcast {
                    self.typing_frame(conversation, user, state, send);
                }
            }
            Split::Other(Event::Presence {
                user,
                online,
                conversations,
            }) => {
                let flip = cl.peers.set(node, user, online, conversations, now);
                self.flipped(flip.into_iter().collect());
            }
            Split::Other(Event::Snapshot { users }) => {
                let flips = cl.peers.replace(node, users, now);
                self.flipped(flips);
            }
            Split::Other(Event::Hello) => {
                // A node (re)joined: it may have committed without publishing while it was
                // cut off, and it wants to know who is online here.
                cl.sequencer.suspect_all(now);
                let snapshot = self.snapshot();
                if let Some(cl) = &self.cluster {
                    cl.bus.publish(Event::Snapshot { users: snapshot });
                }
            }
            Split::Other(Event::Lost) => cl.sequencer.suspect_all(now),
            Split::Other(_) => {}
        }
    }

    /// Presence changes caused by other nodes, for the next tick (not for users who are
    /// online here anyway).
    fn flipped(&mut self, flips: Vec<Flip>) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        for flip in flips {
            if self.users.contains_key(&flip.user) || self.presence.is_leaving(flip.user) {
                continue;
            }
            cl.flips.push(Change {
                user: flip.user,
                online: flip.online,
                last_seen: (!flip.online).then(crate::auth::now_ms),
                conversations: flip.conversations,
            });
        }
    }

    /// Every user online here, with their conversations.
    fn snapshot(&self) -> Vec<(UserId, Vec<ConversationId>)> {
        self.users
            .iter()
            .map(|(user, clients)| {
                let mut conversations: Vec<ConversationId> = clients
                    .iter()
                    .filter_map(|c| self.clients.get(c))
                    .flat_map(|c| c.joined.iter().map(|(id, _)| *id))
                    .collect();
                conversations.sort_unstable();
                conversations.dedup();
                (*user, conversations)
            })
            .collect()
    }

    /// Publishes a typing report this node broadcast.
    pub(crate) fn publish_typing(
        &self,
        conversation: ConversationId,
        user: UserId,
        state: TypingState,
    ) {
        if let Some(cl) = &self.cluster {
            cl.bus.publish(Event::Typing {
                conversation,
                user,
                state,
            });
        }
    }

    /// The presence changes of this tick: this node's are published, and kept only for
    /// users not online elsewhere; the other nodes' are added.
    pub(crate) fn merge_presence(&mut self, changes: &mut Vec<Change>) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        for change in changes.iter() {
            cl.bus.publish(Event::Presence {
                user: change.user,
                online: change.online,
                conversations: change.conversations.clone(),
            });
        }
        changes.retain(|c| !cl.peers.is_online(c.user));
        changes.append(&mut cl.flips);
    }

    /// Whether `user` is online on another node.
    pub(crate) fn online_elsewhere(&self, user: UserId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|cl| cl.peers.is_online(user))
    }

    /// Users online on other nodes in any of `conversations`.
    pub(crate) fn online_elsewhere_in(&self, conversations: &[ConversationId]) -> Vec<UserId> {
        self.cluster
            .as_ref()
            .map(|cl| cl.peers.online_in(conversations))
            .unwrap_or_default()
    }

    /// The cluster's share of the tick: dead nodes, and fills of lanes stalled too long.
    pub(crate) fn cluster_tick(
        &mut self,
        now: Instant,
        weak: &mpsc::WeakSender<Command>,
        send: &mut dyn FnMut(ClientId, Bytes),
    ) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        let (flips, died) = cl.peers.expire(now, NODE_TIMEOUT);
        if died {
            // It may have committed and died before publishing.
            cl.sequencer.suspect_all(now);
        }
        self.flipped(flips);
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        let due = cl.sequencer.due(now);
        for (conversation, from) in due {
            match self.reader_of(conversation) {
                Some(user) if self.fill(user, conversation, from, weak) => {}
                Some(_) => {
                    if let Some(cl) = self.cluster.as_mut() {
                        cl.sequencer.fill_failed(conversation, now);
                    }
                }
                None => {
                    // Nobody here receives it: nothing to fill, jump over the gap.
                    let mut out = Vec::new();
                    if let Some(cl) = self.cluster.as_mut() {
                        cl.sequencer.skip(conversation, &mut out);
                    }
                    for (_, event) in out {
                        self.committed(event, send);
                    }
                }
            }
        }
        self.recheck_syncs(send);
    }

    /// A user of this node who receives `conversation` (the store reads as a member).
    fn reader_of(&self, conversation: ConversationId) -> Option<UserId> {
        if let Some(client) = self.routes.members(conversation).next() {
            return self.user_of(client);
        }
        self.clients
            .values()
            .find(|c| c.joined.iter().any(|(id, _)| *id == conversation))
            .map(|c| c.user)
    }

    /// Reads the messages after `from` from the store, as `user`, and hands them back to
    /// the hub; `false` if there is no store to read (only in tests of the hub alone).
    fn fill(
        &self,
        user: UserId,
        conversation: ConversationId,
        from: Seq,
        weak: &mpsc::WeakSender<Command>,
    ) -> bool {
        let Some(store) = self.settings.store.clone() else {
            return false;
        };
        let weak = weak.clone();
        tokio::spawn(async move {
            let result = store
                .messages_after(user, conversation, from, FILL_LIMIT)
                .await
                .map(|messages| {
                    let complete = messages.len() < FILL_LIMIT;
                    (messages, complete)
                })
                .map_err(|_| ());
            if let Some(hub) = weak.upgrade() {
                let kind = InboundKind::Filled {
                    conversation,
                    result,
                };
                let cmd = super::ChatCommand::Bus(crate::bus::Inbound(kind));
                let _ = hub.send(Command::Chat(Box::new(cmd))).await;
            }
        });
        true
    }

    /// Whether a replay that reached `upto` can end now (see the module docs).
    fn check_sync(&mut self, client: ClientId, upto: &BTreeMap<ConversationId, Seq>) -> Check {
        let now = Instant::now();
        let Some(c) = self.clients.get(&client) else {
            return Check::Ready;
        };
        let Some(cl) = self.cluster.as_mut() else {
            return Check::Ready;
        };
        let mut check = Check::Ready;
        for &(conversation, since) in &c.joined {
            // A conversation the replay did not cover was joined during it (its live
            // messages since are held) or had nothing to replay: nothing to compare.
            let Some(&reached) = upto.get(&conversation) else {
                continue;
            };
            let (Some(delivered), Some(start)) = (
                cl.sequencer.delivered(conversation),
                cl.sequencer.start(conversation),
            ) else {
                cl.sequencer.exists(conversation, reached, now);
                continue;
            };
            if since.unwrap_or(start) > reached {
                return Check::Again;
            }
            if delivered < reached {
                cl.sequencer.exists(conversation, reached, now);
                check = Check::Wait;
            }
        }
        check
    }

    /// The end of a replay with several nodes: `None` while the connection waits for live
    /// delivery to catch up (it is answered later); otherwise what [`Chat::sync_done`] does.
    pub(crate) fn cluster_sync_done(
        &mut self,
        client: ClientId,
        upto: BTreeMap<ConversationId, Seq>,
        reference: Ref,
        reply: oneshot::Sender<SyncEnd>,
        send: &mut dyn FnMut(ClientId, Bytes),
    ) {
        match self.check_sync(client, &upto) {
            Check::Ready => {
                let end = self.sync_done(client, &upto, reference, send);
                let _ = reply.send(end);
            }
            Check::Again => {
                if let Some(c) = self.clients.get_mut(&client) {
                    // Everything held was committed before the next replay's read.
                    c.held = Some(Box::default());
                }
                let _ = reply.send(SyncEnd::Again);
            }
            Check::Wait => {
                if let Some(cl) = self.cluster.as_mut() {
                    cl.waiting.insert(
                        client,
                        PendingSync {
                            upto,
                            reference,
                            reply,
                        },
                    );
                }
            }
        }
    }

    /// Ends the syncs whose lanes have caught up.
    fn recheck_syncs(&mut self, send: &mut dyn FnMut(ClientId, Bytes)) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        if cl.waiting.is_empty() {
            return;
        }
        let clients: Vec<ClientId> = cl.waiting.keys().copied().collect();
        for client in clients {
            let Some(pending) = self
                .cluster
                .as_mut()
                .and_then(|cl| cl.waiting.remove(&client))
            else {
                continue;
            };
            if !self.clients.contains_key(&client) {
                continue;
            }
            self.cluster_sync_done(client, pending.upto, pending.reference, pending.reply, send);
        }
    }

    /// Every chat connection (to tell them all to resync).
    pub(crate) fn connections(&self) -> HashSet<ClientId> {
        self.clients
            .keys()
            .chain(self.pending.keys())
            .copied()
            .collect()
    }

    /// Forgets a connection's waiting sync.
    pub(crate) fn cluster_forget(&mut self, client: ClientId) {
        if let Some(cl) = self.cluster.as_mut() {
            cl.waiting.remove(&client);
        }
    }
}

#[cfg(test)]
mod tests {
    use chatgroup_protocol::{MessageId, MessageKind, MessageView};

    use super::*;
    use crate::bus::NodeId;

    const C: ConversationId = ConversationId(4);

    fn chat() -> Chat {
        let mut chat = Chat::default();
        let (bus, _published) = Bus::detached();
        chat.cluster = Some(Box::new(Cluster::new(bus)));
        chat
    }

    /// Attaches `client` (user `client`) in `C` and starts its live delivery.
    fn attach(chat: &mut Chat, client: u64) {
        let (tx, _rx) = oneshot::channel();
        assert!(chat.expect_attach(ClientId(client), UserId(client), usize::MAX, tx));
        let mut sink = |_: ClientId, _: Bytes| {};
        chat.local_committed(
            Committed::Attached {
                tag: client,
                user: UserId(client),
                conversations: vec![C],
            },
            &mut sink,
        );
        chat.release(ClientId(client), &mut sink);
    }

    fn message(seq: u64) -> Committed {
        Committed::Message {
            message: MessageView {
                conversation: C,
                id: MessageId(100 + seq),
                seq: Seq(seq),
                ts: 0,
                sender: Some(UserId(99)),
                sender_name: Some("far".into()),
                kind: MessageKind::Text,
                body: format!("m{seq}"),
                local_id: Some(format!("l{seq}")),
                event: None,
                file: None,
            },
            origin: None,
        }
    }

    /// Another node's message `seq`, as the bus brings it.
    fn remote(chat: &mut Chat, seq: u64, out: &mut Vec<(ClientId, String)>) {
        let event = Event::of_committed(&message(seq), None).expect("published");
        let envelope = Envelope {
            node: NodeId(9),
            event,
        };
        chat.on_bus(InboundKind::Remote(Box::new(envelope)), &mut collect(out));
    }

    fn collect(out: &mut Vec<(ClientId, String)>) -> impl FnMut(ClientId, Bytes) + '_ {
        |client, frame: Bytes| {
            let text = String::from_utf8_lossy(&frame).into_owned();
            out.push((client, text[text.find('{').unwrap_or(0)..].to_owned()));
        }
    }

    /// The seqs of the `new_message` frames, in order.
    fn seqs(out: &[(ClientId, String)]) -> Vec<u64> {
        out.iter()
            .filter_map(|(_, json)| {
                let v: serde_json::Value = serde_json::from_str(json).ok()?;
                (v["type"] == "new_message").then(|| v["seq"].as_u64().unwrap_or(0))
            })
            .collect()
    }

    #[test]
    fn another_node_s_message_waits_for_ours_and_comes_once() {
        let mut chat = chat();
        attach(&mut chat, 1);
        let mut out = Vec::new();
        chat.local_committed(message(1), &mut collect(&mut out));
        remote(&mut chat, 3, &mut out);
        assert_eq!(seqs(&out), vec![1], "3 waits for 2");
        chat.local_committed(message(2), &mut collect(&mut out));
        remote(&mut chat, 3, &mut out);
        remote(&mut chat, 2, &mut out);
        assert_eq!(seqs(&out), vec![1, 2, 3], "in order, each once");
    }

    #[test]
    fn a_sync_that_read_past_live_delivery_ends_when_it_catches_up() {
        let mut chat = chat();
        attach(&mut chat, 1);
        let mut out = Vec::new();
        remote(&mut chat, 1, &mut out);
        assert_eq!(seqs(&out), vec![1]);
        // The client syncs; its replay read up to 4 while the hub has delivered only 1.
        let live = chat.hold(ClientId(1)).expect("attached");
        assert_eq!(live[0].last, Seq(1));
        remote(&mut chat, 2, &mut out);
        let (reply, mut answer) = oneshot::channel();
        chat.cluster_sync_done(
            ClientId(1),
            BTreeMap::from([(C, Seq(4))]),
            Some("s".into()),
            reply,
            &mut collect(&mut out),
        );
        assert!(
            answer.try_recv().is_err(),
            "held until live delivery reaches 4"
        );
        remote(&mut chat, 3, &mut out);
        assert!(answer.try_recv().is_err());
        remote(&mut chat, 4, &mut out);
        assert_eq!(answer.try_recv(), Ok(SyncEnd::Done));
        assert!(out.last().is_some_and(|(_, f)| f.contains("\"synced\"")));
        remote(&mut chat, 5, &mut out);
        // 2..=4 came in the replay: never live as well.
        assert_eq!(seqs(&out), vec![1, 5]);
    }

    #[test]
    fn a_sync_that_read_less_than_live_delivery_started_after_runs_again() {
        let mut chat = chat();
        attach(&mut chat, 1);
        let mut out = Vec::new();
        // The hub's first message of the conversation is 7 (6 still in flight elsewhere).
        chat.hold(ClientId(1)).expect("attached");
        remote(&mut chat, 7, &mut out);
        let (reply, mut answer) = oneshot::channel();
        chat.cluster_sync_done(
            ClientId(1),
            BTreeMap::from([(C, Seq(5))]),
            None,
            reply,
            &mut collect(&mut out),
        );
        assert_eq!(answer.try_recv(), Ok(SyncEnd::Again), "6 is in neither");
        let (reply, mut answer) = oneshot::channel();
        chat.cluster_sync_done(
            ClientId(1),
            BTreeMap::from([(C, Seq(7))]),
            None,
            reply,
            &mut collect(&mut out),
        );
        assert_eq!(answer.try_recv(), Ok(SyncEnd::Done));
        assert!(seqs(&out).is_empty(), "7 came in the second replay");
    }

    #[test]
    fn a_conversation_joined_during_a_replay_does_not_make_it_run_again() {
        let mut chat = chat();
        attach(&mut chat, 1);
        let mut out = Vec::new();
        remote(&mut chat, 1, &mut out);
        chat.hold(ClientId(1)).expect("attached");
        // Meanwhile another node adds user 1 to conversation 5, which has 8 messages.
        let info = chatgroup_protocol::ConversationInfo {
            id: ConversationId(5),
            kind: chatgroup_protocol::ConversationKind::Group,
            name: "new".into(),
            owner: None,
            members: vec![],
            last_seq: Seq(8),
            last_message: None,
            unread: 0,
            markers: vec![],
        };
        let added = Committed::MembersAdded {
            conversation: info,
            users: vec![UserId(1)],
        };
        let envelope = Envelope {
            node: NodeId(9),
            event: Event::of_committed(&added, None).expect("published"),
        };
        chat.on_bus(
            InboundKind::Remote(Box::new(envelope)),
            &mut collect(&mut out),
        );
        let (reply, mut answer) = oneshot::channel();
        chat.cluster_sync_done(
            ClientId(1),
            BTreeMap::from([(C, Seq(1))]),
            None,
            reply,
            &mut collect(&mut out),
        );
        assert_eq!(answer.try_recv(), Ok(SyncEnd::Done));
    }

    /// Serves every fill that is due (as if the bound had passed) from the truth: messages
    /// `1..=n`, `limit` at a time.
    fn serve_fills(chat: &mut Chat, n: u64, limit: usize, out: &mut Vec<(ClientId, String)>) {
        let later = Instant::now() + Duration::from_secs(60);
        let due = chat.cluster.as_mut().expect("cluster").sequencer.due(later);
        for (conversation, from) in due {
            let batch: Vec<MessageView> = (from.0 + 1..=n)
                .take(limit)
                .map(|q| match message(q) {
                    Committed::Message { message, .. } => message,
                    _ => unreachable!(),
                })
                .collect();
            let complete = batch.len() < limit;
            let kind = InboundKind::Filled {
                conversation,
                result: Ok((batch, complete)),
            };
            chat.on_bus(kind, &mut collect(out));
        }
    }

    use std::time::Duration;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Three members on this node; messages 1..=n arrive from this node or the bus, in
        /// any order, some lost, some twice; fills come at random points and at the end.
        /// Every member gets every message once, in order.
        #[test]
        fn every_member_gets_every_message_once_in_order(
            n in 1u64..40,
            arrivals in proptest::collection::vec((1u64..40, proptest::bool::ANY, 0u8..10), 0..80),
            limit in 1usize..6,
        ) {
            let mut chat = chat();
            for client in 1..=3 {
                attach(&mut chat, client);
            }
            // As if they had synced an empty conversation.
            chat.cluster.as_mut().expect("cluster").sequencer.exists(C, Seq(0), Instant::now());
            let mut out = Vec::new();
            for (seq, local, action) in arrivals {
                let seq = seq.min(n);
                if local {
                    chat.local_committed(message(seq), &mut collect(&mut out));
                } else {
                    remote(&mut chat, seq, &mut out);
                }
                if action == 0 {
                    serve_fills(&mut chat, n, limit, &mut out);
                }
            }
            // The end of the flood is found: a node said Lost, or died.
            chat.cluster.as_mut().expect("cluster").sequencer.suspect_all(Instant::now());
            for _ in 0..(n as usize + 2) {
                serve_fills(&mut chat, n, limit, &mut out);
            }
            for client in 1..=3u64 {
                let mine: Vec<(ClientId, String)> = out
                    .iter()
                    .filter(|(c, _)| c.0 == client)
                    .cloned()
                    .collect();
                proptest::prop_assert_eq!(seqs(&mine), (1..=n).collect::<Vec<_>>());
            }
        }
    }
}
