import { test } from "node:test";
import assert from "node:assert/strict";
import { Timeline, Timelines } from "../js/timeline.js";

const ME = 1;
const msg = (seq, extra = {}) => ({ conversation: 3, id: 100 + seq, seq, ts: seq, sender: 2, kind: "text", body: `#${seq}`, ...extra });
const seqs = (t) => t.messages().map((m) => m.seq ?? m.localId);

test("messages are ordered by seq whatever order they arrive in", () => {
  const t = new Timeline(3, ME);
  // Live ones can overtake the replay (docs/protocol.md, Sync).
  t.add(msg(50));
  t.addAll([msg(47), msg(48), msg(49)]);
  t.add(msg(51));
  t.add(msg(46));
  assert.deepEqual(seqs(t), [46, 47, 48, 49, 50, 51]);
});

test("the same message from live delivery, sync and history is held once", () => {
  const t = new Timeline(3, ME);
  assert.ok(t.add(msg(5)));
  assert.equal(t.add(msg(5)), null);
  assert.deepEqual(t.addAll([msg(4), msg(5), msg(6)]).map((m) => m.seq), [4, 6]);
  assert.equal(t.prependHistory([msg(2), msg(3), msg(4)], true), 2);
  assert.deepEqual(seqs(t), [2, 3, 4, 5, 6]);
});

test("history pages are prepended without duplicates, and say when to stop", () => {
  const t = new Timeline(3, ME);
  assert.deepEqual(t.historyRequest(50, "h0"), { type: "history", conversation: 3, limit: 50, ref: "h0" });
  t.addAll([msg(101), msg(102)]);
  assert.deepEqual(t.historyRequest(2, "h1"), { type: "history", conversation: 3, before: 101, limit: 2, ref: "h1" });
  assert.equal(t.prependHistory([msg(99), msg(100)], true), 2);
  assert.equal(t.historyRequest(2).before, 99);
  // An overlapping page (e.g. re-asked after a reconnect) adds only what is new.
  assert.equal(t.prependHistory([msg(97), msg(98), msg(99)], false), 2);
  assert.deepEqual(seqs(t), [97, 98, 99, 100, 101, 102]);
  assert.equal(t.historyRequest(2), null, "hasMore false: nothing older");
});

test("an own pending message becomes the acked one, once, in seq order", () => {
  const t = new Timeline(3, ME);
  t.add(msg(7));
  t.addPending({ localId: "m-1", body: "hi", createdAt: 5 });
  assert.deepEqual(seqs(t), [7, "m-1"]);
  assert.equal(t.messages()[1].pending, true);
  t.add(msg(8)); // someone else's, committed first
  const confirmed = t.applyAck({ localId: "m-1", id: 209, seq: 9, ts: 6 });
  assert.equal(confirmed.seq, 9);
  assert.equal(confirmed.sender, ME);
  assert.equal(confirmed.body, "hi");
  assert.equal(confirmed.pending, undefined);
  assert.deepEqual(seqs(t), [7, 8, 9]);
  // The duplicate ack of a re-send, and the same message replayed by sync: still once.
  assert.equal(t.applyAck({ localId: "m-1", id: 209, seq: 9, ts: 6, duplicate: true }), null);
  assert.equal(t.add(msg(9, { id: 209, sender: ME, localId: "m-1", body: "hi" })), null);
  assert.equal(t.messages().length, 3);
});

test("an own message confirmed by another tab's new_message replaces the pending one", () => {
  const t = new Timeline(3, ME);
  t.addPending({ localId: "m-1", body: "hi" });
  t.add(msg(4, { sender: ME, localId: "m-1", body: "hi" }));
  assert.deepEqual(seqs(t), [4]);
  // Re-adding the outbox entry after that (a reload racing the replay) does not resurrect it.
  t.addPending({ localId: "m-1", body: "hi" });
  assert.deepEqual(seqs(t), [4]);
});

test("someone else's message with the same localId is not confused with ours", () => {
  const t = new Timeline(3, ME);
  t.addPending({ localId: "m-1", body: "mine" });
  t.add(msg(4, { sender: 2, localId: "m-1" }));
  assert.deepEqual(seqs(t), [4, "m-1"]);
});

test("failed and discarded pending messages", () => {
  const t = new Timeline(3, ME);
  t.addPending({ localId: "m-1", body: "a" });
  t.addPending({ localId: "m-2", body: "b", state: "failed", error: "not_member" });
  t.markFailed("m-1", "body_too_long");
  assert.deepEqual(t.messages().map((m) => m.failed), ["body_too_long", "not_member"]);
  t.removePending("m-1");
  assert.deepEqual(seqs(t), ["m-2"]);
});

test("timelines are per conversation", () => {
  const all = new Timelines(ME);
  all.get(3).add(msg(1));
  all.get(4).add({ ...msg(1), conversation: 4, id: 999 });
  assert.equal(all.get(3).messages().length, 1);
  assert.equal(all.get(4).messages().length, 1);
  all.drop(3);
  assert.equal(all.get(3).messages().length, 0);
});

test("an id or a seq already held is a duplicate on its own", () => {
  const t = new Timeline(3, ME);
  t.add(msg(5));
  // Same id under another seq, and another id under the same seq: neither can happen within
  // one database, so neither may show a second row.
  assert.equal(t.add(msg(6, { id: 105 })), null);
  assert.equal(t.add(msg(5, { id: 999 })), null);
  assert.deepEqual(seqs(t), [5]);
});
