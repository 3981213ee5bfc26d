//! Who is online on the other nodes (`--bus redis`), as their presence events and snapshots
//! say, and which nodes are alive.
//!
//! A user is online on a node from its `Presence { online: true }` until its `Presence {
//! online: false }`, or until the node is dead (not heard from for `bus::NODE_TIMEOUT`). A
//! user counts as online elsewhere while some other node has them; the hub combines that
//! with its own connections, so a user with a tab on each of two nodes is online once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chatgroup_protocol::{ConversationId, UserId};

use crate::bus::NodeId;

#[derive(Debug)]
struct Node {
    heard: Instant,
    users: HashMap<UserId, Vec<ConversationId>>,
}

/// A user who came online or went offline on the other nodes taken together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flip {
    pub(crate) user: UserId,
    pub(crate) online: bool,
    pub(crate) conversations: Vec<ConversationId>,
}

/// The other nodes.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    nodes: HashMap<NodeId, Node>,
    /// On how many other nodes each user is online.
    count: HashMap<UserId, usize>,
}

impl Peers {
    /// `node` spoke; `true` if it is new.
    pub(crate) fn heard(&mut self, node: NodeId, now: Instant) -> bool {
        match self.nodes.get_mut(&node) {
            Some(n) => {
                n.heard = now;
                false
            }
            None => {
                self.nodes.insert(
                    node,
                    Node {
                        heard: now,
                        users: HashMap::new(),
                    },
                );
                true
            }
        }
    }

    /// `user` is online on `node` (or not); a flip if that changes whether they are online
    /// elsewhere.
    pub(crate) fn set(
        &mut self,
        node: NodeId,
        user: UserId,
        online: bool,
        conversations: Vec<ConversationId>,
        now: Instant,
    ) -> Option<Flip> {
        self.heard(node, now);
        let n = self.nodes.get_mut(&node)?;
        if online {
            if n.users.insert(user, conversations.clone()).is_some() {
                return None;
            }
            let c = self.count.entry(user).or_default();
            *c += 1;
            (*c == 1).then_some(Flip {
                user,
                online: true,
                conversations,
            })
        } else {
            let conversations = n.users.remove(&user)?;
            self.drop_one(user, conversations)
        }
    }

    /// `node`'s users are exactly `users` (its snapshot); the flips that makes.
    pub(crate) fn replace(
        &mut self,
        node: NodeId,
        users: Vec<(UserId, Vec<ConversationId>)>,
        now: Instant,
    ) -> Vec<Flip> {
        let mut flips = Vec::new();
        self.heard(node, now);
        let old: Vec<UserId> = self
            .nodes
            .get(&node)
            .map(|n| n.users.keys().copied().collect())
            .unwrap_or_default();
        let new: HashMap<UserId, Vec<ConversationId>> = users.into_iter().collect();
        for user in old {
            if !new.contains_key(&user) {
                flips.extend(self.set(node, user, false, Vec::new(), now));
            }
        }
        for (user, conversations) in new {
            flips.extend(self.set(node, user, true, conversations, now));
        }
        flips
    }

    /// Nodes not heard from for `timeout` are dead: forgets them; returns the flips and
    /// whether any died.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> (Vec<Flip>, bool) {
        let dead: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| now.saturating_duration_since(n.heard) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        let mut flips = Vec::new();
        for node in &dead {
            tracing::info!(%node, "bus: node presumed dead (silent); its users go offline");
            if let Some(n) = self.nodes.remove(node) {
                for (user, conversations) in n.users {
                    flips.extend(self.drop_one(user, conversations));
                }
            }
        }
        (flips, !dead.is_empty())
    }

    /// Whether `user` is online on another node.
    pub(crate) fn is_online(&self, user: UserId) -> bool {
        self.count.contains_key(&user)
    }

    /// Users online elsewhere in any of `conversations`.
    pub(crate) fn online_in(&self, conversations: &[ConversationId]) -> Vec<UserId> {
        let mut out: Vec<UserId> = self
            .nodes
            .values()
            .flat_map(|n| n.users.iter())
            .filter(|(_, convs)| convs.iter().any(|c| conversations.contains(c)))
            .map(|(u, _)| *u)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn drop_one(&mut self, user: UserId, conversations: Vec<ConversationId>) -> Option<Flip> {
        let c = self.count.get_mut(&user)?;
        *c -= 1;
        if *c > 0 {
            return None;
        }
        self.count.remove(&user);
        Some(Flip {
            user,
            online: false,
            conversations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);
    const U: UserId = UserId(7);

    #[test]
    fn a_user_on_two_nodes_is_online_once_and_offline_when_both_are_gone() {
        let mut p = Peers::default();
        let t0 = Instant::now();
        let convs = vec![ConversationId(3)];
        assert!(p
            .set(A, U, true, convs.clone(), t0)
            .is_some_and(|f| f.online));
        assert_eq!(p.set(B, U, true, convs.clone(), t0), None, "already online");
        assert_eq!(p.set(A, U, false, vec![], t0), None, "still on B");
        assert!(p.is_online(U));
        let flip = p.set(B, U, false, vec![], t0).expect("gone everywhere");
        assert!(!flip.online);
        assert_eq!(flip.conversations, convs);
        assert!(!p.is_online(U));
    }

    #[test]
    fn a_silent_node_dies_and_takes_its_users_offline() {
        let mut p = Peers::default();
        let t0 = Instant::now();
        p.set(A, U, true, vec![ConversationId(3)], t0);
        p.heard(B, t0);
        let later = t0 + Duration::from_secs(4);
        p.heard(B, later);
        let (flips, died) = p.expire(t0 + Duration::from_secs(5), Duration::from_secs(5));
        assert!(died);
        assert_eq!(flips.len(), 1);
        assert!(!flips[0].online);
        assert!(!p.is_online(U));
        let (flips, died) = p.expire(t0 + Duration::from_secs(6), Duration::from_secs(5));
        assert!(flips.is_empty() && !died, "B was heard at 4 s");
    }

    #[test]
    fn a_snapshot_replaces_what_a_node_had() {
        let mut p = Peers::default();
        let t0 = Instant::now();
        p.set(A, U, true, vec![], t0);
        let v = UserId(8);
        let flips = p.replace(A, vec![(v, vec![ConversationId(1)])], t0);
        assert_eq!(flips.len(), 2);
        assert!(!p.is_online(U) && p.is_online(v));
        assert_eq!(p.online_in(&[ConversationId(1)]), vec![v]);
    }
}
