import { test } from "node:test";
import assert from "node:assert/strict";
import { planWindow, messageKey } from "../js/app/window.js";

const msgs = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => ({ id: from + i, seq: from + i, sender: 2 }));
const opts = { step: 50, max: 200 };

test("keys: own messages keep their localId key from sending to confirmed; others by id", () => {
  assert.equal(messageKey({ sender: 1, localId: "m-1" }), "m:1:m-1");
  assert.equal(messageKey({ id: 9, seq: 3, sender: 1, localId: "m-1" }), "m:1:m-1");
  assert.equal(messageKey({ id: 9, seq: 3, sender: 2 }), "id:9");
});

test("a fresh window shows the newest step and follows the bottom", () => {
  const plan = planWindow(msgs(1, 500), { startKey: null, endKey: null }, opts);
  assert.deepEqual([plan.start, plan.end, plan.endKey], [450, 500, null]);
  assert.equal(plan.startKey, "id:451");
});

test("new messages join a window that follows the bottom; past max the oldest leave", () => {
  let plan = planWindow(msgs(1, 100), { startKey: null, endKey: null }, opts);
  plan = planWindow(msgs(1, 100), plan, { ...opts, extend: "up" });
  assert.deepEqual([plan.start, plan.end], [0, 100]);
  plan = planWindow(msgs(1, 250), plan, opts);
  assert.deepEqual([plan.start, plan.end, plan.endKey], [50, 250, null], "200 at most, the newest kept");
});

test("scrolling up past max drops the newest from the DOM, and down brings them back", () => {
  const all = msgs(1, 1000);
  let plan = planWindow(all, { startKey: null, endKey: null }, opts);
  for (let i = 0; i < 4; i++) plan = planWindow(all, plan, { ...opts, extend: "up" });
  assert.deepEqual([plan.start, plan.end], [750, 950]);
  assert.equal(plan.endKey, "id:950", "no longer following the bottom");
  // A live message does not move a window that does not follow the bottom.
  const more = msgs(1, 1001);
  plan = planWindow(more, plan, opts);
  assert.deepEqual([plan.start, plan.end], [750, 950]);
  plan = planWindow(more, plan, { ...opts, extend: "down" });
  plan = planWindow(more, plan, { ...opts, extend: "down" });
  assert.deepEqual([plan.start, plan.end, plan.endKey], [801, 1001, null], "back at the bottom, following again");
});

test("older messages arriving in front do not move the window (keys, not indices)", () => {
  let plan = planWindow(msgs(501, 600), { startKey: null, endKey: null }, opts);
  assert.equal(plan.startKey, "id:551");
  const withHistory = msgs(451, 600);
  const same = planWindow(withHistory, plan, opts);
  assert.equal(same.startKey, "id:551");
  assert.deepEqual([same.start, same.end], [100, 150]);
  const up = planWindow(withHistory, plan, { ...opts, extend: "up" });
  assert.deepEqual([up.start, up.startKey], [50, "id:501"]);
});

test("an empty timeline plans an empty window", () => {
  assert.deepEqual(planWindow([], { startKey: null, endKey: null }, opts), { start: 0, end: 0, startKey: null, endKey: null });
});
