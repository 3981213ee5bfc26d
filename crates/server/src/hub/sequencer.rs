//! Puts a conversation's events back in `seq` order when they come from several nodes.
//!
//! With one node the store hands the hub its commits in commit order, which is `seq` order in
//! every conversation. With several nodes (`--bus redis`) each node's own commits still come
//! in order, but another node's arrive over the bus a little later, interleaved with ours, and
//! any of them may be lost (the bus is a fast path, not a log). So the hub passes every
//! conversation event through this sequencer first, and the rest of the hub sees, per
//! conversation, exactly what one node would: messages `delivered + 1`, `delivered + 2`, …
//! with no gap and no duplicate, and each other event right after the message it follows.
//!
//! Per conversation (a *lane*):
//!
//! - A message with `seq == delivered + 1` is emitted at once, then every message and event
//!   that was waiting for it.
//! - A later one waits, and the lane is *stalled*. A lane stalled for longer than the bound
//!   asks for a fill ([`Sequencer::due`]): the hub reads the messages after `delivered` from
//!   the store (the truth: its seqs have no gaps) and offers them like any other
//!   ([`Sequencer::filled`]).
//! - A message with `seq <= delivered`, or one already waiting, is a duplicate and dropped.
//! - Other events carry the seq they follow ([`Position::After`]): a member removed after the
//!   system message saying so, a receipt after the messages it marks. They wait until that
//!   seq is emitted. `MembersAdded` comes *before* its system message: it follows the seq
//!   before it, and opens the lane there if there is none ([`Position::Opens`]).
//! - The first message of a conversation the hub has no lane for opens one right before it:
//!   the hub delivered nothing of it, so nothing before can be missing *for live delivery*;
//!   a connection that synced meanwhile is checked against the lane's start at the end of
//!   its sync (see `hub::chat`), which is where an earlier message still in flight would
//!   otherwise be lost.
//!
//! Pure data: no clock of its own (callers pass `now`), no I/O, so it is tested against
//! arbitrary interleavings, losses and duplicates below.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chatgroup_protocol::{ConversationId, Seq};

/// Where an event belongs in its conversation's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// A message: emitted as `seq`, once, after `seq - 1`.
    Message(Seq),
    /// Emitted once message `seq` has been (at once if it has, or if the conversation has
    /// no lane).
    After(Seq),
    /// Like `After`, but opens the lane at `seq` when there is none (`MembersAdded`: the
    /// new members' connections start receiving right after it).
    Opens(Seq),
    /// Not ordered: emitted at once.
    Now,
}

/// One conversation's state.
#[derive(Debug)]
struct Lane<T> {
    /// The last message emitted (or the lane's start, before any).
    delivered: Seq,
    /// The seq the lane started after: it emits nothing at or before it.
    start: Seq,
    /// Messages ahead of `delivered + 1`.
    waiting: BTreeMap<Seq, T>,
    /// Events waiting for the message they follow, in arrival order per seq.
    anchored: BTreeMap<Seq, Vec<T>>,
    /// The newest seq known to exist (offered, or announced by [`Sequencer::exists`]).
    known: Seq,
    /// Since when the lane has been stalled.
    stalled_since: Option<Instant>,
    /// A fill is in flight.
    filling: bool,
}

impl<T> Lane<T> {
    fn new(start: Seq) -> Self {
        Self {
            delivered: start,
            start,
            waiting: BTreeMap::new(),
            anchored: BTreeMap::new(),
            known: start,
            stalled_since: None,
            filling: false,
        }
    }

    fn stalled(&self) -> bool {
        self.known > self.delivered || !self.waiting.is_empty() || !self.anchored.is_empty()
    }

    /// Emits whatever can go now, in order.
    fn advance(&mut self, conversation: ConversationId, out: &mut Vec<(ConversationId, T)>) {
        loop {
            while let Some(entry) = self.anchored.first_entry() {
                if *entry.key() > self.delivered {
                    break;
                }
                out.extend(entry.remove().into_iter().map(|e| (conversation, e)));
            }
            let next = Seq(self.delivered.0 + 1);
            match self.waiting.remove(&next) {
                Some(item) => {
                    self.delivered = next;
                    out.push((conversation, item));
                }
                None => break,
            }
        }
        self.known = self.known.max(self.delivered);
    }

    /// Emits everything pending in order, jumping over what is missing.
    fn release(&mut self, conversation: ConversationId, out: &mut Vec<(ConversationId, T)>) {
        loop {
            self.advance(conversation, out);
            let next_message = self.waiting.keys().next().copied();
            let next_event = self.anchored.keys().next().copied();
            let target = match (next_message, next_event) {
                (None, None) => break,
                // A message at `m` follows `m - 1`: jump there so it is emitted next.
                (Some(m), e) => e.map_or(Seq(m.0 - 1), |e| e.min(Seq(m.0 - 1))),
                (None, Some(e)) => e,
            };
            self.delivered = self.delivered.max(target);
        }
        self.known = self.delivered;
    }
}

/// Per-conversation ordering of events from several sources. `T` is what is ordered (the
/// hub's committed events; plain numbers in the tests).
#[derive(Debug)]
pub(crate) struct Sequencer<T> {
    lanes: HashMap<ConversationId, Lane<T>>,
    /// The lanes with `stalled_since` set: the hub's tick looks at these only, not at every
    /// conversation it ever saw.
    stalled: HashSet<ConversationId>,
    /// How long a lane may stay stalled before it asks for a fill.
    bound: Duration,
}

impl<T> Sequencer<T> {
    /// A sequencer that asks for a fill after a lane was stalled for `bound`.
    pub(crate) fn new(bound: Duration) -> Self {
        Self {
            lanes: HashMap::new(),
            stalled: HashSet::new(),
            bound,
        }
    }

    /// Takes one event; what can be emitted now is appended to `out`, in order. A message
    /// already emitted or already waiting is a duplicate: it is handed back.
    pub(crate) fn offer(
        &mut self,
        conversation: ConversationId,
        position: Position,
        item: T,
        now: Instant,
        out: &mut Vec<(ConversationId, T)>,
    ) -> Option<T> {
        let lane = match position {
            Position::Now => {
                out.push((conversation, item));
                return None;
            }
            Position::Message(seq) => self
                .lanes
                .entry(conversation)
                .or_insert_with(|| Lane::new(Seq(seq.0.saturating_sub(1)))),
            Position::Opens(seq) => self
                .lanes
                .entry(conversation)
                .or_insert_with(|| Lane::new(seq)),
            Position::After(_) => match self.lanes.get_mut(&conversation) {
                Some(lane) => lane,
                None => {
                    out.push((conversation, item));
                    return None;
                }
            },
        };
        let offered = match position {
            Position::Message(seq) => {
                if seq <= lane.delivered || lane.waiting.contains_key(&seq) {
                    Some(item)
                } else {
                    lane.waiting.insert(seq, item);
                    lane.known = lane.known.max(seq);
                    None
                }
            }
            Position::After(seq) | Position::Opens(seq) => {
                if seq <= lane.delivered {
                    out.push((conversation, item));
                } else {
                    lane.anchored.entry(seq).or_default().push(item);
                    lane.known = lane.known.max(seq);
                }
                None
            }
            Position::Now => None,
        };
        lane.advance(conversation, out);
        Self::restall(lane, now);
        self.track(conversation);
        offered
    }

    /// Message `seq` of `conversation` exists (a replay read it from the store). A lane
    /// that has not reached it is stalled until it does; a conversation without a lane gets
    /// one starting right after `seq` (the replay covered everything up to it).
    pub(crate) fn exists(&mut self, conversation: ConversationId, seq: Seq, now: Instant) {
        let lane = self
            .lanes
            .entry(conversation)
            .or_insert_with(|| Lane::new(seq));
        lane.known = lane.known.max(seq);
        Self::restall(lane, now);
        self.track(conversation);
    }

    /// The last message emitted for `conversation` (its lane's start before any), or `None`
    /// if it has no lane.
    pub(crate) fn delivered(&self, conversation: ConversationId) -> Option<Seq> {
        self.lanes.get(&conversation).map(|l| l.delivered)
    }

    /// The seq `conversation`'s lane started after (`None`: no lane).
    pub(crate) fn start(&self, conversation: ConversationId) -> Option<Seq> {
        self.lanes.get(&conversation).map(|l| l.start)
    }

    /// Lanes stalled for longer than the bound with no fill in flight: each is returned as
    /// `(conversation, delivered)`, to be filled from the store with the messages after
    /// `delivered`, and counts as filling until [`Self::filled`] or [`Self::fill_failed`].
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(ConversationId, Seq)> {
        let bound = self.bound;
        let mut due = Vec::new();
        for id in &self.stalled {
            let Some(l) = self.lanes.get_mut(id) else {
                continue;
            };
            if !l.filling
                && l.stalled_since
                    .is_some_and(|at| now.saturating_duration_since(at) >= bound)
            {
                l.filling = true;
                due.push((*id, l.delivered));
            }
        }
        due
    }

    /// Whether some lane is stalled.
    #[cfg(test)]
    pub(crate) fn is_stalled(&self) -> bool {
        !self.stalled.is_empty()
    }

    /// The answer to a fill: the store's messages after the `delivered` it was asked for,
    /// ascending, and whether that was all of them (`complete`: fewer than the limit). When
    /// the store has nothing more, whatever still waits for a message that does not exist is
    /// released (an event anchored past the end, which the store says cannot be).
    pub(crate) fn filled(
        &mut self,
        conversation: ConversationId,
        messages: Vec<(Seq, T)>,
        complete: bool,
        now: Instant,
        out: &mut Vec<(ConversationId, T)>,
    ) {
        for (seq, item) in messages {
            self.offer(conversation, Position::Message(seq), item, now, out);
        }
        let Some(lane) = self.lanes.get_mut(&conversation) else {
            return;
        };
        lane.filling = false;
        if complete && lane.stalled() && lane.waiting.is_empty() {
            lane.release(conversation, out);
        }
        if !complete {
            // More to read: ask again on the next tick rather than after another bound.
            lane.stalled_since = Some(now.checked_sub(self.bound).unwrap_or(now));
        } else {
            Self::restall(lane, now);
        }
        self.track(conversation);
    }

    /// A fill could not be made (the store failed, or nobody here may read it): try again
    /// after another bound.
    pub(crate) fn fill_failed(&mut self, conversation: ConversationId, now: Instant) {
        if let Some(lane) = self.lanes.get_mut(&conversation) {
            lane.filling = false;
            // Even a lane with nothing known missing: it may have been suspected of a lost
            // tail, and still is.
            lane.stalled_since = Some(now);
        }
        self.track(conversation);
    }

    /// Emits everything waiting in `conversation`, jumping over what is missing: for a
    /// conversation nobody on this node receives, where a gap harms no one and a fill has
    /// nobody to read it as.
    pub(crate) fn skip(
        &mut self,
        conversation: ConversationId,
        out: &mut Vec<(ConversationId, T)>,
    ) {
        if let Some(lane) = self.lanes.get_mut(&conversation) {
            lane.release(conversation, out);
            lane.filling = false;
            lane.stalled_since = None;
        }
        self.track(conversation);
    }

    /// Marks every lane stalled as of long ago, so the next [`Self::due`] fills them all:
    /// after the bus was lost, anything may have been missed, even at the end of a lane
    /// where no later message would reveal the gap.
    pub(crate) fn suspect_all(&mut self, now: Instant) {
        let long_ago = now.checked_sub(self.bound).unwrap_or(now);
        for lane in self.lanes.values_mut() {
            lane.stalled_since = Some(lane.stalled_since.map_or(long_ago, |s| s.min(long_ago)));
        }
        self.stalled.extend(self.lanes.keys().copied());
    }

    /// Keeps `stalled` in step with `conversation`'s lane.
    fn track(&mut self, conversation: ConversationId) {
        if self
            .lanes
            .get(&conversation)
            .is_some_and(|l| l.stalled_since.is_some())
        {
            self.stalled.insert(conversation);
        } else {
            self.stalled.remove(&conversation);
        }
    }

    fn restall(lane: &mut Lane<T>, now: Instant) {
        if lane.stalled() {
            lane.stalled_since.get_or_insert(now);
        } else {
            lane.stalled_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const C: ConversationId = ConversationId(7);
    const BOUND: Duration = Duration::from_millis(200);

    /// What the tests order: a message's seq, or an event anchored after a seq.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Item {
        Message(u64),
        Event(u64),
    }

    fn messages(out: &[(ConversationId, Item)]) -> Vec<u64> {
        out.iter()
            .filter_map(|(_, i)| match i {
                Item::Message(s) => Some(*s),
                Item::Event(_) => None,
            })
            .collect()
    }

    fn offer(
        s: &mut Sequencer<Item>,
        seq: u64,
        now: Instant,
        out: &mut Vec<(ConversationId, Item)>,
    ) {
        s.offer(C, Position::Message(Seq(seq)), Item::Message(seq), now, out);
    }

    #[test]
    fn in_order_messages_go_straight_through() {
        let mut s = Sequencer::new(BOUND);
        let mut out = Vec::new();
        let now = Instant::now();
        for seq in 5..=9 {
            offer(&mut s, seq, now, &mut out);
        }
        assert_eq!(messages(&out), vec![5, 6, 7, 8, 9]);
        assert_eq!(s.delivered(C), Some(Seq(9)));
        assert_eq!(s.start(C), Some(Seq(4)));
        assert!(!s.is_stalled());
    }

    #[test]
    fn a_later_message_waits_for_the_one_before_and_duplicates_are_dropped() {
        let mut s = Sequencer::new(BOUND);
        let mut out = Vec::new();
        let now = Instant::now();
        offer(&mut s, 1, now, &mut out);
        offer(&mut s, 3, now, &mut out);
        assert_eq!(
            s.offer(
                C,
                Position::Message(Seq(3)),
                Item::Message(3),
                now,
                &mut out
            ),
            Some(Item::Message(3))
        );
        assert_eq!(messages(&out), vec![1]);
        assert!(s.is_stalled());
        assert!(s.due(now + BOUND / 2).is_empty(), "held briefly");
        offer(&mut s, 2, now, &mut out);
        assert_eq!(messages(&out), vec![1, 2, 3]);
        assert_eq!(
            s.offer(
                C,
                Position::Message(Seq(2)),
                Item::Message(2),
                now,
                &mut out
            ),
            Some(Item::Message(2))
        );
        assert!(!s.is_stalled());
    }

    #[test]
    fn a_gap_that_does_not_close_is_filled_from_the_store() {
        let mut s = Sequencer::new(BOUND);
        let mut out = Vec::new();
        let t0 = Instant::now();
        offer(&mut s, 1, t0, &mut out);
        offer(&mut s, 4, t0, &mut out);
        assert_eq!(s.due(t0 + BOUND), vec![(C, Seq(1))]);
        assert!(s.due(t0 + BOUND * 2).is_empty(), "one fill at a time");
        let store = vec![2, 3, 4]
            .into_iter()
            .map(|n| (Seq(n), Item::Message(n)));
        s.filled(C, store.collect(), true, t0 + BOUND, &mut out);
        assert_eq!(messages(&out), vec![1, 2, 3, 4]);
        assert!(!s.is_stalled());
    }

    #[test]
    fn a_failed_fill_is_tried_again_after_another_bound() {
        let mut s = Sequencer::new(BOUND);
        let mut out = Vec::new();
        let t0 = Instant::now();
        offer(&mut s, 1, t0, &mut out);
        offer(&mut s, 3, t0, &mut out);
        assert_eq!(s.due(t0 + BOUND).len(), 1);
        s.fill_failed(C, t0 + BOUND);
        assert!(s.due(t0 + BOUND + BOUND / 2).is_empty());
        assert_eq!(s.due(t0 + BOUND * 2).len(), 1);
    }

    #[test]
    fn events_follow_their_message_and_members_added_opens_a_lane() {
        let mut s = Sequencer::new(BOUND);
        let mut out = Vec::new();
        let now = Instant::now();
        // MembersAdded before the system message 6: opens the lane at 5.
        s.offer(C, Position::Opens(Seq(5)), Item::Event(5), now, &mut out);
        offer(&mut s, 7, now, &mut out);
        // A member removed after 7, which is still waiting for 6.
        s.offer(C, Position::After(Seq(7)), Item::Event(7), now, &mut out);
        assert_eq!(
            out.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![Item::Event(5)]
        );
        offer(&mut s, 6, now, &mut out);
        let order: Vec<Item> = out.iter().map(|x| x.1).collect();
        assert_eq!(
            order,
            vec![
                Item::Event(5),
                Item::Message(6),
                Item::Message(7),
                Item::Event(7)
            ]
        );
        // After an old seq, or in a conversation without a lane: at once.
        s.offer(C, Position::After(Seq(2)), Item::Event(2), now, &mut out);
        let other = ConversationId(8);
        s.offer(
            other,
            Position::After(Seq(9)),
            Item::Event(9),
            now,
            &mut out,
        );
        assert_eq!(out.len(), 6);
        assert_eq!(s.delivered(other), None);
    }

    #[test]
    fn a_replay_that_read_further_stalls_the_lane_until_the_hub_catches_up() {
        let mut s = Sequencer::new(BOUND);
        let mut out = Vec::new();
        let t0 = Instant::now();
        s.exists(C, Seq(10), t0);
        assert_eq!(s.delivered(C), Some(Seq(10)), "no lane: it starts there");
        offer(&mut s, 10, t0, &mut out);
        assert!(out.is_empty(), "the replay had it");
        s.exists(C, Seq(12), t0);
        assert!(s.is_stalled());
        offer(&mut s, 11, t0, &mut out);
        assert_eq!(s.due(t0 + BOUND), vec![(C, Seq(11))]);
        s.filled(
            C,
            vec![(Seq(12), Item::Message(12))],
            true,
            t0 + BOUND,
            &mut out,
        );
        assert_eq!(messages(&out), vec![11, 12]);
        assert!(!s.is_stalled());
    }

    #[test]
    fn skipping_emits_what_waits_in_order_over_the_gaps() {
        let mut s = Sequencer::new(BOUND);
        let mut out = Vec::new();
        let now = Instant::now();
        offer(&mut s, 1, now, &mut out);
        offer(&mut s, 5, now, &mut out);
        s.offer(C, Position::After(Seq(3)), Item::Event(3), now, &mut out);
        offer(&mut s, 4, now, &mut out);
        s.skip(C, &mut out);
        let order: Vec<Item> = out.iter().map(|x| x.1).collect();
        assert_eq!(
            order,
            vec![
                Item::Message(1),
                Item::Event(3),
                Item::Message(4),
                Item::Message(5)
            ]
        );
        assert!(!s.is_stalled());
        offer(&mut s, 6, now, &mut out);
        assert_eq!(messages(&out).last(), Some(&6));
    }

    #[test]
    fn suspecting_every_lane_fills_a_lost_tail() {
        let mut s = Sequencer::new(BOUND);
        let mut out = Vec::new();
        let t0 = Instant::now();
        offer(&mut s, 1, t0, &mut out);
        assert!(!s.is_stalled());
        s.suspect_all(t0);
        assert_eq!(s.due(t0), vec![(C, Seq(1))]);
        s.filled(C, vec![(Seq(2), Item::Message(2))], true, t0, &mut out);
        assert_eq!(messages(&out), vec![1, 2]);
        assert!(!s.is_stalled());
    }

    /// One simulated run: seqs `1..=n` of one conversation, each arriving `copies` times
    /// (0: lost on the bus) in the order of `keys`, events anchored after some of them, and
    /// a store that answers fills with the truth, `limit` at a time, failing some.
    fn simulate(
        n: u64,
        arrivals: &[(u64, u8, u16)],
        anchors: &[(u64, u16)],
        limit: usize,
        fail_every: usize,
        from_zero: bool,
    ) -> Vec<Item> {
        let t0 = Instant::now();
        let mut s = Sequencer::new(BOUND);
        let mut out = Vec::new();
        if from_zero {
            s.exists(C, Seq(0), t0);
        }
        // (arrival time in ms, item)
        let mut schedule: Vec<(u16, Item)> = Vec::new();
        for &(seq, copies, at) in arrivals {
            for k in 0..copies {
                schedule.push((at.saturating_add(u16::from(k) * 37), Item::Message(seq)));
            }
        }
        for &(after, at) in anchors {
            schedule.push((at, Item::Event(after)));
        }
        schedule.sort_by_key(|(at, _)| *at);
        let mut fills = 0usize;
        let mut serve = |s: &mut Sequencer<Item>, now: Instant, out: &mut Vec<_>| {
            for (conv, from) in s.due(now) {
                fills += 1;
                if fail_every > 0 && fills.is_multiple_of(fail_every) {
                    s.fill_failed(conv, now);
                    continue;
                }
                let batch: Vec<(Seq, Item)> = (from.0 + 1..=n)
                    .take(limit)
                    .map(|q| (Seq(q), Item::Message(q)))
                    .collect();
                let complete = batch.len() < limit;
                s.filled(conv, batch, complete, now, out);
            }
        };
        for (at, item) in schedule {
            let now = t0 + Duration::from_millis(u64::from(at));
            serve(&mut s, now, &mut out);
            let position = match item {
                Item::Message(q) => Position::Message(Seq(q)),
                Item::Event(q) => Position::After(Seq(q)),
            };
            s.offer(C, position, item, now, &mut out);
        }
        // The bus comes back (or a sync reads the end): every lane is suspect, even one whose
        // lost tail no later message revealed; time passes and every stall ends in a fill.
        let mut now = t0 + Duration::from_secs(70);
        s.suspect_all(now);
        for _ in 0..(n as usize + 10) * 4 {
            if !s.is_stalled() {
                break;
            }
            now += BOUND;
            serve(&mut s, now, &mut out);
        }
        assert!(!s.is_stalled(), "every stall ends");
        out.into_iter().map(|(_, i)| i).collect()
    }

    /// Each event comes after its message and before the next one.
    fn check_events(order: &[Item]) {
        let mut last = None::<u64>;
        for item in order {
            match *item {
                Item::Message(q) => last = Some(q),
                Item::Event(after) => {
                    if let Some(last) = last {
                        assert!(
                            after <= last,
                            "event after {after} emitted before it: {order:?}"
                        );
                    }
                }
            }
        }
    }

    /// Per seq: how many copies arrive (0: lost on the bus; mostly 1, some doubled or
    /// tripled) and when.
    fn arrivals(n: u64) -> impl Strategy<Value = Vec<(u64, u8, u16)>> {
        proptest::collection::vec((0u8..6, 0u16..2000), n as usize).prop_map(|v| {
            v.into_iter()
                .zip(1..)
                .map(|((c, at), seq)| {
                    let copies = match c {
                        0 => 0,
                        1..=3 => 1,
                        4 => 2,
                        _ => 3,
                    };
                    (seq, copies, at)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// From a known start (a sync set it), every message comes out exactly once, in
        /// order, whatever the interleaving, losses and duplicates; events right after
        /// theirs.
        #[test]
        fn every_message_once_in_order_from_a_known_start(
            (n, arrivals, anchors) in (1u64..60).prop_flat_map(|n| (
                Just(n),
                arrivals(n),
                proptest::collection::vec((1..=n, 0u16..2000), 0..8),
            )),
            limit in 1usize..8,
            // Every second to fourth fill fails (0: none does).
            fail_every in prop_oneof![Just(0usize), 2usize..5],
        ) {
            let order = simulate(n, &arrivals, &anchors, limit, fail_every, true);
            let got: Vec<u64> = order.iter().filter_map(|i| match i {
                Item::Message(q) => Some(*q),
                Item::Event(_) => None,
            }).collect();
            prop_assert_eq!(got, (1..=n).collect::<Vec<_>>());
            prop_assert_eq!(order.len(), n as usize + anchors.len(), "every event once");
            check_events(&order);
        }

        /// Without a known start the lane opens at the first arrival: what comes out is a
        /// gap-free run up to the newest, each once.
        #[test]
        fn a_lane_opened_by_an_arrival_is_gap_free_to_the_end(
            (n, arrivals) in (1u64..60).prop_flat_map(|n| (Just(n), arrivals(n))),
            limit in 1usize..8,
        ) {
            let order = simulate(n, &arrivals, &[], limit, 0, false);
            let got: Vec<u64> = order.iter().filter_map(|i| match i {
                Item::Message(q) => Some(*q),
                Item::Event(_) => None,
            }).collect();
            if arrivals.iter().any(|a| a.1 > 0) {
                let first = got[0];
                prop_assert_eq!(got, (first..=n).collect::<Vec<_>>());
            } else {
                prop_assert!(got.is_empty());
            }
        }
    }
}
