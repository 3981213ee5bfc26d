//! Identifier newtypes. Each is a `u64` on the wire (a JSON number, or a string where JSON
//! demands one, as a map key), and a distinct type in Rust so that a user id can never be
//! passed where a conversation id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                Self(v)
            }
        }
    };
}

id!(
    /// A registered user.
    UserId
);
id!(
    /// A conversation: a group or a direct chat between two users.
    ConversationId
);
id!(
    /// A stored message, unique across the whole database.
    MessageId
);
id!(
    /// A message's position in its conversation: 1, 2, 3, … with no gaps, in commit order.
    /// `Seq(0)` means "before the first message" (an empty cursor).
    Seq
);

impl Seq {
    /// The position before the first message.
    pub const ZERO: Seq = Seq(0);

    /// The next position.
    #[must_use]
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}
