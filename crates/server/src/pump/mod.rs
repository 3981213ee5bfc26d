//! The two tasks of an open WebSocket connection.
//!
//! The read pump is the connection task itself (it continues from the handshake); it spawns
//! only the write pump, so an open connection costs two tasks. The pumps end together: the
//! reader reports its end through [`Outbox::reader_finished`](crate::outbox::Outbox), the
//! writer ends the reader with [`Outbox::kill`](crate::outbox::Outbox::kill).

pub(crate) mod read;
pub(crate) mod write;

use crate::ids::ConversationId;

/// What a connection does with the messages it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `/ws`: text is broadcast to the other members of the conversation (if any).
    Chat(Option<ConversationId>),
    /// `/echo`: every message is sent back unchanged.
    Echo,
}
