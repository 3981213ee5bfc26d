//! What goes into the store and what comes out of its commits.

use chatgroup_protocol::{
    ConversationId, ConversationInfo, Markers, MessageKind, MessageView, UserId, UserInfo,
};

use crate::StoreError;

/// Which connection asked for a write. Opaque to the store: it comes back unchanged with the
/// write's outcome so the server can route the ack or the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The server's id for the asking connection.
    pub tag: u64,
    /// The request's `ref`, echoed in an error.
    pub reference: Option<String>,
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// Who wrote it; must be a member of `conversation`.
    pub sender: UserId,
    /// Where it goes.
    pub conversation: ConversationId,
    /// The sender's id for it: a second append with the same `(sender, local_id)` is a
    /// duplicate and gets the original back.
    pub local_id: String,
    /// The text.
    pub body: String,
    /// [`MessageKind::Text`] or [`MessageKind::File`]; [`MessageKind::System`] is refused,
    /// system messages are written only by the store's own operations.
    pub kind: MessageKind,
    /// Handed back with the outcome.
    pub origin: Origin,
}

/// A user with what a login checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAuth {
    /// The user.
    pub user: UserInfo,
    /// The password hash as given to [`Store::create_user`](crate::Store::create_user).
    pub password_hash: String,
}

/// What a committed batch did, delivered to the sink in commit order.
///
/// [`ConversationInfo`]s in events are the conversation as nobody in particular sees it:
/// `unread` is 0, and a direct chat's `name` is empty, since it depends on who looks (use
/// [`for_viewer`] to fill it in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// A new message (text or system), per conversation in seq order. `origin` is `Some` for
    /// appends.
    Message {
        /// The message as stored.
        message: MessageView,
        /// The append's origin; `None` for system messages.
        origin: Option<Origin>,
    },
    /// An append whose `(sender, local_id)` was committed before: `message` is the original
    /// (same id, seq and ts). Nothing new was stored.
    Duplicate {
        /// The original message.
        message: MessageView,
        /// The retried append's origin.
        origin: Origin,
    },
    /// An append that was refused (sender not a member, unknown conversation, or the batch
    /// failed to commit: [`StoreError::Db`]). It consumed no seq.
    Rejected {
        /// The append's origin.
        origin: Origin,
        /// The conversation it was for.
        conversation: ConversationId,
        /// The append's local id.
        local_id: String,
        /// Why.
        error: StoreError,
    },
    /// Users were added to a conversation (at creation: every initial member, the creator
    /// included). Emitted before the operation's system message, so the server can join their
    /// connections first and they receive it. `conversation.last_seq` is the seq before that
    /// system message.
    MembersAdded {
        /// The conversation, its members including the new ones.
        conversation: ConversationInfo,
        /// Who was added.
        users: Vec<UserId>,
    },
    /// A user left or was removed. Emitted after the operation's system message, so they see
    /// it.
    MemberRemoved {
        /// Where from.
        conversation: ConversationId,
        /// Who.
        user: UserId,
    },
    /// The name or the owner changed; emitted after the system message, if any. Carries the
    /// new state.
    ConversationChanged {
        /// The conversation now.
        conversation: ConversationInfo,
    },
    /// A member's delivery or read marker moved forward (reports are merged, so one event
    /// may cover many `received`/`read` reports).
    Receipt {
        /// Where.
        conversation: ConversationId,
        /// The markers now.
        markers: Markers,
        /// The markers before: the messages in between are the ones this receipt is news
        /// about.
        previous: Markers,
    },
    /// Markers reported for a conversation the user is not a member of (or that does not
    /// exist) were dropped.
    MarksRefused {
        /// The tag given to [`Store::mark`](crate::Store::mark) by the last report.
        tag: u64,
        /// The conversation named.
        conversation: ConversationId,
        /// [`StoreError::NotMember`] or [`StoreError::NotFound`].
        error: StoreError,
    },
    /// The answer to [`Store::attach`](crate::Store::attach): the user's conversations at this
    /// point of the commit order.
    Attached {
        /// The tag given to `attach`.
        tag: u64,
        /// The user given to `attach`.
        user: UserId,
        /// Every conversation the user is a member of.
        conversations: Vec<ConversationId>,
    },
}

/// Counters of the writer's work since the store opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Write operations carried out in committed transactions (appends, attaches and every
    /// other write, refused ones included).
    pub ops: u64,
    /// Batches whose commit failed; every operation in them was answered with
    /// [`StoreError::Db`].
    pub failed_batches: u64,
    /// Batch attempts rolled back and run again because they conflicted with another node's
    /// transaction (a deadlock, a serialization failure, a unique key committed meanwhile);
    /// PostgreSQL only.
    pub retries: u64,
}

/// `info` as `viewer` sees it: a direct chat is named after its other member.
#[must_use]
pub fn for_viewer(info: &ConversationInfo, viewer: UserId) -> ConversationInfo {
    let mut info = info.clone();
    if info.kind == chatgroup_protocol::ConversationKind::Direct {
        if let Some(other) = info.members.iter().find(|m| m.id != viewer) {
            info.name.clone_from(&other.username);
        }
    }
    info
}
