import { test } from "node:test";
import assert from "node:assert/strict";
import { Outbox } from "../js/outbox.js";
import { MemoryStorage } from "../js/storage.js";
import { FakeTime, recorder } from "../testing/fakes.js";

const ME = 1;

function setup(storage = new MemoryStorage(), extra = {}) {
  const time = new FakeTime();
  let n = 0;
  const outbox = new Outbox({
    storage,
    userId: ME,
    newId: () => `m-${++n}`,
    timers: time.timers,
    now: time.now,
    ...extra,
  });
  return { storage, time, outbox };
}

const sends = (frames) => frames.filter((f) => f.type === "send").map((f) => f.localId);

test("a message is in storage before it is sent", () => {
  const { storage, outbox } = setup();
  let storedAtSend = null;
  outbox.attach((frame) => {
    storedAtSend = JSON.parse(storage.getItem("chatgroup.outbox.1"));
    assert.equal(frame.localId, "m-1");
    return true;
  });
  outbox.add(3, "hello");
  assert.equal(storedAtSend.length, 1);
  assert.equal(storedAtSend[0].body, "hello");
});

test("queued while offline, sent with its localId on attach, removed by the ack", () => {
  const { outbox } = setup();
  const a = outbox.add(3, "one");
  const b = outbox.add(3, "two");
  assert.equal(a.state, "pending");
  const { frames, send } = recorder();
  outbox.attach(send);
  assert.deepEqual(frames, [
    { type: "send", conversation: 3, localId: "m-1", body: "one" },
    { type: "send", conversation: 3, localId: "m-2", body: "two" },
  ]);
  assert.equal(outbox.handleAck({ type: "ack", conversation: 3, localId: a.localId, id: 9, seq: 4, ts: 1 }).body, "one");
  assert.deepEqual(outbox.entries().map((e) => e.localId), [b.localId]);
});

test("every reconnect re-sends what is unacknowledged, with the same localId", () => {
  const { outbox } = setup();
  outbox.add(3, "one");
  outbox.add(3, "two");
  const first = recorder();
  outbox.attach(first.send);
  outbox.handleAck({ localId: "m-1" });
  outbox.detach();
  const second = recorder();
  outbox.attach(second.send);
  assert.deepEqual(sends(second.frames), ["m-2"]);
  outbox.detach();
  const third = recorder();
  outbox.attach(third.send);
  assert.deepEqual(sends(third.frames), ["m-2"]);
});

test("a duplicate ack is harmless and changes nothing", () => {
  const { outbox } = setup();
  outbox.add(3, "one");
  outbox.add(3, "two");
  outbox.attach(recorder().send);
  assert.ok(outbox.handleAck({ localId: "m-1" }));
  assert.equal(outbox.handleAck({ localId: "m-1", duplicate: true }), null);
  assert.deepEqual(outbox.entries().map((e) => e.localId), ["m-2"]);
});

test("survives a reload: a new instance on the same storage re-sends, then forgets on ack", () => {
  const storage = new MemoryStorage();
  const before = setup(storage).outbox;
  before.add(3, "typed before the reload");
  before.add(4, "and another");
  // The page reloads before anything is acknowledged.
  const after = setup(storage).outbox;
  assert.deepEqual(after.entries().map((e) => e.body), ["typed before the reload", "and another"]);
  const { frames, send } = recorder();
  after.attach(send);
  assert.deepEqual(sends(frames), ["m-1", "m-2"]);
  after.handleAck({ localId: "m-1" });
  after.handleAck({ localId: "m-2" });
  assert.equal(storage.getItem("chatgroup.outbox.1"), null);
  assert.deepEqual(setup(storage).outbox.entries(), []);
});

test("a message committed before its ack was lost is settled by the replayed copy", () => {
  const { outbox } = setup();
  outbox.add(3, "one");
  // Another user's message with the same localId is not ours.
  assert.equal(outbox.handleMessage({ sender: 2, localId: "m-1", seq: 5 }, ME), null);
  assert.ok(outbox.handleMessage({ sender: ME, localId: "m-1", seq: 5 }, ME));
  const { frames, send } = recorder();
  outbox.attach(send);
  assert.deepEqual(frames, [], "nothing left to re-send");
});

test("final errors mark the message failed and stop re-sending it; retry and discard", () => {
  const { outbox } = setup();
  outbox.add(3, "x".repeat(5000));
  outbox.add(9, "to a conversation I left");
  outbox.add(3, "fine");
  outbox.attach(recorder().send);
  const tooLong = outbox.handleError({ type: "error", code: "body_too_long", ref: "m-1" });
  assert.equal(tooLong.final, true);
  assert.equal(tooLong.entry.state, "failed");
  assert.equal(outbox.handleError({ type: "error", code: "not_member", ref: "m-2" }).final, true);
  outbox.handleAck({ localId: "m-3" });
  outbox.detach();
  const again = recorder();
  outbox.attach(again.send);
  assert.deepEqual(again.frames, [], "failed entries are not re-sent");
  assert.deepEqual(outbox.entries().map((e) => [e.localId, e.state, e.error]), [
    ["m-1", "failed", "body_too_long"],
    ["m-2", "failed", "not_member"],
  ]);
  outbox.retry("m-2");
  assert.deepEqual(sends(again.frames), ["m-2"]);
  outbox.discard("m-1");
  assert.deepEqual(outbox.entries().map((e) => e.localId), ["m-2"]);
});

test("rate_limited re-sends the same localId after retryAfterMs, keeping the order", () => {
  const { time, outbox } = setup();
  outbox.add(3, "one");
  outbox.add(3, "two");
  const { frames, send } = recorder();
  outbox.attach(send);
  const result = outbox.handleError({ type: "error", code: "rate_limited", ref: "m-1", retryAfterMs: 180 });
  assert.equal(result.final, false);
  assert.equal(outbox.get("m-1").state, "pending");
  outbox.add(3, "three"); // written during the pause: waits too
  time.advance(179);
  assert.deepEqual(sends(frames), ["m-1", "m-2"]);
  time.advance(1);
  assert.deepEqual(sends(frames), ["m-1", "m-2", "m-1", "m-2", "m-3"]);
});

test("errors about other requests are not the outbox's", () => {
  const { outbox } = setup();
  outbox.add(3, "one");
  outbox.attach(recorder().send);
  assert.equal(outbox.handleError({ code: "rate_limited", retryAfterMs: 100 }), null, "typing refusal, no ref");
  assert.equal(outbox.handleError({ code: "not_member", ref: "h1" }), null);
  assert.equal(outbox.get("m-1").state, "pending");
});

test("at most maxInFlight sends are outstanding; acks let the rest through in order", () => {
  const { outbox } = setup(new MemoryStorage(), { maxInFlight: 2 });
  for (let i = 0; i < 5; i++) outbox.add(3, `#${i}`);
  const { frames, send } = recorder();
  outbox.attach(send);
  assert.deepEqual(sends(frames), ["m-1", "m-2"]);
  outbox.handleAck({ localId: "m-1" });
  assert.deepEqual(sends(frames), ["m-1", "m-2", "m-3"]);
  outbox.handleAck({ localId: "m-2" });
  outbox.handleAck({ localId: "m-3" });
  assert.deepEqual(sends(frames), ["m-1", "m-2", "m-3", "m-4", "m-5"]);
});

test("a send that fails (socket gone) stays queued for the next attach", () => {
  const { outbox } = setup();
  outbox.attach(() => false);
  outbox.add(3, "one");
  outbox.detach();
  const { frames, send } = recorder();
  outbox.attach(send);
  assert.deepEqual(sends(frames), ["m-1"]);
});

test("two tabs on one storage keep each other's entries", () => {
  const storage = new MemoryStorage();
  const tabA = setup(storage, { newId: () => "a-1" }).outbox;
  const tabB = setup(storage, { newId: () => "b-1" }).outbox;
  tabA.add(3, "from A");
  tabB.add(3, "from B");
  tabA.handleAck({ localId: "a-1" });
  assert.deepEqual(tabB.entries().map((e) => e.localId), ["b-1"]);
});

test("default ids are unique and within the protocol's 64 bytes", () => {
  const outbox = new Outbox({ storage: new MemoryStorage(), userId: ME });
  const ids = new Set(Array.from({ length: 200 }, () => outbox.add(1, "x").localId));
  assert.equal(ids.size, 200);
  for (const id of ids) assert.ok(id.length >= 1 && id.length <= 64);
});
