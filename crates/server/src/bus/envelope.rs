//! What travels on the bus: one JSON object per Redis message, tagged with the node that
//! published it.
//!
//! JSON rather than a binary format because every field is already `serde` for the wire
//! protocol, a message is read once per node, and `redis-cli SUBSCRIBE` shows it as it is.

use chatgroup_protocol::{
    ConversationId, ConversationInfo, Markers, MessageView, Seq, TypingState, UserId,
};
use chatgroup_store::Committed;
use serde::{Deserialize, Serialize};

/// A node's id: random per start, so a restarted node is a new one to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One bus message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// Who published it.
    pub(crate) node: NodeId,
    /// What happened.
    pub(crate) event: Event,
}

/// What a node tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum Event {
    /// A committed message.
    Message {
        /// As stored (the sender's connection stays on the node that took it).
        message: MessageView,
    },
    /// Members were added (before the system message saying so).
    MembersAdded {
        /// The conversation; `last_seq` is the seq before that system message.
        conversation: ConversationInfo,
        /// Who.
        users: Vec<UserId>,
    },
    /// A member left or was removed.
    MemberRemoved {
        /// Where from.
        conversation: ConversationId,
        /// Who.
        user: UserId,
        /// The system message it follows (the one the publisher committed just before).
        after: Option<Seq>,
    },
    /// A conversation's name or owner changed; `last_seq` is the system message it follows.
    ConversationChanged {
        /// The conversation now.
        conversation: ConversationInfo,
    },
    /// A member's markers moved.
    Receipt {
        /// Where.
        conversation: ConversationId,
        /// Now.
        markers: Markers,
        /// Before.
        previous: Markers,
    },
    /// Someone typing (already throttled by the publisher).
    Typing {
        /// Where.
        conversation: ConversationId,
        /// Who.
        user: UserId,
        /// Start or stop.
        state: TypingState,
    },
    /// A user's first connection on the publisher attached, or their last one left (after
    /// the debounce).
    Presence {
        /// Who.
        user: UserId,
        /// Online on the publisher or not.
        online: bool,
        /// Their conversations, to know whom to tell.
        conversations: Vec<ConversationId>,
    },
    /// Every user online on the publisher, with their conversations: the answer to `Hello`.
    Snapshot {
        /// Who, and where.
        users: Vec<(UserId, Vec<ConversationId>)>,
    },
    /// The publisher is alive (every [`super::ALIVE_EVERY`]).
    Alive,
    /// The publisher (re)joined the bus: send it a snapshot, and check for lost messages.
    Hello,
    /// The publisher dropped events it could not publish: check for lost messages.
    Lost,
}

impl Event {
    /// The bus form of a committed event; `None` for those that concern only the node that
    /// committed them (acks, refusals, attaches). `last_message` is the conversation and seq
    /// of the last message this node committed before `event`, which a `MemberRemoved`
    /// follows.
    pub(crate) fn of_committed(
        event: &Committed,
        last_message: Option<(ConversationId, Seq)>,
    ) -> Option<Self> {
        Some(match event {
            Committed::Message { message, .. } => Self::Message {
                message: message.clone(),
            },
            Committed::MembersAdded {
                conversation,
                users,
            } => Self::MembersAdded {
                conversation: conversation.clone(),
                users: users.clone(),
            },
            Committed::MemberRemoved { conversation, user } => Self::MemberRemoved {
                conversation: *conversation,
                user: *user,
                after: last_message
                    .filter(|(c, _)| c == conversation)
                    .map(|(_, s)| s),
            },
            Committed::ConversationChanged { conversation } => Self::ConversationChanged {
                conversation: conversation.clone(),
            },
            Committed::Receipt {
                conversation,
                markers,
                previous,
            } => Self::Receipt {
                conversation: *conversation,
                markers: *markers,
                previous: *previous,
            },
            Committed::Duplicate { .. }
            | Committed::Rejected { .. }
            | Committed::MarksRefused { .. }
            | Committed::Attached { .. } => return None,
        })
    }

    /// The committed event another node published, as this node's hub applies it (with no
    /// origin: the sender's connection is elsewhere), with the seq a `MemberRemoved`
    /// follows; the other kinds come back as they are.
    pub(crate) fn into_committed(self) -> Split {
        Split::Committed(match self {
            Self::Message { message } => (
                Committed::Message {
                    message,
                    origin: None,
                },
                None,
            ),
            Self::MembersAdded {
                conversation,
                users,
            } => (
                Committed::MembersAdded {
                    conversation,
                    users,
                },
                None,
            ),
            Self::MemberRemoved {
                conversation,
                user,
                after,
            } => (Committed::MemberRemoved { conversation, user }, after),
            Self::ConversationChanged { conversation } => {
                (Committed::ConversationChanged { conversation }, None)
            }
            Self::Receipt {
                conversation,
                markers,
                previous,
            } => (
                Committed::Receipt {
                    conversation,
                    markers,
                    previous,
                },
                None,
            ),
            other => return Split::Other(other),
        })
    }
}

/// An [`Event`] split into what the store committed and the rest.
#[derive(Debug)]
pub(crate) enum Split {
    /// A committed event, and the seq a `MemberRemoved` follows.
    Committed((Committed, Option<Seq>)),
    /// Typing, presence, liveness.
    Other(Event),
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatgroup_protocol::MessageKind;

    #[test]
    fn a_message_round_trips_without_its_origin() {
        let message = MessageView {
            id: chatgroup_protocol::MessageId(9),
            conversation: ConversationId(3),
            seq: Seq(4),
            ts: 17,
            sender: Some(UserId(2)),
            sender_name: Some("bob".into()),
            kind: MessageKind::Text,
            body: "hé \"there\"".into(),
            local_id: Some("l-1".into()),
            event: None,
            file: None,
        };
        let committed = Committed::Message {
            message: message.clone(),
            origin: Some(chatgroup_store::Origin {
                tag: 5,
                reference: None,
            }),
        };
        let env = Envelope {
            node: NodeId(u64::MAX),
            event: Event::of_committed(&committed, None).unwrap(),
        };
        let text = serde_json::to_string(&env).unwrap();
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, env);
        let Split::Committed((event, _)) = back.event.into_committed() else {
            panic!("a message is committed");
        };
        assert_eq!(
            event,
            Committed::Message {
                message,
                origin: None
            }
        );
    }

    #[test]
    fn a_removal_names_the_message_it_follows_only_in_its_conversation() {
        let removed = Committed::MemberRemoved {
            conversation: ConversationId(3),
            user: UserId(1),
        };
        let after = |last| match Event::of_committed(&removed, last) {
            Some(Event::MemberRemoved { after, .. }) => after,
            other => panic!("{other:?}"),
        };
        assert_eq!(after(Some((ConversationId(3), Seq(8)))), Some(Seq(8)));
        assert_eq!(after(Some((ConversationId(4), Seq(8)))), None);
        let attached = Committed::Attached {
            tag: 1,
            user: UserId(1),
            conversations: vec![],
        };
        assert_eq!(Event::of_committed(&attached, None), None);
    }
}
