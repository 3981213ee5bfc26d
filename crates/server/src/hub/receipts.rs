//! Which receipts to send, and to whom.
//!
//! Markers move often (every member confirms every message), so the hub neither sends one
//! frame per report nor sends every move to every member:
//!
//! - **Coalescing.** Moves are merged per member and conversation until the next tick; a
//!   burst becomes one `receipt` with the newest values.
//! - **Targeting.** A move from `previous` to `now` is news only about the messages in
//!   between: it changes the ticks of their senders and nobody else's. So it goes to the
//!   connections of those senders (found in a short memory of recent senders per
//!   conversation) and to the member's own connections (their other devices follow the read
//!   marker). Only when the range reaches back past that memory does it go to every member.
//!   In a group of 1,000 where everyone confirms one message, its sender gets the receipts
//!   and the other 999 members get none, instead of a million frames.

use std::collections::{HashMap, VecDeque};

use chatgroup_protocol::{ConversationId, Markers, Seq, UserId};

/// Recent messages remembered per conversation, to find whom a receipt concerns.
const RECENT: usize = 256;
/// Conversations whose recent senders are remembered at most.
const CONVERSATIONS: usize = 20_000;

/// Who a receipt must reach, besides the member's own connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Audience {
    /// The senders of the messages it covers.
    Senders(Vec<UserId>),
    /// Everyone in the conversation (the range is older than the hub remembers).
    Everyone,
}

/// A coalesced move of one member's markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Move {
    pub(crate) conversation: ConversationId,
    pub(crate) previous: Markers,
    pub(crate) now: Markers,
}

/// Pending receipts and the memory of recent senders.
#[derive(Debug, Default)]
pub(crate) struct Receipts {
    pending: HashMap<(ConversationId, UserId), Move>,
    /// Per conversation, `(seq, sender)` of its newest messages, consecutive `seq`s.
    recent: HashMap<ConversationId, VecDeque<(Seq, Option<UserId>)>>,
}

impl Receipts {
    /// Remembers who sent message `seq` (called for every committed message, in order).
    pub(crate) fn message(
        &mut self,
        conversation: ConversationId,
        seq: Seq,
        sender: Option<UserId>,
    ) {
        if self.recent.len() >= CONVERSATIONS && !self.recent.contains_key(&conversation) {
            // Bounded memory: forgetting is always safe, receipts then go to everyone.
            self.recent.clear();
        }
        let ring = self.recent.entry(conversation).or_default();
        if ring.back().is_some_and(|(last, _)| last.0 + 1 != seq.0) {
            // Not consecutive (cannot happen with events in commit order); start over rather
            // than answer wrongly.
            ring.clear();
        }
        if ring.len() == RECENT {
            ring.pop_front();
        }
        ring.push_back((seq, sender));
    }

    /// Records a committed move, merged with any pending one of the same member.
    pub(crate) fn moved(&mut self, conversation: ConversationId, previous: Markers, now: Markers) {
        self.pending
            .entry((conversation, now.user))
            .and_modify(|m| m.now = now)
            .or_insert(Move {
                conversation,
                previous,
                now,
            });
    }

    /// Whether receipts wait for the next tick.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The moves merged since the last call.
    pub(crate) fn take(&mut self) -> Vec<Move> {
        self.pending.drain().map(|(_, m)| m).collect()
    }

    /// Whom a move concerns: the senders of the messages whose delivered or read state it
    /// changed (not the member themselves).
    pub(crate) fn audience(&self, m: &Move) -> Audience {
        let mut low = None::<Seq>;
        let mut high = Seq::ZERO;
        for (before, after) in [
            (m.previous.delivered, m.now.delivered),
            (m.previous.read, m.now.read),
        ] {
            if after > before {
                low = Some(low.map_or(before, |l| l.min(before)));
                high = high.max(after);
            }
        }
        let Some(low) = low else {
            return Audience::Senders(Vec::new());
        };
        let Some(ring) = self.recent.get(&m.conversation) else {
            return Audience::Everyone;
        };
        match ring.front() {
            Some((first, _)) if first.0 <= low.0 + 1 => {}
            _ => return Audience::Everyone,
        }
        let mut senders: Vec<UserId> = Vec::new();
        for (seq, sender) in ring {
            if *seq <= low {
                continue;
            }
            if *seq > high {
                break;
            }
            if let Some(sender) = sender {
                if *sender != m.now.user && !senders.contains(sender) {
                    senders.push(*sender);
                }
            }
        }
        Audience::Senders(senders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markers(user: u64, delivered: u64, read: u64) -> Markers {
        Markers {
            user: UserId(user),
            delivered: Seq(delivered),
            read: Seq(read),
        }
    }

    #[test]
    fn a_move_concerns_the_senders_of_the_messages_it_covers() {
        let c = ConversationId(1);
        let mut r = Receipts::default();
        for (seq, sender) in [(1, 10), (2, 11), (3, 10), (4, 12), (5, 13)] {
            r.message(c, Seq(seq), Some(UserId(sender)));
        }
        let m = Move {
            conversation: c,
            previous: markers(13, 1, 1),
            now: markers(13, 5, 3),
        };
        assert_eq!(
            r.audience(&m),
            Audience::Senders(vec![UserId(11), UserId(10), UserId(12)])
        );
        // Only its own message in range: nobody else to tell.
        let own = Move {
            conversation: c,
            previous: markers(13, 4, 4),
            now: markers(13, 5, 5),
        };
        assert_eq!(r.audience(&own), Audience::Senders(vec![]));
    }

    #[test]
    fn a_range_older_than_the_memory_goes_to_everyone() {
        let c = ConversationId(1);
        let mut r = Receipts::default();
        for seq in 1..=(RECENT as u64 + 10) {
            r.message(c, Seq(seq), Some(UserId(1)));
        }
        let old = Move {
            conversation: c,
            previous: markers(2, 0, 0),
            now: markers(2, 20, 0),
        };
        assert_eq!(r.audience(&old), Audience::Everyone);
        let unknown = Move {
            conversation: ConversationId(9),
            previous: markers(2, 0, 0),
            now: markers(2, 1, 0),
        };
        assert_eq!(r.audience(&unknown), Audience::Everyone);
    }

    #[test]
    fn moves_of_one_member_merge_until_taken() {
        let c = ConversationId(1);
        let mut r = Receipts::default();
        for n in 1..=1000 {
            r.moved(c, markers(5, n - 1, 0), markers(5, n, 0));
        }
        r.moved(c, markers(6, 0, 0), markers(6, 3, 3));
        let mut moves = r.take();
        moves.sort_by_key(|m| m.now.user);
        assert_eq!(moves.len(), 2);
        assert_eq!(moves[0].previous, markers(5, 0, 0));
        assert_eq!(moves[0].now, markers(5, 1000, 0));
        assert!(!r.has_pending());
    }
}
