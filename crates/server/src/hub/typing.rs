//! Who is typing where. Nothing of it is stored: it lives in the hub for a few seconds.
//!
//! A `start` is broadcast at most once per [`THROTTLE`] per member and conversation (a
//! client repeats it while the person types); it lapses by itself [`EXPIRY`] after the last
//! repeat, and the hub then broadcasts the `stop` the client never sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chatgroup_protocol::{ConversationId, UserId};

/// A `start` without a repeat lapses after this long.
pub(crate) const EXPIRY: Duration = Duration::from_secs(5);
/// At most one `start` broadcast per member and conversation this often.
pub(crate) const THROTTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
struct Entry {
    expires: Instant,
    broadcast: Instant,
}

/// The members typing now.
#[derive(Debug, Default)]
pub(crate) struct Typing {
    entries: HashMap<(ConversationId, UserId), Entry>,
}

impl Typing {
    /// `user` (re)started typing; `true` if the start must be broadcast.
    pub(crate) fn start(
        &mut self,
        conversation: ConversationId,
        user: UserId,
        now: Instant,
    ) -> bool {
        let expires = now + EXPIRY;
        match self.entries.get_mut(&(conversation, user)) {
            Some(e) if now.duration_since(e.broadcast) < THROTTLE => {
                e.expires = expires;
                false
            }
            Some(e) => {
                e.expires = expires;
                e.broadcast = now;
                true
            }
            None => {
                self.entries.insert(
                    (conversation, user),
                    Entry {
                        expires,
                        broadcast: now,
                    },
                );
                true
            }
        }
    }

    /// `user` stopped typing (said so, or sent a message); `true` if they were typing, so
    /// the stop must be broadcast.
    pub(crate) fn stop(&mut self, conversation: ConversationId, user: UserId) -> bool {
        !self.entries.is_empty() && self.entries.remove(&(conversation, user)).is_some()
    }

    /// Forgets `user` in `conversation` without a broadcast (they left it).
    pub(crate) fn forget(&mut self, conversation: ConversationId, user: UserId) {
        self.entries.remove(&(conversation, user));
    }

    /// Starts that lapsed by `now`: each needs a `stop` broadcast.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<(ConversationId, UserId)> {
        let mut out = Vec::new();
        self.entries.retain(|key, e| {
            let keep = e.expires > now;
            if !keep {
                out.push(*key);
            }
            keep
        });
        out
    }

    /// Whether anyone is typing (the hub's tick then checks for lapses).
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_throttled_and_a_start_lapses() {
        let (c, u) = (ConversationId(1), UserId(2));
        let mut t = Typing::default();
        let t0 = Instant::now();
        assert!(t.start(c, u, t0));
        assert!(!t.start(c, u, t0 + Duration::from_millis(500)));
        assert!(!t.start(c, u, t0 + Duration::from_millis(1900)));
        assert!(t.start(c, u, t0 + Duration::from_millis(2100)));
        // The last repeat at 2.1 s keeps it alive until 7.1 s.
        assert!(t.expired(t0 + Duration::from_millis(7000)).is_empty());
        assert_eq!(t.expired(t0 + Duration::from_millis(7200)), vec![(c, u)]);
        assert!(t.is_empty());
        assert!(!t.stop(c, u));
    }

    #[test]
    fn stop_is_broadcast_only_after_a_start() {
        let (c, u) = (ConversationId(1), UserId(2));
        let mut t = Typing::default();
        assert!(!t.stop(c, u));
        assert!(t.start(c, u, Instant::now()));
        assert!(t.stop(c, u));
        assert!(!t.stop(c, u));
    }
}
