//! Who is online, as the people they share a conversation with see it.
//!
//! A user is online while any of their connections is attached. When the last one goes,
//! they stay online for a debounce period, so a reload (close, then connect again within a
//! second or two) is not seen at all. Changes wait for the hub's next tick and go out once
//! per user, each recipient connection getting one frame however many conversations it
//! shares with the user.
//!
//! **Cost per change.** Pushing every change to every member of every shared conversation
//! makes a user in 100 groups of 1,000 cost 100,000 frames per change. So a change is
//! pushed to the connections of a conversation only when it has at most `fanout` connected
//! members (direct chats, small groups: the places where an online dot matters); larger
//! conversations get it only on the connections *watching* them, the ones that asked for
//! their `user_list` (a client does when it opens the conversation). Everyone else sees the
//! current state when they ask.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chatgroup_protocol::{ConversationId, Millis, UserId};

use crate::ids::ClientId;

/// A change to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) user: UserId,
    pub(crate) online: bool,
    pub(crate) last_seen: Option<Millis>,
    /// The conversations it concerns (the user's, as their connections had them).
    pub(crate) conversations: Vec<ConversationId>,
}

/// Presence state.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    /// Users whose last connection closed, offline once the instant passes.
    leaving: HashMap<UserId, (Instant, Vec<ConversationId>)>,
    /// Changes waiting for the next tick.
    pending: HashMap<UserId, Change>,
    /// Which conversation each watching connection watches.
    watching: HashMap<ClientId, ConversationId>,
    watchers: HashMap<ConversationId, HashSet<ClientId>>,
}

impl Presence {
    /// A user's first connection attached. Announced unless they were only leaving (a
    /// reload within the debounce).
    pub(crate) fn arrived(&mut self, user: UserId, conversations: &[ConversationId]) {
        if self.leaving.remove(&user).is_some() {
            return;
        }
        self.pending.insert(
            user,
            Change {
                user,
                online: true,
                last_seen: None,
                conversations: conversations.to_vec(),
            },
        );
    }

    /// A user's last connection closed: offline at `at` unless they come back before.
    pub(crate) fn departed(
        &mut self,
        user: UserId,
        at: Instant,
        conversations: Vec<ConversationId>,
    ) {
        if let Some(change) = self.pending.get(&user) {
            if change.online {
                // Came and went within one tick: nobody was told, nobody needs to be.
                self.pending.remove(&user);
                return;
            }
        }
        self.leaving.insert(user, (at, conversations));
    }

    /// Whether `user` counts as online while their connections are gone (debounce).
    pub(crate) fn is_leaving(&self, user: UserId) -> bool {
        self.leaving.contains_key(&user)
    }

    /// Users whose debounce ended by `now` become offline, as of `now_ms`; returns them (to
    /// record their last-seen time).
    pub(crate) fn settle(&mut self, now: Instant, now_ms: Millis) -> Vec<UserId> {
        let gone: Vec<UserId> = self
            .leaving
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(user, _)| *user)
            .collect();
        for user in &gone {
            if let Some((_, conversations)) = self.leaving.remove(user) {
                self.pending.insert(
                    *user,
                    Change {
                        user: *user,
                        online: false,
                        last_seen: Some(now_ms),
                        conversations,
                    },
                );
            }
        }
        gone
    }

    /// The changes to announce now.
    pub(crate) fn take(&mut self) -> Vec<Change> {
        self.pending.drain().map(|(_, c)| c).collect()
    }

    /// Whether the tick has anything to do.
    pub(crate) fn busy(&self) -> bool {
        !self.pending.is_empty() || !self.leaving.is_empty()
    }

    /// `client` now watches `conversation` (and no longer the one it watched before).
    pub(crate) fn watch(&mut self, client: ClientId, conversation: ConversationId) {
        self.unwatch(client);
        self.watching.insert(client, conversation);
        self.watchers
            .entry(conversation)
            .or_default()
            .insert(client);
    }

    /// `client` watches nothing (it closed, or left the conversation).
    pub(crate) fn unwatch(&mut self, client: ClientId) {
        if let Some(old) = self.watching.remove(&client) {
            if let Some(set) = self.watchers.get_mut(&old) {
                set.remove(&client);
                if set.is_empty() {
                    self.watchers.remove(&old);
                }
            }
        }
    }

    /// What `client` watches.
    pub(crate) fn watched_by(&self, client: ClientId) -> Option<ConversationId> {
        self.watching.get(&client).copied()
    }

    /// The connections watching `conversation`.
    pub(crate) fn watchers(
        &self,
        conversation: ConversationId,
    ) -> impl Iterator<Item = ClientId> + '_ {
        self.watchers
            .get(&conversation)
            .into_iter()
            .flatten()
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_reload_within_the_debounce_is_not_announced() {
        let mut p = Presence::default();
        let u = UserId(1);
        let convs = [ConversationId(7)];
        p.arrived(u, &convs);
        assert_eq!(p.take().len(), 1);
        let t0 = Instant::now();
        p.departed(u, t0 + Duration::from_secs(2), convs.to_vec());
        assert!(p.is_leaving(u));
        assert!(p.settle(t0 + Duration::from_secs(1), 1).is_empty());
        p.arrived(u, &convs);
        assert!(p.take().is_empty());
        assert!(!p.busy());
    }

    #[test]
    fn leaving_for_good_is_announced_once_with_last_seen() {
        let mut p = Presence::default();
        let u = UserId(1);
        let t0 = Instant::now();
        p.departed(u, t0, vec![ConversationId(7)]);
        assert_eq!(p.settle(t0, 1234), vec![u]);
        let changes = p.take();
        assert_eq!(changes.len(), 1);
        assert!(!changes[0].online);
        assert_eq!(changes[0].last_seen, Some(1234));
        assert!(!p.busy());
    }

    #[test]
    fn a_connection_watches_one_conversation_at_a_time() {
        let mut p = Presence::default();
        let c = ClientId(1);
        p.watch(c, ConversationId(1));
        p.watch(c, ConversationId(2));
        assert_eq!(p.watchers(ConversationId(1)).count(), 0);
        assert_eq!(p.watchers(ConversationId(2)).collect::<Vec<_>>(), vec![c]);
        p.unwatch(c);
        assert_eq!(p.watched_by(c), None);
    }
}
