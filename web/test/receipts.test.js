import { test } from "node:test";
import assert from "node:assert/strict";
import { Receipts } from "../js/receipts.js";
import { FakeTime, recorder } from "../testing/fakes.js";

const ME = 1;
const members = (...ids) => ids.map((id) => ({ id, username: `u${id}` }));
const marker = (user, delivered, read) => ({ user, delivered, read });

function setup() {
  const time = new FakeTime();
  const receipts = new Receipts({ me: ME, timers: time.timers, reportDelayMs: 300 });
  return { time, receipts };
}

test("direct chat: sending → sent → delivered → read", () => {
  const { receipts } = setup();
  receipts.loadConversation({ id: 3, members: members(1, 2), lastSeq: 10, unread: 0, markers: [marker(1, 10, 10), marker(2, 9, 8)] });
  assert.equal(receipts.ticks({ conversation: 3, pending: true }).state, "sending");
  // Older messages, from the markers in ready.
  assert.equal(receipts.ticks({ conversation: 3, seq: 8 }).state, "read");
  assert.equal(receipts.ticks({ conversation: 3, seq: 9 }).state, "delivered");
  assert.equal(receipts.ticks({ conversation: 3, seq: 10 }).state, "sent");
  const own = { conversation: 3, seq: 11, sender: ME };
  receipts.noteMessage(own);
  assert.equal(receipts.ticks(own).state, "sent");
  receipts.applyReceipt({ conversation: 3, user: 2, delivered: 11, read: 8 });
  assert.equal(receipts.ticks(own).state, "delivered");
  receipts.applyReceipt({ conversation: 3, user: 2, delivered: 11, read: 11 });
  assert.deepEqual(receipts.ticks(own), { state: "read", deliveredTo: 1, readBy: 1, of: 1 });
  assert.equal(receipts.ticks({ conversation: 3, seq: 9, failed: "not_member" }).state, "failed");
});

test("group: delivered and read only when every other member is; counts in between", () => {
  const { receipts } = setup();
  receipts.loadConversation({
    id: 5,
    members: members(1, 2, 3, 4),
    lastSeq: 20,
    unread: 0,
    markers: [marker(1, 20, 20), marker(2, 20, 20), marker(3, 20, 19), marker(4, 18, 18)],
  });
  const own = { conversation: 5, seq: 20 };
  assert.deepEqual(receipts.ticks(own), { state: "sent", deliveredTo: 2, readBy: 1, of: 3 });
  assert.equal(Receipts.describe(receipts.ticks(own)), "read by 1 of 3");
  receipts.applyReceipt({ conversation: 5, user: 4, delivered: 20, read: 18 });
  assert.deepEqual(receipts.ticks(own), { state: "delivered", deliveredTo: 3, readBy: 1, of: 3 });
  receipts.applyReceipt({ conversation: 5, user: 3, delivered: 20, read: 20 });
  assert.equal(Receipts.describe(receipts.ticks(own)), "read by 2 of 3");
  receipts.applyReceipt({ conversation: 5, user: 4, delivered: 20, read: 20 });
  assert.equal(Receipts.describe(receipts.ticks(own)), "read");
  const partlyDelivered = { state: "sent", deliveredTo: 1, readBy: 0, of: 3 };
  assert.equal(Receipts.describe(partlyDelivered), "delivered to 1 of 3");
});

test("markers never move back (a stale receipt or ready after a newer one)", () => {
  const { receipts } = setup();
  receipts.loadConversation({ id: 3, members: members(1, 2), lastSeq: 10, unread: 0, markers: [marker(2, 10, 10)] });
  receipts.applyReceipt({ conversation: 3, user: 2, delivered: 4, read: 3 });
  receipts.loadConversation({ id: 3, members: members(1, 2), lastSeq: 10, markers: [marker(2, 6, 6)] });
  assert.equal(receipts.ticks({ conversation: 3, seq: 10 }).state, "read");
});

test("unread follows the own read marker, counting only others' messages", () => {
  const { receipts } = setup();
  receipts.loadConversation({ id: 3, members: members(1, 2), lastSeq: 10, unread: 4, markers: [marker(1, 10, 6), marker(2, 10, 10)] });
  assert.equal(receipts.unread(3), 4);
  receipts.noteMessage({ conversation: 3, seq: 11, sender: 2 });
  receipts.noteMessage({ conversation: 3, seq: 12, sender: ME }); // own: never unread
  receipts.noteMessage({ conversation: 3, seq: 13, sender: 2 });
  receipts.noteMessage({ conversation: 3, seq: 13, sender: 2 }); // replayed again
  assert.equal(receipts.unread(3), 6);
  // Read on another device up to 11: the receipt about our own user clears those here too.
  receipts.applyReceipt({ conversation: 3, user: ME, delivered: 13, read: 11 });
  assert.equal(receipts.unread(3), 1);
  receipts.markRead(3, 13);
  assert.equal(receipts.unread(3), 0);
});

test("unread from ready is the server's count, and shrinks as the marker moves through it", () => {
  const { receipts } = setup();
  // 10 messages after the marker, 3 of them own: the server says 7.
  receipts.loadConversation({ id: 3, members: members(1, 2), lastSeq: 20, unread: 7, markers: [marker(1, 20, 10)] });
  assert.equal(receipts.unread(3), 7);
  receipts.applyReceipt({ conversation: 3, user: ME, delivered: 20, read: 18 });
  assert.ok(receipts.unread(3) <= 2, "never more than what is left after the marker");
  receipts.applyReceipt({ conversation: 3, user: ME, delivered: 20, read: 20 });
  assert.equal(receipts.unread(3), 0);
});

test("received/read reports are coalesced: one per conversation, on a short timer", () => {
  const { time, receipts } = setup();
  receipts.loadConversation({ id: 3, members: members(1, 2), lastSeq: 10, unread: 0, markers: [marker(1, 10, 10)] });
  receipts.loadConversation({ id: 4, members: members(1, 3), lastSeq: 5, unread: 0, markers: [marker(1, 5, 5)] });
  const { frames, send } = recorder();
  receipts.attach(send);
  for (let seq = 11; seq <= 40; seq++) receipts.noteMessage({ conversation: 3, seq, sender: 2 });
  receipts.noteMessage({ conversation: 4, seq: 6, sender: 3 });
  assert.deepEqual(frames, []);
  assert.equal(time.timerCount, 2, "one timer per conversation");
  time.advance(300);
  assert.deepEqual(frames, [
    { type: "received", conversation: 3, seq: 40 },
    { type: "received", conversation: 4, seq: 6 },
  ]);
  // Read implies received: only `read` goes out when it covers everything.
  frames.length = 0;
  receipts.noteMessage({ conversation: 3, seq: 41, sender: 2 });
  receipts.markRead(3, 41);
  time.advance(300);
  assert.deepEqual(frames, [{ type: "read", conversation: 3, seq: 41 }]);
  // Nothing is re-sent for what the server already has.
  frames.length = 0;
  receipts.markRead(3, 30);
  receipts.markReceived(3, 41);
  time.advance(1000);
  assert.deepEqual(frames, []);
});

test("reports made offline go out after attach; what another device reported is skipped", () => {
  const { time, receipts } = setup();
  receipts.loadConversation({ id: 3, members: members(1, 2), lastSeq: 10, unread: 0, markers: [marker(1, 5, 5)] });
  receipts.markRead(3, 8);
  receipts.noteMessage({ conversation: 3, seq: 11, sender: 2 });
  time.advance(1000);
  const { frames, send } = recorder();
  receipts.attach(send);
  time.advance(300);
  assert.deepEqual(frames, [
    { type: "read", conversation: 3, seq: 8 },
    { type: "received", conversation: 3, seq: 11 },
  ]);
  frames.length = 0;
  receipts.markRead(3, 11);
  receipts.applyReceipt({ conversation: 3, user: ME, delivered: 11, read: 11 }); // the other device was first
  time.advance(300);
  assert.deepEqual(frames, []);
});

test("a marker update for the user that arrives before a pending read goes out does not swallow it", () => {
  const { time, receipts } = setup();
  const sent = [];
  receipts.attach((m) => (sent.push(m), true));
  receipts.loadConversation({ id: 3, members: members(1, 2), lastSeq: 2, unread: 0, markers: [marker(1, 2, 2), marker(2, 2, 2)] });
  receipts.noteMessage({ conversation: 3, seq: 3, sender: 2 });
  receipts.markRead(3, 3);
  // Before the report's timer fires, the server echoes an older marker of the user's (from
  // another device's report, or a fresh conversation list).
  receipts.applyReceipt({ conversation: 3, user: ME, delivered: 2, read: 2 });
  receipts.loadConversation({ id: 3, members: members(1, 2), lastSeq: 3, markers: [marker(1, 2, 2), marker(2, 2, 2)] });
  time.advance(300);
  assert.deepEqual(sent, [{ type: "read", conversation: 3, seq: 3 }]);
  assert.equal(receipts.unread(3), 0);
});
