//! Pure membership tables: which clients are in which conversation. No tokio, no I/O; the
//! hub task is the only owner and writer.

use std::collections::{HashMap, HashSet};

use crate::ids::{ClientId, ConversationId};

/// Conversation → members, and client → conversations (so removing a client is cheap).
#[derive(Debug, Default)]
pub struct Routes {
    members: HashMap<ConversationId, HashSet<ClientId>>,
    joined: HashMap<ClientId, Vec<ConversationId>>,
}

impl Routes {
    /// Adds `client` to `conversation`. Returns `false` if it was already a member.
    pub fn join(&mut self, client: ClientId, conversation: ConversationId) -> bool {
        if !self.members.entry(conversation).or_default().insert(client) {
            return false;
        }
        self.joined.entry(client).or_default().push(conversation);
        true
    }

    /// Removes `client` from `conversation`. Returns `false` if it was not a member.
    pub fn leave(&mut self, client: ClientId, conversation: ConversationId) -> bool {
        let Some(set) = self.members.get_mut(&conversation) else {
            return false;
        };
        if !set.remove(&client) {
            return false;
        }
        if set.is_empty() {
            self.members.remove(&conversation);
        }
        if let Some(list) = self.joined.get_mut(&client) {
            list.retain(|c| *c != conversation);
            if list.is_empty() {
                self.joined.remove(&client);
            }
        }
        true
    }

    /// Removes `client` from every conversation; returns how many it was in.
    pub fn remove_client(&mut self, client: ClientId) -> usize {
        let Some(list) = self.joined.remove(&client) else {
            return 0;
        };
        for conversation in &list {
            if let Some(set) = self.members.get_mut(conversation) {
                set.remove(&client);
                if set.is_empty() {
                    self.members.remove(conversation);
                }
            }
        }
        list.len()
    }

    /// The members of `conversation` (empty if nobody is in it).
    pub fn members(&self, conversation: ConversationId) -> impl Iterator<Item = ClientId> + '_ {
        self.members
            .get(&conversation)
            .into_iter()
            .flatten()
            .copied()
    }

    /// How many clients are in `conversation`.
    pub fn member_count(&self, conversation: ConversationId) -> usize {
        self.members.get(&conversation).map_or(0, HashSet::len)
    }

    /// The conversations `client` is in.
    pub fn conversations_of(&self, client: ClientId) -> &[ConversationId] {
        self.joined.get(&client).map_or(&[], Vec::as_slice)
    }

    /// Number of conversations with at least one member.
    pub fn conversation_count(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientId = ClientId(1);
    const B: ClientId = ClientId(2);
    const C: ClientId = ClientId(3);
    const X: ConversationId = ConversationId(10);
    const Y: ConversationId = ConversationId(20);

    fn sorted(r: &Routes, conv: ConversationId) -> Vec<ClientId> {
        let mut v: Vec<_> = r.members(conv).collect();
        v.sort();
        v
    }

    #[test]
    fn join_and_leave() {
        let mut r = Routes::default();
        assert!(r.join(A, X));
        assert!(!r.join(A, X), "joining twice is a no-op");
        assert!(r.join(B, X));
        assert!(r.join(B, Y));
        assert_eq!(sorted(&r, X), vec![A, B]);
        assert_eq!(r.conversations_of(B), &[X, Y]);
        assert!(r.leave(B, X));
        assert!(!r.leave(B, X));
        assert!(!r.leave(C, X));
        assert_eq!(sorted(&r, X), vec![A]);
        assert_eq!(r.conversations_of(B), &[Y]);
    }

    #[test]
    fn empty_entries_are_dropped() {
        let mut r = Routes::default();
        r.join(A, X);
        r.leave(A, X);
        assert_eq!(r.conversation_count(), 0);
        assert!(r.conversations_of(A).is_empty());
        assert_eq!(r.members(X).count(), 0);
    }

    #[test]
    fn remove_client_everywhere() {
        let mut r = Routes::default();
        r.join(A, X);
        r.join(A, Y);
        r.join(B, Y);
        assert_eq!(r.remove_client(A), 2);
        assert_eq!(r.remove_client(A), 0);
        assert_eq!(r.conversation_count(), 1);
        assert_eq!(sorted(&r, Y), vec![B]);
        assert_eq!(r.members(X).count(), 0);
    }
}
