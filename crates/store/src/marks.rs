//! Delivery and read markers on their way to the writer.
//!
//! Every member's client confirms each message it gets (`received`) and each one the person
//! sees (`read`); in a busy group that is one report per member per message. The markers are
//! cumulative, so only the newest value per member and conversation matters: reports are
//! merged here, in memory, and the writer takes everything merged so far once per batch. A
//! burst of reports then costs one row update, however long the burst, and the queue to the
//! writer carries one wake-up instead of one command per report.

use std::collections::HashMap;
use std::sync::Mutex;

use chatgroup_protocol::{ConversationId, Seq, UserId};

/// One member's reported markers, merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reported {
    pub(crate) delivered: Seq,
    pub(crate) read: Seq,
    /// The tag of the connection that reported last, for a refusal.
    pub(crate) tag: u64,
}

/// Reports not yet taken by the writer.
pub(crate) type Pending = HashMap<(ConversationId, UserId), Reported>;

/// Where reports wait for the writer.
#[derive(Debug, Default)]
pub(crate) struct Board {
    pending: Mutex<Pending>,
}

impl Board {
    /// Merges a report; `true` if the board was empty, so the writer needs waking.
    pub(crate) fn note(
        &self,
        conversation: ConversationId,
        user: UserId,
        delivered: Seq,
        read: Seq,
        tag: u64,
    ) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = pending.is_empty();
        pending
            .entry((conversation, user))
            .and_modify(|r| {
                r.delivered = r.delivered.max(delivered);
                r.read = r.read.max(read);
                r.tag = tag;
            })
            .or_insert(Reported {
                delivered,
                read,
                tag,
            });
        was_empty
    }

    /// Everything merged so far, leaving the board empty.
    pub(crate) fn take(&self) -> Pending {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *pending)
    }

    /// Puts back reports whose batch failed, so the next batch retries them.
    pub(crate) fn restore(&self, reports: Pending) {
        for ((conversation, user), r) in reports {
            self.note(conversation, user, r.delivered, r.read, r.tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_merge_to_the_newest_of_each_marker() {
        let board = Board::default();
        let (c, u) = (ConversationId(1), UserId(2));
        assert!(board.note(c, u, Seq(3), Seq(1), 7));
        assert!(!board.note(c, u, Seq(2), Seq(2), 8));
        assert!(!board.note(ConversationId(9), u, Seq(1), Seq(0), 8));
        let taken = board.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(
            taken[&(c, u)],
            Reported {
                delivered: Seq(3),
                read: Seq(2),
                tag: 8
            }
        );
        assert!(board.take().is_empty());
        board.restore(taken);
        assert_eq!(board.take().len(), 2);
    }
}
