//! Identifier newtypes, so a client id can never be passed where a conversation id is expected.

use std::fmt;

/// Identifies one WebSocket connection for the lifetime of the server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// Identifies a conversation (a chat room or a direct chat): the protocol's id, so the
/// hub, the store and the wire agree on it.
pub use chatgroup_protocol::ConversationId;

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}
